"""Inorganic design: compositions as the SMC's population, moves between formulas.

:class:`CompositionProposal` is the composition counterpart of the n-gram
SMILES model in :mod:`xenonscale.design.smc`: from a parent formula it makes a
child by one random move,

* **substitute**: one element becomes another allowed element not present;
* **add**: a new allowed element with amount 1;
* **remove**: one element goes (at least one stays);
* **amount**: one element's amount goes up or down by 1 (at least 1),

then reduces the amounts by their gcd (``Fe2O4`` → ``FeO2``). A child must
keep ``1 ≤ atoms ≤ max_atoms`` and ``min_elements`` (default 2, as the
enumerated spaces) to ``max_elements`` elements; with
``charge_balanced=True`` it must also admit a neutral assignment of common
oxidation states (:class:`xenonscale.chem.neutrality.ChargeNeutrality`, mixed
valence allowed, as pymatgen's ``oxi_state_guesses``). A
parent whose moves all fail ``tries`` times proposes itself (the chain keeps
it). Formulas are written in pymatgen's element order (electronegativity),
amounts of 1 left out, no groups — as the enumerated spaces write them — and
that text is the deduplication key (:func:`canonical_formulas`), so ``OFe``
and ``FeO`` are one candidate.

Examples
--------
>>> import numpy as np
>>> proposal = CompositionProposal(["Li", "Fe", "P", "O"], max_atoms=12, charge_balanced=True)
>>> children = proposal.propose(["LiFePO4", "Fe2O3"], np.random.default_rng(0))
>>> len(children), all(proposal.allowed(c) for c in children)
(2, True)
>>> canonical_formulas(["O3Fe2", "Fe4O6", "Fe0.4O0.6", "not a formula"])
['Fe2O3', 'Fe2O3', 'Fe2O3', None]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce

import numpy as np

from xenonscale.chem.formula import parse_compositions
from xenonscale.chem.neutrality import ChargeNeutrality
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError

__all__ = ["MOVES", "CompositionProposal", "canonical_formulas", "valid_formulas"]

#: The moves of :class:`CompositionProposal`, drawn uniformly.
MOVES = ("substitute", "add", "remove", "amount")


_SYMBOLS = frozenset(PERIODIC_SYMBOLS)
#: Largest factor that turns a fractional formula into whole atoms (Fe0.5O → Fe1O2).
MAX_SCALE = 1000


def _integer_amounts(text: object) -> dict[str, int] | None:
    """``{element: integer amount}`` of a formula (fractional amounts scaled by the smallest
    factor up to :data:`MAX_SCALE` that makes them whole), None if unreadable."""
    from pymatgen.core import Composition

    if not isinstance(text, str) or not text.strip():
        return None
    try:
        raw = Composition(text).get_el_amt_dict()
    except Exception:  # pymatgen raises many types for bad formulas
        return None
    values = np.array(list(raw.values()), dtype=np.float64)
    if not len(values) or (values <= 0).any() or any(e not in _SYMBOLS for e in raw):
        return None  # pymatgen reads unknown symbols as dummy species
    for scale in range(1, MAX_SCALE + 1):
        scaled = values * scale
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * scale):
            return {e: round(v) for e, v in zip(raw, scaled, strict=True)}
    return None


def _reduced(amounts: dict[str, int]) -> dict[str, int]:
    divisor = reduce(math.gcd, amounts.values())
    return {element: n // divisor for element, n in amounts.items()}


def _formula(amounts: dict[str, int]) -> str:
    """``Fe2O3``: elements in pymatgen's order (electronegativity), amounts of 1 left out, no
    groups or diatomic rewriting (pymatgen's ``reduced_formula`` writes ``Mg(AlS2)2`` and
    ``O2``), so formulas equal the enumeration's (:mod:`xenonscale.chem.enumeration`)."""
    from pymatgen.core import Composition

    order = [token.rstrip("0123456789.") for token in Composition(amounts).formula.split()]
    return "".join(e + (str(amounts[e]) if amounts[e] != 1 else "") for e in order)


def canonical_formulas(texts: Sequence[object]) -> list[str | None]:
    """The reduced integer formula of each text (pymatgen's element order, no groups;
    fractional formulas scaled to whole atoms first), None where it is unreadable."""
    out: list[str | None] = []
    for text in texts:
        amounts = _integer_amounts(text)
        out.append(None if amounts is None else _formula(_reduced(amounts)))
    return out


