"""Plain ``nn.Module`` backbones and the portable property model that wraps them.

A :class:`PropertyModel` is everything needed to go from a raw feature vector
to a prediction in the target's units: input standardization (fitted on the
training split), a backbone (:class:`MLP`, like XenonPy's ``SequentialLinear``)
and the inverse target standardization. Its :attr:`~PropertyModel.config` is
JSON and its ``state_dict()`` holds only tensors, so a model is saved as a
JSON card plus a safetensors file and rebuilt with
:meth:`PropertyModel.from_config` — no pickle anywhere.

Examples
--------
>>> import torch
>>> from xenonscale.models.backbones import PropertyModel
>>> model = PropertyModel.from_config(
...     {"in_features": 4, "out_features": 1, "hidden": [8, 4], "dropout": 0.0}
... )
>>> model(torch.zeros(2, 4)).shape
torch.Size([2, 1])
>>> [h.shape[1] for h in model.hidden_features(torch.zeros(2, 4))]
[8, 4]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xenonscale.errors import ConfigError

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "TASKS",
    "PortableModel",
    "PropertyModel",
    "Standardize",
    "check_task",
    "mlp_config",
    "model_size",
    "predict_array",
]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}

#: What a model predicts: a number in the target's units, or the probability of class 1.
TASKS = ("regression", "classification")

_DEFAULTS = {
    "hidden": [512, 256, 128],
    "dropout": 0.1,
    "batch_norm": True,
    "activation": "relu",
}


def mlp_config(in_features: int, out_features: int = 1, **options) -> dict:
    """A complete, validated MLP config (defaults filled in)."""
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown MLP option(s) {unknown}: use {sorted(_DEFAULTS)}")
    config = {"in_features": int(in_features), "out_features": int(out_features)}
    config |= {key: options.get(key, default) for key, default in _DEFAULTS.items()}
    config["hidden"] = [int(width) for width in config["hidden"]]
    if config["in_features"] < 1 or config["out_features"] < 1:
        raise ConfigError(f"MLP needs ≥ 1 input and output feature, got {config}")
    if not config["hidden"] or min(config["hidden"]) < 1:
        raise ConfigError(f"hidden={config['hidden']!r}: give ≥ 1 positive layer width")
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise ConfigError(f"dropout={config['dropout']!r}: use a value in [0, 1)")
    if config["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"activation={config['activation']!r}: use one of {', '.join(sorted(ACTIVATIONS))}"
        )
    return config


def model_size(config: dict) -> tuple[int, int]:
    """``(parameters, state elements)`` of ``PropertyModel(config)``, computed without building it.

    Parameters are what trains (linear and batch-norm weights and biases);
    state elements are everything ``state_dict()`` holds, i.e. what the
    safetensors file stores: the parameters plus the input and target
    statistics and the batch-norm running statistics. Pure integer
    arithmetic: safe on a config far too large to allocate.

    >>> model_size({"in_features": 4, "out_features": 1, "hidden": [8], "dropout": 0.0})
    (65, 92)
    >>> model_size({"in_features": 10_000_000, "hidden": [10_000_000]})[0] > 10**14
    True
    """
    config = mlp_config(
        **{k: v for k, v in config.items() if k not in ("input_clip", "task", "backbone")}
    )
    parameters = buffers = 0
    width = config["in_features"]
    for size in config["hidden"]:
        parameters += width * size + size  # Linear
        if config["batch_norm"]:
            parameters += 2 * size  # weight, bias
            buffers += 2 * size + 1  # running mean, var, num_batches_tracked
        width = size
    outputs = config["out_features"]
    parameters += width * outputs + outputs  # head
    buffers += 2 * config["in_features"] + 2 * outputs  # input and target statistics
    return parameters, parameters + buffers


class MLP(nn.Module):
    """Fully connected layers: (Linear → [BatchNorm] → activation → [Dropout]) × depth → Linear.

    Each hidden block's output is reachable through :meth:`hidden_features`
    (what transfer learning freezes and reuses).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        hidden: Sequence[int] = (512, 256, 128),
        dropout: float = 0.1,
        batch_norm: bool = True,
        activation: str = "relu",
    ):
        super().__init__()
        blocks = []
        width = in_features
        for size in hidden:
            layers: list[nn.Module] = [nn.Linear(width, size)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            blocks.append(nn.Sequential(*layers))
            width = size
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, out_features)

    def hidden_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every hidden block, first to last."""
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class Standardize(nn.Module):
    """``(x - mean) / std`` clipped to ``±clip``; NaN inputs become 0 (the mean).

    The clip matters for descriptors that are almost constant: ``min:gs_mag_moment``
    is 0 for nearly every training compound, so one magnetic compound scores
    z ≈ 3×10⁵ and, unclipped, its prediction is off by hundreds of eV.
    """

    def __init__(self, features: int, clip: float = 10.0):
        super().__init__()
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))

    def fit(self, mean: torch.Tensor, std: torch.Tensor) -> Standardize:
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.mean.copy_(mean)
        self.std.copy_(std)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.nan_to_num((x - self.mean) / self.std, nan=0.0, posinf=0.0, neginf=0.0)
        return z.clamp(-self.clip, self.clip)


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else a one-line :class:`ConfigError`."""
    if task not in TASKS:
        raise ConfigError(f"task={task!r}: use one of {', '.join(TASKS)}")
    return task


