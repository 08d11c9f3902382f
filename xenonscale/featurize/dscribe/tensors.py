"""MBTR and the Valle–Oganov fingerprint: many-body tensors on a grid, one k per featurizer.

* **MBTR** (:class:`Mbtr`): DScribe 2.x's ``MBTR`` holds one geometry function;
  ``k`` picks it (1 atomic number, 2 inverse distance, 3 cosine of the angle)
  with that k's grid (:data:`MBTR_GRID`) and weighting (:data:`MBTR_WEIGHTING`),
  or ``geometry``/``grid``/``weighting`` dicts are given.
* **ValleOganov** (:class:`ValleOganov`): DScribe's ``ValleOganov`` (MBTR k=2 or
  3 with Valle and Oganov's normalization; periodic only).

Labels name the grid point: ``x_i = min + i (max − min) / (n − 1)``.

Examples
--------
>>> mbtr = Mbtr()
>>> params = mbtr.resolve({"species": ["Si", "O"], "k": 3, "grid": {"n": 3}}, "molecule")
>>> labels = mbtr.labels(params)
>>> len(labels), labels[0]
(18, 'MBTR(k=3 grid={min=-1 max=1 n=3 sigma=0.05}):O-O-O:cosine=-1')
>>> labels[-1].split(":")[1:]
['Si-Si-Si', 'cosine=1']
"""

from __future__ import annotations

import math
from typing import ClassVar

from xenonscale.errors import ConfigError
from xenonscale.featurize.dscribe.base import (
    Descriptor,
    choice_param,
    dict_param,
    grid_labels,
    integer_param,
    number_param,
    pair_indices,
)
from xenonscale.featurize.dscribe.species import resolve_species

__all__ = [
    "MBTR_GEOMETRY",
    "MBTR_GRID",
    "MBTR_K",
    "MBTR_WEIGHTING",
    "VALLE_OGANOV_DEFAULTS",
    "Mbtr",
    "ValleOganov",
]

#: Geometry function of each k (the grid axis of the labels).
MBTR_GEOMETRY = {1: "atomic_number", 2: "inverse_distance", 3: "cosine"}
MBTR_K = {"atomic_number": 1, "distance": 2, "inverse_distance": 2, "angle": 3, "cosine": 3}
MBTR_GRID = {
    1: {"min": 0.0, "max": 100.0, "n": 101, "sigma": 0.1},  # one point per atomic number
    2: {"min": 0.0, "max": 1.5, "n": 100, "sigma": 0.02},  # 1/Å: down to 0.67 Å
    3: {"min": -1.0, "max": 1.0, "n": 100, "sigma": 0.05},  # cos θ
}
MBTR_WEIGHTING = {
    1: None,  # unity
    2: {"function": "exp", "scale": 1.0, "threshold": 1e-3},  # neighbours to 6.9 Å
    3: {"function": "exp", "scale": 0.5, "threshold": 1e-3},  # perimeters to 13.8 Å
}


