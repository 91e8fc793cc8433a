"""One progress bar for every trainer: `progress_bar(enabled, label, total)` (rich only).

    update = progress_bar(True, "adam", total=4000)
    update(120, "best loss 0.031")    # completed units (epochs, iterations) and a status text
    update(None)                      # done: removes the bar

With enabled=False the update function does nothing, so a solver calls it unconditionally.
"""

from __future__ import annotations

from collections.abc import Callable


def progress_bar(enabled: bool, label: str, total: int) -> Callable[..., None]:
    """A transient rich progress bar over `total` units; returns update(completed, text=None).

    update(None) stops the bar (call it in a `finally`).
    """
    if not enabled:
        return lambda *args, **kwargs: None
    from rich.progress import Progress

    prog = Progress(transient=True)
    task = prog.add_task(label, total=total)
    prog.start()

    def update(completed: int | None, text: str | None = None) -> None:
        if completed is None:
            prog.stop()
            return
        desc = label if text is None else f"{label}: {text}"
        prog.update(task, completed=completed, description=desc)

    return update
