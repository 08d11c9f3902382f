"""FeatureStore: a Zarr v3 group any xarray user can open (see ``layout``).

Examples
--------
A store as the engine writes it (three formulas, one of them wrong):

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.store import open_store, read_errors
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "mp.csv").write_text("formula\\nFe2O3\\nNaCl\\nXx2\\n")
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(
...         str(folder / "mp.csv"), str(folder / "mp.zarr"),
...         FeaturizerSpec.parse("composition", "classic"),
...         column="formula", client=client, progress=False,
...     )
>>> ds = open_store(str(folder / "mp.zarr"))
>>> ds.features.sel(feature="ave:atomic_number").values.astype(float).round(1).tolist()
[15.2, 14.0, nan]
>>> read_errors(str(folder / "mp.zarr")).to_dict("records")
[{'row': 2, 'input': 'Xx2', 'error': "unknown element 'Xx'"}]
"""

from xenonscale.store.layout import StoreLocation, open_store, read_composition, read_errors

__all__ = ["StoreLocation", "open_store", "read_composition", "read_errors"]
