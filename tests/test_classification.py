"""Classification everywhere a regression works: training, metrics, plots, tuning, transfer.

Real data: 1,500 rows of Matbench ``expt_is_metal`` (and ``glass`` for transfer),
featurized with XenonPy ``classic`` descriptors on an in-process Dask client.
Every metric is checked against scikit-learn on the same predictions.
"""

from __future__ import annotations

import contextlib
import io
import json

import lightning as L
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn import metrics as skm

from xenonscale.cli.main import main
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.backbones import predict_array
from xenonscale.models.metrics import classification_metrics
from xenonscale.models.module import PropertyClassifier
from xenonscale.models.tasks import monitor_metric, resolve_task
from xenonscale.models.training import train_model
from xenonscale.viz.training import roc_curve, training_figures
from xenonscale.zoo import Zoo

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
MESSAGE = (
    "target 'target' holds only 0 and 1: training a classifier (pass --task regression to override)"
)


@pytest.fixture(scope="module")
def client(one_torch_thread):
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=":0") as client:  # fmt: skip
        yield client


def _store(folder, frame: pd.DataFrame, client) -> str:
    frame.to_csv(folder / "rows.csv", index=False)
    store = str(folder / "rows.zarr")
    featurize_to_store(str(folder / "rows.csv"), store, SPEC, column="formula", client=client,
                       progress=False)  # fmt: skip
    return store


@pytest.fixture(scope="module")
def metal_store(tmp_path_factory, data_dir, client) -> str:
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_is_metal.csv")
    return _store(tmp_path_factory.mktemp("metal"), frame.sample(1500, random_state=0), client)


@pytest.fixture(scope="module")
def gap_store(tmp_path_factory, data_dir, client) -> str:
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    return _store(tmp_path_factory.mktemp("gap"), frame.head(60), client)


