"""Hostile records: every one becomes an error row with its reason; the rest of the job completes.

Each repro of issue 12 (items 2, 3 and 5) is a case here, on the in-memory
path (``featurize_safely``, what ``transform`` and the table output use) and
through the engine on a real cluster. A hypothesis fuzz mixes real records
with the hostile shapes for compositions, structures and molecules and checks
that counts always add up and no exception escapes a batch.
"""

from __future__ import annotations

import gzip
import json
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenonscale.chem.formula import _parse_any, parse_compositions
from xenonscale.errors import ConfigError, FormulaError
from xenonscale.featurize import Compositions
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, featurize_safely
from xenonscale.featurize.molecules import ECFP, RDKitDescriptors
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.featurize.structures import (
    OrbitalFieldMatrix,
    RadialDistributionFunction,
    StructureProperties,
)
from xenonscale.limits import RecordLimits, RecordTimeout, record_limits, run_record

# -- hostile shapes (issue 12, items 2, 3, 5) ------------------------------------------

HOSTILE_FORMULAS = {
    "mapping of 5,000 terms": "{'Fe': " + "+".join(["1"] * 5000) + "}",
    "mapping of 100,000 minus signs": "{'Fe': " + "-" * 100_000 + "1}",
    "400-digit amount": "Fe" + "9" * 400,
    "1,100 nested brackets": "(" * 1100 + "Fe" + ")2" * 1100,
    "amount 1e20": "Fe99999999999999999999",
    "NUL inside": "Fe2\x00O3",
    "whitespace only": "   ",
    "two million characters": "Fe" * 1_000_000,
    "repeated element over the ceiling": "Fe999999Fe999999",
}
# what the reason must say
FORMULA_REASONS = {
    "mapping of 5,000 terms": "is not a number",
    "mapping of 100,000 minus signs": "is not a number",
    "400-digit amount": "non-finite amount",
    "1,100 nested brackets": "max_amount",
    "amount 1e20": "exceeds max_amount, limit 1000000; raise it with --max-amount",
    "NUL inside": "unexpected character '\\x00'",
    "whitespace only": "empty formula",
    "two million characters": "exceeds max_input_chars",
    "repeated element over the ceiling": "exceeds max_amount",
}

POSCAR_TINY_CUBE = "X\n1.0\n0.1 0 0\n0 0.1 0\n0 0 0.1\nFe\n1\ndirect\n0 0 0\n"
POSCAR_FLAT = "X\n1.0\n1000 0 0\n0 1000 0\n0 0 2e-6\nFe\n1\ndirect\n0 0 0\n"
HOSTILE_STRUCTURES = {
    "one atom in a 0.1 Å cube": (POSCAR_TINY_CUBE, "below min_volume_per_atom"),
    "a cell 2e-6 Å thin": (POSCAR_FLAT, "exceeds max_neighbors"),
    "80 KB of blank lines": ("x" + " \n" * 40_000 + "y", "unreadable POSCAR"),
    "deeply nested JSON": ('{"a":' + "[" * 100_000 + "]" * 100_000 + "}", "RecursionError"),
    "5,000 sites": (
        {"lattice": {"matrix": np.eye(3).tolist()}, "sites": [{}] * 5000},
        "exceeds max_atoms",
    ),
    "too long a text": ("data_x\n" + "#" * 1_100_000, "exceeds max_input_chars"),
}

HOSTILE_MOLECULES = {
    "C×100,000": ("C" * 100_000, "exceeds max_smiles_chars"),
    "C×3,000": ("C" * 3000, "exceeds max_molecule_atoms"),
    "4,000 open brackets": ("(" * 4000, "SMILES Parse Error"),
    "NUL": ("CC\x00O", "SMILES Parse Error"),
}


@pytest.fixture(scope="module")
def real_formulas(data_dir) -> list[str]:
    return pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").formula.tolist()


@pytest.fixture(scope="module")
def real_cifs(data_dir) -> list[str]:
    with gzip.open(data_dir / "structures" / "perov5_val.csv.gz", "rt") as handle:
        return pd.read_csv(handle, nrows=60).cif.tolist()


