"""The Matbench v0.1 protocol for the composition tasks: folds, fold runner, scores, record.

:func:`run_benchmark` runs one task the way Matbench v0.1 defines it
(Dunn et al., npj Comput. Mater. 6, 138 (2020)):

* **Outer folds**: ``KFold(n_splits=5, shuffle=True, random_state=18012019)``
  over the dataset's rows in file order for regression tasks and
  ``StratifiedKFold`` with the same arguments (stratified on the 0/1 target)
  for classification tasks, as Matbench's own split script does
  (``scripts/mvb01_generate_validation.py`` of ``materialsproject/matbench``).
  The mirror files are the Matbench datasets in their order: the Dummy
  entry's per-fold MAE and max error of every regression task are reproduced
  to four decimals on these folds (``tests/test_benchmark.py``).
* **Inside a fold** every choice is made on the training fold alone: the
  early-stopping validation split (10 % of the training fold, seeded), input
  and target scaling, outlier bounds, transfer-source selection (an inner
  5-fold CV over the training fold). The test fold is predicted once, at the
  end, by the fold's final model.
* **Scores**: regression MAE (the ranking metric), RMSE and max error;
  classification ROC-AUC on the predicted probabilities (the ranking metric;
  Matbench's scorer takes probabilities when they are given), and balanced
  accuracy, accuracy and F1 of the labels ``p >= 0.5``. Every test row is
  scored: a row the featurizer cannot read gets the training fold's mean
  (class-1 frequency) and is counted (``fallback``). Mean and standard
  deviation (ddof 0, as Matbench) over the folds that ran.

Models (``model=``):

``mlp``
    :func:`~xenonscale.models.training.train_model` on the store's pooled
    features (XenonPy ``classic`` on ``xenonpy58``).
``attention``
    The same with ``backbone="attention"`` (each row's composition, read
    from the same store), once that backbone is registered.
``rf-magpie``
    Matbench's reference baseline: a scikit-learn random forest (500 trees,
    seeded; regressor or classifier) on matminer's Magpie statistics
    (:class:`~xenonscale.featurize.compositions.ElementStatistics`), missing
    values imputed with the training fold's means; trained on the whole
    training fold, as Matbench's RF-SCM/Magpie.
``transfer_from=REFS``
    Zoo models trained on *other* datasets (a card whose ``training_data``
    names the task's own file is refused): per fold,
    :func:`~xenonscale.transfer.selection.shotgun` ranks the sources by an
    inner CV on the training fold only and refits the best on the training
    fold; no store is built (the sources featurize the formulas).
``transfer_from=REFS, fine_tune=FREEZE``
    Transfer by fine-tuning instead (:func:`~xenonscale.transfer.finetune.fine_tune`):
    per fold, every source network is trained further on the training fold
    (a new output layer; ``FREEZE`` = ``none`` trains every layer, ``last``
    the last block and the head, ``all`` only the head; learning rate
    :data:`FINE_TUNE_LR`, early stopping on a seeded 10 % of the training
    fold), the source with the best validation score on that split predicts
    the test fold. Folds run as parallel Dask tasks like the networks'.

The dataset is featurized once into a FeatureStore (the engine, on Dask);
each fold trains on its rows of that store
(``StoreDataModule(candidate_rows=...)``). Folds run as parallel Dask tasks
when there are workers (each fold one task; torch and BLAS threads = cores /
concurrent folds), one after another otherwise. A fold that fails is
reported in the record and the table, never dropped silently.

Output (``output=`` folder): ``benchmark.json`` (task, protocol, seeds,
per-fold scores and counts, model options, versions, times, the published
figures beside ours), ``predictions.parquet`` (fold, row, formula, target,
prediction, fallback) and ``fold_rows.parquet`` (fold, row, role: the
training, inner-validation and test rows each fold used).

Examples
--------
>>> from xenonscale.workflows.matbench import TASKS, outer_folds
>>> TASKS["matbench_glass"].kind, TASKS["matbench_expt_gap"].metric
('classification', 'mae')
>>> [len(test) for _, test in outer_folds([0.0] * 12, "regression")]
[3, 3, 2, 2, 2]

A random forest on Magpie features, two of the five folds of the 312 steels
(~10 s):

>>> import tempfile
>>> from xenonscale.workflows.matbench import run_benchmark
>>> result = run_benchmark(  # doctest: +REQUIRES_DATA
...     "matbench_steels_yield", model="rf-magpie", folds=[0, 1], workers=1,
...     output=tempfile.mkdtemp(), progress=False, n_estimators=50,
... )
>>> result.record["partial"], result.record["folds_run"], result.failed  # doctest: +REQUIRES_DATA
(True, [0, 1], [])
>>> len(result.predictions)  # doctest: +REQUIRES_DATA
126
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from xenonscale import datasets
from xenonscale.cluster import close_client, get_client
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError, StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.backbones import predict_array
from xenonscale.models.data import read_rows
from xenonscale.models.networks import BACKBONES
from xenonscale.models.training import train_model
from xenonscale.store.layout import StoreLocation
from xenonscale.transfer import finetune
from xenonscale.transfer.selection import shotgun, zoo_location
from xenonscale.versions import installed_versions
from xenonscale.workflows.leaderboard import LEADERBOARD, ROLES, SOURCE
from xenonscale.zoo import Zoo

__all__ = [
    "MATBENCH_SEED",
    "MODELS",
    "N_FOLDS",
    "TASKS",
    "BenchmarkResult",
    "FoldJob",
    "MatbenchTask",
    "check_sources",
    "fine_tune_fold",
    "fold_scores",
    "get_task",
    "outer_folds",
    "run_benchmark",
    "run_fold",
    "store_spec",
]

#: Fine-tuning's step size: half the networks' default, so pretrained weights move gently.
FINE_TUNE_LR = 5e-4
#: Epochs without a better validation score before fine-tuning stops.
FINE_TUNE_PATIENCE = 20

#: Matbench v0.1's outer split: ``random_state`` of its (Stratified)KFold, and its folds.
MATBENCH_SEED = 18012019
N_FOLDS = 5
#: What can be benchmarked (``transfer_from`` is the fourth way, beside these).
MODELS = ("mlp", "attention", "rf-magpie")
#: Share of the training fold held out for early stopping (networks).
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class MatbenchTask:
    """A Matbench v0.1 composition task: our dataset name, Matbench's, kind, metric, unit."""

    name: str
    matbench_name: str
    kind: str
    unit: str

    @property
    def metric(self) -> str:
        """The ranking metric: ``mae`` (regression) or ``rocauc`` (classification)."""
        return "mae" if self.kind == "regression" else "rocauc"


