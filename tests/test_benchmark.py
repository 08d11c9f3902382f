"""The Matbench v0.1 protocol (``xenonscale benchmark``), on the mirror's Matbench files.

Independent references: scikit-learn's ``KFold``/``StratifiedKFold`` for the
folds; Matbench's own Dummy figures (the training-fold mean, per fold, to four
decimals) for the row order; a hand-written scikit-learn pipeline (Magpie
statistics → mean imputation → random forest, same folds and seed) for the
``rf-magpie`` scores; ``roc_auc_score`` on the written predictions. Leakage is
checked on the rows each fold recorded it used.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.metrics import mean_absolute_error, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline

from xenonscale import datasets
from xenonscale.cli.main import cli
from xenonscale.errors import ConfigError
from xenonscale.featurize.compositions import ElementStatistics
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.backbones import PropertyModel
from xenonscale.workflows.leaderboard import LEADERBOARD
from xenonscale.workflows.matbench import TASKS, get_task, outer_folds, run_benchmark
from xenonscale.zoo import Zoo, featurizer_fields

pytestmark = pytest.mark.usefixtures("data_dir", "one_torch_thread")

STEELS = "matbench_steels_yield"
#: Matbench v0.1 Dummy (training-fold mean), per fold: (MAE, max error); docs_src/Full
#: Benchmark Data/matbench_v0.1_dummy.md of materialsproject/matbench@936176d.
DUMMY = {
    "matbench_expt_gap": [(1.0965, 7.0119), (1.1922, 8.3754), (1.1527, 10.7354),
                          (1.1445, 9.5190), (1.1317, 9.0085)],
    STEELS: [(241.4591, 941.0643), (219.3770, 1064.2831), (225.7932, 1084.8760),
             (241.2035, 1088.0568), (220.8898, 983.3424)],
    "matbench_mp_gap": [(1.3199, 7.1079), (1.3224, 8.1096), (1.3252, 7.6322),
                        (1.3335, 7.4334), (1.3348, 8.5092)],
}  # fmt: skip


def _target(name: str) -> np.ndarray:
    return datasets.load(name, download=False)["target"].to_numpy(np.float64)


def _check_no_leak(output, splits) -> pd.DataFrame:
    """Every fold's recorded train/validation rows lie in its outer training fold only."""
    rows = pd.read_parquet(output / "fold_rows.parquet")
    for fold, part in rows.groupby("fold"):
        train, test = splits[fold]
        used = {role: set(part.loc[part["role"] == role, "row"]) for role in ("train", "val")}
        recorded_test = part.loc[part["role"] == "test", "row"].to_numpy()
        np.testing.assert_array_equal(np.sort(recorded_test), test)
        assert not (used["train"] | used["val"]) & set(test.tolist())
        assert (used["train"] | used["val"]) <= set(train.tolist())
        assert not used["train"] & used["val"]
    return rows


def test_outer_folds_are_matbench_kfold_and_the_files_are_in_matbench_order():
    for name, task in TASKS.items():
        if name in ("matbench_mp_e_form",):
            continue  # 132,752 rows: the same code path as mp_gap, checked below
        y = _target(name)
        if task.kind == "regression":
            reference = KFold(5, shuffle=True, random_state=18012019).split(np.arange(len(y)))
        else:
            splitter = StratifiedKFold(5, shuffle=True, random_state=18012019)
            reference = splitter.split(np.zeros(len(y)), y)
        for (train, test), (ref_train, ref_test) in zip(
            outer_folds(y, task.kind), reference, strict=True
        ):
            np.testing.assert_array_equal(train, ref_train)
            np.testing.assert_array_equal(test, ref_test)
    for name, published in DUMMY.items():  # Matbench's Dummy per fold: the rows' order is theirs
        y = _target(name)
        for (train, test), (mae, worst) in zip(
            outer_folds(y, "regression"), published, strict=True
        ):
            error = np.abs(y[test] - y[train].mean())
            assert (round(error.mean(), 4), round(error.max(), 4)) == (mae, worst)


