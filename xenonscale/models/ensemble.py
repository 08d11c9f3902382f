"""A deep ensemble: several independently trained networks of any backbone, one portable model.

An :class:`EnsembleModel` holds its members in an ``nn.ModuleList``, so its
``state_dict`` keys are ``members.0.…``, ``members.1.…`` and one safetensors
file holds them all; its config (the card's ``model``) is::

    {"backbone": "ensemble", "members": [member config, ...],
     "in_features": ..., "out_features": ..., "task": ...}

where ``in_features``, ``out_features`` and ``task`` are copied from the
members (which must agree on them) so that code reading a model's width or
task works unchanged. Each member is built by
:func:`xenonscale.models.networks.build_model` (any registered backbone).

* ``forward(x)`` is the **mean of the members' outputs** in the target's units
  (the mean probability of class 1 for a classifier);
* :meth:`~EnsembleModel.predict_with_std` also returns the **standard deviation
  across members** (population form, ``ddof=0``, as :func:`numpy.std`): the
  ensemble's own, per-sample uncertainty (Lakshminarayanan et al., *Simple and
  scalable predictive uncertainty estimation using deep ensembles*, NeurIPS 2017);
* ``hidden_features(x)`` concatenates the members' hidden blocks block by block
  (block ``b`` of the ensemble = block ``b`` of every member side by side; the
  members must have the same number of hidden blocks) and ``hidden_widths`` are
  the sums: a frozen featurizer over an ensemble sees every member's features.
  (Averaging members' activations would be meaningless: independently trained
  networks do not share hidden units.)

Examples
--------
>>> import torch
>>> from xenonscale.models.ensemble import EnsembleModel
>>> member = {"in_features": 4, "hidden": [8], "dropout": 0.0}
>>> model = EnsembleModel.from_config({"backbone": "ensemble", "members": [member] * 3})
>>> mean, std = model.predict_with_std(torch.zeros(2, 4))
>>> mean.shape, std.shape, model.hidden_widths
(torch.Size([2, 1]), torch.Size([2, 1]), [24])
>>> sorted({key.split(".")[1] for key in model.state_dict()})
['0', '1', '2']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from xenonscale.errors import ConfigError

__all__ = ["EnsembleModel", "has_uncertainty", "predict_array_with_std"]

#: Keys of an ensemble config besides ``members`` (copied from the members).
_SHARED = ("in_features", "out_features", "task")


class EnsembleModel(nn.Module):
    """Members of any backbone; mean prediction and spread (see the module docstring)."""

    def __init__(self, config: dict):
        super().__init__()
        # lazy: networks imports this module to register the "ensemble" backbone
        from xenonscale.models.networks import build_model

        members = config.get("members") if isinstance(config, dict) else None
        if not isinstance(members, list | tuple) or not members:
            raise ConfigError(
                f"ensemble config members={members!r}: give a non-empty list of member "
                "configs, e.g. [{'in_features': 4, 'hidden': [8]}] * 5"
            )
        if any(isinstance(m, dict) and m.get("backbone") == "ensemble" for m in members):
            raise ConfigError("an ensemble member is itself an ensemble: list its members instead")
        self.members = nn.ModuleList(build_model(dict(m)) for m in members)
        configs = [dict(m.config) for m in self.members]
        self.config = {"backbone": "ensemble", "members": configs}
        for key in _SHARED:
            values = {repr(c.get(key)) for c in configs}
            if len(values) > 1:
                raise ConfigError(
                    f"ensemble members disagree on {key}: {sorted(values)}; train every member "
                    "on the same store and targets"
                )
            if key in configs[0]:
                self.config[key] = configs[0][key]
        depths = {len(m.hidden_widths) for m in self.members}
        if len(depths) > 1:
            raise ConfigError(
                f"ensemble members have {sorted(depths)} hidden blocks: give every member the "
                "same depth (their blocks are concatenated for transfer features)"
            )

    @classmethod
    def from_config(cls, config: dict) -> EnsembleModel:
        """An untrained ensemble for ``config`` (what the zoo calls before loading weights)."""
        return cls(config)

    @classmethod
    def from_members(cls, models: Sequence[nn.Module]) -> EnsembleModel:
        """An ensemble holding copies of trained ``models`` (their configs and weights).

        >>> from xenonscale.models.networks import build_model
        >>> nets = [build_model({"in_features": 3, "hidden": [4]}) for _ in range(2)]
        >>> EnsembleModel.from_members(nets).config["in_features"]
        3
        """
        ensemble = cls({"backbone": "ensemble", "members": [dict(m.config) for m in models]})
        for target, source in zip(ensemble.members, models, strict=True):
            target.load_state_dict(source.state_dict(), strict=True)
        return ensemble

    @property
    def task(self) -> str:
        return self.config.get("task", "regression")

    @property
    def size(self) -> int:
        """How many members."""
        return len(self.members)

    def member_outputs(self, x) -> torch.Tensor:
        """``[members, n, targets]``: every member's ``forward`` (target units or probabilities)."""
        return torch.stack([member(x) for member in self.members])

    def forward(self, x) -> torch.Tensor:
        return self.member_outputs(x).mean(dim=0)

    def predict_with_std(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` across members, each ``[n, targets]`` (std with ``ddof=0``)."""
        outputs = self.member_outputs(x)
        return outputs.mean(dim=0), outputs.std(dim=0, correction=0)

    def hidden_features(self, x) -> list[torch.Tensor]:
        """Block ``b`` of every member side by side, for each block (module docstring)."""
        per_member = [member.hidden_features(x) for member in self.members]
        return [torch.cat(blocks, dim=1) for blocks in zip(*per_member, strict=True)]

    @property
    def hidden_widths(self) -> list[int]:
        """The width of each of :meth:`hidden_features`' outputs (sums over members)."""
        widths = [member.hidden_widths for member in self.members]
        return [int(sum(block)) for block in zip(*widths, strict=True)]


def has_uncertainty(model: object) -> bool:
    """True when ``model`` predicts its own standard deviation (an :class:`EnsembleModel`)."""
    return callable(getattr(model, "predict_with_std", None))


def predict_array_with_std(
    model: EnsembleModel, x, batch_size: int = 65_536
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)``, each ``float32[n, targets]``, for features ``x`` (eval, no grad).

    >>> ensemble = EnsembleModel.from_config(
    ...     {"members": [{"in_features": 2, "hidden": [4], "dropout": 0.0}] * 2}
    ... )
    >>> mean, std = predict_array_with_std(ensemble, np.zeros((5, 2), np.float32))
    >>> mean.shape, bool((std >= 0).all())
    ((5, 1), True)
    """
    if not has_uncertainty(model):
        raise ConfigError(
            f"{type(model).__name__} has no uncertainty of its own: train an ensemble "
            "(xenonscale train --ensemble N)"
        )
    model.eval()
    shape = (len(x), model.config["out_features"])
    mean, std = np.empty(shape, np.float32), np.empty(shape, np.float32)
    with torch.inference_mode():
        for lo in range(0, len(x), batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch_size], np.float32))
            m, s = model.predict_with_std(chunk)
            mean[lo : lo + batch_size], std[lo : lo + batch_size] = m.numpy(), s.numpy()
    return mean, std
