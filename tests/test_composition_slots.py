"""The composition as data: ``composition_slots``, the ``slots`` featurizer and the store arrays.

References are independent: pymatgen's ``Composition.fractional_composition``
row by row (brute force) for the slots, the in-memory featurizer for what the
engine wrote, read back with plain ``xarray.open_zarr``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from distributed import Client

from xenonscale.chem.formula import parse_compositions
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError, StoreError
from xenonscale.featurize.compositions import Compositions
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.featurize.slots import (
    COMPOSITION_SLOTS,
    CompositionSlots,
    composition_slots,
)
from xenonscale.store import open_store, read_composition
from xenonscale.store.layout import COMPOSITION_ENCODING, StoreLocation
from xenonscale.store.writer import create_store, finalize_store, write_region

SEVENTEEN = "".join(f"{s}{i + 1}" for i, s in enumerate(PERIODIC_SYMBOLS[:17]))  # H1He2...Cl17
SIXTEEN = "".join(f"{s}{i + 1}" for i, s in enumerate(PERIODIC_SYMBOLS[:16]))
BAD = ["Xx2O3", "Fe2(SO4", "", None, "garbage text !!", "H0O"]


@pytest.fixture(scope="module")
def formulas(data_dir) -> list[str]:
    """~300 real formulas: Matbench glass alloys and OQMD compounds (fixed sample)."""
    rng = np.random.default_rng(7)
    picked = []
    for name in ("matbench_glass", "oqmd_formation_enthalpy_val"):
        frame = pd.read_csv(data_dir / "compositions" / f"{name}.csv")
        picked += frame.formula.iloc[rng.choice(len(frame), 150, replace=False)].tolist()
    return picked


@pytest.fixture(scope="module")
def client():
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as c:
        yield c


def _pymatgen_slots(formula: str) -> tuple[list[int], list[float]]:
    """Brute force, one row: pymatgen's fractions sorted by fraction descending, then Z."""
    from pymatgen.core import Composition

    fractional = Composition(formula).fractional_composition
    pairs = sorted((-round(f, 12), el.Z, f) for el, f in fractional.items())
    return [z for _, z, _ in pairs], [f for _, _, f in pairs]


# -- composition_slots ------------------------------------------------------------------------
def test_slots_equal_pymatgen_fractional_composition(formulas):
    elements, fractions, fits = composition_slots(parse_compositions(formulas))
    assert elements.dtype == np.int16 and fractions.dtype == np.float32 and fits.dtype == bool
    assert elements.shape == fractions.shape == (len(formulas), COMPOSITION_SLOTS)
    assert fits.all()
    for row, formula in enumerate(formulas):
        zs, fs = _pymatgen_slots(formula)
        k = len(zs)
        assert elements[row, :k].tolist() == zs, formula
        np.testing.assert_allclose(fractions[row, :k], fs, rtol=2e-7, err_msg=formula)
        assert not elements[row, k:].any() and not fractions[row, k:].any()
        assert (np.diff(fractions[row, :k]) <= 0).all()  # the order rule, on our own numbers
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, rtol=1e-6)


def test_ties_go_by_atomic_number_and_widths_are_bounded():
    matrix = parse_compositions(["OFeNa", "Na2O2Fe", SIXTEEN, SEVENTEEN, "Fe2O3"])
    elements, fractions, fits = composition_slots(matrix)
    assert elements[0, :4].tolist() == [8, 11, 26, 0]  # equal thirds: Z ascending
    assert elements[1, :3].tolist() == [8, 11, 26]  # 0.4, 0.4 (Z 8 < 11), then 0.2
    assert fits.tolist() == [True, True, True, False, True]
    assert elements[2].tolist() == list(range(16, 0, -1))  # amount i for element Z = i
    assert not elements[3].any() and not fractions[3].any()  # 17 elements: all zero
    narrow = composition_slots(matrix, slots=2)
    assert narrow[2].tolist() == [False, False, False, False, True]  # only Fe2O3 has <= 2
    assert narrow[0][4].tolist() == [8, 26]
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ConfigError, match="slots="):
            composition_slots(matrix, slots=bad)  # type: ignore[arg-type]


def test_failed_rows_are_zero_and_do_not_fit():
    matrix = parse_compositions([*BAD, "NaCl"])
    elements, fractions, fits = composition_slots(matrix)
    assert fits.tolist() == [False] * len(BAD) + [True]
    assert not elements[: len(BAD)].any() and not fractions[: len(BAD)].any()
    assert elements[-1, :2].tolist() == [11, 17] and fractions[-1, :2].tolist() == [0.5, 0.5]


# -- the featurizer -----------------------------------------------------------------------------
def test_featurizer_values_labels_and_error_reasons(formulas):
    featurizer = CompositionSlots()
    inputs = [*formulas[:20], SEVENTEEN, *BAD]
    batch = featurizer.featurize_batch(inputs)
    assert featurizer.labels[:2] == ["element:0", "element:1"]
    assert featurizer.labels[16] == "fraction:0" and len(featurizer.labels) == 32
    assert batch.values.dtype == np.float32
    elements, fractions, _ = composition_slots(parse_compositions(formulas[:20]))
    np.testing.assert_array_equal(batch.values[:20, :16], elements.astype(np.float32))
    np.testing.assert_array_equal(batch.values[:20, 16:], fractions)
    assert batch.ok.tolist() == [True] * 20 + [False] * (1 + len(BAD))
    assert np.isnan(batch.values[20:]).all()
    reasons = {e.row: e.reason for e in batch.errors}
    assert reasons[20] == "has 17 elements; composition slots hold at most 16"
    # parse errors word for word as the composition featurizers give them
    pooled = Compositions(featurizers="Counting").featurize_batch(BAD)
    assert [reasons[21 + e.row] for e in pooled.errors] == [e.reason for e in pooled.errors]
    spec = FeaturizerSpec.parse("composition", "slots", elements="magpie")
    assert isinstance(spec.build(), CompositionSlots)  # --elements does not apply


