"""Saved models: PATH.json (architecture) + PATH.npz (arrays), loadable with NumPy alone.

docs/solvers.md ("Saved models"): never pickle.  For an MLP

    PATH.json  {"format_version": 1, "type": "MLP", "sizes": [1, 16, 16, 1],
                "activations": ["relu", "relu"], "output_activation": "identity",
                "bias": true, "init": "glorot_uniform", "dropout": [0.0, 0.0]}
    PATH.npz   W0, b0, W1, b1, ...   W_k: (sizes[k+1], sizes[k]), b_k: (sizes[k+1],)
               (no b_k when bias is false)

so the output is f(x) = act_out(W_L act(... act(W_0 x + b_0) ...) + b_L) with x a column, or
X @ W_k.T + b_k with samples as rows.  Also stored: a FeedforwardGraph ("type":
"FeedforwardGraph", with n_inputs, n_units, edges, outputs, activations, init; array "w" of shape
(n_edges,)) and seed 001's Moeller2Net ("type": "Moeller2Net", init; arrays W0 (5, 6), W1 (4, 5),
W2 (3, 4)).  The .npz is written with np.savez and read with allow_pickle=False.

Format version 2 (written when a model carries the standardisation of its training data, read
together with version 1) adds two optional keys to any type:

    "scaling": {"x_mean": [...], "x_std": [...], "y_mean": [...], "y_std": [...],
                "features": [...], "targets": [...]}   (liftnn.datasets.scaling.Standardizer)
    "data":    {"name": ..., "source": ..., ...}       (what it was trained on; plain JSON)

so `load_model(PATH).predict(X)` takes inputs in the user's units and returns predictions in the
user's units: predict(X) = inverse_y(f((X - x_mean) / x_std)).  A model saved without them is
still written as version 1, so older readers keep reading it.

PATH may be given with or without the ".json" / ".npz" suffix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from liftnn.datasets.scaling import Standardizer
from liftnn.errors import LiftnnError
from liftnn.models.activations import canonical_name
from liftnn.models.feedforward_graph import FeedforwardGraph
from liftnn.models.initializers import get_initializer
from liftnn.models.mlp import MLP
from liftnn.models.moeller import Moeller2Net

FORMAT_VERSION = 2  # the newest this module writes; it reads READ_VERSIONS
READ_VERSIONS = (1, 2)
_TYPES = ("MLP", "FeedforwardGraph", "Moeller2Net")


def model_paths(path) -> tuple[Path, Path]:
    """(PATH.json, PATH.npz) for PATH given with or without a .json / .npz suffix."""
    p = Path(os.fspath(path))
    if p.suffix.lower() in (".json", ".npz"):
        p = p.with_suffix("")
    if not p.name:
        raise LiftnnError(f"model path {os.fspath(path)!r} has no file name")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def check_writable(path) -> None:
    """Raise LiftnnError unless PATH.json and PATH.npz can be written (checked before training).

    The parent directory must exist and accept a new file; existing targets must be regular,
    writable files (they will be replaced).
    """
    jpath, npath = model_paths(path)
    parent = jpath.parent
    if not parent.exists():
        raise LiftnnError(f"cannot write the model to {jpath} / {npath.name}: directory {parent} "
                          "does not exist")
    if not parent.is_dir():
        raise LiftnnError(f"cannot write the model: {parent} is not a directory")
    for target in (jpath, npath):
        if target.exists() and not target.is_file():
            raise LiftnnError(f"cannot write the model: {target} exists and is not a regular file")
        if target.exists() and not os.access(target, os.W_OK):
            raise LiftnnError(f"cannot write the model: {target} is not writable")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".liftnn-write-test-"):
            pass
    except OSError as exc:
        raise LiftnnError(f"cannot write the model into directory {parent}: {exc.strerror or exc}") from None


# ---- arrays <-> params ----------------------------------------------------------------------


def _arrays(model, params) -> dict[str, np.ndarray]:
    """The named float64 arrays of params, validated against the model's shapes."""
    out = {}
    if isinstance(model, FeedforwardGraph):
        w = np.asarray(params, dtype=np.float64)
        if w.shape != (model.n_params,):
            raise LiftnnError(f"graph params must have shape ({model.n_params},); got {w.shape}")
        out["w"] = w
    else:
        shapes = model.shapes if isinstance(model, Moeller2Net) else tuple(
            (o, i) for i, o in zip(model.sizes[:-1], model.sizes[1:]))
        bias = getattr(model, "bias", False)
        try:
            pairs = [(W, b) for W, b in params]
        except (TypeError, ValueError):
            raise LiftnnError("params must be a list of (W, b) pairs") from None
        if len(pairs) != len(shapes):
            raise LiftnnError(f"params have {len(pairs)} layers; the model has {len(shapes)}")
        for k, ((W, b), s) in enumerate(zip(pairs, shapes)):
            W = np.asarray(W, dtype=np.float64)
            if W.shape != s:
                raise LiftnnError(f"W{k} has shape {W.shape}; the model needs {s}")
            out[f"W{k}"] = W
            if bias:
                if b is None or np.shape(b) != (s[0],):
                    raise LiftnnError(f"b{k} must have shape ({s[0]},)")
                out[f"b{k}"] = np.asarray(b, dtype=np.float64)
    for name, a in out.items():
        if not np.all(np.isfinite(a)):
            raise LiftnnError(f"{name} contains NaN or Inf; refusing to save non-finite weights")
    return out


