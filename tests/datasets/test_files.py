"""liftnn.datasets.files (a user's data file -> Table / Dataset) and liftnn.datasets.scaling."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest

import liftnn as ln
from liftnn.datasets.files import columns, file_dataset, read_table, split_rows
from liftnn.datasets.scaling import Standardizer
from liftnn.errors import LiftnnError


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


@pytest.fixture
def table_csv(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -50.0]
    y = X @ [1.0, 0.2, 0.01] + 7.0
    rows = [[*x, t, f"id{i}"] for i, (x, t) in enumerate(zip(X, y))]
    return write_csv(tmp_path / "d.csv", ["a", "b", "c", "y", "name"], rows), X, y


def test_csv_columns_targets_and_features(table_csv):
    path, X, y = table_csv
    tab = read_table(path, target="y", features="a,b,c")
    assert tab.features == ("a", "b", "c") and tab.targets == ("y",)
    assert tab.X.shape == (20, 3) and tab.Y.shape == (20, 1)
    np.testing.assert_allclose(tab.X, X, rtol=1e-15)
    np.testing.assert_allclose(tab.Y[:, 0], y, rtol=1e-15)
    tab2 = read_table(path, target=["a", "y"], features=["c"])
    assert tab2.Y.shape == (20, 2) and tab2.features == ("c",)
    assert columns(path) == ["a", "b", "c", "y", "name"]


def test_default_features_are_every_non_target_column(tmp_path):
    p = write_csv(tmp_path / "t.csv", ["u", "y", "v"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    tab = read_table(p, target="y")
    assert tab.features == ("u", "v")
    np.testing.assert_array_equal(tab.X, [[1, 3], [4, 6], [7, 9]])


def test_npz_with_and_without_names(tmp_path):
    X, Y = np.arange(12.0).reshape(6, 2), np.arange(6.0)
    np.savez(tmp_path / "a.npz", X=X, Y=Y)
    tab = read_table(tmp_path / "a.npz")
    assert tab.features == ("x0", "x1") and tab.targets == ("y0",)
    np.testing.assert_array_equal(tab.Y[:, 0], Y)
    np.savez(tmp_path / "b.npz", X=X, Y=np.c_[Y, -Y], features=np.array(["p", "q"]),
             targets=np.array(["s", "t"]))
    tab = read_table(tmp_path / "b.npz", target="t", features="q")
    assert tab.features == ("q",) and tab.targets == ("t",)
    np.testing.assert_array_equal(tab.Y[:, 0], -Y)


def test_parquet_without_pyarrow_names_the_install(tmp_path, monkeypatch):
    p = tmp_path / "d.parquet"
    p.write_bytes(b"PAR1")
    real = builtins.__import__

    def no_pyarrow(name, *a, **kw):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(LiftnnError, match="pip install pyarrow"):
        read_table(p, target="y")


def test_parquet_with_pyarrow(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]}), tmp_path / "d.parquet")
    tab = read_table(tmp_path / "d.parquet", target="y")
    np.testing.assert_array_equal(tab.X[:, 0], [1, 2, 3])


# ---- bad input: each a LiftnnError naming the problem ----------------------------------------


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(LiftnnError, match="does not exist"):
        read_table(tmp_path / "nope.csv", target="y")
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(LiftnnError, match="unknown format '.xlsx'"):
        read_table(tmp_path / "d.xlsx", target="y")


def test_unknown_target_or_feature_lists_the_columns(table_csv):
    path, _, _ = table_csv
    with pytest.raises(LiftnnError, match=r"target column\(s\) 'price' not in the header; the "
                                          r"columns are: a, b, c, y, name"):
        read_table(path, target="price")
    with pytest.raises(LiftnnError, match=r"feature column\(s\) 'd' not in the header.*a, b, c"):
        read_table(path, target="y", features="a,d")
    with pytest.raises(LiftnnError, match="name the target"):
        read_table(path)
    with pytest.raises(LiftnnError, match="both a feature and a target"):
        read_table(path, target="y", features="a,y")


def test_non_numeric_cell_names_row_and_column(table_csv, tmp_path):
    path, _, _ = table_csv
    # the default features include the text column "name"
    with pytest.raises(LiftnnError, match=r"row 1, column 'name': 'id0' is not a number"):
        read_table(path, target="y")
    p = write_csv(tmp_path / "t.csv", ["a", "y"], [[1, 2], [3, "x7"], [5, 6]])
    with pytest.raises(LiftnnError, match=r"row 2, column 'y': 'x7' is not a number"):
        read_table(p, target="y")


def test_missing_values_counted_and_located_not_dropped(tmp_path):
    p = write_csv(tmp_path / "t.csv", ["a", "b", "y"],
                  [[1, "", 2], [3, 4, "NA"], [5, 6, 7], ["nan", 1, 1]])
    with pytest.raises(LiftnnError, match=r"3 missing value\(s\) \(row 1 column 'b', row 2 "
                                          r"column 'y', row 4 column 'a'\).*drops no rows"):
        read_table(p, target="y")
    np.savez(tmp_path / "m.npz", X=np.array([[1.0], [np.nan]]), Y=np.array([1.0, 2.0]))
    with pytest.raises(LiftnnError, match=r"1 missing value\(s\) \(row 2 column 'x0'\)"):
        read_table(tmp_path / "m.npz")


@pytest.mark.parametrize("text, match", [
    ("a,y\n1,2\n3\n", "row 2 has 1 cells; the header has 2"),
    ("1,2\n3,4\n", "header row"),
    ("", "empty"),
    ("a,y\n", "no data rows"),
    ("a,a,y\n1,2,3\n", "'a' twice"),
], ids=["ragged", "headerless", "empty", "no-rows", "repeated-name"])
def test_ragged_rows_headerless_and_empty_files(tmp_path, text, match):
    p = tmp_path / "r.csv"
    p.write_text(text)
    with pytest.raises(LiftnnError, match=match):
        read_table(p, target="y")


def test_too_few_rows_for_the_split(tmp_path):
    p = write_csv(tmp_path / "t.csv", ["a", "y"], [[1, 2], [3, 4]])
    with pytest.raises(LiftnnError, match="2 row.*too few for a test fraction of 0.2"):
        file_dataset(p, "y")
    with pytest.raises(LiftnnError, match=r"\[0, 1\)"):
        split_rows(10, 1.5, 0)
    d = file_dataset(p, "y", test_fraction=0.0)  # no test split: both rows train
    assert d.n == 2 and d.x_test.shape == (0, 1)


# ---- split and standardisation ----------------------------------------------------------------


def test_split_is_seeded_and_disjoint(table_csv):
    path, X, y = table_csv
    tr, te = split_rows(20, 0.25, seed=5)
    assert len(te) == 5 and len(tr) == 15 and not set(tr) & set(te)
    assert np.array_equal(split_rows(20, 0.25, 5)[1], te)
    assert not np.array_equal(split_rows(20, 0.25, 6)[1], te)
    d = file_dataset(path, "y", features="a,b,c", test_fraction=0.25, seed=5)
    sc = d.meta["scaling"]
    assert d.n == 15 and d.x_test.shape == (5, 3)
    np.testing.assert_allclose(sc.x_mean, X[tr].mean(0), rtol=1e-12)
    np.testing.assert_allclose(d.x_train.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(d.x_train.std(0), 1, rtol=1e-12)
    np.testing.assert_allclose(sc.inverse_y(d.y_test)[:, 0], y[te], rtol=1e-12)
    assert d.scaling is sc and d.meta["features"] == ["a", "b", "c"]


def test_no_scale_keeps_units_and_test_file(table_csv, tmp_path):
    path, X, _ = table_csv
    test = write_csv(tmp_path / "test.csv", ["y", "c", "b", "a"], [[1, 2, 3, 4], [5, 6, 7, 8]])
    d = file_dataset(path, "y", features="a,b,c", test=test, scale=False)
    assert d.n == 20 and d.scaling.identity and d.scaling.features == ("a", "b", "c")
    np.testing.assert_array_equal(d.x_test, [[4, 3, 2], [8, 7, 6]])  # by name, not position
    np.testing.assert_array_equal(d.x_train, X)
    bad = write_csv(tmp_path / "bad.csv", ["a", "b", "y"], [[1, 2, 3]])
    with pytest.raises(LiftnnError, match=r"'c' not in the header"):
        file_dataset(path, "y", features="a,b,c", test=bad)


def test_standardizer_round_trip_and_checks():
    sc = Standardizer.fit(np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[2.0], [4.0]]),
                          features=["p", "q"], targets=["t"])
    np.testing.assert_array_equal(sc.x_std, [1.0, 1.0])  # the constant column keeps std 1
    back = Standardizer.from_dict(json.loads(json.dumps(sc.to_dict())))
    for k in ("x_mean", "x_std", "y_mean", "y_std"):
        np.testing.assert_array_equal(getattr(back, k), getattr(sc, k))
    assert back.features == ("p", "q") and back.targets == ("t",)
    Z = np.array([[0.5], [-1.0]])
    np.testing.assert_allclose(sc.transform_y(sc.inverse_y(Z)), Z, rtol=1e-15)
    with pytest.raises(LiftnnError, match="unknown key.*'colour'"):
        Standardizer.from_dict({"colour": 1})
    with pytest.raises(LiftnnError, match="has 1 names"):
        Standardizer(x_mean=[0, 0], x_std=[1, 1], features=["a"])
    with pytest.raises(LiftnnError, match="must be > 0"):
        Standardizer(y_mean=[0], y_std=[0])


def test_shipped_standardised_sets_carry_their_scaling():
    pytest.importorskip("sklearn")
    d = ln.datasets.load("friedman1", n=20, n_test=5)
    sc = d.scaling
    assert sc is not None and sc.d_in == 10 and sc.d_out == 1
    assert sc.y_mean[0] == pytest.approx(d.meta["y_mean"])
    assert ln.datasets.load("sin2", n=10).scaling is None
    nar = ln.datasets.load("laser", n=30)
    assert nar.scaling.d_in == nar.d_in and nar.scaling.d_out == 1
