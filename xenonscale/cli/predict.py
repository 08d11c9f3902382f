"""``xenonscale predict``: zoo models over a feature store or any source, as Dask tasks.

A store's own features (or composition slots, or graph rows) feed the models
that were trained on them, and the predictions go into its ``predictions/``
group; any other input (a CSV of formulas, a CIF folder, ``dataset:NAME``,
an ``optimade:`` query) is featurized on the workers with each model's own
featurizer and predicted into a Parquet folder (``-o OUT.parquet``). See
:mod:`xenonscale.workflows.prediction` for the layout and the rules.

``--domain`` adds each row's distance to the model's training data
(``<model>:domain_distance``, from the similarity index of the store the model
was trained on: ``xenonscale index STORE`` first) and prints the scale to read
it on: the training rows' own nearest-neighbour distances.

Examples
--------
::

    xenonscale predict oqmd-hf oqmd.zarr --workers 2
    xenonscale predict gap-ens@3,gap-mlp new-formulas.csv -o gap.parquet
    xenonscale index gap.zarr && xenonscale predict gap-mlp new.csv -o new.parquet --domain
    xenonscale predict oqmd-attention mp.zarr -o mp-hf.parquet --refeaturize \\
        --zoo postgresql+psycopg://zoo@db/zoo --artifacts s3://models/zoo \\
        --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.transfer import ModelRefs

__all__ = ["predict"]


@click.command(cls=Command)
@click.argument("models", type=ModelRefs())
@options.input_argument()
@options.output()
@options.column()
@options.refeaturize()
@click.option(
    "--return-std/--no-std",
    "return_std",
    default=None,
    help="add <target>_std, the members' spread (default: for ensembles only; "
    "--return-std fails on a single network)",
)
@click.option(
    "--domain",
    is_flag=True,
    help="add <model>:domain_distance, each row's distance to the nearest row of the "
    "model's training store in that store's similarity index (run xenonscale index "
    "STORE first; feature models: MLPs and their ensembles), and print the training "
    "rows' nearest-neighbour distance quantiles: a row beyond the 99 % one is out of domain",
)
@options.partition_rows()
@options.workers()
@options.scheduler()
@options.zoo_options
@options.no_progress()
def predict(
    models,
    input,
    output,
    column,
    refeaturize,
    return_std,
    domain,
    partition_rows,
    workers,
    scheduler,
    zoo,
    artifacts,
    storage_options,
    no_progress,
) -> int:
    """Predict INPUT with the zoo models REF,... (each NAME or NAME@VERSION).

    INPUT is a feature store (predictions go into its predictions/ group, or
    into -o OUT.parquet), or any source xenonscale featurize reads (a file,
    folder, glob, URL, dataset:NAME or optimade: query; -o OUT.parquet is then
    required). Rerunning the same command resumes an interrupted job.
    --domain adds each row's distance to the model's training data (its
    training store's similarity index: xenonscale index STORE first).
    --storage-options apply to INPUT, -o and the zoo's artifacts.
    """
    from xenonscale.workflows.prediction import predict_to_store

    url, column = input.resolve(column)
    with options.open_zoo(zoo, artifacts, storage_options) as opened:
        summary = predict_to_store(
            list(models),
            url,
            output,
            zoo=opened,
            refeaturize=refeaturize,
            return_std=return_std,
            domain=domain,
            partition_rows=partition_rows,
            progress=not no_progress,
            storage_options=storage_options,
            source_options={"column": column} if column else None,
            workers=workers,
            scheduler=scheduler,
        )
    click.echo(
        f"{summary.rows:,} rows → {summary.predicted:,} predicted + {summary.errors:,} errors "
        f"by {', '.join(summary.models)} ({summary.partitions} partitions, "
        f"{summary.resumed_partitions} already done) in {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s) → {summary.output}"
    )
    for label, record in summary.domain.items():
        click.echo(_domain_line(label, record))
    return 0


def _domain_line(label: str, record: dict) -> str:
    """How to read a model's ``domain_distance``: its training rows' own scale."""
    reference = record.get("reference") or {}
    scale = ", ".join(
        f"{name} {reference[key]:.3g}"
        for key, name in (("0.5", "median"), ("0.99", "99 %"), ("1.0", "max"))
        if key in reference
    )
    return (
        f"{label}:domain_distance: distance to the {record['rows']:,} rows of {record['store']} "
        f"({record['metric']}); their nearest-neighbour distances: {scale or 'unknown'} "
        "(beyond the 99 % one: out of domain)"
    )
