"""Crystal graphs: the ``graph`` featurizer, graph stores, CGCNN / MEGNet on Lightning, the zoo.

Real structures (Matbench phonons, the CGCNN CIFs), a real Dask cluster, real
Zarr; neighbour lists checked against pymatgen's own ``get_neighbor_list``.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.featurize.structures.graph import CrystalGraph
from xenonscale.models.graphs import GraphModel, graph_config, graph_size, pack_graphs
from xenonscale.models.training import train_model
from xenonscale.store.layout import StoreLocation

TARGET = "last phdos peak"


@pytest.fixture(scope="module")
def phonons(data_dir) -> pd.DataFrame:
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as handle:
        return pd.read_json(handle, orient="split")


@pytest.fixture(scope="module")
def graph_store(tmp_path_factory, phonons, dask_client):
    """The first 400 phonons structures as a graph store (4 partitions)."""
    folder = tmp_path_factory.mktemp("graphs")
    source = folder / "phonons.jsonl"
    with source.open("w") as handle:
        for index, row in phonons.head(400).iterrows():
            doc = {"id": f"ph-{index}", "structure": row["structure"], TARGET: row[TARGET]}
            handle.write(json.dumps(doc) + "\n")
    store = str(folder / "graph.zarr")
    spec = FeaturizerSpec.parse("structure", "graph:cutoff=6/neighbors=8/atoms=48")
    featurize_to_store(str(source), store, spec, column="structure", client=dask_client,
                       chunk_rows=100, partition_rows=100, progress=False)  # fmt: skip
    return store, str(source), spec


def test_neighbours_are_pymatgens_nearest_with_their_images(phonons):
    from pymatgen.core import Structure

    graph = CrystalGraph(cutoff=6.0, neighbors=12, atoms=48)
    docs = list(phonons["structure"].iloc[:25])
    z, neighbor, distance, image = graph.unpack(graph.featurize_batch(docs).values)
    for row, doc in enumerate(docs):
        structure = Structure.from_dict(doc)
        centers, _, _, lengths = structure.get_neighbor_list(6.0)
        cart, lattice = structure.cart_coords, structure.lattice.matrix
        assert z[row, : len(structure)].tolist() == list(structure.atomic_numbers)
        assert (z[row, len(structure) :] == 0).all()
        for site in range(len(structure)):
            expected = np.sort(lengths[centers == site])[:12]
            kept = neighbor[row, site] >= 0
            np.testing.assert_allclose(distance[row, site, kept], expected, rtol=1e-6)
            # each neighbour's image really lies at that distance
            j, shift = neighbor[row, site, kept], image[row, site, kept]
            where = cart[j] + shift @ lattice
            np.testing.assert_allclose(np.linalg.norm(where - cart[site], axis=1), expected,
                                       rtol=1e-6)  # fmt: skip
            assert (distance[row, site, ~kept] == 0).all() and kept.sum() == len(expected)


def test_bad_structures_are_error_rows_that_name_the_limit(phonons):
    from pymatgen.core import Lattice, Structure

    big = Structure.from_dict(phonons["structure"].iloc[0])
    big.make_supercell([3, 3, 3])  # 54 sites
    lonely = Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    good = phonons["structure"].iloc[1]
    batch = CrystalGraph(cutoff=8.0, atoms=48).featurize_batch(
        [big, good, lonely, "not a structure", disordered]
    )
    assert batch.ok.tolist() == [False, True, False, False, False]
    reasons = {e.row: e.reason for e in batch.errors}
    assert "54 sites" in reasons[0] and "at most 48 atoms" in reasons[0]
    assert "graph:atoms=" in reasons[0]
    assert "no neighbour within 8 Å" in reasons[2] and "isolated" in reasons[2]
    assert "disordered" in reasons[4]
    assert np.isfinite(batch.values[1]).all() and np.isnan(batch.values[[0, 2, 3, 4]]).all()


def test_graph_options_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        FeaturizerSpec.parse("structure", "graph:radius=5").build()
    with pytest.raises(ConfigError, match="positive"):
        FeaturizerSpec.parse("structure", "graph:atoms=0").build()
    assert len(FeaturizerSpec.parse("structure", "graph:atoms=2/neighbors=3").build().labels) == 32


def test_graph_store_is_plain_zarr_and_resumes_to_the_same_bytes(graph_store, dask_client):
    store, source, spec = graph_store
    ds = xr.open_zarr(store)
    assert ds.features.shape == (400, 48 * (1 + 5 * 8)) and bool(ds.ok.all())
    assert ds.features.chunks[0][0] == 100
    with open(source) as handle:
        docs = [json.loads(line)["structure"] for line in handle][:100]
    np.testing.assert_array_equal(
        ds.features.values[:100], spec.build().featurize_batch(docs).values.astype(np.float32)
    )
    before = ds.features.values
    import zarr

    location = StoreLocation(store)
    location.fs.rm(location.path("_xenonscale", "done", "000002.json"))  # as after a kill
    zarr.open_group(store, mode="r+")["features"][200:300] = np.nan
    job = featurize_to_store(source, store, spec, column="structure", client=dask_client,
                             chunk_rows=100, partition_rows=100, progress=False)  # fmt: skip
    assert job.resumed_partitions == 3
    np.testing.assert_array_equal(xr.open_zarr(store).features.values, before)


def test_packing_matches_the_padded_rows_and_batches_do_not_mix(graph_store):
    store, _, spec = graph_store
    x = torch.as_tensor(xr.open_zarr(store).features.values[:40])
    layout = spec.build().options
    packed = pack_graphs(x, layout["atoms"], layout["neighbors"])
    z, neighbor, _, _ = spec.build().unpack(x.numpy())
    assert len(packed.z) == int((z > 0).sum()) and len(packed.center) == int((neighbor >= 0).sum())
    # every edge joins two atoms of the same crystal
    assert (packed.crystal[packed.center] == packed.crystal[packed.neighbor]).all()
    for backbone in ("cgcnn", "megnet"):
        torch.manual_seed(0)
        model = GraphModel(graph_config(backbone, layout, elements=None, width=16)).eval()
        with torch.no_grad():
            together = model(x)
            alone = torch.cat([model(x[i : i + 1]) for i in range(len(x))])
            reversed_ = model(x.flip(0)).flip(0)
        torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(together, reversed_, rtol=1e-4, atol=1e-4)


def test_graph_size_counts_what_the_model_holds():
    layout = {"atoms": 8, "neighbors": 4, "cutoff": 5.0}
    for backbone in ("cgcnn", "megnet"):
        config = graph_config(backbone, layout, elements=None, width=12, head_hidden=[16, 8])
        model = GraphModel(config)
        parameters = sum(p.numel() for p in model.parameters())
        assert graph_size(model.config) == (
            parameters,
            sum(t.numel() for t in model.state_dict().values()),
        )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_cgcnn_and_megnet_learn_and_the_zoo_predicts_raw_cifs(graph_store, tmp_path, data_dir,
                                                              one_torch_thread):  # fmt: skip
    from pymatgen.core import Structure

    from xenonscale.transfer.frozen import FrozenFeaturizer
    from xenonscale.workflows.registration import register_result
    from xenonscale.zoo import Zoo, load

    store, source, _ = graph_store
    with open(source) as handle:
        docs = [json.loads(line) for line in handle]
    zoo = Zoo(str(tmp_path / "zoo"))
    for backbone in ("cgcnn", "megnet"):
        result = train_model(
            store, TARGET, backbone=backbone, output=tmp_path / backbone, max_epochs=25,
            name=f"ph-{backbone}",
            batch_size=32, lr=2e-3, progress=False, accelerator="cpu", patience=50,
            data_options={"val_fraction": 0.2, "atom_budget": 400},
            backbone_options={"width": 32, "elements": "magpie"},
        )  # fmt: skip
        y = result.data.arrays("val")[1][:, 0]
        dummy = np.abs(y - result.data.target_mean[0]).mean()
        assert result.metrics["val"]["mae"] < 0.6 * dummy, (backbone, result.metrics, dummy)
        assert result.card["inputs"] == "graph" and result.card["model"]["atoms"] == 48
        register_result(result, zoo)
    model = load("ph-cgcnn", zoo=str(tmp_path / "zoo"))
    structures = [Structure.from_dict(d["structure"]) for d in docs[:5]]
    cifs = [s.to(fmt="cif") for s in structures]
    from_cif = model.predict(cifs)[TARGET].to_numpy()
    from_objects = model.predict(structures)[TARGET].to_numpy()
    from_dicts = model.predict([d["structure"] for d in docs[:5]])[TARGET].to_numpy()
    features = xr.open_zarr(store).features.values[:5]
    direct = model.predict_features(features)[:, 0]
    np.testing.assert_allclose(from_objects, direct, rtol=1e-4)
    np.testing.assert_allclose(from_dicts, direct, rtol=1e-4)
    np.testing.assert_allclose(from_cif, direct, rtol=1e-3)  # CIF text rounds coordinates
    # the pooled crystal embedding (and the head layer after it) are transfer features
    megnet = load("ph-megnet", zoo=str(tmp_path / "zoo")).model
    frozen = FrozenFeaturizer(["ph-megnet@1"], zoo=str(tmp_path / "zoo"), depth=None)
    values = frozen.featurize_batch([*cifs, "not a structure"]).values
    assert values.shape[1] == sum(megnet.hidden_widths) == 3 * 32 + 128
    assert np.isfinite(values[:5]).all() and np.isnan(values[5]).all()
    with torch.no_grad():
        pooled = megnet.hidden_features(torch.as_tensor(features, dtype=torch.float32))[0]
    np.testing.assert_allclose(values[:5, : 3 * 32], pooled.numpy(), rtol=1e-3, atol=1e-4)
    # retrain rebuilds the same network from its card (layout from the store, table by name)
    from xenonscale.workflows.retraining import retrain

    report = retrain(zoo=str(tmp_path / "zoo"), only=["ph-cgcnn"], max_age_days=0, max_epochs=2,
                     progress=False)  # fmt: skip
    assert report[0]["new"] == "ph-cgcnn@2" and report[0]["action"] == "promoted", report
    again = load("ph-cgcnn@2", zoo=str(tmp_path / "zoo"))
    assert again.model.config == model.model.config


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_ddp_spawn_on_two_cpu_processes_matches_one_process(graph_store, tmp_path):
    """MEGNet (no batch norm): two ranks of b crystals = one process of 2b, to float noise."""
    store, _, _ = graph_store
    common = dict(max_epochs=3, progress=False, accelerator="cpu", seed=0, lr=1e-3, patience=50,
                  dropout=0.0,
                  backbone="megnet", backbone_options={"width": 16, "elements": None},
                  data_options={"val_fraction": 0.25})  # fmt: skip
    one = train_model(store, TARGET, output=tmp_path / "one", devices=1, batch_size=32, **common)
    assert one.data.counts["train"] % 2 == 0  # equal shares, so the two runs see the same batches
    two = train_model(store, TARGET, output=tmp_path / "two", devices=2, strategy="ddp_spawn",
                      batch_size=16, **common)  # fmt: skip
    a, b = one.metrics["val"]["mae"], two.metrics["val"]["mae"]
    assert abs(a - b) / a < 1e-3, (a, b)
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(history) == 3


def test_tuning_space_and_cards_rebuild_graph_networks(data_dir):
    import optuna

    from xenonscale.models.networks import build_model
    from xenonscale.models.tuning import network_from_params, suggest
    from xenonscale.workflows.retraining import network_options

    layout = {"atoms": 8, "neighbors": 4, "cutoff": 5.0}
    trial = optuna.create_study().ask()
    for backbone in ("cgcnn", "megnet"):
        params = suggest(trial, backbone)
        network = network_from_params(params, backbone, elements=None)
        config = graph_config(backbone, layout, **network["backbone_options"],
                              dropout=network["dropout"])  # fmt: skip
        model = build_model(config)
        assert model.config["width"] == params["width"] and model.config["layers"] == params[
            "layers"]  # fmt: skip
        rebuilt = network_options(model.config)
        assert rebuilt["backbone"] == backbone
        again = build_model(graph_config(backbone, layout, **rebuilt["backbone_options"]))
        assert again.config == model.config
