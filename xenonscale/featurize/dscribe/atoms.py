"""Records → ``ase.Atoms`` for DScribe: crystals as parsed, molecules as 3-D conformers.

:func:`structure_atoms` (``--kind structure``) reads every input
:func:`~xenonscale.featurize.structures.parse.parse_structures` reads (pymatgen
``Structure``, its dict or JSON, CIF, POSCAR) and builds
``Atoms(numbers, positions, cell, pbc)`` from the parsed arrays: Cartesian
positions as the structure holds them, the lattice rows as the cell. A
disordered structure (partial occupancies) is an error row: DScribe needs one
element per site.

:func:`molecule_atoms` (``--kind molecule``) accepts, row by row:

* a **SMILES** (read by :func:`~xenonscale.featurize.molecules.parse.parse_molecule`,
  so RDKit's reason and the SMILES budgets apply): hydrogens added, one
  conformer embedded with RDKit's ETKDG v3 with ``randomSeed`` =
  :data:`CONFORMER_SEED` (a retry from random coordinates if that fails), then
  relaxed with MMFF94 (``MMFFOptimizeMolecule``, at most
  :data:`RELAX_ITERATIONS` steps), or UFF where MMFF lacks parameters, or
  left as embedded where both do; the same SMILES gives the same coordinates
  on every run and machine with the same RDKit;
* **XYZ** text (a first line holding the atom count, a comment line, then
  ``symbol x y z`` lines in Å, further columns ignored; an atomic number may
  stand for the symbol); text with an ``M  END`` line is a molblock;
* a **molblock** (an SDF record): 3-D coordinates are kept (missing
  hydrogens placed by ``Chem.AddHs(addCoords=True)``); a 2-D block is embedded
  as a SMILES is;
* an RDKit ``Mol`` (a 3-D conformer is used as it is, otherwise embedded) or an
  ``ase.Atoms`` (used as it is).

Error rows: None/NaN/blank, unreadable text, dummy atoms (``*``), more than
``max_atoms`` atoms with hydrogens (or ``max_molecule_atoms`` heavy atoms, or
``max_smiles_chars``/``max_input_chars`` characters), no conformer, or a
record past ``record_seconds`` (budgets of :mod:`xenonscale.limits`).

The last molecule batch embedded in a thread is kept, keyed by the identity
of its items (text or None only) and the budgets in force, so the parts of a
union (``dscribe:SOAP(...),dscribe:ACSF(...)``) embed each partition once.

RDKit and ASE load inside the functions.

Examples
--------
>>> water = "3\\nwater\\nO 0 0 0.12\\nH 0 0.76 -0.47\\nH 0 -0.76 -0.47"
>>> batch = molecule_atoms(["CCO", "C1CC", water])
>>> [None if a is None else a.get_chemical_formula() for a in batch.atoms]
['C2H6O', None, 'H2O']
>>> batch.errors[0].reason
"SMILES Parse Error: unclosed ring for input: 'C1CC'"
"""

from __future__ import annotations

import math
import operator
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import XenonscaleError
from xenonscale.featurize.molecules.parse import describe_molecule, parse_molecule, rdkit
from xenonscale.featurize.structures.parse import StructureBatch, parse_structures
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = [
    "CONFORMER_SEED",
    "RELAX_ITERATIONS",
    "AtomsBatch",
    "conformer",
    "molecule_atoms",
    "structure_atoms",
]

#: ETKDG's ``randomSeed``: fixed, so a SMILES always gives the same conformer.
CONFORMER_SEED = 42
#: Most force-field steps of the MMFF94 (or UFF) relaxation.
RELAX_ITERATIONS = 2000
DISORDERED = "disordered structure (partial occupancies): DScribe needs one element per site"
_Z_OF = {symbol: z for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}
_CACHE = threading.local()


class _BadRow(Exception):
    """A record that cannot become atoms; the message is the row's reason."""


@dataclass(frozen=True)
class AtomsBatch:
    """``atoms[i]``: an ``ase.Atoms`` for a usable row, else None with its reason in ``errors``."""

    atoms: list[Any]
    errors: list[RowError] = field(default_factory=list)
    #: Crystals: the parsed batch the atoms were built from (``Atoms`` of row ``i``
    #: hold its sites ``structures.sites(i)``); None for molecules.
    structures: StructureBatch | None = None


