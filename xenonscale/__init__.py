"""xenonscale: materials informatics at database scale.

Descriptors for compositions (XenonPy/matminer parity, vectorized), element
tables, public datasets, and a Dask engine that featurizes any source into a
chunked Zarr FeatureStore; later: models, transfer, inverse design.

Examples
--------
>>> import xenonscale
>>> xenonscale.__version__
'0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Compositions": "xenonscale.featurize",
    "ElementStatistics": "xenonscale.featurize",
    "ElementTable": "xenonscale.elements",
    "load_table": "xenonscale.elements",
    "parse_compositions": "xenonscale.chem",
    "parse_formula": "xenonscale.chem",
    "XenonscaleError": "xenonscale.errors",
    "open_store": "xenonscale.store",
    "read_errors": "xenonscale.store",
    "featurize_to_store": "xenonscale.engine",
    "get_client": "xenonscale.cluster",
    "open_source": "xenonscale.sources",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    """Import public names lazily so ``import xenonscale`` stays fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xenonscale' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
