"""``xenonscale design``: iQSPR inverse design, many SMC chains on Dask, with plots.

Examples
--------
::

    xenonscale design --data iqspr_pubchemqc.csv --smiles-column SMILES \\
        --target "E=0:200" --target "HOMO-LUMO gap=:3" \\
        --samples 25 --steps 50 --chains 8 --workers 2 --seed 0 -o design/run.parquet
    xenonscale design --data data.csv --smiles-column smiles --target "gap=:3" \\
        --ngram moses.ngram --scheduler tcp://10.0.0.5:8786 -o run.parquet --no-plots

Writes ``OUT.parquet`` (every step of every chain), ``OUT.json`` (summary:
chain status, figures of the final populations, settings) and, unless
``--no-plots``, ``OUT_property_space.png`` and ``OUT_trajectory.png``.
``add_parser(sub)`` adds the command and sets ``handler=run``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xenonscale.cli.args import read_frame, workers
from xenonscale.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``design`` command."""
    parser = sub.add_parser(
        "design",
        help="inverse molecular design (iQSPR): SMC chains on Dask toward property targets",
        description="Fits a forward model per target property on --data (BayesianRidge on "
        "ECFP counts + MACCS), trains an n-gram SMILES model on --data's SMILES (or loads "
        "--ngram), and runs --chains annealed SMC chains of --samples molecules over --steps "
        "steps on Dask. Every step of every chain goes to OUT.parquet; OUT.json summarizes.",
    )
    parser.add_argument("--data", required=True, help="CSV (or .parquet) of SMILES and properties")
    parser.add_argument("--smiles-column", required=True, help="SMILES column of --data")
    parser.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="PROP=LOW:HIGH",
        help="target range of a property column (either end optional), e.g. 'E=0:200', "
        "'HOMO-LUMO gap=:3'; repeat for several",
    )
    parser.add_argument("--ngram", default=None, help="n-gram model directory (xenonscale ngram)")
    parser.add_argument("--order", type=int, default=10, help="n-gram order when training one")
    parser.add_argument("--save-ngram", default=None, help="keep the trained n-gram here")
    parser.add_argument("--samples", type=int, default=25, help="population size per chain")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="SMC steps (default 50: XenonPy's tutorial schedule; other values interpolate it)",
    )
    parser.add_argument("--chains", type=int, default=4, help="independent chains")
    parser.add_argument("--workers", type=workers, default=None, help="embedded cluster workers")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://...)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the chains and the n-gram")
    parser.add_argument(
        "--metropolis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="accept a proposal with probability min(1, L(child)^β / L(parent)^β), else keep "
        "the parent (default); --no-metropolis: every proposal replaces its parent, as XenonPy",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("-o", "--output", required=True, help="output Parquet path")
    parser.set_defaults(handler=run)
    return parser


def _read(path: str, smiles_column: str, columns: list[str]):
    frame = read_frame(path, "--data")
    missing = [c for c in [smiles_column, *columns] if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"--data {path!r} has no column(s) {missing}; it has {list(frame.columns)} "
            "(target names must be property columns)"
        )
    frame = frame[frame[smiles_column].notna()].reset_index(drop=True)
    frame[smiles_column] = frame[smiles_column].astype(str)
    return frame


def run(args: argparse.Namespace) -> int:
    """Run the ``design`` command; returns 0, or 1 when a chain failed."""
    from xenonscale.cluster import close_client, get_client
    from xenonscale.design import Likelihood, NGram, design, parse_targets, train_ngram

    output = Path(args.output)
    if output.suffix != ".parquet":
        raise ConfigError(f"-o {args.output!r}: the output is a Parquet file, e.g. run.parquet")
    for name in ("samples", "chains", "order"):
        value = getattr(args, name)
        if value < 1:
            raise ConfigError(f"--{name} {value}: use a positive number")
    targets = parse_targets(args.target)
    names = [t.name for t in targets]
    frame = _read(args.data, args.smiles_column, names)
    smiles = frame[args.smiles_column].tolist()
    progress = not args.no_progress
    started = time.perf_counter()
    client = get_client(args.scheduler, workers=args.workers, quiet=not progress)
    try:
        if args.ngram:
            ngram = NGram.load(args.ngram)
            ngram_info = {"path": args.ngram}
        else:
            tick = time.perf_counter()
            ngram = train_ngram(
                smiles, order=args.order, client=client, seed=args.seed, progress=progress
            )
            ngram_info = {
                "trained_on": args.data,
                "order": args.order,
                "seconds": round(time.perf_counter() - tick, 2),
            }
            if args.save_ngram:
                ngram.save(args.save_ngram)
                ngram_info["path"] = args.save_ngram
        tick = time.perf_counter()
        likelihood = Likelihood(targets).fit(smiles, frame[names])
        fit_seconds = time.perf_counter() - tick
        result = design(
            likelihood,
            ngram,
            output,
            chains=args.chains,
            samples=args.samples,
            steps=args.steps,
            seed=args.seed,
            metropolis=args.metropolis,
            reference=smiles,
            client=client,
            progress=progress,
        )
    finally:
        close_client(client)
    summary = {
        **result.summary,
        "data": args.data,
        "smiles_column": args.smiles_column,
        "targets": [str(t) for t in targets],
        "invalid_training_smiles": likelihood.n_invalid_smiles_,
        "forward_model_fit_seconds": round(fit_seconds, 2),
        "ngram": ngram_info,
        "total_seconds": round(time.perf_counter() - started, 2),
        "plots": {},
    }
    if not args.no_plots:
        summary["plots"] = _plots(result, targets, frame[names], output)
    result.summary_path.write_text(json.dumps(summary, indent=1, allow_nan=False, default=str))
    m = result.metrics
    if m:
        print(
            f"final populations: {m['n']} molecules, valid {m['validity']:.1%}, unique "
            f"{m['uniqueness']:.1%}, novel {m['novelty']:.1%}, in target {m['in_target']:.1%}"
        )
    print(f"{result.rows} rows in {result.seconds:.1f} s → {output}; summary {result.summary_path}")
    for status in result.failed:
        print(f"chain {status.chain} failed at step {status.failed_step}: {status.error}",
              file=sys.stderr)  # fmt: skip
    return 1 if result.failed else 0


def _plots(result, targets, reference, output: Path) -> dict[str, str]:
    from xenonscale.viz.design import property_space_figure, trajectory_figure

    frame = result.frame()
    if not len(frame):
        return {}
    stem = output.with_suffix("")
    plots = {}
    title = ", ".join(str(t) for t in targets)
    path = Path(f"{stem}_property_space.png")
    property_space_figure(frame, targets, reference=reference, title=title).savefig(path, dpi=110)
    plots["property_space"] = path.name
    path = Path(f"{stem}_trajectory.png")
    trajectory_figure(frame, title=title).savefig(path, dpi=110)
    plots["trajectory"] = path.name
    return plots
