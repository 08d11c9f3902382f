"""Crystal-structure featurizers: XenonPy's RDF and OFM, structure properties, compositions.

Every featurizer takes a batch of structures in any form
:func:`~xenonscale.featurize.structures.parse.parse_structures` reads
(pymatgen ``Structure``, ``as_dict()`` mapping or its JSON, CIF or POSCAR
text) and returns a :class:`~xenonscale.featurize.base.FeatureBatch`; a row
that cannot be read or featurized is NaN with its reason, never an exception.

===========================  =============  =========================================
class                        engine name    features
===========================  =============  =========================================
RadialDistributionFunction   ``rdf``        200 (XenonPy 0.6.7: ``n_bins=201, r_max=20``)
OrbitalFieldMatrix           ``ofm``        1,024 (XenonPy 0.6.7: 32 × 32, ``including_d``)
StructureProperties          ``structure``  12 (density, packing, space group, lattice)
StructureComposition         ``composition`` XenonPy's ``classic`` poolings of the
                             (``classic``,   structure's composition over ``--elements``;
                             ``all``,        ``all``/``pooling`` as for compositions,
                             ``pooling``,    ``magpie``: matminer's Magpie statistics
                             ``magpie``)
CrystalGraph                 ``graph``      atoms and nearest neighbours within a cutoff
                             (``graph:``    (64 × (1 + 5 × 12) = 3,904 by default; the
                             ``cutoff=R/``  input of graph networks,
                             ``neighbors=K/`` :mod:`~xenonscale.featurize.structures.graph`)
                             ``atoms=A``)
ChgnetFeatures               ``chgnet``     65: CHGNet 0.3.0's pretrained crystal feature
                                            (64) and energy per atom (optional extra
                                            ``xenonscale[chgnet]``; weights checksummed,
                                            loaded ``weights_only``)
===========================  =============  =========================================

pymatgen, scipy's qhull and spglib load lazily, inside the featurizers, so
importing this package (which :mod:`xenonscale.featurize.registry` does) is
cheap.

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> spec = FeaturizerSpec.parse("structure", "rdf,ofm,structure")
>>> len(spec.build().labels)
1236
"""

from __future__ import annotations

from xenonscale.featurize.compositions import Compositions, ElementStatistics
from xenonscale.featurize.registry import register_family, register_featurizer
from xenonscale.featurize.structures.chgnet import ChgnetFeatures
from xenonscale.featurize.structures.compositions import StructureComposition
from xenonscale.featurize.structures.graph import CrystalGraph, parse_graph_options
from xenonscale.featurize.structures.ofm import OrbitalFieldMatrix
from xenonscale.featurize.structures.parse import StructureBatch, parse_structures
from xenonscale.featurize.structures.properties import StructureProperties
from xenonscale.featurize.structures.rdf import RadialDistributionFunction

__all__ = [
    "ChgnetFeatures",
    "CrystalGraph",
    "OrbitalFieldMatrix",
    "RadialDistributionFunction",
    "StructureBatch",
    "StructureComposition",
    "StructureProperties",
    "parse_structures",
]


def _pooling(featurizers: str):
    def factory(elements: str | None) -> StructureComposition:
        return StructureComposition(
            Compositions(elements=elements or "xenonscale", featurizers=featurizers)
        )

    return factory


def _magpie(elements: str | None) -> StructureComposition:
    return StructureComposition(ElementStatistics())  # the Magpie table, whatever --elements says


register_featurizer("structure", "rdf", lambda elements: RadialDistributionFunction())
register_featurizer("structure", "ofm", lambda elements: OrbitalFieldMatrix())
register_featurizer("structure", "structure", lambda elements: StructureProperties())
register_featurizer("structure", "composition", _pooling("classic"))
for _name in ("classic", "all", "pooling"):
    register_featurizer("structure", _name, _pooling(_name))
register_featurizer("structure", "magpie", _magpie)
register_featurizer("structure", "graph", lambda elements: CrystalGraph())
# CHGNet (optional extra): chgnet and torch load on the first batch, not here.
register_featurizer("structure", "chgnet", lambda elements: ChgnetFeatures())
# graph:cutoff=6/neighbors=16/atoms=128: a crystal graph with other options.
register_family("graph", lambda arg, elements: CrystalGraph(**parse_graph_options(arg)))