@pytest.fixture(scope="module")
def trained(metal_store, tmp_path_factory):
    """A small MLP classifier; the task is inferred (the message is captured)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = train_model(
            metal_store, "target", name="metal", output=tmp_path_factory.mktemp("model"),
            hidden=(64, 32), max_epochs=10, patience=10, batch_size=64, accelerator="cpu",
            progress=False, data_options={"val_fraction": 0.2},
        )  # fmt: skip
    return result, stderr.getvalue()


def test_task_is_inferred_from_a_01_target_with_one_message(trained):
    result, stderr = trained
    assert stderr.strip().splitlines() == [MESSAGE]
    assert result.card["task"] == result.model.config["task"] == "classification"
    assert result.card["training"]["monitor"] == "val_logloss"
    assert result.card["training"]["loss"] == "bce"
    assert result.card["split"]["outliers"] == "keep"
    assert all("val_logloss" in row and "val_mae" not in row for row in result.history)


def test_classifier_learns_and_predicts_probabilities(trained):
    result, _ = trained
    y, p = result.predictions["val"]
    assert set(np.unique(y)) == {0.0, 1.0}
    assert ((p >= 0) & (p <= 1)).all() and len(np.unique(p)) > 50
    assert result.metrics["val"]["roc_auc"] > 0.8, result.metrics
    assert result.card["metrics"]["val"]["n"] == len(y) == 300


def test_array_metrics_equal_sklearns(trained):
    y, p = (a[:, 0].astype(np.float64) for a in trained[0].predictions["val"])
    m = classification_metrics(y, p)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-12)
    assert m["f1"] == pytest.approx(skm.f1_score(y, p >= 0.5), abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-9)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    assert (m["positives"], m["n"]) == (int(y.sum()), len(y))
    # ties: the AUC counts them one half, as sklearn does
    ties = np.round(p, 1)
    assert classification_metrics(y, ties)["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, ties), abs=1e-12
    )
    fpr, tpr, _ = skm.roc_curve(y, ties, drop_intermediate=False)
    ours = roc_curve(y, ties)
    assert np.allclose(ours[0], fpr) and np.allclose(ours[1], tpr)


def test_lightning_metrics_equal_sklearns_on_the_same_predictions(trained):
    """The module's torchmetrics, accumulated over several batches, against sklearn."""
    result, _ = trained
    data = result.data
    data.batch_size = 64  # 300 validation rows: 5 batches
    module = PropertyClassifier(result.model, targets=["target"])
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)  # fmt: skip
    logged = trainer.validate(module, dataloaders=data.val_dataloader(), verbose=False)[0]
    x, y = data.arrays("val")
    y = y[:, 0].astype(np.float64)
    p = predict_array(result.model, x)[:, 0].astype(np.float64)
    assert logged["val_roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-5)
    assert logged["val_accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5), abs=1e-6)
    assert logged["val_f1"] == pytest.approx(skm.f1_score(y, p >= 0.5), abs=1e-6)
    assert logged["val_logloss"] == pytest.approx(skm.log_loss(y, p), abs=1e-5)
    assert logged["val_logloss"] == pytest.approx(result.metrics["val"]["log_loss"], abs=1e-5)


def test_plots_are_roc_and_calibration_not_parity(trained):
    result, _ = trained
    files = training_figures(result)
    assert sorted(files) == ["calibration.png", "learning_curve.png", "roc.png"]
    assert all(path.stat().st_size > 10_000 for path in files.values())


def test_task_checks_fail_fast_with_one_line(gap_store):
    with pytest.raises(ConfigError, match=r"target 'target' holds values other than 0 and 1"):
        train_model(gap_store, "target", task="classification", max_epochs=1, progress=False)
    with pytest.raises(ConfigError, match="holds only 0: a classifier needs rows of both"):
        resolve_task("classification", np.zeros((5, 1)), ["y"])
    with pytest.raises(ConfigError, match="task='ranking'"):
        resolve_task("ranking", np.zeros((5, 1)), ["y"])
    assert resolve_task(None, np.array([[0.0], [0.0]]), ["y"]) == "regression"  # one class
    assert monitor_metric(None) == "val_mae"


def test_cli_task_flag(metal_store, gap_store, tmp_path, capsys):
    argv = ["train", gap_store, "--target", "target", "--name", "g", "--task", "classification",
            "--no-register", "--output", str(tmp_path / "g"), "--no-progress"]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds values other than 0 and 1" in err[0], err
    argv = ["train", metal_store, "--target", "target", "--name", "m", "--task", "regression",
            "--hidden", "16", "--max-epochs", "1", "--no-register",
            "--output", str(tmp_path / "m"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["task"] == "regression" and "mae" in card["metrics"]["val"]
    assert "training a classifier" not in capsys.readouterr().err
    assert (tmp_path / "m" / "parity.png").exists()


def test_tuning_two_trials_of_a_classifier(metal_store, client, tmp_path):
    # lazy: optuna is imported by the tuning module's functions only
    import optuna

    from xenonscale.models.tuning import tune

    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    result = tune(metal_store, "target", trials=2, storage=storage, study="metal", client=client,
                  max_epochs=2, pruner="none", output=tmp_path / "t", progress=False)  # fmt: skip
    study = optuna.load_study(study_name="metal", storage=storage)
    assert (result.task, result.metric, result.direction) == (
        "classification", "val_logloss", "minimize",
    )  # fmt: skip
    recorded = {"task": "classification", "metric": "val_logloss", "direction": "minimize"}
    assert recorded.items() <= study.user_attrs.items(), study.user_attrs
    values = [t.value for t in study.trials if t.state.name == "COMPLETE"]
    assert len(study.trials) == 2 and result.best_value == min(values)
    assert 0 < result.best_value < np.log(2)  # better than a coin's log-loss
    best = json.loads((tmp_path / "t" / "best.json").read_text())
    assert best["metric"] == "val_logloss" and best["task"] == "classification"
    with pytest.raises(ConfigError, match="use a new --study name"):
        tune(metal_store, "target", trials=1, storage=storage, study="metal", client=client,
             task="regression", max_epochs=1, progress=False)  # fmt: skip


# ------------------------------------------------------------------ transfer


@pytest.fixture(scope="module")
def metal_zoo(trained, tmp_path_factory) -> str:
    """A zoo holding the expt_is_metal classifier (a source for another 0/1 target)."""
    from xenonscale.workflows.registration import register_result

    zoo = str(tmp_path_factory.mktemp("zoo") / "zoo")
    with Zoo(zoo) as opened:
        register_result(trained[0], opened)
    return zoo


@pytest.fixture(scope="module")
def glass(data_dir) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / "compositions" / "matbench_glass.csv")
    return frame.sample(300, random_state=1).reset_index(drop=True)


def test_zoo_classifier_predicts_probabilities(metal_zoo, trained):
    with Zoo(metal_zoo) as zoo:
        model = zoo.load("metal")
        frame = model.predict(["Cu", "NaCl", "Fe2O3", "SiO2", "Xx2"])
    assert model.card["task"] == model.model.task == frame.attrs["task"] == "classification"
    p = frame["target"].to_numpy()
    assert np.isnan(p[4]) and ((p[:4] > 0) & (p[:4] < 1)).all()
    assert p[0] > 0.5 > p[1]  # copper is a metal, rock salt is not


def test_shotgun_with_a_classifier_learner(metal_zoo, glass, client):
    from xenonscale.transfer.selection import make_learner, shotgun

    formulas, y = glass["formula"].tolist(), glass["target"].to_numpy()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        result = shotgun(formulas, y, zoo=metal_zoo, cv=3, seed=18012019, client=client,
                         finetune="last", finetune_options={"max_epochs": 4})  # fmt: skip
    assert "holds only 0 and 1" in stderr.getvalue()
    assert (result.task, result.metric, result.details["learner"]) == (
        "classification", "log_loss", "logistic",
    )  # fmt: skip
    assert ((result.oof >= 0) & (result.oof <= 1)).all()
    assert result.scores["cv_roc_auc"] == pytest.approx(skm.roc_auc_score(y, result.oof))
    assert result.score == pytest.approx(skm.log_loss(y, result.oof))
    assert result.baseline_scores["cv_roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, result.baseline_oof)
    )
    assert result.baseline_score == pytest.approx(skm.log_loss(y, result.baseline_oof))
    assert result.baseline_scores["cv_roc_auc"] > 0.75, result.baseline_scores
    (row,) = result.ranking
    assert {"cv_log_loss", "frozen_cv_log_loss", "finetune_cv_log_loss"} <= set(row)
    p = result.predictor.predict(["Cu50Zr50", "NaCl", "Xx2"])
    assert np.isnan(p[2]) and ((p[:2] >= 0) & (p[:2] <= 1)).all()
    with pytest.raises(ConfigError, match="learner='rf' is a classifier: for a regression"):
        shotgun(formulas, y + 0.5, zoo=metal_zoo, learner="rf", client=client)
    # a regressor's name stands for its classifier counterpart on a 0/1 target
    assert type(make_learner("krr", task="classification")).__name__ == "RandomForestClassifier"
    assert type(make_learner("rf", task="classification")).__name__ == "RandomForestClassifier"


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_vote_learner_is_the_mean_of_boosting_and_a_forest(glass, task):
    """``vote`` = the mean of scikit-learn's boosting and forest fitted alone on the same rows."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    from xenonscale.transfer.selection import baseline_descriptors, learner_output, make_learner

    x, ok, _ = baseline_descriptors(glass["formula"].tolist())
    assert ok.all()
    y = glass["target"].to_numpy(np.float64)
    if task == "regression":  # a continuous target: the glass label plus a descriptor
        y = y + x[:, 0] / np.abs(x[:, 0]).max()
        boosting, forest = HistGradientBoostingRegressor, RandomForestRegressor
    else:
        boosting, forest = HistGradientBoostingClassifier, RandomForestClassifier
    train, test = slice(0, 150), slice(150, 200)
    vote = learner_output(make_learner("vote", 7, task).fit(x[train], y[train]), x[test])
    alone = [
        boosting(max_iter=300, learning_rate=0.05, random_state=7),
        forest(n_estimators=300, min_samples_leaf=2, random_state=7),
    ]
    outputs = [learner_output(model.fit(x[train], y[train]), x[test]) for model in alone]
    np.testing.assert_allclose(vote, np.mean(outputs, axis=0), rtol=1e-12, atol=1e-12)
    assert np.abs(outputs[0] - outputs[1]).max() > 0.01  # two different votes were averaged


def test_transfer_cli_reports_a_classification(metal_zoo, glass, client, tmp_path):
    glass.to_csv(tmp_path / "glass.csv", index=False)
    report_path = tmp_path / "report.json"
    argv = ["transfer", str(tmp_path / "glass.csv"), "--column", "formula", "--target", "target",
            "--zoo", metal_zoo, "--cv", "3", "--learner", "rf", "--task", "classification",
            "--scheduler", client.scheduler.address, "-o", str(report_path)]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(report_path.read_text())
    assert report["task"] == "classification" and report["learner"] == "rf"
    assert 0 < report["log_loss"] < 1 and 0.5 < report["roc_auc"] <= 1
    assert (tmp_path / report["plots"]["cv"]).name == "report_roc_cv.png"
    assert (tmp_path / "report_roc_cv.png").stat().st_size > 10_000


def test_retrain_keeps_the_task_and_compares_log_loss(metal_zoo):
    from xenonscale.workflows.retraining import retrain

    with Zoo(metal_zoo) as zoo:
        zoo.promote("metal@1")  # the production version the retrained one is compared with
        (row,) = retrain(zoo=zoo, only=["metal"], max_age_days=1e-9, max_epochs=2, progress=False)
        card = zoo.show(row["new"])
    assert {"log_loss_new", "log_loss_current"} <= set(row) and "mae_new" not in row, row
    assert card["task"] == "classification" and card["training"]["loss"] == "bce"
