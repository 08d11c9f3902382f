"""Featurizers: pure functions of a batch, with a scikit-learn front.

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> Compositions(elements="xenonpy58").transform(["Fe2O3"]).shape  # doctest: +SKIP
(1, 290)
"""

from xenonscale.featurize.base import BatchTransformer, FeatureBatch, errors_frame
from xenonscale.featurize.compositions import Compositions, ElementStatistics

__all__ = ["BatchTransformer", "Compositions", "ElementStatistics", "FeatureBatch", "errors_frame"]
