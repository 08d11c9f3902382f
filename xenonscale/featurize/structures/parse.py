"""Structure inputs → one compact array batch plus per-row errors.

:func:`parse_structures` reads a batch of inputs into a :class:`StructureBatch`:
the lattices, the sites of every structure concatenated (Cartesian and
fractional coordinates, atomic numbers, occupancies) and an ``ok`` mask with
one :class:`~xenonscale.chem.formula.RowError` per input that could not be
used. A bad row never raises and never hides the rest.

Accepted inputs (each row may be a different one)
-------------------------------------------------
* a pymatgen ``Structure`` (or ``IStructure``);
* an ASE ``Atoms`` periodic in all three directions (recognized by its class,
  so ASE is never imported here; read through :func:`atoms_structure_dict`);
* an MP-style dict (``Structure.as_dict()``: ``lattice`` and ``sites``), as
  JSON documents and Matbench split tables give it;
* the JSON text of such a dict (the feature store keeps dicts as JSON);
* CIF text (first data block; ``Structure.from_str(text, fmt="cif")``);
* POSCAR/CONTCAR text (``Structure.from_str(text, fmt="poscar")``).

Dicts in the ordinary ordered form (one element per site, occupancy 1), their
JSON text and ``ase.Atoms`` are read straight into the arrays without building
a pymatgen ``Structure`` (:func:`_dict_arrays`: the same numbers bit for bit,
about a tenth of the cost); everything else goes through pymatgen.

Rejected rows: None/NaN/empty, unreadable text, a structure with no sites, a
species that is not an element H–Og (e.g. a dummy species ``X0+``), a
singular lattice or non-finite coordinates; and, against the per-record
budgets of :mod:`xenonscale.limits`, text longer than ``max_input_chars``,
more than ``max_atoms`` sites, a cell smaller than ``min_volume_per_atom``
per site, or a record that takes longer than ``record_seconds`` to read.
Whatever a row raises (deeply nested JSON, a pymatgen or spglib failure)
becomes that row's error.

Every structure featurizer calls this. The last batch parsed in a thread is
kept, keyed by the identity of its items, so the parts of a
:class:`~xenonscale.featurize.registry.FeatureUnion` (``rdf,ofm,structure``)
parse each partition once. Only immutable rows (text, None) and pymatgen
objects (read, never copied) are cached; a batch with dict rows is parsed
each time.

Examples
--------
>>> from xenonscale.featurize.structures.parse import parse_structures
>>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
>>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
>>> batch = parse_structures([poscar, None, "not a structure"])
>>> batch.ok.tolist(), batch.n_sites.tolist()
([True, False, False], [2, 0, 0])
"""

from __future__ import annotations

import json
import math
import operator
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import XenonscaleError
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = [
    "StructureBatch",
    "atoms_structure_dict",
    "clear_parse_cache",
    "is_ase_atoms",
    "parse_structures",
    "to_structure",
]

# [ \t]* rather than \s*: \s* would run over newlines from every line start (quadratic
# on a cell of blank lines).
_CIF_HINT = re.compile(r"^[ \t]*(data_|loop_|_cell_length_a|_atom_site_)", re.MULTILINE)
_Z_MAX = len(PERIODIC_SYMBOLS)
_Z_OF = {symbol: z for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}
_SPECIES_KEYS = frozenset({"element", "occu", "oxidation_state", "spin"})
_CACHE = threading.local()


class _BadRow(Exception):
    """A row that cannot be used; the message is the row's reason."""