class Mbtr(Descriptor):
    """Many-body tensor representation, one k per featurizer."""

    name = "MBTR"
    defaults: ClassVar[dict[str, object]] = {
        "species": None,
        "k": 2,
        "geometry": None,
        "grid": None,
        "weighting": None,
        "normalize_gaussians": True,
        "normalization": "n_atoms",
    }
    citations = (
        "Huo, H. & Rupp, M. Unified representation of molecules and crystals for machine "
        "learning. Mach. Learn.: Sci. Technol. 3, 045017 (2022)",
    )

    def _check(self, what, p, given):
        p["species"] = resolve_species(p["species"], what=what)
        k = integer_param(what, "k", p["k"], 1, 3)
        if p["geometry"] is not None:
            geometry = dict_param(what, "geometry", p["geometry"])
            function = choice_param(
                what, "geometry function", geometry.get("function"), list(MBTR_K)
            )
            if "k" in given and MBTR_K[function] != k:
                raise ConfigError(
                    f"{what}: geometry {function!r} is a k={MBTR_K[function]} term but k={k}: "
                    "give one of them"
                )
            k = MBTR_K[function]
            p["geometry"] = geometry
        else:
            p["geometry"] = {"function": MBTR_GEOMETRY[k]}
        p["k"] = k
        grid = {**MBTR_GRID[k], **(dict_param(what, "grid", p["grid"]) if p["grid"] else {})}
        for key in ("min", "max", "sigma"):
            grid[key] = number_param(what, f"grid {key}", grid[key], positive=key == "sigma")
        grid["n"] = integer_param(what, "grid n", grid["n"], 2, 100_000)
        if grid["min"] >= grid["max"]:
            raise ConfigError(f"{what}: grid min {grid['min']} must be below max {grid['max']}")
        p["grid"] = grid
        if p["weighting"] is None:
            p["weighting"] = MBTR_WEIGHTING[k]
        else:
            p["weighting"] = dict_param(what, "weighting", p["weighting"])
        if not isinstance(p["normalize_gaussians"], bool):
            raise ConfigError(
                f"{what}: normalize_gaussians={p['normalize_gaussians']!r}: True/False"
            )
        p["normalization"] = choice_param(
            what, "normalization", p["normalization"], ("none", "l2", "n_atoms", "valle_oganov")
        )
        return p

    def display_defaults(self, p):
        k = p["k"]
        return {
            **self.defaults,
            "geometry": {"function": MBTR_GEOMETRY[k]},
            "grid": MBTR_GRID[k],
            "weighting": MBTR_WEIGHTING[k],
        }

    def constructor(self, p, periodic):
        return {
            "species": list(p["species"]),
            "geometry": p["geometry"],
            "grid": p["grid"],
            "weighting": p["weighting"],
            "normalize_gaussians": p["normalize_gaussians"],
            "normalization": p["normalization"],
            "periodic": periodic,
        }

    def labels(self, p):
        """Blocks in DScribe's ``get_location`` order; in a block, the grid points
        ``x_i = min + i (max − min) / (n − 1)``, labelled with their value."""
        species, k = p["species"], p["k"]
        if k == 1:
            combos = [(s,) for s in species]
        elif k == 2:
            combos = [(species[i], species[j]) for i, j in pair_indices(species)]
        else:  # the middle atom outermost, then (i, k ≥ i)
            combos = [
                (species[i], species[j], species[m])
                for j in range(len(species))
                for i, m in pair_indices(species)
            ]
        axis = grid_labels(p["grid"])
        function, prefix = p["geometry"]["function"], self.prefix(p)
        return [f"{prefix}:{'-'.join(c)}:{function}={x}" for c in combos for x in axis]

    def cutoff(self, built, p):
        weighting = p["weighting"] or {}
        if weighting.get("r_cut") is not None:
            return float(weighting["r_cut"])
        if weighting.get("function") == "exp" and weighting.get("scale"):
            return -math.log(float(weighting.get("threshold", 1e-2))) / float(weighting["scale"])
        return None


VALLE_OGANOV_DEFAULTS = {
    "distance": {"n": 100, "sigma": 0.3, "r_cut": 10.0},  # Å
    "angle": {"n": 90, "sigma": 2.0, "r_cut": 6.0},  # degrees; Å
}


class ValleOganov(Descriptor):
    """Valle–Oganov fingerprint: MBTR k = 2 or 3 with Valle and Oganov's normalization."""

    name = "ValleOganov"
    kinds = ("structure",)
    wrong_kind = "it is defined for periodic cells only; for molecules use dscribe:MBTR"
    defaults: ClassVar[dict[str, object]] = {
        "species": None,
        "function": "distance",
        "n": None,
        "sigma": None,
        "r_cut": None,
    }
    citations = (
        "Valle, M. & Oganov, A. R. Crystal fingerprint space - a novel paradigm for studying "
        "crystal-structure sets. Acta Crystallogr. A 66, 507-517 (2010)",
    )

    def _check(self, what, p, given):
        p["species"] = resolve_species(p["species"], what=what)
        function = choice_param(what, "function", p["function"], tuple(VALLE_OGANOV_DEFAULTS))
        chosen = VALLE_OGANOV_DEFAULTS[function]
        p["n"] = integer_param(what, "n", chosen["n"] if p["n"] is None else p["n"], 2, 100_000)
        for key in ("sigma", "r_cut"):
            p[key] = number_param(what, key, chosen[key] if p[key] is None else p[key])
        return p

    def display_defaults(self, p):
        return {**self.defaults, "function": "distance", **VALLE_OGANOV_DEFAULTS[p["function"]]}

    def constructor(self, p, periodic):
        return {k: (list(v) if k == "species" else v) for k, v in p.items()}

    def labels(self, p):
        species, prefix = p["species"], self.prefix(p)
        if p["function"] == "distance":
            combos = [(species[i], species[j]) for i, j in pair_indices(species)]
            grid = {"min": 0.0, "max": p["r_cut"], "n": p["n"]}
        else:
            combos = [
                (species[i], species[j], species[m])
                for j in range(len(species))
                for i, m in pair_indices(species)
            ]
            grid = {"min": 0.0, "max": 180.0, "n": p["n"]}
        axis = grid_labels(grid)
        return [f"{prefix}:{'-'.join(c)}:{p['function']}={x}" for c in combos for x in axis]

    def cutoff(self, built, p):
        return p["r_cut"]