# -- the store ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def source(tmp_path_factory, formulas) -> tuple[str, list[object]]:
    """A CSV of real formulas with a 17-element row, an Am row (outside xenonpy58) and bad rows."""
    rows = [*formulas[:230], SEVENTEEN, "AmO2", "Fe2(SO4", "Xx2O3", "", *formulas[230:]]
    path = tmp_path_factory.mktemp("slots") / "formulas.csv"
    pd.DataFrame({"formula": rows, "target": np.arange(len(rows), dtype=float)}).to_csv(
        path, index=False
    )
    inputs = pd.read_csv(path).formula.tolist()  # as the source reads them ("" -> NaN)
    return str(path), inputs


SPEC = FeaturizerSpec.parse("composition", "WeightedAverage", elements="xenonpy58")
KWARGS = dict(column="formula", chunk_rows=50, partition_rows=100, progress=False)


def test_engine_writes_the_composition_of_every_row(tmp_path, client, source):
    path, inputs = source
    store = str(tmp_path / "c.zarr")
    job = featurize_to_store(path, store, SPEC, client=client, **KWARGS)
    assert job.partitions == 4 and job.errors == 4  # Am, two bad formulas, the empty row
    ds = xr.open_zarr(store)
    element, fraction = ds["composition_element"], ds["composition_fraction"]
    assert element.dims == fraction.dims == ("sample", "element_slot")
    assert element.dtype == np.int16 and fraction.dtype == np.float32
    assert element.shape == (len(inputs), COMPOSITION_SLOTS)
    assert zarr.open_group(store, mode="r")["composition_element"].chunks == (50, 16)
    reference = CompositionSlots().featurize_batch(inputs)
    ok = ds.ok.values
    np.testing.assert_array_equal(
        element.values[ok & reference.ok], reference.values[ok & reference.ok, :16]
    )
    np.testing.assert_array_equal(
        fraction.values[ok & reference.ok], reference.values[ok & reference.ok, 16:]
    )
    assert not element.values[~ok].any() and not fraction.values[~ok].any()  # error rows: zero
    seventeen = inputs.index(SEVENTEEN)
    assert ok[seventeen] and not element.values[seventeen].any()  # featurized, but no slots
    assert ds.attrs["composition"] == {
        "slots": 16,
        "arrays": ["composition_element", "composition_fraction"],
        "encoding": COMPOSITION_ENCODING,
        "rows_without_slots": 1,
    }
    elements, fractions = read_composition(store, rows=np.array([seventeen - 1, 3]))
    np.testing.assert_array_equal(elements, element.values[[seventeen - 1, 3]])
    np.testing.assert_array_equal(fractions, fraction.values[[seventeen - 1, 3]])


def test_resume_rewrites_the_composition_of_lost_regions(tmp_path, client, source):
    path, _ = source
    store = str(tmp_path / "r.zarr")
    featurize_to_store(path, store, SPEC, client=client, **KWARGS)
    before = read_composition(store)
    location = StoreLocation(store)
    location.fs.rm(location.path("_xenonscale", "done", f"{1:06d}.json"))
    group = zarr.open_group(store, mode="r+")
    group["composition_element"][100:200] = 99
    group["composition_fraction"][100:200] = 0.25
    job = featurize_to_store(path, store, SPEC, client=client, **KWARGS)
    assert job.resumed_partitions == 3
    after = read_composition(store)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert open_store(store).attrs["composition"]["rows_without_slots"] == 1


def test_other_kinds_and_older_stores_have_no_composition_arrays(tmp_path, client, data_dir):
    smiles = pd.read_csv(data_dir / "molecules" / "esol.csv", nrows=12)[["smiles"]]
    smiles.to_csv(tmp_path / "m.csv", index=False)
    molecules = str(tmp_path / "m.zarr")
    spec = FeaturizerSpec.parse("molecule", "maccs")
    featurize_to_store(str(tmp_path / "m.csv"), molecules, spec, column="smiles", client=client,
                       progress=False)  # fmt: skip
    ds = xr.open_zarr(molecules)
    assert "composition_element" not in ds and "composition" not in ds.attrs
    with pytest.raises(StoreError, match="'molecule' store"):
        read_composition(molecules)
    # a composition store as written before the composition arrays existed
    old = StoreLocation(str(tmp_path / "old.zarr"))
    attrs = {"title": "xenonscale feature store", "featurizer": SPEC.to_dict()}
    create_store(old, rows=2, labels=["a"], extras={}, chunk_rows=2, attrs=attrs)
    frame = pd.DataFrame({"id": ["0", "1"], "input": ["Fe2O3", "NaCl"]})
    write_region(old, 0, frame, np.ones((2, 1)), np.ones(2, bool), extras={})
    finalize_store(old, pd.DataFrame(columns=["row", "input", "error"]), {})
    assert open_store(old.url).features.shape == (2, 1)
    assert xr.open_zarr(old.url).ok.values.all()
    with pytest.raises(StoreError, match=r"built before.*--overwrite"):
        read_composition(old.url)
    with pytest.raises(StoreError, match="no feature store"):
        read_composition(str(tmp_path / "absent.zarr"))
