"""``xenonscale ngram``: train, inspect and sample the n-gram chemical language model.

Examples
--------
::

    xenonscale ngram train dataset:moses_train -o moses.ngram --order 10 --augment 1 --workers 2
    xenonscale ngram train polymers.csv --column smiles -o polymers.ngram --order 8 --limit 5000
    xenonscale ngram train small.smi -o small.ngram --in-process
    xenonscale ngram info moses.ngram
    xenonscale ngram sample moses.ngram -n 10 --seed 1
    xenonscale ngram propose moses.ngram "CCOc1ccccc1" "CC(=O)N" --seed 1
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Group
from xenonscale.cli.inputs import ExistingPath
from xenonscale.cli.types import POSITIVE_INT
from xenonscale.errors import ConfigError

__all__ = ["ngram"]

_MODEL = ExistingPath("n-gram model folder")


@click.group(cls=Group)
def ngram() -> None:
    """n-gram SMILES language model for inverse design: train, info, sample, propose.

    An n-gram model of extended SMILES (ring and branch bookkeeping), counted
    on Dask workers and stored as JSON + Parquet (no pickle). `xenonscale
    design --ngram` uses it to propose molecules.
    """


@ngram.command("train")
@options.input_argument("source")
@options.output(required=True)
@options.order(default=10, show_default=True)
@options.column()
@click.option(
    "--augment",
    type=click.IntRange(min=0),
    default=None,
    help="random re-orderings counted per SMILES (RDKit, seeded; default: "
    "xenonscale.design's DEFAULT_AUGMENT)",
)
@options.workers()
@options.scheduler()
@click.option("--in-process", is_flag=True, help="count in this process (no Dask cluster)")
@click.option("--partitions", type=POSITIVE_INT, default=None, help="number of partitions")
@options.limit()
@options.seed(default=0, show_default=True)
@options.storage_options()
@options.no_progress()
def train(
    source,
    output,
    order,
    column,
    augment,
    workers,
    scheduler,
    in_process,
    partitions,
    limit,
    seed,
    storage_options,
    no_progress,
) -> int:
    """Count an n-gram model from the SMILES of SOURCE into the folder -o.

    SOURCE is a CSV/TSV/Parquet table (--column, default the 'smiles'-like
    one), a .smi file (gz too), an s3:// URL or dataset:NAME.
    """
    from xenonscale.design import train_ngram

    if in_process and scheduler:
        raise ConfigError("--in-process and --scheduler: give one of them")
    url, column = source.resolve(column)
    settings = {} if augment is None else {"augment": augment}
    start = time.perf_counter()
    model = train_ngram(
        url,
        order=order,
        client=False if in_process else None,
        workers=workers,
        scheduler=scheduler,
        partitions=partitions,
        seed=seed,
        progress=not no_progress,
        column=column,
        limit=limit,
        storage_options=storage_options,
        **settings,
    )
    elapsed = time.perf_counter() - start
    model.save(output)
    p = model.provenance
    click.echo(
        f"{output}: order {model.order}, {len(model.vocabulary)} tokens, "
        f"{model.n_contexts:,} contexts, {model.n_entries:,} entries from {p['smiles']:,} "
        f"SMILES ({p['bad']:,} skipped) in {elapsed:.1f} s "
        f"({p['smiles'] / max(elapsed, 1e-9):,.0f} SMILES/s)"
    )
    for row, smiles, reason in p.get("bad_examples", []):
        click.echo(f"  skipped row {row}: {smiles!r} ({reason})", err=True)
    return 0


@ngram.command("info")
@click.argument("model", type=_MODEL)
def info(model) -> int:
    """Print the header of the model in folder MODEL (JSON)."""
    from xenonscale.design import NGram

    NGram.load(model)  # validates the format and version
    header = json.loads((Path(model) / "ngram.json").read_text())
    header["vocabulary"] = f"{len(header['vocabulary'])} tokens: " + " ".join(header["vocabulary"])
    click.echo(json.dumps(header, indent=1))
    return 0


@ngram.command("sample")
@click.argument("model", type=_MODEL)
@click.option("-n", type=POSITIVE_INT, default=10, show_default=True, help="number of molecules")
@options.seed(default=0, show_default=True)
@click.option(
    "--stars", type=click.IntRange(min=0), default=None, help="'*' ends of each molecule (polymers)"
)
def sample(model, n, seed, stars) -> int:
    """Grow molecules from scratch."""
    import numpy as np

    from xenonscale.design import NGram

    for smiles in NGram.load(model).sample(n, np.random.default_rng(seed), stars=stars):
        click.echo(smiles)
    return 0


@ngram.command("propose")
@click.argument("model", type=_MODEL)
@click.argument("smiles", nargs=-1, required=True)
@options.seed(default=0, show_default=True)
@click.option(
    "--reorder-prob",
    type=click.FloatRange(0, 1),
    default=None,
    help="chance of re-ordering a parent before the proposal",
)
def propose(model, smiles, seed, reorder_prob) -> int:
    """One proposal for each parent SMILES."""
    import numpy as np

    from xenonscale.design import NGram

    loaded = NGram.load(model)
    if reorder_prob is not None:
        loaded.reorder_prob = reorder_prob
    for parent, child in zip(
        smiles, loaded.propose(list(smiles), np.random.default_rng(seed)), strict=True
    ):
        click.echo(f"{parent}\t{child}")
    return 0
