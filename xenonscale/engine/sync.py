"""Incremental sync: bring a FeatureStore up to date with its source, rows in place.

Databases grow every month; rebuilding a 150,000-structure store to add 100
is waste. :func:`sync_store` compares the source with the store, featurizes
only what is new or changed, and writes it into the store:

1. **What changed.** For an ``optimade:`` source whose store keeps
   ``last_modified``: one ids-only listing of the query (``id``,
   ``last_modified``) against the store's ids gives the new, modified and
   withdrawn records, and only the new and modified ones are fetched, with
   the query narrowed to ``last_modified > T`` (``T`` the newest date in the
   store; ids the listing shows as new but dated earlier are added to the
   filter by id). Any other source (a new dump of a file, a server without
   dates): one pass over the source hashes each record (its input as stored
   plus its extra columns) on the workers and compares with the same hash
   of the store's rows.
2. **Featurize the delta through the engine** into a staging store inside
   the store's own ``_xenonscale/sync/`` folder: parallel, resumable, error
   rows, network manners, all as in :func:`~xenonscale.engine.featurize_to_store`.
3. **Merge, chunk by chunk.** A changed record is rewritten in its own row;
   a new one is appended (every ``sample`` array grows); a record the source
   no longer has is *kept* and flagged in the boolean ``withdrawn`` array
   (training skips it; a record that comes back is unflagged). One Dask task
   per affected chunk writes it (one writer per chunk, no lock); the plan is
   written before merging, so a killed sync finishes the same merge when rerun.
4. **Record it.** The error table is rebuilt (old errors of rewritten rows
   dropped, new ones added; ``ok + errors == rows`` is checked), the sync is
   appended to ``attrs["sync_history"]``, and ``attrs["last_sync"]`` changes
   when anything did, which changes the store's fingerprint, so
   ``xenonscale retrain`` retrains the models trained on it.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "v1.csv").write_text("id,formula,target\\na,Fe2O3,1.5\\nb,NaCl,2.0\\nc,MgO,3\\n")
>>> _ = (folder / "v2.csv").write_text("id,formula,target\\na,Fe2O3,1.5\\nb,NaCl,2.5\\nd,SiO2,4\\n")
>>> spec = FeaturizerSpec.parse("composition", "classic")
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(str(folder / "v1.csv"), str(folder / "s.zarr"), spec,
...                            client=client, progress=False, source_options={"id_column": "id"})
...     summary = sync_store(str(folder / "v2.csv"), str(folder / "s.zarr"),
...                          client=client, progress=False)
>>> summary.new, summary.modified, summary.withdrawn, summary.rows
(1, 1, 1, 4)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xenonscale.cluster import close_client, get_client
from xenonscale.engine.bookkeeping import JobLock, read_bookkeeping
from xenonscale.engine.run import featurize_to_store
from xenonscale.errors import StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.sources import open_source
from xenonscale.sources.base import Source
from xenonscale.sources.optimade import OptimadeSource
from xenonscale.sources.subset import RowSubsetSource
from xenonscale.store.layout import (
    BOOKKEEPING,
    COMPOSITION_ELEMENT,
    FEATURES,
    STORE_TITLE,
    WITHDRAWN,
    StoreLocation,
    feature_encoding,
    read_errors,
)
from xenonscale.store.writer import as_text, finalize_store, inputs_as_text

__all__ = ["SyncSummary", "sync_store"]

#: Most ids a narrowed OPTIMADE filter names one by one; more → content comparison.
MAX_IDS_IN_FILTER = 200
#: Sync records kept in ``attrs["sync_history"]`` (oldest dropped first).
HISTORY_KEPT = 200
SYNC = "sync"


@dataclass(frozen=True)
class SyncSummary:
    """What a sync did; ``rows == featurized + errors`` always."""

    store: str
    source: str
    mode: str
    new: int
    modified: int
    withdrawn: int
    restored: int
    fetched: int
    rows: int
    featurized: int
    errors: int
    seconds: float

    @property
    def changed(self) -> bool:
        return bool(self.new or self.modified or self.withdrawn or self.restored)


def sync_store(
    source: str | Source,
    store: str,
    *,
    client=None,
    progress: bool = True,
    storage_options: dict | None = None,
    source_options: dict | None = None,
    mode: str = "auto",
) -> SyncSummary:
    """Bring ``store`` up to date with ``source`` (see the module docstring).

    Parameters
    ----------
    source
        The store's source as it is now: the same ``optimade:`` query, or a new
        dump of the same data (any path; the format and columns must match).
    store
        A finished FeatureStore.
    mode
        ``auto`` (dates for OPTIMADE stores that keep ``last_modified``, else
        content hashes), ``last_modified`` or ``content``.
    source_options
        Options for :func:`~xenonscale.sources.open_source` (``response_fields``,
        ``auth_env``...); an OPTIMADE store's own response fields are the default.
    """
    started = time.perf_counter()
    if mode not in ("auto", "last_modified", "content"):
        raise StoreError(f"mode={mode!r}: use auto, last_modified or content")
    location = StoreLocation(store, storage_options)
    attrs, manifest = _finished_store(location)
    spec = FeaturizerSpec.from_dict(attrs["featurizer"])
    if not isinstance(source, Source):
        source = _open_like(source, attrs, spec, source_options or {})
    own_client = client is None
    if own_client:
        client = get_client(quiet=not progress)
    try:
        with JobLock(location, purpose="sync"):
            plan_path = location.path(BOOKKEEPING, SYNC, "plan.json")
            if location.fs.exists(plan_path):  # a killed sync: finish its merge first
                _apply(location, read_bookkeeping(location, plan_path), client, storage_options)
                attrs, manifest = _finished_store(location)
            return _sync(source, location, attrs, manifest, spec, client, progress, mode, started)
    finally:
        if own_client:
            close_client(client)


def _finished_store(location: StoreLocation) -> tuple[dict, dict]:
    import zarr

    if not location.exists():
        raise StoreError(f"no store at {location.url!r}: featurize it first, then sync")
    attrs = dict(zarr.open_group(location.zarr_store(), mode="r").attrs)
    if attrs.get("title") != STORE_TITLE:
        raise StoreError(f"{location.url!r} is not a xenonscale feature store: nothing to sync")
    if not attrs.get("complete"):
        raise StoreError(
            f"store {location.url!r} is unfinished: rerun the featurize command to finish it, "
            "then sync"
        )
    manifest = read_bookkeeping(location, location.path(BOOKKEEPING, "manifest.json"))
    return attrs, manifest


def _open_like(url: str, attrs: dict, spec: FeaturizerSpec, options: dict) -> Source:
    """Open ``url`` as the store's source was opened (its column, id column, fields)."""
    recorded = attrs.get("source") or {}
    options = dict(options)
    if str(url).startswith("optimade:"):
        options.setdefault("response_fields", recorded.get("response_fields") or None)
        options.setdefault("auth_env", recorded.get("auth_env"))
        return open_source(url, kind=spec.kind, **{k: v for k, v in options.items() if v})
    for name in ("column", "id_column"):
        if recorded.get(name) is not None:
            options.setdefault(name, recorded[name])
    return open_source(url, kind=spec.kind, **options)


