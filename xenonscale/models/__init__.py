"""Source property models: backbones, a Lightning module, store-streaming data, training.

Examples
--------
>>> from xenonscale.models import PropertyModel
>>> PropertyModel.from_config({"in_features": 3, "hidden": [4]}).config["out_features"]
1
"""

from xenonscale.models.backbones import MLP, PropertyModel, mlp_config

__all__ = ["MLP", "PropertyModel", "mlp_config"]
