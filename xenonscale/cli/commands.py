"""Handlers of the ``xenonscale`` subcommands (argument parsing lives in ``main``).

``featurize`` has two outputs that share everything but the writer: a Zarr
store through the Dask engine, or one ``.parquet``/``.csv`` table written in
this process. Both check every argument, build the featurizer and open the
source (:func:`xenonscale.sources.open_source`, which checks ``--column``
against the header) before any cluster starts; the table path then plans and
reads every partition of that same source, in order, and featurizes the
records with :func:`~xenonscale.featurize.batches.featurize_in_batches` under
the same per-record limits, so both paths see the same rows and turn the same
ones into error rows with the same reasons.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from xenonscale.errors import ConfigError, FeaturizerError, SourceError

__all__ = [
    "TABLE_SUFFIXES",
    "datasets",
    "demo",
    "elements",
    "featurize",
    "write_table",
]

#: ``--output`` names written in-process as one table rather than a store.
TABLE_SUFFIXES = (".parquet", ".csv")
#: Parquet schema metadata key of tables written here (``--overwrite`` not needed for them).
TABLE_MARKER = b"xenonscale"
#: Rows read per partition on the table path (the rows are then featurized in batches).
TABLE_PARTITION_ROWS = 50_000
_ERRORS_HEADER = "row,input,error"


@dataclass
class _Job:
    """What both featurize paths need, prepared before any cluster starts."""

    spec: object  # FeaturizerSpec
    featurizer: object
    source: object  # Source
    storage_options: dict | None


def featurize(args: argparse.Namespace) -> int:
    """``xenonscale featurize``: a store through the engine, or an in-process table."""
    suffix = PurePosixPath(args.output.rstrip("/")).suffix.lower()
    table = suffix in TABLE_SUFFIXES
    if not table and suffix not in ("", ".zarr"):
        raise ConfigError(
            f"--output {args.output!r}: name a Zarr store (a folder or URL ending in .zarr "
            f"or with no suffix) or a table ({' or '.join(TABLE_SUFFIXES)})"
        )
    output = _check_table_output(args) if table else _check_store_output(args.output)
    job = _prepare(args)
    return _featurize_table(args, job, output) if table else _featurize_store(args, job)


def _prepare(args: argparse.Namespace) -> _Job:
    """Check the arguments, build the featurizer, open the source (no cluster yet)."""
    from xenonscale.cli.args import check_model_ref, parse_storage_options, record_limits_from
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.sources import open_source
    from xenonscale.store.writer import COMPRESSIONS

    if args.compression not in COMPRESSIONS:
        raise ConfigError(
            f"--compression {args.compression!r} is unknown: use one of {', '.join(COMPRESSIONS)}"
        )
    options = parse_storage_options(args.storage_options)
    limits = record_limits_from(args)
    spec = FeaturizerSpec.parse(
        args.kind, args.featurizers, elements=args.elements, on_error=args.on_error, limits=limits
    )
    for name in spec.names:  # frozen:NAME[@V][+NAME2...]: zoo references, checked here
        if name.startswith("frozen:"):
            for ref in name.split(":", 1)[1].split("+"):
                check_model_ref(ref.strip())
    featurizer = spec.build()  # bad featurizer arguments fail here,
    featurizer.labels  # noqa: B018 - and missing zoo models (frozen:) here
    url, column = args.input, args.column
    if url.startswith("dataset:"):
        from xenonscale import datasets as registry

        name = url.split(":", 1)[1]
        url, column = str(registry.fetch(name)), column or registry.info(name).input_column
    source = open_source(url, column=column, kind=spec.kind, storage_options=options)
    return _Job(spec, featurizer, source, options)


def _local_path(url: str) -> Path | None:
    """The local path of ``url`` (plain or ``file://``); None for a remote URL."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    return None if "://" in url else Path(url)


def _check_parents(flag: str, value: str, path: Path) -> None:
    """The nearest existing folder above ``path`` must be a folder, not a file."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{flag} {value!r}: {str(parent)!r} is a file, not a folder: "
                    "choose an output path under a folder"
                )
            return


def _check_store_output(value: str) -> str:
    path = _local_path(value)
    if path is not None:
        _check_parents("--output", value, path)
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"--output {value!r} is an existing file, not a store folder: choose another "
                "name (a Zarr store is a folder) or remove the file"
            )
    return value


def _check_table_output(args: argparse.Namespace) -> Path:
    value = args.output
    path = _local_path(value)
    if path is None:
        raise ConfigError(
            f"--output {value!r}: a {PurePosixPath(value).suffix} table is written to a local "
            "path; give one, or a store URL ending in .zarr for remote output"
        )
    _check_parents("--output", value, path)
    errors_path = _errors_path(path)
    for target in (path, errors_path):
        if target.is_dir():
            raise ConfigError(
                f"--output {value!r}: {str(target)!r} is a folder: give a table file name "
                "that is not a folder"
            )
    if path.exists() and not args.overwrite and not _written_here(path):
        raise ConfigError(
            f"--output {value!r} exists and is not a table written by xenonscale featurize: "
            "pass --overwrite to replace it, or choose another name"
        )
    return path


def _errors_path(output: Path) -> Path:
    return output.with_suffix(".errors.csv")


def _written_here(path: Path) -> bool:
    """True for a table this command wrote (so a rerun may replace it)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return TABLE_MARKER in (pq.read_schema(path).metadata or {})
        errors_path = _errors_path(path)
        if not errors_path.is_file():
            return False
        with open(errors_path, encoding="utf-8", errors="replace") as f:
            if f.readline().strip() != _ERRORS_HEADER:
                return False
        import csv

        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            header = next(csv.reader([f.readline(1 << 20)]), [])
        return "ok" in header
    except Exception:  # unreadable: not ours
        return False


def _featurize_store(args: argparse.Namespace, job: _Job) -> int:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import check_output, featurize_to_store
    from xenonscale.store.layout import StoreLocation

    # -o into a folder that is not a store is refused before any cluster starts
    check_output(StoreLocation(args.output, job.storage_options), overwrite=args.overwrite)
    client = get_client(args.scheduler, workers=args.workers, quiet=args.no_progress)
    try:
        summary = featurize_to_store(
            job.source,
            args.output,
            job.spec,
            column=job.source.column,
            client=client,
            chunk_rows=args.chunk_rows,
            compression=args.compression,
            partition_rows=args.partition_rows,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            storage_options=job.storage_options,
        )
    finally:
        close_client(client)
    print(
        f"{summary.rows:,} rows → {summary.featurized:,} featurized + {summary.errors:,} errors "
        f"({summary.partitions} partitions, {summary.resumed_partitions} already done) in "
        f"{summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) → {summary.store}"
    )
    return 0


def read_source(source, partition_rows: int = TABLE_PARTITION_ROWS) -> pd.DataFrame:
    """Every record of ``source``: plan, then read each partition in order (this process).

    The frame has the source contract's columns (``row``, ``id``, ``input`` and
    the extras), one row per record, rows ``0 ..< total``.
    """
    total, partitions = source.plan(partition_rows)
    frames = []
    with warnings.catch_warnings():
        # the readers fix ragged records themselves; pandas' note about them is noise here
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        for partition in partitions:
            frame = source.read(partition)
            if len(frame) != partition.rows:
                raise SourceError(
                    f"partition {partition.index} of {source.url!r} gave {len(frame)} records, "
                    f"planned {partition.rows}: the source changed while it was read; rerun"
                )
            frames.append(frame)
    if not frames:
        return pd.DataFrame({"row": pd.Series([], dtype="int64"), "id": [], "input": []})
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frame) != total:
        raise SourceError(f"{source.url!r}: read {len(frame)} records, planned {total}; rerun")
    return frame.reset_index(drop=True)


