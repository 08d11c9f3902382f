"""Mordred's 2D descriptors (optional: ``pip install mordredcommunity``).

:class:`MordredDescriptors` runs the community-maintained Mordred
(``mordredcommunity``, import name ``mordred``) with every descriptor that
needs no 3D conformer (``Calculator(descriptors, ignore_3D=True)``: 1,613
descriptors in 2.0.7). Labels are Mordred's descriptor names (``ABC``,
``nAcid``, ...). A descriptor Mordred reports as missing or failed for a
molecule (``Missing``/``Error`` results) and any non-finite value is NaN; the
row is still ``ok``. Mordred is slow (tens of ms per molecule): meant for
small and medium sets.

Examples
--------
>>> from xenonscale.featurize.molecules import MordredDescriptors
>>> frame = MordredDescriptors().transform(["CCO"])
>>> frame.shape
(1, 1613)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from xenonscale.errors import FeaturizerError
from xenonscale.featurize.molecules.fingerprints import RDKIT_CITATION, MoleculeFeaturizer
from xenonscale.featurize.molecules.parse import rdkit

__all__ = ["MordredDescriptors"]

MORDRED_HINT = "pip install mordredcommunity"
MORDRED_CITATION = (
    "Moriwaki, H., Tian, Y.-S., Kawashita, N. & Takagi, T. Mordred: a molecular descriptor "
    "calculator. J. Cheminform. 10, 4 (2018)"
)


def _calculator() -> Any:
    rdkit()
    try:
        from mordred import Calculator, descriptors
    except ImportError as exc:
        raise FeaturizerError(
            f"MordredDescriptors needs Mordred, which is not importable ({exc}): {MORDRED_HINT}"
        ) from exc
    return Calculator(descriptors, ignore_3D=True)


@functools.lru_cache(maxsize=1)
def _labels() -> tuple[str, ...]:
    return tuple(str(d) for d in _calculator().descriptors)


class MordredDescriptors(MoleculeFeaturizer):
    """Mordred's 2D descriptors (see the module docstring).

    Parameters
    ----------
    on_error : {"record", "raise"}
        ``"record"``: rows that do not parse are NaN and listed in ``errors_``.

    Examples
    --------
    >>> MordredDescriptors().labels[:3]
    ['ABC', 'ABCGG', 'nAcid']
    """

    dtype = np.float64
    citations = (MORDRED_CITATION, RDKIT_CITATION)

    def __init__(self, *, on_error: str = "record") -> None:
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """Mordred's descriptor names, in its order."""
        return list(_labels())

    def featurize_batch(self, inputs):
        """As :meth:`MoleculeFeaturizer.featurize_batch`, with Mordred's numpy warnings muted."""
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return super().featurize_batch(inputs)

    def _row_dtype(self) -> type | None:
        return None

    def _row_function(self) -> Callable[[Any], object]:
        calculator = _calculator()  # one per batch: no state shared between threads
        nan, isfinite = math.nan, math.isfinite

        def row(mol: Any) -> list[float]:
            out = []
            for value in calculator(mol).values():
                try:
                    number = float(value)
                except (TypeError, ValueError):  # mordred's Missing / Error results
                    number = nan
                out.append(number if isfinite(number) else nan)
            return out

        return row
