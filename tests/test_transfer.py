"""Frozen features from zoo models: in memory and through the engine."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.transfer import FrozenFeaturizer
from xenonscale.workflows.registration import train_and_register
from xenonscale.zoo import Zoo

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory, data_dir, dask_client) -> str:
    """A zoo with one small source model trained on real Matbench mp_e_form formulas."""
    work = tmp_path_factory.mktemp("source")
    frame = pd.read_csv(data_dir / "compositions" / "matbench_mp_e_form.csv").sample(
        3000, random_state=0
    )
    frame.to_csv(work / "mp.csv", index=False)
    featurize_to_store(str(work / "mp.csv"), str(work / "mp.zarr"), SPEC, column="formula",
                       client=dask_client, progress=False)  # fmt: skip
    zoo = str(work / "zoo")
    train_and_register(str(work / "mp.zarr"), "target", name="mp-small", zoo=zoo,
                       output=work / "m", hidden=[64, 32], max_epochs=3, progress=False,
                       accelerator="cpu")  # fmt: skip
    return zoo


def _hooked_activations(model, x: np.ndarray) -> list[np.ndarray]:
    """Block outputs captured by forward hooks during a plain forward pass (a second path)."""
    seen = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().numpy()))
             for b in model.backbone.blocks]  # fmt: skip
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    return seen


def test_frozen_features_are_the_hidden_activations(source_zoo):
    formulas = ["Fe2O3", "NaCl", "Xx2", "LiFePO4", "GaN"]
    last = FrozenFeaturizer("mp-small", zoo=source_zoo)
    both = FrozenFeaturizer(["mp-small@1"], zoo=source_zoo, depth=None)
    frame, every = last.transform(formulas), both.transform(formulas)
    assert frame.shape == (5, 32) and every.shape == (5, 96)
    assert frame.columns[0] == "mp-small@1:h1:0" and every.columns[0] == "mp-small@1:h0:0"
    assert last.errors_["row"].tolist() == [2] and frame.iloc[2].isna().all()
    model = Zoo(source_zoo).load("mp-small")
    x = SPEC.build().featurize_batch(formulas).values.astype(np.float32)
    keep = [0, 1, 3, 4]
    hooked = _hooked_activations(model.model, x[keep])
    np.testing.assert_allclose(frame.to_numpy()[keep], hooked[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(every.to_numpy()[keep], np.hstack(hooked), rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="depth=3"):
        FrozenFeaturizer("mp-small", zoo=source_zoo, depth=3).transform(["NaCl"])


def test_frozen_features_through_the_engine(source_zoo, tmp_path, data_dir, dask_client):
    # workers find the zoo as deployed workers would: through $XENONSCALE_ZOO
    dask_client.run(lambda: os.environ.__setitem__("XENONSCALE_ZOO", source_zoo))
    old = os.environ.get("XENONSCALE_ZOO")
    os.environ["XENONSCALE_ZOO"] = source_zoo
    try:
        spec = FeaturizerSpec.parse("composition", "frozen:mp-small@1")
        source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
        store = str(tmp_path / "frozen.zarr")
        job = featurize_to_store(source, store, spec, column="formula", client=dask_client,
                                 progress=False)  # fmt: skip
        want = FrozenFeaturizer("mp-small@1").transform(
            pd.read_csv(source)["formula"]).to_numpy(np.float32)  # fmt: skip
    finally:
        dask_client.run(lambda: os.environ.pop("XENONSCALE_ZOO", None))
        if old is None:
            os.environ.pop("XENONSCALE_ZOO", None)
        else:
            os.environ["XENONSCALE_ZOO"] = old
    assert (job.rows, job.features) == (312, 32)
    np.testing.assert_array_equal(xr.open_zarr(store).features.values, want)
    with pytest.raises(ConfigError, match="frozen:ARG"):
        FeaturizerSpec.parse("composition", "frozen")


# -- fine-tuning and shotgun transfer -------------------------------------------------------

TINY_SOURCES = {  # name: (shared file, rows, hidden): never expt_gap (the target dataset)
    "tiny-mp-gap": ("matbench_mp_gap.csv", 1500, [32, 16]),
    "tiny-mp-eform": ("matbench_mp_e_form.csv", 1500, [32, 16]),
    "tiny-oqmd-hf": ("oqmd_formation_enthalpy_train.csv", 1500, [24, 16]),
}


def _tiny_model(x: np.ndarray, y: np.ndarray, hidden: list[int], seed: int):
    """A small PropertyModel fitted by full-batch Adam (a few seconds): a cheap source model."""
    from xenonscale.models import PropertyModel

    torch.manual_seed(seed)
    model = PropertyModel(
        {"in_features": x.shape[1], "out_features": 1, "hidden": hidden, "dropout": 0.0}
    )
    model.fit_scaling(
        np.nanmean(x, 0), np.nanstd(x, 0), y.mean(keepdims=True), y.std(keepdims=True)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(((y - y.mean()) / y.std())[:, None])
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        loss = torch.nn.functional.l1_loss(model.forward_scaled(xt), yt.float())
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, data_dir) -> str:
    """Three tiny source models trained on other shared data (mp_gap, mp_e_form, OQMD)."""
    from xenonscale.zoo import featurizer_fields

    torch.set_num_threads(1)
    zoo_dir = str(tmp_path_factory.mktemp("tiny") / "zoo")
    featurizer = SPEC.build()
    fields = featurizer_fields(SPEC)
    with Zoo(zoo_dir) as zoo:
        for seed, (name, (file, rows, hidden)) in enumerate(TINY_SOURCES.items()):
            frame = pd.read_csv(data_dir / "compositions" / file).sample(rows, random_state=seed)
            batch = featurizer.featurize_batch(frame["formula"].tolist())
            ok = np.asarray(batch.ok) & np.isfinite(frame["target"].to_numpy())
            x = np.asarray(batch.values, np.float32)[ok]
            y = frame["target"].to_numpy(np.float32)[ok]
            model = _tiny_model(x, y, hidden, seed)
            zoo.register(name, model, fields | {"targets": ["target"]})
    return zoo_dir


@pytest.fixture(scope="module")
def expt_gap(data_dir) -> pd.DataFrame:
    """The first 500 rows of a seeded shuffle of Matbench expt_gap (the small target set)."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    return frame.sample(frac=1.0, random_state=7).reset_index(drop=True).iloc[:500]


