"""What a model learns — a regression or a binary classification — and how training follows it.

A target whose finite values are all 0 or 1 (both present) is a class label:
:func:`resolve_task` infers ``"classification"`` for it when no task is
given (and says so on stderr), and checks that an explicit classification
target is 0/1. :func:`monitor_metric` is the one place that names the
validation metric early stopping, the best-weights callback, the plateau
scheduler and tuning watch: ``val_mae`` for a regression, ``val_logloss``
(mean binary cross-entropy) for a classification; both are minimized.

Examples
--------
>>> import numpy as np
>>> from xenonscale.models.tasks import is_binary, monitor_metric, resolve_task
>>> monitor_metric("regression"), monitor_metric("classification")
('val_mae', 'val_logloss')
>>> is_binary(np.array([[0.0], [1.0], [np.nan], [1.0]]))
True
>>> resolve_task(None, np.array([[0.0], [1.0]]), ["is_metal"], quiet=True)
'classification'
>>> resolve_task(None, np.array([[0.5], [1.0]]), ["gap"])
'regression'
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import zarr

from xenonscale.errors import ConfigError, StoreError
from xenonscale.models.backbones import TASKS, check_task
from xenonscale.store.layout import StoreLocation

__all__ = [
    "MONITORS",
    "TASKS",
    "binary_targets",
    "is_binary",
    "monitor_metric",
    "resolve_task",
    "store_targets",
]

#: The validation metric each task is judged by (lower is better for both).
MONITORS = {"regression": "val_mae", "classification": "val_logloss"}


def monitor_metric(task: str | None) -> str:
    """The logged validation metric to minimize for ``task`` (``None``: regression)."""
    return MONITORS[check_task(task or "regression")]


def binary_targets(y: np.ndarray) -> list[bool]:
    """Per column of ``y`` (rows × targets): are its finite values all 0 or 1, both present?"""
    y = np.asarray(y, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    out = []
    for column in y.T:
        values = set(np.unique(column[np.isfinite(column)]).tolist())
        out.append(values == {0.0, 1.0})
    return out


def is_binary(y: np.ndarray) -> bool:
    """True when every target column of ``y`` is a 0/1 class label (:func:`binary_targets`)."""
    flags = binary_targets(y)
    return bool(flags) and all(flags)


def resolve_task(
    task: str | None, y: np.ndarray, targets: Sequence[str], *, quiet: bool = False
) -> str:
    """``task`` checked against the targets ``y``, or inferred from them when ``None``.

    Inferred: ``"classification"`` when every target holds only 0 and 1 (one
    line on stderr says so, unless ``quiet``), else ``"regression"``. An
    explicit classification whose target holds anything else, or only one
    class, fails with a one-line :class:`ConfigError`.
    """
    targets = list(targets)
    if task is None:
        if not is_binary(y):
            return "regression"
        if not quiet:
            names = ", ".join(repr(t) for t in targets)
            print(
                f"target {names} holds only 0 and 1: training a classifier "
                "(pass --task regression to override)",
                file=sys.stderr,
            )
        return "classification"
    check_task(task)
    if task == "classification":
        y = np.asarray(y, dtype=np.float64)
        y = y[:, None] if y.ndim == 1 else y
        for name, column in zip(targets, y.T, strict=True):
            finite = column[np.isfinite(column)]
            values = np.unique(finite)
            other = values[(values != 0) & (values != 1)]
            if len(other):
                shown = ", ".join(f"{v:g}" for v in other[:3])
                raise ConfigError(
                    f"task='classification': target {name!r} holds values other than 0 and 1 "
                    f"(e.g. {shown}): give a 0/1 class label or use --task regression"
                )
            if len(values) < 2:
                only = f"only {values[0]:g}" if len(values) else "no finite value"
                raise ConfigError(
                    f"task='classification': target {name!r} holds {only}: "
                    "a classifier needs rows of both classes 0 and 1"
                )
    return task


def store_targets(
    store: str, targets: Sequence[str], storage_options: dict | None = None
) -> np.ndarray:
    """The targets ``float64[rows, targets]`` of a FeatureStore's featurized (``ok``) rows.

    Reads only the small per-row arrays; a missing target fails with the
    store's variables named (as :class:`~xenonscale.models.data.StoreDataModule`).
    """
    location = StoreLocation(store, storage_options)
    if not location.exists():
        raise StoreError(f"no feature store at {store!r}: run `xenonscale featurize` first")
    group = zarr.open_group(location.zarr_store(), mode="r")
    missing = [t for t in targets if t not in group]
    if missing:
        names = sorted(k for k in group.array_keys() if k not in ("features", "feature"))
        raise ConfigError(f"--target {missing[0]!r} is not in {store!r}; it has {names}")
    ok = np.asarray(group["ok"][:], dtype=bool)
    return np.stack([np.asarray(group[t][:], dtype=np.float64)[ok] for t in targets], axis=1)
