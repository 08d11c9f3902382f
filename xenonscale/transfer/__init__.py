"""Transfer learning from the zoo: frozen features, fine-tuning, shotgun selection.

Examples
--------
>>> from xenonscale.transfer import FrozenFeaturizer
>>> FrozenFeaturizer("oqmd-hf@1", depth=2).depth
2
"""

from xenonscale.transfer.frozen import FrozenFeaturizer, hidden_activations

# ``shotgun`` is both a module and its main function: importing the function here,
# after the module, keeps ``xenonscale.transfer.shotgun`` the function (the module
# stays reachable as ``sys.modules["xenonscale.transfer.shotgun"]``).
from xenonscale.transfer.shotgun import ShotgunResult, shotgun

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
