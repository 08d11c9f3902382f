"""``xenonscale transfer``: shotgun transfer from the zoo to a small dataset, with a report.

Examples
--------
::

    xenonscale transfer expt_gap.csv --column formula --target target --zoo ./zoo \\
        --cv 5 --seed 18012019 --workers 2 -o transfer/report.json
    xenonscale transfer train.csv --column formula --target gap --sources mp-gap,oqmd-hf \\
        --test test.csv --finetune last --register gap-from-mp -o report.json
    xenonscale transfer dataset:matbench_expt_gap --zoo ./zoo -o report.json
    xenonscale transfer dataset:matbench_expt_is_metal --zoo ./zoo --learner rf -o metal.json
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.inputs import INPUT, MODEL_REF
from xenonscale.cli.types import POSITIVE_INT, Choice, CommaList
from xenonscale.errors import ConfigError

__all__ = ["transfer"]

LEARNERS = Choice(
    ("ridge", "krr", "gbm", "vote", "logistic", "rf"),
    library="xenonscale.transfer.selection:LEARNER_NAMES",
)
FEATURE_PARTS = Choice(
    ("hidden", "prediction", "descriptors"), library="xenonscale.transfer.selection:FEATURE_PARTS"
)
FEATURES_OPTION = click.option(
    "--features",
    type=CommaList(FEATURE_PARTS, joiner="+"),
    default="hidden",
    show_default=True,
    help="what each source gives the learner, joined with +",
)
FREEZE_MODES = Choice(("all", "last", "none"), library="xenonscale.transfer.finetune:FREEZE_MODES")


class ModelRefs(CommaList):
    """A comma list of zoo references, each checked like ``zoo show REF``."""

    def get_metavar(self, param, ctx=None) -> str:
        return "REF,..."

    def convert(self, value, param, ctx) -> tuple[str, ...]:
        refs = super().convert(value, param, ctx)
        for ref in refs:
            MODEL_REF.convert(ref, param, ctx)
        return refs


def _read(source, column: str, target: str, flag: str):
    """``(inputs, y, rows without a finite target)`` of a CSV or Parquet table."""
    import numpy as np
    import pandas as pd

    from xenonscale.cli.tables import read_frame

    path, _ = source.resolve()
    frame = read_frame(path, flag)
    for name in (column, target):
        if name not in frame.columns:
            raise ConfigError(
                f"{flag} {source.text!r} has no column {name!r}; it has {list(frame.columns)}"
            )
    y = pd.to_numeric(frame[target], errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(y)
    return frame[column][keep].tolist(), y[keep], int((~keep).sum())


def _columns(data, column: str | None, target: tuple[str, ...] | None) -> tuple[str, str]:
    """The input and target columns: the flags, else the dataset's own."""
    info = None
    if data.dataset is not None:
        from xenonscale import datasets

        info = datasets.info(data.dataset)
    column = column or (info.input_column if info else None)
    if target and len(target) > 1:
        raise ConfigError(f"--target {','.join(target)!r}: transfer takes one target column")
    name = target[0] if target else (info.target_column if info else None)
    if not column or not name:
        missing = "--column" if not column else "--target"
        raise ConfigError(
            f"{missing}: name the column of DATA {data.text!r} (no default for a file)"
        )
    return column, name


