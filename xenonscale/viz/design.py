"""Plots of an inverse-design run: populations in property space, hit rate and likelihood.

Both functions take the table :func:`xenonscale.design.design` writes (one
row per molecule and step: ``chain``, ``step``, ``beta``, ``log_likelihood``,
``<property>_mean``, ``in_target``) and draw on a
:class:`matplotlib.figure.Figure` (never ``pyplot``), so they work headless.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from xenonscale.viz.design import property_space_figure, trajectory_figure
>>> rng = np.random.default_rng(0)
>>> frame = pd.DataFrame({
...     "chain": np.repeat([0, 1], 20), "step": np.tile(np.repeat([0, 1], 10), 2),
...     "beta": 0.5, "log_likelihood": -rng.random(40), "in_target": rng.random(40) > 0.5,
...     "E_mean": rng.normal(150, 50, 40), "gap_mean": rng.normal(4, 1, 40)})
>>> fig = property_space_figure(frame, ["E=0:200", "gap=:3"])
>>> len(fig.axes)
2
>>> len(trajectory_figure(frame).axes)
3
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xenonscale.design.targets import parse_targets

__all__ = ["property_space_figure", "trajectory_figure"]


def _pick_steps(available: np.ndarray, panels: int) -> list[int]:
    if len(available) <= panels:
        return [int(s) for s in available]
    positions = np.linspace(0, len(available) - 1, panels).round().astype(int)
    return [int(available[i]) for i in dict.fromkeys(positions)]


def _limits(values: list[np.ndarray], bounds: Sequence[float]) -> tuple[float, float]:
    data = np.concatenate([v[np.isfinite(v)] for v in values] or [np.zeros(0)])
    finite = [b for b in bounds if np.isfinite(b)]
    every = np.concatenate([data, np.asarray(finite, float)])
    if not len(every):
        return 0.0, 1.0
    lo, hi = float(np.min(every)), float(np.max(every))
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def property_space_figure(
    frame: pd.DataFrame,
    targets: Sequence[object],
    *,
    properties: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    panels: int = 5,
    reference: pd.DataFrame | None = None,
    title: str = "",
) -> Figure:
    """Small multiples of the populations at a few steps, with the target region drawn.

    Parameters
    ----------
    frame : DataFrame
        The design output (see the module docstring).
    targets : list of str or Target
        The target ranges (``"E=0:200"``); the first two properties (or
        ``properties``) are the axes; with one property, each panel is a
        histogram of it with the target band shaded.
    steps : list of int, optional
        Steps to show; default ``panels`` evenly spaced steps from 0 to the last.
    reference : DataFrame, optional
        Known data with the property columns, drawn in grey behind (the axes
        span the populations and the target bounds, not the reference).
    """
    by_name = {t.name: t for t in parse_targets(targets)}
    names = list(properties or list(by_name))[:2]
    available = np.sort(frame["step"].unique())
    chosen = list(steps) if steps is not None else _pick_steps(available, panels)
    n = max(1, len(chosen))
    figure = Figure(figsize=(3.2 * n + 0.6, 3.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, n, sharex=True, sharey=True))
    columns = [f"{name}_mean" for name in names]
    chains = np.sort(frame["chain"].unique()) if "chain" in frame else np.array([0])
    colours = [f"C{i % 10}" for i in range(len(chains))]
    x_name = names[0]
    x_target = by_name.get(x_name)
    xlim = _limits([frame[columns[0]].to_numpy(float)], _bounds(x_target))
    if len(names) > 1:
        y_target = by_name.get(names[1])
        ylim = _limits([frame[columns[1]].to_numpy(float)], _bounds(y_target))
    for ax, step in zip(axes, chosen, strict=False):
        rows = frame[frame["step"] == step]
        if len(names) == 1:
            data = rows[columns[0]].to_numpy(float)
            ax.hist(data[np.isfinite(data)], bins=20, range=xlim, color="C0", alpha=0.8)
            if x_target is not None:
                ax.axvspan(max(x_target.low, xlim[0]), min(x_target.high, xlim[1]),
                           color="tab:green", alpha=0.15, lw=0)  # fmt: skip
            ax.set(xlim=xlim, xlabel=f"predicted {x_name}")
        else:
            if reference is not None and set(names) <= set(reference.columns):
                ax.scatter(reference[names[0]], reference[names[1]], s=2, color="0.85", lw=0,
                           rasterized=True, label="data")  # fmt: skip
            for chain, colour in zip(chains, colours, strict=True):
                part = rows[rows["chain"] == chain] if "chain" in rows else rows
                ax.scatter(part[columns[0]], part[columns[1]], s=9, color=colour, alpha=0.7,
                           lw=0)  # fmt: skip
            _box(ax, x_target, y_target, xlim, ylim)
            ax.set(xlim=xlim, ylim=ylim, xlabel=f"predicted {x_name}")
        hit = float(rows["in_target"].mean()) if len(rows) else float("nan")
        beta = float(rows["beta"].iloc[0]) if len(rows) and "beta" in rows else float("nan")
        ax.set_title(f"step {step}  β {beta:.2f}  in target {hit:.0%}", fontsize=9)
    axes[0].set_ylabel(f"predicted {names[1]}" if len(names) > 1 else "molecules")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _bounds(target) -> tuple[float, float]:
    return (target.low, target.high) if target is not None else (np.nan, np.nan)


def _box(ax, x_target, y_target, xlim, ylim) -> None:
    x0, x1 = _bounds(x_target) if x_target is not None else (-np.inf, np.inf)
    y0, y1 = _bounds(y_target) if y_target is not None else (-np.inf, np.inf)
    x0, x1 = max(x0, xlim[0]), min(x1, xlim[1])
    y0, y1 = max(y0, ylim[0]), min(y1, ylim[1])
    if x1 > x0 and y1 > y0:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=True, facecolor="tab:green",
                               alpha=0.12, edgecolor="tab:green", lw=1.2))  # fmt: skip


def trajectory_figure(frame: pd.DataFrame, *, title: str = "") -> Figure:
    """In-target fraction (left, with β dashed) and median log-likelihood (right) per step.

    One thin line per chain, the mean over chains (hit rate) or the median
    over all molecules (log-likelihood) thick in black.
    """
    figure = Figure(figsize=(9.5, 3.6), layout="constrained")
    hit_ax, ll_ax = figure.subplots(1, 2)
    chains = np.sort(frame["chain"].unique()) if "chain" in frame else np.array([0])
    for i, chain in enumerate(chains):
        part = frame[frame["chain"] == chain] if "chain" in frame else frame
        grouped = part.groupby("step")
        hit_ax.plot(grouped["in_target"].mean(), color=f"C{i % 10}", lw=0.8, alpha=0.6)
        ll_ax.plot(grouped["log_likelihood"].median(), color=f"C{i % 10}", lw=0.8, alpha=0.6)
    overall = frame.groupby("step")
    hit_ax.plot(overall["in_target"].mean(), color="black", lw=2, label="all chains")
    ll_ax.plot(overall["log_likelihood"].median(), color="black", lw=2, label="all chains")
    hit_ax.set(xlabel="step", ylabel="in-target fraction", ylim=(-0.02, 1.02))
    hit_ax.legend(loc="upper left", fontsize=8)
    if "beta" in frame:
        beta_ax = hit_ax.twinx()
        beta_ax.plot(overall["beta"].first(), color="grey", ls="--", lw=1)
        beta_ax.set(ylabel="β (dashed)", ylim=(-0.02, 1.02))
    ll_ax.set(xlabel="step", ylabel="median log-likelihood", yscale="symlog")
    ll_ax.set_yscale("symlog", linthresh=1.0)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
