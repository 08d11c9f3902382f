"""The ``species=`` of a ``dscribe:`` descriptor: the elements its feature vector has room for.

SOAP, ACSF, MBTR and Valle–Oganov have one block of features per element (or
pair, or triple), so the feature count is fixed by the species list, which
must therefore be given in the spec (a record holding another element becomes
an error row). :func:`resolve_species` reads:

* a list of symbols and/or atomic numbers: ``['Si', 'O']``, ``[14, 8]``;
* a preset name (:data:`SPECIES_PRESETS`): ``'qm9'`` (H C N O F),
  ``'organic'`` (H B C N O F Si P S Cl Se Br I);
* ``'Z<=N'``: every element H … Z = N, e.g. ``'Z<=83'`` (H–Bi: every element
  of the Matbench phonons set, and every stable one).

The result is a tuple of symbols sorted by atomic number, without repeats:
the order DScribe lays its blocks out in, whatever order they were given in.

Examples
--------
>>> resolve_species(["O", "Si", 14])
('O', 'Si')
>>> resolve_species("Z<=3"), resolve_species("qm9")
(('H', 'He', 'Li'), ('H', 'C', 'N', 'O', 'F'))
"""

from __future__ import annotations

import re

from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError

__all__ = ["SPECIES_HINT", "SPECIES_PRESETS", "resolve_species"]

#: Named species lists (sorted by atomic number when used).
SPECIES_PRESETS: dict[str, tuple[str, ...]] = {
    "qm9": ("H", "C", "N", "O", "F"),
    "organic": ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I"),
}
SPECIES_HINT = (
    "give species=['Si', 'O'] (the elements of your records), a preset "
    f"({', '.join(repr(p) for p in SPECIES_PRESETS)}) or species='Z<=N' (every element up to Z=N)"
)
_UP_TO = re.compile(r"^\s*Z\s*<=\s*(\d+)\s*$")
_Z_OF = {symbol: z for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}


def resolve_species(value: object, *, what: str = "dscribe") -> tuple[str, ...]:
    """Symbols sorted by Z (see the module docstring); a :class:`ConfigError` names a bad one."""
    if value is None:
        raise ConfigError(f"{what} needs species: {SPECIES_HINT}")
    if isinstance(value, str):
        match = _UP_TO.match(value)
        if match:
            top = int(match.group(1))
            if not 1 <= top <= len(PERIODIC_SYMBOLS):
                raise ConfigError(
                    f"{what}: species={value!r}: N must be 1..{len(PERIODIC_SYMBOLS)}, e.g. 'Z<=83'"
                )
            return PERIODIC_SYMBOLS[:top]
        if value.lower() in SPECIES_PRESETS:
            return _sorted(SPECIES_PRESETS[value.lower()])
        raise ConfigError(f"{what}: species={value!r} is not a list or a preset: {SPECIES_HINT}")
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{what}: species={value!r}: {SPECIES_HINT}")
    symbols = []
    for item in value:
        if isinstance(item, str) and item in _Z_OF:
            symbols.append(item)
        elif (
            isinstance(item, int)
            and not isinstance(item, bool)
            and 1 <= item <= len(PERIODIC_SYMBOLS)
        ):
            symbols.append(PERIODIC_SYMBOLS[item - 1])
        else:
            raise ConfigError(
                f"{what}: species item {item!r} is not an element: use symbols H–Og "
                "(e.g. 'Fe') or atomic numbers 1–118"
            )
    return _sorted(symbols)


def _sorted(symbols) -> tuple[str, ...]:
    return tuple(sorted(set(symbols), key=_Z_OF.__getitem__))
