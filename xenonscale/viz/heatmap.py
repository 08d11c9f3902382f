"""Descriptor heatmap: samples sorted by their target, descriptors side by side.

The idea comes from XenonPy's ``DescriptorHeatmap``: sort the samples by the
property to be predicted, standardize every descriptor, draw the matrix as an
image and the sorted property as a curve beside it. Descriptors that follow
the property show up as colour gradients running down the picture; descriptors
that carry no information about it look like noise.

Only matplotlib is used, through :class:`matplotlib.figure.Figure` (never
``pyplot``), so the function is safe in scripts, on headless servers (Agg) and
in notebooks alike.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from xenonscale.viz import descriptor_heatmap
>>> rng = np.random.default_rng(0)
>>> features = pd.DataFrame(rng.normal(size=(50, 4)), columns=["ave:a", "ave:b", "max:a", "max:b"])
>>> target = features["ave:a"] * 2 + rng.normal(size=50)
>>> fig = descriptor_heatmap(features, target, target_label="y")
>>> fig.xenonscale_heatmap.image.get_array().shape
(50, 4)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from mpl_toolkits.axes_grid1 import make_axes_locatable

from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError

__all__ = ["HeatmapInfo", "descriptor_group", "descriptor_heatmap"]

_ELEMENTS = frozenset(PERIODIC_SYMBOLS)


@dataclass(frozen=True, eq=False)
class HeatmapInfo:
    """What :func:`descriptor_heatmap` drew, attached as ``fig.xenonscale_heatmap``.

    Attributes
    ----------
    order : pandas.Index
        Index labels of the drawn samples, in image-row order: ``order[0]`` is
        image row 0, the sample with the smallest target, drawn at the bottom.
    positions : numpy.ndarray
        The same samples as integer positions into the input ``features``.
    target : numpy.ndarray
        Their target values (ascending).
    columns : list of str
        The descriptors drawn, left to right.
    dropped_rows : pandas.Index
        Index labels of samples left out because a kept descriptor or the
        target was NaN/inf (rows skipped by ``max_rows`` are not listed).
    dropped_columns : dict of str to str
        Descriptor → reason it was left out (all NaN, mostly NaN, constant).
    n_input_rows : int
        Rows of ``features`` received.
    image, heatmap_ax, target_ax, colorbar_ax
        The matplotlib artists, for further styling.
    """

    order: pd.Index
    positions: np.ndarray
    target: np.ndarray
    columns: list[str]
    dropped_rows: pd.Index
    dropped_columns: dict[str, str] = field(default_factory=dict)
    n_input_rows: int = 0
    image: AxesImage | None = None
    heatmap_ax: Axes | None = None
    target_ax: Axes | None = None
    colorbar_ax: Axes | None = None


def descriptor_group(label: str) -> str:
    """The group a descriptor label belongs to, used to label wide heatmaps.

    ``"ave:atomic_number"`` → ``"ave"`` (XenonPy pooling prefixes), an element
    symbol (a ``Counting`` column) → ``"Counting"``, a matminer-style
    ``"MagpieData mean Number"`` → ``"Number"`` (the property), anything else
    → the label itself.

    Examples
    --------
    >>> [descriptor_group(s) for s in ["var:density", "Fe", "MagpieData range Column"]]
    ['var', 'Counting', 'Column']
    """
    label = str(label)
    if ":" in label:
        return label.split(":", 1)[0]
    if label in _ELEMENTS:
        return "Counting"
    words = label.split(" ")
    if len(words) >= 3:
        return " ".join(words[2:])
    return label


def descriptor_heatmap(
    features: pd.DataFrame,
    target: pd.Series | Sequence[float] | np.ndarray,
    *,
    ax: Axes | None = None,
    standardize: bool = True,
    cmap: str = "RdBu_r",
    max_rows: int | None = None,
    title: str | None = None,
    target_label: str | None = None,
    clip: float = 3.0,
    max_nan_fraction: float = 0.5,
    max_labels: int = 60,
    group_by: Callable[[str], str] = descriptor_group,
    figsize: tuple[float, float] = (11.0, 6.5),
) -> Figure:
    """Draw descriptors as an image with samples sorted by the target.

    Rows (samples) are sorted by ``target`` (ascending from the bottom, stable
    for ties); columns are descriptors in their input order. A panel on the
    right shows the sorted target, row for row, and a colorbar the scale.

    Parameters
    ----------
    features : pandas.DataFrame
        Numeric descriptors, one row per sample (e.g. the output of
        :meth:`xenonscale.featurize.Compositions.transform`).
    target : pandas.Series or array-like
        One value per row of ``features``. A Series whose index holds the same
        labels as ``features.index`` is aligned on it; otherwise values are
        taken by position.
    ax : matplotlib.axes.Axes, optional
        Axes for the heatmap; the target panel and colorbar are split off its
        right side. Default: a new :class:`~matplotlib.figure.Figure`.
    standardize : bool, default True
        Scale every descriptor to zero mean and unit variance (over the kept
        rows) and clip at ``±clip``; constant descriptors are then left out.
        With ``False`` the raw values are drawn.
    cmap : str, default "RdBu_r"
        A matplotlib colormap name.
    max_rows : int, optional
        Draw at most this many samples, taken evenly over the sorted order
        (the smallest and largest target are always kept). Standardization
        still uses every kept row.
    title : str, optional
        First title line (default ``"Descriptor heatmap"``); a second line
        gives the sizes and how many rows and columns were left out.
    target_label : str, optional
        Name of the target (default: the Series name, else ``"target"``).
    clip : float, default 3.0
        Standardized values are clipped to ``[-clip, clip]``.
    max_nan_fraction : float, default 0.5
        Descriptors NaN in more than this fraction of rows are left out (so a
        mostly-undefined descriptor does not remove most samples); then rows
        with any NaN in the remaining descriptors are left out.
    max_labels : int, default 60
        Up to this many descriptors get one tick label each (if there is room
        for a 4-pt font); beyond it, ticks mark the groups given by
        ``group_by`` (``ave``, ``var``, ...), or every k-th label.
    group_by : callable, default :func:`descriptor_group`
        Label → group name; contiguous runs of a group are separated by lines
        (when the columns form runs, i.e. at most one group per 3 columns).
    figsize : (float, float), default (11, 6.5)
        Size in inches of the new figure (ignored when ``ax`` is given).

    Returns
    -------
    matplotlib.figure.Figure
        The figure; ``fig.xenonscale_heatmap`` is a :class:`HeatmapInfo`
        telling which rows, in which order, and which columns were drawn.

    Raises
    ------
    xenonscale.errors.ConfigError
        Bad arguments: ``features`` not a DataFrame or not numeric, target
        length or index mismatch, unknown ``cmap``, ``max_rows < 2``, or no
        row or column left to draw. The message names the offending value.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from xenonscale import datasets
    >>> from xenonscale.featurize import Compositions
    >>> data = datasets.load("matbench_expt_gap")  # doctest: +REQUIRES_DATA
    >>> data = data.sample(500, random_state=0)
    >>> X = Compositions(elements="xenonpy58").transform(data["formula"])
    >>> fig = descriptor_heatmap(X, data["target"], target_label="band gap (eV)")
    >>> info = fig.xenonscale_heatmap  # what was drawn: 500 rows, the constant columns left out
    >>> len(info.order), len(info.columns), sorted(set(info.dropped_columns.values()))
    (500, 287, ['constant'])
    >>> fig.savefig(Path(tempfile.mkdtemp()) / "heatmap.png", dpi=150)
    """
    values, y, index = _validate(features, target, max_rows, clip, max_nan_fraction, max_labels)
    try:
        colormap = matplotlib.colormaps[cmap]
    except (KeyError, ValueError, TypeError):
        raise ConfigError(
            f"cmap={cmap!r} is not a matplotlib colormap; e.g. 'RdBu_r', 'viridis', 'coolwarm'"
        ) from None
    if ax is not None and not isinstance(ax, Axes):
        raise ConfigError(f"ax={ax!r} is not a matplotlib Axes; pass one or leave ax=None")
    if target_label is None:
        name = getattr(target, "name", None)
        target_label = str(name) if name is not None else "target"

    columns = [str(c) for c in features.columns]
    keep_cols, dropped_columns = _select_columns(values, columns, standardize, max_nan_fraction)
    values = values[:, keep_cols]
    columns = [columns[i] for i in keep_cols]
    row_ok = np.isfinite(y) & np.isfinite(values).all(axis=1)
    kept = np.flatnonzero(row_ok)
    if len(kept) == 0:
        raise ConfigError(
            f"no row left to draw: all {len(y)} rows have a NaN target or NaN descriptor; "
            "check features.isna().sum() or raise max_nan_fraction"
        )
    if standardize:
        block = values[kept]
        # Constant columns were removed before (std is computed on kept rows here).
        std = block.std(axis=0)
        std[std == 0] = 1.0
        values = np.clip((values - block.mean(axis=0)) / std, -clip, clip)

    positions = kept[np.argsort(y[kept], kind="stable")]
    if max_rows is not None and len(positions) > max_rows:
        pick = np.unique(np.linspace(0, len(positions) - 1, max_rows).round().astype(np.intp))
        positions = positions[pick]
    matrix = values[positions]
    y_sorted = y[positions]

    fig, hax, tax, cax, width_in = _figure(ax, figsize)

    if standardize:
        vmin, vmax = -clip, clip
    else:
        vmin, vmax = float(np.min(matrix)), float(np.max(matrix))
    image = hax.imshow(
        matrix,
        aspect="auto",
        origin="lower",
        cmap=colormap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest" if matrix.shape[0] <= 600 else "antialiased",
    )
    _label_columns(hax, columns, max_labels, group_by, width_in)
    hax.set_ylabel(f"samples, sorted by {target_label}")
    hax.set_yticks([])
    for side in ("top", "right"):
        hax.spines[side].set_visible(False)

    rows = np.arange(len(y_sorted))
    tax.fill_betweenx(rows, float(y_sorted.min()), y_sorted, color="#9ecae1", lw=0)
    tax.plot(y_sorted, rows, color="#08519c", lw=1.4)
    tax.set_xlabel(target_label)
    tax.tick_params(axis="y", left=False, labelleft=False)
    tax.grid(axis="x", color="0.85", lw=0.6)
    tax.set_ylim(-0.5, len(rows) - 0.5)
    for side in ("top", "right"):
        tax.spines[side].set_visible(False)

    bar = fig.colorbar(image, cax=cax, extend="both" if standardize else "neither")
    bar.set_label(f"standardized value (clipped at ±{clip:g}σ)" if standardize else "value")

    dropped_rows = index[~row_ok]
    note = f"{len(positions)} samples × {len(columns)} descriptors"
    if max_rows is not None and len(positions) < len(kept):
        note += f" (evenly sampled from {len(kept)})"
    if len(dropped_rows):
        note += f"; {_plural(len(dropped_rows), 'row')} with NaN dropped"
    if dropped_columns:
        note += f"; {_plural(len(dropped_columns), 'descriptor')} dropped (NaN or constant)"
    hax.set_title(f"{title or 'Descriptor heatmap'}\n{note}", loc="left", fontsize=10)

    fig.xenonscale_heatmap = HeatmapInfo(
        order=index[positions],
        positions=positions,
        target=y_sorted,
        columns=columns,
        dropped_rows=dropped_rows,
        dropped_columns=dropped_columns,
        n_input_rows=len(y),
        image=image,
        heatmap_ax=hax,
        target_ax=tax,
        colorbar_ax=cax,
    )
    return fig


def _validate(
    features: object,
    target: object,
    max_rows: object,
    clip: object,
    max_nan_fraction: object,
    max_labels: object,
) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Check the arguments; return float features, float target and the row index."""
    if not isinstance(features, pd.DataFrame):
        raise ConfigError(
            f"features must be a pandas DataFrame, got {type(features).__name__}; "
            "wrap an array with pandas.DataFrame(values, columns=labels)"
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ConfigError(f"features has shape {features.shape}; nothing to draw")
    bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if bad:
        raise ConfigError(
            f"features has non-numeric columns {bad[:5]!r}; "
            "select descriptors with features.select_dtypes('number')"
        )
    if isinstance(target, pd.Series) and not target.index.equals(features.index):
        if len(target) == len(features) and set(target.index) == set(features.index):
            target = target.reindex(features.index)
        elif len(target) == len(features):
            target = target.to_numpy()
    try:
        y = np.asarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            f"target must be numeric, got {_short(target)}; convert it with pandas.to_numeric"
        ) from None
    if y.ndim != 1:
        raise ConfigError(f"target must be one-dimensional, got shape {y.shape}")
    if len(y) != len(features):
        raise ConfigError(
            f"target has {len(y)} values but features has {len(features)} rows; "
            "pass one target value per row"
        )
    if max_rows is not None and (
        isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) or max_rows < 2
    ):
        raise ConfigError(f"max_rows={max_rows!r}: use an integer ≥ 2, or None for all rows")
    if not isinstance(clip, int | float) or not np.isfinite(clip) or clip <= 0:
        raise ConfigError(f"clip={clip!r}: use a positive number of standard deviations")
    if not isinstance(max_nan_fraction, int | float) or not 0 <= max_nan_fraction <= 1:
        raise ConfigError(f"max_nan_fraction={max_nan_fraction!r}: use a number in [0, 1]")
    if isinstance(max_labels, bool) or not isinstance(max_labels, int) or max_labels < 1:
        raise ConfigError(f"max_labels={max_labels!r}: use a positive integer")
    # copy=True: under pandas 3 (copy-on-write) to_numpy may return a read-only view
    values = features.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    values[~np.isfinite(values)] = np.nan
    y = y.copy()
    y[~np.isfinite(y)] = np.nan
    return values, y, features.index


