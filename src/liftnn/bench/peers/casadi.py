"""The casadi peer: ipopt-ms, CasADi + IPOPT on the multiple-shooting (lifted) problem (the role
of YALMIP + fmincon in the thesis); see liftnn.bench.peers.  casadi is an optional extra.
"""

from __future__ import annotations

import time

import numpy as np

from liftnn.bench.peers.common import POS, POS_INT, TIME, PeerSpec, choice, mapping, number
from liftnn.errors import LiftnnError
from liftnn.solvers import result as R
from liftnn.solvers.result import Result

HINT = "pip install 'liftnn[peers]'"


def available() -> tuple[bool, str]:
    """(True, "") if casadi imports and has its IPOPT plugin, else why not."""
    try:
        import casadi
    except ImportError:
        return False, f"casadi is not installed ({HINT})"
    except Exception as exc:  # noqa: BLE001
        return False, f"casadi cannot be imported ({type(exc).__name__}: {exc}; {HINT})"
    if not casadi.has_nlpsol("ipopt"):
        return False, "this casadi build has no IPOPT plugin (the PyPI wheels include it)"
    return True, ""


_IPOPT_STATUS = {
    "Solve_Succeeded": R.CONVERGED,
    "Solved_To_Acceptable_Level": R.CONVERGED,
    "Feasible_Point_Found": R.CONVERGED,
    "Maximum_Iterations_Exceeded": R.MAX_ITER,
    "Maximum_CpuTime_Exceeded": R.MAX_ITER,
    "Maximum_WallTime_Exceeded": R.MAX_ITER,
    "Search_Direction_Becomes_Too_Small": R.STALLED,
    "Infeasible_Problem_Detected": R.STALLED,
    "Not_Enough_Degrees_Of_Freedom": R.STALLED,
    "Restoration_Failed": R.LINE_SEARCH_FAILED,
    "Error_In_Step_Computation": R.LINE_SEARCH_FAILED,
    "Diverging_Iterates": R.DIVERGED,
    "Invalid_Number_Detected": R.DIVERGED,
    "User_Requested_Stop": R.INTERRUPTED,
}


def _casadi_activation(name: str):
    import casadi as ca

    acts = {
        "identity": lambda a: a,
        "relu": lambda a: ca.fmax(a, 0),                 # nonsmooth at 0 (module docstring)
        "leaky_relu": lambda a: ca.fmax(a, 0.01 * a),
        "tanh": ca.tanh,
        "sigmoid": lambda a: 1.0 / (1.0 + ca.exp(-a)),
        "softplus": lambda a: ca.fmax(a, 0) + ca.log1p(ca.exp(-ca.fabs(a))),  # overflow-free
    }
    if name not in acts:
        raise LiftnnError(f"activation {name!r} has no CasADi expression here")
    return acts[name]


def _ipopt_timer_callback(nx: int, ng: int):
    """A casadi iteration_callback recording the wall time of every IPOPT iteration."""
    import casadi as ca

    class Timer(ca.Callback):
        def __init__(self):
            ca.Callback.__init__(self)
            self.times: list[float] = []
            self.construct("liftnn_ipopt_timer", {})

        def get_n_in(self):
            return ca.nlpsol_n_out()

        def get_n_out(self):
            return 1

        def get_name_in(self, i):
            return ca.nlpsol_out(i)

        def get_name_out(self, i):
            return "ret"

        def get_sparsity_in(self, i):
            n = ca.nlpsol_out(i)
            if n == "f":
                return ca.Sparsity.scalar()
            if n in ("x", "lam_x"):
                return ca.Sparsity.dense(nx)
            if n in ("g", "lam_g"):
                return ca.Sparsity.dense(ng)
            return ca.Sparsity(0, 0)

        def eval(self, arg):
            self.times.append(time.perf_counter())
            return [0]

    return Timer()


def lifted_nlp(problem, symbolic: str = "SX"):
    """The multiple-shooting NLP of `problem` as CasADi expressions.

    Returns (nlp, layout): nlp = {"x": w, "f": objective, "g": h} with w = [vec(W_0), b_0, ...,
    vec(W_L), b_L, vec(Z_1), ..., vec(Z_L)] (vec column-major, Z_j of shape (d_j, m)) and
    h = [vec(Z_j - sigma_j(W_j Z_{j-1} + b_j))]_j; layout: a list of ("W"|"b"|"Z", j, shape) per
    block of w, in order.
    """
    import casadi as ca

    Sym = ca.SX if symbolic == "SX" else ca.MX
    model = problem.model
    X = np.asarray(problem.X, np.float64).T      # (d_in, m)
    Y = np.asarray(problem.Y, np.float64).T      # (d_out, m)
    m = X.shape[1]
    ones = ca.DM.ones(1, m)
    theta, states, layout, g = [], [], [], []
    z = ca.DM(X)
    out = None
    L = model.n_layers
    for j, (i, o) in enumerate(zip(model.sizes[:-1], model.sizes[1:])):
        W = Sym.sym(f"W{j}", o, i)
        theta.append(ca.vec(W))
        layout.append(("W", j, (o, i)))
        a = ca.mtimes(W, z)
        if model.bias:
            b = Sym.sym(f"b{j}", o)
            theta.append(b)
            layout.append(("b", j, (o,)))
            a = a + ca.mtimes(b, ones)
        s = _casadi_activation(model.activations[j])(a)
        if j < L - 1:
            Z = Sym.sym(f"Z{j + 1}", o, m)
            states.append(ca.vec(Z))
            g.append(ca.vec(Z - s))
            z = Z
        else:
            out = s
    layout += [("Z", j + 1, (model.sizes[j + 1], m)) for j in range(L - 1)]
    diff = out - ca.DM(Y)
    if problem.loss == "mse":
        f = ca.sumsqr(diff) / float(Y.size)
    else:  # "sse"
        f = 0.5 * ca.sumsqr(diff)
    th = ca.vertcat(*theta)
    if problem.weight_decay:
        f = f + 0.5 * float(problem.weight_decay) * ca.sumsqr(th)
    w = ca.vertcat(th, *states)
    h = ca.vertcat(*g) if g else Sym(0, 1)
    return {"x": w, "f": f, "g": h}, layout


