"""Exact nearest-neighbour search over a FeatureStore, and the applicability domain.

:func:`build_index` reads a store's ``features`` chunk by chunk, twice: the
first pass gives each column's mean and standard deviation over the ``ok``
rows (missing values ignored), the second replaces NaN (or ±inf) by the
column mean, standardizes (z-scores; a constant column keeps std 1) and adds
the rows to an exact faiss index (``IndexFlatL2``, or ``IndexFlatIP`` on
unit-length rows for ``cosine``). Only faiss holds the whole matrix. The
index is saved in the store's bookkeeping folder and tied to the store's
fingerprint (:func:`~xenonscale.store.layout.store_fingerprint`), so a store
featurized again or synced makes it stale, and :func:`open_index` says so
rather than answer from old rows.

::

    STORE/_xenonscale/index/
      flat.faiss    faiss's own binary format (faiss.write_index), no pickle
      rows.npy      int64 store row of each indexed vector (np.save, allow_pickle=False)
      index.json    metric, standardize, means, stds, feature count, store
                    fingerprint, creation time, sizes and sha256 of the two files
                    above, nearest-neighbour distance quantiles (written last)

Distances are Euclidean for ``l2`` (in standardized units) and the cosine
distance ``1 - cos`` for ``cosine``: smaller is nearer for both. Rows that
failed featurization (``ok`` False) and rows a sync flagged ``withdrawn`` are
not indexed.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "f.csv").write_text("formula\\nFe2O3\\nNaCl\\nKCl\\nFe3O4\\nXx\\n")
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(
...         str(folder / "f.csv"), str(folder / "f.zarr"),
...         FeaturizerSpec.parse("composition", "Counting"),
...         column="formula", client=client, progress=False,
...     )
>>> info = build_index(str(folder / "f.zarr"), progress=False)
>>> info.rows, info.skipped
(4, 1)
>>> index = open_index(str(folder / "f.zarr"))
>>> distances, rows = index.search_rows([1], k=2)
>>> rows.tolist()
[[2, 0]]
>>> batch = index.featurize(["NaCl"])
>>> float(index.distance_to_training(batch.values)[0])
0.0
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, StoreError
from xenonscale.featurize.base import FeatureBatch, featurize_safely
from xenonscale.featurize.registry import FeaturizerSpec, element_tables
from xenonscale.store.layout import (
    BOOKKEEPING,
    FEATURES,
    WITHDRAWN,
    StoreLocation,
    store_fingerprint,
)

__all__ = [
    "INDEX_FOLDER",
    "METRICS",
    "IndexInfo",
    "SimilarityIndex",
    "build_index",
    "index_record",
    "open_index",
]

#: The index's folder inside the store's bookkeeping folder (``_xenonscale/index``).
INDEX_FOLDER = "index"
#: ``metric=`` choices: Euclidean distance, or cosine distance ``1 - cos``.
METRICS = ("l2", "cosine")
INDEX_FILE = "flat.faiss"
ROWS_FILE = "rows.npy"
META_FILE = "index.json"
#: Version of the folder's layout (index.json ``format``).
FORMAT = 1
#: Rows read per block: about this many bytes of float32 features, whole chunks.
BLOCK_BYTES = 64 << 20
#: Indexed rows whose nearest other indexed row gives the reference quantiles.
REFERENCE_SAMPLE = 1_000
#: Further candidates fetched from faiss beyond ``2 k`` before the exact float64 re-ranking.
CANDIDATES = 8
QUANTILES = (0.5, 0.9, 0.95, 0.99, 1.0)


#: faiss's switch from its per-pair SIMD loop to BLAS (queries × dimensions). faiss-cpu
#: 1.15 sets 128,000: a batch of 1,000 queries of 103 features (``Counting``) then ran
#: the loop at ~5 GFLOP/s, 10× slower than BLAS (bench/similarity.py); from 20 queries
#: of 128 features on, BLAS it is (faiss's old rule was 20 queries). The float64
#: re-ranking keeps the distances exact either way.
BLAS_THRESHOLD = 20 * 128


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise ConfigError(
            "similarity search needs faiss-cpu, which is not installed: "
            "pip install 'xenonscale[index]'"
        ) from exc
    if hasattr(faiss.cvar, "distance_compute_blas_threshold"):
        current = faiss.cvar.distance_compute_blas_threshold
        faiss.cvar.distance_compute_blas_threshold = min(current, BLAS_THRESHOLD)
    return faiss


@dataclass(frozen=True)
class IndexInfo:
    """What :func:`build_index` built: where, how many rows, how long, how big."""

    store: str
    path: str
    metric: str
    standardize: bool
    rows: int
    skipped: int
    features: int
    seconds: float
    bytes: int
    fingerprint: str


class _StoreFeatures:
    """The ``features``, ``ok`` (and ``withdrawn``) arrays of a store, read block by block."""

    def __init__(self, location: StoreLocation) -> None:
        import zarr

        if not location.exists():
            raise StoreError(
                f"no feature store at {location.url!r}: run `xenonscale featurize ... -o "
                f"{location.url}` first"
            )
        self.group = zarr.open_group(location.zarr_store(), mode="r")
        self.attrs = dict(self.group.attrs)
        self.features = self.group[FEATURES]
        self.n_rows, self.n_features = (int(n) for n in self.features.shape)
        ok = np.asarray(self.group["ok"][:], dtype=bool)
        if WITHDRAWN in self.group:
            ok &= ~np.asarray(self.group[WITHDRAWN][:], dtype=bool)
        self.indexed = ok
        chunk = int(self.features.chunks[0])
        per_block = max(1, BLOCK_BYTES // (4 * max(1, self.n_features)))
        self.block_rows = max(chunk, per_block // chunk * chunk)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, float64 values of the indexed rows)`` per block of whole chunks."""
        for start in range(0, self.n_rows, self.block_rows):
            stop = min(start + self.block_rows, self.n_rows)
            keep = self.indexed[start:stop]
            if keep.any():
                values = np.asarray(self.features[start:stop], dtype=np.float64)
                yield start, values[keep]

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """Features of the given store rows, float64 ``[len(rows), n_features]``."""
        values = self.features.get_orthogonal_selection((rows, slice(None)))
        return np.asarray(values, dtype=np.float64)


