"""The `liftnn` command line (typer + rich).

Commands: train, demo, inspect, bench, report.  Each validates its arguments before any work and
exits with status 2 and a one-line message on bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="liftnn: train neural networks as nonlinear optimal control problems.")
console = Console(stderr=True)


@app.callback()
def _setup() -> None:
    """liftnn: train neural networks as nonlinear optimal control problems."""
    from liftnn.compile_cache import enable_compile_cache

    enable_compile_cache()  # LIFTNN_COMPILE_CACHE=off switches it off


def fail(msg: str) -> None:
    """Print a one-line error and exit with status 2."""
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def parse_options(pairs: list[str]) -> dict:
    """--opt key=value pairs -> dict (values parsed as JSON where possible)."""
    out = {}
    for p in pairs or []:
        if "=" not in p:
            fail(f"--opt expects key=value; got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


@app.command()
def train(
    problem: str = typer.Option("sin2", help="data set name (liftnn.datasets.names())"),
    n: int | None = typer.Option(None, help="number of training points (where the data set takes n)"),
    arch: str = typer.Option("1-16-16-1", help="layer sizes, e.g. 1-16-16-1"),
    activation: str = typer.Option("relu", help="hidden activation"),
    output_activation: str = typer.Option("identity"),
    init: str = typer.Option("glorot_uniform", help="initialiser"),
    method: str = typer.Option("adam", help="training method"),
    seed: int = typer.Option(0, help="initial-weight seed"),
    seeds: int | None = typer.Option(None, "--seeds", help="train K initialisations (seeds "
                                     "seed..seed+K-1) in one vectorised call; one line each"),
    data_seed: int = typer.Option(0, help="data seed (noise draws)"),
    max_iter: int | None = typer.Option(None, help="iteration / epoch limit"),
    opt: list[str] = typer.Option([], "--opt", help="extra method option key=value (repeatable)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object (one per line "
                                                         "with --seeds)"),
    save_model: Path | None = typer.Option(None, help="write PATH.json + PATH.npz"),
):
    """Train one network and report train/test MSE, time and status.

    With --seeds K, K initialisations train in one vectorised call (alm and the first-order
    methods; a loop otherwise) and --json prints one JSON object per line, one per seed
    (time_s = the batch's wall time / K); --save-model then keeps the lowest train MSE.
    """
    import liftnn as ln
    from liftnn.errors import LiftnnError

    try:
        kw = {"n": n} if n is not None else {}
        data = ln.datasets.load(problem, seed=data_seed, **kw)
        model = ln.MLP(arch, activation=activation, output_activation=output_activation, init=init)
        options = parse_options(opt)
        if max_iter is not None:
            options["max_iter"] = max_iter
        if seeds is not None and seeds < 1:
            raise LiftnnError(f"--seeds must be >= 1; got {seeds}")
        if save_model is not None:
            from liftnn.models.io import check_writable

            check_writable(save_model)
        if seeds is None:
            results = [ln.train(model, data, method=method, seed=seed, **options)]
        else:
            results = ln.train(model, data, method=method, seeds=range(seed, seed + seeds),
                               **options)
    except LiftnnError as exc:
        fail(str(exc))
    if save_model is not None:
        from liftnn.models.io import save_model as _save

        best = min(results, key=lambda r: r.train_mse)
        _save(save_model, model, best.params)
        if len(results) > 1:
            console.print(f"saved seed {best.seed} (lowest train MSE) to {save_model}")
    for res in results:
        out = {
            "problem": problem, "n": data.n, "arch": model.arch, "activation": activation,
            "method": method, "init": model.init_name, "seed": int(res.seed),
            "data_seed": data_seed, "train_mse": res.train_mse, "test_mse": res.test_mse,
            "time_s": res.time_s, "iterations": int(res.nit), "status": res.status,
            "message": res.get("message", ""),
        }
        if len(results) > 1:
            out["batch_time_s"] = res.get("batch_time_s")
        if as_json:
            print(json.dumps(out))
        else:
            console.print(
                f"[bold]{method}[/] on {problem} (n={data.n}, {model.arch} {activation}, "
                f"{model.init_name}, seed {res.seed}): train MSE {res.train_mse:.4g}, test MSE "
                f"{res.test_mse:.4g}, {int(res.nit)} iterations, {res.time_s:.2f} s, status "
                f"{res.status}")


from liftnn.bench.commands import register as _register_bench

_register_bench(app)  # bench, report, demo


from liftnn.diagnostics.inspect_cmd import inspect as _inspect

app.command("inspect")(_inspect)


def main():  # console-script entry point
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
