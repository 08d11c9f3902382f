"""Transfer learning from the zoo: frozen features, fine-tuning, shotgun selection.

Examples
--------
>>> from xenonscale.transfer import FrozenFeaturizer
>>> FrozenFeaturizer("oqmd-hf@1", depth=2).depth
2
"""

from xenonscale.transfer.frozen import FrozenFeaturizer, hidden_activations
from xenonscale.transfer.selection import ShotgunResult, shotgun

__all__ = [
    "FineTuned",
    "FrozenFeaturizer",
    "ShotgunResult",
    "fine_tune",
    "hidden_activations",
    "shotgun",
]


def __getattr__(name: str):
    """Fine-tuning loads lazily (Lightning)."""
    if name in ("FineTuned", "fine_tune"):
        import importlib

        return getattr(importlib.import_module("xenonscale.transfer.finetune"), name)
    raise AttributeError(f"module 'xenonscale.transfer' has no attribute {name!r}")
