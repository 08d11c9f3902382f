"""Transfer learning from the zoo: frozen features of source models.

Examples
--------
>>> from xenonscale.transfer import FrozenFeaturizer
>>> FrozenFeaturizer("oqmd-hf@1", depth=2).depth
2
"""

from xenonscale.transfer.frozen import FrozenFeaturizer, hidden_activations

__all__ = ["FrozenFeaturizer", "hidden_activations"]
