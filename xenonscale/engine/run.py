"""The featurization engine: source → one Dask task per partition → FeatureStore.

The client plans (a streaming scan of the source), creates the store and a
manifest, then submits one task per unfinished partition. Each task runs on a
worker: read its rows → featurize the batch → write its chunk-aligned region
→ write a done marker. Nothing large passes through the client or the
scheduler: tasks return a few counts. A rerun of the same command skips
finished partitions (resume); a different spec is refused unless
``overwrite=True``; rows in = rows featurized + rows in the error table.

Examples
--------
Without ``client=`` a job starts an embedded cluster of worker processes; here
a small in-process one (threads) does:

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "formulas.csv").write_text("formula,target\\nFe2O3,1.5\\nNaCl,2.0\\nXx2,0\\n")
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     summary = featurize_to_store(
...         str(folder / "formulas.csv"), str(folder / "out.zarr"),
...         FeaturizerSpec.parse("composition", "classic"),
...         column="formula", client=client, progress=False,
...     )
>>> summary.rows, summary.featurized, summary.errors
(3, 2, 1)
"""

from __future__ import annotations

import functools
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xenonscale.chem.formula import parse_compositions
from xenonscale.cluster import close_client, get_client
from xenonscale.engine.bookkeeping import (
    JobLock,
    done_markers,
    read_bookkeeping,
    spec_hash,
    write_done,
)
from xenonscale.errors import ConfigError, FeaturizerError, SourceUnavailableError, StoreError
from xenonscale.featurize.base import encoding_of, featurize_safely
from xenonscale.featurize.registry import FeaturizerSpec, element_tables
from xenonscale.featurize.slots import COMPOSITION_SLOTS, composition_slots
from xenonscale.limits import record_limits
from xenonscale.sources import open_source
from xenonscale.sources.base import Partition, Source
from xenonscale.store.layout import (
    BOOKKEEPING,
    COMPOSITION_ELEMENT,
    COMPOSITION_FRACTION,
    STORE_TITLE,
    WITHDRAWN,
    StoreLocation,
    clear_store,
    store_state,
)
from xenonscale.store.writer import (
    COMPRESSIONS,
    composition_attrs,
    create_store,
    extra_kinds,
    finalize_store,
    write_region,
)
from xenonscale.versions import installed_versions

__all__ = ["FEATURE_ENCODING_CHOICES", "JobSummary", "check_output", "featurize_to_store"]

#: Feature bytes (float64, as featurizers return them) one task holds by default.
TASK_BYTES = 256 << 20
#: ``feature_encoding=`` (``--feature-encoding``): ``auto`` stores what the featurizer
#: declares (bits → uint8, counts → uint16; :func:`xenonscale.store.writer.feature_dtype`),
#: ``float32`` stores float32 whatever it declares.
FEATURE_ENCODING_CHOICES = ("auto", "float32")


@dataclass(frozen=True)
class JobSummary:
    """What a job did (``rows == featurized + errors`` always)."""

    store: str
    rows: int
    featurized: int
    errors: int
    features: int
    partitions: int
    resumed_partitions: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


@functools.lru_cache(maxsize=8)
def _featurizer(spec: FeaturizerSpec):
    """One featurizer per spec per worker process (tables load once)."""
    return spec.build()


def _run_partition(
    partition: Partition,
    source: Source,
    location: StoreLocation,
    spec: FeaturizerSpec,
    extras: dict[str, str],
    renamed: dict[str, str] | None = None,
    slots: int | None = None,
) -> dict:
    """Worker task: read → featurize → write region → done marker; returns counts.

    With ``slots`` (composition stores) the region also gets each row's
    composition (:func:`~xenonscale.featurize.slots.composition_slots`), zero
    where the row failed.
    """
    frame = source.read(partition)
    if len(frame) != partition.rows:
        raise StoreError(
            f"partition {partition.index} of {source.url!r} gave {len(frame)} records, "
            f"planned {partition.rows}: the source changed during the job"
        )
    frame = frame.rename(columns=renamed) if renamed else frame
    featurizer = _featurizer(spec)
    inputs = frame["input"].tolist()  # one list: the slots reuse the featurizer's parse
    batch = featurize_safely(featurizer, inputs, spec.limits)
    if spec.on_error == "raise" and batch.errors:
        first = batch.errors[0]
        raise FeaturizerError(f"row {partition.start + first.row}: {first.input!r}: {first.reason}")
    arrays, without_slots = _composition_arrays(inputs, batch.ok, slots, spec)
    try:
        write_region(location, partition.start, frame, batch.values, batch.ok, extras, arrays)
    except OSError as exc:  # a full disk, a read-only mount, a vanished bucket
        raise StoreError(
            f"cannot write rows {partition.start}..{partition.stop - 1} of {location.url!r} "
            f"({exc.strerror or exc}): free space or fix access, then rerun the same command "
            "to resume"
        ) from exc
    record = {
        "index": partition.index,
        "start": partition.start,
        "rows": partition.rows,
        "ok": int(batch.ok.sum()),
        "rows_without_slots": without_slots,
        "errors": [
            {"row": partition.start + e.row, "input": e.input, "error": e.reason}
            for e in batch.errors
        ],
    }
    write_done(location, partition.index, record)
    return {key: record[key] for key in ("index", "rows", "ok")} | {"errors": len(batch.errors)}


