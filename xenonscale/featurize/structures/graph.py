"""Crystal graphs: each structure's atoms and its nearest neighbours, as fixed-width data.

A graph network (CGCNN, MEGNet, ...) reads a crystal as atoms joined by edges
to their neighbours within a cutoff. :class:`CrystalGraph` (engine name
``graph``) writes, per structure, a block of ``atoms × (1 + 5 × neighbors)``
numbers into the store's ``features`` (layout :data:`GRAPH_ENCODING`):

* ``z:i``: the atomic number of atom ``i`` (site order), 0 = empty slot;
* ``neighbor:i:k``: the site index of atom ``i``'s ``k``-th nearest neighbour
  within ``cutoff`` (nearest first, ties by site index), −1 = empty slot;
* ``distance:i:k``: its distance (Å);
* ``image_a:i:k``, ``image_b:i:k``, ``image_c:i:k``: the lattice translation of
  that neighbour's periodic image, so its position is
  ``cart[j] + image @ lattice`` (with the structure's coordinates, enough for
  bond angles).

Why fixed width and not a ragged edge list with offsets: every array of a
FeatureStore is chunked along ``sample``, so each worker writes its own
chunks, a killed job resumes chunk by chunk and a DataModule streams rows
chunk by chunk; a block per sample keeps all of that unchanged. It is the
layout of CGCNN itself (``N × M`` neighbour arrays, M = 12). Empty slots are
zeros (−1 for a missing neighbour), which the store's Blosc compression all
but removes; a model cuts each batch to its largest structure.

The budget is explicit: a structure with more sites than ``atoms`` is an
error row that names the limit (``graph:atoms=N`` raises it), as is a
disordered structure, an atom without a neighbour within the cutoff (an
isolated atom), or a neighbour search above the ``max_neighbors`` record
budget. The neighbours come from the same compiled cell list as the RDF and
OFM (:func:`~xenonscale.featurize.structures.neighbors.neighbor_list`).

Options go in the name: ``graph`` (cutoff 8 Å, 12 neighbours, 64 atoms: CGCNN's
radius and neighbour count) or ``graph:cutoff=6/neighbors=16/atoms=128``.

Examples
--------
>>> from xenonscale.featurize.structures.graph import CrystalGraph
>>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
>>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
>>> graph = CrystalGraph(cutoff=4.0, neighbors=4, atoms=2)
>>> batch = graph.featurize_batch([poscar])
>>> z, neighbor, distance, image = graph.unpack(batch.values)
>>> z[0].tolist(), neighbor[0, 0].tolist(), distance[0, 0].round(3).tolist()
([14, 14], [1, 1, 1, 1], [2.338, 2.338, 2.338, 2.338])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError
from xenonscale.featurize.structures.featurizer import StructureFeaturizer
from xenonscale.featurize.structures.neighbors import neighbor_list, search_cost
from xenonscale.featurize.structures.parse import StructureBatch
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = ["GRAPH_ENCODING", "CrystalGraph", "GraphLayout", "parse_graph_options"]

CGCNN_CITATION = (
    "Xie, T. & Grossman, J. C. Crystal graph convolutional neural networks for an accurate "
    "and interpretable prediction of material properties. Phys. Rev. Lett. 120, 145301 (2018)"
)
GRAPH_ENCODING = (
    "per sample, atoms slots then atoms x neighbors slots: z:i (atomic number, 0 = empty), "
    "neighbor:i:k (site index of the k-th nearest neighbour within the cutoff, -1 = empty), "
    "distance:i:k (Angstrom), image_a/b/c:i:k (lattice translation of the neighbour's image)"
)
DISORDERED = "disordered structure (partial occupancies): a crystal graph needs an ordered one"
_OPTIONS = {"cutoff": float, "neighbors": int, "atoms": int}


@dataclass(frozen=True)
class GraphLayout:
    """Where each part of a graph row sits: ``atoms`` slots, ``neighbors`` per atom.

    >>> GraphLayout(atoms=2, neighbors=3).width
    32
    """

    atoms: int
    neighbors: int

    @property
    def width(self) -> int:
        return self.atoms * (1 + 5 * self.neighbors)

    def blocks(self) -> dict[str, slice]:
        """Column ranges of ``z``, ``neighbor``, ``distance``, ``image`` (3 per edge slot)."""
        a, e = self.atoms, self.atoms * self.neighbors
        return {
            "z": slice(0, a),
            "neighbor": slice(a, a + e),
            "distance": slice(a + e, a + 2 * e),
            "image": slice(a + 2 * e, a + 5 * e),
        }


def parse_graph_options(text: str) -> dict:
    """``cutoff=6/neighbors=16/atoms=128`` → keyword arguments of :class:`CrystalGraph`.

    >>> parse_graph_options("cutoff=6/atoms=128")
    {'cutoff': 6.0, 'atoms': 128}
    """
    options: dict = {}
    for item in filter(None, text.split("/")):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in _OPTIONS:
            raise ConfigError(
                f"graph option {item!r}: write KEY=VALUE with KEY in {', '.join(_OPTIONS)}, "
                "e.g. graph:cutoff=6/neighbors=12/atoms=64"
            )
        try:
            options[key.strip()] = _OPTIONS[key.strip()](value)
        except ValueError:
            raise ConfigError(f"graph option {item!r}: {value!r} is not a number") from None
    return options


class CrystalGraph(StructureFeaturizer):
    """Atoms and their nearest neighbours within a cutoff (see the module docstring).

    Parameters
    ----------
    cutoff
        Neighbour search radius (Å).
    neighbors
        Neighbours kept per atom (the nearest ones).
    atoms
        Atom slots per structure; larger structures are error rows.
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN with their reason.
    """

    citations = (CGCNN_CITATION,)

    def __init__(self, cutoff: float = 8.0, neighbors: int = 12, atoms: int = 64, *,
                 on_error: str = "record"):  # fmt: skip
        if not (isinstance(cutoff, int | float) and math.isfinite(cutoff) and cutoff > 0):
            raise ConfigError(f"graph cutoff={cutoff!r}: use a positive radius in Å, e.g. 8")
        for key, value in (("neighbors", neighbors), ("atoms", atoms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"graph {key}={value!r}: use a positive integer")
        self.cutoff = float(cutoff)
        self.neighbors = int(neighbors)
        self.atoms = int(atoms)
        self.on_error = on_error

    @property
    def layout(self) -> GraphLayout:
        return GraphLayout(self.atoms, self.neighbors)

    @property
    def options(self) -> dict:
        """The graph's options (recorded in model configs)."""
        return {"cutoff": self.cutoff, "neighbors": self.neighbors, "atoms": self.atoms}

    @property
    def labels(self) -> list[str]:
        atoms, slots = range(self.atoms), range(self.neighbors)
        labels = [f"z:{i}" for i in atoms]
        for part in ("neighbor", "distance", "image_a", "image_b", "image_c"):
            labels += [f"{part}:{i}:{k}" for i in atoms for k in slots]
        return labels

    def unpack(self, values: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(z [n, A], neighbor [n, A, K], distance [n, A, K], image [n, A, K, 3])`` arrays."""
        values = np.asarray(values)
        n, a, k = len(values), self.atoms, self.neighbors
        blocks = self.layout.blocks()
        z = values[:, blocks["z"]].astype(np.int64)
        neighbor = values[:, blocks["neighbor"]].reshape(n, a, k).astype(np.int64)
        distance = values[:, blocks["distance"]].reshape(n, a, k)
        image = values[:, blocks["image"]].reshape(n, 3, a, k).transpose(0, 2, 3, 1)
        return z, neighbor, distance, image.astype(np.int64)

    def _one(self, batch: StructureBatch, row: int) -> np.ndarray:
        sites = batch.sites(row)
        n = sites.stop - sites.start
        center, neighbor, image, distance = neighbor_list(
            batch.cart[sites], batch.lattice[row], batch.pbc[row], self.cutoff
        )
        order = np.lexsort((neighbor, distance, center))
        center, neighbor, image, distance = (
            center[order], neighbor[order], image[order], distance[order]
        )  # fmt: skip
        counts = np.bincount(center, minlength=n)
        lonely = np.flatnonzero(counts == 0)
        if len(lonely):
            i = int(lonely[0])
            symbol = PERIODIC_SYMBOLS[int(batch.z[sites][i]) - 1]
            raise _Isolated(
                f"site {i} ({symbol}) has no neighbour within {self.cutoff:g} Å (an isolated "
                f"atom): raise the cutoff, e.g. graph:cutoff={2 * self.cutoff:g}"
            )
        rank = np.arange(len(center)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < self.neighbors
        a, k = self.atoms, self.neighbors
        z = np.zeros(a)
        z[:n] = batch.z[sites]
        slots = np.full((a, k), -1.0)
        lengths = np.zeros((a, k))
        images = np.zeros((3, a, k))
        i, r = center[keep], rank[keep]
        slots[i, r] = neighbor[keep]
        lengths[i, r] = distance[keep]
        images[:, i, r] = image[keep].T
        return np.concatenate([z, slots.ravel(), lengths.ravel(), images.ravel()])

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        limits = current_limits()
        errors = []
        for k, row in enumerate(rows.tolist()):
            n = int(batch.n_sites[row])
            if not batch.ordered[row]:
                errors.append(batch.error(row, DISORDERED))
                continue
            if n > self.atoms:
                errors.append(batch.error(row, (
                    f"has {n} sites; the crystal graph holds at most {self.atoms} atoms per "
                    f"structure: raise it, e.g. graph:atoms={max(n, 2 * self.atoms)}"
                )))  # fmt: skip
                continue
            cost = search_cost(n, batch.lattice[row], batch.pbc[row], self.cutoff)
            if not cost <= limits.max_neighbors:
                what = f"neighbour search to {self.cutoff:g} Å of {cost:.3g} pairs/images"
                errors.append(batch.error(row, limits.limit_reason("max_neighbors", cost, what)))
                continue
            try:
                out[k] = run_record(self._one, batch, row)
            except _Isolated as exc:
                errors.append(batch.error(row, str(exc)))
            except (Exception, RecordTimeout) as exc:
                errors.append(batch.error(row, failure_reason(exc)))
        return errors


class _Isolated(Exception):
    """An atom with no neighbour within the cutoff (the message is the row's reason)."""
