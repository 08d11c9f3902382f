"""``xenonscale screen``: predict a population with zoo models, keep what meets the targets.

Examples
--------
::

    xenonscale screen mp-gap,mp-e-form \\
        "enumerate:compositions?elements=Li,Fe,Mn,P,O&max_atoms=12&charge_balanced=true" \\
        --target-range "target=1:2" --target-range "e_form=:0" \\
        --pareto gap:max --pareto e_form:min --top 200 --workers 2 -o screen/lfmpo.parquet

Writes ``OUT`` (the kept candidates, ranked), ``OUT.json`` (counts, targets,
where each standard deviation came from), the predictions of the whole
population in ``OUT_predictions.parquet/`` (resumable: a rerun predicts only
what is missing) and, unless ``--no-plots``, ``OUT_property_space.png`` and
``OUT_histogram.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.types import POSITIVE_INT, CommaList
from xenonscale.errors import ConfigError

__all__ = ["screen"]


@click.command(cls=Command)
@click.argument("models", type=CommaList(), metavar="MODEL[,MODEL...]")
@options.input_argument()
@options.target_range("targets", required=True)
@click.option(
    "--pareto",
    "objectives",
    multiple=True,
    metavar="PROP:max|min",
    help="an objective of the Pareto front among the candidates in the target, e.g. "
    "'gap:max'; repeat for several",
)
@click.option(
    "--top",
    type=POSITIVE_INT,
    default=100,
    show_default=True,
    help="keep this many candidates by probability of meeting every target (plus the front)",
)
@options.column()
@options.partition_rows()
@options.refeaturize()
@options.workers()
@options.scheduler()
@options.zoo_options
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@options.no_progress()
@options.output(required=True)
def screen(
    models,
    input,
    targets,
    objectives,
    top,
    column,
    partition_rows,
    refeaturize,
    workers,
    scheduler,
    zoo,
    artifacts,
    storage_options,
    no_plots,
    no_progress,
    output,
) -> int:
    """Screen INPUT with zoo MODELS: predict on Dask, keep what meets every --target-range.

    INPUT is a feature store or any source (a file, dataset:NAME, optimade:...,
    enumerate:...). Candidates are ranked by the probability that every
    property is inside its range (an ensemble's own std, else the model's
    validation RMSE); --pareto adds the non-dominated candidates in the target.
    """
    from xenonscale.workflows.prediction import predict_to_store
    from xenonscale.workflows.screening import screen as run_screen

    out = Path(output)
    if out.suffix != ".parquet":
        raise ConfigError(f"-o {output!r}: the screen is a Parquet file, e.g. screen.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions = out.with_name(f"{out.stem}_predictions.parquet")
    opened = options.open_zoo(zoo, artifacts, storage_options)
    url, column = input.resolve(column)
    started = time.perf_counter()
    summary = predict_to_store(
        list(models),
        url,
        str(predictions),
        zoo=opened,
        refeaturize=refeaturize,
        partition_rows=partition_rows,
        progress=not no_progress,
        storage_options=storage_options,
        source_options={"column": column} if column else None,
        workers=workers,
        scheduler=scheduler,
    )
    result = run_screen(str(predictions), list(targets), objectives=list(objectives), top=top,
                        zoo=opened)  # fmt: skip
    result.frame.to_parquet(out, index=False)
    plots = {}
    if not no_plots:
        from xenonscale.viz.screening import screen_figures

        for name, figure in screen_figures(result).items():
            path = out.with_name(f"{out.stem}_{name}.png")
            figure.savefig(path, dpi=110)
            plots[name] = path.name
    record = {
        "models": list(models),
        "input": str(input),
        "targets": [str(t) for t in result.targets],
        "columns": result.columns,
        "objectives": [f"{c}:{d}" for c, d in result.objectives],
        "std_source": result.std_source,
        "counts": result.counts,
        "predictions": predictions.name,
        "prediction_errors": summary.errors,
        "plots": plots,
        "seconds": round(time.perf_counter() - started, 2),
    }
    out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
    counts = result.counts
    click.echo(
        f"{counts['rows']:,} screened ({summary.errors:,} could not be predicted): "
        f"{counts['in_target']:,} in target, {counts['pareto']:,} on the front, "
        f"{counts['kept']:,} kept → {out}"
    )
    return 0