def test_rf_magpie_equals_a_hand_written_sklearn_pipeline(tmp_path):
    result = run_benchmark(STEELS, model="rf-magpie", workers=1, output=tmp_path, n_estimators=50,
                           progress=False)  # fmt: skip
    frame = datasets.load(STEELS, download=False)
    y = frame["target"].to_numpy(np.float64)
    x = ElementStatistics().featurize_batch(frame["formula"].tolist()).values
    expected = []
    for train, test in KFold(5, shuffle=True, random_state=18012019).split(x):
        forest = make_pipeline(
            SimpleImputer(strategy="mean", keep_empty_features=True),
            RandomForestRegressor(n_estimators=50, random_state=0),
        ).fit(x[train], y[train])
        expected.append(mean_absolute_error(y[test], forest.predict(x[test])))
    got = [f["scores"]["mae"] for f in result.record["folds"]]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert result.record["partial"] is False and result.failed == []
    assert result.mean == pytest.approx(np.mean(expected)) and result.std == pytest.approx(
        np.std(expected)
    )
    rows = _check_no_leak(tmp_path, outer_folds(y, "regression"))
    assert set(rows["role"]) == {"train", "test"}  # the forest uses the whole training fold
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    assert len(predictions) == len(y) and set(predictions["row"]) == set(range(len(y)))
    assert "RF-SCM/Magpie" in result.table() and "103.5125" in result.table()


