"""The distributed featurization engine (source → Dask → FeatureStore).

Examples
--------
>>> from xenonscale.engine import featurize_to_store
"""

from xenonscale.engine.run import JobSummary, check_output, featurize_to_store

__all__ = ["JobSummary", "check_output", "featurize_to_store"]
