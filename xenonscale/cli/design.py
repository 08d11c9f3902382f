"""``xenonscale design``: iQSPR inverse design, many SMC chains on Dask, with plots.

Examples
--------
::

    xenonscale design iqspr_pubchemqc.csv --column SMILES \\
        --target-range "E=0:200" --target-range "HOMO-LUMO gap=:3" \\
        --samples 25 --steps 50 --chains 8 --workers 2 --seed 0 -o design/run.parquet
    xenonscale design data.csv --column smiles --target-range "gap=:3" \\
        --ngram moses.ngram --scheduler tcp://10.0.0.5:8786 -o run.parquet --no-plots

Writes ``OUT.parquet`` (every step of every chain), ``OUT.json`` (summary:
chain status, figures of the final populations, settings) and, unless
``--no-plots``, ``OUT_property_space.png`` and ``OUT_trajectory.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.inputs import ExistingPath
from xenonscale.cli.types import POSITIVE_INT
from xenonscale.errors import ConfigError

__all__ = ["design"]


class TargetRange(click.ParamType):
    """``PROP=LOW:HIGH`` (either end optional), checked as the design library parses it."""

    name = "range"

    def get_metavar(self, param, ctx=None) -> str:
        return "PROP=LOW:HIGH"

    def convert(self, value, param, ctx) -> str:
        from xenonscale.design import parse_targets
        from xenonscale.errors import XenonscaleError

        try:
            parse_targets([value])
        except XenonscaleError as exc:
            self.fail(str(exc), param, ctx)
        return value


def _read(path: str, text: str, smiles_column: str, columns: list[str]):
    from xenonscale.cli.tables import read_frame

    frame = read_frame(path, "DATA")
    missing = [c for c in [smiles_column, *columns] if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"DATA {text!r} has no column(s) {missing}; it has {list(frame.columns)} "
            "(--column names the SMILES, --target-range names property columns)"
        )
    frame = frame[frame[smiles_column].notna()].reset_index(drop=True)
    frame[smiles_column] = frame[smiles_column].astype(str)
    return frame


@click.command(cls=Command)
@options.input_argument("data")
@options.column()
@click.option(
    "--target-range",
    "targets",
    type=TargetRange(),
    multiple=True,
    required=True,
    help="target range of a property column of DATA, e.g. 'E=0:200' or "
    "'HOMO-LUMO gap=:3'; repeat for several",
)
@click.option(
    "--ngram",
    type=ExistingPath("n-gram model folder"),
    default=None,
    help="n-gram model folder (xenonscale ngram train); default: train one on DATA",
)
@options.order(default=10, show_default=True)
@click.option("--save-ngram", default=None, metavar="PATH", help="keep the trained n-gram here")
@click.option(
    "--samples",
    type=POSITIVE_INT,
    default=25,
    show_default=True,
    help="population size of each chain",
)
@click.option(
    "--steps",
    type=POSITIVE_INT,
    default=None,
    help="SMC steps (default 50: XenonPy's tutorial schedule; others interpolate it)",
)
@click.option(
    "--chains", type=POSITIVE_INT, default=4, show_default=True, help="independent chains"
)
@options.workers()
@options.scheduler()
@options.seed(default=0, show_default=True)
@click.option(
    "--metropolis/--no-metropolis",
    default=True,
    show_default=True,
    help="accept a proposal with probability min(1, L(child)^β / L(parent)^β), else "
    "keep the parent; --no-metropolis: every proposal replaces its parent (XenonPy)",
)
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@options.no_progress()
@options.output(required=True)
def design(
    data,
    column,
    targets,
    ngram,
    order,
    save_ngram,
    samples,
    steps,
    chains,
    workers,
    scheduler,
    seed,
    metropolis,
    no_plots,
    no_progress,
    output,
) -> int:
    """Inverse molecular design (iQSPR): SMC chains on Dask toward property targets.

    Fits a forward model per target property on DATA (BayesianRidge on ECFP
    counts + MACCS), trains an n-gram SMILES model on DATA's SMILES (or loads
    --ngram), and runs --chains annealed SMC chains of --samples molecules
    over --steps steps on Dask. DATA is a CSV or Parquet table of SMILES and
    properties, or dataset:NAME. -o is the Parquet file of every step of
    every chain; X.json beside it summarizes. Exit status 1 when a chain failed.
    """
    from xenonscale.cluster import close_client, get_client
    from xenonscale.design import Likelihood, NGram, parse_targets, train_ngram
    from xenonscale.design import design as run_design

    out = Path(output)
    if out.suffix != ".parquet":
        raise ConfigError(f"-o {output!r}: the output is a Parquet file, e.g. run.parquet")
    if column is None and data.dataset is None:
        raise ConfigError(f"--column: name the SMILES column of DATA {data.text!r}")
    targets = parse_targets(list(targets))
    names = [t.name for t in targets]
    path, column = data.resolve(column)
    frame = _read(path, data.text, column, names)
    smiles = frame[column].tolist()
    progress = not no_progress
    started = time.perf_counter()
    client = get_client(scheduler, workers=workers, quiet=not progress)
    try:
        if ngram:
            model = NGram.load(ngram)
            ngram_info = {"path": ngram}
        else:
            tick = time.perf_counter()
            model = train_ngram(smiles, order=order, client=client, seed=seed, progress=progress)
            ngram_info = {
                "trained_on": data.text,
                "order": order,
                "seconds": round(time.perf_counter() - tick, 2),
            }
            if save_ngram:
                model.save(save_ngram)
                ngram_info["path"] = save_ngram
        tick = time.perf_counter()
        likelihood = Likelihood(targets).fit(smiles, frame[names])
        fit_seconds = time.perf_counter() - tick
        result = run_design(
            likelihood,
            model,
            out,
            chains=chains,
            samples=samples,
            steps=steps,
            seed=seed,
            metropolis=metropolis,
            reference=smiles,
            client=client,
            progress=progress,
        )
    finally:
        close_client(client)
    summary = {
        **result.summary,
        "data": data.text,
        "smiles_column": column,
        "targets": [str(t) for t in targets],
        "invalid_training_smiles": likelihood.n_invalid_smiles_,
        "forward_model_fit_seconds": round(fit_seconds, 2),
        "ngram": ngram_info,
        "total_seconds": round(time.perf_counter() - started, 2),
        "plots": {},
    }
    if not no_plots:
        summary["plots"] = _plots(result, targets, frame[names], out)
    result.summary_path.write_text(json.dumps(summary, indent=1, allow_nan=False, default=str))
    m = result.metrics
    if m:
        click.echo(
            f"final populations: {m['n']} molecules, valid {m['validity']:.1%}, unique "
            f"{m['uniqueness']:.1%}, novel {m['novelty']:.1%}, in target {m['in_target']:.1%}"
        )
    click.echo(
        f"{result.rows} rows in {result.seconds:.1f} s → {out}; summary {result.summary_path}"
    )
    for status in result.failed:
        click.echo(
            f"chain {status.chain} failed at step {status.failed_step}: {status.error}", err=True
        )
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
