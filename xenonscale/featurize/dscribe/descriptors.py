"""The descriptors of the ``dscribe:`` family, by name (:data:`DESCRIPTORS`, :func:`descriptor`).

Each entry is a :class:`~.base.Descriptor` (its keyword defaults are
``DESCRIPTORS[name].defaults``), defined in :mod:`.environments` (SOAP, ACSF),
:mod:`.tensors` (MBTR, Valle–Oganov) and :mod:`.matrices`.

What each row is (``periodic=True`` for ``--kind structure``, False for molecules):

================  ==============================================================
SOAP              DScribe ``SOAP(average="outer")``: the mean over the record's
                  atoms of each atom's SOAP power spectrum (``"inner"``, the
                  power spectrum of the mean expansion, is a spec option).
ACSF              per-atom ACSF vectors reduced per element of the centre atom:
                  for each species E, the fraction of the record's atoms that
                  are E, then the mean, std (population), min and max over the
                  atoms of E of every ACSF component (all zero when E is absent).
MBTR              DScribe ``MBTR`` with the geometry of ``k`` (1 atomic number,
                  2 inverse distance, 3 cosine of the angle) and that k's grid and
                  weighting, or ``geometry``/``grid``/``weighting`` dicts given.
SineMatrix,       the matrix's eigenvalues sorted by decreasing absolute value,
CoulombMatrix,    zero-padded to ``n_atoms_max`` (``permutation="eigenspectrum"``);
EwaldSumMatrix    ``"sorted_l2"``/``"none"`` give the flattened padded matrix.
ValleOganov       DScribe ``ValleOganov`` (periodic only).
================  ==============================================================

Examples
--------
>>> soap = DESCRIPTORS["SOAP"]
>>> params = soap.resolve({"species": ["O", "Si"], "n_max": 2, "l_max": 1}, "structure")
>>> labels = soap.labels(params)
>>> len(labels), labels[0], labels[-1]
(20, 'SOAP(n_max=2 l_max=1):O-O:l=0:n1=0:n2=0', 'SOAP(n_max=2 l_max=1):Si-Si:l=1:n1=1:n2=1')
"""

from __future__ import annotations

from xenonscale.errors import ConfigError
from xenonscale.featurize.dscribe.base import DSCRIBE_CITATIONS, KINDS, Descriptor
from xenonscale.featurize.dscribe.environments import Acsf, Soap
from xenonscale.featurize.dscribe.matrices import CoulombMatrix, EwaldSumMatrix, SineMatrix
from xenonscale.featurize.dscribe.tensors import Mbtr, ValleOganov

__all__ = ["DESCRIPTORS", "DSCRIBE_CITATIONS", "KINDS", "Descriptor", "descriptor"]


#: The descriptors by name.
DESCRIPTORS: dict[str, Descriptor] = {
    d.name: d
    for d in (
        Soap(),
        Acsf(),
        Mbtr(),
        SineMatrix(),
        CoulombMatrix(),
        EwaldSumMatrix(),
        ValleOganov(),
    )
}
_BY_LOWER = {name.lower(): d for name, d in DESCRIPTORS.items()}


def descriptor(name: str) -> Descriptor:
    """The descriptor of ``name`` (any case); a :class:`ConfigError` lists the choices.

    >>> descriptor("soap").name
    'SOAP'
    """
    found = _BY_LOWER.get(str(name).lower())
    if found is None:
        raise ConfigError(
            f"dscribe:{name}: unknown descriptor; choose from {', '.join(DESCRIPTORS)}"
        )
    return found
