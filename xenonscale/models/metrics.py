"""Metrics on arrays, per target: regression (MAE, RMSE, R², Pearson r, Spearman ρ)
and binary classification (ROC-AUC, accuracy, F1, log-loss, Brier score).

Examples
--------
>>> import numpy as np
>>> from xenonscale.models.metrics import regression_metrics
>>> m = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
>>> round(m["mae"], 4), round(m["rmse"], 4), round(m["spearman"], 4)
(0.3333, 0.5774, 1.0)
>>> from xenonscale.models.metrics import classification_metrics
>>> c = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
>>> c["roc_auc"], c["accuracy"], c["f1"], c["positives"], c["n"]
(0.75, 0.5, 0.5, 2, 4)
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASSIFICATION_METRICS", "METRICS", "classification_metrics", "regression_metrics"]

METRICS = ("mae", "rmse", "r2", "pearson", "spearman")
#: What :func:`classification_metrics` reports (besides the counts ``positives`` and ``n``).
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "log_loss", "brier")
#: Probabilities are clipped to [ε, 1 − ε] for the log-loss (float64 machine epsilon, as sklearn).
_EPS = float(np.finfo(np.float64).eps)


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


def classification_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Metrics of one binary target: 0/1 truths ``y_true``, class-1 probabilities ``p``.

    ``roc_auc`` (ties count one half; NaN unless both classes are present),
    ``accuracy`` and ``f1`` at the threshold 0.5 (``p >= 0.5`` is class 1; F1
    is 0 when there is no true positive), ``log_loss`` (mean binary cross-
    entropy, ``p`` clipped to [ε, 1 − ε]), ``brier`` (mean squared error of
    ``p``), ``positives`` and ``n`` (rows).

    >>> m = classification_metrics([1, 0, 1], [0.8, 0.3, 0.5])
    >>> round(m["log_loss"], 4), round(m["brier"], 4), m["accuracy"]
    (0.4243, 0.1267, 1.0)
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(p, dtype=np.float64).ravel()
    if len(y_true) != len(p):
        raise ValueError(f"{len(y_true)} truths but {len(p)} probabilities: give one per row")
    if not len(y_true):
        return dict.fromkeys(CLASSIFICATION_METRICS, float("nan")) | {"positives": 0, "n": 0}
    positive = y_true == 1
    predicted = p >= 0.5
    tp = int((predicted & positive).sum())
    wrong = int((predicted != positive).sum())
    clipped = np.clip(p, _EPS, 1 - _EPS)
    return {
        "roc_auc": _roc_auc(positive, p),
        "accuracy": float((predicted == positive).mean()),
        "f1": 2 * tp / (2 * tp + wrong) if tp else 0.0,
        "log_loss": float(-np.mean(np.where(positive, np.log(clipped), np.log1p(-clipped)))),
        "brier": float(np.mean((p - y_true) ** 2)),
        "positives": int(positive.sum()),
        "n": len(y_true),
    }


def _roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (tied scores: mid-ranks)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    ranks = _rank(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
