"""The ``dscribe:`` featurizer family: DScribe's descriptors for crystals and molecules.

A name ``dscribe:NAME`` or ``dscribe:NAME(key=value, ...)`` in ``--featurizers``
builds a :class:`DscribeFeaturizer` for the spec's ``--kind`` (``structure``:
periodic crystals; ``molecule``: finite molecules, SMILES embedded in 3-D).
The argument is read without eval (:func:`~.spec.parse_call`: literal keyword
values only) and stored verbatim in the store's provenance; the featurizer's
``citations`` add the exact DScribe call with every default filled in.

==================  =========  ============================================================
descriptor          kinds      defaults, and the row width for ``s`` species
==================  =========  ============================================================
``SOAP``            both       ``r_cut=5, n_max=4, l_max=3, sigma=1, rbf='gto',
                               average='outer', compression='off'``:
                               ``(4s)(4s+1)/2 × 4`` (144 for s=2; ``'crossover'``: 40 s)
``ACSF``            both       ``r_cut=6``; G2 (η, Rs) = (0.01, 0) (0.1, 0) (1, 0) (1, 2)
                               (1, 4); G4 (η, ζ, λ) = (0.005, 1 or 4, ±1);
                               ``stats=['mean', 'std', 'min', 'max']``:
                               ``s (1 + 4 d)`` with ``d = 6 s + 2 s (s+1)`` (194 for s=2)
``MBTR``            both       ``k=2``: inverse distance on [0, 1.5] 1/Å, 100 points,
                               σ 0.02, weight exp(−r) to 1e-3 (6.9 Å): ``100 s(s+1)/2``;
                               ``k=3``: cos θ on [−1, 1], σ 0.05, weight exp(−p/2) of
                               the perimeter p to 1e-3 (13.8 Å): ``100 s² (s+1)/2``;
                               ``k=1``: Z on [0, 100], 101 points: ``101 s``;
                               ``normalization='n_atoms'``
``SineMatrix``      structure  ``n_atoms_max=100, permutation='eigenspectrum'``: 100
                               (``'sorted_l2'``: the flattened padded matrix, 100²)
``EwaldSumMatrix``  structure  as SineMatrix, ``accuracy=1e-5, w=1``: 100
``CoulombMatrix``   molecule   as SineMatrix: 100
``ValleOganov``     structure  ``function='distance', n=100, sigma=0.3, r_cut=10``:
                               ``100 s(s+1)/2``; ``'angle'``: ``n=90, sigma=2, r_cut=6``:
                               ``90 s² (s+1)/2``
==================  =========  ============================================================

``species`` is required by SOAP, ACSF, MBTR and ValleOganov (a list, a preset
or ``'Z<=N'``: :mod:`~.species`); a record holding another element is an
error row. What each row means, and the label layout: :mod:`~.descriptors`.
Inputs and 3-D conformers: :mod:`~.atoms`. Error rows and batching:
:mod:`~.featurizer`. DScribe (with numba) loads on the first build, not when
the registry is imported (:mod:`~.compat`, which also carries the fix
DScribe 2.1.2 needs beside ASE ≥ 3.26).

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> spec = FeaturizerSpec.parse("structure", "dscribe:SOAP(species=['Si', 'O']),rdf")
>>> spec.names
("dscribe:SOAP(species=['Si', 'O'])", 'rdf')
>>> labels = spec.build().labels
>>> len(labels), labels[0]
(344, 'SOAP:O-O:l=0:n1=0:n2=0')
>>> FeaturizerSpec.parse("molecule", "dscribe:SineMatrix").build()  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
xenonscale.errors.ConfigError: dscribe:SineMatrix is not for --kind molecule: it needs a periodic...
"""

from __future__ import annotations

from xenonscale.featurize.dscribe.descriptors import DESCRIPTORS
from xenonscale.featurize.dscribe.featurizer import DscribeFeaturizer
from xenonscale.featurize.dscribe.spec import parse_call
from xenonscale.featurize.dscribe.species import SPECIES_PRESETS

__all__ = ["DESCRIPTORS", "SPECIES_PRESETS", "DscribeFeaturizer", "dscribe_family"]


def dscribe_family(
    arg: str, elements: str | None = None, *, kind: str = "structure"
) -> DscribeFeaturizer:
    """The factory of ``dscribe:ARG`` (``--elements`` does not apply and is ignored).

    Builds the DScribe object once to check every value (this imports DScribe),
    so a bad spec fails here with a :class:`~xenonscale.errors.ConfigError`,
    not on the workers.

    >>> dscribe_family("ACSF(species=['H', 'O'], stats=['mean'])", kind="molecule").labels[:2]
    ['ACSF(stats=[mean]):H:fraction', 'ACSF(stats=[mean]):H:mean:G1:H']
    """
    name, params = parse_call(arg)
    return DscribeFeaturizer(name, params, kind=kind).check()