@dataclass(frozen=True, eq=False)
class StructureBatch:
    """A parsed batch of ``n`` structures, sites concatenated in row order.

    Attributes
    ----------
    inputs : sequence
        The inputs as given (for error messages).
    ok : numpy.ndarray
        ``bool[n]``: the row was read.
    errors : list of RowError
        One per failed row, in row order.
    lattice : numpy.ndarray
        ``float64[n, 3, 3]``, rows are the lattice vectors (Å); zeros for failed rows.
    pbc : numpy.ndarray
        ``bool[n, 3]`` periodicity of each structure.
    start : numpy.ndarray
        ``int64[n + 1]``: the sites of row ``i`` are ``start[i]:start[i + 1]``
        (failed rows have none).
    cart, frac : numpy.ndarray
        ``float64[S, 3]`` Cartesian (Å) and fractional coordinates, as the
        structure holds them (not wrapped into the cell).
    z : numpy.ndarray
        ``int16[S]``: atomic number of an ordered site; for a disordered site,
        the element with the largest occupancy.
    ordered : numpy.ndarray
        ``bool[n]``: every site holds one species with occupancy 1.
    occ_start, occ_z, occ_amount : numpy.ndarray
        Site occupancies as CSR over sites: site ``k`` holds elements
        ``occ_z[occ_start[k]:occ_start[k + 1]]`` with those amounts.
    species_key : numpy.ndarray
        ``int32[S]``: 1-based index of the site's species (element, oxidation
        state and occupancy) in order of first appearance within its
        structure, as pymatgen's ``SpacegroupAnalyzer`` numbers them for spglib.
    """

    inputs: Sequence[object]
    ok: np.ndarray
    errors: list[RowError]
    lattice: np.ndarray
    pbc: np.ndarray
    start: np.ndarray
    cart: np.ndarray
    frac: np.ndarray
    z: np.ndarray
    ordered: np.ndarray
    occ_start: np.ndarray
    occ_z: np.ndarray
    occ_amount: np.ndarray
    species_key: np.ndarray

    def __len__(self) -> int:
        return len(self.ok)

    @property
    def n_sites(self) -> np.ndarray:
        """``int64[n]`` sites per row (0 for failed rows)."""
        return np.diff(self.start)

    @property
    def volume(self) -> np.ndarray:
        """``float64[n]`` cell volumes (Å³), ``|(a × b) · c|`` as pymatgen computes them."""
        m = self.lattice
        return np.abs(np.einsum("ij,ij->i", np.cross(m[:, 0], m[:, 1]), m[:, 2]))

    def sites(self, row: int) -> slice:
        """The site slice of ``row``."""
        return slice(int(self.start[row]), int(self.start[row + 1]))

    def error(self, row: int, reason: str) -> RowError:
        """A :class:`RowError` for ``row`` with the input described."""
        return RowError(row, describe_input(self.inputs[row]), reason)

    def element_amounts(self) -> list[dict[str, float]]:
        """Per row ``{symbol: amount}`` summed over sites (empty for failed rows)."""
        site_row = np.repeat(np.arange(len(self)), self.n_sites)
        occ_row = np.repeat(site_row, np.diff(self.occ_start))
        key = occ_row * (_Z_MAX + 1) + self.occ_z
        keys, inverse = np.unique(key, return_inverse=True)
        totals = np.bincount(inverse, weights=self.occ_amount, minlength=len(keys))
        out: list[dict[str, float]] = [{} for _ in range(len(self))]
        for k, total in zip(keys.tolist(), totals.tolist(), strict=True):
            out[k // (_Z_MAX + 1)][PERIODIC_SYMBOLS[k % (_Z_MAX + 1) - 1]] = total
        return out


def parse_structures(inputs: Sequence[object], *, cache: bool = True) -> StructureBatch:
    """Read a batch of structure inputs (see the module docstring); never raises for a row.

    Parameters
    ----------
    inputs
        A sequence of inputs; rows may mix forms.
    cache
        Reuse the previous batch parsed in this thread when ``inputs`` holds
        the very same objects (text, None or pymatgen structures).

    Returns
    -------
    StructureBatch
    """
    items = list(inputs) if not isinstance(inputs, list) else inputs
    cached = getattr(_CACHE, "last", None) if cache else None
    if (
        cached is not None
        and cached[2] == current_limits()  # other budgets give other error rows
        and len(cached[0]) == len(items)
        and all(map(operator.is_, cached[0], items))
    ):
        return cached[1]
    batch = _parse(items)
    if cache and all(
        isinstance(x, str) or x is None or _is_structure(x) or is_ase_atoms(x) for x in items
    ):
        _CACHE.last = (list(items), batch, current_limits())
    elif cache:
        _CACHE.last = None
    return batch


def clear_parse_cache() -> None:
    """Forget the batch kept by :func:`parse_structures` in this thread (benchmarks, memory)."""
    _CACHE.last = None


def _parse(items: list[object]) -> StructureBatch:
    n = len(items)
    ok = np.zeros(n, dtype=bool)
    errors: list[RowError] = []
    lattice = np.zeros((n, 3, 3))
    pbc = np.ones((n, 3), dtype=bool)
    counts = np.zeros(n, dtype=np.int64)
    ordered = np.zeros(n, dtype=bool)
    carts, fracs, zs, occ_counts, occ_zs, occ_amounts, keys = [], [], [], [], [], [], []
    limits = current_limits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF parser warns about fixes it makes
        for i, item in enumerate(items):
            try:
                arrays = run_record(_read_row, item, limits)
            except _BadRow as exc:
                errors.append(RowError(i, describe_input(item), str(exc)))
                continue
            except XenonscaleError:
                raise
            except (Exception, RecordTimeout) as exc:  # whatever one odd record raises
                errors.append(RowError(i, describe_input(item), failure_reason(exc)))
                continue
            ok[i] = True
            lattice[i], pbc[i], cart, frac, z, occ_n, occ_z, occ_amount, key, ordered[i] = arrays
            counts[i] = len(z)
            carts.append(cart)
            fracs.append(frac)
            zs.append(z)
            occ_counts.append(occ_n)
            occ_zs.append(occ_z)
            occ_amounts.append(occ_amount)
            keys.append(key)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    occ_start = np.zeros(int(start[-1]) + 1, dtype=np.int64)
    if occ_counts:
        np.cumsum(np.concatenate(occ_counts), out=occ_start[1:])
    return StructureBatch(
        inputs=items,
        ok=ok,
        errors=errors,
        lattice=lattice,
        pbc=pbc,
        start=start,
        cart=np.concatenate(carts) if carts else np.zeros((0, 3)),
        frac=np.concatenate(fracs) if fracs else np.zeros((0, 3)),
        z=np.concatenate(zs) if zs else np.zeros(0, dtype=np.int16),
        ordered=ordered,
        occ_start=occ_start,
        occ_z=np.concatenate(occ_zs) if occ_zs else np.zeros(0, dtype=np.int16),
        occ_amount=np.concatenate(occ_amounts) if occ_amounts else np.zeros(0),
        species_key=np.concatenate(keys) if keys else np.zeros(0, dtype=np.int32),
    )


def _read_row(item: object, limits) -> tuple:
    """One input → the arrays of :func:`_arrays`, within the record budgets."""
    if isinstance(item, str | bytes) and len(item) > limits.max_input_chars:
        what = f"input of {len(item)} characters"
        raise _BadRow(limits.limit_reason("max_input_chars", len(item), what))
    doc = _document(item)
    if doc is not None:
        if isinstance(doc.get("sites"), Sequence):
            _check_atoms(len(doc["sites"]), limits)
        arrays = _dict_arrays(doc)
        if arrays is None:  # anything unusual: pymatgen reads it (and words its errors)
            structure = _from_dict(doc)
            _check_atoms(len(structure), limits)
            arrays = _arrays(structure)
    else:
        structure = to_structure(item)
        _check_atoms(len(structure), limits)
        arrays = _arrays(structure)
    volume = abs(float(np.linalg.det(arrays[0])))
    per_atom = volume / max(1, len(arrays[4]))
    if not per_atom >= limits.min_volume_per_atom:
        what = f"cell volume {per_atom:.3g} Å³ per site"
        raise _BadRow(
            f"{what}: below min_volume_per_atom, limit {limits.min_volume_per_atom:g}; "
            "lower it with --min-volume-per-atom"
        )
    return arrays


def _document(item: object) -> Mapping | None:
    """The Structure.as_dict() mapping of a dict, JSON text or ``ase.Atoms`` row, else None."""
    if isinstance(item, Mapping):
        return item
    if is_ase_atoms(item):
        return _atoms_document(item)
    if isinstance(item, str | bytes):
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        text = text.strip()
        if text.startswith("{"):
            return _json_document(text)
    return None


def _check_atoms(n: int, limits) -> None:
    if n > limits.max_atoms:
        raise _BadRow(limits.limit_reason("max_atoms", n, f"structure of {n} sites"))


def _is_structure(item: object) -> bool:
    return hasattr(item, "lattice") and hasattr(item, "sites") and hasattr(item, "frac_coords")


def is_ase_atoms(item: object) -> bool:
    """Whether ``item`` is an ``ase.Atoms`` (or a subclass), told without importing ASE."""
    return any(
        cls.__name__ == "Atoms" and cls.__module__ == "ase.atoms" for cls in type(item).__mro__
    )


def atoms_structure_dict(atoms) -> dict:
    """A periodic ``ase.Atoms`` as a pymatgen ``Structure.as_dict()`` mapping.

    Each site's ``xyz`` is the Atoms' Cartesian position exactly; ``abc`` is
    ``positions · cell⁻¹`` (what ``Lattice.get_fractional_coords`` gives), from
    which pymatgen recomputes Cartesian coordinates on reading (within ~1e-15 Å).
    Periodicity is not checked here (:func:`parse_structures` and the ASE
    sources do that); a singular cell raises ``numpy.linalg.LinAlgError``.

    Examples
    --------
    >>> from ase.build import bulk
    >>> doc = atoms_structure_dict(bulk("Si", "diamond", a=5.43))
    >>> doc["lattice"]["matrix"][0], doc["sites"][1]["xyz"]
    ([0.0, 2.715, 2.715], [1.3575, 1.3575, 1.3575])
    >>> [round(x, 12) for x in doc["sites"][1]["abc"]]
    [0.25, 0.25, 0.25]
    """
    cell = np.array(atoms.cell, dtype=np.float64)
    positions = np.array(atoms.positions, dtype=np.float64)
    frac = positions @ np.linalg.inv(cell)
    sites = [
        {
            "species": [{"element": symbol, "occu": 1}],
            "abc": abc,
            "xyz": xyz,
            "properties": {},
            "label": symbol,
        }
        for symbol, abc, xyz in zip(
            atoms.get_chemical_symbols(), frac.tolist(), positions.tolist(), strict=True
        )
    ]
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": cell.tolist(), "pbc": [True, True, True]},
        "properties": {},
        "sites": sites,
    }