def _select_columns(
    values: np.ndarray, columns: list[str], standardize: bool, max_nan_fraction: float
) -> tuple[np.ndarray, dict[str, str]]:
    """Columns to draw, and the reason each other column is left out."""
    nan_fraction = np.isnan(values).mean(axis=0)
    dropped: dict[str, str] = {}
    keep = []
    with np.errstate(all="ignore"):
        spread = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
    for i, label in enumerate(columns):
        if nan_fraction[i] == 1:
            dropped[label] = "all NaN"
        elif nan_fraction[i] > max_nan_fraction:
            dropped[label] = f"NaN in {nan_fraction[i]:.0%} of rows"
        elif standardize and spread[i] == 0:
            dropped[label] = "constant"
        else:
            keep.append(i)
    if not keep:
        raise ConfigError(
            f"no descriptor left to draw: all {len(columns)} columns are NaN or constant "
            f"(e.g. {next(iter(dropped.items()))!r})"
        )
    return np.asarray(keep, dtype=np.intp), dropped


def _figure(
    ax: Axes | None, figsize: tuple[float, float]
) -> tuple[Figure, Axes, Axes, Axes, float]:
    """Heatmap, target panel (sharing y) and colorbar axes, and the heatmap's width (inch)."""
    if ax is not None:
        fig = ax.get_figure(root=True)
        total = ax.get_position().width * fig.get_figwidth()
        divider = make_axes_locatable(ax)
        tax = divider.append_axes("right", size="16%", pad=0.08, sharey=ax)
        cax = divider.append_axes("right", size="2%", pad=0.55)
        return fig, ax, tax, cax, max(total - 0.63, 0.1) / 1.18
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    ratios = (1.0, 0.16, 0.022)
    grid = fig.add_gridspec(1, 3, width_ratios=ratios, wspace=0.01)
    hax = fig.add_subplot(grid[0, 0])
    tax = fig.add_subplot(grid[0, 1], sharey=hax)
    # Constrained layout leaves about 1.4 inch for the y label and the colorbar label.
    return fig, hax, tax, fig.add_subplot(grid[0, 2]), (figsize[0] - 1.4) / sum(ratios)


