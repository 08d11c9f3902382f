"""The FeatureStore layout: one xarray Dataset in a Zarr v3 group, plus bookkeeping.

::

    STORE/                      Zarr v3 group; attrs = provenance
      features  [sample, feature] float32, chunked along sample, Blosc (lz4 or zstd)
      feature   [feature]          the labels (coordinate)
      sample    [sample]           0-based source row (coordinate)
      ok        [sample]           bool: featurized without error
      id, input [sample]           text
      <extra>   [sample]           every extra source column (float64 or text)
      errors/                      subgroup: row, input, error (written at the end)
      _xenonscale/                 engine bookkeeping (not Zarr): manifest.json,
                                   lock.json, done/NNNNNN.json, errors/NNNNNN.json

Any Zarr/xarray reader can open it: ``xarray.open_zarr(STORE)``.

Examples
--------
>>> import xenonscale
>>> ds = xenonscale.open_store("mp.zarr")  # doctest: +SKIP
>>> errors = xenonscale.read_errors("mp.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from xenonscale.errors import StoreError

__all__ = [
    "BOOKKEEPING",
    "StoreLocation",
    "open_store",
    "read_errors",
]

BOOKKEEPING = "_xenonscale"
FEATURES = "features"


@dataclass(frozen=True)
class StoreLocation:
    """A store URL (local path, ``file://``, ``s3://``) with its fsspec options.

    Picklable; workers rebuild file systems from it.
    """

    url: str
    storage_options: dict[str, Any] | None = None

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        fs, _ = fsspec.core.url_to_fs(self.url, **(self.storage_options or {}))
        return fs

    @property
    def root(self) -> str:
        _, root = fsspec.core.url_to_fs(self.url, **(self.storage_options or {}))
        return root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def zarr_store(self):
        """A zarr store object for this location."""
        from zarr.storage import FsspecStore, LocalStore

        fs = self.fs
        if "file" in np.atleast_1d(fs.protocol):
            return LocalStore(self.root)
        return FsspecStore.from_url(self.url, storage_options=self.storage_options or {})

    def exists(self) -> bool:
        return self.fs.exists(self.path("zarr.json"))

    def read_json(self, *parts: str) -> Any:
        with self.fs.open(self.path(*parts), "r") as handle:
            return json.load(handle)

    def write_json(self, value: Any, *parts: str) -> None:
        """Write JSON (a temp file + rename on local disks, a single PUT on object stores)."""
        fs = self.fs
        path = self.path(*parts)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        text = json.dumps(value, indent=1, default=_json_default)
        if "file" in np.atleast_1d(fs.protocol):
            tmp = f"{path}.tmp-{np.random.default_rng().integers(1 << 62)}"
            with fs.open(tmp, "w") as handle:
                handle.write(text)
            fs.mv(tmp, path)
        else:
            with fs.open(path, "w") as handle:
                handle.write(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def open_store(url: str, *, storage_options: dict | None = None, **kwargs: Any):
    """Open a FeatureStore as a lazy :class:`xarray.Dataset` (plain ``xarray.open_zarr``).

    Raises :class:`StoreError` when ``url`` holds no store or an unfinished one.
    """
    import xarray as xr

    location = StoreLocation(url, storage_options)
    if not location.exists():
        raise StoreError(f"no feature store at {url!r}: run `xenonscale featurize ... -o {url}`")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        dataset = xr.open_zarr(location.zarr_store(), **kwargs)
    if not dataset.attrs.get("complete", False):
        warnings.warn(
            f"feature store {url!r} is not complete (job interrupted?): rerun the same "
            "featurize command to resume",
            stacklevel=2,
        )
    return dataset


def read_errors(url: str, *, storage_options: dict | None = None) -> pd.DataFrame:
    """The store's error table: columns ``row``, ``input``, ``error`` (sorted by row)."""
    import zarr

    location = StoreLocation(url, storage_options)
    if not location.exists():
        raise StoreError(f"no feature store at {url!r}")
    group = zarr.open_group(location.zarr_store(), mode="r")
    if "errors" not in group:
        raise StoreError(
            f"store {url!r} has no error table yet (job not finished): rerun the same "
            "featurize command to resume"
        )
    errors = group["errors"]
    return pd.DataFrame(
        {
            "row": np.asarray(errors["row"][:], dtype=np.int64),
            "input": np.asarray(errors["input"][:], dtype=object),
            "error": np.asarray(errors["error"][:], dtype=object),
        }
    )