def test_mlp_through_the_cli_writes_the_record(tmp_path):
    out = tmp_path / "steels"
    argv = ["benchmark", STEELS, "--outer-folds", "1,3", "--max-epochs", "2", "--workers", "1",
            "--no-progress", "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 0, result.output
    assert "TPOT-Mat" in result.output and "PARTIAL: folds 1,3" in result.output
    record = json.loads((out / "benchmark.json").read_text())
    assert record["partial"] is True and record["folds_run"] == [1, 3]
    assert record["protocol"]["outer_split"] == "KFold"
    assert record["seeds"] == {"outer_split": 18012019, "model": 0}
    assert record["model"]["name"] == "mlp" and record["model"]["max_epochs"] == 2
    for fold in record["folds"]:
        counts = fold["counts"]
        assert fold["status"] == "ok" and fold["details"]["epochs"] <= 2
        assert counts["train"] + counts["val"] == counts["outer_train"] and counts["val"] > 0
    splits = outer_folds(_target(STEELS), "regression")
    _check_no_leak(out, splits)
    predictions = pd.read_parquet(out / "predictions.parquet")
    for fold in record["folds"]:
        mine = predictions[predictions["fold"] == fold["fold"]]
        mae = mean_absolute_error(mine["target"], mine["prediction"])
        assert fold["scores"]["mae"] == pytest.approx(mae)


def test_a_failing_fold_is_reported_not_dropped(tmp_path):
    result = run_benchmark(STEELS, model="mlp", folds=[0], workers=1, output=tmp_path,
                           train_options={"loss": "nope"}, progress=False)  # fmt: skip
    assert result.failed == [0] and result.record["failed_folds"] == [0]
    assert "loss" in result.record["folds"][0]["error"]
    assert "FAILED" in result.table()


def test_classification_scores_roc_auc_on_stratified_folds_beside_the_forest(tmp_path):
    name = "matbench_expt_is_metal"
    result = run_benchmark(name, model="mlp", folds=[0], max_epochs=2, workers=1, baseline=True,
                           n_estimators=20, output=tmp_path, progress=False)  # fmt: skip
    record = result.record
    assert record["protocol"]["outer_split"] == "StratifiedKFold" and record["metric"] == "rocauc"
    y = _target(name)
    test = next(iter(StratifiedKFold(5, shuffle=True, random_state=18012019).split(y, y)))[1]
    predictions = pd.read_parquet(tmp_path / "predictions.parquet")
    np.testing.assert_array_equal(predictions["row"], test)
    assert ((predictions["prediction"] >= 0) & (predictions["prediction"] <= 1)).all()
    auc = roc_auc_score(predictions["target"].astype(int), predictions["prediction"])
    assert record["folds"][0]["scores"]["rocauc"] == pytest.approx(auc)
    baseline = record["baseline"]["folds"][0]["scores"]["rocauc"]
    forest = pd.read_parquet(tmp_path / "baseline" / "predictions.parquet")
    np.testing.assert_array_equal(forest["row"], test)  # the same fold
    assert baseline == pytest.approx(roc_auc_score(forest["target"], forest["prediction"]))
    assert "same-fold RF" in result.table() and "Darwin" in result.table()


def test_attention_backbone_runs_a_fold(tmp_path):
    from xenonscale.models.networks import BACKBONES

    if "attention" not in BACKBONES:
        pytest.skip("the attention backbone is not registered in this xenonscale")
    result = run_benchmark(STEELS, model="attention", folds=[4], max_epochs=1, workers=1,
                           train_options={"backbone_options": {"d_model": 16, "heads": 2,
                                                               "layers": 1}},
                           output=tmp_path, progress=False)  # fmt: skip
    assert result.failed == [], result.record["folds"]
    assert np.isfinite(result.mean)
    _check_no_leak(tmp_path, outer_folds(_target(STEELS), "regression"))


def test_transfer_from_a_source_trained_on_the_task_is_refused(tmp_path):
    zoo = Zoo(tmp_path / "zoo")
    model = PropertyModel.from_config({"in_features": 4, "out_features": 1, "hidden": [4]})
    source = str(datasets.fetch(STEELS, download=False))
    card = {"featurizer": None, "targets": ["target"],
            "training_data": {"source": {"url": source, "kind": "composition"}}}  # fmt: skip
    zoo.register("steels", model, card)
    zoo.close()
    argv = ["benchmark", STEELS, "--transfer-from", "steels@1", "--zoo", str(tmp_path / "zoo"),
            "-o", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "--transfer-from steels@1" in line and f"trained on {STEELS} itself" in line


def test_a_bad_task_is_one_line_naming_the_tasks(tmp_path):
    result = CliRunner().invoke(cli, ["benchmark", "matbench_nope", "-o", str(tmp_path)])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert all(name in line for name in TASKS)
    with pytest.raises(ConfigError, match="matbench_expt_gap, matbench_expt_is_metal"):
        get_task("matbench_phonons")
    assert get_task("dataset:matbench_glass").kind == "classification"
    assert set(LEADERBOARD) == set(TASKS)


def test_transfer_selects_sources_inside_the_training_fold(tmp_path):
    """A (toy, untrained) source trained on another dataset: ranked by an inner CV of the fold."""
    fields = featurizer_fields(FeaturizerSpec.parse("composition", "classic", elements="xenonpy58"))
    model = PropertyModel.from_config(
        {"in_features": len(fields["feature_labels"]), "out_features": 1, "hidden": [8]}
    )
    card = {**fields, "targets": ["target"],
            "training_data": {"source": {"url": "/mirror/matbench_mp_gap.csv"}}}  # fmt: skip
    with Zoo(tmp_path / "zoo") as zoo:
        zoo.register("gap-toy", model, card)
    result = run_benchmark(STEELS, transfer_from=["gap-toy@1"], zoo=str(tmp_path / "zoo"),
                           folds=[2], workers=1, output=tmp_path / "out", progress=False,
                           transfer_options={"learner": "ridge"})  # fmt: skip
    (fold,) = result.record["folds"]
    assert fold["status"] == "ok", fold
    assert [r["name"] for r in fold["details"]["ranking"]] == ["gap-toy@1"]
    assert fold["details"]["method"] in ("baseline", "frozen+ridge:gap-toy@1")
    assert result.record["model"]["transfer_from"] == ["gap-toy@1"]
    _check_no_leak(tmp_path / "out", outer_folds(_target(STEELS), "regression"))


def test_transfer_on_a_classification_task_ranks_by_log_loss(tmp_path):
    """Shotgun transfer on a 0/1 task: sources ranked by inner-CV log-loss, probabilities out."""
    name = "matbench_expt_is_metal"
    zoo = _toy_sources(tmp_path)
    result = run_benchmark(name, transfer_from=["gap-toy@1"], zoo=zoo, folds=[0], workers=1,
                           output=tmp_path / "out", progress=False)  # fmt: skip
    (fold,) = result.record["folds"]
    assert fold["status"] == "ok", fold
    details = fold["details"]
    assert details["inner_cv_metric"] == "log_loss"
    assert np.isfinite(details["inner_cv_score"]) and details["inner_cv_score"] > 0
    assert [set(r) for r in details["ranking"]] == [{"name", "cv_log_loss"}]
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    assert ((predictions["prediction"] >= 0) & (predictions["prediction"] <= 1)).all()
    auc = roc_auc_score(predictions["target"].astype(int), predictions["prediction"])
    assert fold["scores"]["rocauc"] == pytest.approx(auc)


def _toy_sources(tmp_path, names=("gap-toy",)) -> str:
    """Untrained toy MLP sources whose cards say they learned Matbench mp_gap."""
    fields = featurizer_fields(FeaturizerSpec.parse("composition", "classic", elements="xenonpy58"))
    card = {**fields, "targets": ["target"],
            "training_data": {"source": {"url": "/mirror/matbench_mp_gap.csv"}}}  # fmt: skip
    with Zoo(tmp_path / "zoo") as zoo:
        for seed, name in enumerate(names):
            torch.manual_seed(seed)
            model = PropertyModel.from_config(
                {"in_features": len(fields["feature_labels"]), "out_features": 1, "hidden": [8]}
            )
            zoo.register(name, model, card)
    return str(tmp_path / "zoo")


def test_fine_tune_trains_each_source_on_the_training_fold_and_keeps_the_best(tmp_path):
    """Per fold: every source fine-tuned on the training fold alone, the best by validation
    score predicts the test fold: the same predictions as fine_tune called by hand."""
    from xenonscale.transfer.finetune import fine_tune

    zoo = _toy_sources(tmp_path, ("toy-a", "toy-b"))
    result = run_benchmark(STEELS, transfer_from=["toy-a@1", "toy-b@1"], zoo=zoo, folds=[1],
                           fine_tune="last", max_epochs=4, workers=1, output=tmp_path / "out",
                           progress=False)  # fmt: skip
    (fold,) = result.record["folds"]
    assert fold["status"] == "ok", fold
    ranking = fold["details"]["ranking"]
    assert sorted(r["name"] for r in ranking) == ["toy-a@1", "toy-b@1"]
    assert ranking[0]["val_score"] <= ranking[1]["val_score"]
    assert fold["details"]["method"] == f"finetune[last]:{ranking[0]['name']}"
    assert result.record["model"]["label"].startswith("fine-tune[last] from toy-a@1")
    assert result.record["model"]["fine_tune"]["freeze"] == "last"
    rows = _check_no_leak(tmp_path / "out", outer_folds(_target(STEELS), "regression"))
    assert (rows["role"] == "val").sum() > 0  # early stopping used part of the training fold
    # the independent reference: fine_tune by hand on the same training rows, same seed
    frame = datasets.load(STEELS, download=False)
    train, test = outer_folds(_target(STEELS), "regression")[1]
    formulas = frame["formula"].astype(str).tolist()
    # the fold trained with threads_per_fold torch threads: float sums (and so a few epochs'
    # trajectories) depend on it, so the reference uses as many
    torch.set_num_threads(result.record["model"]["threads_per_fold"])
    with Zoo(zoo) as opened:
        tuned = {
            ref: fine_tune(opened.load(ref), [formulas[i] for i in train], _target(STEELS)[train],
                           freeze="last", max_epochs=4, patience=20, lr=5e-4, seed=0)
            for ref in ("toy-a@1", "toy-b@1")
        }  # fmt: skip
    best = min(tuned, key=lambda ref: tuned[ref].best_score_)
    assert best == ranking[0]["name"]
    expected = tuned[best].predict([formulas[i] for i in test])
    np.testing.assert_allclose(result.predictions["prediction"], expected, rtol=1e-5)


def test_fine_tune_needs_sources_and_no_learner(tmp_path):
    argv = ["benchmark", STEELS, "--fine-tune", "none", "-o", str(tmp_path)]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "--fine-tune none needs --transfer-from" in line
    result = CliRunner().invoke(cli, [*argv, "--transfer-from", "x@1", "--learner", "gbm"])
    assert result.exit_code == 2
    assert "drop --learner" in result.output.strip().splitlines()[-1]
    with pytest.raises(ConfigError, match="fine_tune='some': use one of"):
        run_benchmark(STEELS, transfer_from=["x@1"], fine_tune="some", output=tmp_path)


def test_folds_as_dask_tasks_equal_folds_one_after_another(tmp_path):
    """The same seeded forests whether the folds run as tasks of a client or in this process."""
    from distributed import Client

    options = {"model": "rf-magpie", "folds": [0, 4], "n_estimators": 10, "progress": False}
    alone = run_benchmark(STEELS, workers=1, output=tmp_path / "alone", **options)
    with Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        tasks = run_benchmark(STEELS, client=c, store=str(tmp_path / "alone" / "store-magpie.zarr"),
                              output=tmp_path / "tasks", **options)  # fmt: skip
    # equal up to the last bits of a float sum (the trees' votes add in another order)
    for fold_tasks, fold_alone in zip(tasks.record["folds"], alone.record["folds"], strict=True):
        assert fold_tasks["scores"] == pytest.approx(fold_alone["scores"], rel=1e-12)
    assert tasks.record["model"]["threads_per_fold"] == 1
