"""Fine-tuning a zoo model on a small dataset: same backbone, new head, chosen layers trained.

:func:`fine_tune` starts from a zoo model's network (an MLP
:class:`~xenonscale.models.backbones.PropertyModel` or an attention model):
everything below its output layer is copied (the MLP's input scaling and
hidden blocks; the attention model's encoder and head layers), the output is
a new ``nn.Linear`` for the new number of targets, and the target scaling
is refitted on the new training rows. The raw inputs are featurized with
the source model's own featurizer (:attr:`ZooModel.featurizer`). Then the existing Lightning module
(:func:`~xenonscale.models.module.property_module`: a regressor or a
classifier, which optimizes only parameters with ``requires_grad``) trains
it, with ``freeze``:

``"all"``
    every hidden block frozen: only the new head learns (a linear probe
    trained by gradient descent);
``"last"``
    the last hidden block and the head learn (for an attention model the
    blocks are its whole encoder, then each head layer);
``"none"``
    everything learns (the input scaling is a buffer: it never changes).

Frozen blocks are kept in eval mode while training (their BatchNorm
statistics and dropout are those of the source model), so "frozen" means
the block computes exactly what it computed in the source model. A random
``val_fraction`` of the rows picks the best epoch (early stopping).

A 0/1 target (``task="classification"``, or ``task=None`` and a target that
holds only 0 and 1) makes the new head a classifier, whatever the source
predicted: it trains with binary cross-entropy on its logits, the best
epoch is the one with the lowest validation log-loss, and ``predict``
returns probabilities of class 1.

Examples
--------
>>> from xenonscale.transfer.finetune import fine_tune
>>> tuned = fine_tune("mp-gap", ["Fe2O3", "NaCl"], [2.1, 8.5], freeze="last")  # doctest: +SKIP
>>> tuned.predict(["GaN"])  # doctest: +SKIP
array([3.1], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import nn

from xenonscale.errors import ConfigError
from xenonscale.featurize.base import errors_frame, featurize_safely
from xenonscale.models.backbones import PortableModel, predict_array
from xenonscale.models.data import ArrayStream
from xenonscale.models.module import property_module
from xenonscale.models.networks import backbone_name, build_model
from xenonscale.models.quiet import quiet_training
from xenonscale.models.splits import split_indices
from xenonscale.models.tasks import monitor_metric, resolve_task
from xenonscale.zoo import Zoo, ZooModel

__all__ = ["FREEZE_MODES", "FineTuned", "featurize_for", "fine_tune", "transfer_model"]

FREEZE_MODES = ("all", "last", "none")


def featurize_for(source, inputs: Sequence[object]) -> tuple[np.ndarray, np.ndarray, list]:
    """``(float32 features, ok mask, errors)`` of raw ``inputs`` with a zoo model's featurizer."""
    batch = featurize_safely(source.featurizer, list(inputs))
    return np.asarray(batch.values, np.float32), np.asarray(batch.ok, bool), list(batch.errors)


def transfer_model(
    source_model,
    out_features: int,
    freeze: str,
    seed: int = 0,
    task: str = "regression",
):
    """A copy of ``source_model`` with a new seeded output layer and ``freeze`` applied.

    Everything below the output layer is copied (an MLP's input scaling and
    hidden blocks; an attention model's encoder, element table and head
    layers); the output is a new ``nn.Linear(last width, out_features)`` for
    ``task`` (a regression or a classification, whatever the source's);
    target scaling is reset to (0, 1) until ``fit_scaling`` sets it.
    """
    if freeze not in FREEZE_MODES:
        raise ConfigError(f"freeze={freeze!r}: use one of {', '.join(FREEZE_MODES)}")
    if not hasattr(source_model, "transfer_parts"):
        raise ConfigError(
            f"fine_tune needs one network; {backbone_name(source_model.config)!r} models are "
            "not fine-tuned: use one of its members, or its frozen features (shotgun)"
        )
    config = dict(source_model.config) | {"out_features": int(out_features), "task": task}
    model = build_model(config)
    _, _, prefix = model.transfer_parts()
    state = {
        k: v
        for k, v in source_model.state_dict().items()
        if not k.startswith(prefix) and not k.startswith("target_")
    }
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith((prefix, "target_")) for k in missing)
    generator = torch.Generator().manual_seed(int(seed))
    _, head, _ = model.transfer_parts()
    bound = 1.0 / np.sqrt(head.in_features)
    with torch.no_grad():  # nn.Linear's default init, seeded
        head.weight.uniform_(-bound, bound, generator=generator)
        head.bias.uniform_(-bound, bound, generator=generator)
    for block in frozen_blocks(model, freeze):
        for parameter in block.parameters():
            parameter.requires_grad_(False)
    return model


