"""Formula parsing: forms, errors per row, and a property-based flood of bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Composition

from xenonscale.chem import parse_compositions, parse_formula
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError, FormulaError, XenonscaleError


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("Fe2O3", {"Fe": 2, "O": 3}),
        ("Li0.5CoO2", {"Li": 0.5, "Co": 1, "O": 2}),
        ("Fe.5O", {"Fe": 0.5, "O": 1}),
        ("HOH", {"H": 2, "O": 1}),
        ("Fe2 O3", {"Fe": 2, "O": 3}),
        ("  NaCl\t", {"Na": 1, "Cl": 1}),
        ("Ca3(PO4)2", {"Ca": 3, "P": 2, "O": 8}),
        ("(NH4)2[Fe(SO4)2]", {"N": 2, "H": 8, "Fe": 1, "S": 2, "O": 8}),
        ("K4[Fe(CN)6]", {"K": 4, "Fe": 1, "C": 6, "N": 6}),
        ("Mg(OH)2", {"Mg": 1, "O": 2, "H": 2}),
        ("CuSO4·5H2O", {"Cu": 1, "S": 1, "O": 9, "H": 10}),
        ("CuSO4.5H2O", {"Cu": 1, "S": 1, "O": 9, "H": 10}),
        ("CuSO4*5H2O", {"Cu": 1, "S": 1, "O": 9, "H": 10}),
        ("CuSO4 · 5 H2O", {"Cu": 1, "S": 1, "O": 9, "H": 10}),
        ("Na2CO3.H2O", {"Na": 2, "C": 1, "O": 4, "H": 2}),
        ("CaSO4·0.5H2O", {"Ca": 1, "S": 1, "O": 4.5, "H": 1}),
        ("Fe0.5O1.5", {"Fe": 0.5, "O": 1.5}),
        ("Fe2.5H2O2", {"Fe": 2.5, "H": 2, "O": 2}),
        ("2Fe2O3", {"Fe": 4, "O": 6}),
    ],
)
def test_formula_forms(formula, expected):
    assert parse_formula(formula) == pytest.approx(expected)
    batch = parse_compositions([formula])
    assert batch.ok.tolist() == [True]
    assert batch.as_dicts()[0] == pytest.approx(expected)


def test_mapping_string_and_pymatgen_inputs():
    inputs = [
        {"Fe": 2, "O": 3},
        "{'Sr': 1.0, 'Ag': 4.0, 'Sb': 2.0}",  # XenonPy's quasicrystal file
        Composition("Fe2O3"),
        Composition({"Li": 0.25, "Fe": 1}),
        Composition({"Na+": 1, "Cl-": 1}),  # oxidation-state decorated (Species keys)
    ]
    rows = parse_compositions(inputs).as_dicts()
    assert rows[4] == {"Na": 1.0, "Cl": 1.0}
    assert rows[0] == {"O": 3.0, "Fe": 2.0}
    assert rows[1] == {"Ag": 4.0, "Sb": 2.0, "Sr": 1.0}
    assert rows[2] == {"O": 3.0, "Fe": 2.0}
    assert rows[3] == pytest.approx({"Li": 0.25, "Fe": 1.0})


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("Xx2O", "unknown element 'Xx'"),
        ("Fe(O", "never closed"),
        ("FeO)", "without an opening"),
        ("Fe(O]", "closed by"),
        ("", "empty formula"),
        ("   ", "empty formula"),
        ("Fe0O", "must be positive"),
        ("Fe-2O", "unexpected character '-'"),
        ("fe2o3", "unexpected character 'f'"),
        ("()2", "empty brackets"),
        ("CuSO4··H2O", "empty part"),
        ({"Fe": -1}, "must be positive"),
        ({"Fe": float("nan")}, "non-finite"),
        ({"Fe": float("inf")}, "non-finite"),
        ({"Qq": 1}, "unknown element"),
        ({}, "empty composition"),
        (None, "empty input"),
        (3.5, "unsupported input type float"),
        ("{'Fe': 'two'}", "is not a number"),
    ],
)
def test_bad_inputs_become_error_rows(bad, reason):
    batch = parse_compositions(["NaCl", bad, "MgO"])
    assert batch.ok.tolist() == [True, False, True]
    assert len(batch.errors) == 1
    error = batch.errors[0]
    assert error.row == 1
    assert reason in error.reason
    assert batch.amounts[1].nnz == 0
    with pytest.raises(FormulaError, match="row 1"):
        parse_compositions(["NaCl", bad], on_error="raise")


def test_row_boundaries_do_not_leak_between_neighbours():
    items = ["H", "2", "O", "", "Fe", "3Fe", "Na", ".5Cl", "K", "1.2.3", "Ca", "\n", "Mg2"]
    batch = parse_compositions(items)
    assert batch.as_dicts() == [parse_compositions([x]).as_dicts()[0] for x in items]
    assert batch.as_dicts()[0] == {"H": 1.0}
    assert batch.as_dicts()[5] == {"Fe": 3.0}


def test_errors_share_one_base_and_bad_argument_fails_fast():
    assert issubclass(FormulaError, XenonscaleError)
    with pytest.raises(ConfigError, match="on_error='ignore'"):
        parse_compositions(["NaCl"], on_error="ignore")


def test_matches_pymatgen_on_real_formulas(data_dir):
    import pandas as pd

    formulas = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").formula
    batch = parse_compositions(formulas.tolist())
    assert batch.ok.all()
    for formula, ours in zip(formulas[:1500], batch.as_dicts()[:1500], strict=True):
        assert ours == pytest.approx(Composition(formula).get_el_amt_dict()), formula


# --- property-based: a flood of malformed formulas mixed with valid ones -------------

_SYMBOLS = st.sampled_from(PERIODIC_SYMBOLS[:94])
_AMOUNT = st.one_of(
    st.just(""), st.integers(1, 40).map(str), st.floats(0.05, 20).map(lambda x: f"{x:.3f}")
)
VALID = st.lists(st.tuples(_SYMBOLS, _AMOUNT), min_size=1, max_size=6).map(
    lambda parts: "".join(s + a for s, a in parts)
)
JUNK_CHARS = st.sampled_from(list("()[]{}·*.-+#$ 0123456789xyzXQJ!@%^&_=,;:'\"\\/<>?\n\t"))
MALFORMED = st.one_of(
    st.text(min_size=0, max_size=12),  # arbitrary unicode
    st.lists(JUNK_CHARS, min_size=1, max_size=8).map("".join),
    st.tuples(VALID, JUNK_CHARS, VALID).map("".join),  # valid pieces with junk inside
    st.tuples(st.sampled_from(["Xx", "Qq", "Jj", "Zz", "A", "Ab"]), _AMOUNT).map("".join),
    VALID.map(lambda v: "(" + v),  # unbalanced
    VALID.map(lambda v: v + ")3"),
    VALID.map(lambda v: v + "0"),  # trailing zero amount on the last element
    st.just(None),
    st.floats(allow_nan=True),
    st.dictionaries(st.text(max_size=3), st.floats(allow_nan=True, allow_infinity=True)),
)


def _reference(item):
    """Independent oracle: pymatgen for strings it accepts, else 'unknown'."""
    if not isinstance(item, str):
        return None
    try:
        return Composition(item).get_el_amt_dict()
    except Exception:
        return None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    valid=st.lists(VALID, min_size=10, max_size=40),
    malformed=st.lists(MALFORMED, min_size=25, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_flood_of_malformed_input_never_raises_and_loses_nothing(valid, malformed, seed):
    items = [*valid, *malformed]
    order = np.random.default_rng(seed).permutation(len(items))
    items = [items[i] for i in order]
    batch = parse_compositions(items)  # must not raise

    # counts add up: every row is either parsed or reported, exactly once
    assert len(batch) == len(items)
    assert batch.ok.sum() + len(batch.errors) == len(items)
    assert sorted(e.row for e in batch.errors) == np.flatnonzero(~batch.ok).tolist()
    assert all(e.reason for e in batch.errors)

    rows = batch.as_dicts()
    # a row's result never depends on its neighbours: the batch equals one-by-one parsing
    alone = [parse_compositions([item]) for item in items]
    assert rows == [one.as_dicts()[0] for one in alone]
    assert [e.reason for e in batch.errors] == [one.errors[0].reason for one in alone if one.errors]
    valid_set = set(valid)
    for item, ok, parsed in zip(items, batch.ok, rows, strict=True):
        if isinstance(item, str) and item in valid_set:
            assert ok, item
            assert parsed == pytest.approx(_reference(item)), item
        if ok:
            assert all(v > 0 and math.isfinite(v) for v in parsed.values())


def test_a_batch_of_the_same_text_objects_is_parsed_once_per_thread():
    from xenonscale.chem.formula import parse_compositions
    from xenonscale.limits import RecordLimits, record_limits

    items = ["Fe2O3", "NaCl", "Xx2"]
    first = parse_compositions(items)
    assert parse_compositions(list(items)) is first  # the same str objects: reused
    fresh = parse_compositions(items, cache=False)
    assert fresh is not first
    assert (fresh.amounts != first.amounts).nnz == 0 and fresh.errors == first.errors
    with record_limits(RecordLimits(max_input_chars=4)):  # other limits: other error rows
        tight = parse_compositions(items)
    assert tight is not first and not tight.ok[0]
    mappings = [{"Fe": 2, "O": 3}]
    assert parse_compositions(mappings) is not parse_compositions(mappings)  # mutable: no reuse
