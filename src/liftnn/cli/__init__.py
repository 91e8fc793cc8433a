"""The `liftnn` command line (typer + rich): train, bench, report, demo, inspect.

One module per command group: liftnn.cli.train (train; its --data path in liftnn.cli.data),
liftnn.cli.bench (bench, report, demo), liftnn.cli.inspect (inspect) and liftnn.cli.predict
(predict, evaluate).  Each command checks its arguments before any work; the library
raises LiftnnError on bad input, and this module is the one place that turns it into a one-line
message and exit status 2.  Nothing below the CLI imports typer or this package (see
docs/layout.md).
"""

from __future__ import annotations

import functools
import signal
import sys

import typer

from liftnn.cli import bench as _bench
from liftnn.cli import inspect as _inspect
from liftnn.cli import predict as _predict
from liftnn.cli import train as _train
from liftnn.cli.common import console
from liftnn.errors import LiftnnError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="liftnn: train neural networks as nonlinear optimal control problems.")


@app.callback()
def _setup() -> None:
    """liftnn: train neural networks as nonlinear optimal control problems."""
    from liftnn.compile_cache import enable_compile_cache

    enable_compile_cache()  # LIFTNN_COMPILE_CACHE=off switches it off


def fail(msg: str) -> None:
    """Print a one-line error and exit with status 2."""
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


def _guarded(command):
    """`command` with LiftnnError (bad input, named) turned into `fail`: exit status 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LiftnnError as exc:
            fail(str(exc))

    return run


for _name, _command in (("train", _train.train), ("bench", _bench.bench), ("report", _bench.report),
                        ("demo", _bench.demo), ("inspect", _inspect.inspect),
                        ("predict", _predict.predict), ("evaluate", _predict.evaluate)):
    app.command(_name)(_guarded(_command))


def _interrupt(signum, frame):
    """SIGTERM (and SIGINT) -> KeyboardInterrupt: the trainers return their best iterate so far,
    a bench stops its workers and keeps every finished row, as for Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def install_signal_handlers() -> None:
    """Make SIGTERM act as Ctrl-C in this process, and SIGINT too even where it was started
    ignored (a background job of a script).  Installed by `main` only: never by the library."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, _interrupt)


def main():  # console-script entry point
    install_signal_handlers()
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