def _featurize_table(args: argparse.Namespace, job: _Job, output: Path) -> int:
    from xenonscale.featurize.batches import featurize_in_batches
    from xenonscale.limits import record_limits

    started = time.perf_counter()
    frame = read_source(job.source, args.partition_rows or TABLE_PARTITION_ROWS)
    labels = list(job.featurizer.labels)
    inputs = _input_table(frame, job.source, labels)  # a name clash fails before any work
    with record_limits(job.spec.limits):
        result = featurize_in_batches(
            job.featurizer,
            frame["input"].tolist(),
            batch_rows=args.batch_rows,
            progress=not args.no_progress,
        )
    rows, ok = len(frame), int(result.ok.sum())
    if ok + len(result.errors) != rows:
        raise FeaturizerError(
            f"counts do not add up: {ok} featurized + {len(result.errors)} errors != {rows} rows"
        )
    if job.spec.on_error == "raise" and result.errors:
        first = result.errors[0]
        raise FeaturizerError(
            f"row {first.row}: {first.input!r}: {first.reason} (--on-error raise; "
            "use --on-error record to keep going)"
        )
    seconds = time.perf_counter() - started
    features = pd.DataFrame(result.values, columns=labels)
    features.insert(0, "ok", result.ok)
    table = pd.concat([inputs, features], axis=1)
    metadata = {
        "featurizer": job.spec.to_dict(),
        "source": job.source.describe(),
        "rows": rows,
        "featurized": ok,
        "errors": len(result.errors),
    }
    errors_path = _errors_path(output)
    write_table(table, output, metadata=metadata)
    _write_atomically(errors_path, lambda tmp: _errors(result).to_csv(tmp, index=False))
    print(
        f"{rows:,} rows → {ok:,} featurized, {len(result.errors):,} "
        f"errors ({errors_path}); {len(labels)} features; {seconds:.2f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s) → {output}"
    )
    return 0