#: Every composition task of Matbench v0.1 in the data mirror.
TASKS: dict[str, MatbenchTask] = {
    task.name: task
    for task in (
        MatbenchTask("matbench_expt_gap", "matbench_expt_gap", "regression", "eV"),
        MatbenchTask("matbench_expt_is_metal", "matbench_expt_is_metal", "classification", ""),
        MatbenchTask("matbench_glass", "matbench_glass", "classification", ""),
        MatbenchTask("matbench_steels_yield", "matbench_steels", "regression", "MPa"),
        MatbenchTask("matbench_mp_e_form", "matbench_mp_e_form", "regression", "eV/atom"),
        MatbenchTask("matbench_mp_gap", "matbench_mp_gap", "regression", "eV"),
    )
}


def get_task(name: str) -> MatbenchTask:
    """The task called ``name`` (``dataset:`` prefix allowed); a one-line error names the tasks."""
    key = str(name).removeprefix("dataset:")
    if key not in TASKS:
        raise ConfigError(
            f"task {name!r} is not a Matbench v0.1 composition task: use one of {', '.join(TASKS)}"
        )
    return TASKS[key]


def outer_folds(y: Sequence[float], kind: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Matbench v0.1's ``(train, test)`` row positions of the 5 folds, in fold order.

    ``KFold(5, shuffle=True, random_state=18012019)`` for a regression,
    ``StratifiedKFold`` with the same arguments on the labels for a classification.

    >>> train, test = outer_folds([0, 1] * 5, "classification")[0]
    >>> len(train), len(test)
    (8, 2)
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y, dtype=np.float64)
    arguments = {"n_splits": N_FOLDS, "shuffle": True, "random_state": MATBENCH_SEED}
    splitter = StratifiedKFold(**arguments) if kind == "classification" else KFold(**arguments)
    return [
        (np.asarray(a, np.int64), np.asarray(b, np.int64))
        for a, b in splitter.split(np.zeros((len(y), 1)), y)
    ]


def store_spec(model: str) -> FeaturizerSpec:
    """The featurizer of the benchmark's store: Magpie for ``rf-magpie``, else XenonPy classic.

    >>> store_spec("rf-magpie").names, store_spec("mlp").names
    (('magpie',), ('classic',))
    """
    if model == "rf-magpie":
        return FeaturizerSpec.parse("composition", "magpie")
    return FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")


