"""FeatureStore: a Zarr v3 group any xarray user can open (see ``layout``).

Examples
--------
>>> from xenonscale.store import open_store, read_errors
>>> ds = open_store("mp.zarr")  # doctest: +SKIP
>>> ds.features.sel(feature="ave:atomic_number")  # doctest: +SKIP
"""

from xenonscale.store.layout import StoreLocation, open_store, read_errors

__all__ = ["StoreLocation", "open_store", "read_errors"]
