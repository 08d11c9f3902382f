"""The ``matminer:`` family against matminer itself, through the engine, and with a stuck record.

The adapter runs matminer in its sidecar interpreter (the peers' environment
here); the reference is matminer's own ``featurize_many(..., ignore_errors=True)``
in the peer worker, on the same real records: values must be equal bit for bit,
and a row the adapter reports as an error must be a NaN row there.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import psutil
import pytest

from xenonscale.errors import ConfigError
from xenonscale.featurize import matminer as adapter
from xenonscale.featurize.base import FeatureBatch
from xenonscale.featurize.matminer import (
    MatminerFeaturizer,
    matminer_family,
    matminer_python,
    parse_matminer_spec,
)
from xenonscale.featurize.registry import FeaturizerSpec, register_family
from xenonscale.limits import record_limits

# The tests register the family themselves (installed packages get it from the entry point).
register_family("matminer", matminer_family)

SITE_STATS = "SiteStatsFingerprint.from_preset('CrystalNNFingerprint_ops')"
SYMMETRY = (
    "GlobalSymmetryFeatures(desired_features=['spacegroup_num', 'crystal_system_int', "
    "'is_centrosymmetric', 'n_symmetry_ops'])"
)
XRD = "XRDPowderPattern(two_theta_range=(0, 127), pattern_length=128)"
EWALD = "EwaldEnergy(); oxidation=guess"
DEML = "ElementProperty.from_preset('deml')"
XRD_LABELS = [f"xrd_{i}" for i in range(128)]


# -- the spec, the interpreter (no matminer needed) ---------------------------------------------


def test_spec_syntax_accepts_literal_calls_only():
    spec = parse_matminer_spec(f"{XRD} ; seconds=2.5")
    assert (spec.name, spec.preset, spec.seconds) == ("XRDPowderPattern", False, 2.5)
    assert spec.kwargs == {"two_theta_range": "(0, 127)", "pattern_length": "128"}
    preset = parse_matminer_spec(SITE_STATS)
    assert preset.preset and preset.args == ("'CrystalNNFingerprint_ops'",)
    assert parse_matminer_spec("EwaldEnergy();oxidation=guess").oxidation == "guess"
    assert parse_matminer_spec("A(s='x;y')").kwargs == {"s": "'x;y'"}
    refused = {
        "EwaldEnergy": "give Name(...)",
        "__import__('os').system('true')": "give Name(...)",
        "EwaldEnergy.fit([1])": "give Name(...)",
        "EwaldEnergy(accuracy=open('x'))": "not a literal",
        "EwaldEnergy(**{'accuracy': 4})": "name each",
        "EwaldEnergy(": "not a call",
        "EwaldEnergy(); oxidation=maybe": "oxidation='maybe'",
        "EwaldEnergy(); seconds=-1": "positive number",
        "EwaldEnergy(); colour=red": "unknown",
    }
    for text, why in refused.items():
        with pytest.raises(ConfigError, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse_matminer_spec(text)
    with pytest.raises(ConfigError, match="molecule"):
        MatminerFeaturizer("EwaldEnergy()", kind="molecule")


def test_featurizer_list_keeps_commas_inside_calls():
    names = FeaturizerSpec.parse("structure", f"rdf,matminer:{XRD},matminer:{EWALD}").names
    assert names == ("rdf", f"matminer:{XRD}", f"matminer:{EWALD}")


def test_interpreter_choice_and_its_error(monkeypatch, tmp_path):
    monkeypatch.setenv(adapter.ENV_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a file"):
        matminer_python()
    monkeypatch.delenv(adapter.ENV_VARIABLE)
    monkeypatch.setattr(adapter, "_imports_matminer", lambda python: False)
    monkeypatch.setenv(adapter.PEERS_VARIABLE, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=adapter.ENV_VARIABLE):
        matminer_python()
    python = tmp_path / "python"
    python.write_text("")
    monkeypatch.setenv(adapter.PEERS_VARIABLE, str(python))
    assert matminer_python() == str(python)
    monkeypatch.setenv(adapter.ENV_VARIABLE, "/bin/sh")
    assert matminer_python() == "/bin/sh"


# -- real records, matminer in its own interpreter ----------------------------------------------


@pytest.fixture(scope="module")
def matminer(peers):
    """The peers' interpreter as the adapter's (XENONSCALE_MATMINER_PYTHON) for this module,
    with the sidecars of the tested specs started side by side (each imports matminer: ~5 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(adapter.ENV_VARIABLE, str(peers.python))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(matminer_family, [SITE_STATS, SYMMETRY, XRD, EWALD, DEML]))
        yield peers
    adapter.close_sidecars()


