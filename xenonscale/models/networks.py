"""Which network a model config describes, and building it: the backbone registry.

A model config (the ``model`` entry of a card) names its backbone in
``config["backbone"]``; configs written before backbones had names are MLPs.
:func:`build_model` is the one place that turns a config into an
``nn.Module`` with the portable-model interface (``config``, ``forward`` in
target units, ``forward_scaled``, ``fit_scaling``, ``hidden_features``,
``hidden_widths``): zoo loading, transfer and retraining call it and never
name a backbone class.

Examples
--------
>>> from xenonscale.models.networks import build_model, backbone_name
>>> model = build_model({"in_features": 4, "hidden": [8]})
>>> backbone_name(model.config), model.hidden_widths
('mlp', [8])
"""

from __future__ import annotations

from torch import nn

from xenonscale.errors import ConfigError
from xenonscale.models.attention import AttentionModel
from xenonscale.models.backbones import PropertyModel
from xenonscale.models.ensemble import EnsembleModel
from xenonscale.models.graphs import GRAPH_BACKBONES, GraphModel

__all__ = ["BACKBONES", "backbone_name", "build_model", "is_property_model"]

#: Backbone name → class with a ``from_config`` constructor.
BACKBONES: dict[str, type[nn.Module]] = {"mlp": PropertyModel, "attention": AttentionModel}
BACKBONES["ensemble"] = EnsembleModel  # members built by build_model (models/ensemble.py)
BACKBONES.update(dict.fromkeys(GRAPH_BACKBONES, GraphModel))  # crystal graphs (models/graphs.py)


def backbone_name(config: dict) -> str:
    """The backbone a config describes (``"mlp"`` when the config predates names)."""
    return str(config.get("backbone", "mlp"))


def build_model(config: dict) -> nn.Module:
    """An untrained network for ``config`` (see the module docstring)."""
    name = backbone_name(config)
    if name not in BACKBONES:
        raise ConfigError(
            f"model backbone {name!r} is unknown: use one of {', '.join(sorted(BACKBONES))} "
            "(or install the xenonscale version that wrote this card)"
        )
    return BACKBONES[name].from_config(config)


def is_property_model(model: object) -> bool:
    """True for an instance of a registered backbone."""
    return isinstance(model, tuple(BACKBONES.values()))
