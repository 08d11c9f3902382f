"""The attention model end to end: store → Lightning (one process and DDP) → zoo → predict,
frozen features and retrain.

The network itself (invariances, masking, saving) is tested in
``tests/test_attention_model.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from xenonscale.engine import featurize_to_store
from xenonscale.errors import StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.data import StoreDataModule
from xenonscale.models.metrics import regression_metrics
from xenonscale.models.training import train_model

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
SMALL = {"elements": "magpie", "d_model": 32, "heads": 4, "layers": 2, "head_hidden": [32]}
ROWS = 3000


@pytest.fixture(scope="module")
def oqmd_store(tmp_path_factory, data_dir, dask_client) -> tuple[str, pd.DataFrame]:
    """3,000 real OQMD formation enthalpies (|y| < 5 eV/atom) and one bad formula."""
    frame = pd.read_csv(data_dir / "compositions" / "oqmd_formation_enthalpy_val.csv")
    frame = frame[frame["target"].abs() < 5].head(ROWS).reset_index(drop=True)
    frame.loc[7, "formula"] = "Xx2O3"
    path = tmp_path_factory.mktemp("oqmd") / "oqmd.csv"
    frame.to_csv(path, index=False)
    store = str(tmp_path_factory.mktemp("oqmdstore") / "oqmd.zarr")
    featurize_to_store(str(path), store, SPEC, column="formula", client=dask_client,
                       chunk_rows=1000, progress=False)  # fmt: skip
    return store, frame


@pytest.fixture(scope="module")
def trained(oqmd_store, tmp_path_factory, one_torch_thread):
    store, _ = oqmd_store
    output = tmp_path_factory.mktemp("attention")
    torch.manual_seed(0)
    return train_model(store, "target", output=output, backbone="attention",
                       backbone_options=SMALL, max_epochs=12, batch_size=64, lr=2e-3,
                       accelerator="cpu", progress=False, patience=50, seed=0,
                       dropout=0.0)  # fmt: skip


def test_composition_inputs_are_the_store_slots(oqmd_store):
    store, frame = oqmd_store
    data = StoreDataModule(store, "target", inputs="composition", seed=0)
    data.setup("fit")
    x, _ = data.arrays("val")
    assert x.shape[1] == 32 and data.labels[0] == "element:0" and data.labels[16] == "fraction:0"
    # independent reference: pymatgen's fractional composition of the same formulas
    from pymatgen.core import Composition

    for row, numbers, fractions in zip(data.rows["val"][:50], x[:50, :16], x[:50, 16:],
                                       strict=True):  # fmt: skip
        want = Composition(frame.loc[row, "formula"]).fractional_composition
        got = {int(z): float(f) for z, f in zip(numbers, fractions, strict=True) if z > 0}
        assert got == pytest.approx({el.Z: amount for el, amount in want.items()}, rel=1e-6)
    assert 7 not in set(np.concatenate(list(data.rows.values())))  # the bad formula
    assert data.counts["not_ok"] == 1


def test_attention_learns_oqmd_better_than_the_mean(trained):
    truth, predicted = trained.predictions["val"]
    dummy = regression_metrics(truth[:, 0], np.full(len(truth), truth.mean()))["mae"]
    mae = trained.metrics["val"]["mae"]
    assert mae == pytest.approx(float(np.abs(truth - predicted).mean()), rel=1e-5)
    assert mae < 0.6 * dummy, (mae, dummy)
    assert trained.card["model"]["backbone"] == "attention"
    assert trained.card["featurizer"]["names"] == ["slots"] and trained.card["inputs"] == (
        "composition"
    )


def test_zoo_model_predicts_raw_formulas_like_the_network(trained, tmp_path):
    from xenonscale.chem.formula import parse_compositions
    from xenonscale.featurize.slots import composition_slots
    from xenonscale.models.backbones import predict_array
    from xenonscale.zoo import Zoo

    zoo = Zoo(str(tmp_path / "zoo"))
    ref = zoo.register("oqmd-attention", trained.model, trained.card)
    model = zoo.load(str(ref))
    formulas = ["Fe2O3", "NaCl", "LiFePO4", "Xx2", "Ba0.5Sr0.5TiO3"]
    frame = model.predict(formulas)
    assert frame["target"].isna().tolist() == [False, False, False, True, False]
    assert model.errors_["row"].tolist() == [3]
    # by hand: parse, put into slots, run the trained network
    elements, fractions, fits = composition_slots(parse_compositions(formulas))
    x = np.hstack([elements, fractions]).astype(np.float32)[fits]
    want = predict_array(trained.model, x)[:, 0]
    np.testing.assert_allclose(frame["target"].dropna().to_numpy(), want, rtol=1e-5, atol=1e-6)


def test_frozen_featurizer_gives_the_pooled_embedding(trained, tmp_path):
    from xenonscale.transfer.frozen import FrozenFeaturizer
    from xenonscale.zoo import Zoo

    zoo = Zoo(str(tmp_path / "zoo"))
    zoo.register("oqmd-attention", trained.model, trained.card)
    frozen = FrozenFeaturizer(["oqmd-attention"], zoo=zoo, depth=None)
    batch = frozen.featurize_batch(["Fe2O3", "NaCl"])
    assert batch.values.shape == (2, 32 + 32)  # pooled embedding + the head's hidden layer
    from xenonscale.featurize.slots import CompositionSlots

    x = torch.from_numpy(CompositionSlots().featurize_batch(["Fe2O3", "NaCl"]).values)
    trained.model.eval()
    with torch.no_grad():
        pooled = trained.model.hidden_features(x)[0].numpy()
    np.testing.assert_allclose(batch.values[:, :32], pooled, rtol=1e-5, atol=1e-6)


def test_a_store_without_composition_arrays_is_refused_with_the_fix(oqmd_store, tmp_path):
    import shutil

    import zarr

    store, _ = oqmd_store
    old = tmp_path / "old.zarr"
    shutil.copytree(store, old)
    group = zarr.open_group(str(old), mode="a")
    for name in ("composition_element", "composition_fraction"):
        del group[name]
    with pytest.raises(StoreError, match="featurize it again") as info:
        StoreDataModule(str(old), "target", inputs="composition").setup("fit")
    assert "\n" not in str(info.value)
    StoreDataModule(str(old), "target").setup("fit")  # the MLP still reads it


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_attention_under_ddp_spawn_matches_one_process(oqmd_store, tmp_path):
    store, _ = oqmd_store
    common = dict(backbone="attention", backbone_options=SMALL, max_epochs=5, progress=False,
                  accelerator="cpu", seed=0, batch_size=64, patience=50, lr=2e-3,
                  dropout=0.0)  # fmt: skip
    one = train_model(store, "target", output=tmp_path / "one", devices=1, **common)
    two = train_model(store, "target", output=tmp_path / "two", devices=2,
                      strategy="ddp_spawn", **common)  # fmt: skip
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(history) == 5  # every epoch ran in the spawned processes
    a, b = one.metrics["val"]["mae"], two.metrics["val"]["mae"]
    assert abs(a - b) / a < 0.2, (a, b)  # same data, twice the global batch: within noise
    assert abs(one.metrics["val"]["r2"] - two.metrics["val"]["r2"]) < 0.1
    assert two.metrics["val"]["r2"] > 0.5


def test_retrain_rebuilds_the_attention_network(trained):
    from xenonscale.workflows.retraining import network_options

    options = network_options(trained.card["model"])
    assert options["backbone"] == "attention"
    assert {k: options["backbone_options"][k] for k in SMALL} == SMALL


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_tuning_searches_attention_networks_and_registers_the_best(oqmd_store, tmp_path,
                                                                   dask_client):  # fmt: skip
    import optuna

    from xenonscale.errors import ConfigError
    from xenonscale.models.tuning import tune
    from xenonscale.workflows.registration import register_best_trial
    from xenonscale.zoo import Zoo

    store, _ = oqmd_store
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    common = dict(storage=storage, study="attention", client=dask_client, max_epochs=2,
                  progress=False, backbone="attention", elements="magpie")  # fmt: skip
    result = tune(store, "target", trials=2, output=tmp_path / "tune", **common)
    loaded = optuna.load_study(study_name="attention", storage=storage)
    assert len(loaded.trials) == 2 and loaded.user_attrs["backbone"] == "attention"
    assert {"d_model", "heads", "layers", "head_width"} <= set(result.best_params)
    with pytest.raises(ConfigError, match="searches attention networks"):
        tune(store, "target", trials=1, **{**common, "backbone": "mlp"})
    trained = register_best_trial(result, store, "target", name="tuned", max_epochs=1,
                                  zoo=Zoo(str(tmp_path / "zoo")), progress=False)  # fmt: skip
    config = trained.card["model"]
    assert config["backbone"] == "attention" and config["elements"] == "magpie"
    assert config["d_model"] == result.best_params["d_model"]
    assert config["layers"] == result.best_params["layers"]


@pytest.mark.parametrize("freeze", ["all", "last"])
def test_fine_tuning_an_attention_source_trains_only_what_is_not_frozen(
    trained, tmp_path, oqmd_store, freeze
):
    from xenonscale.transfer.finetune import fine_tune
    from xenonscale.zoo import Zoo

    zoo = Zoo(str(tmp_path / "zoo"))
    zoo.register("oqmd-attention", trained.model, trained.card)
    _, frame = oqmd_store
    rows = frame.iloc[-300:]  # a small "new" task: the same rows' enthalpies, doubled
    tuned = fine_tune("oqmd-attention", rows["formula"], 2 * rows["target"].to_numpy(),
                      zoo=zoo, freeze=freeze, max_epochs=3, seed=0)  # fmt: skip
    source_state = trained.model.state_dict()
    tuned_state = tuned.model.state_dict()
    encoder = [k for k in source_state if k.startswith(("blocks.", "fractions.", "gate."))]
    assert all(torch.equal(source_state[k], tuned_state[k]) for k in encoder)  # frozen in both
    head_layer = "head.layers.0.0.weight"
    assert torch.equal(source_state[head_layer], tuned_state[head_layer]) == (freeze == "all")
    assert torch.equal(tuned.model.element_table, trained.model.element_table)
    prediction = tuned.predict(["Fe2O3", "NaCl"])
    assert np.isfinite(prediction).all()
