"""``xenonscale transfer``: shotgun transfer from the zoo to a small dataset, with a report.

Examples
--------
::

    xenonscale transfer expt_gap.csv --column formula --target target --zoo ./zoo \\
        --cv 5 --seed 18012019 --workers 2 -o transfer/report.json
    xenonscale transfer train.csv --column formula --target gap --sources mp-gap,oqmd-hf \\
        --test test.csv --finetune last --register gap-from-mp -o report.json

``add_parser(sub)`` adds the command and sets ``handler=transfer``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xenonscale.cli.args import check_model_ref, read_frame, workers
from xenonscale.errors import ConfigError
from xenonscale.viz.transfer import parity_figure

__all__ = ["add_parser", "transfer"]


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "transfer",
        help="shotgun transfer: rank zoo models on a small dataset, beat (or not) a baseline",
        description="Scores every compatible zoo model (or --sources) in parallel on Dask by "
        "K-fold CV MAE of a cheap learner on its frozen features, builds the final predictor "
        "from the best (or the top --top-k), compares with the same learner on XenonPy "
        "'classic' descriptors on the same folds, and writes a JSON report + parity plots.",
    )
    parser.add_argument("data", help="CSV with an input column and a target column")
    parser.add_argument("--column", required=True, help="input column (formulas)")
    parser.add_argument("--target", required=True, help="target column")
    parser.add_argument("--zoo", default=None, help="zoo folder or catalog URL ($XENONSCALE_ZOO)")
    parser.add_argument("--artifacts", default=None, help="artifact URL for a catalog URL zoo")
    parser.add_argument(
        "--sources", default=None, help="comma list of zoo refs (default: all compatible models)"
    )
    parser.add_argument("--kind", default="composition", help="input kind of the sources")
    parser.add_argument("--cv", type=int, default=5, help="folds of the K-fold CV")
    parser.add_argument("--test", default=None, help="CSV held out for a test MAE")
    parser.add_argument("--seed", type=int, default=0, help="KFold random_state and training")
    parser.add_argument("--learner", default="ridge", help="ridge | krr | gbm")
    parser.add_argument("--depth", type=int, default=1, help="hidden blocks used (from last)")
    parser.add_argument(
        "--features",
        default="hidden",
        help="what each source gives the learner: hidden | prediction | descriptors, "
        "joined with + (e.g. descriptors+prediction)",
    )
    parser.add_argument("--top-k", type=int, default=1, help="1: best source; k: average top k")
    parser.add_argument("--finetune", default=None, help="also score fine-tuning: all|last|none")
    parser.add_argument("--max-epochs", type=int, default=200, help="fine-tuning epochs")
    parser.add_argument("--workers", type=workers, default=None, help="embedded cluster workers")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument(
        "--register",
        default=None,
        metavar="NAME",
        help="register the final predictor when it is a fine-tuned model",
    )
    parser.add_argument("-o", "--output", required=True, help="report JSON path")
    parser.set_defaults(handler=transfer)
    return parser


def _read(path: str, column: str, target: str, flag: str = "DATA") -> tuple[list, np.ndarray, int]:
    import pandas as pd

    frame = read_frame(path, flag)
    for name in (column, target):
        if name not in frame.columns:
            raise ConfigError(f"{path!r} has no column {name!r}; it has {list(frame.columns)}")
    y = pd.to_numeric(frame[target], errors="coerce").to_numpy(np.float64)
    keep = np.isfinite(y)
    return frame[column][keep].tolist(), y[keep], int((~keep).sum())


def _filled(pred: np.ndarray, fallback: float) -> np.ndarray:
    pred = np.asarray(pred, np.float64).ravel()
    return np.where(np.isfinite(pred), pred, fallback)


def transfer(args: argparse.Namespace) -> int:
    from xenonscale.transfer.finetune import FineTuned
    from xenonscale.transfer.shotgun import shotgun
    from xenonscale.zoo import Zoo

    sources = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
    for ref in sources or ():
        check_model_ref(ref)
    inputs, y, dropped = _read(args.data, args.column, args.target)
    if args.test:
        _read(args.test, args.column, args.target, "--test")  # fail before any work
    zoo = Zoo(args.zoo, artifacts=args.artifacts)
    result = shotgun(
        inputs,
        y,
        zoo=zoo,
        sources=sources,
        kind=args.kind,
        cv=args.cv,
        seed=args.seed,
        learner=args.learner,
        depth=args.depth,
        features=args.features,
        top_k=args.top_k,
        finetune=args.finetune,
        finetune_options={"max_epochs": args.max_epochs},
        workers=args.workers,
        scheduler=args.scheduler,
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.with_suffix("")
    report = {
        "data": args.data,
        "rows": len(y),
        "rows_without_target": dropped,
        "target": args.target,
        "cv": args.cv,
        "seed": args.seed,
        "folds": "KFold(n_splits=cv, shuffle=True, random_state=seed)",
        "learner": args.learner,
        "features": result.details["features"],
        "method": result.method,
        "mae": result.mae,
        "baseline_mae": result.baseline_mae,
        "transfer_mae": result.details["transfer_mae"],
        "baseline": result.details["baseline"],
        "sources": result.ranking,
        "seconds": round(result.seconds, 2),
        "note": "mae is the CV MAE of the chosen method: the best source(s), or the baseline "
        "when it beat every transfer in CV (transfer_mae is the best transfer's); chosen "
        "among several candidates, so optimistic; test_mae (with --test) is not",
        "plots": {},
    }
    path = Path(f"{stem}_parity_cv.png")
    parity_figure(
        result.y,
        result.oof,
        result.baseline_oof,
        label=args.target,
        title=f"{args.cv}-fold CV (out-of-fold)",
    ).savefig(path, dpi=110)
    report["plots"]["cv"] = path.name
    if args.test:
        test_inputs, test_y, _ = _read(args.test, args.column, args.target, "--test")
        fallback = float(result.y.mean())
        pred = _filled(result.predictor.predict(test_inputs), fallback)
        base = _filled(result.baseline.predict(test_inputs), fallback)
        report |= {
            "test_rows": len(test_y),
            "test_mae": float(np.abs(pred - test_y).mean()),
            "baseline_test_mae": float(np.abs(base - test_y).mean()),
        }
        path = Path(f"{stem}_parity_test.png")
        parity_figure(test_y, pred, base, label=args.target, title="test").savefig(path, dpi=110)
        report["plots"]["test"] = path.name
    if args.register:
        if isinstance(result.predictor, FineTuned):
            metrics = {"cv": {"mae": result.mae}}
            if "test_mae" in report:
                metrics["test"] = {"mae": report["test_mae"]}
            ref = zoo.register(
                args.register, result.predictor.model, result.predictor.card(metrics)
            )
            report["registered"] = str(ref)
        else:
            report["registered"] = None
            report["not_registered"] = (
                f"the final predictor ({result.method}) is a scikit-learn learner on frozen "
                "features (or an ensemble); the zoo stores PropertyModels as safetensors and "
                "it could only be stored by pickling, which xenonscale never does. Use "
                "--finetune MODE with --top-k 1 to get a registrable fine-tuned model."
            )
    zoo.close()
    output.write_text(json.dumps(report, indent=1, default=float))
    print(f"best: {result.method}  CV MAE {result.mae:.4g}  baseline {result.baseline_mae:.4g}")
    if "test_mae" in report:
        print(f"test MAE {report['test_mae']:.4g}  baseline {report['baseline_test_mae']:.4g}")
    if report.get("not_registered"):
        print(f"not registered: {report['not_registered']}")
    elif report.get("registered"):
        print(f"registered: {report['registered']}")
    print(f"report: {output}")
    return 0