class PortableModel(nn.Module):
    """What every backbone shares: the target statistics and the task-aware output.

    A subclass sets ``self.config`` (JSON; ``config["task"]`` defaults to
    regression), calls :meth:`_init_targets` and implements ``forward_scaled``
    (standardized targets for a regression, logits for a classification),
    ``hidden_features`` and ``hidden_widths``. ``forward`` then returns
    predictions in the target's units, or probabilities of class 1.
    """

    config: dict

    def _init_targets(self, outputs: int) -> None:
        self.register_buffer("target_mean", torch.zeros(outputs))
        self.register_buffer("target_std", torch.ones(outputs))

    @property
    def task(self) -> str:
        return self.config.get("task", "regression")

    def fit_targets(self, y_mean, y_std) -> PortableModel:
        """Set the target statistics (training split only; a classifier keeps 0 and 1)."""
        if self.task == "classification":
            return self
        y_std = _as_vector(y_std)
        self.target_mean.copy_(_as_vector(y_mean))
        self.target_std.copy_(torch.where(y_std > 0, y_std, torch.ones_like(y_std)))
        return self

    def forward_scaled(self, x) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x) -> torch.Tensor:
        out = self.forward_scaled(x)
        if self.task == "classification":
            return torch.sigmoid(out)
        return out * self.target_std + self.target_mean


def _as_vector(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.float32).reshape(-1)


class PropertyModel(PortableModel):
    """Input standardization → MLP → target scale; portable (see the module docstring).

    ``forward`` returns predictions in the target's units (probabilities for
    ``config["task"] == "classification"``); ``forward_scaled`` returns them
    in standardized units or logits (what the loss sees).
    """

    def __init__(self, config: dict):
        super().__init__()
        options = {k: v for k, v in config.items() if k not in ("input_clip", "task", "backbone")}
        clip = float(config.get("input_clip", 10.0))
        if not clip > 0:
            raise ConfigError(f"input_clip={clip!r}: use a positive bound (standard deviations)")
        self.config = mlp_config(**options) | {"input_clip": clip}
        if "task" in config:
            self.config["task"] = check_task(config["task"])
        if "backbone" in config:
            self.config["backbone"] = config["backbone"]
        self.inputs = Standardize(self.config["in_features"], clip)
        self.backbone = MLP(
            **{k: self.config[k] for k in ("in_features", "out_features", *_DEFAULTS)}
        )
        self._init_targets(self.config["out_features"])

    @classmethod
    def from_config(cls, config: dict) -> PropertyModel:
        return cls(config)

    def fit_scaling(self, x_mean, x_std, y_mean, y_std) -> PropertyModel:
        """Set input and target statistics (from the training split only)."""
        self.inputs.fit(_as_vector(x_mean), _as_vector(x_std))
        self.fit_targets(y_mean, y_std)
        return self

    def forward_scaled(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.inputs(x))

    def hidden_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Hidden-layer activations (block outputs) for raw features ``x``."""
        return self.backbone.hidden_features(self.inputs(x))

    @property
    def hidden_widths(self) -> list[int]:
        """The width of each of :meth:`hidden_features`' outputs, first to last."""
        return list(self.config["hidden"])

    def transfer_parts(self) -> tuple[list[nn.Module], nn.Linear, str]:
        """``(hidden blocks in order, output layer, its state-dict prefix)`` for fine-tuning."""
        return list(self.backbone.blocks), self.backbone.head, "backbone.head."


def predict_array(model: PropertyModel, x, batch_size: int | None = None):
    """Predictions ``float32[n, targets]`` in target units for features ``x`` (eval, no grad).

    Rows go through in batches of ``batch_size`` (default: the model's
    ``predict_batch_rows``, else 65,536: graph models take fewer at a time).
    """
    import numpy as np

    batch_size = batch_size or getattr(model, "predict_batch_rows", 65_536)
    model.eval()
    out = np.empty((len(x), model.config["out_features"]), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch_size], np.float32))
            out[lo : lo + batch_size] = model(chunk).numpy()
    return out
