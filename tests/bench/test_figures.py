"""The report's figures draw what their captions say (issue 22): the same quantity for every
method in the convergence figure, no empty histogram panels, no axis label cut off.  Checked on
the plotted data, not on pixels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from liftnn.bench import figures


def _hist(key_values: dict, n: int = 4) -> list[dict]:
    return [{"iter": k, "time": 0.1 * k, **{key: vals[k] for key, vals in key_values.items()}}
            for k in range(n)]


ALM = _hist({"loss": [4.0, 3.0, 2.0, 1.0], "train_mse": [2.0, 1.5, 1.0, 0.5]})
LM = _hist({"loss": [3.0, 2.0, 1.0, 0.25]})


def _runs(cell: str) -> dict:
    return {(cell, "alm", 0): {"history": ALM}, (cell, "lm", 0): {"history": LM}}


def _y(lines, cell, method):
    (y,) = [y for m, _s, _it, _t, y in lines[cell] if m == method]
    return list(y)


def test_convergence_plots_train_mse_for_every_method_of_a_plain_mse_cell():
    lines, ylabels, left_out = figures.convergence_lines(
        ["c"], ["alm", "lm"], _runs("c"), {"c": {"loss": "mse", "weight_decay": 0.0}})
    assert _y(lines, "c", "alm") == [2.0, 1.5, 1.0, 0.5]  # alm's train_mse, not its merit "loss"
    assert _y(lines, "c", "lm") == [3.0, 2.0, 1.0, 0.25]  # the objective is the MSE itself
    assert ylabels["c"] == "training MSE" and left_out == []


def test_convergence_leaves_out_an_objective_with_weight_decay_and_says_so():
    lines, _, left_out = figures.convergence_lines(
        ["c"], ["alm", "lm"], _runs("c"), {"c": {"loss": "mse", "weight_decay": 1e-2}})
    assert [m for m, *_ in lines["c"]] == ["alm"] and left_out == ["c: lm"]


def test_convergence_of_a_cross_entropy_cell_plots_the_objective():
    runs = {("k", "lm", 0): {"history": LM}, ("k", "adam", 0): {"history": LM}}
    lines, ylabels, _ = figures.convergence_lines(
        ["k"], ["lm", "adam"], runs, {"k": {"loss": "cross_entropy", "weight_decay": 1e-3}})
    assert _y(lines, "k", "lm") == _y(lines, "k", "adam") == [3.0, 2.0, 1.0, 0.25]
    assert "cross-entropy" in ylabels["k"]


def test_convergence_axis_labels_fit_inside_the_figure():
    lines, ylabels, _ = figures.convergence_lines(["c"], ["alm", "lm"], _runs("c"))
    fig = figures._convergence_figure(["c"], lines, ylabels, {"alm": "r", "lm": "b"})
    fig.tight_layout()
    fig.canvas.draw()
    box = fig.bbox
    for ax in fig.axes:
        ext = ax.xaxis.label.get_window_extent()
        assert box.x0 <= ext.x0 and ext.x1 <= box.x1, ax.get_xlabel()
    figures._plt().close(fig)


def _row(method, cell, value, status="max_iter"):
    return {"method": method, "cell": cell, "status": status, "train_mse": value}


def test_histogram_has_no_panel_for_a_method_without_values(tmp_path):
    rows = [_row("lm", "c", 0.1), _row("lm", "c", 0.3),
            _row("sklearn-lbfgs", "c", math.nan, "error"), _row("sklearn-lbfgs", "c", math.nan)]
    vals = figures.histogram_values(rows, ["c"], ["lm", "sklearn-lbfgs"])
    assert vals == {"lm": [[0.1, 0.3]]}
    ((name, cap),) = figures.fig_histograms(tmp_path, rows, ["c"], ["lm", "sklearn-lbfgs"],
                                            math.inf, "train_mse")
    assert (tmp_path / name).exists() and "(not drawn): sklearn-lbfgs" in cap


def test_save_figure_keeps_everything_inside_the_image(tmp_path, monkeypatch):
    plt = figures._plt()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.set_xlabel("a label much longer than the axes are wide, which used to be cut off " * 2)
    seen = {}
    real = type(fig).savefig
    monkeypatch.setattr(type(fig), "savefig",
                        lambda self, path, **kw: (seen.update(kw), real(self, path, **kw))[1])
    figures.save_figure(fig, tmp_path / "f.png")
    assert seen.get("bbox_inches") == "tight"
    img = plt.imread(tmp_path / "f.png")
    assert img.shape[1] > 2 * 110  # the image grew to hold the label
    assert np.isfinite(img).all()


@pytest.mark.parametrize("flag, drawn", [(False, False), (True, True)])
def test_jacobian_spy_plots_only_for_suites_about_them(tmp_path, monkeypatch, flag, drawn):
    from liftnn.bench import report

    called = []
    monkeypatch.setattr(figures, "fig_jacobian", lambda out, meta: (called.append(1), ([], []))[1])
    meta = {"jacobian_figure": True} if flag else {}
    rows = [{**_row("lm", "c", 0.1), "seed": 0}]
    report._draw_figures(tmp_path, meta, rows, ["c"], ["lm"], {}, {})
    assert bool(called) is drawn