def fold_scores(kind: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Matbench's scores of one fold (scikit-learn's metrics, as Matbench computes them).

    >>> fold_scores("regression", [1.0, 2.0], [1.5, 2.0])["mae"]
    0.25
    >>> s = fold_scores("classification", [0, 1, 1, 0], [0.2, 0.7, 0.4, 0.1])
    >>> s["rocauc"], s["balanced_accuracy"]
    (1.0, 0.75)
    """
    from sklearn import metrics

    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if kind == "regression":
        return {
            "mae": float(metrics.mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(metrics.mean_squared_error(y_true, y_pred))),
            "max_error": float(metrics.max_error(y_true, y_pred)),
        }
    labels = (y_pred >= 0.5).astype(int)
    truth = y_true.astype(int)
    both = len(np.unique(truth)) == 2
    return {
        "rocauc": float(metrics.roc_auc_score(truth, y_pred)) if both else float("nan"),
        "balanced_accuracy": float(metrics.balanced_accuracy_score(truth, labels)),
        "accuracy": float(metrics.accuracy_score(truth, labels)),
        "f1": float(metrics.f1_score(truth, labels, zero_division=0)),
    }


# ----------------------------------------------------------------------------- the fold runner
@dataclass(frozen=True)
class FoldJob:
    """Everything one fold needs, small and picklable (a Dask task's argument)."""

    task: str
    kind: str
    fold: int
    train: np.ndarray
    test: np.ndarray
    model: str
    store: str
    output: str
    seed: int = 0
    threads: int = 1
    max_epochs: int = 100
    n_estimators: int = 500
    train_options: dict = field(default_factory=dict)


def run_fold(job: FoldJob) -> dict:
    """Train on ``job.train`` rows of the store, predict ``job.test`` once; runs on a worker.

    Returns the test predictions (``prediction``, ``fallback`` mask), the rows
    used (``rows``: train and inner validation), counts, seconds and details.
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(job.threads):
        out = _forest_fold(job) if job.model == "rf-magpie" else _network_fold(job)
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def _open(store: str):
    import zarr

    return zarr.open_group(StoreLocation(store).zarr_store(), mode="r")


def _fallback_value(y: np.ndarray, train: np.ndarray) -> float:
    """The training fold's mean target (for a 0/1 target: the class-1 frequency)."""
    values = y[train]
    return float(values[np.isfinite(values)].mean())


def _forest_fold(job: FoldJob) -> dict:
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    group = _open(job.store)
    ok = np.asarray(group["ok"][:], bool)
    y = np.asarray(group["target"][:], np.float64)
    train = job.train[ok[job.train] & np.isfinite(y[job.train])]
    x = read_rows(group["features"], train).astype(np.float64)
    means = np.nan_to_num(np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0)) if len(x) else 0
    x = np.where(np.isfinite(x), x, means)
    forest_class = RandomForestClassifier if job.kind == "classification" else RandomForestRegressor
    forest = forest_class(
        n_estimators=job.n_estimators, random_state=job.seed, n_jobs=job.threads
    ).fit(x, y[train])
    readable = job.test[ok[job.test]]
    prediction = np.full(len(job.test), _fallback_value(y, job.train))
    if len(readable):
        xt = read_rows(group["features"], readable).astype(np.float64)
        xt = np.where(np.isfinite(xt), xt, means)
        if job.kind == "classification":
            column = list(forest.classes_).index(1.0) if 1.0 in forest.classes_ else None
            p = forest.predict_proba(xt)[:, column] if column is not None else np.zeros(len(xt))
        else:
            p = forest.predict(xt)
        prediction[ok[job.test]] = p
    return {
        "fold": job.fold,
        "prediction": prediction,
        "fallback": ~ok[job.test],
        "rows": {"train": train, "val": np.zeros(0, np.int64)},
        "details": {"n_estimators": job.n_estimators, "features": int(group["feature"].shape[0])},
    }


def _network_fold(job: FoldJob) -> dict:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, job.threads))  # in this process: restored afterwards
    try:
        return _train_and_predict(job)
    finally:
        torch.set_num_threads(threads)


def _train_and_predict(job: FoldJob) -> dict:
    options = dict(job.train_options)
    data_options = {
        "split": "random",
        "val_fraction": VAL_FRACTION,
        **options.pop("data_options", {}),
        "candidate_rows": job.train,
    }
    kwargs = {
        "name": f"{job.task}-fold{job.fold}",
        "output": Path(job.output) / f"fold_{job.fold}",
        "max_epochs": job.max_epochs,
        "seed": job.seed,
        "progress": False,
        "accelerator": options.pop("accelerator", "auto"),
        "data_options": data_options,
        **options,
    }
    parameters = inspect.signature(train_model).parameters
    if job.model != "mlp":
        kwargs["backbone"] = job.model
    if "task" in parameters:
        kwargs["task"] = job.kind
    elif job.kind == "classification":
        raise ConfigError(
            "this xenonscale's train_model has no classification (task=): "
            "benchmark a classification task with --model rf-magpie"
        )
    result = train_model(job.store, "target", **kwargs)
    group = _open(job.store)
    ok = np.asarray(group["ok"][:], bool)
    y = np.asarray(group["target"][:], np.float64)
    inputs = getattr(result.data, "inputs", "features")
    readable_mask = ok[job.test].copy()
    if inputs == "composition":  # a formula with more elements than slots has no composition
        readable_mask &= np.asarray(group["composition_element"][:, 0])[job.test] > 0
    readable = job.test[readable_mask]
    prediction = np.full(len(job.test), _fallback_value(y, result.data.rows["train"]))
    if len(readable):
        if inputs == "features":
            x = read_rows(group["features"], readable)
        else:
            # lazy: read_inputs (composition inputs) is only needed by the attention backbone
            from xenonscale.models.data import read_inputs

            x = read_inputs(group, readable, inputs)
        prediction[readable_mask] = np.asarray(predict_array(result.model, x))[:, 0]
    training = result.card.get("training", {})
    return {
        "fold": job.fold,
        "prediction": prediction,
        "fallback": ~readable_mask,
        "rows": {"train": result.data.rows["train"], "val": result.data.rows["val"]},
        "details": {
            "epochs": training.get("epochs"),
            "best_epoch": training.get("best_epoch"),
            "data_counts": result.data.counts,
            "training": training,
            "network": result.card.get("model"),
        },
    }


