"""Featurizers: pure functions of a batch, with a scikit-learn front.

Compositions (XenonPy poolings, matminer's Magpie statistics), crystal
structures (RDF, OFM, structure properties, composition of a structure) and
molecules (RDKit fingerprints and descriptors; Mordred behind an extra).

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> Compositions(elements="xenonpy58").transform(["Fe2O3"]).shape  # doctest: +REQUIRES_DATA
(1, 290)
>>> from xenonscale.featurize import ECFP, RadialDistributionFunction
>>> len(ECFP().labels), len(RadialDistributionFunction().labels)
(2048, 200)
"""

from xenonscale.featurize.base import BatchTransformer, FeatureBatch, errors_frame
from xenonscale.featurize.compositions import Compositions, ElementPresence, ElementStatistics
from xenonscale.featurize.molecules import (
    ECFP,
    FCFP,
    MACCS,
    AtomPairFP,
    LayeredFP,
    MordredDescriptors,
    PatternFP,
    RDKitDescriptors,
    RDKitFP,
    TopologicalTorsionFP,
)
from xenonscale.featurize.structures import (
    OrbitalFieldMatrix,
    RadialDistributionFunction,
    StructureComposition,
    StructureProperties,
)

__all__ = [
    "ECFP",
    "FCFP",
    "MACCS",
    "AtomPairFP",
    "BatchTransformer",
    "Compositions",
    "ElementPresence",
    "ElementStatistics",
    "FeatureBatch",
    "LayeredFP",
    "MordredDescriptors",
    "OrbitalFieldMatrix",
    "PatternFP",
    "RDKitDescriptors",
    "RDKitFP",
    "RadialDistributionFunction",
    "StructureComposition",
    "StructureProperties",
    "TopologicalTorsionFP",
    "errors_frame",
]