def _params(model, arrays: dict[str, np.ndarray]):
    import jax.numpy as jnp

    if isinstance(model, FeedforwardGraph):
        return jnp.asarray(arrays["w"])
    n = len(model.shapes) if isinstance(model, Moeller2Net) else model.n_layers
    bias = getattr(model, "bias", False)
    return [(jnp.asarray(arrays[f"W{k}"]), jnp.asarray(arrays[f"b{k}"]) if bias else None)
            for k in range(n)]


def _expected_arrays(model) -> dict[str, tuple[int, ...]]:
    if isinstance(model, FeedforwardGraph):
        return {"w": (model.n_params,)}
    if isinstance(model, Moeller2Net):
        return {f"W{k}": s for k, s in enumerate(model.shapes)}
    exp = {}
    for k, (i, o) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        exp[f"W{k}"] = (o, i)
        if model.bias:
            exp[f"b{k}"] = (o,)
    return exp


# ---- save / load ----------------------------------------------------------------------------


def save_model(path, model, params, *, scaling: Standardizer | None = None,
               data: dict | None = None) -> tuple[Path, Path]:
    """Write PATH.json (architecture, activations, format version) and PATH.npz (weights).

    Arrays for an MLP: W0, b0, W1, b1, ... with W_k of shape (out, in) (see the module
    docstring).  scaling: the standardisation of the training data (x_mean, x_std: (d_in,),
    y_mean, y_std: (d_out,), column names), stored so that `load_model(PATH).predict` works in
    the user's units; data: a plain-JSON description of the training data.  Both files are
    written atomically (temporary file + rename).  Returns the two paths.
    """
    if not isinstance(model, (MLP, FeedforwardGraph, Moeller2Net)):
        raise LiftnnError(f"save_model supports MLP, FeedforwardGraph and Moeller2Net; got "
                          f"{type(model).__name__}")
    desc = dict(model.describe())
    try:
        get_initializer(desc.get("init"))
    except LiftnnError:
        raise LiftnnError(f"the model's initialiser {desc.get('init')!r} is a custom function and "
                          "cannot be stored; build the model with a named initialiser") from None
    arrays = _arrays(model, params)
    extra = {}
    if scaling is not None:
        if not isinstance(scaling, Standardizer):
            raise LiftnnError(f"scaling must be a Standardizer; got {type(scaling).__name__}")
        _check_scaling_widths("scaling", model, scaling)
        extra["scaling"] = scaling.to_dict()
    if data is not None:
        try:
            extra["data"] = json.loads(json.dumps(data))
        except (TypeError, ValueError) as exc:
            raise LiftnnError(f"data must be plain JSON (names, numbers, lists): {exc}") from None
    check_writable(path)
    jpath, npath = model_paths(path)
    meta = {"format_version": FORMAT_VERSION if extra else 1, **desc, **extra}
    _atomic_write(jpath, lambda f: f.write(json.dumps(meta, indent=2).encode() + b"\n"))
    _atomic_write(npath, lambda f: np.savez(f, **arrays))
    return jpath, npath


