"""Scheduled retraining: retrain what went stale, promote only what is not worse.

For each model name (or ``only`` those), the latest version's card says which
store it was trained on and that store's fingerprint
(:func:`~xenonscale.models.training.store_fingerprint`). A model is *stale*
when the store's fingerprint changed (the store was rebuilt from new data)
or when its latest version is older than ``max_age_days``. A stale model is
retrained with the same settings (architecture, optimizer, split); the new
version and the current production version are scored on the *same*
validation rows of the new store, and the new one is promoted only if its
MAE is not worse. Either way the new version is registered, so a second run
finds nothing stale and does nothing (idempotent, safe for a CronJob). A lock
in the zoo's artifact location stops two runs at once.

Examples
--------
A model trained on a store of iron oxides is up to date until the store is
rebuilt with more oxides; then a new version is trained with the same
settings and compared with the current one on the same rows (seconds):

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.workflows import retrain, train_and_register
>>> from xenonscale.zoo import Zoo
>>> folder = Path(tempfile.mkdtemp())
>>> def build_store(irons):
...     rows = [f"Fe{a}O{b},{a / (a + b):.3f}" for a in range(1, irons + 1) for b in range(1, 9)]
...     _ = (folder / "oxides.csv").write_text("formula,target\\n" + "\\n".join(rows))
...     with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...         _ = featurize_to_store(
...             str(folder / "oxides.csv"), str(folder / "oxides.zarr"),
...             FeaturizerSpec.parse("composition", "classic"),
...             column="formula", client=client, progress=False, overwrite=True,
...         )
>>> build_store(8)
>>> zoo = Zoo(folder / "zoo")
>>> _ = train_and_register(
...     str(folder / "oxides.zarr"), name="fe-o", zoo=zoo, promote=True, output=folder / "v1",
...     hidden=(16,), max_epochs=3, batch_size=16, accelerator="cpu", progress=False,
... )
>>> [(r["name"], r["action"]) for r in retrain(zoo=zoo, progress=False)]
[('fe-o', 'up to date')]
>>> build_store(10)
>>> [(r["reason"], r["new"], r["current"]) for r in retrain(zoo=zoo, progress=False)]
[('store changed', 'fe-o@2', 'fe-o@1')]
>>> zoo.close()
"""

from __future__ import annotations

import datetime as dt
import tempfile

import numpy as np
import zarr

from xenonscale.engine.bookkeeping import JobLock
from xenonscale.errors import StoreError
from xenonscale.models.backbones import predict_array
from xenonscale.models.graphs import GRAPH_BACKBONES
from xenonscale.models.metrics import classification_metrics, regression_metrics
from xenonscale.models.networks import backbone_name
from xenonscale.models.training import store_fingerprint
from xenonscale.store.layout import StoreLocation
from xenonscale.workflows.registration import Figures, train_and_register
from xenonscale.zoo import Zoo

__all__ = ["network_options", "retrain", "staleness"]

_TRAIN_KEYS = ("loss", "lr", "weight_decay", "scheduler", "batch_size", "max_epochs", "patience",
               "seed", "dropout")  # fmt: skip
_SPLIT_KEYS = ("val_fraction", "test_fraction", "folds", "fold", "outliers", "outlier_z",
               "atom_budget")  # fmt: skip


def staleness(card: dict, *, max_age_days: float | None, now: dt.datetime | None = None) -> str:
    """Why a version is stale (``store changed``, ``older than N days``), or ``""``."""
    data = card.get("training_data") or {}
    location = StoreLocation(data.get("store") or "")
    if not data.get("store") or not location.exists():
        raise StoreError(f"the training store {data.get('store')!r} of {card.get('name')} is gone")
    attrs = dict(zarr.open_group(location.zarr_store(), mode="r").attrs)
    if store_fingerprint(attrs) != data.get("store_fingerprint"):
        return "store changed"
    if max_age_days is not None:
        created = dt.datetime.fromisoformat(card["created"].replace("Z", "+00:00"))
        now = now or dt.datetime.now(dt.UTC)
        if now - created > dt.timedelta(days=max_age_days):
            return f"older than {max_age_days:g} days"
    return ""


