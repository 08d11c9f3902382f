"""Source models: splits, the store-streaming DataModule, metrics, training, DDP on CPU."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn import metrics as skm
from sklearn.model_selection import KFold

from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.data import StoreDataModule
from xenonscale.models.metrics import regression_metrics
from xenonscale.models.splits import split_indices
from xenonscale.models.training import train_model
from xenonscale.viz.training import training_figures

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory, data_dir, dask_client) -> tuple[str, pd.DataFrame]:
    """Matbench expt_gap (real) with broken targets injected: NaN, inf, text, two outliers."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    frame["target"] = frame["target"].astype(object)
    frame.loc[[3, 40], "target"] = np.nan
    frame.loc[77, "target"] = "inf"
    frame.loc[[100, 2000], "target"] = [250.0, -90.0]  # far outside any band gap
    frame.loc[5, "formula"] = "Xx2O3"  # a featurization error
    path = tmp_path_factory.mktemp("gap") / "gap.csv"
    frame.to_csv(path, index=False)
    store = str(tmp_path_factory.mktemp("gapstore") / "gap.zarr")
    featurize_to_store(str(path), store, SPEC, column="formula", client=dask_client,
                       chunk_rows=1000, progress=False)  # fmt: skip
    return store, frame


# ------------------------------------------------------------------ splits


def test_random_split_partitions_all_rows_reproducibly():
    a = split_indices(1000, val_fraction=0.1, test_fraction=0.2, seed=3)
    b = split_indices(1000, val_fraction=0.1, test_fraction=0.2, seed=3)
    c = split_indices(1000, val_fraction=0.1, test_fraction=0.2, seed=4)
    assert [len(a[k]) for k in ("train", "val", "test")] == [700, 100, 200]
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), np.arange(1000))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["val"], c["val"])


def test_kfold_split_is_sklearns():
    want = list(KFold(5, shuffle=True, random_state=18012019).split(range(4604)))
    for fold in range(5):
        got = split_indices(4604, method="kfold", folds=5, fold=fold, seed=18012019)
        assert np.array_equal(got["train"], want[fold][0])
        assert np.array_equal(got["val"], want[fold][1])


def test_group_split_never_shares_a_group(data_dir):
    formulas = pd.read_csv(data_dir / "compositions" / "matbench_mp_e_form.csv").formula[:20000]
    parts = split_indices(len(formulas), method="group", groups=formulas.tolist(),
                          val_fraction=0.15, test_fraction=0.1, seed=1)  # fmt: skip
    sets = {k: set(formulas.to_numpy()[v]) for k, v in parts.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"]
                or sets["val"] & sets["test"])  # fmt: skip
    assert sum(len(v) for v in parts.values()) == len(formulas)
    assert abs(len(parts["val"]) / len(formulas) - 0.15) < 0.01


def test_bad_split_arguments_name_the_value():
    with pytest.raises(ConfigError, match="'shuffle'"):
        split_indices(10, method="shuffle")
    with pytest.raises(ConfigError, match=r"val_fraction=0\.7"):
        split_indices(10, val_fraction=0.7, test_fraction=0.5)
    with pytest.raises(ConfigError, match="group label"):
        split_indices(10, method="group")


# ----------------------------------------------------------------- metrics


def test_metrics_match_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    p = y + rng.normal(scale=0.3, size=500)
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(y, p), rel=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), rel=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(y, p), rel=1e-12)
    assert m["pearson"] == pytest.approx(stats.pearsonr(y, p)[0], rel=1e-12)
    assert m["spearman"] == pytest.approx(stats.spearmanr(y, p)[0], rel=1e-12)


# ------------------------------------------------------------- data module