def _label_columns(
    ax: Axes, columns: list[str], max_labels: int, group_by: Callable[[str], str], width_in: float
) -> None:
    """One tick per descriptor if few, else one per contiguous group, with boundaries."""
    n = len(columns)
    groups = [str(group_by(c)) for c in columns]
    starts = [0] + [i for i in range(1, n) if groups[i] != groups[i - 1]]
    bounds = [*starts, n]
    runs = [(groups[s], s, e) for s, e in itertools.pairwise(bounds)]
    if 1 < len(runs) <= n / 3:  # boundaries only when groups are runs, not a mix
        for s in starts[1:]:
            ax.axvline(s - 0.5, color="k", lw=0.7, alpha=0.7)
    # Room per tick in points (axes width / number of descriptors) sets the font size.
    room = width_in * 72 / n
    if n <= max_labels and (room >= 4 or len(runs) in (1, n)):
        labels = [_clip_text(c) for c in columns]
        ax.set_xticks(np.arange(n), labels, rotation=90, fontsize=float(np.clip(room, 3, 8)))
        ax.set_xlabel("descriptor")
        return
    if len(runs) <= max_labels:
        centres = [(s + e - 1) / 2 for _, s, e in runs]
        labels = [_clip_text(f"{g} ({e - s})") for g, s, e in runs]
        # Horizontal labels when the narrowest group is wide enough for the longest one
        # (8-pt characters ≈ 0.065 inch).
        narrowest = width_in * min(e - s for _, s, e in runs) / n
        flat = max(len(t) for t in labels) * 0.065 < narrowest
        ax.set_xticks(centres, labels, rotation=0 if flat else 90, fontsize=8)
        ax.tick_params(axis="x", length=0)
        ax.set_xlabel(f"{n} descriptors, grouped")
        return
    step = int(np.ceil(n / max_labels))
    ticks = np.arange(0, n, step)
    ax.set_xticks(ticks, [columns[i] for i in ticks], rotation=90, fontsize=6)
    ax.set_xlabel(f"{n} descriptors (every {step}th labelled)")


def _clip_text(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