def _check_scaling_widths(where, model, sc: Standardizer) -> None:
    for side, width, names, mw in (("inputs", sc.d_in, sc.features, model.d_in),
                                   ("outputs", sc.d_out, sc.targets, model.d_out)):
        n = width if width is not None else (len(names) if names is not None else None)
        if n is not None and n != mw:
            raise LiftnnError(f"{where}: the scaling has {n} {side}; the network has {mw}")


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_REQUIRED = {
    "MLP": {"format_version", "type", "sizes", "activations", "output_activation", "bias", "init"},
    "FeedforwardGraph": {"format_version", "type", "n_inputs", "n_units", "edges", "outputs",
                         "activations", "init"},
    "Moeller2Net": {"format_version", "type", "init"},
}
_OPTIONAL = {"MLP": {"dropout"}, "FeedforwardGraph": set(), "Moeller2Net": set()}
_V2_KEYS = {"scaling", "data"}  # optional for every type from format version 2


def _fail(jpath, msg):
    raise LiftnnError(f"{jpath}: {msg}")


def _int_list(jpath, meta, key, min_len=0):
    v = meta[key]
    if (not isinstance(v, list) or len(v) < min_len
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in v)):
        _fail(jpath, f"'{key}' must be a list of at least {min_len} integers; got {v!r}")
    return v


