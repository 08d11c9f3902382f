"""SOAP and ACSF: atomic-environment descriptors, pooled over a record's atoms.

* **SOAP** (:class:`Soap`): DScribe ``SOAP(average="outer")``, the mean over the
  record's atoms of each atom's power spectrum (``average="inner"``, the power
  spectrum of the mean expansion, is a spec option).
* **ACSF** (:class:`Acsf`): DScribe's per-atom ACSF vectors reduced per element
  of the centre atom by :func:`reduce_per_element`: for each species E, the
  fraction of the record's atoms that are E, then the mean, std (population),
  min and max over the atoms of E of every component (all zero when E is absent).

Examples
--------
>>> soap = Soap()
>>> params = soap.resolve({"species": ["O", "Si"], "n_max": 2, "l_max": 1}, "structure")
>>> labels = soap.labels(params)
>>> len(labels), labels[0], labels[-1]
(20, 'SOAP(n_max=2 l_max=1):O-O:l=0:n1=0:n2=0', 'SOAP(n_max=2 l_max=1):Si-Si:l=1:n1=1:n2=1')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np

from xenonscale.chem.periodic import atomic_number
from xenonscale.errors import ConfigError
from xenonscale.featurize.dscribe.base import (
    Descriptor,
    choice_param,
    dict_param,
    integer_param,
    number_param,
    pair_indices,
    rows_param,
    short_number,
)
from xenonscale.featurize.dscribe.species import resolve_species

__all__ = ["ACSF_STATISTICS", "SOAP_COMPRESSIONS", "Acsf", "Soap", "reduce_per_element"]

SOAP_COMPRESSIONS = ("off", "crossover", "mu1nu1", "mu2")


class Soap(Descriptor):
    """Smooth overlap of atomic positions, averaged over the record's atoms."""

    name = "SOAP"
    cell_list = True
    defaults: ClassVar[dict[str, object]] = {
        "species": None,
        "r_cut": 5.0,
        "n_max": 4,
        "l_max": 3,
        "sigma": 1.0,
        "rbf": "gto",
        "weighting": None,
        "average": "outer",
        "compression": "off",
    }
    citations = (
        "Bartók, A. P., Kondor, R. & Csányi, G. On representing chemical environments. "
        "Phys. Rev. B 87, 184115 (2013)",
    )

    def _check(self, what, p, given):
        p["species"] = resolve_species(p["species"], what=what)
        p["r_cut"] = number_param(what, "r_cut", p["r_cut"])
        p["n_max"] = integer_param(what, "n_max", p["n_max"], 1, 64)
        p["l_max"] = integer_param(what, "l_max", p["l_max"], 0, 20)
        p["sigma"] = number_param(what, "sigma", p["sigma"])
        p["rbf"] = choice_param(what, "rbf", p["rbf"], ("gto", "polynomial"))
        if p["weighting"] is not None:
            p["weighting"] = dict_param(what, "weighting", p["weighting"])
        if p["average"] == "off":
            raise ConfigError(
                f"{what}: average='off' gives one row per atom, and a store row is one record: "
                "use average='outer' (mean of the atoms' spectra) or 'inner'"
            )
        p["average"] = choice_param(what, "average", p["average"], ("outer", "inner"))
        compression = p["compression"]
        if isinstance(compression, Mapping):
            compression = dict_param(what, "compression", compression)
            choice_param(
                what, "compression mode", compression.get("mode", "off"), SOAP_COMPRESSIONS
            )
        else:
            compression = choice_param(what, "compression", compression, SOAP_COMPRESSIONS)
        p["compression"] = compression
        return p

    @staticmethod
    def _mode(p) -> str:
        compression = p["compression"]
        return compression.get("mode", "off") if isinstance(compression, Mapping) else compression

    def constructor(self, p, periodic):
        compression = p["compression"]
        if not isinstance(compression, Mapping):
            compression = {"mode": compression, "species_weighting": None}
        return {
            "species": list(p["species"]),
            "r_cut": p["r_cut"],
            "n_max": p["n_max"],
            "l_max": p["l_max"],
            "sigma": p["sigma"],
            "rbf": p["rbf"],
            "weighting": p["weighting"],
            "average": p["average"],
            "compression": compression,
            "periodic": periodic,
        }

    def labels(self, p):
        """Blocks by species pair (DScribe's ``get_location`` order); in a block, for each
        ``l``, ``n1`` (radial index on the first species) then ``n2`` (on the second), with
        ``n2 ≥ n1`` when both species are the same (the order of DScribe's C++ ``getPD``)."""
        prefix, species = self.prefix(p), p["species"]
        n_max, l_max, mode = p["n_max"], p["l_max"], self._mode(p)
        if mode == "off":
            blocks = [(species[i], species[j], i == j) for i, j in pair_indices(species)]
        elif mode == "crossover":
            blocks = [(s, s, True) for s in species]
        elif mode == "mu1nu1":
            blocks = [(s, "*", False) for s in species]
        else:  # mu2: every neighbour as one element
            blocks = [("*", "*", True)]
        return [
            f"{prefix}:{first}-{second}:l={l}:n1={n1}:n2={n2}"
            for first, second, same in blocks
            for l in range(l_max + 1)  # noqa: E741 - the angular momentum
            for n1 in range(n_max)
            for n2 in range(n1 if same else 0, n_max)
        ]

    def cutoff(self, built, p):
        return float(p["r_cut"] + built.get_cutoff_padding())


ACSF_STATISTICS = ("mean", "std", "min", "max")


