"""``DscribeFeaturizer``: one DScribe descriptor as a batch featurizer with error rows.

Per batch: the inputs become ``ase.Atoms`` (:mod:`.atoms`); rows are refused
before DScribe sees them when they hold an element outside ``species``, more
atoms than the descriptor's ``n_atoms_max``, or (crystals) a neighbour search
past the ``max_neighbors`` budget at the descriptor's cutoff
(:func:`~xenonscale.featurize.structures.neighbors.search_cost`), or (SOAP,
ACSF) atoms spread over a box that DScribe's cell list would cut into more
than :data:`MAX_CELLS` cells (it allocates them all: a molecule with one atom
10⁴ Å away takes the process down, 10³ Å costs 0.4 GB); the rest go
to DScribe in **one** ``create(list_of_atoms, n_jobs=1)`` call. Only if that
call raises are the rows computed one by one (each under ``record_seconds``),
so one bad record costs its own row, not the batch's. A row with a NaN or
infinite value is an error row too. The engine parallelizes over partitions;
the featurizer is serial.

Examples
--------
>>> from xenonscale.featurize.dscribe import DscribeFeaturizer
>>> soap = DscribeFeaturizer("SOAP", {"species": ["Si"], "n_max": 2, "l_max": 1})
>>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
>>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
>>> batch = soap.featurize_batch([poscar, poscar.replace("Si\\n2", "Ge\\n2"), None])
>>> batch.values.shape, batch.ok.tolist()
((3, 6), [True, False, False])
>>> batch.errors[0].reason
"element Ge is not among species ['Si'] of dscribe:SOAP: add it to species=[...]"
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.chem.periodic import PERIODIC_SYMBOLS, atomic_number
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error
from xenonscale.featurize.dscribe.atoms import molecule_atoms, structure_atoms
from xenonscale.featurize.dscribe.compat import dscribe_version
from xenonscale.featurize.dscribe.descriptors import DSCRIBE_CITATIONS, KINDS, descriptor
from xenonscale.featurize.molecules.parse import describe_molecule
from xenonscale.featurize.structures.neighbors import search_cost, search_costs
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = ["MAX_CELLS", "DscribeFeaturizer"]

_CORNERS = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
#: Most cells of ``cutoff``³ in the box DScribe's cell list spans (about 100 MB).
MAX_CELLS = 1_000_000


class DscribeFeaturizer(BatchTransformer):
    """A DScribe descriptor over a batch of crystals or molecules.

    Parameters
    ----------
    descriptor : str
        ``SOAP``, ``ACSF``, ``MBTR``, ``SineMatrix``, ``CoulombMatrix``,
        ``EwaldSumMatrix`` or ``ValleOganov`` (any case).
    params : dict, optional
        The descriptor's keywords (see
        :data:`~xenonscale.featurize.dscribe.descriptors.DESCRIPTORS` ``[name].defaults``);
        the rest take their defaults.
    kind : {"structure", "molecule"}
        Crystals (periodic, :func:`~.atoms.structure_atoms`) or molecules
        (finite, 3-D conformers from SMILES, :func:`~.atoms.molecule_atoms`).
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN with a reason in ``errors_``.

    Labels start with the descriptor's name and, when a keyword other than
    ``species`` differs from its default, the changed keywords
    (``SOAP(r_cut=6)``), so two configurations never share a label. Not
    thread-safe per instance (DScribe's MBTR keeps state during ``create``):
    one instance per thread, as the engine's workers run.
    """

    def __init__(
        self,
        descriptor: str = "SOAP",
        params: Mapping[str, object] | None = None,
        *,
        kind: str = "structure",
        on_error: str = "record",
    ):
        self.descriptor = descriptor
        self.params = params
        self.kind = kind
        self.on_error = on_error

    # -- configuration ---------------------------------------------------------
    def _setup(self) -> tuple[Any, dict[str, object]]:
        """``(descriptor, resolved keywords)``, recomputed when the parameters change."""
        key = (self.descriptor, repr(self.params), self.kind)
        cached = self.__dict__.get("_setup_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        if self.kind not in KINDS:
            raise ConfigError(
                f"dscribe:{self.descriptor}: kind={self.kind!r}; DScribe describes atoms in 3-D: "
                f"use --kind structure or --kind molecule"
            )
        if self.params is not None and not isinstance(self.params, Mapping):
            raise ConfigError(f"dscribe: params={self.params!r}: give a dict of keywords or None")
        found = descriptor(self.descriptor)
        resolved = found.resolve(dict(self.params or {}), self.kind)
        self.__dict__["_setup_cache"] = (key, (found, resolved))
        return found, resolved

    def check(self) -> DscribeFeaturizer:
        """Resolve the keywords and build the DScribe object now (imports DScribe).

        Raises
        ------
        ConfigError
            An unknown descriptor or keyword, a bad value, a descriptor for the
            other kind, or a value DScribe itself refuses.
        """
        self._built()
        return self

    def _built(self):
        """The DScribe object of this thread, built once per configuration."""
        found, resolved = self._setup()
        local = self.__dict__.setdefault("_local", threading.local())
        key = self.__dict__["_setup_cache"][0]
        if getattr(local, "key", None) != key:
            local.built = found.build(resolved, self.kind == "structure")
            local.key = key
        return local.built

    def __getstate__(self) -> dict:
        # The DScribe object (C++ wrappers) and the thread-local are rebuilt after unpickling.
        private = ("_local", "_setup_cache", "_labels_cache")
        return {k: v for k, v in self.__dict__.items() if k not in private}

    @property
    def resolved(self) -> dict[str, object]:
        """Every keyword with its value (defaults included), as the descriptor is built."""
        return dict(self._setup()[1])

    @property
    def labels(self) -> list[str]:
        found, resolved = self._setup()
        key = self.__dict__["_setup_cache"][0]
        cached = self.__dict__.get("_labels_cache")
        if cached is None or cached[0] != key:  # MBTR k=3 has ~10⁵ labels: build them once
            cached = (key, found.labels(resolved))
            self.__dict__["_labels_cache"] = cached
        return list(cached[1])

    @property
    def citations(self) -> tuple[str, ...]:
        """DScribe's papers, the descriptor's own, and the exact DScribe call (provenance)."""
        found, resolved = self._setup()
        periodic = self.kind == "structure"
        call = f"DScribe {dscribe_version()}: {found.call(resolved, periodic)}"
        extra = found.create_arguments(resolved)
        if extra:
            call += f".create(..., {', '.join(f'{k}={v!r}' for k, v in extra.items())})"
        if self.kind == "molecule":
            call += "; molecules embedded with RDKit ETKDG v3 (seed 42) + MMFF94/UFF"
        return (*DSCRIBE_CITATIONS, *found.citations, call)

    # -- featurizing -------------------------------------------------------------
    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; bad rows are NaN with one reason each (never raises for a row)."""
        check_on_error(self.on_error)
        found, resolved = self._setup()
        width = len(self.labels)
        items = inputs if isinstance(inputs, list) else list(inputs)
        describe = describe_input if self.kind == "structure" else describe_molecule
        values = np.full((len(items), width), np.nan)
        if not items:
            return FeatureBatch(values=values, ok=np.zeros(0, dtype=bool), errors=[])
        built = self._built()
        parsed = (structure_atoms if self.kind == "structure" else molecule_atoms)(items)
        errors = list(parsed.errors)
        rows: list[int] = []
        if parsed.structures is not None:  # crystals: every check over the whole batch at once
            refused = self._refuse_crystals(found, resolved, built, parsed)
        else:
            refused = {}
            for row, atoms in enumerate(parsed.atoms):
                if atoms is not None:
                    reason = self._refuse(found, resolved, built, atoms)
                    if reason is not None:
                        refused[row] = reason
        for row, atoms in enumerate(parsed.atoms):
            if atoms is None:
                continue
            if row in refused:
                errors.append(RowError(row, describe(items[row]), refused[row]))
            else:
                rows.append(row)
        if rows:
            good, failed = _compute(found, built, resolved, [parsed.atoms[r] for r in rows], width)
            for k, why in failed.items():
                errors.append(RowError(rows[k], describe(items[rows[k]]), why))
            values[rows] = good
        ok = np.zeros(len(items), dtype=bool)
        ok[rows] = True
        for error in errors:
            ok[error.row] = False
            values[error.row] = np.nan
        return FeatureBatch(values=values, ok=ok, errors=sorted(errors, key=lambda e: e.row))

    def _refuse_crystals(self, found, resolved, built, parsed) -> dict[int, str]:
        """:meth:`_refuse` for the crystals of ``parsed``, computed from the parsed arrays."""
        batch = parsed.structures
        rows = np.array([r for r, a in enumerate(parsed.atoms) if a is not None], dtype=np.int64)
        refused: dict[int, str] = {}
        if not len(rows):
            return refused
        n_sites = batch.n_sites[rows]
        species = found.species(resolved)
        if species is not None:
            allowed = np.array(sorted(_allowed(species)), dtype=np.int64)
            bad_site = ~np.isin(batch.z, allowed)
            site_row = np.repeat(np.arange(len(batch)), batch.n_sites)
            bad_rows = np.bincount(site_row[bad_site], minlength=len(batch))[rows] > 0
            for row in rows[bad_rows].tolist():
                z = batch.z[batch.sites(row)]
                outside = int(z[~np.isin(z, allowed)].min())
                refused[row] = (
                    f"element {PERIODIC_SYMBOLS[outside - 1]} is not among species "
                    f"{list(species)} of dscribe:{found.name}: add it to species=[...]"
                )
        for row, n in zip(rows.tolist(), n_sites.tolist(), strict=True):
            if row not in refused:
                reason = found.refuse(resolved, n)
                if reason is not None:
                    refused[row] = reason
        cutoff = found.cutoff(built, resolved)
        if cutoff is None:
            return refused
        lattice, pbc = batch.lattice[rows], batch.pbc[rows]
        periodic = pbc.any(axis=1)
        limits = current_limits()
        costs = search_costs(n_sites, lattice, pbc, cutoff)
        for k in np.flatnonzero(periodic & ~(costs <= limits.max_neighbors)).tolist():
            what = f"neighbour search to {cutoff:g} Å of {costs[k]:.3g} pairs/images"
            refused.setdefault(int(rows[k]), limits.limit_reason("max_neighbors", costs[k], what))
        if found.cell_list:
            first = batch.start[rows]
            low = np.minimum.reduceat(batch.cart, first, axis=0)
            high = np.maximum.reduceat(batch.cart, first, axis=0)
            corners = _CORNERS @ lattice  # (rows, 8, 3)
            margin = np.where(periodic, cutoff, 0.0)[:, None]
            low = np.where(periodic[:, None], np.minimum(low, corners.min(axis=1)), low)
            high = np.where(periodic[:, None], np.maximum(high, corners.max(axis=1)), high)
            with np.errstate(all="ignore"):
                box = high - low + 2.0 * margin
            box = np.where(np.isfinite(box), box, np.inf)
            cells = np.prod(np.maximum(1.0, np.ceil(box / cutoff)), axis=1)
            for k in np.flatnonzero(~(cells <= MAX_CELLS)).tolist():
                refused.setdefault(int(rows[k]), _spread_reason(box[k], cells[k], cutoff))
        return refused

    def _refuse(self, found, resolved, built, atoms) -> str | None:
        """Why DScribe must not see this record (species, size, neighbour budget), or None."""
        numbers = atoms.get_atomic_numbers()
        species = found.species(resolved)
        if species is not None:
            allowed = _allowed(species)
            outside = sorted({int(z) for z in numbers.tolist()} - allowed)
            if outside:
                symbol = atoms.get_chemical_symbols()[numbers.tolist().index(outside[0])]
                return (
                    f"element {symbol} is not among species {list(species)} of "
                    f"dscribe:{found.name}: add it to species=[...]"
                )
        reason = found.refuse(resolved, len(atoms))
        if reason is not None:
            return reason
        periodic = self.kind == "structure" and bool(atoms.pbc.any())
        cutoff = found.cutoff(built, resolved)
        if periodic and cutoff is not None:
            limits = current_limits()
            cost = search_cost(len(atoms), np.asarray(atoms.cell), atoms.pbc, cutoff)
            if not cost <= limits.max_neighbors:
                what = f"neighbour search to {cutoff:g} Å of {cost:.3g} pairs/images"
                return limits.limit_reason("max_neighbors", cost, what)
        if found.cell_list and cutoff is not None:
            box = _box(atoms, cutoff if periodic else 0.0)
            cells = float(np.prod(np.maximum(1.0, np.ceil(box / cutoff))))
            if not cells <= MAX_CELLS:
                return _spread_reason(box, cells, cutoff)
        return None


def _spread_reason(box: np.ndarray, cells: float, cutoff: float) -> str:
    return (
        f"atoms spread over a {' × '.join(f'{x:.3g}' for x in box)} Å box: "
        f"DScribe's cell list would need {cells:.3g} cells of {cutoff:.3g} Å "
        f"(limit {MAX_CELLS:,}); a far-away fragment or a cell too large"
    )


def _box(atoms, margin: float) -> np.ndarray:
    """Edge lengths of the box around the atoms (and the cell's corners, when periodic),
    widened by ``margin`` on each side (the periodic images DScribe adds)."""
    points = np.asarray(atoms.positions, dtype=np.float64)
    if margin:
        points = np.vstack([points, _CORNERS @ np.asarray(atoms.cell, dtype=np.float64)])
    with np.errstate(all="ignore"):
        box = points.max(axis=0) - points.min(axis=0) + 2.0 * margin
    return np.where(np.isfinite(box), box, np.inf)


def _allowed(species: tuple[str, ...]) -> set[int]:
    return {atomic_number(s) for s in species}


def _compute(found, built, resolved, atoms: list, width: int) -> tuple[np.ndarray, dict[int, str]]:
    """Rows of ``atoms``: one DScribe call; row by row only if it raises. Non-finite rows fail."""
    failed: dict[int, str] = {}
    try:
        values = found.rows(built, atoms, resolved)
    except Exception:  # one record broke the batch call: find it, keep the others
        values = np.full((len(atoms), width), np.nan)
        for k, one in enumerate(atoms):
            try:
                values[k] = run_record(found.rows, built, [one], resolved)[0]
            except (Exception, RecordTimeout) as exc:
                failed[k] = f"DScribe failed: {failure_reason(exc)}"
    finite = np.isfinite(values).all(axis=1)
    for k in np.flatnonzero(~finite).tolist():
        failed.setdefault(k, "DScribe returned a NaN or infinite value for this record")
    return values, failed
