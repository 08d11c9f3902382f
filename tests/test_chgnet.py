"""``--featurizers chgnet``: CHGNet's pretrained crystal features against the real package.

Real structures (Matbench phonons, pymatgen dicts, from the data mirror) and
the real ``chgnet`` wheel: our model, built from the checksummed checkpoint
read with ``torch.load(weights_only=True)``, must give what
``CHGNet.load().predict_structure`` gives.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("chgnet", reason="the chgnet extra: pip install 'xenonscale[chgnet]'")

from xenonscale.errors import ConfigError, FeaturizerError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.featurize.structures import chgnet as chgnet_module
from xenonscale.featurize.structures.chgnet import WEIGHTS, ChgnetFeatures

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF"),
    pytest.mark.filterwarnings("ignore:No Pauling electronegativity"),
    pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad"),  # chgnet's own
]
N = 20


@pytest.fixture(scope="module")
def phonons(data_dir) -> list[dict]:
    """The first 20 Matbench phonons structures (pymatgen dicts) through the dataset registry."""
    from xenonscale.datasets import load

    frame = load("matbench_phonons")
    return frame["structure"].iloc[:N].tolist()


@pytest.fixture(scope="module")
def reference(phonons) -> dict[str, np.ndarray]:
    """CHGNet's own answer: ``CHGNet.load().predict_structure`` one structure at a time."""
    from chgnet.model import CHGNet
    from pymatgen.core import Structure

    model = CHGNet.load(verbose=False)
    out = [
        model.predict_structure(Structure.from_dict(d), task="e", return_crystal_feas=True)
        for d in phonons
    ]
    return {
        "e": np.array([float(p["e"]) for p in out]),
        "crystal_fea": np.stack([p["crystal_fea"] for p in out]).astype(np.float64),
    }


@pytest.fixture(scope="module")
def ours(phonons):
    featurizer = ChgnetFeatures()
    return featurizer, featurizer.featurize_batch(phonons)


