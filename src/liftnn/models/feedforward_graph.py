"""FeedforwardGraph: a general feedforward network of units (seed 002).

Seed 002 ("Arbitrary feed-forward networks", preliminaries and notation):

- one input is fixed to 1 and connected to every unit that has a bias (the *bias unit*);
- every input line gets a *fake unit* that copies the input;
- units are numbered, inputs first, so that every connection goes from a smaller to a larger
  number (hence no loops);
- w_ji is the weight from unit i to unit j, In(j) the units feeding j, Out(j) the units j feeds,
  h_j the transfer function of a non-fake unit, and

      z_j = sum_{i in In(j)} o_i w_ji,      o_j = h_j(z_j)      (o = x for input units).

Numbering used here (0-based): unit 0 is the bias unit (o_0 = 1), units 1..d_in are the fake
input units (o = x), units d_in+1 .. n_units-1 are the computing units.  Any computing unit may be
an output; `outputs` lists them in the order of the output columns.

Parameters are **one flat float64 vector w of length n_edges**: w[e] is w_ji for the edge
e = (i, j) = graph.edges[e].  Edges are stored sorted by (target j, source i), so the weights into
one unit are contiguous and the bias weight (source 0) comes first.  A flat vector makes the graph
usable by every solver unchanged (ravel_pytree of a single array is the array itself).

Evaluation is batched over samples (X: (m, d_in)).  Units with the same *depth* (1 + the largest
depth among their inputs; bias and input units have depth 0) do not feed each other, so each depth
level is evaluated with one matrix product; this is the unit-wise recursion above, grouped.
Internally the units are kept in (depth, transfer function) order so that levels are contiguous
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from liftnn._validate import check_data
from liftnn.errors import LiftnnError
from liftnn.models.activations import canonical_name, get_activation
from liftnn.models.initializers import get_initializer, initializer_name


def _as_int(name, v) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise LiftnnError(f"{name} must be an integer; got {v!r}")
    return int(v)


def _check_edges(edges, d_in: int, n_units):
    """(source, target) pairs sorted by (target, source) and the number of units; LiftnnError
    for a malformed, duplicated, backward or dangling edge, or a computing unit without inputs."""
    try:
        edges = [tuple(e) for e in edges]
    except TypeError:
        raise LiftnnError("edges must be a sequence of (source, target) integer pairs") from None
    if any(len(e) != 2 for e in edges):
        raise LiftnnError("edges must be a sequence of (source, target) integer pairs")
    pairs = [(_as_int("edge source", e[0]), _as_int("edge target", e[1])) for e in edges]
    if not pairs:
        raise LiftnnError("edges is empty: a graph needs at least one connection")
    top = max(j for _, j in pairs)
    n = top + 1 if n_units is None else _as_int("n_units", n_units)
    if n < d_in + 2:
        raise LiftnnError(f"n_units = {n} leaves no computing unit after the bias unit and "
                          f"{d_in} input units")
    for i, j in pairs:
        if not 0 <= i < j:
            raise LiftnnError(f"edge ({i}, {j}) must go from a smaller to a larger unit number "
                              "(0 <= source < target)")
        if j >= n:
            raise LiftnnError(f"edge ({i}, {j}) names unit {j} but n_units = {n}")
        if j <= d_in:
            raise LiftnnError(f"edge ({i}, {j}) feeds unit {j}, which is the bias unit or a "
                              f"fake input unit (units 0..{d_in}); only computing units "
                              "have inputs")
    if len(set(pairs)) != len(pairs):
        dup = next(p for p in pairs if pairs.count(p) > 1)
        raise LiftnnError(f"edge {dup} appears more than once")
    pairs = sorted(set(pairs), key=lambda e: (e[1], e[0]))
    computing = list(range(d_in + 1, n))
    fed = {j for _, j in pairs}
    lonely = [j for j in computing if j not in fed]
    if lonely:
        raise LiftnnError(f"computing unit(s) {lonely} have no incoming edge")
    return pairs, n


def _check_outputs(outputs, computing: list, d_in: int, n: int) -> tuple:
    """The output units: the last k computing units for an int k, or the units listed."""
    if isinstance(outputs, (int, np.integer)) and not isinstance(outputs, bool):
        k = int(outputs)
        if not 1 <= k <= len(computing):
            raise LiftnnError(f"outputs = {k} must be between 1 and the {len(computing)} "
                              "computing units")
        outs = tuple(computing[-k:])
    else:
        try:
            outs = tuple(_as_int("output unit", u) for u in outputs)
        except TypeError:
            raise LiftnnError("outputs must be an int or a sequence of unit numbers") from None
        if not outs:
            raise LiftnnError("outputs is empty")
        bad = [u for u in outs if not d_in < u < n]
        if bad:
            raise LiftnnError(f"output unit(s) {bad} are not computing units "
                              f"({d_in + 1}..{n - 1})")
        if len(set(outs)) != len(outs):
            raise LiftnnError(f"outputs {outs} repeat a unit")
    return outs


def _check_activations(activation, output_activation, computing, outs, d_in: int, n: int) -> dict:
    """unit -> canonical activation name for every computing unit (module docstring)."""
    acts = {}
    canonical_name(output_activation)
    if isinstance(activation, Mapping):
        for j in computing:
            acts[j] = "tanh" if j not in outs else output_activation
        for u, name in activation.items():
            u = _as_int("activation unit", u)
            if u not in computing:
                raise LiftnnError(f"activation given for unit {u}, which is not a computing "
                                  f"unit ({d_in + 1}..{n - 1})")
            acts[u] = name
    elif isinstance(activation, str):
        canonical_name(activation)  # checked even when every unit is an output
        for j in computing:
            acts[j] = output_activation if j in outs else activation
    elif isinstance(activation, Sequence):
        if len(activation) != len(computing):
            raise LiftnnError(f"{len(activation)} activations given for {len(computing)} "
                              "computing units")
        acts = dict(zip(computing, activation))
    else:
        raise LiftnnError("activation must be a name, a sequence of names or a mapping")
    acts = {j: canonical_name(a) for j, a in acts.items()}
    return acts


class FeedforwardGraph:
    """A feedforward network on an arbitrary directed acyclic graph (seed 002).

    Args:
        n_inputs: d_in, the number of fake input units (units 1..d_in; unit 0 is the bias unit).
        edges: sequence of (i, j) pairs, a connection from unit i to unit j with 0 <= i < j and
            j a computing unit (j > d_in).  Every computing unit needs at least one incoming edge.
            Include (0, j) to give unit j a bias.  Duplicates are an error.
        outputs: the output units (computing units, in output-column order), or an int k meaning
            the last k units.
        activation: transfer function of the computing units: one name for every non-output unit,
            a sequence with one name per computing unit (d_in+1 .. n_units-1; then
            `output_activation` is not used), or a mapping {unit: name} overriding the defaults
            ("tanh" for non-output units, `output_activation` for output units).
        output_activation: transfer function of the output units (when `activation` is a name or
            a mapping that does not name them).
        n_units: total number of units including the bias and input units; default
            1 + max(unit index in edges).
        init: initialiser spec (see liftnn.models.initializers), applied per unit (see `init`).

    Params: a flat vector w of shape (n_edges,), w[e] = w_ji for edges[e] = (i, j).
    """

    def __init__(self, n_inputs, edges, outputs, activation="tanh", output_activation="identity",
                 n_units=None, init="glorot_uniform"):
        d_in = _as_int("n_inputs", n_inputs)
        if d_in < 1:
            raise LiftnnError(f"n_inputs must be >= 1; got {d_in}")
        pairs, n = _check_edges(edges, d_in, n_units)
        computing = list(range(d_in + 1, n))
        outs = _check_outputs(outputs, computing, d_in, n)
        acts = _check_activations(activation, output_activation, computing, outs, d_in, n)
        get_initializer(init)

        src = np.array([i for i, _ in pairs], dtype=np.int64)
        dst = np.array([j for _, j in pairs], dtype=np.int64)
        depth = np.zeros(n, dtype=np.int64)
        for i, j in pairs:  # sorted by target, so every source is final when read
            depth[j] = max(depth[j], depth[i] + 1)

        self.n_inputs = d_in
        self.n_units = n
        self.edges = tuple(pairs)
        self.outputs = outs
        self.unit_activations = tuple(acts[j] for j in computing)
        self.init_spec = init
        self._src, self._dst = src, dst
        self._build_layout(depth, computing, acts)
        self._hash = hash(self._key())  # computed once: graphs are static jit arguments
        self._frozen = True

    # ---- construction helpers --------------------------------------------------------------
    def _build_layout(self, depth, computing, acts):
        """The internal unit order used for evaluation: bias, inputs, then the computing units
        sorted by (depth, transfer function, number).  In that order every depth level is a
        contiguous block and every transfer function a contiguous range inside it, so a pass
        needs only slices, concatenations and one matrix product per level (no scatters).

        Sets: _order (internal -> unit number), _pos (unit number -> internal), _src_int /
        _dst_int (edge endpoints, internal), _out_int (outputs, internal), _blocks (per level:
        (start, stop, ((name, start, stop), ...))), _width (unit -> size of its level),
        _level_of (unit -> index of its level in _blocks).
        """
        order = list(range(self.n_inputs + 1)) + sorted(
            computing, key=lambda j: (int(depth[j]), acts[j], j))
        pos = np.empty(self.n_units, dtype=np.int64)
        pos[np.array(order)] = np.arange(self.n_units)
        blocks, width, level_of = [], {}, {}
        k = self.n_inputs + 1
        while k < self.n_units:
            d = int(depth[order[k]])
            stop = k
            while stop < self.n_units and int(depth[order[stop]]) == d:
                stop += 1
            groups, g = [], k
            while g < stop:
                name = acts[order[g]]
                h = g
                while h < stop and acts[order[h]] == name:
                    h += 1
                groups.append((name, g, h))
                g = h
            blocks.append((k, stop, tuple(groups)))
            for u in order[k:stop]:
                width[u] = stop - k
                level_of[u] = len(blocks) - 1
            k = stop
        self._order = np.array(order, dtype=np.int64)
        self._pos = pos
        self._src_int, self._dst_int = pos[self._src], pos[self._dst]
        self._out_int = pos[np.array(self.outputs, dtype=np.int64)]
        self._blocks = tuple(blocks)
        self._width = width
        self._level_of = level_of

    @classmethod
    def from_mlp(cls, mlp) -> FeedforwardGraph:
        """The graph of an MLP: layer by layer, every unit fed by all units of the previous layer
        (and by the bias unit when the MLP has biases).  Units are numbered layer by layer, so
        hidden layer l occupies a contiguous block; the MLP's activations are kept.

        Map weights with `params_from_mlp` / `params_to_mlp` (this graph's methods).
        """
        sizes = mlp.sizes
        starts = np.cumsum((1,) + sizes)[:-1]  # first unit of each layer (layer 0 = inputs)
        edges = []
        acts = []
        for l in range(1, len(sizes)):
            prev = range(starts[l - 1], starts[l - 1] + sizes[l - 1])
            for j in range(starts[l], starts[l] + sizes[l]):
                if mlp.bias:
                    edges.append((0, j))
                edges.extend((i, j) for i in prev)
                acts.append(mlp.activations[l - 1])
        g = cls(sizes[0], edges, outputs=sizes[-1], activation=acts,
                n_units=1 + sum(sizes), init=mlp.init_spec)
        object.__setattr__(g, "_mlp_layout", (tuple(sizes), bool(mlp.bias)))
        return g

    def _mlp_index(self):
        """Edge index arrays (EW_l: (out, in), Eb_l: (out,) or None) for a from_mlp graph."""
        layout = getattr(self, "_mlp_layout", None)
        if layout is None:
            raise LiftnnError("this graph was not built with FeedforwardGraph.from_mlp")
        sizes, bias = layout
        pos = {e: k for k, e in enumerate(self.edges)}
        starts = np.cumsum((1,) + sizes)[:-1]
        out = []
        for l in range(1, len(sizes)):
            units = range(starts[l], starts[l] + sizes[l])
            prev = range(starts[l - 1], starts[l - 1] + sizes[l - 1])
            EW = np.array([[pos[(i, j)] for i in prev] for j in units], dtype=np.int64)
            Eb = np.array([pos[(0, j)] for j in units], dtype=np.int64) if bias else None
            out.append((EW, Eb))
        return out

    def params_from_mlp(self, mlp_params) -> jax.Array:
        """MLP params [(W_l, b_l), ...] (W_l: (out, in)) -> graph weight vector w: (n_edges,).

        A conversion of concrete arrays (done in NumPy; not meant for use inside jit)."""
        index = self._mlp_index()
        if len(mlp_params) != len(index):
            raise LiftnnError(f"expected {len(index)} layers of MLP params; got {len(mlp_params)}")
        w = np.zeros(self.n_params)
        for l, ((EW, Eb), (W, b)) in enumerate(zip(index, mlp_params)):
            W = np.asarray(W, dtype=np.float64)
            if W.shape != EW.shape:
                raise LiftnnError(f"layer {l}: W has shape {W.shape}, expected {EW.shape}")
            w[EW] = W
            if Eb is not None:
                if b is None or np.shape(b) != Eb.shape:
                    raise LiftnnError(f"layer {l}: b must have shape {Eb.shape}")
                w[Eb] = np.asarray(b, dtype=np.float64)
        return jnp.asarray(w)

    def params_to_mlp(self, w) -> list:
        """Graph weight vector w: (n_edges,) -> MLP params [(W_l, b_l or None), ...] (NumPy
        conversion of concrete arrays, like params_from_mlp)."""
        w = np.asarray(self._check_params(w))
        return [(jnp.asarray(w[EW]), None if Eb is None else jnp.asarray(w[Eb]))
                for EW, Eb in self._mlp_index()]

    # ---- immutability / hashing (usable as a static jit argument) ---------------------------
    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("FeedforwardGraph is immutable; build a new one")
        object.__setattr__(self, name, value)

    def _key(self):
        return (self.n_inputs, self.n_units, self.edges, self.outputs, self.unit_activations,
                self.init_name)

    def __eq__(self, other):
        if other is self:
            return True
        return (isinstance(other, FeedforwardGraph) and self._hash == other._hash
                and self._key() == other._key())

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return (f"FeedforwardGraph(n_inputs={self.n_inputs}, n_units={self.n_units}, "
                f"n_edges={self.n_params}, outputs={list(self.outputs)})")

    # ---- structure --------------------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.n_inputs

    @property
    def d_out(self) -> int:
        return len(self.outputs)

    @property
    def n_params(self) -> int:
        """Number of weights = number of edges."""
        return len(self.edges)

    @property
    def init_name(self) -> str:
        return initializer_name(self.init_spec)

    @property
    def computing_units(self) -> tuple[int, ...]:
        return tuple(range(self.n_inputs + 1, self.n_units))

    def activation_of(self, j: int) -> str:
        """Transfer function name h_j of computing unit j."""
        return self.unit_activations[j - self.n_inputs - 1]

    def In(self, j: int) -> tuple[int, ...]:
        """In(j): the units that feed unit j (seed 002)."""
        return tuple(i for i, k in self.edges if k == j)

    def Out(self, j: int) -> tuple[int, ...]:
        """Out(j): the units unit j feeds (seed 002)."""
        return tuple(k for i, k in self.edges if i == j)

    # ---- parameters -------------------------------------------------------------------------
    def init(self, seed: int = 0) -> jax.Array:
        """Initial weight vector w: (n_edges,) for `seed`.

        Per computing unit j the initialiser's distribution for fan_in = |In(j) without the bias
        unit| (at least 1) and fan_out = the number of units at j's depth (the "layer width") is
        used: j's non-bias weights are one row of a draw W: (fan_out, fan_in) and its bias weight
        the matching entry of the drawn b.  Units of one level with the same fan_in share one
        draw (distinct rows).  For a graph from `from_mlp` every weight thus has the same
        distribution as under the MLP's initialiser (glorot, kaiming, torch_default, normal).
        """
        groups = self._init_groups()
        draws = _graph_init_fn(self)(jax.random.PRNGKey(int(seed)))
        w = np.zeros(self.n_params)
        for (W, b), units in zip(draws, groups.values()):
            W, b = np.asarray(W), np.asarray(b)
            for r, j in enumerate(units):
                idx = np.flatnonzero(self._dst == j)
                srcs = self._src[idx]
                nb = idx[srcs != 0]
                w[nb] = W[r, : len(nb)]
                w[idx[srcs == 0]] = b[r]
        return jnp.asarray(w, dtype=jnp.float64)

    def _init_groups(self) -> dict[tuple[int, int], list[int]]:
        """(level, fan_in) -> the computing units drawn together by `init`."""
        groups: dict[tuple[int, int], list[int]] = {}
        for j in self.computing_units:
            fan_in = max(int(np.sum((self._dst == j) & (self._src != 0))), 1)
            groups.setdefault((self._level_of[j], fan_in), []).append(j)
        return groups

    def flatten(self, params) -> jax.Array:
        """Params are already the flat vector w."""
        return jnp.asarray(params, jnp.float64).reshape(-1)

    def unflatten(self, theta) -> jax.Array:
        return self._check_params(theta)

    def _check_params(self, w) -> jax.Array:
        w = jnp.asarray(w, jnp.float64)
        if w.shape != (self.n_params,):
            raise LiftnnError(f"graph params must be a vector of {self.n_params} edge weights; "
                              f"got shape {w.shape}")
        return w

    def weight_matrix(self, w) -> jax.Array:
        """The (n_units, n_units) matrix with entry [j, i] = w_ji (zero where no edge)."""
        w = self._check_params(w)
        return jnp.zeros((self.n_units, self.n_units), jnp.float64).at[self._dst, self._src].set(w)

    def _internal_matrix(self, w) -> jax.Array:
        """weight_matrix in the internal unit order (lower triangular by construction)."""
        return jnp.zeros((self.n_units, self.n_units), jnp.float64).at[
            self._dst_int, self._src_int].set(w)

    def _forward_internal(self, w, X):
        """(Z, O, W) in the internal unit order: Z, O of shape (m, n_units), W from
        _internal_matrix.  Level by level: Z_level = O_before @ W[level, before]^T,
        O_level = h(Z_level) per transfer-function range."""
        W = self._internal_matrix(w)
        m = X.shape[0]
        O_parts = [jnp.ones((m, 1), jnp.float64), X]
        Z_parts = [jnp.zeros((m, self.n_inputs + 1), jnp.float64)]
        for start, stop, groups in self._blocks:
            A = jnp.concatenate(O_parts, axis=1) @ W[start:stop, :start].T
            O_parts.append(jnp.concatenate(
                [get_activation(name).f(A[:, a - start:b - start]) for name, a, b in groups], axis=1))
            Z_parts.append(A)
        return jnp.concatenate(Z_parts, axis=1), jnp.concatenate(O_parts, axis=1), W

    # ---- evaluation -------------------------------------------------------------------------
    def forward(self, params, X) -> tuple[jax.Array, jax.Array]:
        """Forward pass keeping every unit: (Z, O), both of shape (m, n_units), columns in unit
        numbering.

        O[:, 0] = 1 (bias unit), O[:, 1:1+d_in] = X (fake units); for computing units
        Z[:, j] = sum_{i in In(j)} O[:, i] w_ji and O[:, j] = h_j(Z[:, j]) (seed 002).
        Z is zero in the bias and input columns.
        """
        w = self._check_params(params)
        return _graph_forward(self, w, jnp.asarray(X, jnp.float64))

    def apply(self, params, X, **_ignored) -> jax.Array:
        """Network output: the output units' o_j, shape (m, d_out)."""
        w = self._check_params(params)
        return _graph_apply(self, w, jnp.asarray(X, jnp.float64))

    def __call__(self, params, X, **kw):
        return self.apply(params, X, **kw)

    def check_data(self, X, Y=None):
        """Validate X (and Y) against the graph's input and output sizes."""
        return check_data(X, Y, self.d_in, self.d_out)

    def describe(self) -> dict:
        """A JSON-able description (what model files store)."""
        return {
            "type": "FeedforwardGraph",
            "n_inputs": self.n_inputs,
            "n_units": self.n_units,
            "edges": [list(e) for e in self.edges],
            "outputs": list(self.outputs),
            "activations": list(self.unit_activations),
            "init": self.init_name,
        }


# Compiled passes (models are immutable and hashable, so they are static arguments).
@functools.lru_cache(maxsize=64)
def _graph_init_fn(model: FeedforwardGraph):
    """One jitted function drawing every init group's (W, b) from a key (compiled once)."""
    initf = get_initializer(model.init_spec)
    shapes = [(fan_in, model._width[units[0]])
              for (_, fan_in), units in model._init_groups().items()]

    def draw(key):
        keys = jax.random.split(key, len(shapes))
        return [tuple(jnp.asarray(a, jnp.float64) for a in initf(k, i, o))
                for k, (i, o) in zip(keys, shapes)]

    return jax.jit(draw)


@functools.partial(jax.jit, static_argnums=0)
def _graph_forward(model: FeedforwardGraph, w, X):
    Z, O, _ = model._forward_internal(w, X)
    return Z[:, model._pos], O[:, model._pos]


@functools.partial(jax.jit, static_argnums=0)
def _graph_apply(model: FeedforwardGraph, w, X):
    return model._forward_internal(w, X)[1][:, model._out_int]
