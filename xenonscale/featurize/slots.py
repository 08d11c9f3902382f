"""A composition as fixed-width data: the elements present and their fractions.

Models that learn over the elements of a formula (attention networks in the
manner of CrabNet and Roost) need the composition itself, not pooled
descriptors. :func:`composition_slots` turns a parsed batch into
``elements int16[n, slots]`` (atomic numbers) and ``fractions float32[n, slots]``
(atomic fractions summing to 1), each row's elements sorted by fraction,
largest first, ties by atomic number; empty slots hold Z = 0 and fraction 0.
A row that failed to parse, or holds more elements than there are slots, is
all zeros with ``fits`` False. :class:`CompositionSlots` is the same as a
registered composition featurizer (``slots``): values ``element:0..15`` then
``fraction:0..15``. The engine writes these arrays into every composition
FeatureStore (``composition_element``, ``composition_fraction``).

Examples
--------
>>> from xenonscale.chem.formula import parse_compositions
>>> elements, fractions, fits = composition_slots(parse_compositions(["Fe2O3", "Xx"]), slots=3)
>>> elements.tolist(), fractions.astype(float).round(2).tolist(), fits.tolist()
([[8, 26, 0], [0, 0, 0]], [[0.6, 0.4, 0.0], [0.0, 0.0, 0.0]], [True, False])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xenonscale.chem.formula import CompositionMatrix, RowError, describe_input, parse_compositions
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error

__all__ = ["COMPOSITION_SLOTS", "CompositionSlots", "composition_slots", "too_many_elements"]

#: Element slots per composition (the widest formulas in the mirror, Matbench steels, hold 13).
COMPOSITION_SLOTS = 16

CRABNET_CITATION = (
    "Wang, A. Y.-T., Kauwe, S. K., Murdock, R. J. & Sparks, T. D. Compositionally restricted "
    "attention-based network for materials property predictions. npj Comput. Mater. 7, 77 "
    "(2021)"
)
ROOST_CITATION = (
    "Goodall, R. E. A. & Lee, A. A. Predicting materials properties without crystal structure: "
    "deep representation learning from stoichiometry. Nat. Commun. 11, 6280 (2020)"
)


def composition_slots(
    matrix: CompositionMatrix, slots: int = COMPOSITION_SLOTS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elements and fractions of each parsed row in ``slots`` fixed columns.

    One ``numpy.lexsort`` over the batch's nonzero entries, no loop over rows.

    Parameters
    ----------
    matrix
        :func:`~xenonscale.chem.formula.parse_compositions` output.
    slots
        Columns per row (default :data:`COMPOSITION_SLOTS`).

    Returns
    -------
    elements : numpy.ndarray
        ``int16[n, slots]``: atomic numbers, by fraction descending then Z
        ascending; 0 = empty slot.
    fractions : numpy.ndarray
        ``float32[n, slots]``: the atomic fractions (amounts / their sum) in the
        same order; 0 in empty slots.
    fits : numpy.ndarray
        ``bool[n]``: the row parsed and has at most ``slots`` elements. Rows
        where it is False are all zeros.

    Raises
    ------
    ConfigError
        ``slots`` is not a positive integer.

    Examples
    --------
    >>> from xenonscale.chem.formula import parse_compositions
    >>> elements, fractions, _ = composition_slots(parse_compositions(["NaCl"]), slots=4)
    >>> elements.tolist(), fractions.tolist()
    ([[11, 17, 0, 0]], [[0.5, 0.5, 0.0, 0.0]])
    """
    if isinstance(slots, bool) or not isinstance(slots, int | np.integer) or slots < 1:
        raise ConfigError(f"slots={slots!r}: use a positive number of element slots, e.g. 16")
    amounts = matrix.amounts.tocsr(copy=True)
    amounts.sum_duplicates()
    amounts.eliminate_zeros()
    n = amounts.shape[0]
    counts = np.diff(amounts.indptr)
    fits = np.asarray(matrix.ok, dtype=bool) & (counts > 0) & (counts <= slots)
    row_of = np.repeat(np.arange(n), counts)
    totals = np.bincount(row_of, weights=amounts.data, minlength=n)
    fraction = amounts.data / totals[row_of]
    z = amounts.indices.astype(np.int64) + 1
    order = np.lexsort((z, -fraction, row_of))  # last key first: row, then -fraction, then Z
    rows = row_of[order]  # nondecreasing: each row's entries stay in its csr span
    position = np.arange(len(order)) - amounts.indptr[rows]
    keep = fits[rows]
    elements = np.zeros((n, slots), dtype=np.int16)
    fractions = np.zeros((n, slots), dtype=np.float32)
    elements[rows[keep], position[keep]] = z[order][keep]
    fractions[rows[keep], position[keep]] = fraction[order][keep]
    return elements, fractions, fits


def too_many_elements(count: int, slots: int = COMPOSITION_SLOTS) -> str:
    """The error reason of a row with more elements than slots.

    >>> too_many_elements(17)
    'has 17 elements; composition slots hold at most 16'
    """
    return f"has {count} elements; composition slots hold at most {slots}"


class CompositionSlots(BatchTransformer):
    """The composition as data: 16 atomic numbers then their 16 fractions.

    Values are float32 ``[n, 32]``: ``element:0..15`` (Z as a float, 0 = empty
    slot) then ``fraction:0..15`` (summing to 1), elements by fraction
    descending, ties by Z (see :func:`composition_slots`). The input of
    attention backbones. No element table is used (``--elements`` does not
    apply). Rows that fail to parse, or hold more than 16 elements, are error
    rows (NaN) with their reason.

    Parameters
    ----------
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN and listed in ``errors_``.

    Examples
    --------
    >>> frame = CompositionSlots().transform(["Fe2O3", "Xx"])
    >>> frame.loc[0, ["element:0", "element:1", "element:2", "fraction:0"]].tolist()
    [8.0, 26.0, 0.0, 0.6000000238418579]
    >>> frame.attrs["errors"][0]["error"]
    "unknown element 'Xx'"
    """

    citations = (CRABNET_CITATION, ROOST_CITATION)

    def __init__(self, *, on_error: str = "record") -> None:
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``element:0`` .. ``element:15``, then ``fraction:0`` .. ``fraction:15``."""
        return [f"element:{i}" for i in range(COMPOSITION_SLOTS)] + [
            f"fraction:{i}" for i in range(COMPOSITION_SLOTS)
        ]

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; see :class:`~xenonscale.featurize.base.FeatureBatch`."""
        check_on_error(self.on_error)
        matrix = parse_compositions(inputs)
        elements, fractions, fits = composition_slots(matrix)
        values = np.hstack([elements.astype(np.float32), fractions])
        ok = matrix.ok & fits
        counts = np.diff(matrix.amounts.indptr)
        too_wide = [
            RowError(row, describe_input(inputs[row]), too_many_elements(int(counts[row])))
            for row in np.flatnonzero(matrix.ok & ~fits).tolist()
        ]
        errors = sorted([*matrix.errors, *too_wide], key=lambda e: e.row)
        values[~ok] = np.nan
        return FeatureBatch(values=values, ok=ok, errors=errors)
