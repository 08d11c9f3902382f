"""ASE ``Atoms`` → record inputs the featurizers read without ASE (extxyz files, ASE databases).

:func:`atoms_input` turns one ``Atoms`` into the text a store keeps as ``input``:

* periodic in all three directions with a cell of non-zero volume → the JSON
  text of a pymatgen ``Structure.as_dict()`` mapping (Cartesian positions kept
  exactly as each site's ``xyz``; see
  :func:`~xenonscale.featurize.structures.parse.atoms_structure_dict`);
* not periodic (``pbc`` all False; a cell, if any, is ignored) → an XYZ block
  (:func:`~xenonscale.featurize.molecules.parse.xyz_block`, ``charge=N`` from
  ``info["charge"]``), which the molecule parser reads with RDKit bond perception;
* for ``kind="composition"`` → the chemical formula, whatever the periodicity.

Anything else is a :class:`~xenonscale.featurize.base.RejectedInput` (an error
row with the reason): partial periodicity (a slab, a wire), a periodic frame
without a cell, a crystal given to molecule featurizers or a molecule to
structure featurizers.

``id`` comes from the first of :data:`ID_KEYS` present (or a chosen key);
scalar ``info`` values (and calculator results such as ``energy``) become
extra columns, numeric where every value is a number.

Examples
--------
>>> from ase.build import bulk, molecule
>>> from xenonscale.sources.aseatoms import atoms_input
>>> atoms_input(bulk("Cu", "fcc", a=3.6), "structure")[:43]
'{"@module": "pymatgen.core.structure", "@cl'
>>> print(atoms_input(molecule("H2O"), "molecule").splitlines()[2])
O 0.0 0.0 0.119262
>>> atoms_input(bulk("Cu"), "molecule").reason
'periodic (pbc=TTT): molecule featurizers need a frame with pbc=False; use a structure featurizer'
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from xenonscale.errors import SourceError
from xenonscale.featurize.base import RejectedInput
from xenonscale.featurize.molecules.parse import xyz_block
from xenonscale.featurize.structures.parse import atoms_structure_dict
from xenonscale.sources.frames import build_frame

__all__ = [
    "ID_KEYS",
    "atoms_frame",
    "atoms_input",
    "atoms_kind",
    "atoms_value",
    "require_ase",
    "scalar_value",
    "typed_column",
]

ASE_HINT = "pip install ase"
#: Keys whose value names a record, in order of preference.
ID_KEYS = ("id", "name", "material_id")
#: Keys that are part of the frame itself, never extras.
FRAME_KEYS = frozenset({"pbc", "Lattice", "Properties", "cell", "positions", "numbers"})


def require_ase() -> None:
    """Import ASE or raise a :class:`SourceError` naming the install (ASE is optional)."""
    try:
        import ase  # noqa: F401  # lazy: ASE is optional, needed only by these sources
    except ImportError as exc:
        raise SourceError(
            f"extxyz files and ASE databases are read with ASE, which is not importable "
            f"({exc}): {ASE_HINT}"
        ) from exc


def _flags(pbc: Any) -> str:
    return "".join("TF"[not flag] for flag in np.asarray(pbc, dtype=bool).reshape(-1))


def atoms_kind(atoms: Any) -> str:
    """``molecule`` for a frame with ``pbc`` all False, else ``structure``."""
    return "molecule" if not np.asarray(atoms.pbc, dtype=bool).any() else "structure"


def atoms_input(atoms: Any, kind: str) -> str | RejectedInput:
    """One ``Atoms`` → its ``input`` text for featurizers of ``kind`` (see the module docstring)."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if kind == "composition":
        if len(atoms) == 0:
            return RejectedInput("", "frame has no atoms")
        return atoms.get_chemical_formula(mode="hill")
    if pbc.any() and not pbc.all():
        return RejectedInput(
            _summary(atoms),
            f"partially periodic (pbc={_flags(pbc)}): only bulk crystals (pbc=TTT) or "
            "molecules (pbc=FFF) are featurized; convert the slab or wire first",
        )
    if kind == "molecule":
        if pbc.all():
            return RejectedInput(
                _summary(atoms),
                f"periodic (pbc={_flags(pbc)}): molecule featurizers need a frame with "
                "pbc=False; use a structure featurizer",
            )
        return xyz_block(atoms.get_chemical_symbols(), atoms.positions, _charge(atoms))
    if not pbc.all():
        return RejectedInput(
            _summary(atoms),
            "not periodic (pbc=FFF): structure featurizers need a crystal (pbc=TTT with a "
            "cell); use a molecule featurizer",
        )
    volume = abs(float(np.linalg.det(np.asarray(atoms.cell, dtype=np.float64))))
    if not volume > 1e-6:
        return RejectedInput(
            _summary(atoms), f"periodic (pbc=TTT) but the cell has volume {volume:.3g}: give a cell"
        )
    return json.dumps(atoms_structure_dict(atoms))


def _summary(atoms: Any) -> str:
    """What the store keeps as the input of a rejected frame (formula, pbc and cell)."""
    cell = np.asarray(atoms.cell, dtype=np.float64).round(6).tolist()
    formula = atoms.get_chemical_formula(mode="hill")
    return f"Atoms(formula={formula!r}, pbc={_flags(atoms.pbc)!r}, cell={cell})"


def _charge(atoms: Any) -> int:
    value = scalar_value(atoms.info.get("charge"))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return int(value) if float(value).is_integer() else 0
    return 0


def scalar_value(value: Any) -> str | int | float | bool | None:
    """``value`` as a Python scalar (numpy scalars and 0-d arrays unwrapped), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    return None


def atoms_value(atoms: Any, key: str) -> Any:
    """``atoms.info[key]`` or the calculator's result ``key`` (``energy``...) as a scalar."""
    if key in atoms.info:
        return scalar_value(atoms.info[key])
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    return scalar_value(results.get(key))


def typed_column(values: Sequence[Any]) -> pd.Series:
    """Scalars of one extra → float64 when all present ones are numbers (int64 when all are
    whole and none is missing), bool when all are bools, else text; missing → NaN."""
    present = [v for v in values if v is not None]
    if not present:
        return pd.Series(np.nan, index=range(len(values)), dtype=np.float64)
    complete = len(present) == len(values)
    if all(isinstance(v, bool) for v in present):
        if complete:
            return pd.Series(values, dtype=bool)
        return pd.Series([np.nan if v is None else v for v in values], dtype=object)
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in present):
        if complete and all(isinstance(v, numbers.Integral) for v in present):
            return pd.Series(values, dtype=np.int64)
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return pd.Series([np.nan if v is None else str(v) for v in values], dtype=object)


def atoms_frame(
    start: int,
    ids: Sequence[str | None],
    inputs: Sequence[str | RejectedInput | None],
    values: Sequence[Mapping[str, Any]],
    extras: Sequence[str],
) -> pd.DataFrame:
    """The contract's frame from per-record ids, inputs and ``{extra: scalar}`` mappings."""
    columns = {name: typed_column([v.get(name) for v in values]) for name in extras}
    return build_frame(start, ids, inputs, columns)