@pytest.fixture(scope="module")
def phonons(data_dir) -> list[dict]:
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as handle:
        table = json.load(handle)
    return [row[table["columns"].index("structure")] for row in table["data"]]


@pytest.fixture(scope="module")
def structures(phonons) -> list[dict]:
    """16 structures spread over the 1,265 (CrystalNN takes ~0.25 s each)."""
    return phonons[::80]


def _same_as_matminer(batch, reference, labels) -> None:
    theirs = reference["array"]
    assert labels == reference["result"]["labels"]
    assert batch.values.shape == theirs.shape
    assert np.isnan(theirs[~batch.ok]).all(), "a row failed here but not in matminer"
    np.testing.assert_array_equal(batch.values[batch.ok], theirs[batch.ok])  # bit for bit


STRUCTURE_CASES = {
    "site stats": (SITE_STATS, {"cls": "SiteStatsFingerprint",
                                "preset": "CrystalNNFingerprint_ops"}),
    "symmetry": (SYMMETRY, {"cls": "GlobalSymmetryFeatures", "kwargs": {"desired_features": [
        "spacegroup_num", "crystal_system_int", "is_centrosymmetric", "n_symmetry_ops"]}}),
    "xrd": (XRD, {"cls": "XRDPowderPattern",
                  "kwargs": {"two_theta_range": [0, 127], "pattern_length": 128}}),
    "ewald": (EWALD, {"cls": "EwaldEnergy", "remove_oxidation_states": True,
                      "oxidation_guesses": True}),
}  # fmt: skip


@pytest.mark.peers
@pytest.mark.parametrize("case", list(STRUCTURE_CASES))
def test_structure_featurizers_equal_matminers_own(matminer, structures, case):
    spec, call = STRUCTURE_CASES[case]
    featurizer = matminer_family(spec, kind="structure")
    batch = featurizer.featurize_batch(structures)
    call = {"remove_oxidation_states": False, **call}  # the records as given, unless guessed
    reference = matminer.call("matminer_structures", structures=structures, **call)
    _same_as_matminer(batch, reference, featurizer.labels)
    assert batch.ok.all(), batch.errors[:2]
    assert featurizer.provenance()["implementors"]


@pytest.mark.peers
def test_composition_featurizer_equals_matminers_own(matminer, data_dir):
    formulas = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")["formula"]
    formulas = formulas.iloc[::16].tolist()  # 288 formulas
    featurizer = matminer_family(DEML, kind="composition")
    batch = featurizer.featurize_batch([*formulas, "Xx2O3", None])
    reference = matminer.call(
        "matminer_element_property", preset="deml", impute_nan=True, formulas=formulas,
        ignore_errors=True,
    )  # fmt: skip
    assert batch.ok[:-2].sum() > 250 and not batch.ok[-2:].any()
    assert batch.errors[-2].reason == "KeyError: 'Xx'"  # pymatgen's, as matminer reads it
    assert batch.errors[-1].reason.startswith("empty input")
    _same_as_matminer(_head(batch, len(formulas)), reference, featurizer.labels)
    assert any("Deml" in c for c in featurizer.citations)


@pytest.mark.peers
def test_composition_featurizer_reads_a_structures_composition(matminer, structures):
    """Under --kind structure a composition featurizer gets each structure's composition."""
    from pymatgen.core import Structure

    on_structures = matminer_family(DEML, kind="structure").featurize_batch(structures)
    formulas = [Structure.from_dict(s).composition.formula for s in structures]
    reference = matminer.call(
        "matminer_element_property", preset="deml", impute_nan=True, formulas=formulas,
        ignore_errors=True,
    )  # fmt: skip
    assert on_structures.ok.all()
    np.testing.assert_allclose(on_structures.values, reference["array"], rtol=1e-12)


def _head(batch, n):
    errors = [e for e in batch.errors if e.row < n]
    return FeatureBatch(batch.values[:n], batch.ok[:n], errors)


@pytest.mark.peers
def test_unknown_names_and_unfitted_featurizers_are_refused_with_the_fix(matminer):
    with pytest.raises(ConfigError, match="did you mean EwaldEnergy"):
        matminer_family("EwaldEnergie()")
    with pytest.raises(ConfigError, match=r"must be fitted.*allowed_bonds"):
        matminer_family("BondFractions()")
    with pytest.raises(ConfigError, match="could not be built: TypeError"):
        matminer_family("EwaldEnergy(bogus=1)")
    with pytest.raises(ConfigError, match="--kind structure"):
        matminer_family(XRD, kind="composition")


# -- a stuck record -------------------------------------------------------------------------


def _sidecars() -> set[int]:
    children = psutil.Process().children(recursive=True)
    return {p.pid for p in children if "matminer_sidecar.py" in " ".join(p.cmdline())}


