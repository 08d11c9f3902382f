"""Transfer learning from the zoo: frozen features, fine-tuning, shotgun selection.

Examples
--------
>>> from xenonscale.transfer import FrozenFeaturizer
>>> FrozenFeaturizer("oqmd-hf@1", depth=2).depth
2
"""

from xenonscale.transfer.frozen import FrozenFeaturizer, hidden_activations

__all__ = [
    "FineTuned",
    "FrozenFeaturizer",
    "ShotgunResult",
    "fine_tune",
    "hidden_activations",
    "shotgun",
]


def __getattr__(name: str):
    """Fine-tuning and shotgun load lazily (Lightning, scikit-learn)."""
    if name in ("FineTuned", "fine_tune"):
        from xenonscale.transfer import finetune

        return getattr(finetune, name)
    if name in ("ShotgunResult", "shotgun"):
        from xenonscale.transfer import shotgun as module

        return getattr(module, name)
    raise AttributeError(f"module 'xenonscale.transfer' has no attribute {name!r}")