@pytest.mark.parametrize("freeze", ["all", "last", "none"])
def test_fine_tune_freezes_what_it_says(tiny_zoo, expt_gap, freeze, tmp_path):
    from xenonscale.transfer import fine_tune

    torch.set_num_threads(1)
    source = Zoo(tiny_zoo).load("tiny-mp-gap")
    before = {k: v.clone() for k, v in source.model.state_dict().items()}
    rows = expt_gap.iloc[:160]
    tuned = fine_tune(
        source, rows["formula"], rows["target"], freeze=freeze, max_epochs=4, batch_size=32, seed=1
    )
    after = tuned.model.state_dict()
    for key, value in before.items():  # the source model itself is never touched
        assert torch.equal(source.model.state_dict()[key], value), key
    frozen = {"all": [0, 1], "last": [0], "none": []}[freeze]
    for block in range(2):
        keys = [k for k in before if k.startswith(f"backbone.blocks.{block}.")]
        same = all(torch.equal(after[k], before[k]) for k in keys)  # BN statistics included
        assert same == (block in frozen), (freeze, block)
    assert torch.equal(after["inputs.mean"], before["inputs.mean"])
    assert not torch.equal(after["backbone.head.weight"], before["backbone.head.weight"])
    y_train = rows["target"].to_numpy(np.float32)
    assert np.isfinite(tuned.predict(["GaN", "NaCl"])).all()
    assert tuned.model.target_std.item() != pytest.approx(before["target_std"].item())
    assert len(tuned.history_) >= 1 and tuned.fallback_.shape == (1,)
    assert abs(float(tuned.model.target_mean) - y_train.mean()) < 1.0
    if freeze == "last":  # a fine-tuned model is a PropertyModel: it goes into the zoo as is
        with Zoo(tmp_path / "zoo") as zoo:
            ref = zoo.register("tuned-gap", tuned.model, tuned.card({"cv": {"mae": 0.5}}))
            loaded = zoo.load(ref)
        np.testing.assert_allclose(
            loaded.predict(["GaN", "NaCl"])["target"], tuned.predict(["GaN", "NaCl"]), rtol=1e-6
        )
        assert loaded.card["transfer"]["source"] == "tiny-mp-gap@1"
    with pytest.raises(ConfigError, match="freeze="):
        fine_tune(source, rows["formula"], rows["target"], freeze="some")


