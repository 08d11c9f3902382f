"""Train a property model from a FeatureStore with Lightning and save it; nothing more.

:func:`train_model` is the training step of ``xenonscale train``: a
:class:`~xenonscale.models.data.StoreDataModule`, an MLP
:class:`~xenonscale.models.backbones.PropertyModel`, a Lightning ``Trainer``
(any accelerator, devices and strategy: DDP on GPUs in production,
``ddp_spawn`` on CPU in tests) with early stopping. The best weights are kept
as safetensors by :class:`BestWeights` (Lightning's own checkpoints are
pickles: not used), the per-epoch history as JSON by :class:`History`.
Afterwards the best model is evaluated on the validation (and test) split
and its card written beside the weights. The result carries what a caller
needs next: the history and the predictions for plots
(:func:`xenonscale.viz.training.training_figures`), the model and card for a
zoo (:func:`xenonscale.workflows.registration.train_and_register` does both).

Examples
--------
Three epochs of a small network on a store of 64 iron oxides (target: the
iron fraction), featurized on an in-process Dask client:

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.models.training import train_model
>>> folder = Path(tempfile.mkdtemp())
>>> rows = [f"Fe{a}O{b},{a / (a + b):.3f}" for a in range(1, 9) for b in range(1, 9)]
>>> _ = (folder / "oxides.csv").write_text("formula,target\\n" + "\\n".join(rows))
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(
...         str(folder / "oxides.csv"), str(folder / "oxides.zarr"),
...         FeaturizerSpec.parse("composition", "classic"),
...         column="formula", client=client, progress=False,
...     )
>>> result = train_model(
...     str(folder / "oxides.zarr"), "target", name="fe-o", output=folder / "fe-o",
...     hidden=(16,), max_epochs=3, batch_size=16, accelerator="cpu", progress=False,
... )
>>> sorted(path.name for path in result.output.iterdir())
['card.json', 'history.json', 'weights.safetensors']
>>> len(result.history), sorted(result.predictions), result.ref
(3, ['val'], None)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.featurize.structures.graph import CrystalGraph
from xenonscale.models.attention import SLOTS, attention_config
from xenonscale.models.backbones import PortableModel, mlp_config, predict_array
from xenonscale.models.data import StoreDataModule
from xenonscale.models.graphs import GRAPH_BACKBONES, graph_config
from xenonscale.models.metrics import classification_metrics, regression_metrics
from xenonscale.models.module import PropertyModule, property_module
from xenonscale.models.networks import build_model
from xenonscale.models.quiet import quiet_training
from xenonscale.models.tasks import monitor_metric, resolve_task, store_targets
from xenonscale.store.layout import store_fingerprint
from xenonscale.versions import installed_versions

__all__ = [
    "BestWeights",
    "CpuThreads",
    "History",
    "TrainResult",
    "predict_array",
    "store_fingerprint",
    "train_model",
]

WEIGHTS = "weights.safetensors"
#: What each backbone reads from the store (:data:`xenonscale.models.data.INPUTS`).
BACKBONE_INPUTS = {"mlp": "features", "attention": "composition"}
BACKBONE_INPUTS.update(dict.fromkeys(GRAPH_BACKBONES, "graph"))


def graph_layout(store_featurizer: dict | None, store: str = "the store") -> dict:
    """``atoms``, ``neighbors``, ``cutoff`` of a store built by the ``graph`` featurizer alone.

    >>> graph_layout({"kind": "structure", "names": ["graph:cutoff=6"]})
    {'cutoff': 6.0, 'neighbors': 12, 'atoms': 64}
    """
    names = list((store_featurizer or {}).get("names") or [])
    if (store_featurizer or {}).get("kind") != "structure" or len(names) != 1:
        raise ConfigError(
            f"{store} was featurized with {names or 'nothing'}: a graph model reads a store "
            "featurized with --kind structure --featurizers graph (alone)"
        )
    featurizer = FeaturizerSpec.parse("structure", names).build()
    if not isinstance(featurizer, CrystalGraph):
        raise ConfigError(
            f"{store} holds {names[0]!r} features: a graph model reads a store featurized "
            "with --kind structure --featurizers graph"
        )
    return featurizer.options


def slots_featurizer(store_featurizer: dict | None) -> dict:
    """The card featurizer of a composition model: ``slots``, with the store's record limits.

    >>> slots_featurizer({"kind": "composition", "names": ["classic"], "elements": "magpie"})
    {'kind': 'composition', 'names': ['slots'], 'elements': None, 'on_error': 'record'}
    """
    spec = {"kind": "composition", "names": ["slots"], "elements": None, "on_error": "record"}
    if store_featurizer and "limits" in store_featurizer:
        spec["limits"] = store_featurizer["limits"]
    return spec


class BestWeights(L.Callback):
    """Save the model's weights (safetensors) whenever ``monitor`` improves (rank 0 only)."""

    def __init__(self, path: str | Path, monitor: str = "val_mae"):
        self.path = Path(path)
        self.monitor = monitor
        self.best = float("inf")

    def on_validation_end(self, trainer: L.Trainer, module: PropertyModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or not float(value) < self.best:
            return
        self.best = float(value)
        if trainer.is_global_zero:
            state = {k: v.detach().cpu().contiguous() for k, v in module.model.state_dict().items()}
            save_file(state, str(self.path))


class History(L.Callback):
    """Append each epoch's logged metrics to a JSON list (rank 0 only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch}
        row |= {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.rows.append(row)
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(self.rows, indent=1))


class CpuThreads(L.Callback):
    """Share the cores among CPU processes (DDP on CPU): torch threads = cores // processes.

    Without it each of N processes starts one thread per core, N× oversubscribed.
    """

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if trainer.world_size > 1 and module.device.type == "cpu":
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.world_size))


@dataclass
class TrainResult:
    """What :func:`train_model` produced: the model, its card, metrics, history and files.

    ``predictions`` maps a split (``val``, ``test``) to ``(truth, predicted)``
    arrays of shape ``(rows, targets)``; ``files`` holds the files written for
    the model (plots added by the caller); ``ref`` is set once it is registered.
    """

    model: PortableModel
    card: dict
    metrics: dict
    output: Path
    files: dict[str, Path] = field(default_factory=dict)
    ref: str | None = None
    data: StoreDataModule | None = None
    name: str = "model"
    history: list[dict] = field(default_factory=list)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def train_model(
    store: str,
    targets: str | list[str] = "target",
    *,
    name: str | None = None,
    output: str | Path | None = None,
    units: dict[str, str] | None = None,
    task: str | None = None,
    hidden: list[int] | tuple[int, ...] = (512, 256, 128),
    dropout: float = 0.1,
    batch_norm: bool = True,
    activation: str = "relu",
    loss: str = "mae",
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    scheduler: str = "plateau",
    batch_size: int = 256,
    max_epochs: int = 100,
    patience: int = 12,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    seed: int = 0,
    data: StoreDataModule | None = None,
    data_options: dict | None = None,
    callbacks: list | None = None,
    progress: bool = True,
    storage_options: dict | None = None,
    backbone: str = "mlp",
    backbone_options: dict | None = None,
    max_minutes: float | None = None,
) -> TrainResult:
    """Train, evaluate and save a model (module docstring); register it elsewhere.

    ``backbone`` is ``"mlp"`` (on the store's pooled features; ``hidden``,
    ``batch_norm``, ``activation`` and ``dropout`` shape it) or ``"attention"``
    (on each row's composition, :mod:`xenonscale.models.attention`; its
    options, e.g. ``{"elements": "mat2vec", "d_model": 128}``, go in
    ``backbone_options``, ``dropout`` applies too) or ``"cgcnn"`` / ``"megnet"``
    (on a store of the ``graph`` structure featurizer,
    :mod:`xenonscale.models.graphs`; ``{"width": 64, "layers": 3}`` ...).
    ``max_minutes`` stops training after that wall time (the best epoch so
    far is kept), whatever ``max_epochs`` says.
    ``task`` is ``"regression"``, ``"classification"`` (0/1 targets; BCE,
    probabilities out, outliers kept; :mod:`xenonscale.models.module`) or
    ``None``: a classifier when every training target holds only 0 and 1
    (said on stderr), else a regression.
    ``data_options`` go to :class:`StoreDataModule` (split, fractions,
    outliers, ...). ``output`` defaults to ``./models/NAME``; ``name`` names
    that folder and the plots' titles. Returns a :class:`TrainResult`; to
    register it in a zoo use
    :func:`xenonscale.workflows.registration.train_and_register`.
    """
    if strategy == "ddp" and _under_pytest():
        raise ConfigError(
            "strategy='ddp' re-executes the running script; under pytest use 'ddp_spawn'"
        )
    if backbone not in BACKBONE_INPUTS:
        raise ConfigError(f"--model {backbone!r}: use one of {', '.join(BACKBONE_INPUTS)}")
    L.seed_everything(seed, workers=True, verbose=False)
    task = _resolve_task(task, store, targets, data, storage_options)
    if task == "classification" and data is None:  # outlier rules are for values, not labels
        data_options = {**(data_options or {}), "outliers": "keep"}
    data = data or StoreDataModule(
        store,
        targets,
        batch_size=batch_size,
        seed=seed,
        storage_options=storage_options,
        inputs=BACKBONE_INPUTS[backbone],
        **(data_options or {}),
    )
    data.setup("fit")
    target_names = data.targets
    if backbone == "attention":
        config = attention_config(
            2 * SLOTS, len(target_names), **({"dropout": dropout} | (backbone_options or {}))
        )
    elif backbone in GRAPH_BACKBONES:
        layout = graph_layout(data.store_attrs.get("featurizer"), repr(data.store))
        config = graph_config(backbone, layout, len(target_names),
                              **({"dropout": dropout} | (backbone_options or {})))  # fmt: skip
    else:
        config = mlp_config(
            data.n_features,
            len(target_names),
            hidden=list(hidden),
            dropout=dropout,
            batch_norm=batch_norm,
            activation=activation,
            **(backbone_options or {}),
        )
    config["task"] = task
    model = build_model(config).fit_scaling(
        data.feature_mean, data.feature_std, data.target_mean, data.target_std
    )
    output = Path(output or Path("models") / (name or "model"))
    output.mkdir(parents=True, exist_ok=True)
    weights, history = output / WEIGHTS, output / "history.json"
    weights.unlink(missing_ok=True)
    module = property_module(
        model, targets=target_names, loss=loss, lr=lr, weight_decay=weight_decay,
        scheduler=scheduler,
    )  # fmt: skip
    with quiet_training():  # Lightning's banners and tips, harmless warnings
        trainer = L.Trainer(
            max_epochs=max_epochs,
            max_time=None if max_minutes is None else {"seconds": int(max_minutes * 60)},
            accelerator=accelerator,
            devices=devices,
            strategy=strategy,
            callbacks=[
                L.pytorch.callbacks.EarlyStopping(module.monitor, patience=patience, mode="min"),
                BestWeights(weights, module.monitor),
                History(history),
                CpuThreads(),
                *(callbacks or []),
            ],
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            deterministic=False,
            default_root_dir=str(output),
        )
        started = time.perf_counter()
        trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - started
    if not weights.exists():
        raise ConfigError(f"training produced no validation score: is the validation split empty? "
                          f"(counts {data.counts})")  # fmt: skip
    model.load_state_dict(load_file(str(weights)))
    rows = json.loads(history.read_text()) if history.exists() else []
    metrics, predictions = _evaluate(model, data, target_names, task)
    card = _card(data, model.config, target_names, units, metrics, rows, seconds, locals_=dict(
        loss=module.hparams.loss, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
        batch_size=batch_size,
        max_epochs=max_epochs, max_minutes=max_minutes, patience=patience,
        accelerator=accelerator, devices=devices,
        strategy=strategy, seed=seed, dropout=dropout,
    ))  # fmt: skip
    (output / "card.json").write_text(json.dumps(card, indent=1, default=str))
    return TrainResult(
        model=model, card=card, metrics=metrics, output=output, data=data,
        name=name or "model", history=rows, predictions=predictions, units=dict(units or {}),
    )  # fmt: skip


def _under_pytest() -> bool:
    return "pytest" in sys.modules


def _evaluate(model, data, targets, task: str = "regression") -> tuple[dict, dict]:
    score = classification_metrics if task == "classification" else regression_metrics
    metrics, predictions = {}, {}
    for split in ("val", "test"):
        if not data.counts.get(split):
            continue
        x, y = data.arrays(split)
        pred = predict_array(model, x)
        predictions[split] = (y, pred)
        per_target = {t: score(y[:, i], pred[:, i]) for i, t in enumerate(targets)}
        metrics[split] = per_target[targets[0]] if len(targets) == 1 else per_target
    return metrics, predictions


def _card(data, config, targets, units, metrics, history, seconds, locals_) -> dict:
    attrs = data.store_attrs
    monitor = monitor_metric(config.get("task"))
    best = min(history, key=lambda r: r.get(monitor, np.inf)) if history else {}
    composition = data.inputs == "composition"
    return {
        "model": config,
        "task": config.get("task", "regression"),
        # an attention model reads compositions: predict() turns formulas into slots
        "featurizer": (
            slots_featurizer(attrs.get("featurizer")) if composition else attrs.get("featurizer")
        ),
        "element_tables": [] if composition else attrs.get("element_tables"),
        "inputs": data.inputs,
        "feature_labels": data.labels,
        "targets": targets,
        "units": units or {},
        "training_data": {
            "store": data.store,
            "store_fingerprint": store_fingerprint(attrs),
            "source": attrs.get("source"),
            "source_fingerprint": attrs.get("source_fingerprint"),
            "rows": attrs.get("rows"),
        },
        "split": {
            "method": data.split,
            "seed": data.seed,
            "val_fraction": data.val_fraction,
            "test_fraction": data.test_fraction,
            "folds": data.folds,
            "fold": data.fold,
            "group_by": data.group_by if data.split == "group" else None,
            "outliers": data.outliers,
            "outlier_z": data.outlier_z,
            "outlier_bounds": [np.asarray(b).tolist() for b in data.bounds],
            "atom_budget": data.atom_budget,
            "counts": data.counts,
        },
        "metrics": metrics,
        "training": {
            **locals_,
            "epochs": len(history),
            "best_epoch": best.get("epoch"),
            "best_val_mae": best.get("val_mae"),
            "monitor": monitor,
            f"best_{monitor}": best.get(monitor),
            "seconds": round(seconds, 2),
        },
        "versions": installed_versions("xenonscale", "torch", "lightning", "numpy", "zarr"),
    }


def _resolve_task(task, store, targets, data, storage_options) -> str:
    """The task from the flag, or inferred from the training targets (a 0/1 target: classifier)."""
    if data is None:
        names = [targets] if isinstance(targets, str) else list(targets)
        return resolve_task(task, store_targets(store, names, storage_options), names)
    data.setup("fit")
    return resolve_task(task, data.y[data.rows["train"]], data.targets)