def valid_formulas(texts: Sequence[object]) -> np.ndarray:
    """Which texts the composition featurizers read (``parse_compositions`` ok)."""
    return np.asarray(parse_compositions(list(texts)).ok, dtype=bool)


class CompositionProposal:
    """Random moves between formulas over ``elements`` (see the module docstring)."""

    #: The SMC's deduplication key for this proposal's candidates.
    canonical = staticmethod(canonical_formulas)

    def __init__(
        self,
        elements: Sequence[str],
        *,
        max_atoms: int = 20,
        max_elements: int | None = None,
        min_elements: int = 2,
        charge_balanced: bool = False,
        tries: int = 20,
    ) -> None:
        elements = list(dict.fromkeys(str(e).strip() for e in elements if str(e).strip()))
        unknown = [e for e in elements if e not in PERIODIC_SYMBOLS]
        if unknown or len(elements) < 1:
            raise ConfigError(
                f"--elements {','.join(elements)!r}: {unknown or 'none given'} are not element "
                "symbols; give symbols like Li,Fe,P,O"
            )
        if max_atoms < 1:
            raise ConfigError(f"--max-atoms {max_atoms!r}: use a positive number of atoms")
        if max_elements is not None and max_elements < 1:
            raise ConfigError(f"max_elements={max_elements!r}: use a positive number or None")
        self.elements = elements
        self.max_atoms = int(max_atoms)
        self.max_elements = int(max_elements) if max_elements else len(elements)
        self.min_elements = int(min_elements)
        if not 1 <= self.min_elements <= min(self.max_elements, len(elements)):
            raise ConfigError(
                f"min_elements={min_elements!r}: use 1 to {min(self.max_elements, len(elements))} "
                f"for {len(elements)} element(s) and max_elements={self.max_elements}"
            )
        self.charge_balanced = bool(charge_balanced)
        self.tries = int(tries)
        self._neutral = ChargeNeutrality(elements, self.max_atoms) if charge_balanced else None

    def allowed(self, formula: str) -> bool:
        """Is ``formula`` inside the space (elements, atoms, element count, charge)?"""
        amounts = _integer_amounts(formula)
        return amounts is not None and self._allowed(_reduced(amounts))

    def _allowed(self, amounts: dict[str, int]) -> bool:
        if not amounts or any(e not in self.elements for e in amounts):
            return False
        if sum(amounts.values()) > self.max_atoms:
            return False
        if not self.min_elements <= len(amounts) <= self.max_elements:
            return False
        if self._neutral is not None:
            vector = np.array([[amounts.get(e, 0) for e in self.elements]], dtype=np.int64)
            return bool(self._neutral.neutral(vector)[0])
        return True

    def propose(self, parents: Sequence[str], rng: np.random.Generator) -> list[str]:
        """One child per parent (the parent itself when no move lands inside the space)."""
        children = []
        for parent in parents:
            amounts = _integer_amounts(parent)
            child = parent
            if amounts is not None:
                for _ in range(self.tries):
                    moved = self._move(dict(amounts), rng)
                    if moved is not None:
                        moved = _reduced(moved)
                        if self._allowed(moved):
                            child = _formula(moved)
                            break
            children.append(child)
        return children

    def _move(self, amounts: dict[str, int], rng: np.random.Generator) -> dict[str, int] | None:
        move = MOVES[int(rng.integers(len(MOVES)))]
        present = sorted(amounts)
        absent = [e for e in self.elements if e not in amounts]
        if move == "substitute" and absent:
            old = present[int(rng.integers(len(present)))]
            amounts[absent[int(rng.integers(len(absent)))]] = amounts.pop(old)
        elif move == "add" and absent:
            amounts[absent[int(rng.integers(len(absent)))]] = 1
        elif move == "remove" and len(present) > 1:
            amounts.pop(present[int(rng.integers(len(present)))])
        elif move == "amount":
            element = present[int(rng.integers(len(present)))]
            amounts[element] += 1 if rng.random() < 0.5 else -1
            if amounts[element] < 1:
                return None
        else:
            return None
        return amounts
