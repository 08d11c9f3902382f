"""Hyperparameter search with Optuna, trials in parallel on the Dask workers.

Every trial is one Dask task that loads the shared study (SQLite for one
machine, PostgreSQL for a cluster), asks for one set of parameters (TPE),
trains with Lightning under a pruning callback (median or Hyperband) and
reports the best value of the monitored validation metric
(:func:`~xenonscale.models.tasks.monitor_metric`: ``val_mae`` for a
regression, ``val_logloss`` for a classification of a 0/1 target; the study
minimizes either). The task is resolved once, before any trial (given, or
inferred from a 0/1 target), and recorded in the study's user attributes with
the metric and direction: a study cannot mix tasks. ``trials`` tasks are
submitted, so the study gets exactly that many new trials, whatever the
number of workers. A worker process keeps the store's DataModule between its
trials.

Examples
--------
>>> from xenonscale.models.tuning import tune
>>> result = tune("oqmd.zarr", "target", trials=40, storage="sqlite:///tune.db",
...               study="oqmd-hf", max_epochs=30)  # doctest: +SKIP
>>> result.best_params  # doctest: +SKIP
{'depth': 3, 'width': 512, ...}
"""

from __future__ import annotations

import functools
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from xenonscale.cluster import close_client, get_client
from xenonscale.errors import ConfigError
from xenonscale.models.data import StoreDataModule
from xenonscale.models.graphs import GRAPH_BACKBONES
from xenonscale.models.tasks import monitor_metric, resolve_task, store_targets
from xenonscale.models.training import BACKBONE_INPUTS, train_model

__all__ = [
    "PRUNERS",
    "TuneResult",
    "hidden_from_params",
    "network_from_params",
    "suggest",
    "tune",
]

PRUNERS = ("median", "hyperband", "none")


