"""One training problem on several devices: the samples sharded over a 1-D device mesh.

Every solver in liftnn is data parallel in the samples.  The lifted ALM's Gauss-Newton step
(liftnn.lifted.gauss_newton) eliminates each sample's states on its own and leaves one reduced
system whose pieces are sums over samples,

    M = sum_i Jh_i^T G_i^{-1} Jh_i + cc I,    g = sum_i Jh_i^T G_i^{-1} rh_i + mu_w theta,

and the single-shooting losses, gradients and Jacobians of gn / lm and the first-order methods
are sums (or row blocks) over samples as well.  So the samples are split evenly over N devices
and nothing else changes: this module places the sample-indexed arrays (X, Y, and for the ALM the
states Z_j and multipliers lambda_j) with a `jax.sharding.NamedSharding` whose PartitionSpec puts
the sample axis on the mesh axis "samples", and everything else (weights, optimiser state,
penalties) replicated.  The solvers' jitted functions are then compiled by XLA's SPMD partitioner
(GSPMD, "sharded jit"): every per-sample operation runs on the device that holds the sample, each
sum over samples becomes a local partial sum plus one all-reduce, and the small P x P (or dual)
system is solved redundantly on every device, i.e. once per device with the same all-reduced
input, so the step is identical everywhere without a broadcast.  The solvers' code is the same on
one device (devices = None or 1: no mesh, the arrays are left where they are).

Uneven splits: the sample count m must be divisible by the number of devices; otherwise
`LiftnnError` (before any work).  Padding with dummy samples would change the objective unless
every loss, constraint and multiplier masked them, and the mean-squared-error scaling counts m,
so a clear error is the honest choice: drop a few samples or pick a device count that divides m.

On the CPU, JAX shows one device unless it is told before it starts to split the host:
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (docs/devices.md).  Several processes
(hosts) join with ``jax.distributed.initialize``; `data_mesh` then spans the global devices and
`shard_samples` builds each process's shards from the (identical) full array it holds.
"""

from __future__ import annotations

import copy
import functools

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from liftnn.errors import LiftnnError

#: the mesh axis the samples are split over
AXIS = "samples"

CPU_HINT = ("on the CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N in the "
            "environment before JAX starts (before `import liftnn`) to split the host into N "
            "devices")


def data_mesh(devices=None) -> Mesh | None:
    """A 1-D mesh (axis "samples") over the first `devices` devices, or None for no sharding.

    devices: None or 1 -> None (one device, nothing is moved); an int N >= 2 -> the first N of
    jax.devices() (all processes' devices after jax.distributed.initialize); a sequence of
    jax.Device -> those; a Mesh with the axis "samples" -> itself.
    """
    if devices is None or isinstance(devices, Mesh):
        if isinstance(devices, Mesh) and AXIS not in devices.axis_names:
            raise LiftnnError(f"a mesh for liftnn needs an axis named {AXIS!r}; got axes "
                              f"{devices.axis_names}")
        return devices
    if isinstance(devices, (list, tuple)):
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise LiftnnError("devices must be None, a positive integer, or a non-empty list of "
                              "jax devices")
        return None if len(devices) == 1 else Mesh(np.array(devices), (AXIS,))
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise LiftnnError(f"devices must be None or an integer >= 1; got {devices!r}")
    n = int(devices)
    if n == 1:
        return None
    have = jax.devices()
    if n > len(have):
        hint = CPU_HINT.replace("=N", f"={n}").replace(" N ", f" {n} ")
        raise LiftnnError(f"devices = {n} but JAX sees {len(have)} device"
                          f"{'s' if len(have) != 1 else ''} ({have[0].platform}); {hint}"
                          if have[0].platform == "cpu" else
                          f"devices = {n} but JAX sees only {len(have)} {have[0].platform} "
                          f"device{'s' if len(have) != 1 else ''}")
    return Mesh(np.array(have[:n]), (AXIS,))


def n_devices(mesh: Mesh | None) -> int:
    """Number of devices the samples are split over (1 without a mesh)."""
    return 1 if mesh is None else int(mesh.devices.size)


def check_divisible(m: int, mesh: Mesh | None, what: str = "training samples") -> None:
    """LiftnnError unless m splits evenly over the mesh's devices (module docstring)."""
    n = n_devices(mesh)
    if m % n:
        lo, hi = m - m % n, m + n - m % n
        raise LiftnnError(f"the {m} {what} do not split evenly over {n} devices: use a sample "
                          f"count divisible by {n} (e.g. {lo} or {hi}) or a device count that "
                          f"divides {m} (liftnn does not pad: dummy samples would change the loss)")


