"""A user's own data from a file: CSV (header row), .npz (arrays X and Y) or Parquet (pyarrow).

    read_table(path, target="y", features=None) -> Table(X (m, d_in), Y (m, d_out), features,
                                                          targets, path)
    file_dataset(path, target=..., features=None, test=None, test_fraction=0.2, seed=0,
                 scale=True) -> Dataset (meta["scaling"]: the Standardizer of the training rows)

Formats, by suffix:

- `.csv` / `.txt`: comma-separated with a header row of unique column names (read with the
  standard library's csv module).  Every cell of a used column must be a number; an empty cell
  or NA / NaN / null / ? is a missing value.
- `.npz`: arrays `X` (m, d_in) and `Y` (m,) or (m, d_out), loaded without pickle; the columns
  are named x0, x1, ... and y0, ... unless string arrays `features` / `targets` name them.
  `target` may then be omitted (all of Y).
- `.parquet` / `.pq`: read with pyarrow (`pip install pyarrow`), columns as for CSV.

`target` names one column or several ("a,b" or a list); `features` defaults to every other
column.  Missing values are never dropped silently: they raise, with their count and where the
first ones are.  Every problem (a missing file, an unknown column, a non-numeric cell, too few
rows for the split) raises LiftnnError naming it before any training.

The split: `test` (another file with the same columns) or, without it, a seeded shuffle holds
out round(test_fraction * m) rows (at least one when test_fraction > 0).  With `scale`, inputs
and targets are standardised with the training rows' statistics (liftnn.datasets.scaling); the
Dataset holds the scaled arrays and meta["scaling"] maps predictions back to the user's units.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liftnn.datasets.base import Dataset
from liftnn.datasets.scaling import Standardizer
from liftnn.errors import LiftnnError

CSV_SUFFIXES = (".csv", ".txt")
NPZ_SUFFIXES = (".npz",)
PARQUET_SUFFIXES = (".parquet", ".pq")
MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}
MIN_TRAIN = 2  # training rows the split must leave


@dataclass(frozen=True)
class Table:
    """Columns read from a file: X (m, d_in), Y (m, d_out) (Y None when no target was asked
    for), their names, and the path they came from."""

    X: np.ndarray
    Y: np.ndarray | None
    features: tuple[str, ...]
    targets: tuple[str, ...]
    path: str

    @property
    def m(self) -> int:
        return int(self.X.shape[0])


def _names(value, what: str) -> list[str] | None:
    """"a, b" / ["a", "b"] -> ["a", "b"]; None stays None; duplicates or empty raise."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else \
        [str(v).strip() for v in value]
    names = [v for v in names if v]
    if not names:
        raise LiftnnError(f"{what} names no column")
    dup = sorted({v for v in names if names.count(v) > 1})
    if dup:
        raise LiftnnError(f"{what} names column(s) {', '.join(map(repr, dup))} twice")
    return names


def _check_file(path) -> Path:
    p = Path(os.fspath(path))
    if not p.exists():
        raise LiftnnError(f"data file {p} does not exist")
    if not p.is_file():
        raise LiftnnError(f"data file {p} is not a regular file")
    return p


def _fmt_columns(header) -> str:
    return ", ".join(header)


def _pick(header: list[str], target, features, path, allow_no_target=False):
    """(feature names, target names) from the header; unknown names raise listing the columns."""
    targets = _names(target, "--target")
    feats = _names(features, "--features")
    if targets is None and not allow_no_target:
        raise LiftnnError(f"{path}: name the target column(s) (target=...); the columns are: "
                          f"{_fmt_columns(header)}")
    for what, names in (("target", targets), ("feature", feats)):
        unknown = [n for n in names or () if n not in header]
        if unknown:
            raise LiftnnError(f"{path}: {what} column(s) {', '.join(map(repr, unknown))} not in "
                              f"the header; the columns are: {_fmt_columns(header)}")
    targets = targets or []
    if feats is None:
        feats = [h for h in header if h not in targets]
    both = [n for n in feats if n in targets]
    if both:
        raise LiftnnError(f"{path}: column(s) {', '.join(map(repr, both))} cannot be both a "
                          "feature and a target")
    if not feats:
        raise LiftnnError(f"{path}: no feature column is left (the columns are: "
                          f"{_fmt_columns(header)})")
    return feats, targets


