"""Plots of a trained model: the learning curve, and the parity plot or, for a classifier,
the ROC curve and the calibration (reliability) plot.

All draw on a :class:`matplotlib.figure.Figure` (never ``pyplot``).
:func:`training_figures` saves them for a
:class:`~xenonscale.models.training.TrainResult` beside its weights (what
``xenonscale train`` registers in the zoo with the model): the parity plot
for a regression, ROC and calibration plots for a classification.

Examples
--------
>>> import numpy as np
>>> from xenonscale.viz.training import learning_curve, parity_plot
>>> fig = learning_curve([{"epoch": 0, "train_loss": 1.0, "val_loss": 1.2, "val_mae": 0.5},
...                       {"epoch": 1, "train_loss": 0.6, "val_loss": 0.8, "val_mae": 0.3}])
>>> len(fig.axes)
2
>>> fig = parity_plot(np.arange(5.0), np.arange(5.0) + 0.1, label="y (eV)")
>>> fig.axes[0].get_xlabel()
'true y (eV)'
>>> from xenonscale.viz.training import calibration_plot, roc_plot
>>> truth, p = np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.4, 0.9])
>>> roc_plot({"is_metal": (truth, p)}).axes[0].get_legend().get_texts()[0].get_text()
'is_metal (AUC 0.750)'
>>> calibration_plot(truth, p, bins=2).axes[0].get_ylabel()
'fraction of class 1'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from xenonscale.models.training import TrainResult

__all__ = [
    "calibration_plot",
    "learning_curve",
    "parity_plot",
    "roc_curve",
    "roc_plot",
    "training_figures",
]

#: How the learning curve labels the monitored validation metric.
_METRIC_LABELS = {
    "val_mae": "validation MAE (target units)",
    "val_logloss": "validation log-loss",
}


def learning_curve(
    history: Sequence[Mapping[str, float]], *, title: str = "", metric: str | None = None
) -> Figure:
    """Training and validation loss (left) and the monitored validation metric (right) per epoch.

    ``metric`` defaults to ``val_logloss`` when the history has it and no
    ``val_mae`` (a classifier), else ``val_mae``.
    """
    if metric is None:
        logged = {key for row in history for key in row}
        metric = "val_logloss" if "val_logloss" in logged and "val_mae" not in logged else "val_mae"
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss_ax, mae_ax = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        values = [row.get(key, np.nan) for row in history]
        loss_ax.plot(epochs, values, style, label=key.replace("_", " "))
    ylabel = "loss (BCE)" if metric == "val_logloss" else "loss (standardized target)"
    loss_ax.set(xlabel="epoch", ylabel=ylabel, yscale="log")
    loss_ax.legend()
    mae = [row.get(metric, np.nan) for row in history]
    mae_ax.plot(epochs, mae, "o-", ms=3, color="tab:green")
    if np.isfinite(mae).any():
        best = int(np.nanargmin(mae))
        mae_ax.axvline(epochs[best], color="grey", lw=0.8, ls=":")
        mae_ax.set_title(f"best {mae[best]:.4g} at epoch {epochs[best]}", fontsize=9)
    mae_ax.set(xlabel="epoch", ylabel=_METRIC_LABELS.get(metric, metric))
    if title:
        figure.suptitle(title)
    return figure


def parity_plot(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    label: str = "target",
    title: str = "",
    max_points: int = 20_000,
) -> Figure:
    """Predicted vs true with the identity line and MAE / RMSE / R² in the corner."""
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    figure = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = figure.subplots()
    take = np.arange(len(y_true))
    if len(take) > max_points:
        take = np.random.default_rng(0).choice(take, max_points, replace=False)
    ax.scatter(y_true[take], y_pred[take], s=4, alpha=0.35, lw=0)
    both = np.concatenate([y_true, y_pred])
    lo, hi = (np.nanmin(both), np.nanmax(both)) if len(both) else (0.0, 1.0)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set(xlabel=f"true {label}", ylabel=f"predicted {label}", aspect="equal")
    # lazy: the module is torch-free, its package (xenonscale.models) imports torch
    from xenonscale.models.metrics import regression_metrics

    m = regression_metrics(y_true, y_pred)
    ax.text(
        0.04, 0.96,
        f"MAE {m['mae']:.4g}\nRMSE {m['rmse']:.4g}\nR² {m['r2']:.4f}\nn {m['n']:,}",
        transform=ax.transAxes, va="top", fontsize=8,
        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def roc_curve(y_true: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(false positive rate, true positive rate)`` at every distinct threshold, from (0, 0).

    >>> fpr, tpr = roc_curve(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.4, 0.9]))
    >>> fpr.tolist(), tpr.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    y_true = np.asarray(y_true, dtype=float).ravel() == 1
    p = np.asarray(p, dtype=float).ravel()
    order = np.argsort(-p, kind="stable")
    y_sorted, p_sorted = y_true[order], p[order]
    last = np.r_[np.flatnonzero(np.diff(p_sorted)), len(p_sorted) - 1]  # end of each tie
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    positives, negatives = max(int(y_true.sum()), 1), max(int((~y_true).sum()), 1)
    return np.r_[0.0, fp / negatives], np.r_[0.0, tp / positives]


def roc_plot(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, title: str = "") -> Figure:
    """ROC curves, one per ``{label: (0/1 truths, class-1 probabilities)}``, AUC in the legend."""
    # lazy: the module is torch-free, its package (xenonscale.models) imports torch
    from xenonscale.models.metrics import classification_metrics

    figure = Figure(figsize=(4.6, 4.4), layout="constrained")
    ax = figure.subplots()
    for label, (y_true, p) in curves.items():
        fpr, tpr = roc_curve(y_true, p)
        auc = classification_metrics(y_true, p)["roc_auc"]
        ax.plot(fpr, tpr, lw=1.4, label=f"{label} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           aspect="equal")  # fmt: skip
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def calibration_plot(
    y_true: np.ndarray, p: np.ndarray, *, bins: int = 10, label: str = "", title: str = ""
) -> Figure:
    """Reliability diagram: per probability bin, the observed fraction of class 1 vs the mean
    predicted probability (the diagonal is perfect calibration); below, how many rows per bin.
    Brier score and log-loss in the corner.
    """
    # lazy: the module is torch-free, its package (xenonscale.models) imports torch
    from xenonscale.models.metrics import classification_metrics

    y_true = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(p, dtype=float).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    filled = counts > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(which, weights=y_true, minlength=bins)[filled] / counts[filled]
    figure = Figure(figsize=(4.6, 5.2), layout="constrained")
    ax, hist_ax = figure.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax.plot(mean_p, observed, "o-", ms=4, label=label or None)
    ax.set(ylabel="fraction of class 1", xlim=(0, 1), ylim=(-0.02, 1.02))
    m = classification_metrics(y_true, p)
    ax.text(
        0.04, 0.96, f"Brier {m['brier']:.4f}\nlog-loss {m['log_loss']:.4f}\nn {m['n']:,}",
        transform=ax.transAxes, va="top", fontsize=8,
        bbox={"facecolor": "white", "alpha": 0.8, "lw": 0},
    )  # fmt: skip
    hist_ax.bar(edges[:-1], counts, width=1.0 / bins, align="edge", color="tab:grey", alpha=0.6)
    hist_ax.set(xlabel="predicted probability of class 1", ylabel="rows")
    if title:
        ax.set_title(title, fontsize=10)
    return figure


def training_figures(result: TrainResult) -> dict[str, Path]:
    """Save the learning curve and the validation plots in ``result.output``.

    Returns ``{file name: path}``, ready for ``Zoo.register(files=...)``:
    ``learning_curve.png``, and ``parity.png`` (``parity_TARGET.png`` per
    target) for a regression, ``roc.png`` (every target) and
    ``calibration.png`` (``calibration_TARGET.png`` per target) for a
    classification (``result.card["task"]``).
    """
    output, units, name = Path(result.output), result.units, result.name
    files = {}
    classifier = result.card.get("task") == "classification"
    if result.history:
        path = output / "learning_curve.png"
        metric = "val_logloss" if classifier else "val_mae"
        learning_curve(result.history, title=name, metric=metric).savefig(path, dpi=110)
        files[path.name] = path
    if "val" in result.predictions and classifier:
        y, pred = result.predictions["val"]
        targets = list(result.card["targets"])
        path = output / "roc.png"
        curves = {target: (y[:, i], pred[:, i]) for i, target in enumerate(targets)}
        roc_plot(curves, title=f"{name}: validation").savefig(path, dpi=110)
        files[path.name] = path
        for i, target in enumerate(targets):
            stem = "calibration" if len(targets) == 1 else f"calibration_{target}"
            path = output / f"{stem}.png"
            calibration_plot(y[:, i], pred[:, i], label=target,
                             title=f"{name}: validation").savefig(path, dpi=110)  # fmt: skip
            files[path.name] = path
    elif "val" in result.predictions:
        y, pred = result.predictions["val"]
        targets = list(result.card["targets"])
        for i, target in enumerate(targets):
            label = f"{target} ({units[target]})" if target in units else target
            path = output / ("parity.png" if len(targets) == 1 else f"parity_{target}.png")
            parity_plot(y[:, i], pred[:, i], label=label, title=f"{name}: validation").savefig(
                path, dpi=110
            )
            files[path.name] = path
    return files
