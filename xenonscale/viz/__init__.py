"""Plots people would rather look at: descriptor heatmaps first.

Everything here draws on a :class:`matplotlib.figure.Figure` (never
``pyplot``), so it works headless (Agg) and inline in notebooks.

Examples
--------
>>> from xenonscale.viz import descriptor_heatmap  # doctest: +SKIP
>>> fig = descriptor_heatmap(features, target, target_label="band gap (eV)")  # doctest: +SKIP
>>> fig.savefig("heatmap.png", dpi=150)  # doctest: +SKIP
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