def _sync(source, location, attrs, manifest, spec, client, progress, mode, started):
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r")
    store_ids = _unique_ids(np.asarray(group["id"][:], dtype=object), f"store {location.url!r}")
    withdrawn = (
        np.asarray(group[WITHDRAWN][:], dtype=bool)
        if WITHDRAWN in group
        else np.zeros(len(store_ids), dtype=bool)
    )
    extras = manifest["extras"]
    if mode == "auto":
        dated = isinstance(source, OptimadeSource) and "last_modified" in extras
        mode = "last_modified" if dated else "content"
    if mode == "last_modified":
        if not isinstance(source, OptimadeSource) or "last_modified" not in extras:
            raise StoreError(
                "mode='last_modified' needs an optimade: source and a store keeping last_modified"
            )
        delta, removed = _by_date(source, group, store_ids, withdrawn)
        if delta is _TOO_MANY_IDS:
            mode = "content"
    if mode == "content":
        delta, removed = _by_content(
            source, location, group, store_ids, withdrawn, manifest, client
        )
    staging = StoreLocation(
        f"{location.url.rstrip('/')}/{BOOKKEEPING}/{SYNC}/staging.zarr", location.storage_options
    )
    fetched_ids: np.ndarray = np.empty(0, dtype=object)
    staged_errors = pd.DataFrame(columns=["row", "input", "error"])
    if delta is not None:
        _stage(delta, staging, spec, attrs, client, progress)
        staged = zarr.open_group(staging.zarr_store(), mode="r")
        _check_columns(staged, extras, location)
        _check_feature_dtype(staged, group, location)
        fetched_ids = _unique_ids(np.asarray(staged["id"][:], dtype=object), "the changed records")
        staged_errors = read_errors(staging.url, storage_options=staging.storage_options)
    position = {ident: row for row, ident in enumerate(store_ids)}
    targets, new, modified, restored = [], 0, 0, 0
    for ident in fetched_ids:
        row = position.get(ident)
        if row is None:
            targets.append(len(store_ids) + new)
            new += 1
        else:
            targets.append(row)
            restored += int(withdrawn[row])
            modified += int(not withdrawn[row])
    fetched = set(fetched_ids)
    flag = sorted(int(r) for r in removed if store_ids[r] not in fetched and not withdrawn[r])
    plan = {
        "old_rows": len(store_ids),
        "rows": len(store_ids) + new,
        "targets": targets,
        "withdraw": flag,
        "staging": staging.url if delta is not None else None,
        "staged_errors": staged_errors.to_dict("records"),
        "record": {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": source.describe(),
            "mode": mode,
            "new": new,
            "modified": modified,
            "restored": restored,
            "withdrawn": len(flag),
            "fetched": len(fetched_ids),
        },
    }
    location.write_json(plan, BOOKKEEPING, SYNC, "plan.json")
    final = _apply(location, plan, client, location.storage_options)
    return SyncSummary(
        store=location.url,
        source=str(source.url),
        mode=mode,
        new=new,
        modified=modified,
        withdrawn=len(flag),
        restored=restored,
        fetched=len(fetched_ids),
        rows=plan["rows"],
        featurized=final["featurized"],
        errors=final["errors"],
        seconds=time.perf_counter() - started,
    )