@click.command(cls=Command)
@options.input_argument("data")
@options.column()
@options.target()
@options.zoo_options
@click.option(
    "--sources",
    type=ModelRefs(),
    default=None,
    help="zoo references to score (default: every compatible model)",
)
@options.kind(default="composition", show_default=True)
@click.option(
    "--cv",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="folds of the K-fold cross-validation",
)
@click.option(
    "--test",
    type=INPUT,
    default=None,
    help="table held out for a test MAE (a file or dataset:NAME)",
)
@options.seed(default=0, show_default=True)
@options.task()
@click.option(
    "--learner",
    type=LEARNERS,
    default="ridge",
    show_default=True,
    help="the cheap learner on each source's features",
)
@click.option(
    "--depth",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="hidden blocks used, from the last",
)
@FEATURES_OPTION
@click.option(
    "--top-k",
    type=POSITIVE_INT,
    default=1,
    show_default=True,
    help="1: the best source; k: the average of the top k",
)
@click.option(
    "--finetune",
    type=FREEZE_MODES,
    default=None,
    help="also score fine-tuning with this freeze mode",
)
@options.max_epochs(default=200, show_default=True)
@options.workers()
@options.scheduler()
@options.register()
@options.output(required=True)
def transfer(
    data,
    column,
    target,
    zoo,
    artifacts,
    storage_options,
    sources,
    kind,
    cv,
    test,
    seed,
    task,
    learner,
    depth,
    features,
    top_k,
    finetune,
    max_epochs,
    workers,
    scheduler,
    register,
    output,
) -> int:
    """Shotgun transfer: rank zoo models on the small dataset DATA against a baseline.

    Scores every compatible zoo model (or --sources) in parallel on Dask by
    K-fold CV MAE of a cheap learner on its frozen features, builds the final
    predictor from the best (or the top --top-k), compares with the same
    learner on XenonPy 'classic' descriptors on the same folds. A 0/1 target
    is a classification (--task): the learner's classifier counterpart
    (ridge → logistic, krr → rf, gbm → gbm, vote → vote; or --learner logistic |
    rf), ranked by CV log-loss, ROC-AUC reported, probabilities predicted.
    --learner vote averages gradient boosting and a random forest. DATA is
    a CSV or Parquet table, or dataset:NAME (its input and target columns are
    the defaults). -o is the report JSON; parity plots (ROC curves for a
    classification) are written beside it. --max-epochs are the fine-tuning epochs.
    """
    import numpy as np

    from xenonscale.models.metrics import classification_metrics
    from xenonscale.transfer.finetune import FineTuned
    from xenonscale.transfer.selection import shotgun
    from xenonscale.viz.training import roc_plot
    from xenonscale.viz.transfer import parity_figure

    column, target = _columns(data, column, target)
    inputs, y, dropped = _read(data, column, target, "DATA")
    if test is not None:
        _read(test, column, target, "--test")  # fail before any work
    models = options.open_zoo(zoo, artifacts, storage_options)
    result = shotgun(
        inputs,
        y,
        zoo=models,
        sources=list(sources) if sources else None,
        kind=kind,
        cv=cv,
        seed=seed,
        task=task,
        learner=learner,
        depth=depth,
        features="+".join(features),
        top_k=top_k,
        finetune=finetune,
        finetune_options={"max_epochs": max_epochs},
        workers=workers,
        scheduler=scheduler,
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.with_suffix("")
    classification = result.task == "classification"
    report = {
        "data": data.text,
        "rows": len(y),
        "rows_without_target": dropped,
        "target": target,
        "cv": cv,
        "seed": seed,
        "folds": "KFold(n_splits=cv, shuffle=True, random_state=seed)",
        "task": result.task,
        "learner": result.details["learner"],
        "features": result.details["features"],
        "method": result.method,
    }
    if classification:
        report |= {
            "metric": "log_loss",
            "log_loss": result.score,
            "baseline_log_loss": result.baseline_score,
            "transfer_log_loss": result.details["transfer_log_loss"],
            "roc_auc": result.scores["cv_roc_auc"],
            "baseline_roc_auc": result.baseline_scores["cv_roc_auc"],
            "cv_scores": result.scores,
            "baseline_cv_scores": result.baseline_scores,
        }
    else:
        report |= {
            "mae": result.mae,
            "baseline_mae": result.baseline_mae,
            "transfer_mae": result.details["transfer_mae"],
        }
    report |= {
        "baseline": result.details["baseline"],
        "sources": result.ranking,
        "seconds": round(result.seconds, 2),
        "note": f"{result.metric} is the CV {result.metric} of the chosen method: the best "
        "source(s), or the baseline when it beat every transfer in CV (transfer_"
        f"{result.metric} is the best transfer's); chosen among several candidates, so "
        f"optimistic; test_{result.metric} (with --test) is not",
        "plots": {},
    }
    title = f"{cv}-fold CV (out-of-fold)"
    if classification:
        path = Path(f"{stem}_roc_cv.png")
        curves = {"transfer": (result.y, result.oof), "baseline": (result.y, result.baseline_oof)}
        roc_plot(curves, title=title).savefig(path, dpi=110)
    else:
        path = Path(f"{stem}_parity_cv.png")
        parity_figure(result.y, result.oof, result.baseline_oof, label=target, title=title).savefig(
            path, dpi=110
        )
    report["plots"]["cv"] = path.name
    if test is not None:
        test_inputs, test_y, _ = _read(test, column, target, "--test")
        fallback = float(result.y.mean())
        pred = _filled(result.predictor.predict(test_inputs), fallback)
        base = _filled(result.baseline.predict(test_inputs), fallback)
        report["test_rows"] = len(test_y)
        if classification:
            ours, theirs = (
                classification_metrics(test_y, pred),
                classification_metrics(test_y, base),
            )
            report |= {
                "test_log_loss": ours["log_loss"],
                "baseline_test_log_loss": theirs["log_loss"],
                "test_roc_auc": ours["roc_auc"],
                "baseline_test_roc_auc": theirs["roc_auc"],
                "test_scores": ours,
                "baseline_test_scores": theirs,
            }
            path = Path(f"{stem}_roc_test.png")
            roc_plot(
                {"transfer": (test_y, pred), "baseline": (test_y, base)}, title="test"
            ).savefig(path, dpi=110)
        else:
            report |= {
                "test_mae": float(np.abs(pred - test_y).mean()),
                "baseline_test_mae": float(np.abs(base - test_y).mean()),
            }
            path = Path(f"{stem}_parity_test.png")
            parity_figure(test_y, pred, base, label=target, title="test").savefig(path, dpi=110)
        report["plots"]["test"] = path.name
    if register:
        if isinstance(result.predictor, FineTuned):
            metric = result.metric
            metrics = {"cv": {metric: result.score}}
            if f"test_{metric}" in report:
                metrics["test"] = {metric: report[f"test_{metric}"]}
            ref = models.register(register, result.predictor.model, result.predictor.card(metrics))
            report["registered"] = str(ref)
        else:
            report["registered"] = None
            report["not_registered"] = (
                f"the final predictor ({result.method}) is a scikit-learn learner on frozen "
                "features (or an ensemble); the zoo stores PropertyModels as safetensors and "
                "it could only be stored by pickling, which xenonscale never does. Use "
                "--finetune MODE with --top-k 1 to get a registrable fine-tuned model."
            )
    models.close()
    output.write_text(json.dumps(report, indent=1, default=float))
    name = "log-loss" if classification else "MAE"
    click.echo(
        f"best: {result.method}  CV {name} {result.score:.4g}  baseline {result.baseline_score:.4g}"
    )
    if classification:
        click.echo(f"CV ROC-AUC {report['roc_auc']:.4f}  baseline {report['baseline_roc_auc']:.4f}")
    metric = result.metric
    if f"test_{metric}" in report:
        click.echo(
            f"test {name} {report[f'test_{metric}']:.4g}  "
            f"baseline {report[f'baseline_test_{metric}']:.4g}"
        )
    if classification and "test_roc_auc" in report:
        click.echo(
            f"test ROC-AUC {report['test_roc_auc']:.4f}  "
            f"baseline {report['baseline_test_roc_auc']:.4f}"
        )
    if report.get("not_registered"):
        click.echo(f"not registered: {report['not_registered']}")
    elif report.get("registered"):
        click.echo(f"registered: {report['registered']}")
    click.echo(f"report: {output}")
    return 0


def _filled(pred, fallback: float):
    import numpy as np

    pred = np.asarray(pred, np.float64).ravel()
    return np.where(np.isfinite(pred), pred, fallback)