def _model_from_meta(jpath: Path, meta) -> object:
    """Validate the JSON schema and build the model; every mismatch names the key."""
    if not isinstance(meta, dict):
        _fail(jpath, f"expected a JSON object; got {type(meta).__name__}")
    if "format_version" not in meta:
        _fail(jpath, "missing key 'format_version'")
    version = meta["format_version"]
    if isinstance(version, bool) or version not in READ_VERSIONS:
        _fail(jpath, f"format_version {version!r} is not supported (this liftnn reads versions "
                     f"{', '.join(map(str, READ_VERSIONS))})")
    typ = meta.get("type")
    if typ not in _TYPES:
        _fail(jpath, f"'type' must be one of {', '.join(_TYPES)}; got {typ!r}")
    missing = sorted(_REQUIRED[typ] - set(meta))
    if missing:
        _fail(jpath, f"missing key(s) {', '.join(repr(k) for k in missing)} for type {typ}")
    optional = _OPTIONAL[typ] | (_V2_KEYS if version >= 2 else set())
    unknown = sorted(set(meta) - _REQUIRED[typ] - optional)
    if unknown:
        _fail(jpath, f"unknown key(s) {', '.join(repr(k) for k in unknown)} for type {typ}")
    if not isinstance(meta["init"], str):
        _fail(jpath, f"'init' must be a string; got {meta['init']!r}")

    def named(what, fn):
        try:
            return fn()
        except LiftnnError as exc:
            _fail(jpath, f"{what}: {exc}")

    if typ == "Moeller2Net":
        return named("'init'", lambda: Moeller2Net(init=meta["init"]))
    if typ == "FeedforwardGraph":
        for key in ("n_inputs", "n_units"):
            if not isinstance(meta[key], int) or isinstance(meta[key], bool):
                _fail(jpath, f"'{key}' must be an integer; got {meta[key]!r}")
        edges = meta["edges"]
        if not isinstance(edges, list) or not all(isinstance(e, list) and len(e) == 2 for e in edges):
            _fail(jpath, "'edges' must be a list of [source, target] pairs")
        outputs = _int_list(jpath, meta, "outputs", 1)
        acts = meta["activations"]
        if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
            _fail(jpath, "'activations' must be a list of names")
        return named("graph", lambda: FeedforwardGraph(
            meta["n_inputs"], edges, outputs, activation=acts, n_units=meta["n_units"],
            init=meta["init"]))
    sizes = _int_list(jpath, meta, "sizes", 2)
    if any(s <= 0 for s in sizes):
        _fail(jpath, f"'sizes' must be positive; got {sizes}")
    acts = meta["activations"]
    if not isinstance(acts, list) or not all(isinstance(a, str) for a in acts):
        _fail(jpath, f"'activations' must be a list of names; got {acts!r}")
    if len(acts) != len(sizes) - 2:
        _fail(jpath, f"'activations' has {len(acts)} entries but 'sizes' {sizes} has "
                     f"{len(sizes) - 2} hidden layers")
    for a in acts + [meta["output_activation"]]:
        if not isinstance(a, str):
            _fail(jpath, f"activation names must be strings; got {a!r}")
        named("activation", lambda a=a: canonical_name(a))
    if not isinstance(meta["bias"], bool):
        _fail(jpath, f"'bias' must be true or false; got {meta['bias']!r}")
    dropout = meta.get("dropout", 0.0)
    if "dropout" in meta and (not isinstance(dropout, list) or len(dropout) != len(sizes) - 2
                              or not all(isinstance(d, (int, float)) for d in dropout)):
        _fail(jpath, f"'dropout' must be a list of {len(sizes) - 2} rates; got {dropout!r}")
    return named("model", lambda: MLP(sizes, activation=acts, output_activation=meta["output_activation"],
                                      bias=meta["bias"], init=meta["init"], dropout=dropout))


def load_model(path) -> SavedModel:
    """Read PATH.json + PATH.npz -> SavedModel; the inverse of `save_model`.

    The result unpacks as `model, params = load_model(PATH)` and predicts with
    `.predict(X)` in the user's units (the stored scaling applied; see SavedModel).
    Validates the JSON schema (format_version, type, required and unknown keys, value types,
    activation and initialiser names, the scaling) and the arrays (exactly the expected names,
    each with the expected shape, numeric and finite); any mismatch raises LiftnnError naming
    the key or array.
    """
    jpath, npath = model_paths(path)
    for p in (jpath, npath):
        if not p.is_file():
            raise LiftnnError(f"model file {p} does not exist (save_model writes PATH.json and "
                              "PATH.npz)")
    try:
        meta = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LiftnnError(f"{jpath}: not a readable JSON file ({exc})") from None
    model = _model_from_meta(jpath, meta)
    scaling = None
    if "scaling" in meta:
        try:
            scaling = Standardizer.from_dict(meta["scaling"])
            _check_scaling_widths("scaling", model, scaling)
        except LiftnnError as exc:
            _fail(jpath, str(exc))
    data = meta.get("data")
    if data is not None and not isinstance(data, dict):
        _fail(jpath, f"'data' must be a JSON object; got {data!r}")
    expected = _expected_arrays(model)
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:  # object arrays refuse to load without pickle
        raise LiftnnError(f"{npath}: holds data that needs pickle, which liftnn never loads ({exc})") from None
    except (OSError, EOFError) as exc:
        raise LiftnnError(f"{npath}: not a readable .npz file ({exc})") from None
    missing = [k for k in expected if k not in arrays]
    if missing:
        raise LiftnnError(f"{npath}: missing array(s) {', '.join(missing)} (expected "
                          f"{', '.join(expected)})")
    extra = sorted(set(arrays) - set(expected))
    if extra:
        raise LiftnnError(f"{npath}: unexpected array(s) {', '.join(extra)} (expected "
                          f"{', '.join(expected)})")
    for k, shape in expected.items():
        a = arrays[k]
        if a.shape != shape:
            raise LiftnnError(f"{npath}: array {k} has shape {a.shape}; the architecture in "
                              f"{jpath.name} needs {shape}")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise LiftnnError(f"{npath}: array {k} has dtype {a.dtype}; expected real numbers")
        if not np.all(np.isfinite(a)):
            raise LiftnnError(f"{npath}: array {k} contains NaN or Inf")
        arrays[k] = a.astype(np.float64)
    return SavedModel(model, _params(model, arrays), scaling, data or {}, str(jpath))