def _unique_ids(ids: np.ndarray, what: str) -> np.ndarray:
    values, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        twice = values[counts > 1][:3].tolist()
        raise StoreError(
            f"{what} has duplicate ids {twice}: sync matches records by id; give the source "
            "an id column with unique values (--id-column) and rebuild"
        )
    return ids


# -- what changed -----------------------------------------------------------------------------

_TOO_MANY_IDS = object()


def _by_date(source: OptimadeSource, group, store_ids, withdrawn):
    """(delta source or None, store rows withdrawn) from an ids-only listing."""
    listing = source.listing()
    _unique_ids(listing["id"].to_numpy(dtype=object), f"the query {source.url!r}")
    stored = np.asarray(group["last_modified"][:], dtype=object)
    now = dict(zip(listing["id"], listing["last_modified"], strict=True))
    position = {ident: row for row, ident in enumerate(store_ids)}
    removed = [row for ident, row in position.items() if ident not in now]
    changed = [
        ident
        for ident, date in now.items()
        if ident not in position or date != stored[position[ident]] or withdrawn[position[ident]]
    ]
    if not changed:
        return None, removed
    dates = pd.to_datetime(pd.Series(stored), utc=True, errors="coerce", format="ISO8601")
    newest = dates.max()
    if pd.isna(newest):
        return _TOO_MANY_IDS, removed
    since = stored[int(dates.to_numpy().argmax())]
    current = pd.to_datetime(
        pd.Series([now[i] for i in changed]), utc=True, errors="coerce", format="ISO8601"
    )
    early = [ident for ident, date in zip(changed, current, strict=True) if not date > newest]
    if len(early) > MAX_IDS_IN_FILTER:
        return _TOO_MANY_IDS, removed
    clause = f'last_modified > "{since}"'
    if early:
        named = " OR ".join(f'id="{_raw_id(ident)}"' for ident in early)
        clause = f"{clause} OR {named}"
    return source.narrowed(clause), removed


def _raw_id(ident: str) -> str:
    raw = ident.split(":", 1)[-1]
    return raw.replace("\\", "\\\\").replace('"', '\\"')


def _by_content(source, location, group, store_ids, withdrawn, manifest, client):
    """(delta source or None, store rows withdrawn) from per-record content hashes."""
    extras = manifest["extras"]
    renamed = manifest.get("renamed") or {}
    _total, partitions = source.plan(10_000)
    found = client.gather(client.map(_source_digests, partitions, source=source, extras=extras,
                                     renamed=renamed, pure=False))  # fmt: skip
    rows = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
    ids = np.concatenate([f[1] for f in found]) if found else np.empty(0, object)
    digests = np.concatenate([f[2] for f in found]) if found else np.empty(0, np.uint64)
    _unique_ids(ids, f"source {source.url!r}")
    chunk = int(group["ok"].chunks[0])
    starts = range(0, len(store_ids), chunk)
    parts = client.gather(client.map(_store_digests, list(starts), location=location, chunk=chunk,
                                     extras=extras, pure=False))  # fmt: skip
    stored = np.concatenate(parts) if parts else np.empty(0, np.uint64)
    position = {ident: row for row, ident in enumerate(store_ids)}
    present = set(ids)
    removed = [row for ident, row in position.items() if ident not in present]
    wanted = [
        int(r)
        for r, ident, digest in zip(rows, ids, digests, strict=True)
        if ident not in position or stored[position[ident]] != digest or withdrawn[position[ident]]
    ]
    if not wanted:
        return None, removed
    return RowSubsetSource(source, wanted), removed


