"""Element property tables and their presets.

Presets
-------
``"xenonpy58"``
    XenonPy's 58 imputed properties for H–Pu (``elements/xenonpy58.csv``):
    descriptors identical to XenonPy's.
``"magpie"``
    The Magpie element data used by matminer's ``ElementProperty``.
``"mat2vec"``, ``"oliynyk"``, ``"jarvis"``
    The CBFV / CrabNet element tables (mat2vec embeddings, Oliynyk's properties,
    JARVIS CFID descriptors), values unchanged from the mirror, NaN kept.
``"xenonscale"`` (default)
    Built offline from installed element-data libraries (mendeleev, pymatgen)
    for Z = 1–103, each column with unit and source, gaps imputed (mask kept).

Examples
--------
>>> from xenonscale.elements import load_table
>>> table = load_table("xenonpy58")  # doctest: +REQUIRES_DATA
>>> table.value("Fe", "atomic_number")
26.0
"""

from __future__ import annotations

from xenonscale.elements.presets import PRESETS, load_table
from xenonscale.elements.table import PERIODIC_SYMBOLS, ElementTable, atomic_number

__all__ = ["PERIODIC_SYMBOLS", "PRESETS", "ElementTable", "atomic_number", "load_table"]