def sample_spec(ndim: int, axis: int = 0) -> PartitionSpec:
    """PartitionSpec of an ndim array whose axis `axis` indexes the samples."""
    return PartitionSpec(*[AXIS if k == axis else None for k in range(ndim)])


def shard_samples(x, mesh: Mesh | None, axis: int = 0):
    """x placed with its sample axis split over the mesh (x unchanged without a mesh).

    Shapes: x (..., m, ...) with m at `axis`; m must be divisible by the number of devices.
    In a multi-process run each process holds the same full x and builds only its own shards.
    """
    if mesh is None:
        return x
    check_divisible(int(np.shape(x)[axis]), mesh)
    return _place(x, NamedSharding(mesh, sample_spec(np.ndim(x), axis)))


def replicate(tree, mesh: Mesh | None):
    """Every leaf of `tree` replicated on every device of the mesh (unchanged without a mesh)."""
    if mesh is None:
        return tree
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda a: _place(a, rep), tree)


def _place(x, sharding: NamedSharding):
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # multi-process: every process builds its own shards from the full x
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def constrain_samples(x, mesh: Mesh | None, axis: int = 0):
    """Inside traced code: ask the partitioner to split x's sample axis over the mesh.

    For data a jitted function closes over (a constant of the compiled program, which carries no
    placement of its own): with the constraint the computation on it is partitioned by samples.
    """
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, sample_spec(x.ndim, axis)))


# ---------------------------------------------------------------------------------------------
# the hooks the solvers call
# ---------------------------------------------------------------------------------------------


def shard_problem(problem, devices):
    """(problem', mesh): a shallow copy of a TrainingProblem with X: (m, d_in) and Y: (m, O)
    split by samples over data_mesh(devices), the validation data replicated; (problem, None)
    on one device.  Raises LiftnnError (bad device count, m not divisible) before any work."""
    mesh = data_mesh(devices)
    if mesh is None:
        return problem, None
    check_divisible(problem.m, mesh)
    new = copy.copy(problem)  # frozen dataclass: set the placed arrays on the copy
    object.__setattr__(new, "X", shard_samples(problem.X, mesh))
    object.__setattr__(new, "Y", shard_samples(problem.Y, mesh))
    if problem.X_val is not None:
        object.__setattr__(new, "X_val", replicate(problem.X_val, mesh))
        object.__setattr__(new, "Y_val", replicate(problem.Y_val, mesh))
    return new, mesh


def shard_states(Z: list, lam: list, mesh: Mesh | None) -> tuple[list, list]:
    """The ALM's states Z_j and multipliers lambda_j, each (K, m, d_j) (K seeds stacked),
    split over the mesh along the sample axis 1."""
    if mesh is None:
        return Z, lam
    return ([shard_samples(z, mesh, axis=1) for z in Z],
            [shard_samples(v, mesh, axis=1) for v in lam])


def check_full_batch(batch_size, mesh: Mesh | None) -> None:
    """Minibatches are not sharded: LiftnnError for batch_size with devices > 1."""
    if mesh is not None and batch_size is not None:
        raise LiftnnError(f"devices = {n_devices(mesh)} shards the full batch over the devices; "
                          f"minibatch training (batch_size = {batch_size}) is not supported on "
                          f"several devices: use batch_size=None or devices=1")


@functools.lru_cache(maxsize=16)
def _sharded_functions(problem, mesh: Mesh):
    def X_Y():
        return constrain_samples(problem.X, mesh), constrain_samples(problem.Y, mesh)

    def fun(theta):  # = problem.fun
        return problem.objective(problem.unflatten(theta), *X_Y())

    def residual(theta):  # = problem.residual
        r = problem.residual(theta, *X_Y())
        if jax.process_count() > 1:  # r and J go to the host: gather them on every process
            r = jax.lax.with_sharding_constraint(r, NamedSharding(mesh, PartitionSpec()))
        return r

    return residual, fun


def problem_functions(problem, devices):
    """(residual, fun) of a TrainingProblem for the classical solvers, computed sample-parallel
    over data_mesh(devices): problem.residual and problem.fun with X and Y constrained to the
    sample sharding (the driver compiles them as closures over the data), or the problem's own
    bound methods on one device.  The driver brings r and its Jacobian to the host; with several
    processes they are therefore gathered (replicated) on the devices first, as each process can
    read only its own shards.  Raises LiftnnError before any work for a bad device count."""
    mesh = data_mesh(devices)
    if mesh is None:
        return problem.residual, problem.data_bound_fun()
    check_divisible(problem.m, mesh)
    return _sharded_functions(problem, mesh)
