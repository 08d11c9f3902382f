"""Deep ensembles: members trained as Dask tasks, one zoo entry, mean ± std, design likelihood.

A 3-member ensemble of a small MLP on 1,500 real rows of Matbench expt_gap
(classic descriptors), its members trained in parallel on the session's
embedded cluster (two worker processes), registered once and checked against
an independent reference: the members loaded one by one from their
``member-k`` folders and averaged with numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file
from scipy import stats

from xenonscale.cli.main import cli
from xenonscale.design.likelihood import Likelihood
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import featurize_safely
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.backbones import predict_array
from xenonscale.models.data import StoreDataModule
from xenonscale.models.ensemble import EnsembleModel
from xenonscale.models.networks import build_model
from xenonscale.transfer import FrozenFeaturizer
from xenonscale.workflows.ensembles import member_folder, train_ensemble
from xenonscale.workflows.registration import train_and_register
from xenonscale.workflows.retraining import retrain
from xenonscale.zoo import Zoo
from xenonscale.zoo.limits import check_model_config

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
MEMBERS = 3
#: Valid SMILES that are also formulas of the store's elements (the likelihood reads SMILES).
CANDIDATES = ["CO", "CS", "BN", "BP", "CN", "CCl"]
TRAIN = dict(hidden=(32,), max_epochs=4, batch_size=128, accelerator="cpu", progress=False,
             seed=0, data_options={"val_fraction": 0.2})  # fmt: skip


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory, data_dir, dask_client) -> str:
    """1,500 rows of Matbench expt_gap (real), classic descriptors."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    frame = frame.sample(1500, random_state=0)
    path = tmp_path_factory.mktemp("gap") / "gap.csv"
    frame.to_csv(path, index=False)
    store = str(tmp_path_factory.mktemp("gapstore") / "gap.zarr")
    featurize_to_store(str(path), store, SPEC, column="formula", client=dask_client,
                       chunk_rows=500, progress=False)  # fmt: skip
    return store


@pytest.fixture(scope="module")
def trained(gap_store, tmp_path_factory, dask_client):
    """The ensemble trained on the embedded cluster and registered as gap-ens@1."""
    folder = tmp_path_factory.mktemp("ensemble")
    zoo = Zoo(folder / "zoo")
    result = train_and_register(gap_store, "target", name="gap-ens", zoo=zoo, ensemble=MEMBERS,
                                client=dask_client, output=folder / "gap-ens", **TRAIN)  # fmt: skip
    yield result, zoo
    zoo.close()


def _members(output) -> list:
    """Each member rebuilt from its own folder (card.json + weights.safetensors)."""
    nets = []
    for k in range(MEMBERS):
        folder = member_folder(output, k)
        card = json.loads((folder / "card.json").read_text())
        net = build_model(card["model"])
        net.load_state_dict(load_file(str(folder / "weights.safetensors")))
        nets.append(net.eval())
    return nets