def retrain(
    *,
    zoo=None,
    only: list[str] | None = None,
    max_age_days: float | None = None,
    max_epochs: int | None = None,
    progress: bool = True,
    figures: Figures | None = None,
) -> list[dict]:
    """Retrain stale models (see the module docstring); returns one report row per name.

    ``figures`` draws the files registered with each new version (the CLI
    passes :func:`xenonscale.viz.training.training_figures`).
    """
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    lock = StoreLocation(f"{zoo.artifacts.root}/_retrain", zoo.storage_options or None)
    report = []
    with JobLock(lock, purpose="retrain run"):
        names = sorted(set(zoo.list()["name"])) if not only else list(only)
        for name in names:
            latest = zoo.show(str(zoo.latest(name)))
            try:
                why = staleness(latest, max_age_days=max_age_days)
            except StoreError as exc:
                report.append({"name": name, "action": "skipped", "reason": str(exc)})
                continue
            if not why:
                report.append({"name": name, "action": "up to date", "version": latest["version"]})
                continue
            outcome = _retrain_one(zoo, name, latest, max_epochs, progress, figures)
            report.append({"name": name, "reason": why} | outcome)
    return report


def network_options(model: dict) -> dict:
    """The train_model arguments that rebuild a card's network (MLP, attention, graph, ensemble).

    >>> network_options({"hidden": [8], "batch_norm": True, "activation": "relu"})
    {'hidden': [8], 'batch_norm': True, 'activation': 'relu'}
    >>> network_options({"backbone": "attention", "elements": "magpie", "d_model": 16,
    ...                  "in_features": 32, "out_features": 1, "table_width": 22})
    {'backbone': 'attention', 'backbone_options': {'elements': 'magpie', 'd_model': 16}}
    >>> network_options({"backbone": "ensemble", "members": [
    ...     {"hidden": [8], "batch_norm": True, "activation": "relu"}] * 3})
    {'ensemble': 3, 'hidden': [8], 'batch_norm': True, 'activation': 'relu'}
    """
    if backbone_name(model) == "ensemble":  # as many members, each like the first
        return {"ensemble": len(model["members"]), **network_options(model["members"][0])}
    if backbone_name(model) in ("attention", *GRAPH_BACKBONES):
        # the graph layout comes from the store again, the element table from its name
        fixed = ("backbone", "in_features", "out_features", "table_width", "task",
                 "atoms", "neighbors", "cutoff")  # fmt: skip
        return {
            "backbone": backbone_name(model),
            "backbone_options": {k: v for k, v in model.items() if k not in fixed},
        }
    return {"hidden": model["hidden"], "batch_norm": model["batch_norm"],
            "activation": model["activation"]}  # fmt: skip


def _train(card, name, zoo, model, options, data_options, progress, output, figures):
    return train_and_register(
        card["training_data"]["store"], card["targets"], name=name, zoo=zoo, output=output,
        figures=figures, **network_options(model),
        units=card.get("units") or None, data_options=data_options, progress=progress,
        accelerator="auto", **options,
    )  # fmt: skip


def _retrain_one(
    zoo, name: str, card: dict, max_epochs: int | None, progress: bool, figures
) -> dict:
    training, split, model = card["training"], card["split"], card["model"]
    options = {k: training[k] for k in _TRAIN_KEYS if k in training}
    options["task"] = card.get("task", "regression")  # cards before classification: regressions
    if max_epochs is not None:
        options["max_epochs"] = max_epochs
    data_options = {k: split[k] for k in _SPLIT_KEYS if k in split}
    data_options["split"] = split.get("method", "random")
    if split.get("group_by"):
        data_options["group_by"] = split["group_by"]
    scratch = tempfile.TemporaryDirectory(prefix=f"xenonscale-retrain-{name}-")
    with scratch:  # weights, plots and card end up in the zoo; the folder is scratch
        result = _train(
            card, name, zoo, model, options, data_options, progress, scratch.name, figures
        )

    current_ref = zoo.production(name) or zoo.latest(name)
    if str(current_ref) == result.ref:  # nothing else to compare with
        zoo.promote(result.ref)
        return {"action": "promoted", "new": result.ref, "current": None}
    current = zoo.load(str(current_ref))
    if current.card.get("feature_labels") != result.card["feature_labels"]:
        zoo.promote(result.ref)  # other descriptors: the old model cannot score these rows
        return {"action": "promoted", "new": result.ref, "current": str(current_ref),
                "note": "descriptors changed; not compared"}  # fmt: skip
    x, y = result.data.arrays("val")
    classifier = options["task"] == "classification"  # compared by log-loss, not MAE
    score = classification_metrics if classifier else regression_metrics
    metric = "log_loss" if classifier else "mae"
    old = score(y, predict_array(current.model, x))[metric]
    new = score(y, predict_array(result.model, x))[metric]
    row = {"new": result.ref, "current": str(current_ref), f"{metric}_new": new,
           f"{metric}_current": old}  # fmt: skip
    if not np.isfinite(old) or new <= old:
        zoo.promote(result.ref)
        return {"action": "promoted"} | row
    return {"action": "kept current"} | row
