"""The sine, Coulomb and Ewald sum matrices: an eigenspectrum or the padded matrix.

With ``permutation="eigenspectrum"`` (the default) a row is the matrix's
eigenvalues sorted by decreasing absolute value, zero-padded to
``n_atoms_max``; ``"sorted_l2"`` (rows and columns sorted by norm) and
``"none"`` give the flattened matrix padded to ``n_atoms_max²``. A record with
more atoms than ``n_atoms_max`` is refused (:meth:`Matrix.refuse`). The sine
and Ewald matrices need a cell (``--kind structure``); the Coulomb matrix
ignores it (``--kind molecule``).

Examples
--------
>>> sine = SineMatrix()
>>> sine.labels(sine.resolve({"n_atoms_max": 2}, "structure"))
['SineMatrix(n_atoms_max=2):eigenvalue:0', 'SineMatrix(n_atoms_max=2):eigenvalue:1']
>>> sine.refuse(sine.resolve({}, "structure"), 120)[:45]
'120 atoms: more than n_atoms_max=100 of dscri'
"""

from __future__ import annotations

from typing import ClassVar

from xenonscale.featurize.dscribe.base import (
    Descriptor,
    choice_param,
    integer_param,
    number_param,
)

__all__ = ["MATRIX_PERMUTATIONS", "CoulombMatrix", "EwaldSumMatrix", "Matrix", "SineMatrix"]

MATRIX_PERMUTATIONS = ("eigenspectrum", "sorted_l2", "none")


class Matrix(Descriptor):
    """Sine, Coulomb and Ewald sum matrices: eigenspectrum or flattened padded matrix."""

    defaults: ClassVar[dict[str, object]] = {"n_atoms_max": 100, "permutation": "eigenspectrum"}

    def _check(self, what, p, given):
        p["n_atoms_max"] = integer_param(what, "n_atoms_max", p["n_atoms_max"], 1, 5_000)
        p["permutation"] = choice_param(what, "permutation", p["permutation"], MATRIX_PERMUTATIONS)
        return p

    def constructor(self, p, periodic):
        return {"n_atoms_max": p["n_atoms_max"], "permutation": p["permutation"]}

    def labels(self, p):
        prefix, n = self.prefix(p), p["n_atoms_max"]
        if p["permutation"] == "eigenspectrum":
            return [f"{prefix}:eigenvalue:{i}" for i in range(n)]
        return [f"{prefix}:{i}:{j}" for i in range(n) for j in range(n)]

    def refuse(self, p, n_atoms):
        if n_atoms > p["n_atoms_max"]:
            return (
                f"{n_atoms} atoms: more than n_atoms_max={p['n_atoms_max']} of dscribe:"
                f"{self.name}; raise it in the spec, e.g. dscribe:{self.name}(n_atoms_max="
                f"{max(n_atoms, 2 * p['n_atoms_max'])})"
            )
        return None


class SineMatrix(Matrix):
    name = "SineMatrix"
    kinds = ("structure",)
    wrong_kind = "it needs a periodic cell; for molecules use dscribe:CoulombMatrix"
    citations = (
        "Faber, F., Lindmaa, A., von Lilienfeld, O. A. & Armiento, R. Crystal structure "
        "representations for machine learning models of formation energies. Int. J. Quantum "
        "Chem. 115, 1094-1101 (2015)",
    )


class CoulombMatrix(Matrix):
    name = "CoulombMatrix"
    kinds = ("molecule",)
    wrong_kind = (
        "it ignores the cell (it is for molecules); for crystals use dscribe:SineMatrix or "
        "dscribe:EwaldSumMatrix"
    )
    citations = (
        "Rupp, M., Tkatchenko, A., Müller, K.-R. & von Lilienfeld, O. A. Fast and accurate "
        "modeling of molecular atomization energies with machine learning. Phys. Rev. Lett. "
        "108, 058301 (2012)",
    )


class EwaldSumMatrix(Matrix):
    name = "EwaldSumMatrix"
    kinds = ("structure",)
    wrong_kind = "it needs a periodic cell; for molecules use dscribe:CoulombMatrix"
    defaults: ClassVar[dict[str, object]] = {
        **Matrix.defaults,
        "accuracy": 1e-5,
        "w": 1.0,
        "r_cut": None,
        "g_cut": None,
        "a": None,
    }
    citations = SineMatrix.citations

    def _check(self, what, p, given):
        p = super()._check(what, p, given)
        p["accuracy"] = number_param(what, "accuracy", p["accuracy"])
        p["w"] = number_param(what, "w", p["w"])
        for key in ("r_cut", "g_cut", "a"):
            if p[key] is not None:
                p[key] = number_param(what, key, p[key])
        return p

    def create_arguments(self, p):
        return {k: p[k] for k in ("accuracy", "w", "r_cut", "g_cut", "a")}