def _digest(inputs: np.ndarray, columns: list[np.ndarray]) -> np.ndarray:
    """A 64-bit hash per record of its stored input text and extra values (one vectorized
    pass, ``pandas.util.hash_pandas_object``): equal records hash equal on both sides."""
    frame = pd.DataFrame({"input": pd.Series(inputs, dtype=object)})
    for k, column in enumerate(columns):
        frame[f"extra{k}"] = column
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64)


def _extra_values(frame: pd.DataFrame, extras: dict[str, str]) -> list[np.ndarray]:
    columns = []
    for name in sorted(extras):
        column = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
        if extras[name] == "number":
            columns.append(pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64))
        else:
            columns.append(as_text(column))
    return columns


def _source_digests(partition, source, extras, renamed):
    frame = source.read(partition)
    frame = frame.rename(columns=renamed) if renamed else frame
    digests = _digest(inputs_as_text(frame["input"]), _extra_values(frame, extras))
    return frame["row"].to_numpy(np.int64), as_text(frame["id"]), digests


def _store_digests(start, location, chunk, extras):
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r")
    stop = min(start + chunk, group["ok"].shape[0])
    columns = []
    for name in sorted(extras):
        values = group[name][start:stop]
        columns.append(
            np.asarray(values, np.float64)
            if extras[name] == "number"
            else np.asarray(values, object)
        )
    return _digest(np.asarray(group["input"][start:stop], dtype=object), columns)


# -- staging and merging ----------------------------------------------------------------------


def _stage(delta, staging, spec, attrs, client, progress) -> None:
    """Featurize the delta into the staging store (resumed if the same delta was begun)."""
    overwrite = False
    manifest_path = staging.path(BOOKKEEPING, "manifest.json")
    if staging.fs.exists(manifest_path):
        begun = read_bookkeeping(staging, manifest_path)
        overwrite = begun.get("identity", {}).get("source_fingerprint") != delta.fingerprint()
    featurize_to_store(
        delta,
        staging.url,
        spec,
        client=client,
        chunk_rows=int(attrs.get("chunk_rows") or 10_000),
        compression=attrs.get("compression") or "lz4",
        overwrite=overwrite,
        progress=progress,
        storage_options=staging.storage_options,
        # the delta is encoded as the store is: a float32 store stays float32
        feature_encoding="float32" if feature_encoding(attrs) == "float32" else "auto",
    )


def _check_feature_dtype(staged, group, location) -> None:
    """The merge copies rows as they are: the staged features must have the store's dtype."""
    have, got = group[FEATURES].dtype, staged[FEATURES].dtype
    if have != got:
        raise StoreError(
            f"the changed records were featurized as {got} but {location.url!r} holds {have} "
            "features (the featurizer's encoding changed): rebuild the store with --overwrite"
        )


def _check_columns(staged, extras: dict[str, str], location) -> None:
    missing = [name for name in extras if name not in staged]
    if missing:
        raise StoreError(
            f"the source no longer has the store's columns {missing}: sync needs the same "
            f"columns as {location.url!r} was built from (or rebuild it with --overwrite)"
        )


def _row_arrays(group, extras) -> list[str]:
    names = [FEATURES, "ok", "id", "input", *extras]
    return names + [n for n in (COMPOSITION_ELEMENT, "composition_fraction") if n in group]