def test_shotgun_ranks_sources_in_parallel_on_dask(tiny_zoo, expt_gap, dask_client):
    from distributed import get_task_stream
    from sklearn.model_selection import KFold, cross_val_predict

    from xenonscale.transfer.selection import BASELINE_SPEC, make_learner, shotgun
    from xenonscale.zoo.card import featurizer_spec

    rows = expt_gap.iloc[:300]
    inputs, y = rows["formula"].tolist(), rows["target"].to_numpy()
    with get_task_stream(dask_client) as stream:
        first = shotgun(inputs, y, zoo=tiny_zoo, cv=4, seed=42, client=dask_client, top_k=2,
                        allow_baseline=False)  # fmt: skip
    scored = [t for t in stream.data if "transfer-score" in str(t["key"])]
    assert len(scored) == 3 and len({t["worker"] for t in scored}) == 2  # both workers
    with get_task_stream(dask_client) as stream:  # computed again, not Dask's cached result
        again = shotgun(inputs, y, zoo=tiny_zoo, cv=4, seed=42, client=dask_client, top_k=2,
                        allow_baseline=False)  # fmt: skip
    assert len([t for t in stream.data if "transfer-score" in str(t["key"])]) == 3
    names = [r["name"] for r in first.ranking]
    assert sorted(names) == sorted(f"{n}@1" for n in TINY_SOURCES)
    assert [r["cv_mae"] for r in first.ranking] == sorted(r["cv_mae"] for r in first.ranking)
    assert names == [r["name"] for r in again.ranking]
    assert first.mae == again.mae and first.baseline_mae == again.baseline_mae
    # the folds are Matbench's protocol: KFold(shuffle=True, random_state=seed)
    want = list(KFold(n_splits=4, shuffle=True, random_state=42).split(np.arange(300)))
    for (train, val), (w_train, w_val) in zip(first.folds, want, strict=True):
        np.testing.assert_array_equal(train, w_train)
        np.testing.assert_array_equal(val, w_val)
    # the baseline is the same learner on classic/xenonpy58 over exactly those folds
    x = featurizer_spec(BASELINE_SPEC).build().transform(inputs).to_numpy(np.float32)
    assert np.isfinite(x).all()
    oof = cross_val_predict(
        make_learner("ridge"), x, y, cv=KFold(n_splits=4, shuffle=True, random_state=42)
    )
    np.testing.assert_allclose(first.baseline_oof, oof, rtol=1e-6, atol=1e-6)
    assert first.baseline_mae == pytest.approx(np.abs(oof - y).mean())
    assert first.method.startswith("ensemble of ") and first.method.count(":") == 2
    # by default the baseline is the final predictor exactly when it wins in CV
    auto = shotgun(inputs, y, zoo=tiny_zoo, cv=4, seed=42, client=dask_client, top_k=2)
    assert auto.details["transfer_mae"] == pytest.approx(first.mae)
    if first.baseline_mae < first.mae:
        assert auto.method == "baseline" and auto.mae == pytest.approx(first.baseline_mae)
    else:
        assert auto.method == first.method and auto.mae == pytest.approx(first.mae)
    prediction = first.predictor.predict(["GaN", "Xx2"])
    assert np.isfinite(prediction[0]) and np.isnan(prediction[1])
    with pytest.raises(ConfigError, match="cv="):
        shotgun(inputs[:3], y[:3], zoo=tiny_zoo, cv=5, client=dask_client)
    # optional fine-tuning is scored in the same task, on the same folds
    tuned = shotgun(
        inputs[:120],
        y[:120],
        zoo=tiny_zoo,
        sources=["tiny-mp-gap@1"],
        cv=2,
        seed=3,
        finetune="last",
        finetune_options={"max_epochs": 2},
        client=dask_client,
    )
    row = tuned.ranking[0]
    assert np.isfinite(row["finetune_cv_mae"])
    assert row["cv_mae"] == min(row["finetune_cv_mae"], row["frozen_cv_mae"])


