"""The shared frame of the structure featurizers: parse → compute good rows → FeatureBatch.

A subclass implements ``labels`` and ``_compute(batch, rows, out)``: fill
``out[k]`` for each ``rows[k]`` (row numbers of the parsed batch that are ok)
and return the :class:`~xenonscale.chem.formula.RowError` of any row it cannot
featurize (e.g. a disordered structure for the RDF); those rows become NaN.

Examples
--------
>>> from xenonscale.featurize.structures import RadialDistributionFunction
>>> RadialDistributionFunction().featurize_batch([None]).errors[0].reason
'empty input (None/NaN)'
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error
from xenonscale.featurize.structures.parse import StructureBatch, parse_structures

__all__ = ["StructureFeaturizer"]


class StructureFeaturizer(BatchTransformer):
    """Base class: structure inputs (see :mod:`.parse`) → ``float64[n, d]``."""

    on_error: str = "record"

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        raise NotImplementedError  # pragma: no cover - abstract

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; bad rows are NaN with one reason each (never raises for a row)."""
        check_on_error(self.on_error)
        width = len(self.labels)
        batch = parse_structures(inputs)
        ok = batch.ok.copy()
        rows = np.flatnonzero(ok)
        good = np.full((len(rows), width), np.nan)
        extra = self._compute(batch, rows, good) if len(rows) else []
        values = np.full((len(ok), width), np.nan)
        values[rows] = good
        if extra:
            failed = np.asarray([e.row for e in extra], dtype=np.int64)
            ok[failed] = False
            values[failed] = np.nan
        errors = sorted([*batch.errors, *extra], key=lambda e: e.row)
        return FeatureBatch(values=values, ok=ok, errors=errors)