def _column_stats(blocks: Iterator[tuple[int, np.ndarray]], width: int) -> dict[str, np.ndarray]:
    """Count, mean, population std, min and max of each column over finite values
    (Chan's parallel merge of per-block moments, in float64)."""
    count = np.zeros(width)
    mean = np.zeros(width)
    m2 = np.zeros(width)
    low = np.full(width, np.inf)
    high = np.full(width, -np.inf)
    for _, values in blocks:
        valid = np.isfinite(values)
        if valid.all():  # the usual block: no missing value
            n_b = np.full(width, float(len(values)))
            mean_b = values.mean(axis=0)
            m2_b = ((values - mean_b) ** 2).sum(axis=0)
            low = np.minimum(low, values.min(axis=0))
            high = np.maximum(high, values.max(axis=0))
        else:
            n_b = valid.sum(axis=0).astype(np.float64)
            mean_b = np.where(valid, values, 0.0).sum(axis=0) / np.maximum(n_b, 1)
            m2_b = (np.where(valid, values - mean_b, 0.0) ** 2).sum(axis=0)
            low = np.minimum(low, np.where(valid, values, np.inf).min(axis=0))
            high = np.maximum(high, np.where(valid, values, -np.inf).max(axis=0))
        total = count + n_b
        delta = mean_b - mean
        share = np.divide(n_b, total, out=np.zeros(width), where=total > 0)
        mean = mean + delta * share
        m2 = m2 + m2_b + delta**2 * count * share
        count = total
    std = np.sqrt(np.divide(m2, count, out=np.zeros(width), where=count > 0))
    return {"count": count, "mean": mean, "std": std, "min": low, "max": high}


def _preprocess(
    values: np.ndarray, means: np.ndarray, stds: np.ndarray, standardize: bool, metric: str
) -> np.ndarray:
    """Raw features → what the index holds: NaN/±inf → column mean, z-scores, unit rows
    for cosine; float32, C-contiguous."""
    x = np.array(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    if missing.any():
        x[missing] = np.broadcast_to(means, x.shape)[missing]
    if standardize:
        x = (x - means) / stds
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)  # an all-mean row stays zero
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r} is unknown: use one of {', '.join(METRICS)}")


def _new_index(metric: str, width: int):
    faiss = _faiss()
    return faiss.IndexFlatL2(width) if metric == "l2" else faiss.IndexFlatIP(width)