def _atoms_document(atoms) -> dict:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.all():
        flags = "".join("TF"[not flag] for flag in pbc)
        raise _BadRow(
            f"ase.Atoms with pbc={flags} is not periodic in all three directions: give a bulk "
            "crystal (pbc=True with a cell), or a molecule featurizer for a molecule"
        )
    volume = abs(float(np.linalg.det(np.asarray(atoms.cell, dtype=np.float64))))
    if not volume > 1e-6:
        raise _BadRow(f"ase.Atoms is periodic but its cell has volume {volume:.3g}: give a cell")
    return atoms_structure_dict(atoms)


def to_structure(item: object):
    """One input (any form :func:`parse_structures` reads) → a pymatgen ``Structure``.

    For callers that need the pymatgen object itself (the matminer adapter);
    featurizers read the arrays of :func:`parse_structures` instead. A bad
    input raises with the reason :func:`parse_structures` would record.
    """
    if _is_structure(item):
        return item
    if is_ase_atoms(item):
        return _from_dict(_atoms_document(item))
    if item is None or (isinstance(item, float) and math.isnan(item)):
        raise _BadRow("empty input (None/NaN)")
    from pymatgen.core import Structure

    if isinstance(item, Mapping):
        return _from_dict(item)
    if isinstance(item, bytes):
        item = item.decode("utf-8", "replace")
    if not isinstance(item, str):
        raise _BadRow(
            f"unsupported input type {type(item).__name__}: give a pymatgen Structure, "
            "an ase.Atoms, a Structure.as_dict() mapping, its JSON text, CIF or POSCAR text"
        )
    text = item.strip()
    if not text:
        raise _BadRow("empty input (blank text)")
    if text.startswith("{"):
        return _from_dict(_json_document(text))
    fmt = "cif" if _CIF_HINT.search(text) else "poscar"
    try:
        return Structure.from_str(item, fmt=fmt)
    except Exception as exc:  # pymatgen raises many types for bad text
        kind = "CIF" if fmt == "cif" else "POSCAR (not CIF or JSON either)"
        raise _BadRow(f"unreadable {kind}: {_short(exc)}") from None


