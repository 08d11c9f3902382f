"""``xenonscale ngram``: train, inspect and sample the n-gram chemical language model.

Examples
--------
::

    xenonscale ngram train ../shared/data/molecules/moses_train.csv.gz -o moses.ngram \\
        --order 10 --augment 1 --workers 2
    xenonscale ngram train polymers.csv --column smiles -o polymers.ngram --order 8 --limit 5000
    xenonscale ngram info moses.ngram
    xenonscale ngram sample moses.ngram -n 10 --seed 1
    xenonscale ngram propose moses.ngram "CCOc1ccccc1" "CC(=O)N" --seed 1

``add_parser(sub)`` adds the command and sets ``handler=run``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from xenonscale.cli.args import workers_or_zero
from xenonscale.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``ngram`` command (actions ``train``, ``info``, ``sample``, ``propose``)."""
    from xenonscale.design.ngram_training import DEFAULT_AUGMENT

    parser = sub.add_parser(
        "ngram",
        help="n-gram SMILES language model for inverse design: train, info, sample, propose",
        description="An n-gram model of extended SMILES (ring and branch bookkeeping), counted "
        "on Dask workers and stored as JSON + Parquet (no pickle). `xenonscale design --ngram` "
        "uses it to propose molecules.",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="count an n-gram model from SMILES")
    train.add_argument(
        "source", help="SMILES source: CSV/TSV/Parquet (column), .smi, .csv.gz, s3:// URL"
    )
    train.add_argument("-o", "--output", required=True, help="model directory to write")
    train.add_argument("--order", type=int, default=10, help="longest context in tokens")
    train.add_argument("--column", default=None, help="SMILES column (default: 'smiles'-like)")
    train.add_argument(
        "--augment",
        type=int,
        default=DEFAULT_AUGMENT,
        help="random re-orderings counted per SMILES (RDKit, seeded)",
    )
    train.add_argument(
        "--workers",
        type=workers_or_zero,
        default=None,
        help="embedded cluster workers (0: this process)",
    )
    train.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://...)")
    train.add_argument("--partitions", type=int, default=None, help="number of partitions")
    train.add_argument("--limit", type=int, default=None, help="use the first N SMILES only")
    train.add_argument("--seed", type=int, default=0, help="seed of the re-orderings")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    info = actions.add_parser("info", help="print a model's header (JSON)")
    info.add_argument("model", help="model directory")
    sample = actions.add_parser("sample", help="grow molecules from scratch")
    sample.add_argument("model", help="model directory")
    sample.add_argument("-n", type=int, default=10, help="number of molecules")
    sample.add_argument("--seed", type=int, default=0, help="random seed")
    sample.add_argument("--stars", type=int, default=None, help="'*' ends per molecule")
    propose = actions.add_parser("propose", help="one proposal per SMILES given")
    propose.add_argument("model", help="model directory")
    propose.add_argument("smiles", nargs="+", help="parent SMILES")
    propose.add_argument("--seed", type=int, default=0, help="random seed")
    propose.add_argument("--reorder-prob", type=float, default=None, help="re-ordering chance")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run one ``ngram`` action; returns the exit status."""
    import numpy as np

    from xenonscale.design import NGram, train_ngram

    if args.action == "train":
        if args.workers is not None and args.workers < 0:
            raise ConfigError(f"--workers {args.workers!r}: use 0 (this process) or more")
        start = time.perf_counter()
        model = train_ngram(
            args.source,
            order=args.order,
            augment=args.augment,
            client=False if args.workers == 0 and not args.scheduler else None,
            workers=args.workers or None,
            scheduler=args.scheduler,
            partitions=args.partitions,
            seed=args.seed,
            progress=not args.no_progress,
            column=args.column,
            limit=args.limit,
        )
        elapsed = time.perf_counter() - start
        model.save(args.output)
        p = model.provenance
        print(
            f"{args.output}: order {model.order}, {len(model.vocabulary)} tokens, "
            f"{model.n_contexts:,} contexts, {model.n_entries:,} entries from {p['smiles']:,} "
            f"SMILES ({p['bad']:,} skipped) in {elapsed:.1f} s "
            f"({p['smiles'] / max(elapsed, 1e-9):,.0f} SMILES/s)"
        )
        for row, smiles, reason in p.get("bad_examples", []):
            print(f"  skipped row {row}: {smiles!r} ({reason})", file=sys.stderr)
        return 0
    if args.action == "info":
        from pathlib import Path

        model = NGram.load(args.model)  # validates the format and version
        header = json.loads((Path(args.model) / "ngram.json").read_text())
        header["vocabulary"] = f"{len(header['vocabulary'])} tokens: " + " ".join(
            header["vocabulary"]
        )
        print(json.dumps(header, indent=1))
        del model
        return 0
    model = NGram.load(args.model)
    rng = np.random.default_rng(args.seed)
    if args.action == "sample":
        for smiles in model.sample(args.n, rng, stars=args.stars):
            print(smiles)
        return 0
    if args.reorder_prob is not None:
        model.reorder_prob = args.reorder_prob
    for parent, child in zip(args.smiles, model.propose(args.smiles, rng), strict=True):
        print(f"{parent}\t{child}")
    return 0