def _apply(location: StoreLocation, plan: dict, client, storage_options) -> dict:
    """Grow the arrays, merge the staged rows chunk by chunk, flag, finish (idempotent)."""
    import zarr

    manifest = read_bookkeeping(location, location.path(BOOKKEEPING, "manifest.json"))
    extras = manifest["extras"]
    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    rows, old = int(plan["rows"]), int(plan["old_rows"])
    if WITHDRAWN not in group:
        group.create_array(
            WITHDRAWN,
            shape=group["ok"].shape,
            chunks=group["ok"].chunks,
            dtype="bool",
            fill_value=False,
            dimension_names=["sample"],
        )
    if group["ok"].shape[0] != rows:
        for name in [*_row_arrays(group, extras), WITHDRAWN, "sample"]:
            array = group[name]
            array.resize((rows, *array.shape[1:]))
        group["sample"][old:rows] = np.arange(old, rows, dtype=np.int64)
    chunk = int(group["ok"].chunks[0])
    targets = np.asarray(plan["targets"], dtype=np.int64)
    flags = np.asarray(plan["withdraw"], dtype=np.int64)
    chunks = sorted(set((targets // chunk).tolist()) | set((flags // chunk).tolist()))
    merged = location.path(BOOKKEEPING, SYNC, "merged")
    done = set()
    if location.fs.exists(merged):  # chunks a killed sync merged already
        done = {p.rsplit("/", 1)[-1] for p in location.fs.ls(merged, detail=False)}
    jobs = []
    for index in chunks:
        if f"{index}.json" in done:
            continue
        inside = np.flatnonzero(targets // chunk == index)
        jobs.append(
            {
                "chunk": index,
                "staged": inside.tolist(),
                "targets": targets[inside].tolist(),
                "withdraw": flags[flags // chunk == index].tolist(),
            }
        )
    staging = StoreLocation(plan["staging"], storage_options) if plan.get("staging") else None
    names = _row_arrays(group, extras)
    if jobs:
        client.gather(client.map(_merge_chunk, jobs, location=location, staging=staging,
                                 names=names, pure=False))  # fmt: skip
    return _finish_sync(location, manifest, plan, targets)


def _merge_chunk(job: dict, location: StoreLocation, staging, names: list[str]) -> int:
    """One chunk: staged rows into their target rows, withdrawn flags; then its marker."""
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    staged_rows = np.asarray(job["staged"], dtype=np.int64)
    targets = np.asarray(job["targets"], dtype=np.int64)
    if len(staged_rows):
        source = zarr.open_group(staging.zarr_store(), mode="r")
        order = np.argsort(targets)
        staged_rows, targets = staged_rows[order], targets[order]
        for name in names:
            values = source[name].oindex[staged_rows]
            group[name].oindex[targets] = values
        group[WITHDRAWN].oindex[targets] = False
    if job["withdraw"]:
        group[WITHDRAWN].oindex[np.asarray(job["withdraw"], dtype=np.int64)] = True
    location.write_json(
        {"chunk": job["chunk"]}, BOOKKEEPING, SYNC, "merged", f"{job['chunk']}.json"
    )
    return len(targets)


def _finish_sync(location, manifest, plan, targets) -> dict:
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r", use_consolidated=False)
    rows = int(plan["rows"])
    errors = read_errors(location.url, storage_options=location.storage_options)
    errors = errors[~errors["row"].isin(targets)]
    staged = pd.DataFrame(plan["staged_errors"], columns=["row", "input", "error"])
    if len(staged):
        staged["row"] = targets[staged["row"].to_numpy(dtype=np.int64)]
    errors = pd.concat([errors, staged], ignore_index=True).sort_values("row", kind="stable")
    featurized = int(np.asarray(group["ok"][:], dtype=bool).sum())
    if featurized + len(errors) != rows:
        raise StoreError(
            f"counts do not add up after sync: {featurized} featurized + {len(errors)} errors "
            f"!= {rows} rows; rerun the sync (it resumes)"
        )
    attrs = dict(group.attrs)
    record = dict(plan["record"])
    history = [*(attrs.get("sync_history") or []), record][-HISTORY_KEPT:]
    final = {"rows": rows, "featurized": featurized, "errors": len(errors), "sync_history": history}
    changed = record["new"] + record["modified"] + record["restored"] + record["withdrawn"]
    if changed:
        final["last_sync"] = record["at"] + f" #{len(history)}"
    if "last_modified" in group:
        dates = np.asarray(group["last_modified"][:], dtype=object)
        dates = [d for d in dates if d]
        final["sync_watermark"] = max(dates) if dates else None
    if COMPOSITION_ELEMENT in group and isinstance(attrs.get("composition"), dict):
        ok = np.asarray(group["ok"][:], dtype=bool)
        empty = np.asarray(group[COMPOSITION_ELEMENT][:, 0]) == 0
        final["composition"] = attrs["composition"] | {
            "rows_without_slots": int((ok & empty).sum())
        }
    finalize_store(location, errors.reset_index(drop=True), final)
    manifest = manifest | {"rows": rows, "synced": len(history)}
    location.write_json(manifest, BOOKKEEPING, "manifest.json")
    location.fs.rm(location.path(BOOKKEEPING, SYNC), recursive=True)
    return final
