"""Orbital field matrix (Lam Pham et al. 2017) with XenonPy 0.6.7's definition.

Each element is a 32-vector ``o(Z)`` over the valence subshell occupations
``s1 s2 p1..p6 d1..d10 f1..f14``: ``o[l + k] = 1`` when the element's
electronic configuration (pymatgen's ``Element.electronic_structure``,
shells after the noble-gas core; ``1s1``/``1s2`` for H/He) holds a subshell
``l`` with ``k`` electrons. For a structure of ``N`` ordered sites::

    env(i)  = Σ_faces  w_ij / d_ij · o(Z_j)          (w_ij / d_ij → w_ij if including_d=False)
    OFM     = 1/N · Σ_i  env(i) ⊗ o(Z_i)             feature "a_b" = env[a] · o(Z_i)[b]

over the Voronoi faces of site ``i`` (neighbour image ``j`` at distance
``d_ij``), with ``w_ij`` the face's solid angle divided by the largest solid
angle of site ``i``'s faces: pymatgen's ``VoronoiNN(cutoff=10)`` weights,
which XenonPy uses. The faces come from one tessellation per structure
(:mod:`~xenonscale.featurize.structures.voronoi`), exact for the infinite
crystal, and all the sums are array operations over a block of structures.

Note: XenonPy 0.6.7 reads the configuration with the regular expression
``\\.\\d(\\w+)<sup>(\\d+)</sup>``, written for pymatgen's former
``"[Ar].3d<sup>6</sup>.4s<sup>2</sup>"`` text. pymatgen ≥ 2024 writes
``"[Ar].3d6.4s2"``, so XenonPy 0.6.7 on a current pymatgen gives zero vectors
for every element but H and He (an OFM of zeros for most structures). This
class implements the definition; the parity tests run XenonPy's own code with
the configuration text given back in the format its expression expects.

Examples
--------
>>> from xenonscale.featurize.structures import OrbitalFieldMatrix
>>> ofm = OrbitalFieldMatrix()
>>> len(ofm.labels), ofm.labels[:2], ofm.labels[-1]
(1024, ['s1_s1', 's1_s2'], 'f14_f14')
"""

from __future__ import annotations

import functools
import re

import numpy as np
import scipy.sparse as sp

from xenonscale.chem.formula import RowError
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.featurize.structures.featurizer import StructureFeaturizer
from xenonscale.featurize.structures.parse import StructureBatch
from xenonscale.featurize.structures.voronoi import voronoi_faces

__all__ = ["SUBSHELLS", "OrbitalFieldMatrix", "valence_table"]

SUBSHELLS: tuple[str, ...] = (
    *(f"s{k}" for k in range(1, 3)),
    *(f"p{k}" for k in range(1, 7)),
    *(f"d{k}" for k in range(1, 11)),
    *(f"f{k}" for k in range(1, 15)),
)
_COLUMN = {name: k for k, name in enumerate(SUBSHELLS)}
_SHELL = re.compile(r"\d([spdf])(\d+)")
_N_Z = len(PERIODIC_SYMBOLS) + 1

OFM_CITATION = (
    "Lam Pham, T. et al. Machine learning reveals orbital interaction in materials. "
    "Sci. Technol. Adv. Mater. 18, 756-765 (2017)"
)


@functools.lru_cache(maxsize=1)
def valence_table() -> np.ndarray:
    """``float64[119, 32]``: row ``Z`` is ``o(Z)``; NaN where pymatgen has no configuration."""
    from pymatgen.core import Element

    table = np.full((_N_Z, len(SUBSHELLS)), np.nan)
    for z in range(1, _N_Z):
        try:
            text = Element.from_Z(z).electronic_structure
        except (KeyError, ValueError):
            continue  # pymatgen has no configuration for Db and heavier
        row = np.zeros(len(SUBSHELLS))
        for token in text.split("."):
            match = _SHELL.fullmatch(token)
            if match and match[1] + match[2] in _COLUMN:
                row[_COLUMN[match[1] + match[2]]] = 1.0
        table[z] = row
    table.setflags(write=False)
    return table