def _nearest(index, metric: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest stored vectors of each query: ``(distances, positions)``.

    faiss picks ``2 k + CANDIDATES`` candidates per query, their distances are
    recomputed in float64 from the stored vectors (faiss's float32
    ``|x|² + |y|² - 2xy`` loses digits near 0), then sorted; equal distances
    go by lower position. Queries run in blocks of about ``BLOCK_BYTES``.
    """
    k = min(k, index.ntotal)
    fetch = min(index.ntotal, 2 * k + CANDIDATES)
    step = max(1, BLOCK_BYTES // (8 * fetch * max(1, index.d)))
    distances = np.empty((len(queries), k))
    positions = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), step):
        block = queries[start : start + step]
        _, found = index.search(block, fetch)
        exact = _exact(index, metric, block, found)
        by_position = np.argsort(found, axis=1, kind="stable")
        by_distance = np.argsort(np.take_along_axis(exact, by_position, 1), axis=1, kind="stable")
        order = np.take_along_axis(by_position, by_distance, 1)[:, :k]
        distances[start : start + step] = np.take_along_axis(exact, order, 1)
        positions[start : start + step] = np.take_along_axis(found, order, 1)
    return distances, positions


def _exact(index, metric: str, queries: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Distances of queries to their candidates in float64 from the stored vectors."""
    stored = index.reconstruct_batch(found.ravel()).astype(np.float64)
    stored = stored.reshape(*found.shape, -1)
    x = queries.astype(np.float64)[:, None, :]
    if metric == "l2":
        return np.sqrt(((stored - x) ** 2).sum(axis=2))
    return np.clip(1.0 - (stored * x).sum(axis=2), 0.0, 2.0)


def build_index(
    store: str,
    *,
    metric: str = "l2",
    standardize: bool = True,
    storage_options: dict | None = None,
    progress: bool = True,
) -> IndexInfo:
    """Build the exact similarity index of ``store`` and save it in ``_xenonscale/index/``.

    Parameters
    ----------
    store
        The store URL (path, ``file://``, ``s3://``); it must be complete.
    metric
        ``"l2"`` (Euclidean) or ``"cosine"`` (``1 - cos`` of the preprocessed rows).
    standardize
        Z-score every column with the mean and population std of the indexed rows
        (a constant or empty column keeps std 1); False keeps store units (NaN still
        becomes the column mean).
    progress
        Show a progress bar per pass on stderr.

    Raises
    ------
    StoreError
        No store, an unfinished store, or no usable row.
    ConfigError
        An unknown ``metric``, or faiss-cpu missing.

    Replaces an index already there; see the module docstring for an example.
    """
    from tqdm.auto import tqdm

    _check_metric(metric)
    faiss = _faiss()
    started = time.perf_counter()
    location = StoreLocation(store, storage_options)
    reader = _StoreFeatures(location)
    if not reader.attrs.get("complete", False):
        raise StoreError(
            f"store {store!r} is not complete (job interrupted?): rerun the same featurize "
            "command to finish it, then `xenonscale index` it"
        )
    n_indexed = int(reader.indexed.sum())
    if n_indexed == 0:
        raise StoreError(
            f"store {store!r} has no featurized rows to index (every row failed or was "
            "withdrawn): check `xenonscale featurize`'s errors"
        )

    def bar(desc: str):
        return tqdm(total=n_indexed, unit="rows", desc=desc, disable=not progress)

    with bar("index: statistics") as shown:
        stats = _column_stats(_counted(reader.blocks(), shown), reader.n_features)
    has_values = stats["count"] > 0
    means = np.where(has_values, stats["mean"], 0.0)
    constant = ~has_values | (stats["min"] == stats["max"])
    stds = np.where(constant, 1.0, stats["std"])
    index = _new_index(metric, reader.n_features)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n_indexed, min(REFERENCE_SAMPLE, n_indexed), replace=False))
    sampled: list[np.ndarray] = []
    rows = np.flatnonzero(reader.indexed).astype(np.int64)
    with bar("index: vectors") as shown:
        for _, values in _counted(reader.blocks(), shown):
            vectors = _preprocess(values, means, stds, standardize, metric)
            first = index.ntotal
            mine = sample[(sample >= first) & (sample < first + len(vectors))] - first
            sampled.append(vectors[mine])
            index.add(vectors)
    reference = _reference(index, np.concatenate(sampled), sample, metric)
    folder = location.path(BOOKKEEPING, INDEX_FOLDER)
    files = _save(location, folder, faiss, index, rows)
    fingerprint = store_fingerprint(reader.attrs)
    meta = {
        "format": FORMAT,
        "library": f"faiss {faiss.__version__}",
        "index": type(index).__name__,
        "metric": metric,
        "distance": "euclidean" if metric == "l2" else "1 - cosine",
        "standardize": bool(standardize),
        "features": reader.n_features,
        "store_rows": reader.n_rows,
        "rows": n_indexed,
        "store_fingerprint": fingerprint,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": files,
        "nearest_distance_quantiles": reference,
        "means": means.tolist(),
        "stds": stds.tolist(),
    }
    location.write_json(meta, BOOKKEEPING, INDEX_FOLDER, META_FILE)
    return IndexInfo(
        store=store,
        path=folder,
        metric=metric,
        standardize=bool(standardize),
        rows=n_indexed,
        skipped=reader.n_rows - n_indexed,
        features=reader.n_features,
        seconds=time.perf_counter() - started,
        bytes=sum(f["bytes"] for f in files.values()),
        fingerprint=fingerprint,
    )


