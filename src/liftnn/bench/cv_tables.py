"""Real tables for `liftnn bench cv` from two optional packages that ship their data (nothing is
downloaded): statsmodels' bundled data sets and vega_datasets' local ones.  Neither package is a
dependency of liftnn; a table whose package is missing is refused before any cell runs
(`check`).  docs/bayes.md "The leave-one-out check" and docs/sklearn.md report them.

Regression (y as given; bench cv standardises it):
- engel: food expenditure on income (statsmodels, 235 households);
- grunfeld: investment on firm value and capital (statsmodels, 220 rows);
- scotland: the 1997 devolution "yes" share on 7 council statistics (statsmodels, 32 rows);
- stackloss: stack loss on 3 plant conditions (statsmodels, 21 rows);
- star98: the proportion of pupils above the national maths median on 20 school statistics
  (statsmodels, 303 rows);
- statecrime: violent crime rate on 4 state statistics (statsmodels, 51 rows);
- fair: the time spent in affairs on 8 survey answers (statsmodels, the first 800 of 6366 rows);
- cars: miles per gallon (vega_datasets, 392 cars: cylinders, displacement, horsepower, weight,
  acceleration, year, origin one-hot);
- seattle: the daily maximum temperature (vega_datasets, the first 600 days: season as sin/cos
  of the day of the year, precipitation, wind, year).

Classification (labels):
- fair-affairs: any affair or none (statsmodels, every 8th row, 796);
- anes96: party identification, 7 classes (statsmodels, 944 respondents, 5 numeric answers);
- spector: grade improved or not (statsmodels, 32 pupils);
- seattle-weather: drizzle, fog, rain, snow or sun from precipitation, temperatures and wind
  (vega_datasets, 1461 days).
"""

from __future__ import annotations

import numpy as np

from liftnn.errors import LiftnnError

#: table -> the package its data come from
PACKAGE = {"engel": "statsmodels", "grunfeld": "statsmodels", "scotland": "statsmodels",
           "stackloss": "statsmodels", "star98": "statsmodels", "statecrime": "statsmodels",
           "fair": "statsmodels", "cars": "vega_datasets", "seattle": "vega_datasets",
           "fair-affairs": "statsmodels", "anes96": "statsmodels", "spector": "statsmodels",
           "seattle-weather": "vega_datasets"}
CLASSIFICATION = ("fair-affairs", "anes96", "spector", "seattle-weather")
TABLES = tuple(PACKAGE)


def check(names) -> None:
    """LiftnnError naming the package to install when a table's package is missing."""
    import importlib.util

    for name in names:
        package = PACKAGE.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise LiftnnError(f"cv data set {name!r} comes with {package}, which is not "
                              f"installed (pip install {package.replace('_', '-')})")


def _statsmodels(name: str):
    """(exog's numeric columns, endog) of a statsmodels data set, rows with NaN dropped; a
    two-column endog (successes, failures) becomes the proportion."""
    import statsmodels.api as sm

    data = getattr(sm.datasets, name).load_pandas()
    X = data.exog.select_dtypes("number").to_numpy(np.float64)
    y = data.endog
    if getattr(y, "ndim", 1) == 2:
        y = y.iloc[:, 0] / y.sum(axis=1)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(X).all(axis=1) & np.isfinite(y)
    return X[ok], y[ok]


def _cars():
    import pandas as pd
    from vega_datasets import data

    d = data.cars().dropna()
    X = pd.get_dummies(d[["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs",
                          "Acceleration", "Origin"]], columns=["Origin"], dtype=float)
    X["year"] = pd.to_datetime(d["Year"]).dt.year
    return X.to_numpy(np.float64), d["Miles_per_Gallon"].to_numpy(np.float64)


def _seattle():
    import pandas as pd
    from vega_datasets import data

    d = data.seattle_weather()
    t = pd.to_datetime(d["date"])
    day = 2 * np.pi * t.dt.dayofyear.to_numpy(np.float64) / 365.25
    X = np.column_stack([np.sin(day), np.cos(day), d["precipitation"], d["wind"], t.dt.year])
    return X[:600], d["temp_max"].to_numpy(np.float64)[:600]


def _seattle_weather():
    from vega_datasets import data

    d = data.seattle_weather()
    X = d[["precipitation", "temp_max", "temp_min", "wind"]].to_numpy(np.float64)
    return X, d["weather"].to_numpy()


def load(name: str):
    """(X, y) of a TABLES entry (y unscaled targets, or labels for CLASSIFICATION)."""
    check([name])
    if name == "cars":
        return _cars()
    if name == "seattle":
        return _seattle()
    if name == "seattle-weather":
        return _seattle_weather()
    if name == "fair":
        X, y = _statsmodels("fair")
        return X[:800], y[:800]
    if name == "fair-affairs":
        X, y = _statsmodels("fair")
        return X[::8], (y[::8] > 0).astype(int)
    if name in ("anes96", "spector"):
        X, y = _statsmodels(name)
        return X, y.astype(int)
    if name in PACKAGE:
        return _statsmodels(name)
    raise LiftnnError(f"unknown cv table {name!r}; choose from {', '.join(TABLES)}")
