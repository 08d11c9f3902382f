"""Transfer plots: the transferred model beside the from-scratch baseline.

Examples
--------
>>> import numpy as np
>>> from xenonscale.viz.transfer import parity_figure
>>> y = np.array([0.0, 1.0, 2.0])
>>> figure = parity_figure(y, y + 0.1, y - 0.3, label="band gap (eV)", title="test")
>>> [ax.get_title().split(":")[0] for ax in figure.axes]
['transfer', 'baseline']
"""

from __future__ import annotations

import numpy as np

__all__ = ["parity_figure"]


def parity_figure(y, transfer, baseline, *, label: str, title: str):
    """Transfer (left) and baseline (right) parity panels on one ``Figure`` (no pyplot)."""
    from matplotlib.figure import Figure

    # lazy: the module is torch-free, its package (xenonscale.models) imports torch
    from xenonscale.models.metrics import regression_metrics

    figure = Figure(figsize=(9, 4.4), layout="constrained")
    both = np.concatenate([y, transfer, baseline])
    lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
    for ax, pred, name in zip(
        figure.subplots(1, 2), (transfer, baseline), ("transfer", "baseline"), strict=True
    ):
        ax.scatter(y, pred, s=6, alpha=0.5, lw=0)
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        m = regression_metrics(y, pred)
        ax.set(
            xlabel=f"true {label}",
            ylabel=f"predicted {label}",
            aspect="equal",
            title=f"{name}: MAE {m['mae']:.4g}, R² {m['r2']:.3f}",
        )
    figure.suptitle(title, fontsize=10)
    return figure
