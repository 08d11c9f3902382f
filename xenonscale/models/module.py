"""The LightningModule: any :class:`~xenonscale.models.backbones.PropertyModel`, trained.

The network is passed in (Lightning's split): freezing or swapping it for
transfer learning needs no change here. The loss sees standardized targets;
the metrics (MAE, RMSE, R², Pearson, Spearman; torchmetrics, so they are
synchronized across DDP processes) are in the target's units. Each target
of a multi-target model is logged as ``val_mae/<target>``; ``val_mae`` is
their mean.

Examples
--------
>>> from xenonscale.models import PropertyModel
>>> from xenonscale.models.module import PropertyRegressor
>>> net = PropertyModel.from_config({"in_features": 8, "hidden": [16]})
>>> PropertyRegressor(net, targets=["y"], loss="huber").hparams.loss
'huber'
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
import torchmetrics
from torch import nn

from xenonscale.errors import ConfigError
from xenonscale.models.backbones import PropertyModel
from xenonscale.models.quiet import quiet_training

__all__ = ["LOSSES", "PropertyRegressor"]

LOSSES = {"mae": nn.L1Loss, "mse": nn.MSELoss, "huber": nn.HuberLoss}


def _metric_set() -> torchmetrics.MetricCollection:
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


class PropertyRegressor(L.LightningModule):
    """Train ``model`` on ``(features, targets)`` batches (see the module docstring)."""

    def __init__(
        self,
        model: PropertyModel,
        *,
        targets: Sequence[str] = ("target",),
        loss: str = "mae",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        scheduler: str = "plateau",
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"loss={loss!r}: use one of {', '.join(LOSSES)}")
        if scheduler not in ("plateau", "cosine", "none"):
            raise ConfigError(f"scheduler={scheduler!r}: use plateau, cosine or none")
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.targets = list(targets)
        self.loss_fn = LOSSES[loss]()
        self.val_metrics = nn.ModuleList(_metric_set() for _ in self.targets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _scaled_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scaled = (y - self.model.target_mean) / self.model.target_std
        return self.loss_fn(self.model.forward_scaled(x), scaled)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self._scaled_loss(x, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(x), sync_dist=True)  # fmt: skip
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", self._scaled_loss(x, y), on_epoch=True, batch_size=len(x),
                 sync_dist=True)  # fmt: skip
        prediction = self.model(x)
        for i, metrics in enumerate(self.val_metrics):
            metrics.update(prediction[:, i], y[:, i])

    def on_validation_epoch_end(self) -> None:
        maes = []
        for name, metrics in zip(self.targets, self.val_metrics, strict=True):
            values = metrics.compute()
            metrics.reset()
            maes.append(values["mae"])
            suffix = f"/{name}" if len(self.targets) > 1 else ""
            for key, value in values.items():
                self.log(f"val_{key}{suffix}", value, prog_bar=key == "mae" and not suffix,
                         sync_dist=True)  # fmt: skip
        if len(self.targets) > 1:
            self.log("val_mae", torch.stack(maes).mean(), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        if self.hparams.scheduler == "none":
            return optimizer
        if self.hparams.scheduler == "cosine":
            epochs = max(1, int(self.trainer.max_epochs or 1))
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
            return {"optimizer": optimizer, "lr_scheduler": schedule}
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=4)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "monitor": "val_mae"},
        }