@pytest.fixture(scope="module")
def real_smiles(data_dir) -> list[str]:
    return pd.read_csv(data_dir / "molecules" / "esol.csv").smiles.tolist()


def _check_counts(batch: FeatureBatch, n: int) -> None:
    assert len(batch.ok) == n
    assert int(batch.ok.sum()) + len(batch.errors) == n
    rows = [e.row for e in batch.errors]
    assert rows == sorted(set(rows))
    assert not batch.ok[rows].any()
    assert np.isfinite(batch.values[batch.ok]).all() or batch.values.dtype != np.float64


# -- compositions -------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE_FORMULAS))
def test_a_hostile_formula_is_an_error_row_and_the_batch_goes_on(name, real_formulas):
    good = real_formulas[:20]
    inputs = [*good[:10], HOSTILE_FORMULAS[name], *good[10:]]
    started = time.perf_counter()
    batch = featurize_safely(Compositions(featurizers="classic"), inputs)
    assert time.perf_counter() - started < 10
    _check_counts(batch, len(inputs))
    assert batch.ok.tolist() == [True] * 10 + [False] + [True] * 10
    assert FORMULA_REASONS[name] in batch.errors[0].reason
    reference = Compositions(featurizers="classic").featurize_batch(good)
    np.testing.assert_array_equal(batch.values[batch.ok], reference.values)


def test_one_bad_amount_no_longer_poisons_training_statistics(real_formulas):
    # Before: Fe99999999999999999999 was ok and moved a feature's std from 85.6 to 1.9e19.
    inputs = [*real_formulas[:2000], "Fe99999999999999999999"]
    frame = Compositions(featurizers="classic").transform(inputs)
    clean = Compositions(featurizers="classic").transform(real_formulas[:2000])
    assert frame.iloc[-1].isna().all()
    pd.testing.assert_series_equal(frame.iloc[:-1].std(), clean.std())


def test_amount_ceilings_are_configurable():
    with record_limits(max_amount=1e30, max_formula_atoms=1e31):
        assert parse_compositions(["Fe99999999999999999999"]).ok.tolist() == [True]
    assert parse_compositions(["Fe99999999999999999999"]).ok.tolist() == [False]
    with record_limits(max_formula_atoms=10):
        batch = parse_compositions(["Fe5O6", "Fe5O5", "(FeO)6"])
    assert batch.ok.tolist() == [False, True, False]
    assert "exceeds max_formula_atoms, limit 10" in batch.errors[0].reason


FORMULA_ALPHABET = st.sampled_from(
    ["Fe", "O", "H", "Li", "Xx", "C", "a", "2", "0", "9", "99999999", ".", ".5", "(", ")", "[",
     "]", "{", "}", "·", "*", " ", "\t", "H2O", "e", "-", "+", ":", "'", ",", "\x00", "é", "1e9"]
)  # fmt: skip


@settings(max_examples=3000, deadline=None, derandomize=True)
@given(st.lists(FORMULA_ALPHABET, max_size=12).map("".join))
def test_fast_and_general_parsers_agree(text):
    """The whole-batch path and the general parser give the same rows, values and reasons."""
    batch = parse_compositions([text, "NaCl"])  # two rows: the fast path runs
    try:
        expected = _parse_any(text)
    except FormulaError as exc:
        assert batch.ok.tolist() == [False, True]
        assert batch.errors[0].reason == str(exc)
        return
    assert batch.ok.tolist() == [True, True]
    row = batch.amounts[0]
    assert dict(zip(row.indices.tolist(), row.data.tolist(), strict=True)) == pytest.approx(
        expected, rel=1e-12
    )


# -- structures ---------------------------------------------------------------------


STRUCTURE_FEATURIZERS = [RadialDistributionFunction, OrbitalFieldMatrix, StructureProperties]