def _missing_error(path, where: list[tuple[int, str]], total: int, unit: str = "row"):
    shown = ", ".join(f"{unit} {r} column {c!r}" for r, c in where[:5])
    more = f" and {total - 5} more" if total > 5 else ""
    raise LiftnnError(f"{path}: {total} missing value(s) ({shown}{more}); liftnn drops no rows "
                      "silently: fill them in or remove those rows")


def _numeric(path, header: list[str], cols: dict[str, list[str]], used: list[str],
             first_row: int) -> dict[str, np.ndarray]:
    """Column strings -> float64 columns; a non-numeric cell raises naming its row and column,
    missing values raise with their count and first places.  Rows are numbered as data rows
    from 1 (the header is row 0)."""
    out, missing = {}, []
    for k, name in enumerate(used):
        vals = np.empty(len(cols[name]))
        for i, cell in enumerate(cols[name]):
            text = cell.strip()
            if text.lower() in MISSING:
                missing.append((i + first_row, k, name))
                vals[i] = np.nan
                continue
            try:
                v = float(text)
            except ValueError:
                raise LiftnnError(f"{path}: row {i + first_row}, column {name!r}: {cell!r} is "
                                  "not a number") from None
            if not math.isfinite(v):
                raise LiftnnError(f"{path}: row {i + first_row}, column {name!r}: {cell!r} is "
                                  "not a finite number")
            vals[i] = v
        out[name] = vals
    if missing:  # in file order: by row, then by column
        _missing_error(path, [(r, c) for r, _, c in sorted(missing)[:5]], len(missing))
    return out