# ----------------------------------------------------------------------------- transfer
def _strings(value) -> list[str]:
    """Every string inside a card's ``training_data`` (JSON strings opened too)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, str):
        if value.startswith("{"):
            try:
                return [value, *_strings(json.loads(value))]
            except ValueError:
                pass
        return [value]
    return []


def check_sources(task: str, cards: dict[str, dict]) -> None:
    """Refuse a source whose card says it was trained on ``task``'s own dataset (a leak).

    >>> card = {"training_data": {"source": {"url": "/data/matbench_glass.csv"}}}
    >>> check_sources("matbench_glass", {"glass@1": card})
    Traceback (most recent call last):
    ...
    xenonscale.errors.ConfigError: --transfer-from glass@1: ...
    """
    own = Path(datasets.info(task).path).name
    names = {own, own + ".gz", f"dataset:{task}", task}
    for ref, card in cards.items():
        training = card.get("training_data") or {}
        hits = [s for s in _strings(training) if s in names or Path(s).name in names]
        if hits:
            raise ConfigError(
                f"--transfer-from {ref}: its card says it was trained on {task} itself "
                f"({hits[0]!r}), so it has seen every test fold; use sources trained on "
                "other datasets"
            )


def _transfer_fold(job: FoldJob, formulas, y, zoo, refs, options, client) -> dict:
    train_inputs = [formulas[i] for i in job.train]
    kwargs = dict(options)
    if job.kind == "classification":
        if "task" not in inspect.signature(shotgun).parameters:
            raise ConfigError(
                "transfer to a classification task needs shotgun(task=...), not in this "
                "xenonscale: use --model rf-magpie or a network"
            )
        kwargs["task"] = "classification"
        kwargs.setdefault("learner", "logistic")  # the regression default (ridge) cannot classify
    selected = shotgun(
        train_inputs, y[job.train], zoo=zoo, sources=list(refs), cv=N_FOLDS, seed=job.seed,
        client=client, **kwargs,
    )  # fmt: skip
    predicted = np.asarray(selected.predictor.predict([formulas[i] for i in job.test]), float)
    rows = {"train": job.train, "val": np.zeros(0, np.int64)}
    return _fold_result(job, y, predicted, rows) | {
        "details": {
            "method": selected.method,
            "inner_cv_metric": selected.metric,
            "inner_cv_score": selected.score,
            "inner_baseline_cv_score": selected.baseline_score,
            "ranking": [
                {"name": r["name"], f"cv_{selected.metric}": r[f"cv_{selected.metric}"]}
                for r in selected.ranking
            ],
        },
    }


def _fold_result(job: FoldJob, y, predicted: np.ndarray, rows: dict) -> dict:
    """A transfer fold's outcome: non-finite predictions replaced by the training-fold fallback."""
    fallback = ~np.isfinite(predicted)
    predicted[fallback] = _fallback_value(y, job.train)
    return {"fold": job.fold, "prediction": predicted, "fallback": fallback, "rows": rows}


