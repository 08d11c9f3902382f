"""``xenonscale featurize``: a source into a Zarr feature store, or into one table.

Both outputs share everything but the writer: every flag is checked while
the command line is parsed, then the featurizer is built and the source
opened (:func:`xenonscale.sources.open_source` checks ``--column`` against the
header) before any cluster starts. A store goes through the Dask engine; a
``.parquet``/``.csv`` table is written in this process from the same source,
through :func:`~xenonscale.featurize.batches.featurize_in_batches` under the
same per-record limits, so both see the same rows and make the same error rows.

Examples
--------
::

    xenonscale featurize dataset:matbench_expt_gap -o gap.parquet --elements xenonpy58
    xenonscale featurize oqmd.csv.gz -o oqmd.zarr --column formula --workers 2
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.inputs import FeaturizerNames
from xenonscale.cli.limits import limit_options, record_limits_from
from xenonscale.cli.tables import TABLE_PARTITION_ROWS, TABLE_SUFFIXES
from xenonscale.cli.types import POSITIVE_INT, Choice
from xenonscale.errors import ConfigError, FeaturizerError

__all__ = ["featurize"]

COMPRESSIONS = Choice("xenonscale.store.writer:COMPRESSIONS")
FEATURE_ENCODINGS = Choice(
    ["auto", "float32"], library="xenonscale.engine.run:FEATURE_ENCODING_CHOICES"
)
ELEMENTS = Choice("xenonscale.elements.presets:PRESETS", case_sensitive=False)
ON_ERROR = Choice(["record", "raise"])


@dataclass
class _Job:
    """What both paths need, prepared before any cluster starts."""

    spec: object  # FeaturizerSpec
    featurizer: object
    source: object  # Source


@click.command(cls=Command)
@options.input_argument()
@options.output(required=True)
@options.kind(default="composition", show_default=True)
@options.column()
@click.option(
    "--featurizers",
    type=FeaturizerNames(),
    default="classic",
    show_default=True,
    help=(
        "registered featurizer names of the kind, comma-separated, or a family: frozen:NAME@V, "
        "dscribe:SOAP(species=[...]), matminer:CALL, graph:OPTIONS"
    ),
)
@click.option("--elements", type=ELEMENTS, default=None, help="element table preset")
@options.workers()
@options.scheduler()
@click.option(
    "--chunk-rows", type=POSITIVE_INT, default=10_000, show_default=True, help="rows per Zarr chunk"
)
@options.partition_rows()
@click.option(
    "--compression",
    type=COMPRESSIONS,
    default="lz4",
    show_default=True,
    help="store codec: lz4 (fast), zstd (smaller) or none",
)
@click.option(
    "--feature-encoding",
    type=FEATURE_ENCODINGS,
    default="auto",
    show_default=True,
    help="store: auto keeps 0/1 and count fingerprints as small integers (0 on error rows), "
    "float32 keeps float32 always",
)
@click.option(
    "--on-error",
    type=ON_ERROR,
    default="record",
    show_default=True,
    help="record: a bad record becomes an error row; raise: stop at it",
)
@click.option(
    "--overwrite", is_flag=True, help="replace a store built with another spec (or a foreign table)"
)
@options.storage_options()
@options.response_fields()
@options.auth_env()
@click.option(
    "--batch-rows",
    type=POSITIVE_INT,
    default=8192,
    show_default=True,
    help="rows per featurizer batch (table output)",
)
@options.no_progress()
@limit_options
def featurize(
    input,
    output,
    kind,
    column,
    featurizers,
    elements,
    workers,
    scheduler,
    chunk_rows,
    partition_rows,
    compression,
    feature_encoding,
    on_error,
    overwrite,
    storage_options,
    response_fields,
    auth_env,
    batch_rows,
    no_progress,
    **limits,
) -> int:
    """Featurize INPUT into a Zarr feature store, or into one .parquet/.csv table.

    INPUT is a CSV/TSV/Parquet/JSONL/JSON file, a CIF/POSCAR folder or glob, a
    SMILES/SDF file, an extended XYZ file (.xyz/.extxyz, one record per frame) or
    an ASE database (.db, or ase:PATH.json) (gz/bz2/xz except databases; local,
    file:// or s3://), dataset:NAME, or an OPTIMADE query:
    optimade:URL-OR-NAME?filter=... (xenonscale databases list).
    -o is a store (a folder or URL with no suffix or .zarr), written by Dask
    workers, or a table (.parquet or .csv, with X.errors.csv beside it), written
    in this process.
    """
    suffix = PurePosixPath(output.rstrip("/")).suffix.lower()
    table = suffix in TABLE_SUFFIXES
    if not table and suffix not in ("", ".zarr"):
        raise ConfigError(
            f"--output {output!r}: name a Zarr store (a folder or URL ending in .zarr "
            f"or with no suffix) or a table ({' or '.join(TABLE_SUFFIXES)})"
        )
    if table:
        from xenonscale.cli.tables import check_table_output

        path = check_table_output(output, overwrite)
    else:
        _check_store_output(output)
    spec_limits = record_limits_from(limits)
    web = {"response_fields": response_fields, "auth_env": auth_env}
    job = _prepare(
        input, column, kind, featurizers, elements, on_error, spec_limits, storage_options, web
    )
    if table:
        return _featurize_table(job, path, partition_rows, batch_rows, not no_progress)
    return _featurize_store(
        job,
        output,
        storage_options,
        overwrite,
        workers,
        scheduler,
        chunk_rows,
        compression,
        partition_rows,
        no_progress,
        feature_encoding,
    )


def _prepare(
    input, column, kind, names, elements, on_error, limits, storage_options, web=None
) -> _Job:
    """Build the featurizer and open the source (no cluster yet)."""
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.sources import open_source

    spec = FeaturizerSpec.parse(kind, names, elements=elements, on_error=on_error, limits=limits)
    featurizer = spec.build()  # bad featurizer arguments fail here,
    featurizer.labels  # noqa: B018 - and missing zoo models (frozen:) here
    url, column = input.resolve(column)
    source = open_source(
        url,
        column=column,
        kind=spec.kind,
        storage_options=storage_options,
        **web_options(url, **(web or {})),
    )
    return _Job(spec, featurizer, source)


def web_options(url: str, *, response_fields=None, auth_env=None) -> dict:
    """``--response-fields`` / ``--auth-env`` as source options: only for optimade: inputs."""
    given = {"response_fields": response_fields, "auth_env": auth_env}
    given = {name: value for name, value in given.items() if value}
    if given and not str(url).startswith("optimade:"):
        flags = " and ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(f"{flags} apply to optimade: inputs only, not {str(url)!r}: leave out")
    return given


def _check_store_output(value: str) -> None:
    from xenonscale.cli.tables import check_parents, local_path

    path = local_path(value)
    if path is not None:
        check_parents("--output", value, path)
        if path.exists() and not path.is_dir():
            raise ConfigError(
                f"--output {value!r} is an existing file, not a store folder: choose another "
                "name (a Zarr store is a folder) or remove the file"
            )


def _featurize_store(
    job,
    output,
    storage_options,
    overwrite,
    workers,
    scheduler,
    chunk_rows,
    compression,
    partition_rows,
    no_progress,
    feature_encoding="auto",
) -> int:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import check_output, featurize_to_store
    from xenonscale.store.layout import StoreLocation

    # -o into a folder that is not a store is refused before any cluster starts
    check_output(StoreLocation(output, storage_options), overwrite=overwrite)
    client = get_client(scheduler, workers=workers, quiet=no_progress)
    try:
        summary = featurize_to_store(
            job.source,
            output,
            job.spec,
            column=job.source.column,
            client=client,
            chunk_rows=chunk_rows,
            compression=compression,
            partition_rows=partition_rows,
            overwrite=overwrite,
            progress=not no_progress,
            storage_options=storage_options,
            feature_encoding=feature_encoding,
        )
    finally:
        close_client(client)
    click.echo(
        f"{summary.rows:,} rows → {summary.featurized:,} featurized + {summary.errors:,} errors "
        f"({summary.partitions} partitions, {summary.resumed_partitions} already done) in "
        f"{summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) → {summary.store}"
    )
    return 0


def _featurize_table(job, output: Path, partition_rows, batch_rows, progress) -> int:
    import pandas as pd

    from xenonscale.cli.tables import (
        errors_path,
        input_table,
        read_source,
        write_atomically,
        write_table,
    )
    from xenonscale.featurize import errors_frame
    from xenonscale.featurize.batches import featurize_in_batches
    from xenonscale.limits import record_limits

    started = time.perf_counter()
    frame = read_source(job.source, partition_rows or TABLE_PARTITION_ROWS)
    labels = list(job.featurizer.labels)
    inputs = input_table(frame, job.source, labels)  # a name clash fails before any work
    with record_limits(job.spec.limits):
        result = featurize_in_batches(
            job.featurizer, frame["input"].tolist(), batch_rows=batch_rows, progress=progress
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
    errors = errors_path(output)
    write_table(table, output, metadata=metadata)
    write_atomically(errors, lambda tmp: errors_frame(result.errors).to_csv(tmp, index=False))
    click.echo(
        f"{rows:,} rows → {ok:,} featurized, {len(result.errors):,} "
        f"errors ({errors}); {len(labels)} features; {seconds:.2f} s "
        f"({rows / max(seconds, 1e-9):,.0f} rows/s) → {output}"
    )
    return 0