@pytest.mark.parametrize("name", list(HOSTILE_STRUCTURES))
@pytest.mark.parametrize("featurizer", STRUCTURE_FEATURIZERS, ids=lambda f: f.__name__)
def test_a_hostile_structure_is_an_error_row(name, featurizer, real_cifs):
    item, reason = HOSTILE_STRUCTURES[name]
    if featurizer is StructureProperties and name == "a cell 2e-6 Å thin":
        reason = "spglib could not determine the space group"  # it searches no neighbours
    inputs = [*real_cifs[:3], item, *real_cifs[3:6]]
    started = time.perf_counter()
    batch = featurize_safely(featurizer(), inputs)
    assert time.perf_counter() - started < 20
    _check_counts(batch, len(inputs))
    assert batch.ok.tolist() == [True] * 3 + [False] + [True] * 3
    assert reason in batch.errors[0].reason, batch.errors[0].reason


def test_structure_budgets_are_configurable(real_cifs):
    with record_limits(max_atoms=4):  # perovskites have 5 sites
        batch = featurize_safely(RadialDistributionFunction(), real_cifs[:2])
    assert batch.ok.tolist() == [False, False]
    assert batch.errors[0].reason.endswith("exceeds max_atoms, limit 4; raise it with --max-atoms")
    with record_limits(max_neighbors=1000):
        batch = featurize_safely(RadialDistributionFunction(), real_cifs[:2])
    assert "exceeds max_neighbors, limit 1000" in batch.errors[0].reason
    with record_limits(min_volume_per_atom=1e-4):
        assert featurize_safely(StructureProperties(), [POSCAR_TINY_CUBE]).ok.tolist() == [True]


# -- molecules ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(HOSTILE_MOLECULES))
@pytest.mark.parametrize("featurizer", [ECFP, RDKitDescriptors], ids=lambda f: f.__name__)
def test_a_hostile_molecule_is_an_error_row(name, featurizer, real_smiles):
    item, reason = HOSTILE_MOLECULES[name]
    inputs = [*real_smiles[:5], item, *real_smiles[5:10]]
    started = time.perf_counter()
    batch = featurize_safely(featurizer(), inputs)
    assert time.perf_counter() - started < 10
    _check_counts(batch, len(inputs))
    assert batch.ok.tolist() == [True] * 5 + [False] + [True] * 5
    assert reason in batch.errors[0].reason, batch.errors[0].reason


# -- the wall-time limit and the net under every featurizer ----------------------------


class _Slow(BatchTransformer):
    """A featurizer whose record 'slow' runs for a minute in Python (one row each)."""

    def __init__(self, width: int = 2):
        self.width = width

    @property
    def labels(self) -> list[str]:
        return [f"x{i}" for i in range(self.width)]

    def featurize_batch(self, inputs) -> FeatureBatch:
        values = np.zeros((len(inputs), self.width))
        ok = np.ones(len(inputs), dtype=bool)
        errors = []
        for row, item in enumerate(inputs):
            try:
                values[row] = run_record(self._one, item)
            except RecordTimeout as exc:
                ok[row], values[row] = False, np.nan
                errors.append(featurize_error(row, item, str(exc)))
        return FeatureBatch(values, ok, errors)

    def _one(self, item) -> float:
        if item == "slow":
            end = time.monotonic() + 60
            while time.monotonic() < end:
                time.sleep(0.001)
        if item == "deep":
            raise RecursionError("maximum recursion depth exceeded")
        if item == "huge":
            raise MemoryError
        return float(len(item))


def featurize_error(row, item, reason):
    from xenonscale.chem.formula import RowError

    return RowError(row, str(item), reason)


def test_a_record_past_its_time_limit_is_an_error_row_and_the_rest_completes():
    with record_limits(record_seconds=0.2):
        started = time.perf_counter()
        batch = featurize_safely(_Slow(), ["a", "slow", "bcd", "slow", "ef"])
        elapsed = time.perf_counter() - started
    assert elapsed < 5
    assert batch.ok.tolist() == [True, False, True, False, True]
    assert batch.values[batch.ok, 0].tolist() == [1.0, 3.0, 2.0]
    assert batch.errors[0].reason == (
        "timed out after 0.2 s: exceeds record_seconds, limit 0.2; raise it with --record-seconds"
    )