def _read_csv(p: Path, target, features, allow_no_target=False) -> Table:
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise LiftnnError(f"{p}: not a UTF-8 text file ({exc.reason})") from None
    except (OSError, csv.Error) as exc:
        raise LiftnnError(f"{p}: cannot be read as CSV ({exc})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]  # blank lines are not rows
    if not rows:
        raise LiftnnError(f"{p}: the file is empty (a CSV needs a header row and data rows)")
    header = [h.strip() for h in rows[0]]
    if any(not h for h in header):
        raise LiftnnError(f"{p}: the header row has an empty column name (column "
                          f"{header.index('') + 1})")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise LiftnnError(f"{p}: the header names column(s) {', '.join(map(repr, dup))} twice")
    try:
        [float(h) for h in header]
    except ValueError:
        pass
    else:
        raise LiftnnError(f"{p}: the first row is all numbers; a CSV needs a header row of "
                          "column names")
    body = rows[1:]
    for i, r in enumerate(body, start=1):
        if len(r) != len(header):
            raise LiftnnError(f"{p}: row {i} has {len(r)} cells; the header has {len(header)}")
    feats, targets = _pick(header, target, features, p, allow_no_target)
    cols = {h: [r[j] for r in body] for j, h in enumerate(header)}
    num = _numeric(p, header, cols, feats + targets, first_row=1)
    return _table(p, num, feats, targets)


def _table(p, num: dict[str, np.ndarray], feats, targets) -> Table:
    m = len(next(iter(num.values())))
    if m == 0:
        raise LiftnnError(f"{p}: no data rows below the header")
    X = np.stack([num[f] for f in feats], 1)
    Y = np.stack([num[t] for t in targets], 1) if targets else None
    return Table(X, Y, tuple(feats), tuple(targets), str(p))


def _read_npz(p: Path, target, features, allow_no_target=False) -> Table:
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise LiftnnError(f"{p}: holds data that needs pickle, which liftnn never loads "
                          f"({exc})") from None
    except (OSError, EOFError) as exc:
        raise LiftnnError(f"{p}: not a readable .npz file ({exc})") from None
    if "X" not in arrays:
        raise LiftnnError(f"{p}: no array 'X' (a data .npz holds X (m, d_in) and Y (m, d_out)); "
                          f"it has {', '.join(sorted(arrays)) or 'no arrays'}")
    X = arrays["X"]
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise LiftnnError(f"{p}: X must be 2-D (samples, features); got shape {X.shape}")
    Y = arrays.get("Y")
    if Y is not None:
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
            raise LiftnnError(f"{p}: Y must be (m,) or (m, d_out) with m = {X.shape[0]} rows of "
                              f"X; got shape {Y.shape}")
    xnames = [str(s) for s in arrays.get("features", [f"x{j}" for j in range(X.shape[1])])]
    ynames = [] if Y is None else [str(s) for s in arrays.get(
        "targets", [f"y{j}" for j in range(Y.shape[1])])]
    if len(xnames) != X.shape[1] or len(ynames) != (0 if Y is None else Y.shape[1]):
        raise LiftnnError(f"{p}: the name arrays 'features' / 'targets' do not match the widths "
                          "of X / Y")
    header = xnames + ynames
    if target is None and Y is not None:
        target = ynames
    feats, targets = _pick(header, target, features or xnames, p, allow_no_target)
    data = {**{n: X[:, j] for j, n in enumerate(xnames)},
            **{n: Y[:, j] for j, n in enumerate(ynames)}}
    return _table(p, _numeric_arrays(p, data, feats + targets), feats, targets)


def _numeric_arrays(p, data: dict, used: list[str]) -> dict[str, np.ndarray]:
    """Numeric columns (npz, parquet): non-numeric columns and missing values raise."""
    out, where, total = {}, [], 0
    for k, name in enumerate(used):
        col = np.asarray(data[name])
        if not (np.issubdtype(col.dtype, np.number) or col.dtype == bool) or \
                np.issubdtype(col.dtype, np.complexfloating):
            bad = next((i for i, v in enumerate(col) if not _is_number(v)), 0)
            raise LiftnnError(f"{p}: row {bad + 1}, column {name!r}: {col[bad]!r} is not a "
                              f"number (the column has dtype {col.dtype})")
        col = col.astype(np.float64)
        nan = np.flatnonzero(np.isnan(col))
        total += nan.size
        where += [(int(i) + 1, k, name) for i in nan[:5]]
        inf = np.flatnonzero(np.isinf(col))
        if inf.size:
            raise LiftnnError(f"{p}: row {inf[0] + 1}, column {name!r} is not a finite number")
        out[name] = col
    if total:
        _missing_error(p, [(r, c) for r, _, c in sorted(where)[:5]], total)
    return out


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return v is not None


def _read_parquet(p: Path, target, features, allow_no_target=False) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LiftnnError(f"{p}: reading Parquet needs pyarrow, which is not installed: "
                          "pip install pyarrow (or save the data as CSV)") from None
    try:
        tab = pq.read_table(p)
    except Exception as exc:  # noqa: BLE001 - pyarrow's many error types
        raise LiftnnError(f"{p}: not a readable Parquet file ({exc})") from None
    header = list(tab.column_names)
    feats, targets = _pick(header, target, features, p, allow_no_target)
    data = {}
    for name in feats + targets:
        col = tab.column(name)
        nulls = col.null_count
        values = col.to_numpy(zero_copy_only=False)
        if nulls:
            values = np.asarray([np.nan if v is None else v for v in col.to_pylist()], dtype=object)
            try:
                values = values.astype(np.float64)
            except (TypeError, ValueError):
                pass
        data[name] = values
    return _table(p, _numeric_arrays(p, data, feats + targets), feats, targets)


def read_table(path, target=None, features=None, *, allow_no_target: bool = False) -> Table:
    """Read the feature and target columns of a data file (module docstring) -> Table.

    target: a column name, "a,b" or a list (required unless the file is an .npz with Y, or
    allow_no_target, used for prediction inputs); features: the input columns (default: every
    column that is not a target).  X: (m, len(features)), Y: (m, len(targets)) float64.
    """
    p = _check_file(path)
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return _read_csv(p, target, features, allow_no_target)
    if suffix in NPZ_SUFFIXES:
        return _read_npz(p, target, features, allow_no_target)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(p, target, features, allow_no_target)
    raise LiftnnError(f"data file {p}: unknown format {suffix or '(no suffix)'!r}; use .csv "
                      "(header row), .npz (arrays X, Y) or .parquet")


def columns(path) -> list[str]:
    """The column names of a data file: a CSV's header, an .npz's feature then target names,
    a Parquet file's schema (module docstring)."""
    p = _check_file(path)
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        try:
            with open(p, newline="", encoding="utf-8-sig") as fh:
                for row in csv.reader(fh):
                    if any(c.strip() for c in row):
                        return [h.strip() for h in row]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LiftnnError(f"{p}: cannot be read as CSV ({exc})") from None
        raise LiftnnError(f"{p}: the file is empty (a CSV needs a header row and data rows)")
    if suffix in NPZ_SUFFIXES:
        tab = read_table(p, allow_no_target=True)
        return list(tab.features) + list(tab.targets)
    if suffix in PARQUET_SUFFIXES:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise LiftnnError(f"{p}: reading Parquet needs pyarrow, which is not installed: "
                              "pip install pyarrow (or save the data as CSV)") from None
        try:
            return list(pq.read_schema(p).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow's many error types
            raise LiftnnError(f"{p}: not a readable Parquet file ({exc})") from None
    return read_table(p).features  # raises: unknown format


def split_rows(m: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of m rows: a seeded shuffle; round(test_fraction * m) test
    rows, at least one when test_fraction > 0; at least MIN_TRAIN training rows or LiftnnError."""
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or \
            not 0.0 <= test_fraction < 1.0:
        raise LiftnnError(f"--test-fraction must be a number in [0, 1); got {test_fraction!r}")
    n_test = 0 if test_fraction == 0 else max(1, round(test_fraction * m))
    if m - n_test < MIN_TRAIN:
        raise LiftnnError(f"the data have {m} row(s): too few for a test fraction of "
                          f"{test_fraction:g} ({n_test} test rows) and at least {MIN_TRAIN} "
                          "training rows")
    perm = np.random.default_rng(int(seed)).permutation(m)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def file_dataset(path, target=None, features=None, *, test=None, test_fraction: float = 0.2,
                 seed: int = 0, scale: bool = True) -> Dataset:
    """A Dataset from a data file (module docstring), split and (with scale) standardised.

    x_train (m_train, d_in), y_train (m_train, d_out), x_test, y_test: the network's units
    (standardised with the training rows when scale).  meta: name (the file's stem), source,
    test_source, features, targets, data_seed, test_fraction, n, n_test and scaling (a
    Standardizer that maps the network's outputs back to the user's units; identity when
    scale is False, but with the column names).
    """
    tab = read_table(path, target, features)
    if test is not None:
        held = read_table(test, list(tab.targets), list(tab.features))
        if tab.m < MIN_TRAIN:
            raise LiftnnError(f"{tab.path}: {tab.m} row(s); training needs at least {MIN_TRAIN}")
        xtr, ytr, xte, yte = tab.X, tab.Y, held.X, held.Y
        frac = None
    else:
        tr, te = split_rows(tab.m, test_fraction, seed)
        xtr, ytr, xte, yte = tab.X[tr], tab.Y[tr], tab.X[te], tab.Y[te]
        frac = float(test_fraction)
    if scale:
        sc = Standardizer.fit(xtr, ytr, features=tab.features, targets=tab.targets)
    else:
        sc = Standardizer(features=tab.features, targets=tab.targets)
    meta = {"name": Path(tab.path).stem, "source": tab.path,
            "test_source": None if test is None else str(test), "features": list(tab.features),
            "targets": list(tab.targets), "data_seed": int(seed), "test_fraction": frac,
            "n": int(xtr.shape[0]), "n_test": int(xte.shape[0]), "scaled": bool(scale),
            "scaling": sc}
    return Dataset(sc.transform_x(xtr), sc.transform_y(ytr), sc.transform_x(xte),
                   sc.transform_y(yte), meta)
