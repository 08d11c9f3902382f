"""Featurize a long sequence in batches, with a progress bar, in this process.

The distributed engine (Dask → Zarr) hands partitions to the same
``featurize_batch``; this helper is the in-process path used by the CLI's
table output and the demo.

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> from xenonscale.featurize.batches import featurize_in_batches
>>> result = featurize_in_batches(
...     Compositions(elements="xenonpy58"), ["Fe2O3", "Xx"], progress=False
... )  # doctest: +REQUIRES_DATA
>>> result.values.shape, len(result.errors)
((2, 290), 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from xenonscale.chem.formula import RowError
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import FeatureBatch, featurize_safely

__all__ = ["featurize_in_batches"]


def featurize_in_batches(
    featurizer,
    inputs: Sequence[object],
    *,
    batch_rows: int = 8192,
    progress: bool = True,
    description: str = "featurize",
) -> FeatureBatch:
    """Run ``featurizer.featurize_batch`` over ``inputs`` in slices of ``batch_rows``.

    Row numbers in the returned errors are positions in ``inputs``; counts
    always add up (``ok.sum() + len(errors) == len(inputs)``).
    """
    if batch_rows < 1:
        raise ConfigError(f"batch_rows={batch_rows!r} must be a positive integer, e.g. 20000")
    n = len(inputs)
    width = len(featurizer.labels)
    values = np.empty((n, width), dtype=np.float64)
    ok = np.zeros(n, dtype=bool)
    errors: list[RowError] = []
    with tqdm(total=n, unit="rows", unit_scale=True, desc=description, disable=not progress) as bar:
        for start in range(0, n, batch_rows):
            part = featurize_safely(featurizer, list(inputs[start : start + batch_rows]))
            stop = start + len(part.ok)
            values[start:stop] = part.values
            ok[start:stop] = part.ok
            errors.extend(RowError(e.row + start, e.input, e.reason) for e in part.errors)
            bar.update(len(part.ok))
    return FeatureBatch(values=values, ok=ok, errors=errors)
