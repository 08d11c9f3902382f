"""Periodic neighbour search with pymatgen's C cell list, as arrays (no Python per pair).

Both functions wrap ``pymatgen.optimization.neighbors.find_points_in_spheres``,
the compiled cell-list search that ``Structure.get_neighbor_list`` and
``get_all_neighbors`` use, so distances are the very numbers pymatgen (and
therefore XenonPy and matminer) compute; we only skip building a Python
``PeriodicNeighbor`` per pair, which is where those tools spend their time.

Why this search and not another: on the project's structures (2–30 sites,
cutoff 20 Å, 10⁴–10⁵ pairs per structure) it finds 30–40 million pairs a
second on one core, as fast as or faster than vesin, matscipy and ASE, and the
XenonPy-parity RDF needs its exact distances (identical arithmetic, so no pair
at a bin edge moves). See ``bench/README.md`` for the measurements.

Examples
--------
>>> import numpy as np
>>> from xenonscale.featurize.structures.neighbors import pair_distances
>>> cubic = np.eye(3) * 3.0
>>> d = pair_distances(np.zeros((1, 3)), cubic, np.ones(3, bool), 3.1)
>>> np.sort(d).tolist()
[3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
"""

from __future__ import annotations

import numpy as np

__all__ = ["neighbor_list", "pair_distances", "periodic_points", "search_cost", "search_costs"]

#: pymatgen's default ``numerical_tol``: a pair closer than this to itself is "self".
SELF_TOL = 1e-8
#: Pairs per call of the cell list: a structure with many sites is searched in
#: blocks of centres so that the pair arrays stay around 50 MB.
MAX_PAIRS_PER_CALL = 2_000_000


def _search(cart, centers, lattice, pbc, r):
    from pymatgen.optimization.neighbors import find_points_in_spheres

    return find_points_in_spheres(
        cart,
        centers,
        r=float(r),
        pbc=np.ascontiguousarray(pbc, dtype=np.int64),
        lattice=lattice,
        tol=SELF_TOL,
    )


