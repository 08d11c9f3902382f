"""Molecule inputs → RDKit ``Mol`` objects, with one reason per row that fails.

Accepted inputs, row by row (never raises for a bad row):

* a **SMILES** string (``Chem.MolFromSmiles``, sanitized). Text after the
  first whitespace is RDKit's molecule name, as in a ``.smi`` line; CXSMILES
  extensions are read. Polymer SMILES with ``*`` attachment points parse as
  dummy atoms (atomic number 0), exactly as XenonPy 0.6.7 reads them (it calls
  ``MolFromSmiles`` without any special case);
* a **molblock** (the text of one SDF record through ``M  END``, V2000 or
  V3000; what :class:`~xenonscale.sources.sdf.SdfSource` yields): any string
  with a line break before its last non-blank character;
* an **XYZ block** (an atom count line, a comment line, then one ``symbol x y
  z`` line per atom; what :func:`xyz_block` writes and the ASE sources give
  for non-periodic frames): read by ``Chem.MolFromXYZBlock``, bonds perceived
  by ``rdDetermineBonds.DetermineBonds`` with total charge 0 (or
  ``charge=N`` on the comment line), hydrogens then made implicit and
  stereochemistry assigned from the 3D coordinates, as for a molblock. Its
  atom count, hydrogens included, must be within ``max_molecule_atoms``;
* an ASE ``Atoms`` that is not periodic (``pbc`` all False), read as its XYZ
  block (told by its class: ASE is never imported here);
* an RDKit **Mol** (used as is, no copy);
* ``bytes`` (UTF-8 text, as above).

``None``/NaN (an unreadable record), blank text, a molecule without atoms,
text RDKit cannot parse or sanitize, a SMILES longer than
``max_smiles_chars`` (a molblock longer than ``max_input_chars``), a molecule
of more than ``max_molecule_atoms`` atoms (budgets of
:mod:`xenonscale.limits`), anything a row raises, and any other type become a
:class:`~xenonscale.chem.formula.RowError` ``(row, input, reason)``. The
reason is RDKit's own message (``SMILES Parse Error: unclosed ring ...``,
``Explicit valence for atom # 0 N, 5, is greater than permitted``), captured
from RDKit's error log for that row only: nothing is printed, whatever the
batch size. Parsing runs with RDKit's logs blocked, so warnings of valid rows
are not printed either.

The module imports RDKit lazily (inside the functions).

Examples
--------
>>> from xenonscale.featurize.molecules.parse import parse_molecules
>>> batch = parse_molecules(["CCO", "*CC(*)C", "C1CC", None])
>>> batch.ok.tolist()
[True, True, False, False]
>>> batch.errors[0].reason
"SMILES Parse Error: unclosed ring for input: 'C1CC'"
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.errors import FeaturizerError
from xenonscale.limits import current_limits, failure_reason

__all__ = [
    "MoleculeBatch",
    "describe_molecule",
    "iter_molecules",
    "parse_molecule",
    "parse_molecules",
    "rdkit",
    "xyz_block",
]

RDKIT_HINT = "pip install rdkit"

_STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ?")
_MARKER = re.compile(r"^\s*~*\^\s*$")
_PARSE_ERROR = "SMILES Parse Error: "
# An XYZ block opens with its atom count alone on the first line (a molblock with a
# numeric title is told apart by its "M  END").
_XYZ_COUNT = re.compile(r"\A[ \t]*\d+[ \t]*\r?\n")
_XYZ_CHARGE = re.compile(r"(?:^|\s)charge=([+-]?\d+)(?=\s|$)")


def rdkit() -> Any:
    """``rdkit.Chem`` (imported on first use), or a :class:`FeaturizerError` naming the install."""
    try:
        from rdkit import Chem
    except ImportError as exc:  # pragma: no cover - a dependency of the molecule featurizers
        raise FeaturizerError(
            f"molecule featurizers need RDKit, which is not importable ({exc}): {RDKIT_HINT}"
        ) from exc
    return Chem


@dataclass(frozen=True)
class MoleculeBatch:
    """A parsed batch: ``mols[i]`` is a ``Mol`` where ``ok[i]``, else None (see ``errors``)."""

    mols: list[Any]
    ok: np.ndarray
    errors: list[RowError] = field(default_factory=list)


def parse_molecules(inputs: Sequence[object]) -> MoleculeBatch:
    """Parse a whole batch (keeps every ``Mol``; featurizers stream with :func:`iter_molecules`).

    Examples
    --------
    >>> parse_molecules(["c1ccccc1", ""]).errors[0].reason
    'empty input (blank text)'
    """
    mols: list[Any] = [None] * len(inputs)
    errors: list[RowError] = []
    for row, mol in iter_molecules(inputs, errors):
        mols[row] = mol
    ok = np.fromiter((m is not None for m in mols), dtype=bool, count=len(mols))
    return MoleculeBatch(mols=mols, ok=ok, errors=errors)


def iter_molecules(inputs: Sequence[object], errors: list[RowError]) -> Iterator[tuple[int, Any]]:
    """Yield ``(row, mol)`` for each row that parses; append a RowError for each that does not.

    Rows come in input order, so ``errors`` stays sorted by row. RDKit's logs
    are blocked while the generator runs (its caller's RDKit calls between
    two rows included). Streaming keeps one molecule alive at a time, which
    is faster (cache) and lighter than holding a partition's ``Mol`` objects.

    Examples
    --------
    >>> errors = []
    >>> [row for row, mol in iter_molecules(["CCO", "Xx", "C"], errors)]
    [0, 2]
    >>> errors[0].row, errors[0].reason.split(":")[0]
    (1, 'SMILES Parse Error')
    """
    Chem = rdkit()
    from rdkit import rdBase

    from_smiles = Chem.MolFromSmiles
    mol_type = Chem.Mol
    limits = current_limits()
    max_chars, max_atoms = limits.max_smiles_chars, limits.max_molecule_atoms
    with rdBase.BlockLogs():
        for row, item in enumerate(inputs):
            if type(item) is str and "\n" not in item and len(item) <= max_chars:
                mol = from_smiles(item)  # the fast path: one SMILES
                if mol is not None and 0 < mol.GetNumAtoms() <= max_atoms:
                    yield row, mol
                    continue
            elif isinstance(item, mol_type) and 0 < item.GetNumAtoms() <= max_atoms:
                yield row, item
                continue
            try:
                mol, reason = parse_molecule(item)
            except Exception as exc:  # whatever one odd record raises
                mol, reason = None, failure_reason(exc)
            if mol is not None:
                yield row, mol
            else:
                errors.append(RowError(row, describe_molecule(item), reason))


def parse_molecule(item: object) -> tuple[Any, str]:
    """One input → ``(mol, "")`` or ``(None, reason)``; the reason is RDKit's message.

    Examples
    --------
    >>> parse_molecule("N(C)(C)(C)(C)C")[1]
    'Explicit valence for atom # 0 N, 5, is greater than permitted'
    """
    Chem = rdkit()
    if isinstance(item, bytes):
        item = item.decode("utf-8", "replace")
    if _missing(item):
        return None, "empty input (None/NaN: no record)"
    if isinstance(item, Chem.Mol):
        return _checked(item)
    if _is_ase_atoms(item):
        if any(item.pbc):
            flags = "".join("TF"[not flag] for flag in item.pbc)
            return None, (
                f"ase.Atoms with pbc={flags} is periodic: a molecule needs pbc=False "
                "(use a structure featurizer for a crystal)"
            )
        item = xyz_block(item.get_chemical_symbols(), item.positions, _atoms_charge(item))
    if not isinstance(item, str):
        return None, (
            f"unsupported input type {type(item).__name__}: give a SMILES string, "
            "a molblock or an RDKit Mol"
        )
    if not item.strip():
        return None, "empty input (blank text)"
    molblock = "\n" in item.rstrip()
    limits = current_limits()
    name, limit = ("max_input_chars", "molblock") if molblock else ("max_smiles_chars", "SMILES")
    if len(item) > getattr(limits, name):
        return None, limits.limit_reason(name, len(item), f"{limit} of {len(item)} characters")
    if molblock and _XYZ_COUNT.match(item) and "M  END" not in item:
        return _from_xyz(Chem, item)
    reader = Chem.MolFromMolBlock if molblock else Chem.MolFromSmiles
    mol, messages = _read_capturing(reader, item)
    if mol is None:
        what = "molblock" if molblock else "SMILES"
        return None, _reason(messages) or f"RDKit could not read the {what}"
    return _checked(mol)


def xyz_block(symbols: Sequence[str], positions: Any, charge: int = 0) -> str:
    """An XYZ block of atoms: count, comment (``charge=N`` when not 0), ``symbol x y z`` lines.

    Coordinates (Å) are written in full (``repr``), so reading them back gives
    the same floats.

    Examples
    --------
    >>> text = xyz_block(["O", "H", "H"], [[0, 0, 0.1197], [0, 0.7616, -0.4786],
    ...                                    [0, -0.7616, -0.4786]])
    >>> print(text, end="")
    3
    <BLANKLINE>
    O 0.0 0.0 0.1197
    H 0.0 0.7616 -0.4786
    H 0.0 -0.7616 -0.4786
    >>> mol, reason = parse_molecule(text)
    >>> rdkit().MolToSmiles(mol)
    'O'
    """
    coordinates = np.asarray(positions, dtype=np.float64).reshape(len(symbols), 3).tolist()
    lines = [str(len(symbols)), f"charge={int(charge)}" if charge else ""]
    rows = zip(symbols, coordinates, strict=True)
    lines += [f"{symbol} {x!r} {y!r} {z!r}" for symbol, (x, y, z) in rows]
    return "\n".join(lines) + "\n"


def _from_xyz(Chem: Any, text: str) -> tuple[Any, str]:
    """An XYZ block → ``(mol, "")`` with perceived bonds and implicit hydrogens, or the reason."""
    from rdkit.Chem import rdDetermineBonds  # lazy: RDKit is imported on first use

    mol, messages = _read_capturing(Chem.MolFromXYZBlock, text)
    if mol is None:
        return None, _reason(messages) or "RDKit could not read the XYZ block"
    atoms = mol.GetNumAtoms()
    if not atoms:
        return None, "molecule has no atoms"
    limits = current_limits()
    if atoms > limits.max_molecule_atoms:
        what = f"XYZ block of {atoms} atoms (hydrogens included)"
        return None, limits.limit_reason("max_molecule_atoms", atoms, what)
    comment = text.split("\n", 2)[1] if text.count("\n") >= 2 else ""
    found = _XYZ_CHARGE.search(comment)
    charge = int(found.group(1)) if found else 0
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=charge)
    except (ValueError, RuntimeError) as exc:
        return None, f"bond perception failed (total charge {charge}): {_one_line(exc)}"
    mol = Chem.RemoveHs(mol)
    Chem.AssignStereochemistryFrom3D(mol)
    return _checked(mol)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _is_ase_atoms(item: object) -> bool:
    return any(
        cls.__name__ == "Atoms" and cls.__module__ == "ase.atoms" for cls in type(item).__mro__
    )


def _atoms_charge(atoms: Any) -> int:
    """``info["charge"]`` of an ``ase.Atoms`` when it is a whole number, else 0."""
    charge = atoms.info.get("charge", 0)
    try:
        value = float(charge)
    except (TypeError, ValueError):
        return 0
    return int(value) if value.is_integer() else 0


def _checked(mol: Any) -> tuple[Any, str]:
    """``(mol, "")`` for a molecule with 1..``max_molecule_atoms`` atoms, else the reason."""
    atoms = mol.GetNumAtoms()
    if not atoms:
        return None, "molecule has no atoms"
    limits = current_limits()
    if atoms > limits.max_molecule_atoms:
        what = f"molecule of {atoms} atoms"
        return None, limits.limit_reason("max_molecule_atoms", atoms, what)
    return mol, ""


def _missing(item: object) -> bool:
    """None, NaN, ``pd.NA``/``NaT`` (what tabular sources give for an empty field)."""
    if item is None or (isinstance(item, float) and math.isnan(item)):
        return True
    import pandas as pd

    return bool(
        pd.api.types.is_scalar(item) and not isinstance(item, str | bytes) and pd.isna(item)
    )


def _read_capturing(reader, text: str) -> tuple[Any, str]:
    """``reader(text)`` with RDKit's error log captured (and every log kept off stderr)."""
    from rdkit import rdBase

    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as capture:
        mol = reader(text)
    return mol, capture.messages


def _reason(messages: str) -> str:
    """RDKit's log lines, shortened: no time stamps, input echoes, ``~~^`` markers or repeats."""
    lines: list[str] = []
    echo = False
    for raw in messages.splitlines():
        if echo:  # the parser echoes the input on the line after "check for mistakes"
            echo = False
            continue
        line = _STAMP.sub("", raw).strip()
        if not line or _MARKER.match(line):
            continue
        if "check for mistakes" in line:
            echo, line = True, line.rstrip(":")
        if lines and line.startswith(_PARSE_ERROR):
            if line.startswith(_PARSE_ERROR + "Failed parsing SMILES"):
                continue  # restates the input after the real reason
            line = line[len(_PARSE_ERROR) :]
        if line not in lines:
            lines.append(line)
    text = "; ".join(lines)
    return text if len(text) <= 300 else text[:297] + "..."


def describe_molecule(item: object) -> str:
    """An input as text for error tables: the text itself (≤ 200 characters) or a Mol summary."""
    if hasattr(item, "GetNumAtoms"):
        return f"<RDKit {type(item).__name__} with {item.GetNumAtoms()} atoms>"
    return describe_input(item)