def frozen_blocks(model, freeze: str) -> list[nn.Module]:
    """The hidden blocks ``freeze`` keeps fixed (all, all but the last, or none)."""
    blocks, _, _ = model.transfer_parts()
    return {"all": blocks, "last": blocks[:-1], "none": []}[freeze]


class _FrozenInEval(L.Callback):
    """Keep frozen blocks in eval mode (BatchNorm statistics, no dropout) during training."""

    def __init__(self, blocks: list[nn.Module]):
        self.blocks = blocks

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        for block in self.blocks:
            block.eval()


class _KeepBest(L.Callback):
    """Keep (in memory) the weights of the epoch with the lowest ``monitor`` (``val_mae``)."""

    def __init__(self, monitor: str = "val_mae"):
        self.best, self.state, self.monitor = float("inf"), None, monitor

    def on_validation_end(self, trainer, module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best = float(value)
        self.state = {k: v.detach().clone() for k, v in module.model.state_dict().items()}


class FineTuned:
    """A fine-tuned model that predicts from raw inputs (what :func:`fine_tune` returns).

    Attributes
    ----------
    model : PropertyModel
        The network (eval mode); registrable in the zoo as it is.
    source : ZooModel
        The source model (its featurizer featurizes new inputs).
    freeze : str
        The freeze mode it was trained with.
    targets : list of str
    fallback_ : numpy.ndarray
        Training-target mean (for scoring rows the featurizer cannot read).
    errors_ : pandas.DataFrame
        Rows of the last :meth:`predict` that could not be featurized (NaN there).
    history_ : list of dict
        Per-epoch ``val_mae`` (``val_logloss`` for a classifier).
    best_score_ : float
        The best epoch's validation score (the lowest of :attr:`history_`).
    rows_ : dict
        ``{"train": positions, "val": positions}`` of the inputs it trained and
        validated on (rows it could not use are in neither).
    task : str
        ``regression``, or ``classification`` (``predict`` gives probabilities of class 1).
    """

    def __init__(
        self,
        model: PortableModel,
        source,
        freeze: str,
        targets: Sequence[str],
        fallback: np.ndarray,
        history: list[dict] | None = None,
        rows: dict[str, np.ndarray] | None = None,
    ):
        self.model = model.eval()
        self.source = source
        self.freeze = freeze
        self.targets = list(targets)
        self.fallback_ = np.asarray(fallback, np.float64)
        self.history_ = history or []
        scores = [v for entry in self.history_ for k, v in entry.items() if k != "epoch"]
        self.best_score_ = float(min(scores)) if scores else float("nan")
        empty = np.zeros(0, np.int64)
        self.rows_ = rows or {"train": empty, "val": empty}
        self.errors_ = errors_frame([])
        self.task = model.task

    def __repr__(self) -> str:
        return f"FineTuned(source={str(self.source.ref)!r}, freeze={self.freeze!r})"

    @property
    def name(self) -> str:
        return f"finetune[{self.freeze}]:{self.source.ref}"

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        return predict_array(self.model, np.asarray(x, np.float32)).astype(np.float64)

    def predict(self, inputs: Sequence[object]) -> np.ndarray:
        """Predictions ``float64[n]`` (one target) or ``[n, targets]``; NaN where unreadable."""
        x, ok, errors = featurize_for(self.source, inputs)
        out = np.full((len(ok), len(self.targets)), np.nan)
        if ok.any():
            out[ok] = self.predict_features(x[ok])
        self.errors_ = errors_frame(errors)
        return out[:, 0] if len(self.targets) == 1 else out

    def card(self, metrics: dict | None = None) -> dict:
        """A zoo card for :attr:`model` (featurizer and tables of the source, provenance)."""
        source = self.source.card
        return {
            "featurizer": source.get("featurizer"),
            "feature_labels": source.get("feature_labels"),
            "element_tables": source.get("element_tables"),
            "targets": self.targets,
            "task": self.task,
            "metrics": metrics or {},
            "transfer": {
                "source": str(self.source.ref),
                "freeze": self.freeze,
                "epochs": len(self.history_),
            },
        }


def _load(source, zoo):
    if isinstance(source, ZooModel):
        return source
    if isinstance(zoo, Zoo):
        return zoo.load(source)
    with Zoo(zoo) as opened:
        return opened.load(source)


def fine_tune(
    source,
    inputs: Sequence[object],
    y,
    *,
    zoo=None,
    freeze: str = "last",
    targets: Sequence[str] | None = None,
    max_epochs: int = 200,
    patience: int = 20,
    lr: float = 1e-3,
    weight_decay: float = 1e-5,
    batch_size: int = 64,
    val_fraction: float = 0.1,
    seed: int = 0,
    features: tuple[np.ndarray, np.ndarray] | None = None,
    task: str | None = None,
) -> FineTuned:
    """Fine-tune zoo model ``source`` on ``(inputs, y)`` (see the module docstring).

    Parameters
    ----------
    source
        A zoo reference (``name`` / ``name@version``) or a loaded ``ZooModel``.
    inputs, y
        Raw inputs (formulas, ...) and targets ``[n]`` or ``[n, targets]``.
        Rows the featurizer cannot read and non-finite targets are left out.
    features
        Optional precomputed ``(features, ok)`` of ``inputs`` with the source's
        featurizer (saves featurizing again in cross-validation).
    task
        ``"regression"``, ``"classification"`` (0/1 targets) or ``None``:
        a classification when every target holds only 0 and 1 (said on stderr).

    Returns
    -------
    FineTuned
    """
    source = _load(source, zoo)
    y = np.asarray(y, dtype=np.float32)
    y = y[:, None] if y.ndim == 1 else y
    inputs = list(inputs)
    if len(inputs) != len(y):
        raise ConfigError(f"{len(inputs)} inputs but {len(y)} targets: give one row per input")
    targets = list(
        targets or (["target"] if y.shape[1] == 1 else [f"target_{i}" for i in range(y.shape[1])])
    )
    task = resolve_task(task, y, targets)
    x, ok = features if features is not None else featurize_for(source, inputs)[:2]
    usable = np.flatnonzero(ok & np.isfinite(y).all(axis=1))
    if len(usable) < 4:
        raise ConfigError(
            f"fine_tune: {len(usable)} usable rows (readable input, finite target); give at least 4"
        )
    parts = split_indices(len(usable), method="random", val_fraction=val_fraction, seed=seed)
    train, val = usable[parts["train"]], usable[parts["val"]]
    if not len(val):
        val = train
    L.seed_everything(seed, workers=False, verbose=False)
    model = transfer_model(source.model, y.shape[1], freeze, seed, task)
    y_train = y[train]
    scaling = getattr(model, "inputs", None)  # the MLP's input statistics stay the source's
    model.fit_scaling(
        None if scaling is None else scaling.mean,
        None if scaling is None else scaling.std,
        y_train.mean(axis=0),
        y_train.std(axis=0),
    )
    module = property_module(
        model, targets=targets, lr=lr, weight_decay=weight_decay, scheduler="none"
    )
    monitor = monitor_metric(task)
    keep, history = _KeepBest(monitor), []

    class _History(L.Callback):
        def on_validation_end(self, trainer, module) -> None:
            if not trainer.sanity_checking:
                history.append(
                    {
                        "epoch": trainer.current_epoch,
                        monitor: float(trainer.callback_metrics[monitor]),
                    }
                )

    with quiet_training():  # Lightning's banners and tips, harmless warnings
        trainer = L.Trainer(
            max_epochs=max_epochs,
            accelerator="cpu",
            devices=1,
            callbacks=[
                L.pytorch.callbacks.EarlyStopping(monitor, patience=patience, mode="min"),
                _FrozenInEval(frozen_blocks(model, freeze)),
                keep,
                _History(),
            ],
            enable_checkpointing=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        # A last batch of one row breaks BatchNorm in train mode: drop it (reshuffled each epoch).
        n_train = len(train) - (1 if len(train) % batch_size == 1 else 0)
        train_stream = ArrayStream(
            x[train][:n_train], y[train][:n_train], batch_size=batch_size, shuffle=True, seed=seed
        )
        val_stream = ArrayStream(x[val], y[val], batch_size=4096, shuffle=False)
        trainer.fit(
            module,
            train_dataloaders=torch.utils.data.DataLoader(train_stream, batch_size=None),
            val_dataloaders=torch.utils.data.DataLoader(val_stream, batch_size=None),
        )
    if keep.state is not None:
        model.load_state_dict(keep.state)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    rows = {"train": np.asarray(train, np.int64), "val": np.asarray(val, np.int64)}
    return FineTuned(model, source, freeze, targets, y_train.mean(axis=0), history, rows)