class SavedModel:
    """A loaded model: the network, its params, and the scaling of its training data.

    model, params = saved   (unpacks as before)
    saved.predict(X)        X: (m, d_in) or (m,) for one input, in the user's units ->
                            (m, d_out) predictions in the user's units
    saved.features / saved.targets: the column names (x0.. / y0.. when none were stored)
    saved.has_std: whether predict(X, return_std=True) gives a predictive std (m, d_out); true
    only when the network object offers predict(params, X, return_std=True) (a posterior; the
    hook for it: none is stored by this format yet).
    """

    def __init__(self, model, params, scaling: Standardizer | None = None, data: dict | None = None,
                 path: str = ""):
        self.model, self.params = model, params
        self.scaling = scaling if scaling is not None else Standardizer()
        self.data = dict(data or {})
        self.path = path

    def __iter__(self):
        return iter((self.model, self.params))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        return (self.model, self.params)[i]

    @property
    def d_in(self) -> int:
        return int(self.model.d_in)

    @property
    def d_out(self) -> int:
        return int(self.model.d_out)

    @property
    def features(self) -> tuple[str, ...]:
        return self.scaling.features or tuple(f"x{j}" for j in range(self.d_in))

    @property
    def targets(self) -> tuple[str, ...]:
        return self.scaling.targets or tuple(f"y{j}" for j in range(self.d_out))

    @property
    def has_std(self) -> bool:
        """Whether the network object offers predict(params, X, return_std=True) (a posterior)."""
        import inspect

        fn = getattr(self.model, "predict", None)
        if not callable(fn):
            return False
        try:
            return "return_std" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return False

    def check_inputs(self, X, where: str = "X") -> np.ndarray:
        """X as float64 (m, d_in), or LiftnnError naming the widths (and the stored columns)."""
        from liftnn._validate import as_2d_finite

        X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
        if X.ndim == 1 and self.d_in > 1 and X.size == self.d_in:
            X = X[None, :]
        X = as_2d_finite(where, X)
        if X.shape[1] != self.d_in:
            raise LiftnnError(f"{where} has {X.shape[1]} input column(s) but the model {self.path} "
                              f"takes {self.d_in} ({', '.join(self.features)})")
        return X

    def predict(self, X, return_std: bool = False):
        """Predictions (m, d_out) in the user's units for inputs X (m, d_in) in the user's units;
        with return_std, (mean, std), both (m, d_out), where the model offers a posterior."""
        X = self.check_inputs(X)
        Z = self.scaling.transform_x(X)
        if return_std:
            if not self.has_std:
                raise LiftnnError(f"the model {self.path} has no posterior: predict(X, "
                                  "return_std=True) is not available")
            mean, std = self.model.predict(self.params, Z, return_std=True)
            return self.scaling.inverse_y(mean), self.scaling.inverse_std(std)
        return self.scaling.inverse_y(np.asarray(self.model.apply(self.params, Z)))

    def __repr__(self) -> str:
        arch = getattr(self.model, "arch", type(self.model).__name__)
        return (f"SavedModel({arch}, features={list(self.features)}, "
                f"targets={list(self.targets)}, scaled={not self.scaling.identity})")
