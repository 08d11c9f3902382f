"""The distributed featurization engine (source → Dask → FeatureStore) and store sync.

Examples
--------
>>> from xenonscale.engine import featurize_to_store, sync_store
"""

from xenonscale.engine.run import JobSummary, check_output, featurize_to_store
from xenonscale.engine.sync import SyncSummary, sync_store

__all__ = ["JobSummary", "SyncSummary", "check_output", "featurize_to_store", "sync_store"]
