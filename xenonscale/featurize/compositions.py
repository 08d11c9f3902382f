"""Composition descriptors: XenonPy's poolings and matminer's Magpie statistics.

:class:`Compositions` groups XenonPy's seven poolings (``ave:``, ``sum:``,
``var:``, ``gmean:``, ``hmean:``, ``max:``, ``min:``) and ``Counting`` over any
element table; :class:`ElementStatistics` reproduces matminer's
``ElementProperty`` (its ``"magpie"`` preset: 22 properties × 6 statistics =
132 features). Both parse and featurize a whole batch with array operations.

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> comp = Compositions(elements="xenonpy58", featurizers=["WeightedAverage"])
>>> frame = comp.transform(["Fe2O3", "NaCl"])  # doctest: +REQUIRES_DATA
>>> float(frame.loc[0, "ave:atomic_number"])  # (2·26 + 3·8) / 5
15.2
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from xenonscale.chem.formula import (
    CompositionMatrix,
    RowError,
    describe_input,
    parse_compositions,
)
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.elements import ElementTable, load_table
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error
from xenonscale.featurize.pooling import (
    POOLINGS,
    STATISTICS,
    Gathered,
    PreparedTable,
    gather_groups,
)

__all__ = ["FEATURIZER_SETS", "Compositions", "ElementPresence", "ElementStatistics"]

CLASSIC = ("WeightedAverage", "WeightedSum", "WeightedVariance", "MaxPooling", "MinPooling")
ALL = (
    "Counting",
    "WeightedAverage",
    "WeightedSum",
    "WeightedVariance",
    "GeometricMean",
    "HarmonicMean",
    "MaxPooling",
    "MinPooling",
)
FEATURIZER_SETS = {"classic": CLASSIC, "all": ALL, "pooling": ALL[1:]}
MAGPIE_STATS = ("minimum", "maximum", "range", "mean", "avg_dev", "mode")

XENONPY_CITATION = (
    "Liu, C. et al. Machine Learning to Predict Quasicrystals from Chemical Compositions. "
    "Adv. Mater. 33, 2102507 (2021); XenonPy, https://github.com/yoshida-lab/XenonPy"
)
MAGPIE_CITATION = (
    "Ward, L., Agrawal, A., Choudhary, A. & Wolverton, C. A general-purpose machine learning "
    "framework for predicting properties of inorganic materials. npj Comput. Mater. 2, 16028 "
    "(2016)"
)


class _TableFeaturizer(BatchTransformer):
    """Shared machinery: parse → check elements against the table → gather."""

    elements: object

    # Rows per block: keeps the [pairs, properties] temporaries in cache.
    block_rows = 4096

    @property
    def table(self) -> ElementTable:
        """The resolved element table."""
        return self._resolved()[0]

    def _resolved(self) -> tuple[ElementTable, PreparedTable]:
        cached = getattr(self, "_table_cache", None)
        if cached is None or cached[0] is not self.elements:
            table = load_table(self.elements)
            cached = (self.elements, table, PreparedTable.from_values(table.values))
            self._table_cache = cached
        return cached[1], cached[2]

    def _featurize(self, inputs: Sequence[object], width: int, compute) -> FeatureBatch:
        """Parse, check coverage, then fill each group's rows with ``compute``.

        ``compute(gathered)`` yields ``(column_slice, block)`` pairs that together
        cover all ``width`` columns; a group's rows then go to the output at once.
        """
        check_on_error(self.on_error)
        table, prepared = self._resolved()
        matrix = parse_compositions(inputs)
        ok, errors = _check_table_coverage(matrix, table, inputs)
        values = np.empty((len(ok), width), dtype=np.float64)
        values[~ok] = np.nan
        good = np.flatnonzero(ok)
        amounts = matrix.amounts if len(good) == len(ok) else matrix.amounts[good]
        with np.errstate(all="ignore"):
            for start in range(0, len(good), self.block_rows):
                block = amounts[start : start + self.block_rows]
                for rows, gathered in gather_groups(block, table.z_to_row, prepared):
                    group = np.empty((len(rows), width), dtype=np.float64)
                    for columns, part in compute(gathered):
                        group[:, columns] = part
                    values[good[start + rows]] = group
        return FeatureBatch(values=values, ok=ok, errors=errors)


class Compositions(_TableFeaturizer):
    """XenonPy's composition descriptors over an element table.

    Parameters
    ----------
    elements : str, ElementTable or DataFrame, default "xenonscale"
        An element-table preset name (``"xenonpy58"`` for XenonPy-identical
        numbers, ``"magpie"``, ``"xenonscale"``) or a table.
    featurizers : "classic", "all", "pooling" or list of str
        ``"classic"`` = WeightedAverage, WeightedSum, WeightedVariance,
        MaxPooling, MinPooling (XenonPy's default); ``"all"`` adds Counting,
        GeometricMean and HarmonicMean; ``"pooling"`` is ``"all"`` without
        Counting.
    counting : {"fraction", "amount"}, default "fraction"
        What ``Counting`` reports per element of the table: atomic fractions,
        or the amounts as written (XenonPy's ``Counting``).
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN and listed in ``errors_``.

    Examples
    --------
    >>> comp = Compositions(elements="xenonpy58", featurizers="all")  # doctest: +REQUIRES_DATA
    >>> comp.transform(["Fe2O3", "Xx"]).shape
    (2, 500)
    """

    citations = (XENONPY_CITATION,)

    def __init__(
        self,
        *,
        elements: object = "xenonscale",
        featurizers: str | Sequence[str] = "classic",
        counting: str = "fraction",
        on_error: str = "record",
    ) -> None:
        self.elements = elements
        self.featurizers = featurizers
        self.counting = counting
        self.on_error = on_error

    @property
    def featurizer_names(self) -> tuple[str, ...]:
        """The resolved featurizer names, in output order."""
        return resolve_featurizers(self.featurizers)

    @property
    def labels(self) -> list[str]:
        """Feature labels, XenonPy style (``ave:atomic_number``, ..., element symbols)."""
        table = self.table
        labels: list[str] = []
        for name in self.featurizer_names:
            if name == "Counting":
                labels.extend(table.symbols)
            else:
                prefix = POOLINGS[name][0]
                labels.extend(f"{prefix}:{p}" for p in table.properties)
        return labels

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; see :class:`~xenonscale.featurize.base.FeatureBatch`."""
        if self.counting not in ("fraction", "amount"):
            raise ConfigError(f"counting={self.counting!r}: use 'fraction' or 'amount'")
        names = self.featurizer_names

        widths = [len(self.table) if n == "Counting" else len(self.table.properties) for n in names]
        offsets = np.cumsum([0, *widths]).tolist()
        slices = [slice(a, b) for a, b in itertools.pairwise(offsets)]

        def compute(g: Gathered):
            for name, columns in zip(names, slices, strict=True):
                yield columns, self._counting(g) if name == "Counting" else POOLINGS[name][1](g)

        return self._featurize(inputs, offsets[-1], compute)

    def _counting(self, g: Gathered) -> np.ndarray:
        weights = g.fractions if self.counting == "fraction" else g.amounts
        out = np.zeros((len(g), g.table.values.shape[0]), dtype=np.float64)
        out[np.arange(len(g))[:, None], g.table_rows] = weights  # elements are unique per row
        return out


class ElementPresence(_TableFeaturizer):
    """One-hot element presence: ``has:Fe`` is 1 when the formula holds Fe, else 0.

    A bits featurizer (``feature_encoding = "bits"``): a store keeps it as
    ``uint8``. Registered as ``presence`` for ``--kind composition``.

    Parameters
    ----------
    elements : str, ElementTable or DataFrame, default "xenonscale"
        The element table whose elements are the columns (its order); a
        formula with an element outside it is an error row.
    on_error : {"record", "raise"}

    Examples
    --------
    >>> presence = ElementPresence(elements="xenonpy58")  # doctest: +REQUIRES_DATA
    >>> frame = presence.transform(["Fe2O3", "NaCl"])  # doctest: +REQUIRES_DATA
    >>> frame.loc[0, ["has:Fe", "has:O", "has:Na"]].tolist()  # doctest: +REQUIRES_DATA
    [1.0, 1.0, 0.0]
    """

    feature_encoding = "bits"

    def __init__(self, *, elements: object = "xenonscale", on_error: str = "record") -> None:
        self.elements = elements
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        return [f"has:{symbol}" for symbol in self.table.symbols]

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; see :class:`~xenonscale.featurize.base.FeatureBatch`."""
        width = len(self.table)

        def compute(g: Gathered):
            out = np.zeros((len(g), g.table.values.shape[0]), dtype=np.float64)
            out[np.arange(len(g))[:, None], g.table_rows] = g.fractions > 0
            yield slice(0, width), out

        return self._featurize(inputs, width, compute)


class ElementStatistics(_TableFeaturizer):
    """matminer-style element property statistics (``ElementProperty``).

    Parameters
    ----------
    elements : str or ElementTable, default "magpie_imputed"
        ``"magpie_imputed"`` is matminer's default (``impute_nan=True``: a
        missing value is the property's mean over the elements that have one);
        ``"magpie"`` keeps NaN, as matminer's ``impute_nan=False``.
    stats : sequence of str
        Any of ``minimum``, ``maximum``, ``range``, ``mean``, ``avg_dev``,
        ``mode``; default all six, as matminer's ``"magpie"`` preset.
    source_label : str or None
        First word of every label; ``None`` gives ``"MagpieData"`` for the
        Magpie table (matminer's labels) and the table name otherwise.
    on_error : {"record", "raise"}

    Examples
    --------
    >>> stats = ElementStatistics()
    >>> stats.labels[:2]  # doctest: +REQUIRES_DATA
    ['MagpieData minimum Number', 'MagpieData maximum Number']
    """

    citations = (MAGPIE_CITATION,)

    def __init__(
        self,
        *,
        elements: object = "magpie_imputed",
        stats: Sequence[str] = MAGPIE_STATS,
        source_label: str | None = None,
        on_error: str = "record",
    ) -> None:
        self.elements = elements
        self.stats = stats
        self.source_label = source_label
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``"<source> <stat> <property>"``, property-major like matminer."""
        table = self.table
        source = self.source_label or (
            "MagpieData" if table.name.startswith("magpie") else table.name
        )
        return [f"{source} {s} {p}" for p in table.properties for s in self._stats()]

    def _stats(self) -> tuple[str, ...]:
        stats = (self.stats,) if isinstance(self.stats, str) else tuple(self.stats)
        unknown = [s for s in stats if s not in STATISTICS]
        if unknown or not stats:
            raise ConfigError(
                f"stats={self.stats!r}: unknown {unknown}; choose from {sorted(STATISTICS)}"
            )
        return stats

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; columns ordered property-major (matminer's order)."""
        stats = self._stats()

        def compute(g: Gathered):
            per_stat = np.stack([STATISTICS[s](g) for s in stats], axis=2)  # [n, d, stats]
            yield slice(None), per_stat.reshape(len(g), -1)  # property-major columns

        return self._featurize(inputs, len(self.labels), compute)


def resolve_featurizers(featurizers: str | Sequence[str]) -> tuple[str, ...]:
    """Expand ``"classic"`` / ``"all"`` / ``"pooling"`` or validate a list of names."""
    if isinstance(featurizers, str):
        if featurizers in FEATURIZER_SETS:
            return FEATURIZER_SETS[featurizers]
        featurizers = [featurizers]
    names = tuple(featurizers)
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        raise ConfigError(
            f"featurizers={featurizers!r}: unknown {unknown}; use 'classic', 'all', 'pooling' "
            f"or a list of {list(ALL)}"
        )
    return names


def _check_table_coverage(
    matrix: CompositionMatrix, table: ElementTable, inputs: Sequence[object]
) -> tuple[np.ndarray, list[RowError]]:
    """Rows with an element outside ``table`` become errors (with the element named)."""
    ok = matrix.ok.copy()
    errors = list(matrix.errors)
    amounts = matrix.amounts
    outside = table.z_to_row[amounts.indices + 1] < 0
    if outside.any():
        pair_rows = np.repeat(np.arange(amounts.shape[0]), np.diff(amounts.indptr))
        bad_rows = np.unique(pair_rows[outside])
        span = f"{table.symbols[0]}–{table.symbols[-1]}"
        for row in bad_rows.tolist():
            cols = amounts.indices[amounts.indptr[row] : amounts.indptr[row + 1]]
            missing = [PERIODIC_SYMBOLS[c] for c in cols if table.z_to_row[c + 1] < 0]
            errors.append(
                RowError(
                    row,
                    describe_input(inputs[row]),
                    f"element {', '.join(missing)} is outside element table "
                    f"{table.name!r} ({span}, {len(table)} elements)",
                )
            )
        ok[bad_rows] = False
        errors.sort(key=lambda e: e.row)
    return ok, errors
