"""``xenonscale train``: a property model from a FeatureStore, saved and registered.

Examples
--------
::

    xenonscale train oqmd.zarr --target target --name oqmd-hf --max-epochs 60
    xenonscale train mp.zarr --target target --name mp-e-form --strategy ddp --devices 4 \\
        --accelerator gpu --zoo postgresql+psycopg://zoo@db/zoo --artifacts s3://models/zoo
"""

from __future__ import annotations

import argparse
import json

from xenonscale.cli.args import parse_storage_options, workers
from xenonscale.errors import ConfigError

__all__ = [
    "add_parser",
    "data_options",
    "int_list",
    "open_zoo",
    "retrain",
    "train",
    "tune",
]


def int_list(text: str) -> list[int]:
    """``"512,256,128"`` → ``[512, 256, 128]`` (argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated integers") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one integer")
    return values


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Store, target, split and outlier options shared by train, tune and retrain."""
    parser.add_argument("store", help="FeatureStore URL (xenonscale featurize -o ...)")
    parser.add_argument("--target", required=True, help="target variable(s), comma-separated")
    parser.add_argument("--split", default="random", help="random | kfold | group")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.0)
    parser.add_argument("--folds", type=int, default=5, help="k of k-fold")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (k-fold)")
    parser.add_argument("--group-by", default="input", help="store variable for --split group")
    parser.add_argument("--outliers", default="drop", help="keep | drop | clip")
    parser.add_argument("--outlier-z", type=float, default=10.0, help="robust z bound")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--storage-options", default=None, help="fsspec options (JSON)")


def add_zoo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zoo", default=None, help="zoo folder or catalog URL ($XENONSCALE_ZOO)")
    parser.add_argument("--artifacts", default=None, help="artifact URL for a catalog URL zoo")


def data_options(args: argparse.Namespace) -> dict:
    return {
        "split": args.split,
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "folds": args.folds,
        "fold": args.fold,
        "group_by": args.group_by,
        "outliers": args.outliers,
        "outlier_z": args.outlier_z,
    }


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "train",
        help="train a property model from a feature store and register it in the zoo",
        description="STORE → Lightning (any accelerator / devices / DDP) → zoo entry NAME@N "
        "with weights (safetensors), card (JSON), learning curve and parity plot.",
    )
    add_data_arguments(parser)
    parser.add_argument("--name", required=True, help="zoo name, e.g. oqmd-hf")
    add_zoo_arguments(parser)
    parser.add_argument("--output", default=None, help="folder for weights and plots")
    parser.add_argument("--units", default=None, help="target units, e.g. eV/atom")
    parser.add_argument("--hidden", type=int_list, default=[512, 256, 128], help="widths")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--no-batch-norm", action="store_true")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--loss", default="mae", help="mae | mse | huber")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-5)
    parser.add_argument("--scheduler", default="plateau", help="plateau | cosine | none")
    parser.add_argument("--patience", type=int, default=12, help="early-stopping epochs")
    parser.add_argument("--accelerator", default="auto", help="auto | cpu | gpu")
    parser.add_argument("--devices", default="1", help="number of devices, or auto")
    parser.add_argument("--strategy", default="auto", help="auto | ddp | ddp_spawn")
    parser.add_argument("--no-register", action="store_true", help="save only, no zoo entry")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=train)
    add_tune_parser(sub)
    add_retrain_parser(sub)


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--devices {text!r}: give a number or 'auto'") from None
    if value < 1:
        raise ConfigError(f"--devices {value}: give at least 1")
    return value


