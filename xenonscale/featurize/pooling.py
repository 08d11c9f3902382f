"""Composition poolings as whole-batch array operations.

A batch of compositions is split into groups of rows with the same number of
elements ``c``; each group is *gathered* into dense arrays — element values
``x[m, c, d]`` from the element table, amounts ``n[m, c]``, fractions ``w[m, c]``
— and every pooling is one reduction over axis 1 (a batched matrix product or
``max``/``min``). There is no per-composition Python loop, no padding and no
temporary larger than the group.

Definitions follow XenonPy 0.6.7 (amounts ``n_i``, ``N = Σ n_i``, fractions
``w_i = n_i / N``, element values ``x_i``):

==========  ===========================  ======================================
label       name                         value
==========  ===========================  ======================================
``ave:``    ``WeightedAverage``          ``Σ w_i x_i``
``sum:``    ``WeightedSum``              ``Σ n_i x_i``
``var:``    ``WeightedVariance``         ``Σ w_i (x_i − ave)²``
``gmean:``  ``GeometricMean``            ``(Π x_i^{n_i})^{1/N}``
``hmean:``  ``HarmonicMean``             ``N / Σ (n_i / x_i)``
``max:``    ``MaxPooling``               ``max x_i``
``min:``    ``MinPooling``               ``min x_i``
==========  ===========================  ======================================

and matminer's ``PropertyStats`` for the Magpie preset (``minimum``,
``maximum``, ``range``, ``mean``, ``avg_dev``, ``mode``).

Examples
--------
>>> import numpy as np
>>> from xenonscale.chem import parse_compositions
>>> from xenonscale.featurize.pooling import PreparedTable, gather_groups, weighted_average
>>> table = PreparedTable.from_values(np.array([[1.0], [8.0]]))  # 2 elements, 1 property
>>> z_to_row = np.full(119, -1); z_to_row[[1, 8]] = [0, 1]
>>> [(rows.tolist(), weighted_average(g).round(3).ravel().tolist())
...  for rows, g in gather_groups(parse_compositions(["HO", "H2O"]).amounts, z_to_row, table)]
[([0, 1], [4.5, 3.333])]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

__all__ = [
    "POOLINGS",
    "STATISTICS",
    "Gathered",
    "PreparedTable",
    "gather_groups",
    "geometric_mean",
    "harmonic_mean",
    "max_pooling",
    "min_pooling",
    "stat_avg_dev",
    "stat_mode",
    "stat_range",
    "weighted_average",
    "weighted_sum",
    "weighted_variance",
]


@dataclass(frozen=True)
class PreparedTable:
    """An element table's values ``x`` with ``log|x|`` and ``1/x`` computed once."""

    values: np.ndarray  # [n_elements, d]
    log_abs: np.ndarray
    inverse: np.ndarray
    negative_columns: np.ndarray  # columns holding at least one negative value

    @classmethod
    def from_values(cls, values: np.ndarray) -> PreparedTable:
        with np.errstate(divide="ignore", invalid="ignore"):
            return cls(
                values=values,
                log_abs=np.log(np.abs(values)),
                inverse=1.0 / values,
                negative_columns=np.flatnonzero((values < 0).any(axis=0)),
            )


