"""The periodic table's symbols, by atomic number.

>>> from xenonscale.chem.periodic import PERIODIC_SYMBOLS, atomic_number
>>> PERIODIC_SYMBOLS[25], atomic_number("Fe")
('Fe', 26)
"""

from __future__ import annotations

from xenonscale.errors import ElementTableError

__all__ = ["PERIODIC_SYMBOLS", "atomic_number"]

# Symbols of Z = 1..118 (index = Z - 1).
# fmt: off
PERIODIC_SYMBOLS: tuple[str, ...] = (
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P",
    "S", "Cl", "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Ga", "Ge", "As", "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh",
    "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "La", "Ce", "Pr", "Nd",
    "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu", "Hf", "Ta", "W", "Re",
    "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Ac", "Th",
    "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr", "Rf", "Db",
    "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
)
# fmt: on
_Z_OF = {symbol: z for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}


def atomic_number(symbol: str) -> int:
    """Return Z for an element symbol; raises ElementTableError for an unknown symbol."""
    try:
        return _Z_OF[symbol]
    except KeyError:
        raise ElementTableError(
            f"unknown element symbol {symbol!r}: use a symbol from H to Og, e.g. 'Fe'"
        ) from None
