"""Tests of xenonscale.elements: ElementTable, presets and the default-table builder."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xenonscale.elements import (
    PERIODIC_SYMBOLS,
    PRESETS,
    ElementTable,
    builder,
    load_table,
    presets,
)
from xenonscale.errors import ElementTableError

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def data_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared data mirror (XENONSCALE_DATA_DIR or ../shared/data); skip if absent."""
    root = Path(os.environ.get("XENONSCALE_DATA_DIR") or REPO.parent / "shared" / "data")
    if not (root / "elements" / "xenonpy58.csv").is_file():
        pytest.skip(f"no data mirror at {root} (set XENONSCALE_DATA_DIR to ../shared/data)")
    monkeypatch.setenv("XENONSCALE_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="module")
def default_table() -> ElementTable:
    return builder.build_default_table(cache=False)


@pytest.fixture(scope="module")
def raw_default() -> pd.DataFrame:
    return builder.collect_raw()[0]


def _exact_csv(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    return [r[0] for r in rows[1:]], rows[0][1:], values


def _tiny(**changes) -> ElementTable:
    kwargs = {
        "name": "tiny",
        "symbols": ("H", "He", "Li"),
        "properties": ("a", "b"),
        "values": np.arange(6.0).reshape(3, 2),
    }
    kwargs.update(changes)
    return ElementTable(**kwargs)


# ------------------------------------------------------------- ElementTable
def test_from_frame_orders_rows_by_atomic_number() -> None:
    frame = pd.DataFrame({"mass": [55.845, 1.008, 4.0026]}, index=["Fe", "H", "He"])
    mask = np.array([[True], [False], [False]])
    table = ElementTable.from_frame(frame, name="t", units={"mass": "Da"}, imputed=mask)
    assert table.symbols == ("H", "He", "Fe")
    assert table.values[:, 0].tolist() == [1.008, 4.0026, 55.845]
    assert table.imputed[:, 0].tolist() == [False, False, True]  # mask follows its row
    assert table.atomic_numbers.tolist() == [1, 2, 26]
    assert table.z_to_row[26] == 2 and table.z_to_row[3] == -1
    assert table.units == {"mass": "Da"} and table.sources == {"mass": ""}


def test_select_keeps_order_units_and_mask() -> None:
    table = _tiny(units={"a": "pm", "b": "K"}, imputed=[[0, 1], [0, 0], [1, 0]])
    picked = table.select(["b", "a"])
    assert picked.properties == ("b", "a")
    assert picked.values[:, 0].tolist() == [1.0, 3.0, 5.0]
    assert picked.imputed[:, 0].tolist() == [True, False, False]
    assert picked.units == {"b": "K", "a": "pm"}
    with pytest.raises(ElementTableError, match="'zz'"):
        table.select(["zz"])


def test_sha256_depends_on_content_only() -> None:
    assert _tiny().sha256 == _tiny(name="other", description="x").sha256
    assert _tiny().sha256 != _tiny(values=np.arange(6.0).reshape(3, 2) + 1e-12).sha256
    assert _tiny().sha256 != _tiny(properties=("a", "c")).sha256
    assert len(_tiny().sha256) == 64


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"values": np.zeros((2, 2))}, "shape"),
        ({"properties": ("a", "a")}, "duplicate"),
        ({"symbols": ("He", "H", "Li")}, "sorted"),
        ({"symbols": ("H", "Xx", "Li")}, "'Xx'"),
        ({"imputed": np.zeros((3, 3), dtype=bool)}, "mask"),
    ],
)
def test_malformed_tables_raise(changes: dict, message: str) -> None:
    with pytest.raises(ElementTableError, match=message):
        _tiny(**changes)


def test_from_frame_rejects_duplicate_symbols() -> None:
    with pytest.raises(ElementTableError, match="duplicate"):
        ElementTable.from_frame(pd.DataFrame({"a": [1.0, 2.0]}, index=["H", "H"]), name="d")


