"""Basic structure properties: density, packing, symmetry and lattice (12 features).

=====================  ========================================================
label                  definition
=====================  ========================================================
``density``            mass / volume (g/cm³): Σ occupancy × atomic mass
                       (pymatgen's masses) over the sites, as
                       ``Structure.density``
``volume_per_atom``    cell volume / number of sites (Å³)
``packing_fraction``   Σ occupancy × 4/3 π r³ over the sites / cell volume,
                       ``r`` = pymatgen's ``Element.atomic_radius`` (empirical,
                       Slater 1964), else ``atomic_radius_calculated``
                       (Clementi 1967) for the noble gases it lacks; a row
                       with an element that has neither (At, Fr, Cm and
                       heavier) is an error row
``n_sites``            sites in the cell as given (not reduced to primitive)
``space_group_number`` 1–230 from spglib on (lattice, fractional coordinates,
                       species), ``symprec=0.01`` Å and ``angle_tolerance=5``°:
                       what pymatgen's ``SpacegroupAnalyzer()`` defaults give
                       (species told apart as it does: element, oxidation state
                       and occupancy)
``crystal_system``     1 triclinic, 2 monoclinic, 3 orthorhombic, 4 tetragonal,
                       5 trigonal, 6 hexagonal, 7 cubic (from the space group)
``lattice_a/b/c``      lattice vector lengths (Å)
``lattice_alpha/..``   lattice angles α (b, c), β (a, c), γ (a, b) in degrees
=====================  ========================================================

Masses, radii, volumes and lattice parameters are array operations over the
whole batch; spglib runs once per structure (it is compiled code).

Examples
--------
>>> from xenonscale.featurize.structures import StructureProperties
>>> StructureProperties().labels[:3]
['density', 'volume_per_atom', 'packing_fraction']
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.featurize.structures.featurizer import StructureFeaturizer
from xenonscale.featurize.structures.parse import StructureBatch
from xenonscale.limits import RecordTimeout, run_record

__all__ = ["CRYSTAL_SYSTEMS", "StructureProperties", "crystal_system"]

LABELS = (
    "density",
    "volume_per_atom",
    "packing_fraction",
    "n_sites",
    "space_group_number",
    "crystal_system",
    "lattice_a",
    "lattice_b",
    "lattice_c",
    "lattice_alpha",
    "lattice_beta",
    "lattice_gamma",
)
CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
# Last space-group number of each crystal system (International Tables).
_SYSTEM_ENDS = np.array([2, 15, 74, 142, 167, 194, 230])

SPGLIB_CITATION = (
    "Togo, A., Shinohara, K. & Tanaka, I. Spglib: a software library for crystal symmetry "
    "search. Sci. Technol. Adv. Mater. Meth. 4, 2384822 (2024)"
)


def crystal_system(space_group: np.ndarray) -> np.ndarray:
    """Crystal system number 1–7 (see :data:`CRYSTAL_SYSTEMS`) of space-group numbers 1–230."""
    return np.searchsorted(_SYSTEM_ENDS, np.asarray(space_group), side="left") + 1


@functools.lru_cache(maxsize=1)
def _element_data() -> tuple[np.ndarray, np.ndarray, float]:
    """(mass[119], radius[119], g/cm³ per amu/Å³) from pymatgen; NaN radius where unknown."""
    from pymatgen.core import Element
    from pymatgen.core.units import Length, Mass

    mass = np.full(len(PERIODIC_SYMBOLS) + 1, np.nan)
    radius = np.full(len(PERIODIC_SYMBOLS) + 1, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns about missing data for heavy elements
        for z in range(1, len(PERIODIC_SYMBOLS) + 1):
            element = Element.from_Z(z)
            mass[z] = float(element.atomic_mass)
            r = element.atomic_radius
            r = r if r is not None else element.atomic_radius_calculated
            if r is not None:
                radius[z] = float(r)
    factor = float(Mass(1.0, "amu").to("g")) / float(Length(1.0, "ang").to("cm")) ** 3
    mass.setflags(write=False)
    radius.setflags(write=False)
    return mass, radius, factor


class StructureProperties(StructureFeaturizer):
    """Density, volume per atom, packing fraction, sites, symmetry, lattice (12 features).

    Parameters
    ----------
    symprec : float, default 0.01
        spglib's distance tolerance (Å); pymatgen's ``SpacegroupAnalyzer``
        default. The Materials Project uses 0.1 for relaxed structures.
    angle_tolerance : float, default 5.0
        spglib's angle tolerance (degrees).
    on_error : {"record", "raise"}

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> structure = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> frame = StructureProperties().transform([structure])
    >>> frame.loc[0, ["density", "volume_per_atom"]].round(3).tolist()
    [7.845, 11.82]
    """

    citations = (SPGLIB_CITATION,)

    def __init__(
        self, *, symprec: float = 0.01, angle_tolerance: float = 5.0, on_error: str = "record"
    ):
        self.symprec = symprec
        self.angle_tolerance = angle_tolerance
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        return list(LABELS)

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        mass, radius, factor = _element_data()
        n_sites = batch.n_sites[rows]
        m = batch.lattice[rows]
        volume = np.abs((np.cross(m[:, 0], m[:, 1]) * m[:, 2]).sum(axis=1))
        # Per-row sums over the occupancies of all sites.
        occ_row = np.repeat(
            np.repeat(np.arange(len(batch)), batch.n_sites), np.diff(batch.occ_start)
        )
        weight = np.bincount(occ_row, batch.occ_amount * mass[batch.occ_z], minlength=len(batch))
        spheres = np.bincount(
            occ_row,
            batch.occ_amount * (4.0 / 3.0 * np.pi) * radius[batch.occ_z] ** 3,
            minlength=len(batch),
        )
        out[:, 0] = weight[rows] / volume * factor
        out[:, 1] = volume / n_sites
        out[:, 2] = spheres[rows] / volume
        out[:, 3] = n_sites
        lengths = np.sqrt((m * m).sum(axis=2))
        out[:, 6:9] = lengths
        for k, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
            cosine = (m[:, i] * m[:, j]).sum(axis=1) / (lengths[:, i] * lengths[:, j])
            out[:, 9 + k] = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        with warnings.catch_warnings():
            # spglib ≥ 2.5 warns that its None-on-failure convention is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            errors = self._symmetry(batch, rows, out, radius)
        out[:, 5] = crystal_system(np.nan_to_num(out[:, 4], nan=1.0))
        return errors

    def _symmetry(self, batch, rows, out, radius) -> list[RowError]:
        """Space groups into ``out[:, 4]``; error rows for missing radii or spglib failures."""
        errors = []
        for k, row in enumerate(rows.tolist()):
            if np.isnan(out[k, 2]):
                zs = batch.occ_z[
                    batch.occ_start[batch.start[row]] : batch.occ_start[batch.start[row + 1]]
                ]
                missing = sorted(
                    {PERIODIC_SYMBOLS[z - 1] for z in zs.tolist() if np.isnan(radius[z])}
                )
                errors.append(
                    batch.error(
                        row, f"no atomic radius for {', '.join(missing)} (packing fraction)"
                    )
                )
                continue
            try:
                number = run_record(self._space_group, batch, row)
            except RecordTimeout as exc:
                errors.append(batch.error(row, str(exc)))
                continue
            if number is None:
                errors.append(batch.error(row, "spglib could not determine the space group"))
                continue
            out[k, 4] = number
        return errors

    def _space_group(self, batch: StructureBatch, row: int) -> int | None:
        import spglib

        sites = batch.sites(row)
        cell = (batch.lattice[row], batch.frac[sites], batch.species_key[sites])
        try:
            dataset = spglib.get_symmetry_dataset(
                cell, symprec=self.symprec, angle_tolerance=self.angle_tolerance
            )
        except Exception:  # spglib raises its own error types on degenerate cells
            return None
        return None if dataset is None else int(dataset.number)