class Acsf(Descriptor):
    """Behler–Parrinello atom-centred symmetry functions, reduced per centre element."""

    name = "ACSF"
    cell_list = True
    defaults: ClassVar[dict[str, object]] = {
        "species": None,
        "r_cut": 6.0,
        "g2_params": [[0.01, 0.0], [0.1, 0.0], [1.0, 0.0], [1.0, 2.0], [1.0, 4.0]],
        "g3_params": None,
        "g4_params": [[0.005, 1.0, 1.0], [0.005, 1.0, -1.0], [0.005, 4.0, 1.0], [0.005, 4.0, -1.0]],
        "g5_params": None,
        "stats": list(ACSF_STATISTICS),
    }
    citations = (
        "Behler, J. Atom-centered symmetry functions for constructing high-dimensional neural "
        "network potentials. J. Chem. Phys. 134, 074106 (2011)",
    )

    def _check(self, what, p, given):
        p["species"] = resolve_species(p["species"], what=what)
        p["r_cut"] = number_param(what, "r_cut", p["r_cut"])
        for key, width in (("g2_params", 2), ("g4_params", 3), ("g5_params", 3)):
            if p[key] is not None:
                p[key] = rows_param(what, key, p[key], width)
        if p["g3_params"] is not None:
            values = p["g3_params"]
            if not isinstance(values, list | tuple) or not values:
                raise ConfigError(f"{what}: g3_params={values!r}: give a list of numbers or None")
            p["g3_params"] = [number_param(what, "g3_params", x, positive=False) for x in values]
        stats = p["stats"]
        if isinstance(stats, str):
            stats = [stats]
        if not isinstance(stats, list | tuple) or not stats:
            raise ConfigError(f"{what}: stats={stats!r}: give a list from {list(ACSF_STATISTICS)}")
        p["stats"] = [choice_param(what, "stats item", s, ACSF_STATISTICS) for s in stats]
        if len(set(p["stats"])) != len(p["stats"]):
            raise ConfigError(f"{what}: stats={stats!r} repeats a statistic")
        return p

    def constructor(self, p, periodic):
        return {
            "species": list(p["species"]),
            "r_cut": p["r_cut"],
            "g2_params": p["g2_params"],
            "g3_params": p["g3_params"],
            "g4_params": p["g4_params"],
            "g5_params": p["g5_params"],
            "periodic": periodic,
        }

    def atom_labels(self, p) -> list[str]:
        """Labels of one atom's ACSF vector, in DScribe's order (its C++ ``ACSF::create``):
        per neighbour species G1, the G2 sets, the G3 sets; then per neighbour pair
        (k ≤ j, ordered by j then k) the G4 sets and the G5 sets."""
        species = p["species"]
        out = []
        for s in species:
            out.append(f"G1:{s}")
            out += [
                f"G2:{s}:eta={short_number(e)}:Rs={short_number(r)}"
                for e, r in p["g2_params"] or []
            ]
            out += [f"G3:{s}:kappa={short_number(k)}" for k in p["g3_params"] or []]
        for j in range(len(species)):
            for k in range(j + 1):
                pair = f"{species[k]}-{species[j]}"
                for g, key in (("G4", "g4_params"), ("G5", "g5_params")):
                    out += [
                        f"{g}:{pair}:eta={short_number(e)}:zeta={short_number(z)}:lambda={short_number(lam)}"
                        for e, z, lam in p[key] or []
                    ]
        return out

    def labels(self, p):
        prefix, atom = self.prefix(p), self.atom_labels(p)
        out = []
        for center in p["species"]:
            out.append(f"{prefix}:{center}:fraction")
            for stat in p["stats"]:
                out += [f"{prefix}:{center}:{stat}:{label}" for label in atom]
        return out

    def rows(self, built, atoms, p):
        per_atom = self.create(built, atoms, p)
        if isinstance(per_atom, np.ndarray) and per_atom.ndim == 2:  # one system given
            per_atom = [per_atom]
        numbers = {atomic_number(s): i for i, s in enumerate(p["species"])}  # Z order
        return np.vstack(
            [
                reduce_per_element(
                    np.asarray(values, dtype=np.float64),
                    np.asarray([numbers[z] for z in a.get_atomic_numbers().tolist()]),
                    len(numbers),
                    p["stats"],
                )
                for values, a in zip(per_atom, atoms, strict=True)
            ]
        )

    def cutoff(self, built, p):
        return p["r_cut"]


def reduce_per_element(
    values: np.ndarray, element: np.ndarray, n_elements: int, stats: Sequence[str]
) -> np.ndarray:
    """Per element ``e``: the fraction of atoms that are ``e``, then each statistic over them.

    ``values`` is ``[n_atoms, d]``, ``element`` the index of each atom's
    element. An element without atoms gives a fraction of 0 and zeros.

    >>> values = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]])
    >>> reduce_per_element(values, np.array([0, 0, 1]), 2, ["mean", "max"]).tolist()
    [0.6666666666666666, 2.0, 20.0, 3.0, 30.0, 0.3333333333333333, 5.0, 50.0, 5.0, 50.0]
    """
    d = values.shape[1]
    out = np.zeros((n_elements, 1 + len(stats) * d))
    for e in range(n_elements):
        mine = values[element == e]
        if not len(mine):
            continue
        out[e, 0] = len(mine) / len(values)
        for k, stat in enumerate(stats):
            column = 1 + k * d
            if stat == "mean":
                out[e, column : column + d] = mine.mean(axis=0)
            elif stat == "std":
                out[e, column : column + d] = mine.std(axis=0)
            elif stat == "min":
                out[e, column : column + d] = mine.min(axis=0)
            else:
                out[e, column : column + d] = mine.max(axis=0)
    return out.ravel()