def _counted(blocks: Iterator[tuple[int, np.ndarray]], bar) -> Iterator[tuple[int, np.ndarray]]:
    for start, values in blocks:
        yield start, values
        bar.update(len(values))


def _reference(index, vectors: np.ndarray, positions: np.ndarray, metric: str) -> dict:
    """Quantiles of the distance from sampled indexed rows to their nearest other row:
    what an applicability-domain score is compared with."""
    if index.ntotal < 2 or not len(vectors):
        return {}
    distances, found = _nearest(index, metric, vectors, 2)
    other = np.where(found[:, 0] == positions, distances[:, 1], distances[:, 0])
    return {
        "sample": len(vectors),
        **{str(q): float(np.quantile(other, q)) for q in QUANTILES},
    }


def _save(location: StoreLocation, folder: str, faiss, index, rows: np.ndarray) -> dict:
    """Write the faiss file and the rows; returns their names, sizes and sha256."""
    fs = location.fs
    fs.makedirs(folder, exist_ok=True)
    local = "file" in np.atleast_1d(fs.protocol)
    buffer = io.BytesIO()
    np.save(buffer, rows, allow_pickle=False)
    files = {}
    handle, tmp = tempfile.mkstemp(suffix=".faiss", dir=folder if local else None)
    os.close(handle)
    try:
        faiss.write_index(index, tmp)
        files[INDEX_FILE] = {"bytes": os.path.getsize(tmp), "sha256": _sha256_file(tmp)}
        if local:
            os.replace(tmp, f"{folder}/{INDEX_FILE}")
        else:
            fs.put_file(tmp, f"{folder}/{INDEX_FILE}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    data = buffer.getvalue()
    files[ROWS_FILE] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if local:
        tmp = f"{folder}/{ROWS_FILE}.tmp-{os.getpid()}"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, f"{folder}/{ROWS_FILE}")
    else:
        fs.pipe_file(f"{folder}/{ROWS_FILE}", data)
    return files


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def index_record(store: str, *, storage_options: dict | None = None) -> dict:
    """The ``index.json`` record of ``store``'s index, checked against the store as it is
    now (as :func:`open_index` checks it) without reading the index files: metric,
    standardize, means, stds, features, rows, ``nearest_distance_quantiles``, ``files``.

    Raises
    ------
    StoreError
        No store, no index (``run `xenonscale index STORE```), or a stale one.
    """
    meta, _ = _checked_record(store, StoreLocation(store, storage_options))
    return meta


def _checked_record(store: str, location: StoreLocation) -> tuple[dict, _StoreFeatures]:
    reader = _StoreFeatures(location)
    if not location.fs.exists(location.path(BOOKKEEPING, INDEX_FOLDER, META_FILE)):
        raise StoreError(f"store {store!r} has no similarity index: run `xenonscale index {store}`")
    meta = location.read_json(BOOKKEEPING, INDEX_FOLDER, META_FILE)
    if meta.get("format") != FORMAT:
        raise StoreError(
            f"the similarity index of {store!r} has format {meta.get('format')!r}, this "
            f"xenonscale reads {FORMAT}: run `xenonscale index {store}` again"
        )
    now = store_fingerprint(reader.attrs)
    if meta["store_fingerprint"] != now or meta["features"] != reader.n_features:
        raise StoreError(
            f"the similarity index of {store!r} is stale: the store changed since it was "
            f"indexed (fingerprint {meta['store_fingerprint']} → {now}): run "
            f"`xenonscale index {store}` again"
        )
    return meta, reader