# ---------------------------------------------------------------------- crystals
def structure_atoms(inputs: Sequence[object]) -> AtomsBatch:
    """Crystal inputs → ``ase.Atoms`` (see the module docstring); never raises for a row.

    >>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
    >>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
    >>> batch = structure_atoms([poscar, "not a structure"])
    >>> batch.atoms[0].get_chemical_formula(), batch.atoms[0].pbc.tolist(), batch.atoms[1]
    ('Si2', [True, True, True], None)
    """
    from ase import Atoms  # lazy: ASE is DScribe's dependency

    batch = parse_structures(inputs)
    atoms: list[Any] = [None] * len(batch)
    errors = list(batch.errors)
    for row in np.flatnonzero(batch.ok).tolist():
        if not batch.ordered[row]:
            errors.append(batch.error(row, DISORDERED))
            continue
        sites = batch.sites(row)
        atoms[row] = Atoms(
            numbers=batch.z[sites].astype(np.int64),
            positions=batch.cart[sites],
            cell=batch.lattice[row],
            pbc=batch.pbc[row],
        )
    return AtomsBatch(atoms, sorted(errors, key=lambda e: e.row), batch)


# ---------------------------------------------------------------------- molecules
def molecule_atoms(inputs: Sequence[object]) -> AtomsBatch:
    """Molecule inputs → 3-D ``ase.Atoms`` (see the module docstring); never raises for a row.

    The ``Atoms`` of a cached batch are shared: treat them as read-only.
    """
    items = inputs if isinstance(inputs, list) else list(inputs)
    cached = getattr(_CACHE, "last", None)
    if (
        cached is not None
        and cached[2] == current_limits()
        and len(cached[0]) == len(items)
        and all(map(operator.is_, cached[0], items))
    ):
        return cached[1]
    batch = _embed_all(items)
    immutable = all(isinstance(x, str) or x is None for x in items)
    _CACHE.last = (list(items), batch, current_limits()) if immutable else None
    return batch


def _embed_all(inputs: list[object]) -> AtomsBatch:
    from rdkit import rdBase  # lazy: RDKit stays off the import path

    atoms: list[Any] = [None] * len(inputs)
    errors: list[RowError] = []
    with rdBase.BlockLogs():
        for row, item in enumerate(inputs):
            try:
                atoms[row] = run_record(_molecule, item)
            except _BadRow as exc:
                errors.append(RowError(row, describe_molecule(item), str(exc)))
            except XenonscaleError:
                raise
            except (Exception, RecordTimeout) as exc:  # whatever one odd record raises
                errors.append(RowError(row, describe_molecule(item), failure_reason(exc)))
    return AtomsBatch(atoms, errors)


def _molecule(item: object):
    if _is_atoms(item):
        return _checked_atoms(item)
    Chem = rdkit()
    if isinstance(item, bytes):
        item = item.decode("utf-8", "replace")
    if isinstance(item, Chem.Mol):
        return _from_mol(item, embedded=_is_3d(item))
    if isinstance(item, str) and "\n" in item.strip():
        text = item.strip()
        limits = current_limits()
        if len(text) > limits.max_input_chars:
            what = f"input of {len(text)} characters"
            raise _BadRow(limits.limit_reason("max_input_chars", len(text), what))
        first = text.split("\n", 1)[0].strip()
        if first.isdigit() and "M  END" not in text:  # an SDF title may be a number (a CID)
            return _from_xyz(text)
        return _from_molblock(Chem, text)
    mol, reason = parse_molecule(item)
    if mol is None:
        raise _BadRow(reason)
    return _from_mol(mol, embedded=False)


def _is_atoms(item: object) -> bool:
    """An ``ase.Atoms`` (or subclass), told without importing ASE."""
    return any(c.__name__ == "Atoms" and c.__module__ == "ase.atoms" for c in type(item).__mro__)


def _is_3d(mol) -> bool:
    return mol.GetNumConformers() > 0 and mol.GetConformer().Is3D()


