"""Composition descriptors of structures: structure → composition → a composition featurizer.

:class:`StructureComposition` reads each structure (any input form of
:mod:`.parse`), sums the site occupancies per element (what pymatgen's
``structure.composition`` holds, oxidation states dropped) and hands the
``{symbol: amount}`` mappings to a composition featurizer:
:class:`~xenonscale.featurize.compositions.Compositions` (XenonPy's poolings
over an element table) by default, or
:class:`~xenonscale.featurize.compositions.ElementStatistics` (Magpie). With
the engine's ``--kind structure --featurizers composition,rdf,ofm,structure``
one job writes composition and structure descriptors side by side; the
structures are parsed once for all of them.

Examples
--------
>>> from pymatgen.core import Lattice, Structure
>>> from xenonscale.featurize import Compositions
>>> from xenonscale.featurize.structures import StructureComposition
>>> structure = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
>>> featurizer = StructureComposition(Compositions(elements="xenonpy58"))  # doctest: +REQUIRES_DATA
>>> float(featurizer.transform([structure]).loc[0, "ave:atomic_number"])
26.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error
from xenonscale.featurize.compositions import Compositions
from xenonscale.featurize.structures.parse import parse_structures

__all__ = ["StructureComposition"]


class StructureComposition(BatchTransformer):
    """A composition featurizer applied to the compositions of structures.

    Parameters
    ----------
    featurizer : BatchTransformer, optional
        The composition featurizer; default
        ``Compositions(elements="xenonscale", featurizers="classic")``.
    on_error : {"record", "raise"}
        Bad rows (unreadable structure, element outside the table) are NaN
        with a reason.

    Examples
    --------
    >>> StructureComposition().labels[0]
    'ave:atomic_number'
    """

    def __init__(self, featurizer: BatchTransformer | None = None, *, on_error: str = "record"):
        self.featurizer = featurizer
        self.on_error = on_error

    @property
    def composition_featurizer(self) -> BatchTransformer:
        """The featurizer in use (the default one when ``featurizer`` is None)."""
        if self.featurizer is not None:
            return self.featurizer
        cached = getattr(self, "_default", None)
        if cached is None:
            cached = self._default = Compositions()
        return cached

    @property
    def labels(self) -> list[str]:
        return list(self.composition_featurizer.labels)

    @property
    def citations(self) -> tuple[str, ...]:
        return tuple(self.composition_featurizer.citations)

    @property
    def tables(self) -> list:
        """Element tables of the composition featurizer (for provenance)."""
        table = getattr(self.composition_featurizer, "table", None)
        return [table] if table is not None else []

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize the compositions of a batch of structures."""
        check_on_error(self.on_error)
        inner = self.composition_featurizer
        batch = parse_structures(inputs)
        rows = np.flatnonzero(batch.ok)
        amounts = batch.element_amounts()
        part = inner.featurize_batch([amounts[r] for r in rows.tolist()])
        values = np.full((len(batch), part.values.shape[1]), np.nan)
        values[rows] = part.values
        ok = batch.ok.copy()
        ok[rows[~part.ok]] = False
        values[~ok] = np.nan
        errors = list(batch.errors)
        for error in part.errors:
            row = int(rows[error.row])
            errors.append(RowError(row, describe_input(batch.inputs[row]), error.reason))
        errors.sort(key=lambda e: e.row)
        return FeatureBatch(values=values, ok=ok, errors=errors)
