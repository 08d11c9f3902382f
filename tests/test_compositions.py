"""Composition featurizers: hand calculations, scikit-learn manners, XenonPy and matminer parity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from xenonscale.elements import ElementTable
from xenonscale.errors import ConfigError, FeaturizerError
from xenonscale.featurize import Compositions, ElementStatistics

POOLING_NAMES = [
    "WeightedAverage",
    "WeightedSum",
    "WeightedVariance",
    "GeometricMean",
    "HarmonicMean",
    "MaxPooling",
    "MinPooling",
]

TINY = ElementTable.from_frame(
    pd.DataFrame({"a": [2.0, 8.0, -3.0], "b": [1.0, 0.0, 4.0]}, index=["H", "O", "Fe"]),
    name="tiny",
)


def test_hand_calculation_of_every_pooling():
    comp = Compositions(elements=TINY, featurizers="all")
    frame = comp.transform(["H2O", "Fe2O3"])
    h2o, fe2o3 = frame.iloc[0], frame.iloc[1]
    # H2O: x_a = (2, 2, 8), n = (2, 1), N = 3
    assert h2o["ave:a"] == pytest.approx((2 * 2 + 8) / 3)
    assert h2o["sum:a"] == pytest.approx(12)
    assert h2o["var:a"] == pytest.approx(2 / 3 * (2 - 4) ** 2 + 1 / 3 * (8 - 4) ** 2)
    assert h2o["gmean:a"] == pytest.approx((2**2 * 8) ** (1 / 3))
    assert h2o["hmean:a"] == pytest.approx(3 / (2 / 2 + 1 / 8))
    assert (h2o["max:a"], h2o["min:a"]) == (8, 2)
    assert h2o["hmean:b"] == 0.0  # a zero value makes the harmonic mean 0 (XenonPy)
    assert h2o[["H", "O", "Fe"]].tolist() == pytest.approx([2 / 3, 1 / 3, 0])
    # Fe2O3 with a negative value: (-3)^2 * 8^3 > 0, so gmean is defined
    assert fe2o3["gmean:a"] == pytest.approx((9 * 512) ** (1 / 5))
    assert fe2o3["ave:a"] == pytest.approx((2 * -3 + 3 * 8) / 5)
    odd = comp.transform(["FeO3"]).iloc[0]  # (-3)^1 * 8^3 < 0 and 1/4 is no integer
    assert np.isnan(odd["gmean:a"])
    assert Compositions(elements=TINY, counting="amount", featurizers=["Counting"]).transform(
        ["Fe2O3"]
    ).iloc[0].tolist() == [0, 3, 2]


def test_labels_follow_xenonpy_and_sklearn_manners():
    comp = Compositions(elements=TINY, featurizers="classic")
    assert comp.labels[:2] == ["ave:a", "ave:b"]
    assert [lab.split(":")[0] for lab in comp.labels[::2]] == ["ave", "sum", "var", "max", "min"]
    assert list(comp.get_feature_names_out()) == comp.labels
    cloned = clone(comp)
    assert cloned.get_params() == comp.get_params()
    assert cloned is not comp
    assert comp.fit(["NaCl"]) is comp
    series = pd.Series(["H2O", "Xx"], index=["w", "bad"])
    frame = comp.fit_transform(series)
    assert list(frame.index) == ["w", "bad"]
    assert frame.loc["bad"].isna().all()
    assert comp.errors_.to_dict("records") == [
        {"row": 1, "input": "Xx", "error": "unknown element 'Xx'"}
    ]
    assert frame.attrs["errors"][0]["row"] == 1


def test_bad_arguments_fail_fast_with_the_value_named():
    with pytest.raises(ConfigError, match="'Averages'"):
        Compositions(elements=TINY, featurizers=["Averages"]).transform(["H2O"])
    with pytest.raises(ConfigError, match="counting='percent'"):
        Compositions(elements=TINY, counting="percent").transform(["H2O"])
    with pytest.raises(ConfigError, match="on_error='skip'"):
        Compositions(elements=TINY, on_error="skip").transform(["H2O"])
    with pytest.raises(ConfigError, match="single string"):
        Compositions(elements=TINY).transform("H2O")
    with pytest.raises(FeaturizerError, match="row 1"):
        Compositions(elements=TINY, on_error="raise").transform(["H2O", "Xx"])


def test_element_outside_the_table_is_an_error_row():
    frame = Compositions(elements=TINY).transform(["H2O", "NaCl", "FeO"])
    assert frame.iloc[[0, 2]].notna().all().all()
    assert frame.iloc[1].isna().all()
    (error,) = Compositions(elements=TINY).featurize_batch(["NaCl"]).errors
    assert "Na, Cl" in error.reason and "'tiny'" in error.reason


def test_empty_and_all_bad_batches():
    comp = Compositions(elements=TINY)
    assert comp.transform([]).shape == (0, len(comp.labels))
    assert comp.transform(["Xx", ""]).isna().all().all()


def _xenonpy_reference(peers, xenonpy58_csv, comps):
    """XenonPy 0.6.7's ``Compositions(featurizers=POOLING_NAMES)`` run in the peer environment."""
    return peers.call(
        "xenonpy_compositions",
        compositions=comps,
        featurizers=list(POOLING_NAMES),
        elements_csv=xenonpy58_csv,
    )["frame"]