def _json_document(text: str) -> Mapping:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise _BadRow(f"text starts with '{{' but is not valid JSON: {exc}") from None
    if not isinstance(doc, Mapping):
        raise _BadRow("JSON text is not an object (a Structure.as_dict() mapping)")
    return doc


def _dict_arrays(doc: Mapping) -> tuple | None:
    """The arrays of an ordinary ordered ``Structure.as_dict()``, read without pymatgen.

    Ordinary: a lattice ``matrix``, and every site one element symbol H–Og with
    ``occu`` 1 (with or without a numeric ``oxidation_state``) at fractional
    ``abc``; ``spin`` may be present as None. The arithmetic is pymatgen's:
    Cartesian coordinates are ``abc · matrix`` summed left to right, as
    ``Lattice.get_cartesian_coords`` computes them site by site, so the arrays equal those of
    ``Structure.from_dict`` bit for bit (a test checks it on real structures)
    at a tenth of the cost. Anything else (disorder, dummy species, spins,
    lattice parameters instead of a matrix, malformed entries) returns None
    and pymatgen reads the row.
    """
    lattice, sites = doc.get("lattice"), doc.get("sites")
    if not isinstance(lattice, Mapping) or "matrix" not in lattice or not isinstance(sites, list):
        return None
    n = len(sites)
    if n == 0:
        return None
    z = np.empty(n, dtype=np.int16)
    key = np.empty(n, dtype=np.int32)
    seen: dict[object, int] = {}
    abc: list[object] = []
    for k, site in enumerate(sites):
        species = site.get("species") if isinstance(site, Mapping) else None
        if not isinstance(species, list) or len(species) != 1:
            return None
        entry = species[0]
        if not isinstance(entry, Mapping) or entry.get("occu") != 1:
            return None
        symbol = entry.get("element")
        number = _Z_OF.get(symbol) if isinstance(symbol, str) else None
        if number is None:
            return None
        if len(entry) == 2:
            identity: object = symbol
        elif (
            type(entry.get("oxidation_state")) in (int, float)
            and entry.get("spin") is None
            and entry.keys() <= _SPECIES_KEYS
        ):
            identity = (symbol, float(entry["oxidation_state"]))
        else:
            return None
        z[k] = number
        key[k] = seen.setdefault(identity, len(seen) + 1)
        abc.append(site.get("abc"))
    try:
        matrix = np.array(lattice["matrix"], dtype=np.float64).reshape(3, 3)
        frac = np.array(abc, dtype=np.float64)
        pbc = np.array(lattice.get("pbc", (True, True, True)), dtype=bool)
    except (TypeError, ValueError):
        return None
    if frac.shape != (n, 3) or pbc.shape != (3,):
        return None
    # pymatgen's own product (Lattice.get_cartesian_coords): the same BLAS call gives the
    # same last bit on every CPU, where a hand-written sum differs with FMA (AVX-512) kernels
    cart = np.dot(frac, matrix)
    _check_geometry(matrix, cart, frac)
    ones = np.ones(n, dtype=np.int64)
    return (matrix, pbc, cart, frac, z, ones, z.copy(), np.ones(n), key, True)


