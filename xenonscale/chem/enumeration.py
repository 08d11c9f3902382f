"""The space of candidate compositions over given elements, by row number.

:class:`CompositionSpace` holds every **reduced formula** over the given
elements with at most ``max_atoms`` atoms and ``min_elements ..
max_elements`` distinct elements: integer amounts ``>= 1`` on the elements
present, whose greatest common divisor is 1 (Fe2O3 is a candidate, Fe4O6 is
the same candidate and is not listed again; ``max_atoms`` counts the atoms of
the reduced formula). Nothing is enumerated to know the space: its size is
exact arithmetic (Möbius inversion over the gcd), and row ``i`` is computed
from ``i`` alone (unranking), so a worker makes any block of rows without the
rows before it.

Order (fixed; row numbers are stable):

1. the number of elements, ascending;
2. the set of elements, in colex order of their positions in
   :attr:`CompositionSpace.elements` (sorted as pymatgen writes formulas: by
   electronegativity, ties by atomic number);
3. the total number of atoms, ascending;
4. the amounts, in colex order of their partial sums
   (:mod:`xenonscale.chem.combinadic`), non-reduced vectors skipped.

The amounts of one set of ``c`` elements are the same list for every set, so
it is made once (a table, when it has at most :data:`INNER_TABLE_ROWS`
rows) and gathered; a larger list is unranked from its start row on (one
short walk over Möbius counts, then vectorized colex unranking with a gcd
filter).

**Charge balance** (``charge_balanced=True``,
:class:`~xenonscale.chem.neutrality.ChargeNeutrality`) keeps the rows that
can be charge-neutral. The kept rows have their own numbering
``0 ..< count()``: :meth:`CompositionSpace.plan` scans the whole space once
in blocks of ``block_rows`` rows (no formulas, a few million rows a second),
counts the kept rows of each block and cuts the kept numbering into
:class:`Span` s: kept rows ``start ..< stop``, found from raw row ``offset``
on after skipping ``skip`` kept rows. :meth:`CompositionSpace.take` makes one
span anywhere, so partitions stay contiguous, stable and independent.
Without charge balance the kept numbering is the raw one and a plan costs
nothing.

Examples
--------
>>> space = CompositionSpace(["Li", "Fe", "O"], max_atoms=4)
>>> space.elements, space.size
(('Li', 'Fe', 'O'), 19)
>>> amounts, formulas = space.slice(0, 5)
>>> formulas
['LiFe', 'LiFe2', 'Li2Fe', 'LiFe3', 'Li3Fe']
>>> amounts.tolist()[1]
[1, 2, 0]
>>> space.slice(16, 19)[1]
['LiFeO2', 'LiFe2O', 'Li2FeO']
>>> balanced = CompositionSpace(["Li", "Fe", "O"], max_atoms=5, charge_balanced=True)
>>> balanced.size, balanced.count()
(37, 5)
>>> spans = balanced.plan(rows_per_partition=2)
>>> [(span.start, span.stop) for span in spans]
[(0, 2), (2, 4), (4, 5)]
>>> balanced.take(spans[1]).formulas
['Fe2O3', 'LiFeO2']
>>> balanced.take(spans[1]).index.tolist()
[24, 28]
"""

from __future__ import annotations

import threading
import warnings
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from math import comb, gcd

import numpy as np

from xenonscale.chem.combinadic import (
    LIMIT,
    binomials,
    rank_vectors,
    unrank_subsets,
    unrank_vectors,
)
from xenonscale.chem.neutrality import OXIDATION_STATE_SETS, ChargeNeutrality
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError

__all__ = [
    "BLOCK_ROWS",
    "INNER_TABLE_ROWS",
    "MAX_ATOMS",
    "Candidates",
    "CompositionSpace",
    "Span",
    "parse_elements",
]

