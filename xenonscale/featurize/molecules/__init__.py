"""Molecule featurizers: XenonPy 0.6.7's fingerprints and RDKit descriptors, batched.

Inputs are SMILES (polymer ``*`` included), molblocks (SDF records) or RDKit
``Mol`` objects; a row that cannot be read becomes a ``RowError`` with
RDKit's reason (:mod:`~xenonscale.featurize.molecules.parse`). Registered for
the engine and the CLI under ``--kind molecule``:

* ``ecfp``: :class:`ECFP` (2,048 bits; XenonPy ``ECFP``)
* ``fcfp``: :class:`FCFP` (2,048; ``FCFP``)
* ``maccs``: :class:`MACCS` (167; ``MACCS``)
* ``atompair``: :class:`AtomPairFP` (2,048; ``AtomPairFP``)
* ``torsion``: :class:`TopologicalTorsionFP` (2,048; ``TopologicalTorsionFP``)
* ``rdkitfp``: :class:`RDKitFP` (2,048; ``RDKitFP``)
* ``layered``: :class:`LayeredFP` (2,048; ``LayeredFP``)
* ``pattern``: :class:`PatternFP` (2,048; ``PatternFP``)
* ``ecfp_counts``, ``fcfp_counts``, ``atompair_counts``, ``torsion_counts``,
  ``rdkitfp_counts``: the same fingerprints with ``counting=True`` (hashed
  counts, XenonPy's ``counting`` option; a store keeps them as small unsigned
  integers)
* ``rdkit``: :class:`RDKitDescriptors` (every RDKit 2D descriptor: 217 in RDKit
  2026.09; ``DescriptorFeature``)
* ``mordred``: :class:`MordredDescriptors` (Mordred's 1,613 2D descriptors;
  optional, ``pip install mordredcommunity``; no XenonPy counterpart)

RDKit (and Mordred) load on first use, not on import.

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> featurizer = FeaturizerSpec.parse("molecule", "ecfp,maccs").build()
>>> batch = featurizer.featurize_batch(["CCO", "*CC(*)c1ccccc1", "C1CC"])
>>> batch.values.shape, batch.ok.tolist()
((3, 2215), [True, True, False])
"""

from xenonscale.featurize.molecules.descriptors import RDKitDescriptors
from xenonscale.featurize.molecules.fingerprints import (
    ECFP,
    FCFP,
    AtomPairFP,
    MoleculeFeaturizer,
    RDKitFP,
    TopologicalTorsionFP,
)
from xenonscale.featurize.molecules.mordred import MordredDescriptors
from xenonscale.featurize.molecules.parse import MoleculeBatch, parse_molecules
from xenonscale.featurize.molecules.substructure import MACCS, LayeredFP, PatternFP
from xenonscale.featurize.registry import register_featurizer

__all__ = [
    "COUNTS",
    "ECFP",
    "FCFP",
    "MACCS",
    "REGISTERED",
    "AtomPairFP",
    "LayeredFP",
    "MoleculeBatch",
    "MoleculeFeaturizer",
    "MordredDescriptors",
    "PatternFP",
    "RDKitDescriptors",
    "RDKitFP",
    "TopologicalTorsionFP",
    "parse_molecules",
]

#: ``--featurizers`` names for ``--kind molecule`` and the class each builds
#: (with its defaults, XenonPy 0.6.7's).
REGISTERED = {
    "ecfp": ECFP,
    "fcfp": FCFP,
    "maccs": MACCS,
    "atompair": AtomPairFP,
    "torsion": TopologicalTorsionFP,
    "rdkitfp": RDKitFP,
    "layered": LayeredFP,
    "pattern": PatternFP,
    "rdkit": RDKitDescriptors,
    "mordred": MordredDescriptors,
}


#: ``--featurizers`` names of the count fingerprints: the class of the bits name
#: with ``counting=True``.
COUNTS = {
    f"{name}_counts": REGISTERED[name]
    for name in ("ecfp", "fcfp", "atompair", "torsion", "rdkitfp")
}


def _factory(cls, **params):
    # ``--elements`` means nothing to a molecule featurizer: ignored.
    return lambda elements: cls(**params)


for _name, _cls in REGISTERED.items():
    register_featurizer("molecule", _name, _factory(_cls))
for _name, _cls in COUNTS.items():
    register_featurizer("molecule", _name, _factory(_cls, counting=True))
