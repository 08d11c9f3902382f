"""The LightningModules: any :class:`~xenonscale.models.backbones.PortableModel`, trained.

The network is passed in (Lightning's split): freezing or swapping it for
transfer learning needs no change here. :func:`property_module` picks the
module for the network's task (``model.task``):

:class:`PropertyRegressor`
    The loss (``mae``, ``mse``, ``huber``) sees standardized targets; the
    metrics (MAE, RMSE, R², Pearson, Spearman) are in the target's units.
:class:`PropertyClassifier`
    ``BCEWithLogitsLoss`` on the network's logits (``forward_scaled``) and
    the 0/1 targets, unweighted by default (the probabilities stay
    calibrated; ``pos_weight`` up-weights the positive class of a rare-event
    target). Metrics: ``val_roc_auc``, ``val_accuracy`` and ``val_f1`` (at
    0.5) and ``val_logloss`` (the mean binary cross-entropy, computed from
    the logits: the same number without rounding probabilities near 0 or 1).

Metrics are torchmetrics, so they are synchronized across DDP processes.
Each target of a multi-target model is logged with a ``/<target>`` suffix;
the unsuffixed name is their mean. Early stopping, the best weights, the
plateau scheduler and tuning watch :func:`~xenonscale.models.tasks.monitor_metric`
(``val_mae`` or ``val_logloss``). The ``cosine`` schedule anneals the rate
step by step to 0 at the end of the budget, ``max_epochs`` or the trainer's
``max_time``, whichever comes first (:func:`training_progress`). Batches
are ``(x, y)``; ``x`` goes to the network untouched (a tensor, or a tuple of
tensors for a backbone that takes several), batch sizes come from ``y``.

Examples
--------
>>> from xenonscale.models import PropertyModel
>>> from xenonscale.models.module import property_module
>>> net = PropertyModel.from_config({"in_features": 8, "hidden": [16]})
>>> property_module(net, targets=["y"], loss="huber").hparams.loss
'huber'
>>> net = PropertyModel.from_config({"in_features": 8, "hidden": [16], "task": "classification"})
>>> module = property_module(net, targets=["is_metal"])
>>> type(module).__name__, module.monitor
('PropertyClassifier', 'val_logloss')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
import torch
import torchmetrics
from torch import nn
from torch.nn import functional as F

from xenonscale.errors import ConfigError
from xenonscale.models.backbones import PortableModel
from xenonscale.models.quiet import quiet_training
from xenonscale.models.tasks import monitor_metric

__all__ = [
    "LOSSES",
    "SCHEDULERS",
    "PropertyClassifier",
    "PropertyModule",
    "PropertyRegressor",
    "cosine_factor",
    "monitor_metric",
    "property_module",
    "training_progress",
]

LOSSES = {"mae": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}
SCHEDULERS = ("plateau", "cosine", "none")


def _regression_metrics() -> torchmetrics.MetricCollection:
    with quiet_training():  # Spearman warns that it buffers: our validation sets are sized for it
        return torchmetrics.MetricCollection(
            {
                "mae": torchmetrics.MeanAbsoluteError(),
                "rmse": torchmetrics.MeanSquaredError(squared=False),
                "r2": torchmetrics.R2Score(),
                "pearson": torchmetrics.PearsonCorrCoef(),
                "spearman": torchmetrics.SpearmanCorrCoef(),
            }
        )


def _classification_metrics() -> torchmetrics.MetricCollection:
    """Metrics updated with ``(logits, 0/1 targets)``; ``logloss`` is fed per-row BCE."""
    from torchmetrics import classification as tc  # lazy: a submodule, loaded with torchmetrics

    return torchmetrics.MetricCollection(
        {
            "roc_auc": tc.BinaryAUROC(),  # exact (thresholds=None): every score is kept
            "accuracy": tc.BinaryAccuracy(threshold=0.5),
            "f1": tc.BinaryF1Score(threshold=0.5),
        }
    )


def cosine_factor(progress: float) -> float:
    """The cosine schedule's multiplier of the base rate at ``progress`` in [0, 1].

    >>> cosine_factor(0.0), cosine_factor(0.5), cosine_factor(1.0), cosine_factor(2.0)
    (1.0, 0.5, 0.0, 0.0)
    """
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def training_progress(trainer, steps_per_epoch: float | None = None) -> float:
    """How far training is through its budget, 0 → 1: epochs or wall time, whichever is further.

    By epochs: the optimizer steps taken over ``max_epochs × steps_per_epoch``
    (the steps of the first epoch; while it runs, progress by epochs is 0).
    By wall time: the elapsed share of ``Trainer(max_time=...)``, the clock
    Lightning stops on (validation included). So a cosine schedule under a
    time budget reaches its lowest rate as the budget ends instead of being
    cut off at a high rate halfway.

    >>> from types import SimpleNamespace
    >>> trainer = SimpleNamespace(max_epochs=4, global_step=30, callbacks=[])
    >>> training_progress(trainer, steps_per_epoch=10), training_progress(trainer)
    (0.75, 0.0)
    """
    progress = 0.0
    epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
    if epochs and steps_per_epoch:
        progress = trainer.global_step / (steps_per_epoch * epochs)
    for callback in trainer.callbacks:
        if isinstance(callback, L.pytorch.callbacks.Timer) and callback.start_time() is not None:
            remaining = callback.time_remaining()
            if remaining is not None:
                elapsed = callback.time_elapsed()
                progress = max(progress, elapsed / max(elapsed + remaining, 1e-9))
    return progress


class PropertyModule(L.LightningModule):
    """What both tasks share: the network, the optimizer, the schedule, the steps.

    A subclass sets ``task`` and implements ``_loss(output, y)`` (on
    ``forward_scaled``'s output), ``_update(output, y)`` and ``_compute()``
    (the validation metrics of the epoch, per target).
    """

    task = "regression"

    def __init__(
        self,
        model: PortableModel,
        *,
        targets: Sequence[str] = ("target",),
        loss: str = "mae",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        scheduler: str = "plateau",
    ):
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler={scheduler!r}: use plateau, cosine or none")
        if model.task != self.task:
            raise ConfigError(
                f"{type(self).__name__} trains {self.task} models, the network's task is "
                f"{model.task!r}: use property_module(model) to pick the module"
            )
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.targets = list(targets)
        self.monitor = monitor_metric(self.task)
        self._steps_per_epoch: float | None = None  # the first epoch's, for the cosine schedule

    def forward(self, x) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self._loss(self.model.forward_scaled(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=y.shape[0], sync_dist=True)  # fmt: skip
        return loss

    def on_train_epoch_end(self) -> None:
        if self._steps_per_epoch is None and self.trainer.global_step:
            self._steps_per_epoch = self.trainer.global_step / (self.trainer.current_epoch + 1)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        output = self.model.forward_scaled(x)
        self.log("val_loss", self._loss(output, y), on_epoch=True, batch_size=y.shape[0],
                 sync_dist=True)  # fmt: skip
        self._update(output, y)

    def on_validation_epoch_end(self) -> None:
        per_target = self._compute()
        key = self.monitor[len("val_") :]
        for name, values in zip(self.targets, per_target, strict=True):
            suffix = f"/{name}" if len(self.targets) > 1 else ""
            for metric, value in values.items():
                self.log(f"val_{metric}{suffix}", value, sync_dist=True,
                         prog_bar=metric == key and not suffix)  # fmt: skip
        if len(self.targets) > 1:
            mean = torch.stack([values[key] for values in per_target]).mean()
            self.log(self.monitor, mean, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.scheduler == "none":
            return optimizer
        if self.hparams.scheduler == "cosine":
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda _: cosine_factor(training_progress(self.trainer, self._steps_per_epoch)),
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                             "interval": "step"}}  # fmt: skip
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=4)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "monitor": self.monitor},
        }


class PropertyRegressor(PropertyModule):
    """Train a regression network on ``(x, targets)`` batches (see the module docstring)."""

    task = "regression"

    def __init__(self, model: PortableModel, *, loss: str = "mae", **options):
        if loss not in LOSSES:
            raise ConfigError(f"loss={loss!r}: use one of {', '.join(LOSSES)}")
        super().__init__(model, loss=loss, **options)
        self.loss_fn = LOSSES[loss]()
        self.val_metrics = nn.ModuleList(_regression_metrics() for _ in self.targets)

    def _loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled = (y - self.model.target_mean) / self.model.target_std
        return self.loss_fn(output, scaled)

    def _update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        prediction = output * self.model.target_std + self.model.target_mean
        for i, metrics in enumerate(self.val_metrics):
            metrics.update(prediction[:, i], y[:, i])

    def _compute(self) -> list[dict[str, torch.Tensor]]:
        out = []
        for metrics in self.val_metrics:
            out.append(metrics.compute())
            metrics.reset()
        return out


class PropertyClassifier(PropertyModule):
    """Train a binary classifier (logits out, 0/1 targets in; see the module docstring).

    ``pos_weight`` (one number, or one per target) multiplies the loss of the
    positive rows, e.g. ``negatives / positives`` for a rare class; ``None``
    (default) leaves the loss unweighted.
    """

    task = "classification"

    def __init__(
        self,
        model: PortableModel,
        *,
        loss: str = "bce",
        pos_weight: float | Sequence[float] | None = None,
        **options,
    ):
        if loss != "bce":
            raise ConfigError(f"loss={loss!r}: a classifier trains with 'bce' (cross-entropy)")
        super().__init__(model, loss=loss, **options)
        self.hparams["pos_weight"] = pos_weight
        weight = None
        if pos_weight is not None:
            weight = torch.as_tensor(pos_weight, dtype=torch.float32).reshape(-1)
            if not bool((weight > 0).all()):
                raise ConfigError(f"pos_weight={pos_weight!r}: use positive weights")
        self.register_buffer("pos_weight", weight)
        self.val_metrics = nn.ModuleList(_classification_metrics() for _ in self.targets)
        self.val_logloss = nn.ModuleList(torchmetrics.MeanMetric() for _ in self.targets)

    def _loss(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output, y, pos_weight=self.pos_weight)

    def _update(self, output: torch.Tensor, y: torch.Tensor) -> None:
        bce = F.binary_cross_entropy_with_logits(output, y, reduction="none")
        labels = y.round().long()
        for i, (metrics, logloss) in enumerate(
            zip(self.val_metrics, self.val_logloss, strict=True)
        ):
            metrics.update(torch.sigmoid(output[:, i]), labels[:, i])
            logloss.update(bce[:, i])

    def _compute(self) -> list[dict[str, torch.Tensor]]:
        out = []
        for metrics, logloss in zip(self.val_metrics, self.val_logloss, strict=True):
            with quiet_training():  # AUROC warns (and gives 0) when a split holds one class
                values = dict(metrics.compute())
            values["logloss"] = logloss.compute()
            metrics.reset()
            logloss.reset()
            out.append(values)
        return out


def property_module(model: PortableModel, **options) -> PropertyModule:
    """:class:`PropertyClassifier` or :class:`PropertyRegressor`, as ``model.task`` says.

    ``options`` go to the module (``targets``, ``lr``, ``weight_decay``,
    ``scheduler``; ``loss`` for a regressor — a classifier ignores a regression
    loss name and trains with BCE —, ``pos_weight`` for a classifier).
    """
    if model.task == "classification":
        if options.get("loss") in LOSSES:
            options = {k: v for k, v in options.items() if k != "loss"}
        return PropertyClassifier(model, **options)
    options.pop("pos_weight", None)
    return PropertyRegressor(model, **options)