class OrbitalFieldMatrix(StructureFeaturizer):
    """Orbital field matrix, 32 × 32 = 1,024 features (see the module docstring).

    Parameters
    ----------
    including_d : bool, default True
        Weight each neighbour by ``w / d`` (XenonPy's default) or by ``w``.
    block_rows : int, default 256
        Structures whose faces are combined in one array pass (memory bound).
    on_error : {"record", "raise"}
        ``"record"``: bad rows (unreadable, disordered, an element without a
        configuration, a failed tessellation) are NaN with a reason.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> structure = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> round(float(OrbitalFieldMatrix().transform([structure]).loc[0, "d6_d6"]), 3)
    3.972
    """

    citations = (OFM_CITATION,)

    def __init__(
        self, including_d: bool = True, *, block_rows: int = 256, on_error: str = "record"
    ):
        self.including_d = including_d
        self.block_rows = block_rows
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``"<neighbour subshell>_<centre subshell>"``: XenonPy's ``s1_s1`` … ``f14_f14``."""
        return [f"{a}_{b}" for a in SUBSHELLS for b in SUBSHELLS]

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        table = valence_table()
        known = ~np.isnan(table[:, 0])
        errors: list[RowError] = []
        usable = np.ones(len(rows), dtype=bool)
        for k, row in enumerate(rows.tolist()):
            z = batch.z[batch.sites(row)]
            if not batch.ordered[row]:
                reason = "disordered structure (partial occupancies): the OFM needs an ordered one"
            elif not known[z].all():
                symbol = PERIODIC_SYMBOLS[int(z[~known[z]][0]) - 1]
                reason = f"element {symbol} has no electron configuration in pymatgen"
            else:
                continue
            usable[k] = False
            errors.append(batch.error(row, reason))
        positions = np.flatnonzero(usable)
        step = max(1, int(self.block_rows))
        for first in range(0, len(positions), step):
            block = positions[first : first + step]
            errors.extend(self._block(batch, rows, block, out, table))
        return errors

    def _block(self, batch, rows, block, out, table) -> list[RowError]:
        """OFMs of ``rows[block]`` into ``out[block]``."""
        faces, failed = voronoi_faces(batch, rows[block])
        errors = [batch.error(row, reason) for row, reason in failed.items()]
        keep = block[[int(r) not in failed for r in rows[block].tolist()]]
        if not len(keep):
            return errors
        # Sites of the kept rows, in order: the faces' centres are exactly these.
        sites = np.concatenate([np.arange(batch.start[r], batch.start[r + 1]) for r in rows[keep]])
        local = np.searchsorted(sites, faces.center)
        firsts = np.flatnonzero(np.r_[True, faces.center[1:] != faces.center[:-1]])
        largest = np.maximum.reduceat(faces.solid_angle, firsts)
        counts = np.diff(np.r_[firsts, len(faces.center)])
        weight = faces.solid_angle / np.repeat(largest, counts)
        if self.including_d:
            weight = weight / faces.distance
        # env[site] = Σ weight · o(Z_neighbour): a (sites × Z) weight matrix times the table.
        by_element = sp.csr_matrix(
            (weight, (local, batch.z[faces.neighbor].astype(np.int64))),
            shape=(len(sites), _N_Z),
        )
        known = np.nan_to_num(table)
        env = by_element @ known
        # OFM[row] = 1/N Σ_sites env ⊗ o(Z_site): group sites by (row, Z) first.
        n_sites = batch.n_sites[rows[keep]]
        site_row = np.repeat(np.arange(len(keep)), n_sites)
        group_key = site_row * _N_Z + batch.z[sites]
        groups, group_of_site = np.unique(group_key, return_inverse=True)
        summed = (
            sp.csr_matrix(
                (np.ones(len(sites)), (group_of_site.reshape(-1), np.arange(len(sites)))),
                shape=(len(groups), len(sites)),
            )
            @ env
        )
        outer = summed[:, :, None] * known[groups % _N_Z][:, None, :]
        group_rows = groups // _N_Z
        starts = np.flatnonzero(np.r_[True, group_rows[1:] != group_rows[:-1]])
        per_row = np.add.reduceat(outer.reshape(len(groups), -1), starts, axis=0)
        out[keep] = per_row / n_sites[:, None]
        return errors
