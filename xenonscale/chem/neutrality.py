"""Charge neutrality: can a composition balance with its elements' oxidation states?

A composition is neutral when every atom can take one of its element's
oxidation states so that the charges sum to zero. Atoms of one element may
take different states (mixed valence: Fe3O4 is Fe(II) + 2 Fe(III) + 4 O(-II)),
exactly the search of pymatgen's ``Composition.oxi_state_guesses()``: a
composition is neutral here if and only if that returns at least one guess
(``tests/test_enumeration.py`` checks every candidate of small spaces). As
there, an element alone is neutral (the element, oxidation state 0), and an
element without oxidation states (He, Ne, ...) balances nothing else.

The oxidation states are pymatgen's (:data:`OXIDATION_STATE_SETS`):

``icsd`` (default)
    ``Element.icsd_oxidation_states``, or ``common_oxidation_states`` where the
    ICSD list is empty: what ``oxi_state_guesses()`` searches by default.
``common``
    ``Element.common_oxidation_states``.
``all``
    ``Element.oxidation_states`` (``oxi_state_guesses(all_oxi_states=True)``):
    very inclusive.

A mapping ``{symbol: states}`` replaces the states of those elements (like
``oxi_states_override``). pymatgen rather than SMACT: pymatgen is already a
core dependency and defines the reference check, while SMACT (another
dependency) assigns one state per element (no mixed valence) from its own
lists, so its verdicts could not be checked against ``oxi_state_guesses``.

How the test is vectorized: the charges one element's ``n`` atoms can sum to
form a set of integers in ``[-Q, Q]`` (``Q = max_atoms × largest |state|``),
held as a bitset of ``2Q + 1`` bits. The elements of a composition are split
into a low and a high half; for every group of elements (a half) a table
holds, for each vector of its amounts, the bitset of the group's achievable
sums (the high half's negated). A row is neutral when its two bitsets share a
bit: two gathers and an AND over a few 64-bit words. A group's table is built
once, the first time a row needs it (amount by amount: one shifted OR per
oxidation state), and indexed by the colex rank of the amount vector
(:mod:`xenonscale.chem.combinadic`).

Examples
--------
>>> import numpy as np
>>> check = ChargeNeutrality(["Fe", "O"], max_atoms=8)
>>> check.neutral(np.array([[1, 1], [2, 3], [3, 4], [1, 2]])).tolist()
[True, True, True, False]
>>> check.states
((2, 3), (-2,))
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from math import comb

import numpy as np

from xenonscale.chem.combinadic import binomials, rank_subsets, rank_vectors, unrank_vectors
from xenonscale.errors import ConfigError

__all__ = ["OXIDATION_STATE_SETS", "TABLE_BYTES", "ChargeNeutrality", "oxidation_states"]

#: Named sets of oxidation states (pymatgen ``Element`` attributes; see the module).
OXIDATION_STATE_SETS = {
    "icsd": "icsd_oxidation_states, else common_oxidation_states (oxi_state_guesses' default)",
    "common": "common_oxidation_states",
    "all": "oxidation_states (all_oxi_states=True)",
}
#: Most bytes of bitset tables one check may hold (allocated lazily; one group's table is built
#: unpacked, a byte per bit, in at most a quarter of this).
TABLE_BYTES = 4 << 30
#: Rows checked per gather (bounds the temporary arrays).
_ROWS = 1 << 16


def oxidation_states(symbols: Sequence[str], which: str | Mapping = "icsd") -> tuple:
    """The oxidation states (sorted tuples of int) of each symbol under ``which``.

    >>> oxidation_states(["Fe", "Cl"], "common")
    ((2, 3), (-1, 1, 3, 5, 7))
    >>> oxidation_states(["Fe", "O"], {"Fe": [2]})
    ((2,), (-2,))
    """
    from pymatgen.core.periodic_table import Element  # slow import, only when checking

    override: Mapping = {}
    name = which
    if isinstance(which, Mapping):
        override, name = which, "icsd"
        unknown = sorted(set(override) - set(symbols))
        if unknown:
            raise ConfigError(
                f"oxidation_states names {unknown!r}, not among the elements "
                f"{list(symbols)!r}: leave them out"
            )
    if name not in OXIDATION_STATE_SETS:
        raise ConfigError(
            f"oxidation_states={name!r} is unknown: use one of "
            f"{', '.join(OXIDATION_STATE_SETS)} or a mapping {{symbol: states}}"
        )
    states = []
    for symbol in symbols:
        if symbol in override:
            chosen = override[symbol]
            if isinstance(chosen, str | bytes) or not all(
                isinstance(s, int | np.integer) and not isinstance(s, bool) for s in chosen
            ):
                raise ConfigError(
                    f"oxidation_states[{symbol!r}]={chosen!r}: give whole numbers, e.g. [2, 3]"
                )
        else:
            element = Element(symbol)
            if name == "icsd":
                chosen = element.icsd_oxidation_states or element.common_oxidation_states
            elif name == "common":
                chosen = element.common_oxidation_states
            else:
                chosen = element.oxidation_states
        states.append(tuple(sorted({int(s) for s in chosen})))
    return tuple(states)


class ChargeNeutrality:
    """Vectorized charge-neutrality test over fixed elements (see the module docstring).

    Parameters
    ----------
    elements
        Element symbols: the columns of the amount arrays checked.
    max_atoms
        Largest total amount of a composition checked.
    oxidation_states
        A name in :data:`OXIDATION_STATE_SETS` or a mapping of replacements.

    Picklable (the tables are rebuilt where needed) and safe to share between threads.
    """

    def __init__(
        self, elements: Sequence[str], max_atoms: int, oxidation_states: str | Mapping = "icsd"
    ) -> None:
        self.elements = tuple(elements)
        self.max_atoms = int(max_atoms)
        self.which = oxidation_states
        self.states = globals()["oxidation_states"](self.elements, oxidation_states)
        largest = max((abs(s) for states in self.states for s in states), default=0)
        self.charge = self.max_atoms * max(largest, 1)
        self.width = 2 * self.charge + 1
        self.words = -(-self.width // 64)
        self._setup()

    def _setup(self) -> None:
        self._lock = threading.Lock()
        self._arenas: dict = {}  # (c, side) → (arena, built flags, rows per group)
        ground = max(self.max_atoms, len(self.elements)) + 1
        self._table = binomials(ground, len(self.elements))

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_arenas", "_table")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._setup()

    def describe(self) -> dict:
        """The states used, by symbol (what a store's provenance records)."""
        which = self.which if isinstance(self.which, str) else "icsd+override"
        states = {s: list(v) for s, v in zip(self.elements, self.states, strict=True)}
        return {"oxidation_states": which, "states": states}

    def neutral(self, amounts: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows of ``amounts[n, len(elements)]`` (non-negative integers,
        totals at most ``max_atoms``) that can be charge-neutral. An all-zero row is not."""
        amounts = np.asarray(amounts)
        if amounts.ndim != 2 or amounts.shape[1] != len(self.elements):
            raise ConfigError(
                f"amounts of shape {amounts.shape}: give one column per element "
                f"({len(self.elements)}: {', '.join(self.elements)})"
            )
        if len(amounts) and (amounts.min() < 0 or amounts.sum(axis=1).max() > self.max_atoms):
            raise ConfigError(
                f"amounts must be non-negative with totals at most {self.max_atoms} atoms: "
                "check the rows, or build the check with a larger max_atoms"
            )
        present = amounts > 0
        counts = present.sum(axis=1)
        out = np.zeros(len(amounts), dtype=bool)
        for c in np.unique(counts[counts > 0]).tolist():
            rows = np.flatnonzero(counts == c)
            columns = np.nonzero(present[rows])[1].reshape(-1, c)  # ascending within a row
            values = np.take_along_axis(amounts[rows], columns, axis=1)
            out[rows] = self.neutral_groups(columns, values)
        return out

    def neutral_groups(
        self, columns: np.ndarray, values: np.ndarray, ranks: tuple | None = None
    ) -> np.ndarray:
        """:meth:`neutral` of rows with the same number ``c`` of elements, given as their
        element columns ``columns[n, c]`` (ascending) and positive amounts ``values[n, c]``;
        ``ranks``: :meth:`half_ranks` of ``values`` when the caller has them already."""
        columns = np.asarray(columns, dtype=np.int64)
        n, c = columns.shape
        if c == 1:  # an element alone: oxidation state 0 (as oxi_state_guesses has it)
            return np.ones(n, dtype=bool)
        low_ranks, high_ranks = self.half_ranks(values) if ranks is None else ranks
        low = c // 2
        out = np.empty(n, dtype=bool)
        for start in range(0, n, _ROWS):
            part = slice(start, start + _ROWS)
            low_bits = self._bits(c, "low", columns[part, :low], low_ranks[part])
            high_bits = self._bits(c, "high", columns[part, low:], high_ranks[part])
            out[part] = (low_bits & high_bits).any(axis=1)
        return out

    def half_ranks(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colex ranks of the low and high halves of rows of positive amounts (the table rows
        :meth:`neutral_groups` reads; a caller checking the same vectors often keeps them)."""
        values = np.asarray(values, dtype=np.int64)
        low = values.shape[1] // 2
        table = self._table
        return rank_vectors(values[:, :low], table), rank_vectors(values[:, low:], table)

    # -- tables -----------------------------------------------------------------------------

    def _bits(self, c: int, side: str, columns: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """The packed bitsets of the rows' groups (the high half's negated), given the groups'
        element columns and the ranks of their amount vectors."""
        h = columns.shape[1]
        budget = self.max_atoms - (c - h)  # the other elements hold one atom at least
        arena, built, per_group = self._arena(c, side, h, budget)
        groups = rank_subsets(columns, self._table)
        missing = np.unique(groups[~built[groups]])
        if len(missing):
            with self._lock:
                for group in missing.tolist():
                    if not built[group]:
                        elements = tuple(columns[np.argmax(groups == group)].tolist())
                        bits = self._group_bits(elements, budget)
                        if side == "high":
                            bits = bits[:, ::-1]
                        arena[group * per_group : (group + 1) * per_group] = _pack(bits)
                        built[group] = True
        return arena[groups * per_group + ranks]

    def _arena(self, c: int, side: str, h: int, budget: int):
        key = (c, side)
        found = self._arenas.get(key)
        if found is None:
            with self._lock:
                found = self._arenas.get(key)
                if found is None:
                    groups, per_group = comb(len(self.elements), h), comb(budget, h)
                    size = groups * per_group * self.words * 8
                    if size > TABLE_BYTES or per_group * self.width > TABLE_BYTES // 4:
                        raise ConfigError(
                            f"charge balance of {c}-element compositions of up to "
                            f"{self.max_atoms} atoms over {len(self.elements)} elements "
                            f"needs {size / 2**30:.1f} GiB of tables: lower max_elements, "
                            "max_atoms or the number of elements"
                        )
                    arena = np.zeros((groups * per_group, self.words), dtype=np.uint64)
                    found = (arena, np.zeros(groups, dtype=bool), per_group)
                    self._arenas[key] = found
        return found

    def _group_bits(self, elements: tuple[int, ...], budget: int) -> np.ndarray:
        """Bool ``[C(budget, h), width]``: the sums each amount vector (ranked) of the group
        ``elements`` can reach, bit ``charge + sum``."""
        h = len(elements)
        if h == 0:
            bits = np.zeros((1, self.width), dtype=bool)
            bits[0, self.charge] = True
            return bits
        rows = comb(budget, h)
        vectors = unrank_vectors(np.arange(rows, dtype=np.int64), h, self._table)
        prefix = self._group_bits(elements[:-1], budget - 1)
        before = rank_vectors(vectors[:, :-1], self._table)
        states = self.states[elements[-1]]
        bits = np.zeros((rows, self.width), dtype=bool)
        last, totals = vectors[:, -1], vectors.sum(axis=1)
        order = np.argsort(last, kind="stable")
        edges = np.searchsorted(last[order], np.arange(1, budget + 2))
        for amount in range(1, budget + 1):
            chosen = order[edges[amount - 1] : edges[amount]]
            if not len(chosen):
                continue
            if amount == 1:  # the prefix alone, then one atom of the last element
                base = prefix[before[chosen]]
            else:  # one atom fewer: the total one less, so the rank C(total - 2, h - 1) less
                base = bits[chosen - self._table[h - 1][totals[chosen] - 2]]
            bits[chosen] = _shifted_or(base, states)
        return bits


def _shifted_or(bits: np.ndarray, shifts: Sequence[int]) -> np.ndarray:
    """``OR`` over ``s`` in ``shifts`` of ``bits`` moved ``s`` places up (sums plus ``s``)."""
    out = np.zeros_like(bits)
    width = bits.shape[1]
    for s in shifts:
        if s >= 0:
            out[:, s:] |= bits[:, : width - s]
        else:
            out[:, : width + s] |= bits[:, -s:]
    return out


def _pack(bits: np.ndarray) -> np.ndarray:
    """Bool rows → little-endian uint64 words."""
    packed = np.packbits(bits, axis=1, bitorder="little")
    words = -(-packed.shape[1] // 8)
    padded = np.zeros((len(packed), words * 8), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view("<u8").astype(np.uint64, copy=False)
