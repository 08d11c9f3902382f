"""Plots people would rather look at: descriptor heatmaps first.

Everything here draws on a :class:`matplotlib.figure.Figure` (never
``pyplot``), so it works headless (Agg) and inline in notebooks.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> import pandas as pd
>>> from xenonscale.viz import descriptor_heatmap
>>> rng = np.random.default_rng(0)
>>> features = pd.DataFrame(rng.normal(size=(40, 6)), columns=[f"ave:p{i}" for i in range(6)])
>>> target = pd.Series(features.sum(axis=1) + rng.normal(size=40), name="band gap (eV)")
>>> fig = descriptor_heatmap(features, target)
>>> fig.savefig(Path(tempfile.mkdtemp()) / "heatmap.png", dpi=150)
"""

from xenonscale.viz.design import property_space_figure, trajectory_figure
from xenonscale.viz.heatmap import HeatmapInfo, descriptor_group, descriptor_heatmap
from xenonscale.viz.training import learning_curve, parity_plot

__all__ = [
    "HeatmapInfo",
    "descriptor_group",
    "descriptor_heatmap",
    "learning_curve",
    "parity_plot",
    "property_space_figure",
    "trajectory_figure",
]