def fine_tune_fold(job: FoldJob, formulas, y, zoo: tuple[str, str], refs, freeze: str) -> dict:
    """Fine-tune every source on ``job.train``, predict ``job.test`` with the best; a task.

    The best source is the one with the lowest validation score (MAE, or
    log-loss for a 0/1 task) on the fine-tuning's own split of the training
    fold; the test fold is predicted once, by that model.
    """
    import torch

    started, threads = time.perf_counter(), torch.get_num_threads()
    torch.set_num_threads(max(1, job.threads))  # in this process: restored afterwards
    try:
        tuned, ranking = {}, []
        with Zoo(zoo[0], artifacts=zoo[1]) as opened:
            sources = {ref: opened.load(ref) for ref in refs}
        train_inputs, test_inputs = (
            [formulas[i] for i in job.train],
            [formulas[i] for i in job.test],
        )
        for ref, source in sources.items():
            tuned[ref] = finetune.fine_tune(
                source, train_inputs, y[job.train], freeze=freeze, max_epochs=job.max_epochs,
                patience=FINE_TUNE_PATIENCE, lr=FINE_TUNE_LR, seed=job.seed, task=job.kind,
            )  # fmt: skip
            ranking.append(
                {
                    "name": ref,
                    "val_score": tuned[ref].best_score_,
                    "epochs": len(tuned[ref].history_),
                }
            )
        ranking.sort(key=lambda r: r["val_score"])
        best = tuned[ranking[0]["name"]]
        predicted = np.asarray(best.predict(test_inputs), float).reshape(len(test_inputs))
    finally:
        torch.set_num_threads(threads)
    rows = {"train": job.train[best.rows_["train"]], "val": job.train[best.rows_["val"]]}
    return _fold_result(job, y, predicted, rows) | {
        "seconds": round(time.perf_counter() - started, 2),
        "details": {
            "method": best.name,
            "val_metric": "log_loss" if job.kind == "classification" else "mae",
            "ranking": ranking,
        },
    }


