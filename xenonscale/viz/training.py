"""Plots of a trained model: the learning curve and the parity plot.

Both draw on a :class:`matplotlib.figure.Figure` (never ``pyplot``).
:func:`training_figures` saves both for a
:class:`~xenonscale.models.training.TrainResult` beside its weights (what
``xenonscale train`` registers in the zoo with the model).

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from xenonscale.models.training import TrainResult

__all__ = ["learning_curve", "parity_plot", "training_figures"]


def learning_curve(history: Sequence[Mapping[str, float]], *, title: str = "") -> Figure:
    """Training and validation loss (left) and validation MAE (right) per epoch."""
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss_ax, mae_ax = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        values = [row.get(key, np.nan) for row in history]
        loss_ax.plot(epochs, values, style, label=key.replace("_", " "))
    loss_ax.set(xlabel="epoch", ylabel="loss (standardized target)", yscale="log")
    loss_ax.legend()
    mae = [row.get("val_mae", np.nan) for row in history]
    mae_ax.plot(epochs, mae, "o-", ms=3, color="tab:green")
    if np.isfinite(mae).any():
        best = int(np.nanargmin(mae))
        mae_ax.axvline(epochs[best], color="grey", lw=0.8, ls=":")
        mae_ax.set_title(f"best {mae[best]:.4g} at epoch {epochs[best]}", fontsize=9)
    mae_ax.set(xlabel="epoch", ylabel="validation MAE (target units)")
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


def training_figures(result: TrainResult) -> dict[str, Path]:
    """Save the learning curve and the validation parity plot(s) in ``result.output``.

    Returns ``{file name: path}`` (``learning_curve.png``, ``parity.png`` or
    ``parity_TARGET.png`` per target), ready for ``Zoo.register(files=...)``.
    """
    output, units, name = Path(result.output), result.units, result.name
    files = {}
    if result.history:
        path = output / "learning_curve.png"
        learning_curve(result.history, title=name).savefig(path, dpi=110)
        files[path.name] = path
    if "val" in result.predictions:
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