def _composition_arrays(
    inputs: list, ok: np.ndarray, slots: int | None, spec: FeaturizerSpec
) -> tuple[dict[str, np.ndarray] | None, int]:
    """The composition arrays of a region (zero where ``ok`` is False) and the ok rows that
    did not fit in ``slots``; ``(None, 0)`` when the store keeps no composition."""
    if slots is None:
        return None, 0
    with record_limits(spec.limits):
        elements, fractions, fits = composition_slots(parse_compositions(inputs), slots)
    elements[~ok] = 0
    fractions[~ok] = 0
    arrays = {COMPOSITION_ELEMENT: elements, COMPOSITION_FRACTION: fractions}
    return arrays, int((ok & ~fits).sum())


def featurize_to_store(
    source: str | Source,
    store: str,
    spec: FeaturizerSpec,
    *,
    column: str | None = None,
    client=None,
    chunk_rows: int = 10_000,
    partition_rows: int | None = None,
    compression: str = "lz4",
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict | None = None,
    source_options: dict | None = None,
    feature_encoding: str = "auto",
) -> JobSummary:
    """Featurize every record of ``source`` into the FeatureStore at ``store``.

    Parameters
    ----------
    source
        A URL/path (format inferred) or a :class:`~xenonscale.sources.base.Source`.
    store
        Store URL (path, ``file://``, ``s3://``).
    spec
        Which featurizers (see :class:`~xenonscale.featurize.registry.FeaturizerSpec`).
    column
        The input column of a tabular source.
    client
        A :class:`distributed.Client`; ``None`` starts an embedded cluster for
        the job (:func:`xenonscale.cluster.get_client`).
    chunk_rows, partition_rows
        Zarr chunk length along ``sample``; rows per task (rounded up to a
        multiple of ``chunk_rows`` so tasks write whole chunks). The default
        (``None``) sizes tasks by the feature width: about 256 MiB of float64
        features per task, at most 50,000 rows (50,000 for the 406 XenonPy
        poolings, 20,000 for RDF + OFM, 10,000 for a 2,048-bit fingerprint).
    compression
        Blosc codec of the store's arrays: ``lz4`` (fast), ``zstd`` (smaller)
        or ``none`` (see :data:`xenonscale.store.writer.COMPRESSIONS`).
    overwrite
        Replace a store built with a different spec (otherwise refused).
    feature_encoding
        ``auto`` (default): features as the featurizer declares them
        (``feature_encoding``): 0/1 fingerprints as ``uint8`` bits, count
        fingerprints as unsigned integers, 0 on error rows; anything else, and
        a union of mixed encodings, float32. ``float32``: float32 always. Part
        of the job's identity: a store is resumed only with the encoding it
        was begun with.
    """
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows {chunk_rows!r}: use a positive number of rows")
    if partition_rows is not None and partition_rows < 1:
        raise ConfigError(f"--partition-rows {partition_rows!r}: use a positive number of rows")
    spec.validate()
    if compression not in COMPRESSIONS:
        raise ConfigError(
            f"--compression {compression!r} is unknown: use one of {', '.join(COMPRESSIONS)}"
        )
    if feature_encoding not in FEATURE_ENCODING_CHOICES:
        raise ConfigError(
            f"--feature-encoding {feature_encoding!r} is unknown: use "
            f"{' or '.join(FEATURE_ENCODING_CHOICES)}"
        )
    featurizer = _featurizer(spec)  # fail fast on bad arguments, before any work
    encoding = encoding_of(featurizer) if feature_encoding == "auto" else "float32"
    location = StoreLocation(store, storage_options)
    state = check_output(location, overwrite=overwrite)
    if not isinstance(source, Source):
        source = open_source(source, column=column, kind=spec.kind, **(source_options or {}))
    if partition_rows is None:
        partition_rows = min(50_000, max(1, TASK_BYTES // (8 * max(1, len(featurizer.labels)))))
        partition_rows = max(chunk_rows, partition_rows // chunk_rows * chunk_rows)
    partition_rows = -(-partition_rows // chunk_rows) * chunk_rows
    started = time.perf_counter()

    if overwrite and state == "store":
        _check_not_locked(location)
        clear_store(location)
    try:
        location.fs.makedirs(location.root, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the store folder {location.url!r} ({exc.strerror or exc}): "
            "check that the path is writable and the disk has room"
        ) from exc
    with JobLock(location):
        manifest = _load_or_plan(
            location, source, spec, featurizer, chunk_rows, partition_rows, compression, encoding
        )
        if manifest.get("synced"):
            raise StoreError(
                f"store {location.url!r} is kept up to date by `xenonscale sync` "
                f"({manifest['synced']} syncs): sync it again, or pass --overwrite to rebuild it"
            )
        partitions = [Partition(**p) for p in manifest["partitions"]]
        done = done_markers(location)
        pending = [p for p in partitions if p.index not in done]
        resumed = len(partitions) - len(pending)
        if pending:
            _run_pending(pending, source, location, spec, manifest, client, progress, done)
        return _finish(location, manifest, partitions, resumed, started)


def check_output(location: StoreLocation | str, *, overwrite: bool = False) -> str:
    """Refuse an output the engine must not write into; returns its :func:`store_state`.

    The engine writes only into a path that is absent, an empty folder, or a
    store it made. A folder holding anything else (``-o .``, a project
    folder), a file, or a path under a file is refused with one line, before
    any work and whatever ``overwrite`` says: ``--overwrite`` replaces only a
    xenonscale store. Nothing is changed on disk.

    >>> import tempfile
    >>> check_output(tempfile.mkdtemp())
    'empty'
    """
    if isinstance(location, str):
        location = StoreLocation(location)
    state = store_state(location)
    if state == "file":
        raise StoreError(
            f"the output {location.url!r} is an existing file: give a new or empty folder "
            "for the store (nothing was changed)"
        )
    if state == "foreign":
        also = " (--overwrite replaces only xenonscale stores)" if overwrite else ""
        raise StoreError(
            f"refusing to write into {location.url!r}: it holds files that are not a xenonscale "
            f"feature store{also}; give a new or empty folder (nothing was changed)"
        )
    return state


def _check_not_locked(location: StoreLocation) -> None:
    lock = JobLock(location)
    holder = lock._holder()
    if holder and not JobLock._stale(holder):
        lock.acquire()  # raises StoreLockedError with the holder's details


def _load_or_plan(
    location, source, spec, featurizer, chunk_rows, partition_rows, compression, encoding
) -> dict:
    tables = element_tables(featurizer)
    slots = COMPOSITION_SLOTS if spec.kind == "composition" else None
    identity = {
        "featurizer": spec.to_dict(),
        "labels": spec_hash({"labels": list(featurizer.labels)}),
        "element_tables": [t.sha256 for t in tables],
        "source": source.describe(),
        "source_fingerprint": source.fingerprint(),
        "chunk_rows": chunk_rows,
        "partition_rows": partition_rows,
        "compression": compression,
    }
    if slots is not None:  # stores from before the composition arrays are rebuilt, not resumed
        identity["composition_slots"] = slots
    feature_max = getattr(featurizer, "feature_max", None) if encoding == "counts" else None
    if encoding != "float32":  # float32 jobs keep the identity they had before encodings
        identity["feature_encoding"] = encoding
        identity["feature_max"] = feature_max
    digest = spec_hash(identity)
    manifest_path = (BOOKKEEPING, "manifest.json")
    if location.fs.exists(location.path(*manifest_path)):
        manifest = read_bookkeeping(location, location.path(*manifest_path))
        if manifest.get("spec_hash") == digest:
            return manifest
        _check_same_encoding(location, manifest, identity)
        raise StoreError(
            f"store {location.url!r} was built with a different spec "
            f"(featurizers, element table, source or chunking differ): pass --overwrite "
            "to replace it, or write to another store"
        )
    if location.exists() and not _interrupted_creation(location):
        raise StoreError(
            f"{location.url!r} already holds a Zarr group that xenonscale did not write: "
            "pass --overwrite to replace it"
        )
    total, partitions = source.plan(partition_rows)
    first = source.preview(partitions[0]) if partitions else pd.DataFrame(columns=["id", "input"])
    renamed = store_names(extra_kinds(first))
    extras = {renamed.get(name, name): kind for name, kind in extra_kinds(first).items()}
    if renamed:
        warnings.warn(
            "source columns renamed in the store (their names are the store's own): "
            + ", ".join(f"{old!r} → {new!r}" for old, new in renamed.items()),
            stacklevel=3,
        )
    attrs = {
        "title": STORE_TITLE,
        "featurizer": spec.to_dict(),
        "featurizer_classes": type(featurizer).__name__,
        "citations": list(getattr(featurizer, "citations", ())),
        "element_table": ", ".join(dict.fromkeys(t.name for t in tables)),
        "element_tables": [{"name": t.name, "sha256": t.sha256} for t in tables],
        "source": source.describe(),
        "source_fingerprint": source.fingerprint(),
        "rows": total,
        "renamed_columns": renamed,
        "chunk_rows": chunk_rows,
        "compression": compression,
        "versions": installed_versions(
            "xenonscale", "numpy", "pandas", "zarr", "xarray", "dask", "distributed"
        ),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    provenance = _provenance(featurizer)
    if provenance:
        attrs["provenance"] = provenance
    create_store(
        location,
        rows=total,
        labels=list(featurizer.labels),
        extras=extras,
        chunk_rows=chunk_rows,
        attrs=attrs,
        compression=compression,
        composition_slots=slots,
        feature_encoding=encoding,
        feature_max=feature_max,
    )
    manifest = {
        "spec_hash": digest,
        "identity": identity,
        "rows": total,
        "extras": extras,
        "renamed": renamed,
        "composition_slots": slots,
        "attrs": attrs,
        "partitions": [asdict(p) for p in partitions],
    }
    location.write_json(manifest, *manifest_path)
    return manifest


_ENCODING_KEYS = ("feature_encoding", "feature_max")


def _check_same_encoding(location: StoreLocation, manifest: dict, identity: dict) -> None:
    """A store begun with another feature encoding and nothing else different: say how to
    resume it (the other differences get the general message)."""
    begun = dict(manifest.get("identity") or {})
    was = begun.get("feature_encoding") or "float32"
    now = identity.get("feature_encoding") or "float32"
    rest = [{k: v for k, v in i.items() if k not in _ENCODING_KEYS} for i in (begun, identity)]
    if was != now and spec_hash(rest[0]) == spec_hash(rest[1]):
        flag = "float32" if was == "float32" else "auto"
        raise StoreError(
            f"store {location.url!r} was begun with {was} features and this job would write "
            f"{now}: rerun with --feature-encoding {flag} to resume it, or pass --overwrite "
            "to replace it"
        )


def _provenance(featurizer) -> list[dict]:
    """``provenance()`` of the featurizer or of each part of a union that has one: what runs
    outside this process says what it is (``matminer:``: class, implementors, versions)."""
    parts = getattr(featurizer, "featurizers", None) or [featurizer]
    return [part.provenance() for part in parts if callable(getattr(part, "provenance", None))]


#: Names of the store's own arrays and folders: a source column may not take them.
RESERVED_NAMES = frozenset(
    {"features", "feature", "sample", "ok", "id", "input", "row", "errors", "zarr.json",
     COMPOSITION_ELEMENT, COMPOSITION_FRACTION, "element_slot", BOOKKEEPING, WITHDRAWN,
     "predictions"}
)  # fmt: skip
#: The prefix a clashing source column gets in the store.
RENAME_PREFIX = "source_"


def store_names(extras: dict[str, str]) -> dict[str, str]:
    """``{column: store name}`` for the source columns that clash with the store layout.

    Reserved names (:data:`RESERVED_NAMES`), names starting with ``_`` or
    ``.`` (Zarr and bookkeeping space) and names holding ``/`` (which would
    become nested groups) get :data:`RENAME_PREFIX` (``/`` becomes ``_``).
    A renamed column that would still clash is refused before any work.

    >>> store_names({"ok": "number", "a/b": "text", "target": "number"})
    {'ok': 'source_ok', 'a/b': 'source_a_b'}
    """
    renamed: dict[str, str] = {}
    for name in extras:
        text = str(name)
        if text in RESERVED_NAMES or text[:1] in ("_", ".") or "/" in text or not text:
            renamed[name] = RENAME_PREFIX + text.replace("/", "_")
    taken = (set(map(str, extras)) - set(renamed)) | RESERVED_NAMES
    clashes = [new for new in renamed.values() if new in taken]
    if clashes or len(set(renamed.values())) != len(renamed):
        raise StoreError(
            f"source columns {sorted(renamed)} clash with the store's own names and renaming "
            f"them to {sorted(renamed.values())} clashes again: rename those columns in the "
            "source"
        )
    return renamed


def _interrupted_creation(location: StoreLocation) -> bool:
    """A store this engine began to create but whose manifest never got written."""
    import zarr

    attrs = zarr.open_group(location.zarr_store(), mode="r").attrs
    return attrs.get("title") == STORE_TITLE and attrs.get("complete") is False


def _run_pending(pending, source, location, spec, manifest, client, progress, done) -> None:
    from distributed import as_completed

    own_client = client is None
    if own_client:
        client = get_client(quiet=not progress)
    try:
        # pure=False: a rerun in the same session gets fresh tasks, never a failed one's result
        futures = client.map(
            _run_partition,
            pending,
            source=source,
            location=location,
            spec=spec,
            extras=manifest["extras"],
            renamed=manifest.get("renamed"),
            slots=manifest.get("composition_slots"),
            pure=False,
        )
        partition_of = dict(zip(futures, pending, strict=True))
        failed: list[tuple[Partition, SourceUnavailableError]] = []
        initial = sum(record["rows"] for record in done.values())
        with tqdm(
            total=manifest["rows"],
            initial=initial,
            unit="rows",
            unit_scale=True,
            desc="featurize",
            disable=not progress,
            smoothing=0.1,
        ) as bar:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except SourceUnavailableError as exc:  # the others go on; named below
                    failed.append((partition_of[future], exc))
                    continue
                bar.update(result["rows"])
    finally:
        if own_client:
            close_client(client)
    if failed:
        raise _unavailable(source, failed, len(pending))


def _unavailable(source: Source, failed: list, pending: int) -> SourceUnavailableError:
    """One error naming every partition a web source could not serve (the rest is written)."""
    failed = sorted(failed, key=lambda item: item[0].index)
    where = "; ".join(source.describe_partition(p) for p, _ in failed[:8])
    more = f" and {len(failed) - 8} more" if len(failed) > 8 else ""
    return SourceUnavailableError(
        f"{len(failed)} of {pending} partitions could not be fetched: {where}{more} "
        f"(first failure: {failed[0][1]}); everything else is written: rerun the same "
        "command to fetch only what is missing"
    )


def _finish(location, manifest, partitions, resumed, started) -> JobSummary:
    done = done_markers(location)
    missing = [p.index for p in partitions if p.index not in done]
    if missing:
        raise StoreError(f"partitions {missing[:10]} did not finish: rerun to resume")
    errors = pd.DataFrame(
        [e for index in sorted(done) for e in done[index]["errors"]],
        columns=["row", "input", "error"],
    )
    featurized = sum(done[p.index]["ok"] for p in partitions)
    rows = manifest["rows"]
    if featurized + len(errors) != rows:
        raise StoreError(
            f"counts do not add up: {featurized} featurized + {len(errors)} errors != {rows} rows"
        )
    seconds = time.perf_counter() - started
    final = {"featurized": featurized, "errors": len(errors), "finished": time.strftime("%c")}
    if manifest.get("composition_slots") is not None:
        without = sum(done[p.index].get("rows_without_slots", 0) for p in partitions)
        final |= composition_attrs(manifest["composition_slots"], without)
    finalize_store(location, errors.sort_values("row", kind="stable").reset_index(drop=True), final)
    return JobSummary(
        store=location.url,
        rows=rows,
        featurized=featurized,
        errors=len(errors),
        features=len(manifest["attrs"].get("labels", [])) or _feature_count(location),
        partitions=len(partitions),
        resumed_partitions=resumed,
        seconds=seconds,
    )


def _feature_count(location: StoreLocation) -> int:
    import zarr

    return int(zarr.open_group(location.zarr_store(), mode="r")["features"].shape[1])