#: Largest ``max_atoms`` (a formula unit of a candidate).
MAX_ATOMS = 1000
#: Raw rows per block of a charge-balance scan (and per batch of :meth:`~CompositionSpace.batches`).
BLOCK_ROWS = 1 << 18
#: Largest list of amount vectors of one element count kept as a table.
INNER_TABLE_ROWS = 1 << 20
#: Version of the order above (part of a source's fingerprint).
ORDER_VERSION = 1

_SYMBOLS = frozenset(PERIODIC_SYMBOLS)


@dataclass(frozen=True)
class Span:
    """Kept rows ``start ..< stop``: the first is the kept row after ``skip`` kept rows from
    raw row ``offset`` on (``offset == start`` and ``skip == 0`` without a filter)."""

    start: int
    stop: int
    offset: int
    skip: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class Candidates:
    """Rows of a space: ``index`` (raw row numbers), ``amounts[n, elements]`` and formulas."""

    index: np.ndarray
    amounts: np.ndarray
    formulas: list[str]

    def __len__(self) -> int:
        return len(self.formulas)

    @property
    def n_atoms(self) -> np.ndarray:
        """Atoms per formula unit (int32)."""
        return self.amounts.sum(axis=1, dtype=np.int32)

    @property
    def n_elements(self) -> np.ndarray:
        """Distinct elements (int32)."""
        return (self.amounts > 0).sum(axis=1, dtype=np.int32)


@dataclass
class _Chunk:
    """Consecutive raw rows with ``c`` elements: element columns and amounts, ``[n, c]``."""

    index: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    inner: np.ndarray | None = None  # rows of the element count's table, when there is one

    def __getitem__(self, keep) -> _Chunk:
        inner = None if self.inner is None else self.inner[keep]
        return _Chunk(self.index[keep], self.columns[keep], self.values[keep], inner)


def parse_elements(elements: str | Sequence[str]) -> tuple[str, ...]:
    """Element symbols from ``"Li,Fe,O"``, ``"Li-Fe-O"`` or a sequence, checked, in
    formula order (electronegativity, then atomic number).

    >>> parse_elements("O,Fe-Li")
    ('Li', 'Fe', 'O')
    """
    if isinstance(elements, str):
        items = [part.strip() for part in elements.replace("-", ",").split(",")]
    else:
        items = [str(part).strip() for part in elements]
    items = [item for item in items if item]
    if not items:
        raise ConfigError(f"elements={elements!r} is empty: give symbols, e.g. 'Li,Fe,O'")
    for item in items:
        if item not in _SYMBOLS:
            hint = f"did you mean {item.capitalize()!r}?" if item.capitalize() in _SYMBOLS else ""
            raise ConfigError(
                f"elements: {item!r} is not an element symbol: {hint or 'use symbols H to Og'} "
                "(e.g. 'Li,Fe,O')"
            )
    repeated = sorted({item for item in items if items.count(item) > 1})
    if repeated:
        raise ConfigError(f"elements: {repeated[0]!r} is given twice: give each element once")
    return tuple(sorted(items, key=_formula_key))


def _formula_key(symbol: str) -> tuple[float, int]:
    from pymatgen.core.periodic_table import Element  # slow import, only when a space is made

    with warnings.catch_warnings():  # noble gases: no Pauling electronegativity (NaN)
        warnings.simplefilter("ignore")
        x = Element(symbol).X
    z = PERIODIC_SYMBOLS.index(symbol) + 1
    return (x if x == x else float("inf"), z)


def _mobius(n: int) -> list[int]:
    mu = [1] * (n + 1)
    prime = [True] * (n + 1)
    for p in range(2, n + 1):
        if prime[p]:
            for m in range(p, n + 1, p):
                if m > p:
                    prime[m] = False
                mu[m] = -mu[m]
            for m in range(p * p, n + 1, p * p):
                mu[m] = 0
    return mu