def test_shotgun_feature_augmentation(tiny_zoo, expt_gap, dask_client):
    """``descriptors+prediction``: the baseline's descriptors plus the source's own prediction."""
    from sklearn.model_selection import KFold, cross_val_predict

    from xenonscale.transfer.selection import (
        BASELINE_SPEC,
        make_learner,
        parse_features,
        shotgun,
        source_features,
    )
    from xenonscale.zoo.card import featurizer_spec

    rows = expt_gap.iloc[:200]
    inputs, y = rows["formula"].tolist(), rows["target"].to_numpy()
    source = Zoo(tiny_zoo).load("tiny-mp-gap")
    features, ok, _ = source_features(source, inputs, 1, parse_features("descriptors+prediction"))
    descriptors = featurizer_spec(BASELINE_SPEC).build().transform(inputs).to_numpy(np.float32)
    predicted = source.predict(inputs)["target"].to_numpy(np.float32)
    assert ok.all() and features.shape == (200, descriptors.shape[1] + 1)
    np.testing.assert_allclose(features[:, :-1], descriptors, rtol=1e-6)
    np.testing.assert_allclose(features[:, -1], predicted, rtol=1e-5, atol=1e-6)
    result = shotgun(inputs, y, zoo=tiny_zoo, sources=["tiny-mp-gap@1"], cv=4, seed=5,
                     features="descriptors+prediction", allow_baseline=False,
                     client=dask_client)  # fmt: skip
    oof = cross_val_predict(
        make_learner("ridge"), features, y, cv=KFold(4, shuffle=True, random_state=5)
    )
    assert result.ranking[0]["method"] == "descriptors+prediction+ridge"
    assert result.mae == pytest.approx(np.abs(oof - y).mean(), rel=1e-6)
    assert result.details["features"] == "descriptors+prediction"
    np.testing.assert_allclose(
        result.predictor.predict(inputs[:5]),
        make_learner("ridge").fit(features, y).predict(features[:5]),
        rtol=1e-5,
    )
    for bad in ("", "hidden+hidden", "weights"):
        with pytest.raises(ConfigError, match="features="):
            shotgun(inputs, y, zoo=tiny_zoo, features=bad, client=dask_client)


def test_transfer_cli_end_to_end(tiny_zoo, expt_gap, dask_client, tmp_path):
    import json

    from xenonscale.cli.main import main

    expt_gap.iloc[:400].to_csv(tmp_path / "train.csv", index=False)
    expt_gap.iloc[400:500].to_csv(tmp_path / "test.csv", index=False)
    report = tmp_path / "out" / "report.json"
    status = main(
        [
            "transfer",
            str(tmp_path / "train.csv"),
            "--column",
            "formula",
            "--target",
            "target",
            "--zoo",
            tiny_zoo,
            "--cv",
            "5",
            "--seed",
            "18012019",
            "--test",
            str(tmp_path / "test.csv"),
            "--scheduler",
            dask_client.scheduler.address,
            "--register",
            "gap-transfer",
            "-o",
            str(report),
        ]
    )
    assert status == 0
    body = json.loads(report.read_text())
    for key in ("mae", "baseline_mae", "test_mae", "baseline_test_mae", "sources", "method"):
        assert key in body, key
    assert body["rows"] == 400 and body["test_rows"] == 100 and len(body["sources"]) == 3
    assert {"name", "cv_mae"} <= set(body["sources"][0])
    assert all(np.isfinite(body[k]) for k in ("mae", "baseline_mae", "test_mae"))
    assert body["registered"] is None and "pickl" in body["not_registered"]
    for name in body["plots"].values():
        assert (report.parent / name).stat().st_size > 10_000
    assert set(body["plots"]) == {"cv", "test"}
