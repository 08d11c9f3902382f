"""Chemistry parsing: formulas and compositions as sparse batch matrices.

Examples
--------
>>> from xenonscale.chem import parse_formula
>>> parse_formula("Fe2O3")
{'Fe': 2.0, 'O': 3.0}
"""

from xenonscale.chem.formula import CompositionMatrix, RowError, parse_compositions, parse_formula

__all__ = ["CompositionMatrix", "RowError", "parse_compositions", "parse_formula"]
