"""Handlers of the ``xenonscale`` subcommands (argument parsing lives in ``main``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path, PurePosixPath

import pandas as pd

from xenonscale.errors import ConfigError

__all__ = [
    "TABLE_SUFFIXES",
    "datasets",
    "demo",
    "elements",
    "featurize",
    "read_inputs",
    "write_table",
]

#: ``--output`` names written in-process as one table rather than a store.
TABLE_SUFFIXES = (".parquet", ".csv")


def read_inputs(source: str, column: str | None) -> tuple[pd.DataFrame, str]:
    """Read ``dataset:NAME`` or a CSV/TSV/Parquet/JSON-lines file; return (frame, column)."""
    from xenonscale import datasets as registry

    if source.startswith("dataset:"):
        name = source.split(":", 1)[1]
        frame = registry.load(name)
        column = column or registry.info(name).input_column
    else:
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"input {source!r} does not exist: give a file or dataset:NAME")
        suffixes = "".join(path.suffixes).lower()
        if ".parquet" in suffixes:
            frame = pd.read_parquet(path)
        elif ".jsonl" in suffixes or ".ndjson" in suffixes:
            frame = pd.read_json(path, lines=True)
        elif ".tsv" in suffixes:
            frame = pd.read_csv(path, sep="\t")
        else:
            frame = pd.read_csv(path)
    if column is None:
        column = "formula" if "formula" in frame.columns else frame.columns[0]
    if column not in frame.columns:
        raise ConfigError(
            f"--column {column!r} is not in {source!r}; "
            f"columns: {', '.join(map(str, frame.columns))}"
        )
    return frame, column


def write_table(features: pd.DataFrame, output: Path) -> None:
    """Write ``.parquet`` (default) or ``.csv``; parent folders are created."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        features.to_csv(output, index=False)
    elif output.suffix.lower() == ".parquet":
        features.to_parquet(output, index=False)
    else:
        raise ConfigError(f"--output {str(output)!r}: use a .parquet or .csv file name")


def featurize(args: argparse.Namespace) -> int:
    """``xenonscale featurize``: a store through the engine, or an in-process table."""
    suffix = PurePosixPath(args.output.rstrip("/")).suffix.lower()
    if suffix in TABLE_SUFFIXES:
        return _featurize_table(args)
    if suffix not in ("", ".zarr"):
        raise ConfigError(
            f"--output {args.output!r}: name a Zarr store (a folder or URL ending in .zarr "
            f"or with no suffix) or a table ({' or '.join(TABLE_SUFFIXES)})"
        )
    return _featurize_store(args)


def _featurize_store(args: argparse.Namespace) -> int:
    import json

    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    spec = FeaturizerSpec.parse(
        args.kind, args.featurizers, elements=args.elements, on_error=args.on_error
    )
    options = json.loads(args.storage_options) if args.storage_options else None
    source = args.input
    if source.startswith("dataset:"):
        from xenonscale import datasets as registry

        name = source.split(":", 1)[1]
        source, args.column = (
            str(registry.fetch(name)),
            args.column or registry.info(name).input_column,
        )
    spec.build()  # bad arguments fail before a cluster starts
    client = get_client(args.scheduler, workers=args.workers, quiet=args.no_progress)
    try:
        summary = featurize_to_store(
            source,
            args.output,
            spec,
            column=args.column,
            client=client,
            chunk_rows=args.chunk_rows,
            compression=args.compression,
            partition_rows=args.partition_rows,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            storage_options=options,
            source_options={"storage_options": options} if options else None,
        )
    finally:
        close_client(client)
    print(
        f"{summary.rows:,} rows → {summary.featurized:,} featurized + {summary.errors:,} errors "
        f"({summary.partitions} partitions, {summary.resumed_partitions} already done) in "
        f"{summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) → {summary.store}"
    )
    return 0


def _featurize_table(args: argparse.Namespace) -> int:
    from xenonscale.featurize.batches import featurize_in_batches
    from xenonscale.featurize.registry import FeaturizerSpec

    output = Path(args.output)
    frame, column = read_inputs(args.input, args.column)
    featurizer = FeaturizerSpec.parse(
        args.kind, args.featurizers, elements=args.elements, on_error=args.on_error
    ).build()
    started = time.perf_counter()
    result = featurize_in_batches(
        featurizer,
        frame[column].tolist(),
        batch_rows=args.batch_rows,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - started
    table = _feature_table(frame, column, featurizer.labels, result)
    write_table(table, output)
    errors_path = output.with_suffix(".errors.csv")
    _errors(result).to_csv(errors_path, index=False)
    print(
        f"{len(frame):,} rows → {int(result.ok.sum()):,} featurized, {len(result.errors):,} "
        f"errors ({errors_path}); {len(featurizer.labels)} features; {seconds:.2f} s "
        f"({len(frame) / max(seconds, 1e-9):,.0f} rows/s) → {output}"
    )
    return 0


def _feature_table(frame, column, labels, result) -> pd.DataFrame:
    extras = frame.reset_index(drop=True)
    features = pd.DataFrame(result.values, columns=labels)
    features.insert(0, "ok", result.ok)
    return pd.concat([extras, features], axis=1)


def _errors(result) -> pd.DataFrame:
    from xenonscale.featurize import errors_frame

    return errors_frame(result.errors)


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