@pytest.mark.peers
def test_a_stuck_record_times_out_and_the_rest_goes_on(matminer, structures):
    from pymatgen.core import Structure

    small = [s for s in structures if len(s["sites"]) <= 8][:4]
    stuck = Structure.from_dict(small[0])
    stuck.make_supercell([8, 8, 8])  # a 512-fold supercell: minutes of CrystalNN, even on AVX-512
    featurizer = matminer_family(SITE_STATS)
    before = _sidecars()
    started = time.monotonic()
    with record_limits(record_seconds=2):
        batch = featurizer.featurize_batch([small[0], small[1], stuck.as_dict(), *small[2:]])
    assert time.monotonic() - started < 60
    assert batch.ok.tolist() == [True, True, False, True, True]
    assert [e.row for e in batch.errors] == [2]
    assert batch.errors[0].reason.startswith("timed out after 2 s")
    after = _sidecars()
    assert before - after and len(after) <= len(before)  # the stuck one killed, not left behind
    again = featurizer.featurize_batch(small)  # the new sidecar serves the next batch
    np.testing.assert_array_equal(again.values, batch.values[[0, 1, 3, 4]])


@pytest.mark.peers
def test_a_sidecar_killed_mid_record_fails_that_record_only(matminer, structures):
    """What the kernel's OOM killer (or a crash in compiled code) does to a sidecar."""
    from pymatgen.core import Structure

    small = [s for s in structures if len(s["sites"]) <= 8][:3]
    stuck = Structure.from_dict(small[0])
    stuck.make_supercell([8, 8, 8])
    featurizer = matminer_family(SITE_STATS)
    key = (matminer_python(), parse_matminer_spec(SITE_STATS).call + "keep")
    busy = adapter._IDLE[key][-1].process.pid  # the idle sidecar the next call takes
    killer = threading.Timer(2.0, os.kill, (busy, signal.SIGKILL))
    killer.start()
    try:  # the killed record last: the restart after a kill is the test above's
        with record_limits(record_seconds=120):
            batch = featurizer.featurize_batch([*small, stuck.as_dict()])
    finally:
        killer.cancel()
    assert batch.ok.tolist() == [True, True, True, False]
    assert batch.errors[0].reason.startswith("the matminer interpreter died on this record")
    assert "exit code -9" in batch.errors[0].reason


# -- through the engine -----------------------------------------------------------------------


@pytest.mark.peers
def test_engine_writes_matminer_features_labels_and_provenance(matminer, structures, tmp_path):
    from distributed import Client

    import xenonscale
    from xenonscale.engine import featurize_to_store

    docs = [{"id": f"mp-{k}", "structure": s} for k, s in enumerate(structures[:10])]
    docs.insert(3, {"id": "bad-text", "structure": "not a structure"})
    docs.insert(7, {"id": "no-sites", "structure": {**structures[0], "sites": []}})
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    spec = FeaturizerSpec.parse("structure", f"matminer:{EWALD},matminer:{XRD}")
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        job = featurize_to_store(str(source), str(tmp_path / "out.zarr"), spec, client=c,
                                 chunk_rows=4, progress=False)  # fmt: skip
    assert (job.rows, job.featurized, job.errors) == (12, 10, 2)
    store = xenonscale.open_store(str(tmp_path / "out.zarr"))
    expected = spec.build().featurize_batch([d["structure"] for d in docs])
    assert list(store.feature.values) == ["ewald_energy_per_atom", *XRD_LABELS]
    np.testing.assert_array_equal(store.ok.values, expected.ok)
    np.testing.assert_array_equal(store.features.values, expected.values.astype(np.float32))
    errors = xenonscale.read_errors(str(tmp_path / "out.zarr"))
    assert errors["row"].tolist() == [3, 7]
    assert "at least 1 site" in errors["error"].iloc[1]
    citations = " ".join(store.attrs["citations"])
    assert "Ewald1921" in citations
    provenance = store.attrs["provenance"]
    assert [p["class"].rsplit(".", 1)[1] for p in provenance] == ["EwaldEnergy", "XRDPowderPattern"]
    assert all(p["implementors"] and p["versions"]["matminer"] for p in provenance)
    assert provenance[0]["oxidation"] == "guess"


@pytest.mark.peers
def test_the_adapter_keeps_the_batch_contract(matminer, data_dir):
    from xenonscale.testing import check_featurizer

    table = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    check_featurizer(
        matminer_family(DEML, kind="composition"),
        table["formula"].tolist()[:4],
        ["Xx2O3", "garbage text !!", None],
        name="matminer:ElementProperty",
    )
