"""Tests of xenonscale.viz on real descriptors of the Matbench experimental band gaps.

Features are ``Compositions(elements="xenonpy58", featurizers="classic")`` of
300 formulas drawn (seeded) from ``matbench_expt_gap`` (Dunn et al., npj Comput.
Mater. 6, 138 (2020)), read from the mirror ``$XENONSCALE_DATA_DIR``.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from xenonscale.errors import ConfigError
from xenonscale.viz import HeatmapInfo, descriptor_group, descriptor_heatmap

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def band_gaps() -> tuple[pd.DataFrame, pd.Series]:
    """(features, target) for 300 real formulas; index labels are the dataset rows."""
    env = os.environ.get("XENONSCALE_DATA_DIR")
    if not env or not Path(env).expanduser().is_dir():
        pytest.skip(
            f"real-data mirror not available (XENONSCALE_DATA_DIR={env!r}); set it to "
            "../shared/data, as `make test` does"
        )
    from xenonscale import datasets
    from xenonscale.featurize import Compositions

    data = datasets.load("matbench_expt_gap").sample(300, random_state=7)
    features = Compositions(elements="xenonpy58", featurizers="classic").transform(data["formula"])
    assert features.shape == (300, 290)
    assert features.index.equals(data.index)
    return features, data["target"].rename("band gap (eV)")


def _expected_image(features: pd.DataFrame, order: pd.Index, columns: list[str]) -> np.ndarray:
    """Standardize (population std), clip at ±3σ, rows in ``order``: computed independently."""
    block = features[columns].dropna()
    z = (block - block.mean()) / block.std(ddof=0)
    return z.clip(-3, 3).loc[order].to_numpy()


def test_png_written_and_rows_sorted_by_target(band_gaps, tmp_path):
    features, target = band_gaps
    fig = descriptor_heatmap(features, target, title="Matbench expt_gap")
    path = tmp_path / "heatmap.png"
    fig.savefig(path, dpi=80)

    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC
    width, height = struct.unpack(">II", raw[16:24])  # IHDR
    assert (width, height) == (880, 520)  # default figsize 11 × 6.5 inch at 80 dpi
    assert len(raw) > 50_000, f"suspiciously small PNG ({len(raw)} bytes)"

    info = fig.xenonscale_heatmap
    assert isinstance(info, HeatmapInfo)
    expected_order = target.index[np.argsort(target.to_numpy(), kind="stable")]
    assert info.order.equals(expected_order)
    assert np.array_equal(features.index[info.positions], info.order)
    np.testing.assert_array_equal(info.target, np.sort(target.to_numpy()))
    assert len(info.dropped_rows) == 0

    # Constant descriptors of this sample are left out and explained.
    constant = [c for c in features.columns if features[c].nunique() == 1]
    assert constant, "expected some constant descriptors in a 300-formula sample"
    assert info.dropped_columns == dict.fromkeys(constant, "constant")
    assert info.columns == [c for c in features.columns if c not in constant]

    image = np.asarray(info.image.get_array())
    assert image.shape == (300, len(info.columns))
    np.testing.assert_allclose(image, _expected_image(features, expected_order, info.columns))
    assert info.image.origin == "lower"  # row 0 (smallest gap) is drawn at the bottom
    assert info.image.get_clim() == (-3.0, 3.0)

    # The target panel draws the same sorted curve, row for row.
    xs, ys = info.target_ax.lines[0].get_data()
    np.testing.assert_array_equal(xs, info.target)
    np.testing.assert_array_equal(ys, np.arange(300))

    # 290 descriptors are too many to label: ticks name the pooling groups.
    ticks = [t.get_text() for t in info.heatmap_ax.get_xticklabels()]
    assert ticks == ["ave (58)", "sum (58)", "var (58)", "max (57)", "min (56)"]
    assert "300 samples × 287 descriptors" in info.heatmap_ax.get_title(loc="left")


def test_a_copy_of_the_target_is_a_monotonic_column(band_gaps):
    features, target = band_gaps
    with_copy = features.assign(**{"copy:gap": target.to_numpy()})
    info = descriptor_heatmap(with_copy, target).xenonscale_heatmap
    column = np.asarray(info.image.get_array())[:, info.columns.index("copy:gap")]
    assert np.all(np.diff(column) >= 0)
    assert info.heatmap_ax.get_xlabel() == "288 descriptors, grouped"  # 287 + the copy


def test_nan_rows_are_dropped_and_counted(band_gaps):
    from xenonscale.featurize import Compositions

    features, target = band_gaps
    bad = Compositions(elements="xenonpy58").transform(pd.Series(["Xx2O"], index=[-1]))
    assert bad.isna().all(axis=None)
    joined = pd.concat([features, bad])
    gaps = pd.concat([target, pd.Series([1.0], index=[-1])])
    gaps.iloc[0] = np.nan  # a missing target is dropped too
    info = descriptor_heatmap(joined, gaps).xenonscale_heatmap
    assert set(info.dropped_rows) == {-1, target.index[0]}
    assert len(info.order) == 299
    assert info.n_input_rows == 301
    assert "2 rows with NaN dropped" in info.heatmap_ax.get_title(loc="left")


def test_mostly_nan_descriptor_is_dropped_not_the_rows(band_gaps):
    features, target = band_gaps
    sparse = features.copy()
    sparse.iloc[:200, 0] = np.nan
    info = descriptor_heatmap(sparse, target).xenonscale_heatmap
    assert info.dropped_columns[features.columns[0]] == "NaN in 67% of rows"
    assert len(info.dropped_rows) == 0


def test_max_rows_samples_evenly_over_the_sorted_order(band_gaps):
    features, target = band_gaps
    full = descriptor_heatmap(features, target).xenonscale_heatmap
    info = descriptor_heatmap(features, target, max_rows=50).xenonscale_heatmap
    assert np.asarray(info.image.get_array()).shape == (50, len(info.columns))
    assert info.target[0] == target.min() and info.target[-1] == target.max()
    pos = full.order.get_indexer(info.order)
    assert np.all(np.diff(pos) > 0) and pos[0] == 0 and pos[-1] == 299
    # Standardization used all 300 rows, so the subsample is a slice of the full image.
    np.testing.assert_array_equal(
        np.asarray(info.image.get_array()), np.asarray(full.image.get_array())[pos]
    )


def test_draws_on_a_given_axes_with_raw_values(band_gaps):
    features, target = band_gaps
    fig = Figure(figsize=(12, 5))
    _, right = fig.subplots(1, 2)
    subset = features.iloc[:, :12]
    out = descriptor_heatmap(subset, target, ax=right, standardize=False, cmap="viridis")
    info = out.xenonscale_heatmap
    assert out is fig and info.heatmap_ax is right
    assert info.columns == list(subset.columns)  # 12 labels fit: one tick each
    assert [t.get_text() for t in right.get_xticklabels()] == list(subset.columns)
    np.testing.assert_array_equal(
        np.asarray(info.image.get_array()), subset.loc[info.order].to_numpy()
    )


BAD_ARGUMENTS = {
    "short target": (lambda f, t: (f, t.iloc[:-1], {}), "target has 299 values but features"),
    "max_rows < 2": (lambda f, t: (f, t, {"max_rows": 1}), "max_rows=1"),
    "float max_rows": (lambda f, t: (f, t, {"max_rows": 2.5}), "max_rows=2.5"),
    "unknown cmap": (lambda f, t: (f, t, {"cmap": "no_such_map"}), "cmap='no_such_map'"),
    "zero clip": (lambda f, t: (f, t, {"clip": 0}), "clip=0"),
    "ax not Axes": (lambda f, t: (f, t, {"ax": "left"}), "ax='left'"),
    "array features": (lambda f, t: (f.to_numpy(), t, {}), "got ndarray"),
    "text column": (lambda f, t: (f.assign(formula="NaCl"), t, {}), "columns ['formula']"),
    "text target": (lambda f, t: (f, ["x"] * len(f), {}), "target must be numeric, got ['x'"),
    "2-D target": (lambda f, t: (f, np.c_[t, t], {}), "shape (300, 2)"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_raise_config_error(band_gaps, case):
    build, message = BAD_ARGUMENTS[case]
    features, target, kwargs = build(*band_gaps)
    with pytest.raises(ConfigError, match=re.escape(message)):
        descriptor_heatmap(features, target, **kwargs)


def test_descriptor_group_names():
    assert descriptor_group("ave:atomic_number") == "ave"
    assert descriptor_group("Fe") == "Counting"
    assert descriptor_group("MagpieData avg_dev Electronegativity") == "Electronegativity"
    assert descriptor_group("density") == "density"