def test_energy_and_embedding_equal_chgnet_predict_structure(ours, reference):
    featurizer, batch = ours
    assert batch.ok.all() and not batch.errors
    assert batch.values.shape == (N, 65)
    assert featurizer.labels[0] == "chgnet:crystal_fea:0"
    assert featurizer.labels[-1] == "chgnet:energy_per_atom"
    energy, crystal = batch.values[:, -1], batch.values[:, :-1]
    np.testing.assert_allclose(energy, reference["e"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(crystal, reference["crystal_fea"], rtol=0, atol=1e-5)
    # the energies are real: eV/atom of solids, not zeros or the composition model alone
    assert ((energy < -1) & (energy > -12)).all() and np.ptp(energy) > 1


def test_weights_are_never_unpickled_with_arbitrary_objects(monkeypatch):
    """Every torch.load is weights_only=True; pickle's own loaders are never reached."""
    import torch
    from chgnet.model import CHGNet  # noqa: F401  (import chgnet before pickle is fenced off)

    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle's unrestricted loader was used")

    class ForbiddenUnpickler:
        def __init__(self, *args, **kwargs):
            forbidden()

    monkeypatch.setattr(torch, "load", recording_load)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", ForbiddenUnpickler)
    monkeypatch.setattr(chgnet_module, "_MODELS", {})  # build afresh under the fence
    network = chgnet_module.load_model()
    assert calls and all(c.get("weights_only") is True for c in calls), calls
    assert all(c.get("map_location") == "cpu" for c in calls)
    assert not network.training and network.version == "0.3.0"


def test_a_changed_weights_file_is_refused_before_it_is_read(monkeypatch, tmp_path):
    import torch

    fake = tmp_path / "chgnet"
    target = fake / WEIGHTS["0.3.0"].path
    target.parent.mkdir(parents=True)
    real = chgnet_module.weights_path("0.3.0").read_bytes()
    target.write_bytes(real[:-1] + bytes([real[-1] ^ 1]))  # one bit flipped
    monkeypatch.setattr(chgnet_module, "weights_path", lambda model="0.3.0": target)
    monkeypatch.setattr(chgnet_module, "_MODELS", {})
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load on a bad file"))
    with pytest.raises(FeaturizerError, match=r"sha256 .* expected d14ab7c0f093"):
        chgnet_module.load_model()
    with pytest.raises(FeaturizerError, match="refusing"):
        ChgnetFeatures().card  # noqa: B018  (the card checks the file too)


def test_card_records_the_model_version():
    card = ChgnetFeatures().card
    from importlib.metadata import version

    assert card["chgnet"] == version("chgnet")
    assert card["sha256"] == WEIGHTS["0.3.0"].sha256
    assert card["weights"].endswith("chgnet_0.3.0_e29f68s314m37.pth.tar")
    assert "weights_only=True" in card["loader"]
    citations = ChgnetFeatures().citations
    assert any("Nat. Mach. Intell. 5, 1031" in c for c in citations)
    assert any(card["sha256"] in c and card["chgnet"] in c for c in citations)


def test_bad_records_become_error_rows_and_the_rest_completes(phonons, ours):
    from pymatgen.core import Lattice, Structure

    lone = Structure(Lattice.cubic(20.0), ["Fe"], [[0, 0, 0]]).as_dict()  # nothing within 6 Å
    alloy = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).as_dict()
    garbage_cif = "data_broken\n_cell_length_a 4.0\nloop_\n_atom_site_label\n"
    heavy = Structure(Lattice.cubic(3.5), ["Cf"], [[0, 0, 0]]).as_dict()  # Z = 98 > 94
    inputs = [phonons[0], lone, garbage_cif, phonons[1], alloy, None, heavy, phonons[2]]
    batch = ChgnetFeatures(batch_size=2).featurize_batch(inputs)
    assert batch.ok.tolist() == [True, False, False, True, False, False, False, True]
    reasons = {e.row: e.reason for e in batch.errors}
    assert "isolated atom" in reasons[1] and "6 Å" in reasons[1]
    assert reasons[2]  # unreadable CIF: parse's reason
    assert "disordered" in reasons[4]
    assert "empty input" in reasons[5]
    assert "Cf" in reasons[6] and "94" in reasons[6]
    good = batch.values[batch.ok]
    assert np.isfinite(good).all() and np.isnan(batch.values[~batch.ok]).all()
    _, full = ours
    np.testing.assert_allclose(good, full.values[:3], rtol=0, atol=1e-5)


def test_params_pickle_and_transform():
    featurizer = ChgnetFeatures(model="r2scan", batch_size=8)
    assert featurizer.get_params() == {"model": "r2scan", "batch_size": 8, "on_error": "record"}
    assert pickle.loads(pickle.dumps(featurizer)).labels == featurizer.labels
    assert featurizer.labels[-1] == "chgnet@r2scan:energy_per_atom"
    with pytest.raises(ConfigError, match=r"model='1\.0'"):
        _ = ChgnetFeatures(model="1.0").labels
    with pytest.raises(ConfigError, match="batch_size=0"):
        ChgnetFeatures(batch_size=0).featurize_batch(["x"])


@pytest.mark.slow
def test_engine_store_equals_direct_featurization(tmp_path, dask_client, phonons):
    import xarray as xr
    import zarr

    import xenonscale
    from xenonscale.engine import featurize_to_store

    rows = [{"id": f"p{i}", "structure": json.dumps(d)} for i, d in enumerate(phonons[:10])]
    rows.insert(4, {"id": "bad", "structure": "not a structure"})
    path = tmp_path / "phonons.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    spec = FeaturizerSpec.parse("structure", "chgnet")
    store = tmp_path / "chgnet.zarr"
    job = featurize_to_store(
        str(path), str(store), spec, column="structure", client=dask_client,
        chunk_rows=4, partition_rows=4, progress=False,
    )  # fmt: skip
    assert (job.rows, job.featurized, job.errors) == (11, 10, 1)
    assert xenonscale.read_errors(str(store))["row"].tolist() == [4]

    ds = xr.open_zarr(store)
    direct = ChgnetFeatures().featurize_batch([r["structure"] for r in rows])
    assert list(ds.feature.values) == ChgnetFeatures().labels
    np.testing.assert_array_equal(ds.ok.values, direct.ok)
    # partitions of 4 on the workers, one batch of 11 here: float32 equal to 1e-6
    np.testing.assert_allclose(
        ds.features.values, direct.values.astype(np.float32), rtol=0, atol=1e-5
    )
    attrs = zarr.open_group(str(store), mode="r").attrs
    card = ChgnetFeatures().card
    assert any(card["sha256"] in c and card["chgnet"] in c for c in attrs["citations"])
