"""Radial distribution function with XenonPy 0.6.7's definition and defaults.

For a structure of ``N`` sites in a cell of volume ``V``, with bin edges
``r_0 = 0 < r_1 < ... < r_B`` (``numpy.arange(0, r_max + dr, dr)``,
``dr = r_max / (n_bins - 1)``: XenonPy's grid, 201 points → 200 bins)::

    rdf[k] = count[k] / (4/3 π (r_{k+1}³ − r_k³)) / (N / V)

where ``count[k]`` is the number of ordered pairs (site ``i``, periodic image
of site ``j`` ≠ ``i`` itself) at distance ``r_k ≤ d < r_{k+1}`` (the last bin
also takes ``d = r_B``), summed over all ``N`` centres, not averaged: that is
XenonPy's (and matminer's) normalization, a sum of per-site RDFs. The label of
bin ``k`` is its outer edge ``r_{k+1}``, written cleanly (``"0.3"``, where
XenonPy writes ``str(0.30000000000000004)``).

Pairs come from pymatgen's compiled cell list for the whole structure at once
(:func:`~xenonscale.featurize.structures.neighbors.pair_distances`), and are
binned with one ``bincount``; bin indices are computed with one division and
corrected against the exact edges, so every pair lands where ``numpy.histogram``
puts it.

Examples
--------
>>> from xenonscale.featurize.structures import RadialDistributionFunction
>>> rdf = RadialDistributionFunction()
>>> len(rdf.labels), rdf.labels[:3]
(200, ['0.1', '0.2', '0.3'])
"""

from __future__ import annotations

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.errors import ConfigError
from xenonscale.featurize.structures.featurizer import StructureFeaturizer
from xenonscale.featurize.structures.neighbors import pair_distances, search_cost
from xenonscale.featurize.structures.parse import StructureBatch
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = ["RadialDistributionFunction", "rdf_edges"]

DISORDERED = "disordered structure (partial occupancies): the RDF needs an ordered one"
XENONPY_CITATION = "XenonPy, https://github.com/yoshida-lab/XenonPy (RadialDistributionFunction)"


def rdf_edges(n_bins: int = 201, r_max: float = 20.0) -> np.ndarray:
    """XenonPy's bin edges: ``arange(0, r_max + dr, dr)``, ``dr = r_max / (n_bins - 1)``."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 2:
        raise ConfigError(f"n_bins={n_bins!r}: use an integer ≥ 2 (grid points, 0 included)")
    if not isinstance(r_max, int | float | np.number) or not np.isfinite(r_max) or r_max <= 0:
        raise ConfigError(f"r_max={r_max!r}: use a positive cutoff in Å, e.g. 20.0")
    dr = float(r_max) / (int(n_bins) - 1)
    return np.arange(0.0, float(r_max) + dr, dr)


def bin_indices(distances: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each distance as ``numpy.histogram(distances, bins=edges)`` bins it; -1 outside."""
    bins = len(edges) - 1
    step = edges[1] - edges[0]
    k = np.floor(distances / step).astype(np.int64)
    np.clip(k, 0, bins - 1, out=k)
    k -= distances < edges[k]
    np.clip(k, 0, bins - 1, out=k)
    k += (distances >= edges[k + 1]) & (k < bins - 1)
    outside = (distances < edges[0]) | (distances > edges[-1])
    k[outside] = -1
    return k


class RadialDistributionFunction(StructureFeaturizer):
    """Radial distribution function (XenonPy 0.6.7's; see the module docstring).

    Parameters
    ----------
    n_bins : int, default 201
        Radial grid points including 0 (XenonPy's meaning): ``n_bins - 1``
        features.
    r_max : float, default 20.0
        Largest radius (Å).
    on_error : {"record", "raise"}
        ``"record"``: bad rows (unreadable, empty, disordered) are NaN with a
        reason in ``errors_``.

    Examples
    --------
    >>> RadialDistributionFunction(n_bins=11, r_max=5.0).labels[-2:]
    ['4.5', '5.0']
    """

    citations = (XENONPY_CITATION,)

    def __init__(self, n_bins: int = 201, r_max: float = 20.0, *, on_error: str = "record"):
        self.n_bins = n_bins
        self.r_max = r_max
        self.on_error = on_error

    @property
    def edges(self) -> np.ndarray:
        """The bin edges (Å), XenonPy's grid."""
        return rdf_edges(self.n_bins, self.r_max)

    @property
    def labels(self) -> list[str]:
        """Outer bin edges, XenonPy's labels written without float noise (``"0.3"``)."""
        return [repr(round(float(e), 10)) for e in self.edges[1:]]

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        edges = self.edges
        bins = len(edges) - 1
        shell = 4.0 / 3.0 * np.pi * (np.power(edges[1:], 3) - np.power(edges[:-1], 3))
        r_search = float(self.r_max)  # XenonPy searches to r_max, then bins by the edges
        limits = current_limits()
        errors = []

        def one(row: int) -> np.ndarray:
            sites = batch.sites(row)
            m = batch.lattice[row]
            distances = pair_distances(batch.cart[sites], m, batch.pbc[row], r_search)
            index = bin_indices(distances, edges)
            counts = np.bincount(index[index >= 0], minlength=bins)
            volume = float(abs(np.dot(np.cross(m[0], m[1]), m[2])))
            density = (sites.stop - sites.start) / volume
            return counts / shell / density

        for k, row in enumerate(rows.tolist()):
            if not batch.ordered[row]:
                errors.append(batch.error(row, DISORDERED))
                continue
            n = int(batch.n_sites[row])
            cost = search_cost(n, batch.lattice[row], batch.pbc[row], r_search)
            if not cost <= limits.max_neighbors:
                what = f"neighbour search to {r_search:g} Å of {cost:.3g} pairs/images"
                errors.append(batch.error(row, limits.limit_reason("max_neighbors", cost, what)))
                continue
            try:
                out[k] = run_record(one, row)
            except (Exception, RecordTimeout) as exc:
                errors.append(batch.error(row, failure_reason(exc)))
        return errors