class CompositionSpace:
    """Every reduced formula over ``elements`` (see the module docstring).

    Parameters
    ----------
    elements
        Element symbols (``"Li,Fe,O"``, ``"Li-Fe-O"`` or a sequence), any order.
    max_atoms
        Most atoms in one (reduced) formula unit, 1 .. :data:`MAX_ATOMS`.
    min_elements, max_elements
        Fewest and most distinct elements (default 2 and all): compounds, not the
        elements themselves.
    charge_balanced
        Keep only compositions that can be charge-neutral
        (:class:`~xenonscale.chem.neutrality.ChargeNeutrality`).
    oxidation_states
        Which oxidation states (``icsd``, ``common``, ``all`` or a mapping of
        replacements, see :mod:`xenonscale.chem.neutrality`).

    Picklable (caches are rebuilt where needed) and safe to share between threads.
    """

    def __init__(
        self,
        elements: str | Sequence[str],
        max_atoms: int,
        *,
        min_elements: int = 2,
        max_elements: int | None = None,
        charge_balanced: bool = False,
        oxidation_states: str | Mapping = "icsd",
    ) -> None:
        self.elements = parse_elements(elements)
        k = len(self.elements)
        self.max_atoms = _whole("max_atoms", max_atoms, 1, MAX_ATOMS)
        given = f"{k} element{'s' if k > 1 else ''} given"
        self.min_elements = _whole("min_elements", min_elements, 1, k, f"at most {given}")
        self.max_elements = _whole(
            "max_elements",
            k if max_elements is None else max_elements,
            self.min_elements,
            k,
            f"from min_elements={self.min_elements} to the {given}",
        )
        self.charge_balanced = bool(charge_balanced)
        if (
            not isinstance(oxidation_states, Mapping)
            and oxidation_states not in OXIDATION_STATE_SETS
        ):
            raise ConfigError(
                f"oxidation_states={oxidation_states!r} is unknown: use one of "
                f"{', '.join(OXIDATION_STATE_SETS)} or a mapping {{symbol: states}}"
            )
        self.oxidation_states = oxidation_states
        self.neutrality = (
            ChargeNeutrality(self.elements, self.max_atoms, oxidation_states)
            if self.charge_balanced
            else None
        )
        self._count_space()
        self._setup()

    def __repr__(self) -> str:
        balanced = ", charge-balanced" if self.charge_balanced else ""
        return (
            f"CompositionSpace({','.join(self.elements)}; max_atoms={self.max_atoms}; "
            f"{self.min_elements}-{self.max_elements} elements{balanced}; {self.size:,} rows)"
        )

    # -- counting ---------------------------------------------------------------------------

    def _count_space(self) -> None:
        n = self.max_atoms
        self._mu = _mobius(n)
        self._divisors = [[] for _ in range(n + 1)]  # squarefree divisors (mu != 0)
        for d in range(1, n + 1):
            if self._mu[d]:
                for m in range(d, n + 1, d):
                    self._divisors[m].append(d)
        self.counts: dict[int, int] = {}  # c → reduced vectors of c positive amounts
        self._totals: dict[int, list[int]] = {}  # c → cumulative count by total atoms
        self._offsets: dict[int, int] = {}  # c → first row of the c-element block
        size = 0
        k = len(self.elements)
        for c in range(self.min_elements, self.max_elements + 1):
            running, cumulative = 0, []
            for t in range(1, n + 1):
                running += self._completions(c, t, 0)
                cumulative.append(running)
            self.counts[c], self._totals[c], self._offsets[c] = running, cumulative, size
            size += comb(k, c) * running
        if size >= LIMIT:
            raise ConfigError(
                f"the space holds {size:.3g} compositions, more than rows can number (2**62): "
                "lower max_atoms or max_elements, or give fewer elements"
            )
        self.size = size
        big = [c for c, g in self.counts.items() if g > INNER_TABLE_ROWS]
        for c in big:
            if comb(n, c) >= LIMIT:
                raise ConfigError(
                    f"{c}-element amount vectors of up to {n} atoms are too many to "
                    "number: lower max_atoms or max_elements"
                )

    def _completions(self, m: int, r: int, g: int) -> int:
        """Vectors of ``m`` positive amounts summing to ``r`` whose gcd with ``g`` is 1
        (``g = 0``: whose own gcd is 1). Möbius: the sum over d | g, d | r of
        mu(d) C(r/d - 1, m - 1)."""
        if m == 0:
            return int(r == 0 and g == 1)
        total = 0
        for d in self._divisors[g if g else r]:
            if r % d == 0:
                total += self._mu[d] * comb(r // d - 1, m - 1)
        return total

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._inner: dict[int, np.ndarray] = {}
        self._inner_ranks: dict[int, tuple] = {}
        self._block_counts: dict[int, np.ndarray] = {}
        width = max(self.max_atoms, len(self.elements)) + 1
        self._table = binomials(width, max(self.max_elements, 1))
        pieces = [
            [""] + [s] + [f"{s}{a}" for a in range(2, self.max_atoms + 1)] for s in self.elements
        ]
        self._pieces = np.array(pieces, dtype=str)

    def __getstate__(self) -> dict:
        cached = ("_lock", "_inner", "_inner_ranks", "_block_counts", "_table", "_pieces")
        return {k: v for k, v in self.__dict__.items() if k not in cached}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def describe(self) -> dict:
        """The space's definition (JSON-serializable): what identifies its rows."""
        out = {
            "space": "compositions",
            "order": ORDER_VERSION,
            "elements": list(self.elements),
            "max_atoms": self.max_atoms,
            "min_elements": self.min_elements,
            "max_elements": self.max_elements,
            "reduced": True,
            "size": self.size,
            "charge_balanced": self.charge_balanced,
        }
        if self.neutrality is not None:
            out.update(self.neutrality.describe())
        return out

    # -- raw rows ---------------------------------------------------------------------------

    def slice(self, start: int, stop: int) -> tuple[np.ndarray, list[str]]:
        """Raw rows ``start ..< stop`` (every composition, before any charge filter):
        ``(amounts int32 [n, len(elements)], formulas)``, made without the rows before."""
        rows = self._make(list(self._chunks(*self._bounds(start, stop))))
        return rows.amounts, rows.formulas

    def _bounds(self, start: int, stop: int) -> tuple[int, int]:
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self.size:
            raise ConfigError(
                f"rows {start}..{stop}: give 0 <= start <= stop <= size ({self.size})"
            )
        return start, stop

    def _chunks(self, start: int, stop: int) -> Iterator[_Chunk]:
        """Raw rows ``start ..< stop`` as chunks of one element count, in order."""
        for c, first in self._offsets.items():
            per_set = self.counts[c]
            lo, hi = max(start, first), min(stop, first + comb(len(self.elements), c) * per_set)
            if lo >= hi:
                continue
            if per_set <= INNER_TABLE_ROWS:
                local = np.arange(lo - first, hi - first, dtype=np.int64)
                sets, inner = np.divmod(local, per_set)
                columns = unrank_subsets(sets, c, self._table)
                values = self._inner_table(c)[inner]
                yield _Chunk(local + first, columns, values, inner)
                continue
            for s in range((lo - first) // per_set, (hi - 1 - first) // per_set + 1):
                base = first + s * per_set
                i0, i1 = max(lo, base) - base, min(hi, base + per_set) - base
                columns = unrank_subsets(np.array([s]), c, self._table)
                values = self._inner_range(c, i0, i1)
                index = np.arange(base + i0, base + i1, dtype=np.int64)
                yield _Chunk(index, np.repeat(columns, len(values), axis=0), values)

    def _inner_table(self, c: int) -> np.ndarray:
        """Every reduced vector of ``c`` amounts, in order (cached)."""
        found = self._inner.get(c)
        if found is None:
            with self._lock:
                found = self._inner.get(c)
                if found is None:
                    found = self._raw_reduced(c, 0, comb(self.max_atoms, c))
                    self._inner[c] = found
        return found

    def _raw_reduced(self, c: int, first: int, stop: int, need: int | None = None) -> np.ndarray:
        """Reduced vectors among raw vector ranks ``first ..< stop`` (at most ``need``)."""
        parts, got = [], 0
        step = BLOCK_ROWS if need is None else max(64, need + need // 2 + 64)
        while first < stop and (need is None or got < need):
            ranks = np.arange(first, min(first + step, stop), dtype=np.int64)
            vectors = unrank_vectors(ranks, c, self._table)
            vectors = vectors[np.gcd.reduce(vectors, axis=1) == 1]
            if need is not None:
                vectors = vectors[: need - got]
            parts.append(vectors.astype(np.int16))
            got += len(vectors)
            first += len(ranks)
        return np.concatenate(parts) if parts else np.zeros((0, c), dtype=np.int16)

    def _inner_range(self, c: int, i0: int, i1: int) -> np.ndarray:
        """Reduced vectors ``i0 ..< i1`` of ``c`` amounts: walk to ``i0``, then generate."""
        if i0 >= i1:
            return np.zeros((0, c), dtype=np.int16)
        totals = self._totals[c]
        t = bisect_right(totals, i0) + 1  # totals[t - 1] counts vectors of total <= t
        q = i0 - (totals[t - 2] if t >= 2 else 0)
        amounts = [0] * c
        r, g = t, 0
        for pos in range(c - 1, 0, -1):  # colex: the last amount first, largest first
            for a in range(r - pos, 0, -1):
                here = self._completions(pos, r - a, gcd(g, a))
                if q < here:
                    break
                q -= here
            amounts[pos], r, g = a, r - a, gcd(g, a)
        amounts[0] = r
        first = int(rank_vectors(np.array([amounts]), self._table)[0])
        return self._raw_reduced(c, first, comb(self.max_atoms, c), need=i1 - i0)

    def _make(self, chunks: list[_Chunk]) -> Candidates:
        """Chunks → dense amounts and formulas."""
        k = len(self.elements)
        n = sum(len(chunk.index) for chunk in chunks)
        amounts = np.zeros((n, k), dtype=np.int32)
        formulas: list[str] = []
        at = 0
        flat, pieces, width = amounts.reshape(-1), self._pieces.reshape(-1), self.max_atoms + 1
        for chunk in chunks:
            rows = np.arange(at * k, (at + len(chunk.index)) * k, k)[:, None]
            flat[(rows + chunk.columns).ravel()] = chunk.values.ravel()
            parts = np.take(pieces, chunk.columns * width + chunk.values)
            text = parts[:, 0]
            for j in range(1, parts.shape[1]):
                text = np.strings.add(text, parts[:, j])
            formulas += text.tolist()
            at += len(chunk.index)
        index = np.concatenate([c.index for c in chunks]) if chunks else np.zeros(0, np.int64)
        return Candidates(index, amounts, formulas)

    # -- the kept rows ----------------------------------------------------------------------

    def _neutral(self, chunk: _Chunk) -> np.ndarray:
        c = chunk.columns.shape[1]
        ranks = None
        if chunk.inner is not None:
            found = self._inner_ranks.get(c)
            if found is None:
                found = self._inner_ranks[c] = self.neutrality.half_ranks(self._inner_table(c))
            ranks = (found[0][chunk.inner], found[1][chunk.inner])
        return self.neutrality.neutral_groups(chunk.columns, chunk.values, ranks)

    def _kept(self, chunk: _Chunk) -> _Chunk:
        return chunk if self.neutrality is None else chunk[self._neutral(chunk)]

    def block_counts(self, block_rows: int = BLOCK_ROWS) -> np.ndarray:
        """Kept rows in each block of ``block_rows`` raw rows (int64; one scan, cached)."""
        block_rows = _whole("block_rows", block_rows, 1, LIMIT)
        found = self._block_counts.get(block_rows)
        if found is not None:
            return found
        blocks = -(-self.size // block_rows)
        if self.neutrality is None:
            counts = np.full(blocks, block_rows, dtype=np.int64)
            if blocks:
                counts[-1] = self.size - (blocks - 1) * block_rows
        else:
            counts = np.zeros(blocks, dtype=np.int64)
            for b in range(blocks):
                lo, hi = b * block_rows, min((b + 1) * block_rows, self.size)
                counts[b] = sum(int(self._neutral(ch).sum()) for ch in self._chunks(lo, hi))
        self._block_counts[block_rows] = counts
        return counts

    def count(self, block_rows: int = BLOCK_ROWS) -> int:
        """Kept rows: :attr:`size` without a filter, else a scan (:meth:`block_counts`)."""
        if self.neutrality is None:
            return self.size
        return int(self.block_counts(block_rows).sum())

    def plan(self, rows_per_partition: int, block_rows: int = BLOCK_ROWS) -> list[Span]:
        """Kept rows cut into spans of ``rows_per_partition`` (the last may be shorter)."""
        rows = _whole("rows_per_partition", rows_per_partition, 1, LIMIT)
        if self.neutrality is None:
            return [Span(s, min(s + rows, self.size), s) for s in range(0, self.size, rows)]
        counts = self.block_counts(block_rows)
        ends = np.cumsum(counts)
        total = int(ends[-1]) if len(ends) else 0
        spans = []
        for start in range(0, total, rows):
            block = int(np.searchsorted(ends, start, side="right"))
            before = int(ends[block - 1]) if block else 0
            spans.append(Span(start, min(start + rows, total), block * block_rows, start - before))
        return spans

    def take(self, span: Span) -> Candidates:
        """The kept rows of ``span`` (from :meth:`plan`), wherever it lies."""
        chunks, skip, need = [], span.skip, span.rows
        at = span.offset
        while need > 0 and at < self.size:
            stop = min(at + max(BLOCK_ROWS, need), self.size)
            for chunk in self._chunks(at, stop):
                chunk = self._kept(chunk)
                if skip:
                    dropped = min(skip, len(chunk.index))
                    chunk, skip = chunk[dropped:], skip - dropped
                chunk = chunk[:need]
                need -= len(chunk.index)
                if len(chunk.index):
                    chunks.append(chunk)
                if need == 0:
                    break
            at = stop
        if need > 0:
            raise ConfigError(
                f"span {span.start}..{span.stop} runs past the end of the space: plan it again "
                "with this space's plan()"
            )
        return self._make(chunks)

    def batches(
        self, batch_rows: int = BLOCK_ROWS, limit: int | None = None
    ) -> Iterator[Candidates]:
        """The kept rows in order, at most ``batch_rows`` raw rows' worth per batch, stopping
        after ``limit`` kept rows: for streaming every candidate in one process."""
        batch_rows = _whole("batch_rows", batch_rows, 1, LIMIT)
        left = self.size if limit is None else _whole("limit", limit, 1, LIMIT)
        for start in range(0, self.size, batch_rows):
            chunks = []
            for chunk in self._chunks(start, min(start + batch_rows, self.size)):
                chunk = self._kept(chunk)[:left]
                left -= len(chunk.index)
                if len(chunk.index):
                    chunks.append(chunk)
            if chunks:
                yield self._make(chunks)
            if left <= 0:
                return


def _whole(name: str, value, low: int, high: int, why: str = "") -> int:
    bounds = f"from {low} to {high}" + (f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name}={value!r} is not a whole number: give one {bounds}")
    if not low <= value <= high:
        raise ConfigError(f"{name}={value!r} is out of range: give a number {bounds}")
    return int(value)