def test_an_exception_escaping_a_featurizer_is_isolated_to_its_record():
    """RecursionError / MemoryError raised by one record: bisection makes it that row's error."""
    inputs = [str(i) for i in range(37)]
    inputs[5], inputs[30] = "deep", "huge"

    class Raising(_Slow):
        def featurize_batch(self, items):
            values = np.asarray([[self._one(x)] * 2 for x in items])  # no per-row guard
            return FeatureBatch(values, np.ones(len(items), dtype=bool), [])

    batch = featurize_safely(Raising(), inputs)
    _check_counts(batch, len(inputs))
    assert np.flatnonzero(~batch.ok).tolist() == [5, 30]
    assert [e.reason for e in batch.errors] == [
        "RecursionError: input nested too deeply",
        "MemoryError: input too large to process",
    ]


def test_library_errors_still_propagate():
    class Misconfigured(_Slow):
        def featurize_batch(self, items):
            raise ConfigError("bad argument x=1: use x=2")

    with pytest.raises(ConfigError, match="x=2"):
        featurize_safely(Misconfigured(), ["a", "b"])


def test_bad_limits_fail_fast_with_the_flag():
    with pytest.raises(ConfigError, match="--max-atoms -1: give a positive number"):
        RecordLimits(max_atoms=-1)
    with pytest.raises(ConfigError, match="unknown record limit 'max_things'"):
        RecordLimits.from_dict({"max_things": 1})
    assert RecordLimits.from_dict({"record_seconds": 0}).record_seconds == float("inf")


def test_limits_are_part_of_the_spec_and_survive_json():
    spec = FeaturizerSpec.parse("composition", "classic", limits=RecordLimits(max_atoms=7))
    again = FeaturizerSpec(**{**json.loads(json.dumps(spec.to_dict())), "names": ("classic",)})
    assert again == spec
    assert again != FeaturizerSpec.parse("composition", "classic")


# -- the fuzz ---------------------------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("utf-8", "replace")),
    st.integers(1, 5000).map(lambda n: "(" * n + "Fe" + ")2" * n),
    st.integers(1, 500).map(lambda n: "Fe" + "9" * n),
    st.integers(1, 3000).map(lambda n: "{'Fe': " + "+1" * n + "}"),
    st.integers(1, 3000).map(lambda n: '{"a":' + "[" * n + "]" * n + "}"),
    st.sampled_from([None, float("nan"), 3, 2.5, b"\xff\xfeFe", {"Fe": "x"}, {"Fe": -1}, [], {}]),
)


def _fuzz(featurizer, real, hostile, *, examples: int, size: int, budget: float) -> int:
    """Run ``examples`` batches of up to ``size`` records; returns the records featurized."""
    cases = []
    started = time.perf_counter()

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(picks=st.lists(st.one_of(st.sampled_from(real), hostile), min_size=size, max_size=size))
    def run(picks):
        batch = featurize_safely(featurizer, picks)  # must not raise
        _check_counts(batch, len(picks))
        cases.append(len(picks))

    run()
    assert time.perf_counter() - started < budget
    return sum(cases)


def test_fuzz_compositions(real_formulas):
    hostile = st.one_of(HOSTILE_TEXT, st.sampled_from(list(HOSTILE_FORMULAS.values())))
    featurizer = Compositions(featurizers="classic")
    assert _fuzz(featurizer, real_formulas, hostile, examples=100, size=50, budget=120) >= 5000


def test_fuzz_structures(real_cifs):
    hostile = st.one_of(
        HOSTILE_TEXT,
        st.sampled_from([item for item, _ in HOSTILE_STRUCTURES.values()]),
        st.builds(
            lambda a, c: f"X\n1.0\n{a} 0 0\n0 {a} 0\n0 0 {c}\nFe\n1\ndirect\n0 0 0\n",
            st.sampled_from(["1e-9", "0.5", "3", "nan", "inf", "-2", "1e300"]),
            st.sampled_from(["1e-7", "2", "0", "1e200"]),
        ),
    )
    featurizer = RadialDistributionFunction(n_bins=51, r_max=8.0)
    assert _fuzz(featurizer, real_cifs, hostile, examples=100, size=50, budget=180) >= 5000