def test_counts_add_up_and_statistics_come_from_the_training_split(gap_store):
    store, frame = gap_store
    data = StoreDataModule(store, "target", val_fraction=0.2, test_fraction=0.1, seed=5)
    data.setup("fit")
    c = data.counts
    assert c["rows"] == len(frame)
    assert (c["not_ok"], c["non_finite_target"]) == (1, 3)
    assert c["outliers_train"] + c["outliers_val"] + c["outliers_test"] == 2
    assert c["train"] + c["val"] + c["test"] + 1 + 3 + 2 == len(frame)
    rows = data.rows["train"]
    import xarray as xr

    ds = xr.open_zarr(store)
    x = ds.features.values[rows].astype(np.float64)
    np.testing.assert_allclose(data.feature_mean, x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(data.feature_std, x.std(axis=0), rtol=1e-4, atol=1e-5)
    y = ds.target.values[rows]
    assert data.target_mean[0] == pytest.approx(y.mean(), rel=1e-5)
    assert np.isfinite(y).all() and y.max() < 250 and y.min() > -90
    keep = StoreDataModule(store, "target", outliers="keep", seed=5)
    keep.setup()
    assert keep.counts["train"] + keep.counts["val"] == len(frame) - 4


def test_streaming_serves_the_same_rows_as_memory(gap_store):
    store, _ = gap_store
    memory = StoreDataModule(store, "target", batch_size=128, seed=2)
    stream = StoreDataModule(store, "target", batch_size=128, seed=2, memory_budget=0)
    memory.setup(), stream.setup()
    assert memory.in_memory and not stream.in_memory

    def rows_of(loader):
        xs, ys = zip(*loader, strict=True)
        return torch.cat(xs).numpy(), torch.cat(ys).numpy()

    for split in ("train", "val"):
        (xm, ym), (xs, ys) = (rows_of(m._loader(split, shuffle=split == "train"))
                              for m in (memory, stream))  # fmt: skip
        key = lambda x, y: np.lexsort(np.column_stack([x, y]).T)  # noqa: E731
        np.testing.assert_array_equal(xm[key(xm, ym)], xs[key(xs, ys)])
        np.testing.assert_array_equal(ym[key(xm, ym)], ys[key(xs, ys)])


def test_unknown_target_names_the_store_variables(gap_store):
    store, _ = gap_store
    with pytest.raises(ConfigError, match=r"'band_gap'.*target"):
        StoreDataModule(store, "band_gap").setup()


# ----------------------------------------------------------------- training


@pytest.mark.slow
def test_training_beats_the_mean_and_saves_plots_card_and_safetensors(gap_store, tmp_path):
    store, _ = gap_store
    result = train_model(store, "target", name="gap", output=tmp_path, max_epochs=6,
                         progress=False, accelerator="cpu", seed=1)  # fmt: skip
    assert not (tmp_path / "parity.png").exists()  # training draws nothing; viz does
    assert set(training_figures(result)) == {"learning_curve.png", "parity.png"}
    data = StoreDataModule(store, "target", seed=1)
    _, y_val = data.arrays("val")
    _, y_train = data.arrays("train")
    baseline = np.abs(y_val - y_train.mean()).mean()
    assert result.metrics["val"]["mae"] < 0.6 * baseline
    for name in ("weights.safetensors", "card.json", "history.json", "learning_curve.png",
                 "parity.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    card = json.loads((tmp_path / "card.json").read_text())
    assert card["featurizer"]["names"] == ["classic"] and card["targets"] == ["target"]
    assert len(card["feature_labels"]) == card["model"]["in_features"] == 290
    assert card["split"]["counts"]["outliers_train"] + card["split"]["counts"]["outliers_val"] == 2
    assert (tmp_path / "weights.safetensors").read_bytes()[8:9] == b"{"  # safetensors header


def test_cosine_schedule_anneals_to_zero_at_the_last_epoch(gap_store, tmp_path):
    store, _ = gap_store
    epochs, lr = 5, 2e-3
    train_model(store, "target", output=tmp_path, max_epochs=epochs, lr=lr, scheduler="cosine",
                patience=50, progress=False, accelerator="cpu", seed=0)  # fmt: skip
    rates = [row["lr"] for row in json.loads((tmp_path / "history.json").read_text())]
    # the first epoch trains at the base rate; after it, epoch e ends at progress (e + 1) / E
    want = [lr] + [lr * 0.5 * (1 + np.cos(np.pi * (e + 1) / epochs)) for e in range(1, epochs)]
    assert np.allclose(rates, want, rtol=1e-6, atol=1e-12), (rates, want)
    assert rates[-1] < 1e-12


def test_cosine_schedule_anneals_over_a_time_budget(gap_store, tmp_path):
    store, _ = gap_store
    lr, seconds = 2e-3, 4
    started = time.perf_counter()
    train_model(store, "target", output=tmp_path, max_epochs=10_000, lr=lr, scheduler="cosine",
                max_minutes=seconds / 60, patience=10_000, progress=False, accelerator="cpu",
                seed=0)  # fmt: skip
    assert time.perf_counter() - started < seconds + 10
    rates = [row["lr"] for row in json.loads((tmp_path / "history.json").read_text())]
    assert len(rates) >= 4 and rates[0] <= lr  # ended by the clock, not by 10,000 epochs
    assert all(b <= a for a, b in itertools.pairwise(rates)), rates
    assert rates[-1] < 0.1 * lr, rates  # near the end of the clock, near 0
    assert rates[len(rates) // 4] > 0.3 * lr, rates  # not annealed by the epoch count


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ddp_spawn_on_two_cpu_processes_matches_one_process(gap_store, tmp_path):
    store, _ = gap_store
    common = dict(max_epochs=6, progress=False, accelerator="cpu", seed=0,
                  batch_size=128, patience=50)  # fmt: skip
    one = train_model(store, "target", output=tmp_path / "one", devices=1, **common)
    two = train_model(store, "target", output=tmp_path / "two", devices=2,
                      strategy="ddp_spawn", **common)  # fmt: skip
    history = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(history) == 6  # every epoch ran in the spawned processes
    a, b = one.metrics["val"]["mae"], two.metrics["val"]["mae"]
    assert abs(a - b) / a < 0.15, (a, b)  # same data, twice the global batch: within noise
    assert abs(one.metrics["val"]["r2"] - two.metrics["val"]["r2"]) < 0.1
    assert two.metrics["val"]["r2"] > 0.4  # and it learned something


def test_ddp_under_pytest_is_refused(gap_store, tmp_path):
    store, _ = gap_store
    with pytest.raises(ConfigError, match="ddp_spawn"):
        train_model(store, "target", output=tmp_path, strategy="ddp")


@pytest.mark.slow
def test_cli_train_registers_a_model_that_predicts_raw_formulas(gap_store, tmp_path):
    from xenonscale.cli.main import main
    from xenonscale.zoo import load

    zoo = str(tmp_path / "zoo")
    argv = ["train", gap_store[0], "--target", "target", "--name", "expt-gap", "--zoo", zoo,
            "--max-epochs", "3", "--output", str(tmp_path / "out"), "--units", "eV",
            "--accelerator", "cpu", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    model = load("expt-gap", zoo=zoo)
    assert str(model.ref) == "expt-gap@1" and model.card["units"] == {"target": "eV"}
    frame = model.predict(["Fe2O3", "NaCl", "Xx2"])
    assert np.isfinite(frame["target"].iloc[:2]).all() and np.isnan(frame["target"].iloc[2])
    assert model.errors_["row"].tolist() == [2] and "Xx" in model.errors_["error"].iloc[0]
    # the same numbers as the in-memory featurizer + the saved network
    x = SPEC.build().featurize_batch(["Fe2O3", "NaCl"]).values.astype(np.float32)
    np.testing.assert_allclose(frame["target"].iloc[:2], model.predict_features(x)[:, 0])
    assert main(["train", gap_store[0], "--target", "target", "--name", "x", "--strategy",
                 "horovod", "--zoo", zoo]) == 2  # fmt: skip


def test_no_training_batch_of_one_row():
    """513 rows in batches of 256: training drops the lone row (batch norm needs two), a
    different one each epoch; validation keeps every row."""
    import torch

    from xenonscale.models.data import ArrayStream

    x = np.arange(513, dtype=np.float32)[:, None]
    train = ArrayStream(x, x[:, 0], batch_size=256, shuffle=True, seed=0)
    epochs = [[len(b[0]) for b in train] for _ in range(2)]
    assert epochs == [[256, 256], [256, 256]]
    left_out = [set(range(513)) - {int(v) for b in ArrayStream(x, x[:, 0], batch_size=256,
                shuffle=True, seed=0) for v in b[0][:, 0]} for _ in range(1)]  # fmt: skip
    assert len(left_out[0]) == 1
    valid = ArrayStream(x, x[:, 0], batch_size=256, shuffle=False)
    assert [len(b[0]) for b in valid] == [256, 256, 1]
    net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4)).train()
    for batch, _ in ArrayStream(x, x[:, 0], batch_size=256, shuffle=True, seed=1):
        net(batch)  # a 1-row batch would raise "Expected more than 1 value per channel"