def open_index(store: str, *, storage_options: dict | None = None) -> SimilarityIndex:
    """The similarity index of ``store``, checked against the store as it is now.

    Raises
    ------
    StoreError
        No index (``run `xenonscale index STORE```), a stale one (the store was
        featurized again or synced since), or index files that do not match their
        record (an interrupted build).
    """
    location = StoreLocation(store, storage_options)
    meta, reader = _checked_record(store, location)
    folder = location.path(BOOKKEEPING, INDEX_FOLDER)
    try:
        rows, index = _read_files(store, location, folder, meta)
    except FileNotFoundError as exc:
        raise StoreError(
            f"the similarity index of {store!r} lacks {exc.filename or exc} (removed, or an "
            f"interrupted build?): run `xenonscale index {store}` again"
        ) from exc
    if index.ntotal != len(rows) or index.d != reader.n_features:
        raise StoreError(
            f"the similarity index of {store!r} holds {index.ntotal} vectors for "
            f"{len(rows)} rows: run `xenonscale index {store}` again"
        )
    return SimilarityIndex(store, meta, index, rows, reader)


def _read_files(store: str, location: StoreLocation, folder: str, meta: dict):
    """The rows and the faiss index, each checked against its sha256 in index.json."""
    faiss = _faiss()
    fs = location.fs
    rows_data = fs.cat_file(f"{folder}/{ROWS_FILE}")
    _check_file(store, ROWS_FILE, meta, hashlib.sha256(rows_data).hexdigest())
    rows = np.load(io.BytesIO(rows_data), allow_pickle=False)
    if "file" in np.atleast_1d(fs.protocol):
        path = f"{folder}/{INDEX_FILE}"
        _check_file(store, INDEX_FILE, meta, _sha256_file(path))
        return rows, faiss.read_index(path)
    handle, tmp = tempfile.mkstemp(suffix=".faiss")
    os.close(handle)
    try:
        fs.get_file(f"{folder}/{INDEX_FILE}", tmp)
        _check_file(store, INDEX_FILE, meta, _sha256_file(tmp))
        return rows, faiss.read_index(tmp)
    finally:
        os.remove(tmp)


def _check_file(store: str, name: str, meta: dict, sha256: str) -> None:
    if meta["files"][name]["sha256"] != sha256:
        raise StoreError(
            f"{name} of the similarity index of {store!r} does not match index.json "
            f"(an interrupted build?): run `xenonscale index {store}` again"
        )