def _from_dict(doc: Mapping):
    from pymatgen.core import Structure

    if "lattice" not in doc or "sites" not in doc:
        raise _BadRow(
            f"mapping with keys {sorted(map(str, doc))[:8]} is not a pymatgen Structure dict "
            "(needs 'lattice' and 'sites')"
        )
    try:
        return Structure.from_dict(doc)
    except Exception as exc:  # malformed dicts raise KeyError, TypeError, ValueError...
        raise _BadRow(f"unreadable Structure dict: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def _arrays(structure) -> tuple:
    """Arrays of one structure; :class:`_BadRow` for empty, non-element or degenerate ones."""
    n = len(structure)
    if n == 0:
        raise _BadRow("structure has no sites")
    matrix = np.asarray(structure.lattice.matrix, dtype=np.float64)
    cart = np.asarray(structure.cart_coords, dtype=np.float64)
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    _check_geometry(matrix, cart, frac)
    z = np.empty(n, dtype=np.int16)
    occ_n = np.ones(n, dtype=np.int64)
    occ_z: list[int] = []
    occ_amount: list[float] = []
    key = np.empty(n, dtype=np.int32)
    seen: dict = {}
    is_ordered = True
    for k, site in enumerate(structure):
        species = site.species
        key[k] = seen.setdefault(species, len(seen) + 1)
        items = species.items()
        if len(items) != 1:
            occ_n[k] = len(items)
            is_ordered = False
        best, best_amount = 0, -1.0
        for sp, amount in items:
            number = _element_z(sp)
            occ_z.append(number)
            occ_amount.append(float(amount))
            if amount != 1:
                is_ordered = False
            if amount > best_amount:
                best, best_amount = number, amount
        z[k] = best
    pbc = np.asarray(getattr(structure, "pbc", (True, True, True)), dtype=bool)
    return (
        matrix,
        pbc,
        cart,
        frac,
        z,
        occ_n,
        np.asarray(occ_z, dtype=np.int16),
        np.asarray(occ_amount, dtype=np.float64),
        key,
        is_ordered,
    )


def _check_geometry(matrix: np.ndarray, cart: np.ndarray, frac: np.ndarray) -> None:
    """:class:`_BadRow` for a singular or non-finite lattice or non-finite coordinates."""
    with np.errstate(all="ignore"):
        determinant = np.linalg.det(matrix) if np.isfinite(matrix).all() else np.nan
    if not abs(determinant) >= 1e-6 or not np.isfinite(determinant):
        raise _BadRow(f"lattice is singular or not finite (volume {abs(determinant):.3g})")
    if not (np.isfinite(cart).all() and np.isfinite(frac).all()):
        raise _BadRow("site coordinates are not finite")


def _element_z(species) -> int:
    number = getattr(species, "Z", 0)
    symbol = getattr(species, "symbol", str(species))
    if not isinstance(number, int) or not 1 <= number <= _Z_MAX:
        raise _BadRow(f"species {str(species)!r} is not an element of the periodic table (H–Og)")
    if PERIODIC_SYMBOLS[number - 1] != symbol:
        raise _BadRow(f"species {str(species)!r} is not an element of the periodic table (H–Og)")
    return number