def suggest(trial, backbone: str = "mlp") -> dict:
    """The search space over architecture and optimizer of ``backbone`` (mlp, attention, graphs)."""
    if backbone in GRAPH_BACKBONES:
        return {
            "width": trial.suggest_categorical("width", [32, 64, 128]),
            "layers": trial.suggest_int("layers", 2, 5),
            "head_width": trial.suggest_int("head_width", 32, 256, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "lr": trial.suggest_float("lr", 3e-4, 5e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        }
    if backbone == "attention":
        return {
            "d_model": trial.suggest_categorical("d_model", [32, 64, 128]),
            "heads": trial.suggest_categorical("heads", [2, 4]),
            "layers": trial.suggest_int("layers", 1, 4),
            "head_width": trial.suggest_int("head_width", 64, 512, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.3),
            "lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
        }
    return {
        "depth": trial.suggest_int("depth", 1, 4),
        "width": trial.suggest_int("width", 64, 1024, log=True),
        "taper": trial.suggest_float("taper", 0.25, 1.0),
        "dropout": trial.suggest_float("dropout", 0.0, 0.4),
        "activation": trial.suggest_categorical("activation", ["relu", "silu", "gelu"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-7, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [128, 256, 512]),
    }


def hidden_from_params(params: dict) -> list[int]:
    """Layer widths: ``width`` first, each next one ``taper`` times the last (≥ 16)."""
    widths, width = [], float(params["width"])
    for _ in range(int(params["depth"])):
        widths.append(max(16, round(width)))
        width *= float(params["taper"])
    return widths


def network_from_params(params: dict, backbone: str = "mlp", elements: str | None = None) -> dict:
    """The train_model arguments of a trial's network (``hidden``... or ``backbone_options``).

    >>> network_from_params({"depth": 2, "width": 64, "taper": 0.5, "dropout": 0.1,
    ...                      "activation": "relu"})
    {'dropout': 0.1, 'hidden': [64, 32], 'activation': 'relu'}
    >>> network_from_params({"d_model": 32, "heads": 2, "layers": 1, "head_width": 64,
    ...                      "dropout": 0.0}, "attention")["backbone_options"]["head_hidden"]
    [64, 32]
    """
    if backbone in GRAPH_BACKBONES:
        options = {"width": int(params["width"]), "layers": int(params["layers"]),
                   "head_hidden": [int(params["head_width"])]}  # fmt: skip
        if elements:
            options["elements"] = elements
        return {"dropout": params["dropout"], "backbone": backbone, "backbone_options": options}
    if backbone == "attention":
        width = int(params["head_width"])
        options = {
            "d_model": int(params["d_model"]),
            "heads": int(params["heads"]),
            "layers": int(params["layers"]),
            "head_hidden": [width, max(16, width // 2)],
        }
        if elements:
            options["elements"] = elements
        return {"dropout": params["dropout"], "backbone": "attention",
                "backbone_options": options}  # fmt: skip
    return {"dropout": params["dropout"], "hidden": hidden_from_params(params),
            "activation": params["activation"]}  # fmt: skip


def _storage(url: str):
    import optuna

    if url.startswith("sqlite"):  # wait for the file lock instead of failing at once
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    return optuna.storages.RDBStorage(url)


def _pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2)
    return optuna.pruners.NopPruner()


@functools.lru_cache(maxsize=2)
def _data(store: str, targets: tuple[str, ...], options: str, seed: int):
    """One DataModule per worker process and store (setup once, reused by trials)."""

    data = StoreDataModule(store, list(targets), seed=seed, **json.loads(options))
    data.setup("fit")
    return data


def _run_trial(
    index: int, store, targets, options, storage, study_name, pruner, seed, epochs, loss,
    task="regression", backbone="mlp", elements=None,
) -> dict:  # fmt: skip
    """Dask task: one trial of the shared study; returns its number, state and value."""
    import optuna
    import torch
    from optuna_integration.pytorch_lightning import PyTorchLightningPruningCallback

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(
        study_name=study_name,
        storage=_storage(storage),
        sampler=optuna.samplers.TPESampler(seed=seed + index, n_startup_trials=4),
        pruner=_pruner(pruner),
    )
    data = _data(store, tuple(targets), options, seed)
    monitor = monitor_metric(task)

    def objective(trial) -> float:
        params = suggest(trial, backbone)
        data.batch_size = params["batch_size"]
        with tempfile.TemporaryDirectory() as folder:
            result = train_model(
                store,
                list(targets),
                data=data,
                output=folder,
                progress=False,
                max_epochs=epochs,
                patience=max(3, epochs // 4),
                seed=seed,
                **network_from_params(params, backbone, elements),
                lr=params["lr"],
                weight_decay=params["weight_decay"],
                loss=loss,
                task=task,
                accelerator="cpu",
                callbacks=[PyTorchLightningPruningCallback(trial, monitor=monitor)],
            )
        return float(result.card["training"][f"best_{monitor}"])

    finished = []
    study.optimize(
        objective,
        n_trials=1,
        catch=(ValueError, RuntimeError),
        callbacks=[lambda _study, trial: finished.append(trial)],
    )
    trial = finished[0]
    return {"index": index, "number": trial.number, "state": trial.state.name, "value": trial.value}


@dataclass
class TuneResult:
    """The study's outcome: best trial, counts by state, plots and the folder they are in.

    To train the best parameters again and register the model, see
    :func:`xenonscale.workflows.registration.register_best_trial`.
    """

    study: str
    storage: str
    trials: int
    states: dict[str, int]
    best_value: float
    best_params: dict
    files: dict[str, Path] = field(default_factory=dict)
    output: Path = Path(".")
    task: str = "regression"
    metric: str = "val_mae"
    direction: str = "minimize"
    backbone: str = "mlp"
    elements: str | None = None


def tune(
    store: str,
    targets: str | list[str] = "target",
    *,
    trials: int,
    storage: str,
    study: str,
    workers: int | None = None,
    client=None,
    scheduler: str | None = None,
    max_epochs: int = 30,
    pruner: str = "median",
    loss: str = "mae",
    task: str | None = None,
    seed: int = 0,
    data_options: dict | None = None,
    storage_options: dict | None = None,
    output: str | Path | None = None,
    progress: bool = True,
    backbone: str = "mlp",
    elements: str | None = None,
) -> TuneResult:
    """Run ``trials`` trials of study ``study`` on the cluster (see the module docstring).

    Plots (optimization history, parameter importances) and ``best.json`` go
    to ``output`` (default ``./tune/STUDY``). ``storage_options`` are the
    store's (``s3://``), passed to every trial's DataModule. ``task`` as in
    :func:`~xenonscale.models.training.train_model` (``None``: inferred).
    ``backbone`` picks the search space (:func:`suggest`): ``mlp`` or
    ``attention`` (``elements``: its embedding table, default mat2vec).
    """
    import optuna
    from distributed import as_completed
    from tqdm.auto import tqdm

    if trials < 1:
        raise ConfigError(f"--trials {trials!r}: ask for at least one trial")
    if pruner not in PRUNERS:
        raise ConfigError(f"--pruner {pruner!r}: use one of {', '.join(PRUNERS)}")
    if backbone not in BACKBONE_INPUTS:
        raise ConfigError(f"--model {backbone!r}: use one of {', '.join(BACKBONE_INPUTS)}")
    targets = [targets] if isinstance(targets, str) else list(targets)
    task = resolve_task(task, store_targets(store, targets, storage_options), targets)
    metric, direction = monitor_metric(task), "minimize"
    created = optuna.create_study(
        study_name=study, storage=_storage(storage), direction=direction, load_if_exists=True
    )
    recorded = created.user_attrs.get("metric")
    if created.user_attrs.get("backbone", backbone) != backbone:
        raise ConfigError(
            f"--study {study!r} searches {created.user_attrs['backbone']} networks; this run "
            f"asks for --model {backbone}: use a new --study name"
        )
    if recorded not in (None, metric):
        raise ConfigError(
            f"--study {study!r} minimizes {recorded} ({created.user_attrs.get('task')}); this "
            f"{task} minimizes {metric}: use a new --study name"
        )
    for key, value in (("task", task), ("metric", metric), ("direction", direction),
                       ("backbone", backbone)):  # fmt: skip
        created.set_user_attr(key, value)
    before = len(created.trials)
    trial_options = dict(data_options or {}, inputs=BACKBONE_INPUTS[backbone])
    if task == "classification":  # outlier rules are for values, not class labels
        trial_options["outliers"] = "keep"
    if storage_options:
        trial_options["storage_options"] = dict(storage_options)
    options = json.dumps(trial_options, sort_keys=True)
    own = client is None
    client = client or get_client(scheduler, workers=workers, quiet=not progress)
    try:
        futures = [
            client.submit(
                _run_trial,
                before + i,
                store,
                targets,
                options,
                storage,
                study,
                pruner,
                seed,
                max_epochs,
                loss,
                task,
                backbone,
                elements,
                pure=False,
            )
            for i in range(trials)
        ]
        with tqdm(total=trials, desc="tune", unit="trial", disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        outcomes = client.gather(futures)
    finally:
        if own:
            close_client(client)
    final = optuna.load_study(study_name=study, storage=_storage(storage))
    states: dict[str, int] = {}
    for trial in final.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    done = [t for t in final.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise ConfigError(f"no trial of study {study!r} completed: {outcomes}")
    best = final.best_trial
    folder = Path(output or Path("tune") / study)
    folder.mkdir(parents=True, exist_ok=True)
    result = TuneResult(
        study,
        storage,
        len(final.trials),
        states,
        float(best.value),
        dict(best.params),
        files=_plots(final, folder),
        output=folder,
        task=task,
        metric=metric,
        direction=direction,
        backbone=backbone,
        elements=elements,
    )
    record = {"study": study, "task": task, "metric": metric, "direction": direction,
              "backbone": backbone, "elements": elements}  # fmt: skip
    record |= {"value": best.value, "params": best.params, "states": states}
    (folder / "best.json").write_text(json.dumps(record, indent=1))
    return result


def _plots(study, folder: Path) -> dict[str, Path]:
    """Optimization history and parameter importances as PNGs (matplotlib backend)."""
    import warnings

    from optuna.visualization import matplotlib as ovm

    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
        for name, plot in (
            ("history", ovm.plot_optimization_history),
            ("importances", ovm.plot_param_importances),
        ):
            try:
                axes = plot(study)
            except (ValueError, RuntimeError):  # e.g. importances need ≥ 2 completed trials
                continue
            path = folder / f"{name}.png"
            axes.figure.savefig(path, dpi=110, bbox_inches="tight")
            import matplotlib.pyplot as plt

            plt.close(axes.figure)
            files[path.name] = path
    return files