class SimilarityIndex:
    """An opened index (:func:`open_index`): exact k-nearest store rows of any vectors.

    Query vectors are raw features in store units (what the store's featurizer
    gives, NaN allowed): the index applies its own preprocessing
    (:meth:`transform`). Distances: Euclidean for ``l2``, ``1 - cos`` for
    ``cosine``; rows are store row numbers (``sample``).
    """

    def __init__(self, store: str, meta: dict, index, rows: np.ndarray, reader) -> None:
        self.store = store
        self.meta = meta
        self.index = index
        self.rows = rows
        self._reader = reader
        self.metric: str = meta["metric"]
        self.standardize: bool = meta["standardize"]
        self.means = np.asarray(meta["means"], dtype=np.float64)
        self.stds = np.asarray(meta["stds"], dtype=np.float64)
        self.n_features: int = meta["features"]

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        scale = "standardized" if self.standardize else "raw"
        return f"SimilarityIndex({self.store!r}, {len(self):,} rows, {self.metric}, {scale})"

    @property
    def reference(self) -> dict[str, float]:
        """Quantiles (``"0.5"`` … ``"1.0"``) of the distance from up to 1,000 indexed rows
        to their nearest other indexed row: the scale :meth:`distance_to_training` is
        read on (a query beyond the 0.99 quantile is farther out than 99 % of them)."""
        return dict(self.meta.get("nearest_distance_quantiles", {}))

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Raw feature vectors → the float32 vectors the index compares (NaN → column mean,
        z-scores when standardized, unit length for cosine)."""
        values = np.asarray(vectors, dtype=np.float64)
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ConfigError(
                f"vectors of shape {np.shape(vectors)} do not fit the index of {self.store!r}: "
                f"give [n, {self.n_features}] features from the store's featurizer"
            )
        return _preprocess(values, self.means, self.stds, self.standardize, self.metric)

    def search(self, vectors: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed rows of each vector, nearest first.

        Returns ``(distances float64 [n, k], rows int64 [n, k])``; ``k`` is cut to the
        number of indexed rows.
        """
        if int(k) < 1:
            raise ConfigError(f"k={k!r}: ask for 1 or more neighbours")
        k = min(int(k), len(self))
        distances, found = _nearest(self.index, self.metric, self.transform(vectors), k)
        return distances, self.rows[found]

    def search_rows(
        self, rows: Sequence[int] | np.ndarray, k: int = 10, *, exclude_self: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` with the store's own rows as queries; with ``exclude_self`` a row
        is not its own neighbour (an identical other row still is, at distance 0)."""
        queries = self._check_rows(rows)
        if int(k) < 1:
            raise ConfigError(f"k={k!r}: ask for 1 or more neighbours")
        extra = 1 if exclude_self else 0
        distances, found = self.search(self._reader.rows(queries), int(k) + extra)
        if not exclude_self:
            return distances, found
        hits = found == queries[:, None]  # the query row itself, where it is indexed
        keep = min(int(k), found.shape[1] - (1 if hits.any() else 0))
        order = np.argsort(hits, axis=1, kind="stable")[:, :keep]
        return np.take_along_axis(distances, order, 1), np.take_along_axis(found, order, 1)

    def distance_to_training(self, vectors: np.ndarray, k: int = 1) -> np.ndarray:
        """Applicability domain: the mean distance of each vector to its ``k`` nearest
        indexed rows (``k=1``: the nearest one), float64 ``[n]``; compare with
        :attr:`reference`."""
        distances, _ = self.search(vectors, k)
        return distances.mean(axis=1)

    @cached_property
    def featurizer(self):
        """The store's own featurizer, checked to use the element tables the store used."""
        spec = FeaturizerSpec.from_dict(self._reader.attrs["featurizer"])
        featurizer = spec.build()
        recorded = self._reader.attrs.get("element_tables") or []
        now = [{"name": t.name, "sha256": t.sha256} for t in element_tables(featurizer)]
        if recorded and now != recorded:
            raise StoreError(
                f"the element tables of store {self.store!r} ({recorded}) differ from the "
                f"ones installed now ({now}): featurize the store again"
            )
        return featurizer

    def featurize(self, inputs: Sequence[object]) -> FeatureBatch:
        """Raw inputs (formulas, SMILES, structure text) → features by the store's own
        featurizer and limits: a :class:`~xenonscale.featurize.base.FeatureBatch` (values,
        ok, one error per failed input) ready for :meth:`search`."""
        spec = FeaturizerSpec.from_dict(self._reader.attrs["featurizer"])
        return featurize_safely(self.featurizer, list(inputs), spec.limits)

    @property
    def kind(self) -> str:
        """What the store's inputs are (``composition``, ``structure``, ``molecule``)."""
        return str(self._reader.attrs["featurizer"].get("kind", "composition"))

    def records(self, rows: Sequence[int] | np.ndarray) -> pd.DataFrame:
        """``row``, ``id`` and ``input`` of store rows (any order, repeats allowed)."""
        wanted = np.asarray(rows, dtype=np.int64).ravel()
        unique, inverse = np.unique(wanted, return_inverse=True)
        group = self._reader.group
        text = {
            name: np.asarray(group[name].get_orthogonal_selection((unique,)), dtype=object)
            for name in ("id", "input")
        }
        return pd.DataFrame(
            {"row": wanted, "id": text["id"][inverse], "input": text["input"][inverse]}
        )

    def row_of_id(self, identifier: str) -> int:
        """The first store row whose ``id`` is ``identifier`` (read chunk by chunk)."""
        ids = self._reader.group["id"]
        step = self._reader.block_rows
        for start in range(0, self._reader.n_rows, step):
            hits = np.flatnonzero(np.asarray(ids[start : start + step], dtype=object) == identifier)
            if len(hits):
                return start + int(hits[0])
        raise StoreError(
            f"no row of store {self.store!r} has id {identifier!r}: give an id of the store, "
            "row:N, or a raw input"
        )

    def _check_rows(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        queries = np.asarray(rows, dtype=np.int64).ravel()
        n = self._reader.n_rows
        outside = queries[(queries < 0) | (queries >= n)]
        if len(outside):
            raise ConfigError(
                f"row {int(outside[0])} is not in store {self.store!r}: give rows 0..{n - 1}"
            )
        ok = np.asarray(self._reader.group["ok"].get_orthogonal_selection((queries,)), bool)
        if not ok.all():
            bad = int(queries[~ok][0])
            raise StoreError(
                f"row {bad} of store {self.store!r} failed featurization and has no features "
                "(see xenonscale.read_errors): query another row"
            )
        return queries
