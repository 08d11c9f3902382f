"""The FeatureStore layout: one xarray Dataset in a Zarr v3 group, plus bookkeeping.

::

    STORE/                      Zarr v3 group; attrs = provenance
      features  [sample, feature] float32, chunked along sample, Blosc (lz4 or zstd);
                                   uint8 / uint16 for bit and count fingerprints
                                   (attrs feature_encoding, feature_dtype; FEATURE_VALUES)
      feature   [feature]          the labels (coordinate)
      sample    [sample]           0-based source row (coordinate)
      ok        [sample]           bool: featurized without error
      id, input [sample]           text
      <extra>   [sample]           every extra source column (float64 or text)
      composition_element  [sample, element_slot]  int16   composition stores only:
      composition_fraction [sample, element_slot]  float32 the composition as data
                                   (COMPOSITION_ENCODING; attrs["composition"])
      errors/                      subgroup: row, input, error (written at the end)
      predictions/<model>/         zoo models' predictions (workflows.prediction)
      _xenonscale/                 engine bookkeeping (not Zarr): manifest.json,
                                   lock.json, done/NNNNNN.json, errors/NNNNNN.json,
                                   sync/, index/ (the similarity index, store.similarity),
                                   predict/<job>/ (prediction jobs)

Any Zarr/xarray reader can open it: ``xarray.open_zarr(STORE)``. A store of
``bits`` or ``counts`` (:data:`FEATURE_VALUES`) holds integers and 0 on the
rows whose ``ok`` is False: ``ok`` says which rows have features, never NaN;
``open_store(STORE, decode="float32")`` gives float32 with NaN on those rows.

Examples
--------
A store the engine wrote (:mod:`xenonscale.store` makes one in its runnable example):

>>> import xenonscale
>>> ds = xenonscale.open_store("mp.zarr")  # doctest: +SKIP
>>> errors = xenonscale.read_errors("mp.zarr")  # doctest: +SKIP
>>> elements, fractions = read_composition("mp.zarr", rows=slice(0, 100))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, StoreError

__all__ = [
    "BOOKKEEPING",
    "COMPOSITION_ELEMENT",
    "COMPOSITION_ENCODING",
    "COMPOSITION_FRACTION",
    "DECODINGS",
    "FEATURE_VALUES",
    "STORE_TITLE",
    "WITHDRAWN",
    "StoreLocation",
    "clear_store",
    "feature_encoding",
    "open_store",
    "read_composition",
    "read_errors",
    "store_fingerprint",
    "store_state",
]

BOOKKEEPING = "_xenonscale"
FEATURES = "features"
#: Arrays of a composition store holding each row's composition (``[sample, element_slot]``).
COMPOSITION_ELEMENT = "composition_element"
COMPOSITION_FRACTION = "composition_fraction"
#: How those arrays encode a composition (also in the store's ``composition`` attribute).
COMPOSITION_ENCODING = (
    "composition_element holds the atomic number Z of each element present and "
    "composition_fraction its atomic fraction, sorted by fraction descending (ties by Z "
    "ascending), 0 = empty slot; fractions sum to 1; rows that failed or hold more "
    "elements than slots are all zero"
)
#: What ``features`` holds, by the store's ``feature_encoding`` attribute (also written in
#: its ``feature_values`` attribute). A store without that attribute is ``float32``.
FEATURE_VALUES = {
    "float32": "float32 values; NaN on the rows whose ok is False",
    "bits": (
        "0/1 bits as uint8; the rows whose ok is False hold 0 (ok says which rows have "
        "features, not NaN); open_store(url, decode='float32') gives float32 with NaN there"
    ),
    "counts": (
        "non-negative integer counts as the unsigned integer of feature_dtype; the rows whose "
        "ok is False hold 0 (ok says which rows have features, not NaN); "
        "open_store(url, decode='float32') gives float32 with NaN there"
    ),
}
#: ``open_store(decode=...)``: None (as stored) or ``"float32"``.
DECODINGS = (None, "float32")
#: A synced store's flag of records the source withdrew (kept, flagged, never trained on).
WITHDRAWN = "withdrawn"
#: The ``title`` attribute of every store the engine creates (how it knows its own).
STORE_TITLE = "xenonscale feature store"
#: What a store folder may hold: root metadata, Zarr nodes and the bookkeeping folder.
_ROOT_FILES = ("zarr.json",)
#: What ``_xenonscale/`` may hold.
_BOOKKEEPING_ENTRIES = (
    "manifest.json", "lock.json", "lock.guard", "done", "errors", "sync", "index", "predict",
)  # fmt: skip


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


def store_fingerprint(attrs: dict) -> str:
    """A short hash of what a store was built from (source, featurizer, tables, creation,
    and the last sync that changed it): what models and indexes built on it record.

    >>> store_fingerprint({"rows": 3, "created": "2026-01-01T00:00:00+0000"})
    '155a6a4ccadf8108'
    >>> len(store_fingerprint({})), store_fingerprint({}) == store_fingerprint({"title": "x"})
    (16, True)
    """
    keys = ("source_fingerprint", "featurizer", "element_tables", "rows", "created")
    fields = {k: attrs.get(k) for k in keys}
    if attrs.get("last_sync"):  # a synced store changes with every sync that changed rows
        fields["last_sync"] = attrs["last_sync"]
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_state(location: StoreLocation) -> str:
    """What is at ``location``: ``"absent"``, ``"empty"``, ``"store"``, ``"file"`` or ``"foreign"``.

    ``"store"`` means a store this engine made, finished or not, recognized by
    its own layout: nothing but ``zarr.json``, Zarr nodes (folders holding a
    ``zarr.json``) and the ``_xenonscale/`` bookkeeping folder, with either a
    manifest or a root group titled :data:`STORE_TITLE` (or, after a crash
    before any Zarr was written, the bookkeeping folder alone). Anything else
    in the folder makes it ``"foreign"``: the engine never writes there.

    Raises :class:`StoreError` when the path lies under a file.

    >>> import tempfile
    >>> store_state(StoreLocation(tempfile.mkdtemp()))
    'empty'
    """
    fs = location.fs
    root = location.root
    _check_not_under_a_file(location)
    if not fs.exists(root):
        return "absent"
    if fs.isfile(root):
        return "file"
    entries = {
        path.rstrip("/").rsplit("/", 1)[-1]: path.rstrip("/")
        for path in fs.ls(root, detail=False)
        if path.rstrip("/") != root
    }
    if not entries:
        return "empty"
    for name, path in entries.items():
        if name == BOOKKEEPING:
            inner = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
            if any(not _bookkeeping_entry(n) for n in inner):
                return "foreign"
        elif name not in _ROOT_FILES and not fs.exists(f"{path}/zarr.json"):
            return "foreign"
    if fs.exists(location.path(BOOKKEEPING, "manifest.json")):
        return "store"
    if "zarr.json" in entries:
        return "store" if _title(location) == STORE_TITLE else "foreign"
    return "store" if set(entries) == {BOOKKEEPING} else "foreign"


def _bookkeeping_entry(name: str) -> bool:
    return name in _BOOKKEEPING_ENTRIES or (name.startswith("lock.json.") and name.endswith(".tmp"))


def _title(location: StoreLocation) -> object:
    try:
        with location.fs.open(location.path("zarr.json"), "r") as handle:
            return json.load(handle).get("attributes", {}).get("title")
    except (ValueError, OSError, AttributeError):
        return None


def _check_not_under_a_file(location: StoreLocation) -> None:
    fs = location.fs
    if "file" not in np.atleast_1d(fs.protocol):
        return  # object stores have no folders to be files
    from pathlib import Path

    root = Path(location.root)
    for parent in [root, *root.parents]:
        if parent.exists():
            if parent != root and not parent.is_dir():
                raise StoreError(
                    f"cannot write the store {location.url!r}: {str(parent)!r} is a file, not a "
                    "folder; choose a path in a folder"
                )
            if not os.access(parent, os.W_OK):  # honours read-only mounts, for root too
                raise StoreError(
                    f"cannot create the store folder {location.url!r}: {str(parent)!r} is not "
                    "writable (read-only file system or permissions); choose a writable path"
                )
            return


def clear_store(location: StoreLocation) -> None:
    """Remove a store this engine made (refuses anything :func:`store_state` does not call ours).

    Only the store's own entries are removed (Zarr metadata and nodes, the
    bookkeeping folder), then the folder itself if it is left empty.
    """
    state = store_state(location)
    if state in ("absent", "empty"):
        return
    if state != "store":
        raise StoreError(
            f"refusing to remove {location.url!r}: it is not a xenonscale feature store "
            "(--overwrite replaces only stores that xenonscale wrote); choose another path"
        )
    fs = location.fs
    for path in fs.ls(location.root, detail=False):
        if path.rstrip("/") != location.root:
            fs.rm(path, recursive=True)
    with contextlib.suppress(OSError):
        fs.rmdir(location.root)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def feature_encoding(attrs: dict) -> str:
    """How a store's ``features`` hold their values (see :data:`FEATURE_VALUES`), from its
    attributes: ``"float32"`` for stores written before compact encodings existed.

    >>> feature_encoding({}), feature_encoding({"feature_encoding": "bits"})
    ('float32', 'bits')
    """
    return str(attrs.get("feature_encoding") or "float32")


def open_store(
    url: str, *, decode: str | None = None, storage_options: dict | None = None, **kwargs: Any
):
    """Open a FeatureStore as a lazy :class:`xarray.Dataset` (plain ``xarray.open_zarr``).

    Parameters
    ----------
    url
        The store (path, ``file://``, ``s3://``).
    decode
        None: ``features`` as stored (float32, or the ``uint8`` / ``uint16`` of a
        bits or counts store, 0 on the rows whose ``ok`` is False). ``"float32"``:
        ``features`` as float32 with NaN on those rows, whatever the store holds
        (still lazy; a float32 store is returned as it is).
    kwargs
        Passed to :func:`xarray.open_zarr`.

    Raises :class:`StoreError` when ``url`` holds no store, :class:`ConfigError` for
    an unknown ``decode``; warns when the store is unfinished.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from distributed import Client
    >>> from xenonscale.engine import featurize_to_store
    >>> from xenonscale.featurize.registry import FeaturizerSpec
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_text("smiles\\nCCO\\nC1CC\\n")
    >>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
    ...     _ = featurize_to_store(
    ...         str(folder / "m.csv"), str(folder / "m.zarr"),
    ...         FeaturizerSpec.parse("molecule", "maccs"),
    ...         column="smiles", client=client, progress=False,
    ...     )
    >>> stored = open_store(str(folder / "m.zarr"))
    >>> stored.features.dtype, stored.attrs["feature_encoding"], stored.ok.values.tolist()
    (dtype('uint8'), 'bits', [True, False])
    >>> dense = open_store(str(folder / "m.zarr"), decode="float32").features.values
    >>> dense.dtype, int(dense[0].sum()), bool(np.isnan(dense[1]).all())
    (dtype('float32'), 9, True)
    """
    import xarray as xr

    if decode not in DECODINGS:
        raise ConfigError(f"decode={decode!r} is unknown: use None (as stored) or 'float32'")
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
    if decode == "float32":
        dataset = _decoded(dataset)
    return dataset


def _decoded(dataset):
    """``features`` as float32 with NaN where ``ok`` is False (a float32 store unchanged)."""
    if FEATURES not in dataset or dataset[FEATURES].dtype == np.float32:
        return dataset
    features = dataset[FEATURES]
    decoded = features.astype(np.float32).where(dataset["ok"])
    decoded.attrs = dict(features.attrs)
    decoded.encoding = {}  # the stored dtype and codec no longer describe these values
    return dataset.assign({FEATURES: decoded})


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


def read_composition(
    url: str, rows: slice | np.ndarray | None = None, *, storage_options: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The compositions of a composition store: ``(elements int16, fractions float32)``.

    Both are ``[rows, slots]`` (see :data:`COMPOSITION_ENCODING`): atomic numbers
    by fraction descending, 0 = empty slot, fractions summing to 1; rows that
    failed or did not fit are all zero.

    Parameters
    ----------
    url
        The store.
    rows
        A slice or integer indices of rows; None reads every row.

    Raises
    ------
    StoreError
        No store at ``url``, or a store without composition arrays (not a
        composition store, or built before they existed).

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from distributed import Client
    >>> from xenonscale.engine import featurize_to_store
    >>> from xenonscale.featurize.registry import FeaturizerSpec
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "f.csv").write_text("formula\\nFe2O3\\nNaCl\\n")
    >>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
    ...     _ = featurize_to_store(
    ...         str(folder / "f.csv"), str(folder / "f.zarr"),
    ...         FeaturizerSpec.parse("composition", "Counting"),
    ...         column="formula", client=client, progress=False,
    ...     )
    >>> elements, fractions = read_composition(str(folder / "f.zarr"))
    >>> elements[:, :3].tolist(), fractions[1, :2].tolist()
    ([[8, 26, 0], [11, 17, 0]], [0.5, 0.5])
    """
    import zarr

    location = StoreLocation(url, storage_options)
    if not location.exists():
        raise StoreError(f"no feature store at {url!r}: run `xenonscale featurize ... -o {url}`")
    group = zarr.open_group(location.zarr_store(), mode="r")
    if COMPOSITION_ELEMENT not in group or COMPOSITION_FRACTION not in group:
        kind = (group.attrs.get("featurizer") or {}).get("kind", "unknown")
        if kind != "composition":
            raise StoreError(
                f"store {url!r} has no composition arrays: it is a {kind!r} store, and only "
                "composition stores keep them"
            )
        raise StoreError(
            f"store {url!r} has no composition arrays (built before xenonscale kept the "
            "composition in composition stores): featurize it again with --overwrite"
        )
    selection = slice(None) if rows is None else rows
    elements = group[COMPOSITION_ELEMENT]
    fractions = group[COMPOSITION_FRACTION]
    if isinstance(selection, slice):
        return np.asarray(elements[selection]), np.asarray(fractions[selection])
    index = np.asarray(selection, dtype=np.int64)
    return (
        np.asarray(elements.get_orthogonal_selection((index, slice(None)))),
        np.asarray(fractions.get_orthogonal_selection((index, slice(None)))),
    )