def _from_molblock(Chem, text: str):
    mol = Chem.MolFromMolBlock(text, removeHs=False)
    if mol is None:
        raise _BadRow("RDKit could not read the molblock (or XYZ text: its first line is no count)")
    return _from_mol(mol, embedded=_is_3d(mol))


def _from_mol(mol, *, embedded: bool):
    """An RDKit molecule → Atoms: its 3-D conformer (H placed), or a new ETKDG conformer."""
    from ase import Atoms  # lazy: ASE is DScribe's dependency

    Chem = rdkit()
    dummies = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
    if dummies:
        raise _BadRow(
            f"dummy atom '*' (atomic number 0) at index {dummies[0]}: DScribe needs real elements"
        )
    if embedded:
        mol = Chem.AddHs(mol, addCoords=True)
        _check_count(mol.GetNumAtoms())
        positions = mol.GetConformer().GetPositions()
    else:
        mol = conformer(mol)
        positions = mol.GetConformer().GetPositions()
    numbers = [a.GetAtomicNum() for a in mol.GetAtoms()]
    return Atoms(numbers=numbers, positions=positions, pbc=False)


def conformer(mol):
    """``mol`` with hydrogens and one deterministic 3-D conformer (ETKDG v3 + MMFF94/UFF).

    >>> from rdkit import Chem
    >>> mol = conformer(Chem.MolFromSmiles("O"))
    >>> mol.GetNumAtoms(), mol.GetConformer().Is3D()
    (3, True)
    """
    Chem = rdkit()
    from rdkit.Chem import AllChem  # lazy: with RDKit

    mol = Chem.AddHs(mol)
    _check_count(mol.GetNumAtoms())
    params = AllChem.ETKDGv3()
    params.randomSeed = CONFORMER_SEED
    if AllChem.EmbedMolecule(mol, params) < 0:
        params.useRandomCoords = True
        if AllChem.EmbedMolecule(mol, params) < 0:
            raise _BadRow(
                "RDKit ETKDG found no 3-D conformer (a start from random coordinates too)"
            )
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=RELAX_ITERATIONS)
    elif AllChem.UFFHasAllMoleculeParams(mol):
        AllChem.UFFOptimizeMolecule(mol, maxIters=RELAX_ITERATIONS)
    return mol


def _check_count(n: int) -> None:
    limits = current_limits()
    if n > limits.max_atoms:
        what = f"molecule of {n} atoms with hydrogens"
        raise _BadRow(limits.limit_reason("max_atoms", n, what))


def _from_xyz(text: str):
    from ase import Atoms  # lazy: ASE is DScribe's dependency

    lines = text.split("\n")
    n = int(lines[0].strip())
    _check_count(n)
    body = [line.split() for line in lines[2 : 2 + n]]
    if n < 1 or len(body) < n or any(len(fields) < 4 for fields in body):
        raise _BadRow(f"XYZ text announces {n} atoms but has no 'symbol x y z' line for each")
    numbers = [_xyz_element(fields[0]) for fields in body]
    try:
        positions = np.array([[float(x) for x in fields[1:4]] for fields in body])
    except ValueError as exc:
        raise _BadRow(f"XYZ coordinates are not numbers: {exc}") from None
    if not np.isfinite(positions).all():
        raise _BadRow("XYZ coordinates are not finite")
    return Atoms(numbers=numbers, positions=positions, pbc=False)


def _xyz_element(token: str) -> int:
    if token.isdigit() and 1 <= int(token) <= len(PERIODIC_SYMBOLS):
        return int(token)
    symbol = token[:1].upper() + token[1:].lower()
    if symbol not in _Z_OF:
        raise _BadRow(f"XYZ element {token!r} is not an element symbol (H–Og) or atomic number")
    return _Z_OF[symbol]


def _checked_atoms(atoms):
    n = len(atoms)
    if n == 0:
        raise _BadRow("ase.Atoms without atoms")
    _check_count(n)
    numbers = np.asarray(atoms.numbers)
    if numbers.min() < 1 or numbers.max() > len(PERIODIC_SYMBOLS):
        raise _BadRow("ase.Atoms holds an atomic number outside 1–118 (a dummy atom?)")
    if not all(math.isfinite(x) for x in np.asarray(atoms.positions, dtype=float).ravel()):
        raise _BadRow("ase.Atoms positions are not finite")
    return atoms