def _reference(output, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members' predictions ``[k, n, 1]``, their numpy mean and population std."""
    predictions = np.stack([predict_array(net, x) for net in _members(output)]).astype(np.float64)
    return predictions, predictions.mean(axis=0), predictions.std(axis=0)


def test_one_zoo_entry_predicts_the_members_mean_and_std(trained, gap_store):
    result, zoo = trained
    assert result.ref == "gap-ens@1" and len(zoo.list("gap-ens")) == 1
    model = zoo.load("gap-ens")
    formulas = ["Fe2O3", "NaCl", "GaAs", "ZnO", "Xx2", "SiO2", "CdTe"]
    frame = model.predict(formulas, return_std=True)
    assert list(frame.columns) == ["target", "target_std"]
    batch = featurize_safely(SPEC.build(), formulas)
    ok = np.asarray(batch.ok, dtype=bool)
    assert ok.tolist() == [True, True, True, True, False, True, True]
    _, mean, std = _reference(result.output, np.asarray(batch.values, np.float32)[ok])
    np.testing.assert_allclose(frame["target"].to_numpy()[ok], mean[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(frame["target_std"].to_numpy()[ok], std[:, 0], rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    assert frame.loc[~ok].isna().all(axis=None)
    assert (std[:, 0] > 0).all()  # different seeds give different members
    plain = model.predict(formulas)
    np.testing.assert_array_equal(plain["target"].to_numpy(), frame["target"].to_numpy())
    x = np.asarray(batch.values, np.float32)[ok]
    got_mean, got_std = model.predict_features(x, return_std=True)
    np.testing.assert_allclose(got_mean[:, 0], mean[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_std[:, 0], std[:, 0], rtol=1e-4, atol=1e-5)


def test_members_share_the_split_and_the_ensemble_beats_their_mean_mae(trained, gap_store):
    result, _ = trained
    card = result.card
    data = StoreDataModule(gap_store, "target", val_fraction=0.2, seed=0)  # a single model's split
    data.setup("fit")
    x, y = data.arrays("val")
    predictions, mean, std = _reference(result.output, x)
    member_mae = np.abs(predictions - y).mean(axis=(1, 2))
    for k in range(MEMBERS):  # each member's own card scored the very same rows
        own = json.loads((member_folder(result.output, k) / "card.json").read_text())
        assert own["metrics"]["val"]["mae"] == pytest.approx(member_mae[k], rel=1e-5)
        assert own["split"]["counts"]["val"] == len(y)
        assert own["training"]["seed"] == k
    ensemble_mae = float(np.abs(mean - y).mean())
    assert card["metrics"]["val"]["mae"] == pytest.approx(ensemble_mae, rel=1e-5)
    assert card["ensemble"]["member_mean"]["val"]["mae"] == pytest.approx(member_mae.mean(),
                                                                         rel=1e-5)  # fmt: skip
    assert ensemble_mae <= member_mae.mean() + 1e-9  # |·| is convex: holds for any members
    within = float(np.mean(np.abs(y - mean) <= 2 * std))
    assert card["metrics"]["val"]["within_2sigma"] == pytest.approx(within)
    noise = np.sqrt(max(np.mean((y - mean) ** 2) - np.mean(std**2), 0.0))
    assert card["ensemble"]["noise_std"]["target"] == pytest.approx(noise, rel=1e-4)
    assert card["ensemble"]["seeds"] == [0, 1, 2] and card["split"]["seed"] == 0
    assert card["model"]["backbone"] == "ensemble" and len(card["model"]["members"]) == MEMBERS


def test_one_safetensors_file_and_limits_count_every_member(trained):
    result, _ = trained
    keys = load_file(str(result.output / "weights.safetensors")).keys()
    assert {key.split(".")[1] for key in keys} == {"0", "1", "2"}
    single = check_model_config(result.card["model"]["members"][0])
    assert check_model_config(result.card["model"]) == (MEMBERS * single[0], MEMBERS * single[1])


def test_frozen_features_of_an_ensemble_are_its_members_side_by_side(trained):
    result, zoo = trained
    frozen = FrozenFeaturizer(["gap-ens"], zoo=zoo, depth=1)
    values = frozen.transform(["Fe2O3", "GaAs"])
    assert values.shape == (2, MEMBERS * 32)
    x = np.asarray(SPEC.build().transform(["Fe2O3", "GaAs"]), np.float32)
    import torch

    with torch.no_grad():
        parts = [net.hidden_features(torch.from_numpy(x))[-1].numpy() for net in
                 _members(result.output)]  # fmt: skip
    np.testing.assert_allclose(values, np.hstack(parts), rtol=1e-5, atol=1e-6)


def test_return_std_of_a_single_model_says_train_an_ensemble(trained, tmp_path):
    result, _ = trained
    folder = member_folder(result.output, 0)
    card = json.loads((folder / "card.json").read_text())
    with Zoo(tmp_path / "zoo") as zoo:
        ref = zoo.register("gap-one", _members(result.output)[0], card)
        single = zoo.load(ref)
        with pytest.raises(ConfigError, match=r"no uncertainty.*--ensemble N"):
            single.predict(["NaCl"], return_std=True)
        with pytest.raises(ConfigError, match=r"--ensemble N"):
            single.predict_features(np.zeros((1, len(card["feature_labels"]))), return_std=True)
        assert not single.has_uncertainty and zoo.load("gap-one").predict(["NaCl"]).shape == (1, 1)


def test_design_likelihood_uses_each_candidates_std(trained, tmp_path):
    result, zoo = trained
    model = zoo.load("gap-ens")
    low, high = 1.0, 3.0
    none = pd.DataFrame(index=range(len(CANDIDATES)))
    likelihood = Likelihood([f"target={low}:{high}"], models={"target": model})
    likelihood.fit(CANDIDATES, none)
    frame = likelihood.evaluate(CANDIDATES)
    assert frame["valid"].all()
    assert "ensemble std" in likelihood.std_source_["target"]
    # by hand: the members' spread plus the recorded noise, then a Gaussian interval
    predicted = model.predict(CANDIDATES, return_std=True)
    noise = result.card["ensemble"]["noise_std"]["target"]
    std = np.sqrt(predicted["target_std"].to_numpy() ** 2 + noise**2)
    mean = predicted["target"].to_numpy()
    want = np.log(stats.norm.cdf(high, mean, std) - stats.norm.cdf(low, mean, std))
    np.testing.assert_allclose(frame["target_std"], std, rtol=1e-6)
    np.testing.assert_allclose(frame["log_likelihood"], np.maximum(want, -900), rtol=1e-6)
    assert np.ptp(std) > 0  # one std per candidate, not one for all
    # the recorded-RMSE likelihood (what a single model gets) differs
    rmse = result.card["metrics"]["val"]["rmse"]
    recorded = np.log(stats.norm.cdf(high, mean, rmse) - stats.norm.cdf(low, mean, rmse))
    assert not np.allclose(recorded, frame["log_likelihood"], rtol=1e-3)


def test_bad_ensemble_arguments_fail_before_training(gap_store):
    with pytest.raises(ConfigError, match=r"--ensemble 1: .*at least 2"):
        train_ensemble(gap_store, members=1)
    with pytest.raises(ConfigError, match=r"seeds=\[1, 1\]"):
        train_ensemble(gap_store, members=2, seeds=[1, 1])
    with pytest.raises(ConfigError, match=r"strategy='ddp_spawn'.*one device each"):
        train_ensemble(gap_store, members=2, strategy="ddp_spawn", devices=2)
    with pytest.raises(ConfigError, match="members disagree on in_features"):
        EnsembleModel.from_config({"members": [{"in_features": 3, "hidden": [4]},
                                               {"in_features": 4, "hidden": [4]}]})  # fmt: skip
    with pytest.raises(ConfigError, match="members="):
        EnsembleModel.from_config({"backbone": "ensemble", "members": []})


def test_cli_train_ensemble_on_a_dask_scheduler(gap_store, dask_client, tmp_path):
    zoo = tmp_path / "zoo"
    argv = ["train", gap_store, "--target", "target", "--name", "gap-cli", "--ensemble", "2",
            "--scheduler", dask_client.scheduler.address, "--hidden", "16", "--max-epochs", "2",
            "--accelerator", "cpu", "--zoo", str(zoo), "-o", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    run = CliRunner().invoke(cli, argv)
    assert run.exit_code == 0, run.output
    assert "within_2sigma" in run.output and "members' mean MAE" in run.output
    assert "registered: gap-cli@1" in run.output
    with Zoo(zoo) as opened:
        assert opened.load("gap-cli").predict(["ZnO"], return_std=True).shape == (1, 2)
    alone = CliRunner().invoke(cli, [*argv[:6], "--workers", "2", "--zoo", str(zoo)])
    assert alone.exit_code != 0 and "--ensemble N" in alone.output


def test_an_ensemble_of_attention_members_predicts_from_formulas(gap_store, dask_client, tmp_path):
    with Zoo(tmp_path / "zoo") as zoo:
        result = train_and_register(
            gap_store, "target", name="att-ens", zoo=zoo, ensemble=2, client=dask_client,
            output=tmp_path / "att", backbone="attention",
            backbone_options={"d_model": 16, "heads": 2, "layers": 1}, max_epochs=1,
            batch_size=128, accelerator="cpu", progress=False,
        )  # fmt: skip
        assert [m["backbone"] for m in result.card["model"]["members"]] == ["attention"] * 2
        assert result.card["featurizer"]["names"] == ["slots"]
        frame = zoo.load("att-ens").predict(["Fe2O3", "GaAs", "Xx2"], return_std=True)
    assert frame["target_std"].notna().tolist() == [True, True, False]
    assert (frame["target_std"].iloc[:2] > 0).all()


def test_retrain_rebuilds_an_ensemble_on_the_cluster(trained, dask_client, monkeypatch, tmp_path):
    result, _ = trained
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", dask_client.scheduler.address)
    with Zoo(tmp_path / "zoo") as zoo:
        zoo.register("gap-ens", result.model, result.card, stage="production")
        report = retrain(zoo=zoo, only=["gap-ens"], max_age_days=1e-9, max_epochs=1,
                         progress=False)  # fmt: skip
        assert report[0]["new"] == "gap-ens@2", report
        assert report[0]["mae_current"] == pytest.approx(result.metrics["val"]["mae"], rel=1e-5)
        card = zoo.show("gap-ens@2")
    assert card["model"]["backbone"] == "ensemble" and card["ensemble"]["size"] == MEMBERS
    assert card["model"]["members"][0]["hidden"] == [32]