def fit(problem, params0, o, name, t0) -> Result:
    """ipopt-ms: IPOPT on the lifted problem from the feasible start (module docstring)."""
    import casadi as ca
    import jax.numpy as jnp

    nlp, layout = lifted_nlp(problem, o["symbolic"])
    # feasible start: the states of the network simulated from params0
    _, outs = problem.model.forward([(jnp.asarray(W), None if b is None else jnp.asarray(b))
                                     for W, b in params0], problem.X)
    w0 = []
    for kind, j, shape in layout:
        if kind == "W":
            w0.append(params0[j][0].reshape(-1, order="F"))
        elif kind == "b":
            w0.append(params0[j][1])
        else:
            w0.append(np.asarray(outs[j], np.float64).T.reshape(-1, order="F"))
    w0 = np.concatenate(w0)
    nx, ng = int(nlp["x"].numel()), int(nlp["g"].numel())
    timer = _ipopt_timer_callback(nx, ng)
    ipopt = {"max_iter": o["max_iter"], "tol": o["tol"], "print_level": o["print_level"],
             "sb": "yes", "hessian_approximation": o["hessian_approximation"],
             "linear_solver": o["linear_solver"]}
    if o["time_budget"] is not None:
        ipopt["max_wall_time"] = float(max(o["time_budget"] - (time.perf_counter() - t0), 1e-3))
    ipopt.update(o["ipopt_options"])
    try:
        solver = ca.nlpsol("liftnn_ipopt_ms", "ipopt", nlp,
                           {"print_time": False, "iteration_callback": timer, "ipopt": ipopt})
    except RuntimeError as exc:
        raise LiftnnError(f"ipopt-ms: CasADi/IPOPT refused the options ({exc})") from None
    sol = solver(x0=w0, lbg=0.0, ubg=0.0)
    stats = solver.stats()
    w = np.asarray(sol["x"], np.float64).reshape(-1)
    params, k = [], 0
    for kind, j, shape in layout:
        size = int(np.prod(shape))
        block = w[k:k + size]
        k += size
        if kind == "W":
            params.append([block.reshape(shape, order="F"), None])
        elif kind == "b":
            params[j][1] = block.copy()
    params = [tuple(p) for p in params]
    its = stats.get("iterations", {}) or {}
    objs, infs = its.get("obj", []), its.get("inf_pr", [])
    history = [{"iter": i, "loss": float(f), "constraint_violation": float(v), "time": t - t0}
               for i, (f, v, t) in enumerate(zip(objs, infs, timer.times))]
    rstatus = str(stats.get("return_status", "unknown"))
    g_val = np.asarray(sol["g"], np.float64).reshape(-1)
    return Result(
        params=params, nit=int(stats.get("iter_count", len(history))),
        nfev=int(stats.get("n_call_nlp_f", 0)), njev=int(stats.get("n_call_nlp_grad_f", 0)),
        nhev=int(stats.get("n_call_nlp_hess_l", 0)),
        status=_IPOPT_STATUS.get(rstatus, R.STALLED), message=f"IPOPT: {rstatus}",
        history=history, ipopt_status=rstatus, fun_lifted=float(sol["f"]),
        constraint_violation=float(np.max(np.abs(g_val))) if g_val.size else 0.0,
        n_variables=nx, n_constraints=ng)


PEERS: dict[str, PeerSpec] = {
    "ipopt-ms": PeerSpec(
        "ipopt-ms", "casadi",
        "CasADi + IPOPT on the multiple-shooting (lifted) problem: YALMIP + fmincon's role",
        {"max_iter": (3000, POS_INT), "tol": (1e-8, POS),
         "hessian_approximation": ("exact", choice("exact", "limited-memory")),
         "linear_solver": ("mumps", choice("mumps", "ma27", "ma57", "ma86", "ma97")),
         "symbolic": ("SX", choice("SX", "MX")),
         "print_level": (0, number(0, 12, strict=False, integer=True)),
         "time_budget": (None, TIME), "ipopt_options": ({}, mapping)},
        ("mse", "sse"), fit),
}