def _input_table(frame: pd.DataFrame, source, labels: list[str]) -> pd.DataFrame:
    """The source's own columns: input and id under their names, then the extras.

    The id is kept when the source names an id column (a pandas index column
    ``__index_level_0__`` aside) or when its ids are not plain row numbers
    (molecule names, file paths, material ids).
    """
    column = getattr(source, "column", None) or "input"
    id_column = getattr(source, "id_column", None)
    columns = getattr(source, "columns", None)
    tabular = isinstance(columns, list)
    data: dict[str, pd.Series] = {}
    if id_column and id_column.startswith("__index_level_"):
        id_column, named = None, False
    else:
        named = bool(id_column)
    if named or (frame["id"] != frame["row"].astype(str)).any():
        data[id_column or "id"] = frame["id"]
    data[column] = frame["input"]
    for name in frame.columns:
        if name not in ("row", "id", "input") and name not in data:
            data[name] = frame[name]
    if tabular:  # the file's column order; columns of a header-only file are kept
        order = [str(c) for c in columns if str(c) in data or len(frame) == 0]
        order += [name for name in data if name not in order]
        data = {name: data.get(name, pd.Series([], dtype=object)) for name in order}
    clash = sorted({"ok", *labels} & set(data))
    if clash:
        raise ConfigError(
            f"input column {clash[0]!r} has the name of an output column of the table: "
            "rename it in the input, or write a store (-o NAME.zarr)"
        )
    return pd.DataFrame(data).reset_index(drop=True)


def _errors(result) -> pd.DataFrame:
    from xenonscale.featurize import errors_frame

    return errors_frame(result.errors)


def _write_atomically(path: Path, write) -> None:
    """``write(temporary path)`` then rename over ``path`` (no half-written file is left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _arrow_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns Parquet cannot type (text in one partition, numbers in another) as text."""
    import pyarrow as pa

    fixed = {}
    for name in table.columns[table.dtypes.eq(object)]:
        try:
            pa.array(table[name], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            fixed[name] = table[name].map(lambda v: v if v is None or v != v else str(v))
    return table.assign(**fixed) if fixed else table


def write_table(features: pd.DataFrame, output: Path, *, metadata: dict | None = None) -> None:
    """Write ``.parquet`` or ``.csv`` (atomically; parent folders are created).

    Parquet tables carry ``metadata`` (JSON) under the ``xenonscale`` schema key.
    """
    suffix = output.suffix.lower()
    if suffix == ".csv":
        _write_atomically(output, lambda tmp: features.to_csv(tmp, index=False))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(_arrow_safe(features), preserve_index=False)
        marker = json.dumps(metadata or {}, default=str).encode()
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), TABLE_MARKER: marker}
        )
        _write_atomically(output, lambda tmp: pq.write_table(table, tmp))
    else:
        raise ConfigError(f"--output {str(output)!r}: use a .parquet or .csv file name")


def datasets(args: argparse.Namespace) -> int:
    from xenonscale import datasets as registry

    if args.action == "list":
        for name in registry.names():
            info = registry.info(name)
            rows = f"{info.rows:,}" if info.rows else "?"
            print(f"{name:34s} {info.kind:12s} {rows:>10s}  {info.path}")
    elif args.action == "info":
        import dataclasses

        for key, value in dataclasses.asdict(registry.info(args.name)).items():
            print(f"{key:15s} {value}")
    else:
        print(registry.fetch(args.name))
    return 0


def elements(args: argparse.Namespace) -> int:
    from xenonscale.elements import PRESETS, load_table

    if args.action == "list":
        for name, text in PRESETS.items():
            print(f"{name:12s} {text}")
        return 0
    table = load_table(args.name)
    print(repr(table))
    if table.description:
        print(table.description)
    imputed = table.imputed.sum(axis=0)
    print(f"{'property':32s} {'unit':14s} {'imputed':>7s}  source")
    for i, prop in enumerate(table.properties):
        print(f"{prop:32s} {table.units[prop]:14s} {int(imputed[i]):7d}  {table.sources[prop]}")
    return 0


def demo(args: argparse.Namespace) -> int:
    from xenonscale.demo import run_demo

    run_demo(output_dir=Path(args.output), rows=args.rows, workers=args.workers, epochs=args.epochs)
    return 0
