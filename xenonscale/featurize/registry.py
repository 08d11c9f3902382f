"""Featurizers by name, for the command line and (later) the engine.

``--featurizers`` takes ``classic``, ``all``, ``pooling`` or a comma list of
XenonPy pooling names (``WeightedAverage,MaxPooling``) for
:class:`~xenonscale.featurize.Compositions`, or ``magpie`` for matminer's
Magpie statistics (:class:`~xenonscale.featurize.ElementStatistics`).

Examples
--------
>>> from xenonscale.featurize.registry import build_featurizer
>>> build_featurizer("classic", elements="xenonpy58")
Compositions(elements='xenonpy58', featurizers='classic', counting='fraction', on_error='record')
"""

from __future__ import annotations

from xenonscale.errors import ConfigError
from xenonscale.featurize.compositions import (
    ALL,
    FEATURIZER_SETS,
    Compositions,
    ElementStatistics,
)

__all__ = ["COMPOSITION_SPECS", "build_featurizer"]

COMPOSITION_SPECS = (*FEATURIZER_SETS, "magpie", *ALL)


def build_featurizer(spec: str, *, elements: str | None = None):
    """Return the composition featurizer named by ``spec`` (see the module docstring)."""
    spec = spec.strip()
    if spec == "magpie":
        return ElementStatistics(elements=elements or "magpie_imputed")
    if spec in FEATURIZER_SETS:
        return Compositions(elements=elements or "xenonscale", featurizers=spec)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL]
    if unknown or not names:
        raise ConfigError(
            f"--featurizers {spec!r}: unknown {unknown or spec!r}; use one of "
            f"{', '.join(COMPOSITION_SPECS[:4])} or a comma list of {', '.join(ALL)}"
        )
    return Compositions(elements=elements or "xenonscale", featurizers=names)