def test_table_is_immutable() -> None:
    source = np.arange(6.0).reshape(3, 2)
    table = _tiny(values=source)
    source[0, 0] = 99.0  # the table holds its own copy
    assert table.values[0, 0] == 0.0
    assert not table.values.flags.writeable and not table.imputed.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        table.values[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        table.name = "changed"  # type: ignore[misc]


def test_value_errors_name_the_bad_input() -> None:
    table = _tiny()
    assert table.value("He", "b") == 3.0
    with pytest.raises(ElementTableError, match="'Fe'"):
        table.value("Fe", "a")
    with pytest.raises(ElementTableError, match="'nope'"):
        table.value("H", "nope")


# ------------------------------------------------------------------ load_table
def test_load_table_unknown_name_names_value_and_presets() -> None:
    with pytest.raises(ElementTableError, match="'no-such-table'") as info:
        load_table("no-such-table")
    for name in PRESETS:
        assert repr(name) in str(info.value)
    with pytest.raises(ElementTableError, match="42"):
        load_table(42)  # type: ignore[arg-type]


def test_load_table_passes_tables_and_wraps_frames() -> None:
    table = _tiny()
    assert load_table(table) is table
    frame = pd.DataFrame({"x": [2.0, 1.0]}, index=["He", "H"])
    frame.attrs["name"] = "mine"
    wrapped = load_table(frame)
    assert wrapped.name == "mine" and wrapped.symbols == ("H", "He")
    assert wrapped.values[:, 0].tolist() == [1.0, 2.0]


def test_load_table_default_is_cached_in_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XENONSCALE_CACHE_DIR", str(tmp_path))
    presets.clear_cache()
    try:
        first = load_table()
        assert first.name == "xenonscale"
        assert load_table("XenonScale") is first
    finally:
        presets.clear_cache()


# ------------------------------------------------------------------- xenonpy58
def test_xenonpy58_equals_the_csv_exactly(data_root: Path) -> None:
    table = presets.load_xenonpy58()
    symbols, properties, values = _exact_csv(data_root / "elements" / "xenonpy58.csv")
    assert table.symbols == tuple(PERIODIC_SYMBOLS[:94]) == tuple(symbols)
    assert table.symbols[0] == "H" and table.symbols[-1] == "Pu"
    assert table.properties == tuple(properties) and len(properties) == 58
    np.testing.assert_array_equal(table.values, values)  # bit-for-bit
    assert not np.isnan(table.values).any() and not table.imputed.any()
    assert set(table.units) == set(properties)
    assert table.units["atomic_radius"] == "pm" and table.units["boiling_point"] == "K"
    assert table.units["density"] == "g/cm^3" and table.units["first_ion_en"] == "eV"
    assert all(table.sources.values())


def test_xenonpy58_via_load_table(data_root: Path) -> None:
    presets.clear_cache()
    try:
        assert load_table("xenonpy58").value("Fe", "atomic_number") == 26.0
    finally:
        presets.clear_cache()


# ------------------------------------------------- mat2vec, oliynyk, jarvis
@pytest.mark.parametrize(
    ("name", "shape", "missing"),
    [("mat2vec", (118, 200), 0), ("oliynyk", (85, 44), 14), ("jarvis", (82, 438), 0)],
)
def test_cbfv_tables_equal_pandas_read_csv_cell_by_cell(
    data_root: Path, name: str, shape: tuple[int, int], missing: int
) -> None:
    presets.clear_cache()
    try:
        table = load_table(name)
    finally:
        presets.clear_cache()
    reference = pd.read_csv(data_root / "elements" / f"{name}.csv", index_col=0)
    assert table.name == name and table.values.shape == shape == reference.shape
    assert set(table.symbols) == set(reference.index)
    zs = [PERIODIC_SYMBOLS.index(s) for s in table.symbols]
    assert zs == sorted(zs)  # rows ordered by Z whatever the file's order (jarvis)
    assert table.properties == tuple(reference.columns)
    expected = reference.loc[list(table.symbols)].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(table.values, expected)  # NaN where NaN, else bit-equal
    assert int(np.isnan(table.values).sum()) == missing
    assert not table.imputed.any()
    assert all(table.sources.values()) and set(table.units) == set(table.properties)


def test_cbfv_units_and_provenance(data_root: Path) -> None:
    oliynyk = presets.load_cbfv("oliynyk")
    assert oliynyk.units["Melting_point_(K)"] == "K"
    assert oliynyk.units["Miracle_Radius_[pm]"] == "pm"
    assert oliynyk.units["Atomic_Weight"] == "Da" and oliynyk.units["Number"] == ""
    assert "Chem. Mater. 28, 7324 (2016)" in oliynyk.sources["Number"]
    assert "14 missing values kept as NaN" in oliynyk.description
    for name, citation in [
        ("mat2vec", "Nature 571, 95 (2019)"),
        ("jarvis", "Phys. Rev. Materials 2, 083801 (2018)"),
    ]:
        table = presets.load_cbfv(name)  # type: ignore[arg-type]
        assert not any(table.units.values())
        assert "dimensionless" in table.description and citation in table.description
        assert "npj Comput. Mater. 7, 77 (2021)" in table.description
    with pytest.raises(ElementTableError, match="'magpie'"):
        presets.load_cbfv("magpie")  # type: ignore[arg-type]


def test_every_preset_loads_by_name(data_root: Path) -> None:
    names = {"mat2vec", "oliynyk", "jarvis", "magpie", "xenonpy58", "xenonscale"}
    assert names <= set(PRESETS)
    presets.clear_cache()
    try:
        for name in sorted(names):
            table = load_table(name)
            assert table.name == name and len(table) >= 82 and table.properties
            first, fe = table.properties[0], table.symbols.index("Fe")
            assert table.value("Fe", first) == table.values[fe, 0]
    finally:
        presets.clear_cache()


def test_compositions_over_oliynyk_average_by_hand(data_root: Path) -> None:
    from xenonscale.featurize import Compositions

    frame = Compositions(elements="oliynyk", featurizers=["WeightedAverage"]).transform(
        ["Fe2O3", "PoO"]
    )
    csv_table = pd.read_csv(data_root / "elements" / "oliynyk.csv", index_col=0)
    expected = (2 * csv_table.loc["Fe"] + 3 * csv_table.loc["O"]) / 5
    np.testing.assert_allclose(frame.loc[0].to_numpy(float), expected.to_numpy(), rtol=1e-6)
    assert frame.loc[1].isna().all()  # Po is not in Oliynyk's table


# ---------------------------------------------------------------------- magpie
@pytest.mark.peers
@pytest.mark.parametrize("impute_nan", [False, True])
def test_magpie_matches_matminer(peers, impute_nan: bool) -> None:
    # matminer's MagpieData(impute_nan).all_elemental_props, read in the peer environment;
    # ours parses the same .table files without importing matminer
    answer = peers.call("matminer_magpie", impute_nan=impute_nan)["result"]
    table = presets.load_magpie(impute_nan=impute_nan, source=Path(answer["folder"]))
    theirs = answer["props"]
    assert table.properties == presets.MAGPIE_PROPERTIES
    assert len(table.properties) == 22
    assert table.symbols[-1] == ("Og" if impute_nan else "Cn")
    for prop in table.properties:
        expected = np.array([theirs[prop][s] for s in table.symbols], dtype=float)
        np.testing.assert_allclose(table.select([prop]).values[:, 0], expected, rtol=0, atol=1e-12)
    he_en = table.value("He", "Electronegativity")
    assert math.isnan(he_en) != impute_nan  # matminer has no value for He
    assert table.imputed.any() == impute_nan


@pytest.mark.peers
def test_magpie_mirror_fallback_equals_matminer(peers, data_root: Path) -> None:
    folder = Path(peers.call("matminer_magpie", impute_nan=False)["result"]["folder"])
    mirror = presets.load_magpie(source="mirror")
    matminer = presets.load_magpie(source=folder)
    assert mirror.symbols == matminer.symbols == tuple(PERIODIC_SYMBOLS[:112])  # H..Cn
    pd.testing.assert_frame_equal(mirror.to_frame(), matminer.to_frame())
    for impute_nan in (False, True):  # the imputed means too: over every element with a value
        a = presets.load_magpie(source="mirror", impute_nan=impute_nan).to_frame()
        b = presets.load_magpie(source=folder, impute_nan=impute_nan).to_frame()
        pd.testing.assert_frame_equal(a, b)


def test_magpie_bad_source_names_value() -> None:
    with pytest.raises(ElementTableError, match="'web'"):
        presets.load_magpie(source="web")  # type: ignore[arg-type]


# --------------------------------------------------------------- default table
def test_default_table_shape_units_sources(default_table: ElementTable) -> None:
    assert default_table.symbols == tuple(PERIODIC_SYMBOLS[:103])
    np.testing.assert_array_equal(
        default_table.select(["atomic_number"]).values[:, 0], np.arange(1, 104)
    )
    assert len(default_table.properties) >= 58
    assert set(default_table.units) == set(default_table.properties)
    for prop, source in default_table.sources.items():
        assert source.startswith(("mendeleev ", "pymatgen ")), prop
    assert default_table.units["atomic_radius"] == "pm"
    assert default_table.units["ionization_energy_1"] == "eV"
    assert not np.isnan(default_table.values).any()


def test_default_mask_marks_exactly_the_missing_values(
    default_table: ElementTable, raw_default: pd.DataFrame
) -> None:
    frame = default_table.to_frame()
    mask = default_table.imputed_frame()
    assert list(raw_default.columns) == list(default_table.properties)
    pd.testing.assert_frame_equal(mask, raw_default.isna(), check_names=False)
    observed = ~mask.to_numpy()
    np.testing.assert_array_equal(frame.to_numpy()[observed], raw_default.to_numpy()[observed])
    low, high = raw_default.min(), raw_default.max()
    assert ((frame >= low) & (frame <= high)).all().all()  # imputed values clipped
    assert (raw_default.notna().mean() >= builder.MIN_COVERAGE).all()


def test_default_values_agree_with_mendeleev_and_pymatgen(default_table: ElementTable) -> None:
    mendeleev = pytest.importorskip("mendeleev")
    core = pytest.importorskip("pymatgen.core")
    mask = default_table.imputed_frame()
    fe = mendeleev.element("Fe")
    for prop, expected in [
        ("atomic_weight", fe.atomic_weight),
        ("density", fe.density),
        ("en_pauling", fe.en_pauling),
        ("covalent_radius_pyykko", fe.covalent_radius_pyykko),
        ("electron_affinity", fe.electron_affinity),
        ("melting_point", fe.melting_point),
        ("ionization_energy_2", fe.ionenergies[2]),
        ("atomic_volume", fe.atomic_volume),
    ]:
        assert not mask.loc["Fe", prop], prop
        assert default_table.value("Fe", prop) == pytest.approx(expected, rel=1e-12), prop
    # values mendeleev/pymatgen lack are imputed, and only those
    assert fe.atomic_weight == default_table.value("Fe", "atomic_weight") == 55.845
    assert mendeleev.element("He").en_pauling is None and mask.loc["He", "en_pauling"]
    assert mendeleev.element("Lr").electron_affinity is None
    assert mask.loc["Lr", "electron_affinity"] and mask.loc["Lr", "en_mulliken"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert core.Element("He").youngs_modulus is None and mask.loc["He", "youngs_modulus"]
        assert default_table.value("Fe", "youngs_modulus") == float(
            core.Element("Fe").youngs_modulus
        )
    assert not mask.loc["Fe", "youngs_modulus"]
    # valence counts parsed from "[Xe] 4f14 5d10 6s"
    au = default_table.to_frame().loc["Au"]
    assert (au["num_s_valence"], au["num_d_valence"], au["num_f_valence"]) == (1, 10, 14)
    assert au["num_unfilled"] == 1


def test_building_twice_gives_identical_values(default_table: ElementTable) -> None:
    again = builder.build_default_table(cache=False)
    np.testing.assert_array_equal(again.values, default_table.values)
    np.testing.assert_array_equal(again.imputed, default_table.imputed)
    assert again.sha256 == default_table.sha256


def test_cache_is_written_and_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, default_table: ElementTable
) -> None:
    monkeypatch.setenv("XENONSCALE_CACHE_DIR", str(tmp_path))
    built = builder.build_default_table()
    (csv_path,) = (tmp_path / "elements").glob("xenonscale-*.csv")
    sidecar = json.loads(csv_path.with_suffix(".json").read_text())
    assert sidecar["versions"] == builder.library_versions()
    assert sidecar["units"] == dict(built.units)
    assert len(sidecar["imputed"]) == int(built.imputed.sum())
    assert built.sha256 == default_table.sha256

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(builder, "collect_raw", no_rebuild)
        cached = builder.build_default_table()
    np.testing.assert_array_equal(cached.values, built.values)  # exact float round trip
    np.testing.assert_array_equal(cached.imputed, built.imputed)
    assert cached.sources == built.sources and cached.description == built.description

    # a stale sidecar (other library versions) or a damaged file forces a rebuild
    sidecar["versions"] = {**sidecar["versions"], "mendeleev": "0.0"}
    csv_path.with_suffix(".json").write_text(json.dumps(sidecar))
    assert builder.build_default_table().sha256 == built.sha256
    csv_path.write_text("garbage")
    assert builder.build_default_table().sha256 == built.sha256
    assert builder.build_default_table(cache=True).sha256 == built.sha256


def test_impute_iterative_keeps_observed_and_clips() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0, 5.0], "b": [10.0, np.nan, 30.0, 40.0, np.nan]})
    filled, mask, _ = builder.impute_iterative(frame)
    assert mask["b"].tolist() == [False, True, False, False, True]
    assert filled.loc[~mask["b"], "b"].tolist() == [10.0, 30.0, 40.0]
    assert filled["b"].between(10.0, 40.0).all()
    with pytest.raises(ElementTableError, match="'c'"):
        builder.impute_iterative(frame.assign(c=np.nan))