def _assert_parity(ours: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Equal to 1e-6 relative wherever the reference is finite.

    Values that are 0 in exact arithmetic (a variance of equal values) come out
    as rounding noise in both implementations, so a floor of 1e-12 times the
    column's scale applies there.
    """
    reference = reference[ours.columns]
    a, b = ours.to_numpy(), reference.to_numpy(dtype=float)
    finite = np.isfinite(b)
    assert finite.mean() > 0.99
    scale = np.nanmax(np.where(finite, np.abs(b), np.nan), axis=0)
    close = np.isclose(a, b, rtol=1e-6, atol=0) | (np.abs(a - b) <= 1e-12 * scale)
    bad = finite & ~close
    if bad.any():
        r, c = np.argwhere(bad)[0]
        pytest.fail(
            f"{bad.sum()} values differ, e.g. row {r} {ours.columns[c]}: ours {a[r, c]!r} "
            f"vs XenonPy {b[r, c]!r}"
        )


@pytest.mark.peers
@pytest.mark.parametrize(
    ("dataset", "rows"),
    [
        ("matbench_expt_gap", 1200),
        ("matbench_mp_e_form", 1200),
        ("oqmd_formation_enthalpy_val", 1200),
        ("matbench_glass", 600),
    ],
)
def test_parity_with_xenonpy(peers, xenonpy58_csv, data_dir, dataset, rows):
    from pymatgen.core import Composition

    frame = pd.read_csv(data_dir / "compositions" / f"{dataset}.csv")
    formulas = frame.formula.sample(rows, random_state=7).tolist()
    reference = _xenonpy_reference(
        peers, xenonpy58_csv, [Composition(f).as_dict() for f in formulas]
    )
    ours = Compositions(elements="xenonpy58", featurizers="pooling").transform(formulas)
    assert ours.shape == (rows, 7 * 58)
    _assert_parity(ours, reference)


@pytest.mark.peers
def test_parity_with_xenonpy_on_dict_inputs(peers, xenonpy58_csv, data_dir):
    frame = pd.read_csv(data_dir / "compositions" / "xenonpy_quasicrystal.csv", index_col=0)
    texts = frame.composition.iloc[::20].tolist()
    import ast

    dicts = [ast.literal_eval(t) for t in texts]
    reference = _xenonpy_reference(peers, xenonpy58_csv, dicts)
    ours = Compositions(elements="xenonpy58", featurizers="pooling").transform(texts)
    _assert_parity(ours, reference)


@pytest.mark.peers
@pytest.mark.parametrize(("impute_nan", "elements"), [(True, "magpie_imputed"), (False, "magpie")])
def test_magpie_preset_matches_matminer(peers, data_dir, impute_nan, elements):
    formulas = (
        pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
        .formula.sample(400, random_state=3)
        .tolist()
    )
    # elements whose Magpie data has gaps (He, Ne, Rn, Fr, At, Bk) exercise the imputation
    formulas += ["Fe2O3", "NaCl", "LiFePO4", "Ba0.5Sr0.5TiO3", "H2O", "RnF2", "FrCl", "HeNe"]
    formulas += ["BkO2", "AtH", "Ar2Ne"]
    # matminer's ElementProperty.from_preset("magpie", impute_nan=...).featurize, in its own env
    theirs = peers.call(
        "matminer_element_property", preset="magpie", impute_nan=impute_nan, formulas=formulas
    )
    reference = theirs["array"]
    stats = ElementStatistics(elements=elements)
    ours = stats.transform(formulas)
    assert ours.shape == (len(formulas), 132)
    assert stats.labels == theirs["result"]["labels"]
    assert np.isnan(reference).any() != impute_nan
    np.testing.assert_allclose(ours.to_numpy(), reference, rtol=1e-6, atol=1e-9)


def test_featurizing_a_flood_of_bad_rows_keeps_every_good_row(data_dir):
    rng = np.random.default_rng(11)
    good = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").formula
    good = good.sample(1500, random_state=1).tolist()
    junk = list("()[]·*-#$ 0xyzQ!,;")
    bad = []
    for i in range(1500):
        base = good[i]
        cut = int(rng.integers(0, len(base) + 1))
        bad.append(base[:cut] + junk[int(rng.integers(len(junk)))] + "Xx"[: i % 3] + base[cut:])
    bad = [b for b in bad if "Xx" in b or any(c in b for c in "()[]-#$!,;xyzQ")]
    items = good + bad
    order = rng.permutation(len(items))
    items = [items[i] for i in order]
    comp = Compositions(elements="xenonpy58", featurizers="classic")
    batch = comp.featurize_batch(items)
    is_good = np.array([x in set(good) for x in items])
    assert batch.ok[is_good].all()
    assert np.isfinite(batch.values[is_good]).all()
    assert batch.ok.sum() + len(batch.errors) == len(items)
    assert len(bad) >= 1000
    assert np.isnan(batch.values[~batch.ok]).all()
    # the good rows equal a clean run of the good rows alone
    clean = comp.featurize_batch([x for x in items if x in set(good)])
    np.testing.assert_array_equal(batch.values[is_good], clean.values)
