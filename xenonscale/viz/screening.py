"""Plots of a screen: the property space with the target box and the Pareto front, and the
screened population's histogram.

Examples
--------
>>> import pandas as pd
>>> from xenonscale.workflows.screening import screen
>>> frame = pd.DataFrame({"row": range(4), "id": list("abcd"), "m:gap": [1.5, 0.2, 1.9, 1.4],
...     "m:gap_std": [0.1] * 4, "e:form": [-1.0, -2.0, -0.5, 0.3], "e:form_std": [0.05] * 4})
>>> result = screen(frame, ["gap=1:2", "form=:0"], objectives=["gap:max", "form:min"])
>>> figures = screen_figures(result)
>>> sorted(figures)
['histogram', 'property_space']
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

__all__ = ["screen_figures"]


def screen_figures(result) -> dict[str, Figure]:
    """``{"property_space": ..., "histogram": ...}`` for a :class:`ScreenResult`."""
    figures = {"histogram": _histogram(result)}
    if len(result.targets) >= 2 or result.objectives:
        figures["property_space"] = _space(result)
    return figures


def _axes_columns(result) -> list[str]:
    names = [result.columns[t.name] for t in result.targets]
    names += [c for c, _ in result.objectives if c not in names]
    return names[:2]


def _space(result) -> Figure:
    x, y = [*_axes_columns(result), None][:2]
    figure = Figure(figsize=(6.4, 5.2))
    ax = figure.subplots()
    population = result.population
    if y is None:  # one property: plot it against the probability
        y, ylabel = "probability", "P(all constraints)"
    else:
        ylabel = y
    label = f"screened ({result.counts['rows']:,})"
    ax.scatter(population[x], population[y], s=4, c="0.75", label=label, rasterized=True)
    kept = result.frame
    hits = kept[kept["in_target"]]
    ax.scatter(hits[x], hits[y], s=10, c=hits["probability"], cmap="viridis", vmin=0, vmax=1,
               label=f"kept in target ({len(hits):,})")  # fmt: skip
    front = kept[kept["pareto"]].sort_values(x)
    if len(front):
        ax.plot(front[x], front[y], "-o", color="crimson", ms=4, lw=1,
                label=f"Pareto front ({len(front)})")  # fmt: skip
    for target in result.targets:
        column = result.columns[target.name]
        for value in (target.low, target.high):
            if np.isfinite(value) and column == x:
                ax.axvline(value, color="k", ls="--", lw=0.8)
            if np.isfinite(value) and column == y:
                ax.axhline(value, color="k", ls="--", lw=0.8)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(", ".join(str(t) for t in result.targets), fontsize=10)
    ax.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return figure


def _histogram(result) -> Figure:
    figure = Figure(figsize=(6.4, 3.6))
    ax = figure.subplots()
    probability = np.asarray(result.probability, dtype=np.float64)
    ax.hist(probability, bins=np.linspace(0, 1, 41), color="steelblue")
    ax.set_yscale("log")
    ax.set_xlabel("P(every property inside its range)")
    ax.set_ylabel("candidates")
    counts = result.counts
    ax.set_title(
        f"{counts['rows']:,} screened, {counts['in_target']:,} predicted in target, "
        f"{counts['pareto']:,} on the front",
        fontsize=10,
    )
    figure.tight_layout()
    return figure