def train(args: argparse.Namespace) -> int:
    from xenonscale.models.training import train_model

    if args.strategy not in ("auto", "ddp", "ddp_spawn"):
        raise ConfigError(f"--strategy {args.strategy!r}: use auto, ddp or ddp_spawn")
    targets = [t.strip() for t in args.target.split(",") if t.strip()]
    result = train_model(
        args.store,
        targets,
        name=args.name,
        zoo=open_zoo(args) if not args.no_register else None,
        output=args.output,
        units={t: args.units for t in targets} if args.units else None,
        hidden=args.hidden,
        dropout=args.dropout,
        batch_norm=not args.no_batch_norm,
        activation=args.activation,
        loss=args.loss,
        lr=args.lr,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        batch_size=args.batch_size,
        max_epochs=args.max_epochs,
        patience=args.patience,
        accelerator=args.accelerator,
        devices=_devices(args.devices),
        strategy=args.strategy,
        seed=args.seed,
        data_options=data_options(args),
        progress=not args.no_progress,
        register=not args.no_register,
        storage_options=parse_storage_options(args.storage_options),
    )
    metrics = result.metrics.get("val", {})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    print(f"validation: {shown}")
    print(f"counts: {result.card['split']['counts']}")
    print(f"saved: {result.output}" + (f"  registered: {result.ref}" if result.ref else ""))
    return 0


def open_zoo(args: argparse.Namespace):
    """The :class:`~xenonscale.zoo.Zoo` named by ``--zoo``/``--artifacts``/``--storage-options``."""
    from xenonscale.zoo import Zoo

    options = parse_storage_options(args.storage_options)
    return Zoo(args.zoo, artifacts=args.artifacts, storage_options=options)


def add_tune_parser(sub) -> None:
    parser = sub.add_parser(
        "tune",
        help="Optuna search over architecture and optimizer, trials in parallel on Dask",
        description="Exactly --trials new trials of --study in --storage (SQLite or "
        "PostgreSQL URL), one Dask task each; plots of the history and importances.",
    )
    add_data_arguments(parser)
    parser.add_argument("--trials", type=int, required=True, help="new trials to run")
    parser.add_argument(
        "--storage", required=True, help="sqlite:///tune.db or postgresql+psycopg://"
    )
    parser.add_argument("--study", required=True, help="study name (created if missing)")
    parser.add_argument("--workers", type=workers, default=None, help="embedded cluster workers")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument("--pruner", default="median", help="median | hyperband | none")
    parser.add_argument("--loss", default="mae", help="mae | mse | huber")
    parser.add_argument("--output", default=None, help="folder for plots and best.json")
    parser.add_argument("--register", default=None, metavar="NAME",
                        help="retrain the best trial and register it as NAME")  # fmt: skip
    add_zoo_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=tune)


def tune(args: argparse.Namespace) -> int:
    from xenonscale.models.tuning import tune as run_tune

    result = run_tune(
        args.store,
        [t.strip() for t in args.target.split(",") if t.strip()],
        trials=args.trials,
        storage=args.storage,
        study=args.study,
        workers=args.workers,
        scheduler=args.scheduler,
        max_epochs=args.max_epochs,
        pruner=args.pruner,
        loss=args.loss,
        seed=args.seed,
        data_options=data_options(args),
        output=args.output,
        register=args.register,
        zoo=open_zoo(args) if args.register else None,
        progress=not args.no_progress,
    )
    print(f"study {result.study}: {result.trials} trials {result.states}")
    print(f"best val MAE {result.best_value:.4g} with {json.dumps(result.best_params)}")
    for path in result.files.values():
        print(f"plot: {path}")
    if result.ref:
        print(f"registered: {result.ref}")
    return 0


def add_retrain_parser(sub) -> None:
    parser = sub.add_parser(
        "retrain",
        help="retrain zoo models whose store changed or that are too old; promote if not worse",
        description="Idempotent and locked: safe to run from a Kubernetes CronJob.",
    )
    add_zoo_arguments(parser)
    parser.add_argument("--storage-options", default=None, help="fsspec options (JSON)")
    parser.add_argument("--only", default=None, help="comma list of model names")
    parser.add_argument("--max-age-days", type=float, default=None, help="age policy")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the card's")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=retrain)


def retrain(args: argparse.Namespace) -> int:
    from xenonscale.zoo.retrain import retrain as run_retrain

    report = run_retrain(
        zoo=open_zoo(args),
        only=[n.strip() for n in args.only.split(",")] if args.only else None,
        max_age_days=args.max_age_days,
        max_epochs=args.max_epochs,
        progress=not args.no_progress,
    )
    for row in report:
        details = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in row.items() if k not in ("name", "action"))  # fmt: skip
        print(f"{row['name']}: {row['action']}" + (f" ({details})" if details else ""))
    return 0
