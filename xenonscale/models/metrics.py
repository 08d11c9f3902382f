"""Regression metrics on arrays: MAE, RMSE, R², Pearson r, Spearman ρ (per target).

Examples
--------
>>> import numpy as np
>>> from xenonscale.models.metrics import regression_metrics
>>> m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
>>> round(m["mae"], 4), round(m["rmse"], 4), round(m["spearman"], 4)
(0.3333, 0.5774, 1.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["METRICS", "regression_metrics"]

METRICS = ("mae", "rmse", "r2", "pearson", "spearman")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Metrics of one target (1-D arrays); NaN where undefined (fewer than 2 rows)."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if not len(y_true):
        return dict.fromkeys(METRICS, float("nan")) | {"n": 0}
    error = y_pred - y_true
    ss_tot = float(((y_true - y_true.mean()) ** 2).sum())
    out = {
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt((error**2).mean())),
        "r2": 1.0 - float((error**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
        "pearson": _corr(y_true, y_pred),
        "spearman": _corr(_rank(y_true), _rank(y_pred)),
        "n": len(y_true),
    }
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _rank(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(values)