class Gathered:
    """``m`` compositions that each hold exactly ``c`` elements.

    Attributes
    ----------
    table_rows : int64 ``[m, c]``
        Element-table row of each element of each composition.
    amounts, fractions : float64 ``[m, c]``
    totals : float64 ``[m]`` (``N``)
    values : float64 ``[m, c, d]`` (gathered on first use)
    """

    def __init__(self, table: PreparedTable, table_rows: np.ndarray, amounts: np.ndarray):
        self.table = table
        self.table_rows = table_rows
        self.amounts = amounts
        self.totals = amounts.sum(axis=1)
        self.fractions = amounts / self.totals[:, None]

    def __len__(self) -> int:
        return len(self.totals)

    @cached_property
    def values(self) -> np.ndarray:
        return self.table.values[self.table_rows]

    @cached_property
    def mean(self) -> np.ndarray:
        """``Σ w_i x_i``, shared by the average, variance and deviation poolings."""
        return self.weighted(self.fractions, self.values)

    def weighted(self, weights: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``Σ_i weights[:, i] · values[:, i, :]`` as a batched matrix product."""
        return np.matmul(weights[:, None, :], values)[:, 0, :]


def gather_groups(
    amounts: sp.csr_matrix, z_to_row: np.ndarray, table: PreparedTable
) -> Iterator[tuple[np.ndarray, Gathered]]:
    """Yield ``(row_positions, Gathered)`` per element count for non-empty CSR rows.

    ``amounts`` columns are ``Z - 1``; ``z_to_row[Z]`` is the table row of
    element ``Z`` (callers reject rows with elements outside the table first).
    """
    indptr = amounts.indptr
    counts = np.diff(indptr)
    if (counts == 0).any():
        raise ValueError("gather_groups() needs non-empty rows; drop failed rows first")
    for count in np.unique(counts).tolist():
        rows = np.flatnonzero(counts == count)
        pairs = indptr[rows][:, None] + np.arange(count)
        table_rows = z_to_row[amounts.indices[pairs] + 1]
        yield rows, Gathered(table, table_rows, amounts.data[pairs].astype(np.float64))


def weighted_average(g: Gathered) -> np.ndarray:
    """``Σ w_i x_i`` (XenonPy ``ave:``, matminer ``mean``)."""
    return g.mean.copy()


def weighted_sum(g: Gathered) -> np.ndarray:
    """``Σ n_i x_i`` (XenonPy ``sum:``)."""
    return g.weighted(g.amounts, g.values)


def weighted_variance(g: Gathered) -> np.ndarray:
    """``Σ w_i (x_i − ave)²`` (XenonPy ``var:``), from deviations, not raw moments."""
    deviation = g.values - g.mean[:, None, :]
    np.multiply(deviation, deviation, out=deviation)
    return g.weighted(g.fractions, deviation)


def geometric_mean(g: Gathered) -> np.ndarray:
    """``(Π x_i^{n_i})^{1/N}`` (XenonPy ``gmean:``), evaluated in log space.

    Follows XenonPy's sign rules: a negative ``x_i`` with a non-integer amount
    gives NaN; a negative product gives NaN unless ``1/N`` is an integer. Where
    XenonPy's direct product overflows to ``inf``, the log form stays finite.
    """
    log_abs = g.table.log_abs[g.table_rows]
    result = np.exp(g.weighted(g.amounts, log_abs) / g.totals[:, None])
    columns = g.table.negative_columns
    if len(columns) == 0:
        return result
    negative = g.values[:, :, columns] < 0
    integer_amount = (np.mod(g.amounts, 1.0) == 0.0)[:, :, None]
    odd_amount = (np.mod(g.amounts, 2.0) == 1.0)[:, :, None]
    undefined = (negative & ~integer_amount).any(axis=1)
    product_negative = ((negative & odd_amount).sum(axis=1) % 2) == 1
    inverse_total = (1.0 / g.totals)[:, None]
    integer_root = np.mod(inverse_total, 1.0) == 0.0
    root_sign = np.where(np.mod(inverse_total, 2.0) == 1.0, -1.0, 1.0)
    magnitude = result[:, columns]
    signed = np.where(
        product_negative, np.where(integer_root, root_sign * magnitude, np.nan), magnitude
    )
    signed[undefined] = np.nan
    result[:, columns] = signed
    return result


def harmonic_mean(g: Gathered) -> np.ndarray:
    """``N / Σ (n_i / x_i)`` (XenonPy ``hmean:``; a zero ``x_i`` gives 0)."""
    inverse = g.table.inverse[g.table_rows]
    return g.totals[:, None] / g.weighted(g.amounts, inverse)


def max_pooling(g: Gathered) -> np.ndarray:
    """``max x_i`` over the elements present (XenonPy ``max:``, matminer ``maximum``)."""
    return g.values.max(axis=1)


def min_pooling(g: Gathered) -> np.ndarray:
    """``min x_i`` over the elements present (XenonPy ``min:``, matminer ``minimum``)."""
    return g.values.min(axis=1)


def stat_range(g: Gathered) -> np.ndarray:
    """``max x_i − min x_i`` (matminer ``range``)."""
    return max_pooling(g) - min_pooling(g)


def stat_avg_dev(g: Gathered) -> np.ndarray:
    """``Σ w_i |x_i − mean|`` (matminer ``avg_dev``)."""
    deviation = np.abs(g.values - g.mean[:, None, :])
    return g.weighted(g.fractions, deviation)


def stat_mode(g: Gathered) -> np.ndarray:
    """Value of the most abundant element; ties go to the smallest value (matminer ``mode``).

    "Most abundant" uses ``numpy.isclose`` on the amounts, as matminer does; a
    NaN value among the most abundant makes the mode NaN, as in matminer.
    """
    top = np.isclose(g.amounts, g.amounts.max(axis=1, keepdims=True))[:, :, None]
    return np.where(top, g.values, np.inf).min(axis=1)


# name -> (XenonPy label prefix, pooling function)
POOLINGS = {
    "WeightedAverage": ("ave", weighted_average),
    "WeightedSum": ("sum", weighted_sum),
    "WeightedVariance": ("var", weighted_variance),
    "GeometricMean": ("gmean", geometric_mean),
    "HarmonicMean": ("hmean", harmonic_mean),
    "MaxPooling": ("max", max_pooling),
    "MinPooling": ("min", min_pooling),
}

# matminer PropertyStats name -> function
STATISTICS = {
    "minimum": min_pooling,
    "maximum": max_pooling,
    "range": stat_range,
    "mean": weighted_average,
    "avg_dev": stat_avg_dev,
    "mode": stat_mode,
}