def _center_blocks(n: int, volume: float, r: float) -> int:
    """Centres per search call so that about ``MAX_PAIRS_PER_CALL`` pairs come back."""
    per_center = n / max(volume, 1e-9) * 4.0 / 3.0 * np.pi * r**3 + 1.0
    return max(1, int(MAX_PAIRS_PER_CALL // per_center))


def search_cost(n: int, lattice: np.ndarray, pbc: np.ndarray, r: float) -> float:
    """What a search to ``r`` costs: the larger of the pairs it finds and the images it scans.

    Pairs are ``n`` × (``n`` / volume) × the sphere's volume; the cell list
    also builds every image of every site within ``r`` along each periodic
    direction, ``n`` × Π (2⌈r / h⌉ + 1) over the cell heights ``h``: a cell
    2e-6 Å thin needs ten million images per site even when it holds one
    atom. Compared with ``RecordLimits.max_neighbors`` before searching.

    One site of a 5 Å cube searched to 4 Å scans 3 × 3 × 3 images; the same
    site in a cell 2e-6 Å thin, searched to 1 Å, nine million:

    >>> search_cost(1, np.eye(3) * 5.0, np.ones(3, bool), 4.0)
    27.0
    >>> search_cost(1, np.diag([5.0, 5.0, 2e-6]), np.ones(3, bool), 1.0)
    9000009.0
    """
    return float(search_costs([n], [lattice], [pbc], r)[0])


def search_costs(
    n_sites: np.ndarray, lattices: np.ndarray, pbc: np.ndarray, r: float
) -> np.ndarray:
    """:func:`search_cost` of many structures at once (``float64[m]``, the same numbers).

    >>> cells = np.stack([np.eye(3) * 5.0, np.diag([5.0, 5.0, 2e-6]), np.zeros((3, 3))])
    >>> search_costs([1, 1, 1], cells, np.ones((3, 3), bool), 1.0).tolist()
    [27.0, 9000009.0, inf]
    """
    lattices = np.asarray(lattices, dtype=np.float64).reshape(-1, 3, 3)
    n = np.asarray(n_sites, dtype=np.float64)
    with np.errstate(all="ignore"):  # absurd cells overflow: the cost is then inf or nan
        volume = np.abs(np.linalg.det(lattices)) if len(lattices) else np.zeros(0)
        faces = np.linalg.norm(np.cross(lattices[:, [1, 2, 0]], lattices[:, [2, 0, 1]]), axis=2)
        heights = volume[:, None] / faces
        reach = np.where(np.asarray(pbc, dtype=bool), 2.0 * np.ceil(r / heights) + 1.0, 1.0)
        images = n * np.prod(reach, axis=1)
        pairs = n * n / volume * 4.0 / 3.0 * np.pi * r**3
        cost = np.where(pairs > images, pairs, images)  # Python's max(images, pairs)
    return np.where((volume > 0) & np.isfinite(cost), cost, np.inf)


def pair_distances(cart: np.ndarray, lattice: np.ndarray, pbc: np.ndarray, r: float) -> np.ndarray:
    """Distances of every ordered pair (i, j + image) within ``r``, self pairs excluded.

    The same pairs as ``Structure.get_neighbor_list(r)`` (so as
    ``get_all_neighbors``): pairs up to ``r`` plus pymatgen's 1e-8 tolerance,
    both directions of each pair, and a site with its own periodic images.

    Parameters
    ----------
    cart : float64[n, 3]
        Cartesian coordinates (Å) of one structure.
    lattice : float64[3, 3]
        Lattice vectors as rows.
    pbc : bool[3]
        Periodic directions.
    r : float
        Cutoff (Å).
    """
    cart = np.ascontiguousarray(cart, dtype=np.float64)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    n = len(cart)
    step = _center_blocks(n, abs(np.linalg.det(lattice)), r)
    parts = []
    for first in range(0, n, step):
        centers = cart[first : first + step]
        c, p, _, d = _search(cart, centers, lattice, pbc, r)
        self_pair = (c + first == p) & (d <= SELF_TOL)
        parts.append(d[~self_pair] if self_pair.any() else d)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def periodic_points(
    cart: np.ndarray, lattice: np.ndarray, pbc: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray]:
    """Every periodic image of every site within ``r`` of some site, the sites first.

    Returns
    -------
    points : float64[m, 3]
        Cartesian coordinates; ``points[:n]`` are the ``n`` sites themselves
        (image 0, in site order), the other images follow in no set order.
    site : int64[m]
        The site each point is an image of.
    """
    cart = np.ascontiguousarray(cart, dtype=np.float64)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    n = len(cart)
    _, p, images, _ = _search(cart, cart, lattice, pbc, r)
    images = images.astype(np.int64)
    span = int(np.abs(images).max()) + 1 if len(images) else 1
    width = 2 * span + 1
    shifted = images + span
    key = ((p * width + shifted[:, 0]) * width + shifted[:, 1]) * width + shifted[:, 2]
    home = ((np.arange(n, dtype=np.int64) * width + span) * width + span) * width + span
    unique = np.unique(key)
    others = unique[~np.isin(unique, home, assume_unique=True)]
    site = np.concatenate([np.arange(n, dtype=np.int64), others // width**3])
    rest = others % width**3
    image = np.stack([rest // width**2, (rest // width) % width, rest % width], axis=1) - span
    points = np.concatenate([cart, cart[site[n:]] + image @ lattice])
    return points, site


def neighbor_list(
    cart: np.ndarray, lattice: np.ndarray, pbc: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (site ``i``, image of site ``j``) within ``r``, self pairs excluded.

    The pairs of :func:`pair_distances` with who they join: the same search,
    so the same distances as ``Structure.get_neighbor_list(r)``.

    Returns
    -------
    center, neighbor : int64[p]
        Site indices of each pair.
    image : int64[p, 3]
        The lattice translation of the neighbour's image (fractional units), so
        its position is ``cart[neighbor] + image @ lattice`` (what bond angles need).
    distance : float64[p]
        Distances (Å).

    Examples
    --------
    >>> center, neighbor, image, d = neighbor_list(np.zeros((1, 3)), np.eye(3) * 3.0,
    ...                                            np.ones(3, bool), 3.1)
    >>> len(d), sorted(map(tuple, image.tolist()))[0]
    (6, (-1, 0, 0))
    """
    cart = np.ascontiguousarray(cart, dtype=np.float64)
    lattice = np.ascontiguousarray(lattice, dtype=np.float64)
    n = len(cart)
    step = _center_blocks(n, abs(np.linalg.det(lattice)), r)
    parts = []
    for first in range(0, n, step):
        c, p, images, d = _search(cart, cart[first : first + step], lattice, pbc, r)
        c = c.astype(np.int64) + first
        keep = ~((c == p) & (d <= SELF_TOL))
        parts.append((c[keep], p[keep].astype(np.int64),
                      np.rint(images[keep]).astype(np.int64), d[keep]))  # fmt: skip
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))  # type: ignore[return-value]