# ----------------------------------------------------------------------------- the result
@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` measured: the record (``benchmark.json``), predictions, files."""

    task: MatbenchTask
    model: str
    record: dict
    predictions: pd.DataFrame
    output: Path

    @property
    def failed(self) -> list[int]:
        """Folds that raised (their error is in the record)."""
        return [f["fold"] for f in self.record["folds"] if f["status"] != "ok"]

    @property
    def mean(self) -> float:
        """Mean of the ranking metric over the folds that ran."""
        return self.record["summary"][self.task.metric]["mean"]

    @property
    def std(self) -> float:
        """Standard deviation (ddof 0) of the ranking metric over the folds that ran."""
        return self.record["summary"][self.task.metric]["std"]

    def table(self) -> str:
        """Per-fold and mean ± std scores, then the published figures (text)."""
        return format_table(self.record)


def _summary(folds: list[dict], kind: str) -> dict:
    done = [f["scores"] for f in folds if f["status"] == "ok"]
    names = list(done[0]) if done else []
    out = {}
    for name in names:
        values = np.array([s[name] for s in done], dtype=np.float64)
        out[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                     "folds": len(values)}  # fmt: skip
    return out


def format_table(record: dict) -> str:
    """The text table of a record (per fold, mean ± std, published figures with sources)."""
    task, kind, metric = record["task"], record["kind"], record["metric"]
    unit = f" ({record['unit']})" if record.get("unit") else ""
    names = (
        ["mae", "rmse", "max_error"]
        if kind == "regression"
        else ["rocauc", "balanced_accuracy", "accuracy", "f1"]
    )
    partial = ""
    if record["partial"]:
        partial = " — PARTIAL: folds " + ",".join(map(str, record["folds_run"]))
    lines = [
        f"{task} — {record['model']['label']} — Matbench v0.1 "
        f"{record['protocol']['outer_split']}(5, shuffle=True, random_state={MATBENCH_SEED})"
        + partial,
        f"{'fold':>6} " + " ".join(f"{n:>21}" for n in names) + f" {'test':>7} {'fallback':>8}"
        f" {'seconds':>8}",
    ]
    for f in record["folds"]:
        if f["status"] != "ok":
            lines.append(f"{f['fold']:>6} FAILED: {f['error']}")
            continue
        scores = " ".join(f"{f['scores'][n]:>21.4f}" for n in names)
        c = f["counts"]
        lines.append(f"{f['fold']:>6} {scores} {c['test']:>7} {c['test_fallback']:>8}"
                     f" {f['seconds']:>8.1f}")  # fmt: skip
    summary = record["summary"]
    if summary:
        cells = " ".join(
            f"{summary[n]['mean']:.4f} ± {summary[n]['std']:.4f}".rjust(21) for n in names
        )
        lines.append(f"{'mean':>6} {cells}")
    lines.append(
        f"published {metric}{unit} (mean ± std over 5 folds; {record['leaderboard_source']}):"
    )
    for role, entry in record["leaderboard"].items():
        note = f"  [{entry['note']}]" if entry.get("note") else ""
        lines.append(f"  {role:<17} {entry['algorithm']:<30} {entry['mean']:>9.4f} ± "
                     f"{entry['std']:.4f}{note}")  # fmt: skip
    if summary:
        ours = summary[metric]
        lines.append(f"  {'this run':<17} {record['model']['label']:<30} {ours['mean']:>9.4f} ± "
                     f"{ours['std']:.4f}")  # fmt: skip
    reference = record.get("baseline", {}).get("summary", {}).get(metric)
    if reference:
        per_fold = ", ".join(
            f"{f['fold']}: {f['scores'][metric]:.4f}"
            for f in record["baseline"]["folds"]
            if f["status"] == "ok"
        )
        lines.append(
            f"  {'same-fold RF':<17} {'rf-magpie (this run)':<30} "
            f"{reference['mean']:>9.4f} ± {reference['std']:.4f}  [{per_fold}]"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the benchmark
def _label(model: str, transfer_from: Sequence[str] | None, fine_tune: str | None = None) -> str:
    if transfer_from and fine_tune:
        return f"fine-tune[{fine_tune}] from {','.join(transfer_from)}"
    return f"transfer from {','.join(transfer_from)}" if transfer_from else model


def _check_fine_tune(fine_tune: str | None, transfer_from) -> None:
    if fine_tune is None:
        return
    if fine_tune not in finetune.FREEZE_MODES:
        modes = ", ".join(finetune.FREEZE_MODES)
        raise ConfigError(f"fine_tune={fine_tune!r}: use one of {modes}")
    if not transfer_from:
        raise ConfigError(f"fine_tune={fine_tune!r} needs transfer_from: the sources to fine-tune")


def _check_arguments(model, folds, max_epochs, n_estimators, transfer_from) -> list[int]:
    if model not in MODELS:
        raise ConfigError(f"model={model!r}: use one of {', '.join(MODELS)}")
    if model == "attention" and "attention" not in BACKBONES:
        raise ConfigError("model='attention': this xenonscale has no attention backbone yet")
    chosen = list(range(N_FOLDS)) if folds is None else sorted({int(f) for f in folds})
    bad = [f for f in chosen if not 0 <= f < N_FOLDS]
    if bad or not chosen:
        raise ConfigError(f"folds={folds!r}: give fold numbers 0-{N_FOLDS - 1}, e.g. 0,1")
    if max_epochs < 1 or n_estimators < 1:
        raise ConfigError(f"max_epochs={max_epochs!r}, n_estimators={n_estimators!r}: use ≥ 1")
    if transfer_from is not None and not list(transfer_from):
        raise ConfigError("transfer_from=[]: name at least one zoo model, e.g. mp-gap@1")
    return chosen


def _featurize(task: MatbenchTask, store: str, spec, client, progress: bool, formulas) -> None:
    """The whole dataset into one store (resumed if there), rows checked against the file."""
    path = datasets.fetch(task.name, download=False)
    featurize_to_store(str(path), store, spec, column="formula", client=client, progress=progress)
    stored = [str(v) for v in _open(store)["input"][:].tolist()]
    if stored != list(formulas):
        raise StoreError(
            f"{store!r} does not hold {task.name}'s rows in file order: remove it and rerun"
        )


def _clients(scheduler, workers, client, n_folds: int):
    """(client for featurizing, client for folds or None, threads per fold, own)."""
    from distributed import Client

    cores = os.cpu_count() or 1
    if client is not None:
        info = client.scheduler_info().get("workers", {})
        threads = min((w.get("nthreads", 1) for w in info.values()), default=1)
        return client, client, max(1, threads), False
    if scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS"):
        own = get_client(scheduler, quiet=True)
        info = own.scheduler_info().get("workers", {})
        threads = min((w.get("nthreads", 1) for w in info.values()), default=1)
        return own, own, max(1, threads), True
    concurrent = min(n_folds, workers if workers is not None else cores)
    if concurrent > 1:
        own = get_client(workers=concurrent, quiet=True)
        return own, own, max(1, cores // concurrent), True
    own = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    return own, None, cores, True


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def run_benchmark(
    task: str,
    *,
    model: str = "mlp",
    transfer_from: Sequence[str] | None = None,
    zoo=None,
    folds: Sequence[int] | None = None,
    max_epochs: int = 100,
    seed: int = 0,
    n_estimators: int = 500,
    train_options: dict | None = None,
    transfer_options: dict | None = None,
    baseline: bool = False,
    fine_tune: str | None = None,
    output: str | os.PathLike | None = None,
    store: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    progress: bool = True,
) -> BenchmarkResult:
    """Run Matbench v0.1 on ``task`` (module docstring) and write the record; return it.

    Parameters
    ----------
    task
        A key of :data:`TASKS` (``dataset:`` prefix allowed).
    model
        ``mlp``, ``attention`` or ``rf-magpie`` (ignored with ``transfer_from``).
    transfer_from, zoo, transfer_options
        Zoo references of the sources, the zoo (location or
        :class:`~xenonscale.zoo.Zoo`), and keyword arguments of
        :func:`~xenonscale.transfer.selection.shotgun` (``learner``,
        ``features``, ``top_k``, ...).
    folds
        A subset of the folds 0-4 for a quick run (the record says ``partial``).
    max_epochs, seed, n_estimators, train_options
        Epochs of a network; the seed of the models and the inner split (the
        outer split is always Matbench's); trees of the forest; more keyword
        arguments of :func:`~xenonscale.models.training.train_model`.
    fine_tune
        With ``transfer_from``: fine-tune the sources (``none``, ``last`` or
        ``all``: what is frozen) instead of shotgun selection (module docstring).
    baseline
        Also run ``rf-magpie`` on the same folds in the same run (its record
        in ``OUTPUT/baseline``; its scores in this record and table).
    output, store
        The folder written (default ``benchmarks/TASK-MODEL``); the store
        (default ``OUTPUT/store-<featurizer>.zarr``, reused when there).
    workers, scheduler, client
        Parallel folds on Dask: a client, a scheduler address, or an embedded
        cluster of ``workers`` processes (default: one per fold up to the
        cores); one worker runs the folds one after another in this process.
    """
    info = get_task(task)
    chosen = _check_arguments(model, folds, max_epochs, n_estimators, transfer_from)
    _check_fine_tune(fine_tune, transfer_from)
    started, stamp = time.perf_counter(), datetime.now(UTC).isoformat(timespec="seconds")
    frame = datasets.load(info.name, download=False)
    formulas = frame["formula"].astype(str).tolist()
    y = pd.to_numeric(frame["target"], errors="coerce").to_numpy(np.float64)
    label = _label(model, transfer_from, fine_tune)
    output = Path(output or Path("benchmarks") / f"{info.name}-{label.split()[0]}")
    output.mkdir(parents=True, exist_ok=True)
    splits = outer_folds(y, info.kind)
    spec = None if transfer_from else store_spec(model)
    cards = {}
    if transfer_from:
        opened = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
        cards = {ref: opened.show(ref) for ref in transfer_from}
        check_sources(info.name, cards)
    if spec is not None and store is None:
        store = str(output / f"store-{'-'.join(spec.names)}.zarr")
    feature_client, fold_client, threads, own = _clients(scheduler, workers, client, len(chosen))
    results: dict[int, dict] = {}
    errors: dict[int, str] = {}
    try:
        if spec is not None:
            _say(progress, f"featurizing {info.name} ({len(y)} rows) into {store}")
            _featurize(info, store, spec, feature_client, progress, formulas)
        jobs = [
            FoldJob(info.name, info.kind, k, splits[k][0], splits[k][1], model, store or "",
                    str(output / "models"), seed, threads, max_epochs, n_estimators,
                    dict(train_options or {}))
            for k in chosen
        ]  # fmt: skip
        if transfer_from and fine_tune:
            runner = functools.partial(
                fine_tune_fold, formulas=formulas, y=y, zoo=zoo_location(zoo),
                refs=list(transfer_from), freeze=fine_tune,
            )  # fmt: skip
            if fold_client is None:
                for job in jobs:
                    _run_local(job, results, errors, progress, runner)
            else:
                _run_dask(jobs, fold_client, results, errors, progress, runner)
        elif transfer_from:
            for job in jobs:
                _run_local(
                    job,
                    results,
                    errors,
                    progress,
                    lambda j: _transfer_fold(
                        j, formulas, y, zoo, transfer_from, transfer_options or {}, feature_client
                    ),
                )
        elif fold_client is None:
            for job in jobs:
                _run_local(job, results, errors, progress, run_fold)
        else:
            _run_dask(jobs, fold_client, results, errors, progress)
    finally:
        if own:
            close_client(feature_client)
    record, predictions, rows = _record(
        info, label, model, transfer_from, chosen, splits, results, errors, y, formulas,
        dict(seed=seed, max_epochs=max_epochs, n_estimators=n_estimators,
             train_options=train_options or {}, transfer_options=transfer_options or {},
             fine_tune=fine_tune and {"freeze": fine_tune, "lr": FINE_TUNE_LR,
                                      "patience": FINE_TUNE_PATIENCE},
             featurizer=asdict(spec) if spec is not None else None, store=store,
             sources={ref: (c.get("training_data") or {}).get("source") for ref, c in
                      cards.items()}),
        threads, stamp, time.perf_counter() - started,
    )  # fmt: skip
    if baseline and record["model"]["name"] != "rf-magpie":
        _say(progress, "baseline: rf-magpie on the same folds")
        reference = run_benchmark(
            info.name, model="rf-magpie", folds=chosen, seed=seed, n_estimators=n_estimators,
            output=output / "baseline", workers=workers, scheduler=scheduler, client=client,
            progress=progress,
        )  # fmt: skip
        record["baseline"] = {
            "model": "rf-magpie",
            "record": "baseline/benchmark.json",
            "summary": reference.record["summary"],
            "folds": [
                {"fold": f["fold"], "status": f["status"], "scores": f.get("scores")}
                for f in reference.record["folds"]
            ],
        }
    predictions.to_parquet(output / "predictions.parquet", index=False)
    rows.to_parquet(output / "fold_rows.parquet", index=False)
    (output / "benchmark.json").write_text(json.dumps(record, indent=1, default=_json))
    return BenchmarkResult(info, label, record, predictions, output)


def _json(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _run_local(job, results, errors, progress, runner) -> None:
    _say(progress, f"fold {job.fold}: training on {len(job.train)} rows")
    started = time.perf_counter()
    try:
        results[job.fold] = runner(job)
        results[job.fold].setdefault("seconds", round(time.perf_counter() - started, 2))
        _say(progress, f"fold {job.fold}: done ({results[job.fold].get('seconds', 0):.0f} s)")
    except Exception as exc:  # a failed fold is reported in the record, not dropped
        errors[job.fold] = f"{type(exc).__name__}: {exc}"
        _say(progress, f"fold {job.fold}: FAILED: {errors[job.fold]}")


def _run_dask(jobs, client, results, errors, progress, runner=run_fold) -> None:
    from distributed import as_completed

    call = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            runner, job, key=f"benchmark-{job.task}-fold{job.fold}-{call}", pure=False
        ): job.fold
        for job in jobs
    }
    _say(progress, f"folds {sorted(futures.values())} submitted to Dask")
    for future in as_completed(futures):
        fold = futures[future]
        try:
            results[fold] = future.result()
            _say(progress, f"fold {fold}: done ({results[fold]['seconds']:.0f} s)")
        except Exception as exc:  # a failed fold is reported in the record, not dropped
            errors[fold] = f"{type(exc).__name__}: {exc}"
            _say(progress, f"fold {fold}: FAILED: {errors[fold]}")


def _record(info, label, model, transfer_from, chosen, splits, results, errors, y, formulas,
            options, threads, stamp, seconds):  # fmt: skip
    folds, frames, row_frames = [], [], []
    for k in chosen:
        train, test = splits[k]
        entry = {"fold": k, "status": "ok" if k in results else "failed"}
        if k in errors:
            entry["error"] = errors[k]
        if k in results:
            out = results[k]
            prediction, fallback = np.asarray(out["prediction"], float), np.asarray(out["fallback"])
            entry["scores"] = fold_scores(info.kind, y[test], prediction)
            entry["counts"] = {
                "outer_train": len(train),
                "train": len(out["rows"]["train"]),
                "val": len(out["rows"]["val"]),
                "test": len(test),
                "test_fallback": int(fallback.sum()),
            }
            entry["seconds"] = out.get("seconds")
            entry["details"] = out.get("details", {})
            frames.append(pd.DataFrame({
                "fold": k, "row": test, "formula": [formulas[i] for i in test],
                "target": y[test], "prediction": prediction, "fallback": fallback,
            }))  # fmt: skip
            for role in ("train", "val"):
                used = np.asarray(out["rows"][role], np.int64)
                row_frames.append(pd.DataFrame({"fold": k, "row": used, "role": role}))
        row_frames.append(pd.DataFrame({"fold": k, "row": test, "role": "test"}))
        folds.append(entry)
    record = {
        "task": info.name,
        "matbench_task": info.matbench_name,
        "kind": info.kind,
        "metric": info.metric,
        "unit": info.unit,
        "protocol": {
            "benchmark": "Matbench v0.1",
            "outer_split": "StratifiedKFold" if info.kind == "classification" else "KFold",
            "n_splits": N_FOLDS,
            "shuffle": True,
            "random_state": MATBENCH_SEED,
            "rows": len(y),
            "order": "the dataset file's row order (Matbench's)",
            "inside_fold": "early stopping, scaling, outliers and source selection on the "
            "training fold only; test fold predicted once",
            "std": "numpy std, ddof 0 (as Matbench)",
        },
        "folds_run": chosen,
        "partial": len(chosen) < N_FOLDS,
        "seeds": {"outer_split": MATBENCH_SEED, "model": options["seed"]},
        "model": {
            "label": label,
            "name": None if transfer_from else model,
            "transfer_from": list(transfer_from or []),
            "threads_per_fold": threads,
            **options,
        },
        "folds": folds,
        "failed_folds": sorted(errors),
        "summary": _summary(folds, info.kind),
        "leaderboard": {
            role: asdict(LEADERBOARD[info.name][role])
            for role in ROLES
            if role in LEADERBOARD.get(info.name, {})
        },
        "leaderboard_source": SOURCE.format(task=info.matbench_name),
        "versions": installed_versions(
            "xenonscale", "numpy", "scikit-learn", "torch", "lightning", "dask", "zarr"
        ),
        "started": stamp,
        "seconds": round(seconds, 1),
    }
    columns = ["fold", "row", "formula", "target", "prediction", "fallback"]
    predictions = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    rows = pd.concat(row_frames, ignore_index=True)
    return record, predictions, rows