def test_fuzz_molecules(real_smiles):
    hostile = st.one_of(
        HOSTILE_TEXT,
        st.sampled_from([item for item, _ in HOSTILE_MOLECULES.values()]),
        st.integers(1, 3000).map(lambda n: "C1" * n),
        st.text(alphabet="C()=#[]1234%+-@Nc", max_size=60),
    )
    assert _fuzz(ECFP(), real_smiles, hostile, examples=100, size=50, budget=120) >= 5000


# -- the same repros through the engine on a real cluster -----------------------------


def _run_store(tmp_path, dask_client, source, kind, names, **spec_options):
    import xenonscale
    from xenonscale.engine import featurize_to_store

    spec = FeaturizerSpec.parse(kind, names, **spec_options)
    store = str(tmp_path / f"{kind}.zarr")
    job = featurize_to_store(
        str(source), store, spec, client=dask_client, chunk_rows=8, progress=False
    )
    assert job.rows == job.featurized + job.errors
    dataset = xenonscale.open_store(store)
    return job, dataset, xenonscale.read_errors(store)


def test_hostile_formulas_through_the_engine(tmp_path, dask_client, real_formulas):
    rows = [*real_formulas[:30]]
    hostile = [v for k, v in HOSTILE_FORMULAS.items() if k != "whitespace only"]
    positions = [1, 7, 8, 15, 22, 23, 29, 33]
    for position, item in zip(positions, hostile, strict=True):
        rows.insert(position, item)
    source = tmp_path / "hostile.csv"
    pd.DataFrame({"formula": rows}).to_csv(source, index=False)
    job, dataset, errors = _run_store(tmp_path, dask_client, source, "composition", "classic")
    assert job.rows == len(rows)
    assert errors.row.tolist() == positions
    assert np.flatnonzero(~dataset.ok.values).tolist() == positions
    reference = Compositions(featurizers="classic").featurize_batch(real_formulas[:30])
    expected = reference.values.astype(np.float32)
    np.testing.assert_array_equal(dataset.features.values[dataset.ok.values], expected)


def test_hostile_structures_through_the_engine(tmp_path, dask_client, real_cifs):
    lines = [json.dumps({"material_id": f"ok-{i}", "structure": cif}) for i, cif in
             enumerate(real_cifs[:12])]  # fmt: skip
    hostile = [POSCAR_TINY_CUBE, POSCAR_FLAT, "x" + " \n" * 40_000 + "y"]
    positions = [0, 5, 9]
    for position, item in zip(positions, hostile, strict=True):
        lines.insert(position, json.dumps({"material_id": f"bad-{position}", "structure": item}))
    deep = '{"material_id": "deep", "structure": {"a":' + "[" * 50_000 + "]" * 50_000 + "}}"
    lines.insert(11, deep)
    source = tmp_path / "hostile.jsonl"
    source.write_text("\n".join(lines) + "\n")
    job, dataset, errors = _run_store(
        tmp_path, dask_client, source, "structure", "rdf", on_error="record"
    )
    assert job.rows == len(lines)
    assert errors.row.tolist() == [0, 5, 9, 11]
    assert "below min_volume_per_atom" in errors.error[0]
    assert "exceeds max_neighbors" in errors.error[1]
    assert dataset.ok.values.sum() == 12


def test_engine_limits_come_from_the_spec(tmp_path, dask_client, real_smiles):
    source = tmp_path / "mols.smi"
    source.write_text("\n".join([*real_smiles[:10], "C" * 300]) + "\n")
    limits = RecordLimits(max_molecule_atoms=200)
    _job, dataset, errors = _run_store(
        tmp_path, dask_client, source, "molecule", "ecfp", limits=limits
    )
    assert errors.row.tolist() == [10]
    assert errors.error[0] == (
        "molecule of 300 atoms: exceeds max_molecule_atoms, limit 200; "
        "raise it with --max-molecule-atoms"
    )
    assert dataset.attrs["featurizer"]["limits"]["max_molecule_atoms"] == 200
