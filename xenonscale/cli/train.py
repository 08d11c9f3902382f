"""``xenonscale train | tune | retrain``: property models from feature stores.

Examples
--------
::

    xenonscale train oqmd.zarr --target target --name oqmd-hf --max-epochs 60
    xenonscale train mp.zarr --target target --name mp-e-form --strategy ddp --devices 4 \\
        --accelerator gpu --zoo postgresql+psycopg://zoo@db/zoo --artifacts s3://models/zoo
    xenonscale train gap.zarr --target target --name gap-ens --ensemble 5 --workers 2
    xenonscale tune oqmd.zarr --target target --trials 40 --storage sqlite:///tune.db \\
        --study oqmd-hf --workers 2
    xenonscale retrain --max-age-days 30
"""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.featurize import ELEMENTS
from xenonscale.cli.types import DEVICES, INT_LIST, POSITIVE_INT, Choice

__all__ = ["retrain", "train", "tune"]

SPLITS = Choice(("random", "kfold", "group"), library="xenonscale.models.splits:SPLIT_METHODS")
OUTLIERS = Choice(("keep", "drop", "clip"), library="xenonscale.models.data:OUTLIER_RULES")
ACTIVATIONS = Choice(
    ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "softplus"),
    library="xenonscale.models.backbones:ACTIVATIONS",
)
PRUNERS = Choice(("median", "hyperband", "none"), library="xenonscale.models.tuning:PRUNERS")
LR_SCHEDULES = Choice(["plateau", "cosine", "none"])
ACCELERATORS = Choice(["auto", "cpu", "gpu", "cuda", "mps"])
STRATEGIES = Choice(["auto", "ddp", "ddp_spawn"])
BACKBONES = Choice(("mlp", "attention", "cgcnn", "megnet"),
                   library="xenonscale.models.training:BACKBONE_INPUTS")  # fmt: skip


MODEL_OPTION = click.option(
    "--model", "backbone", type=BACKBONES, default="mlp", show_default=True,
    help="network: mlp on the store's features, attention over the elements of each "
    "composition, cgcnn or megnet on a crystal-graph store (--featurizers graph)",
)  # fmt: skip
ELEMENTS_OPTION = click.option(
    "--elements", type=ELEMENTS, default=None, help="element table preset"
)


def backbone_arguments(command: Callable) -> Callable:
    """--model and the attention model's options (train)."""
    decorators = [
        MODEL_OPTION,
        ELEMENTS_OPTION,
        click.option("--d-model", type=POSITIVE_INT, default=None,
                     help="attention: width of the element vectors [default: 128]"),
        click.option("--heads", type=POSITIVE_INT, default=None,
                     help="attention: heads per layer [default: 4]"),
        click.option("--layers", type=POSITIVE_INT, default=None,
                     help="attention: self-attention layers; cgcnn/megnet: convolutions or "
                     "blocks [default: 3]"),
        click.option("--width", type=POSITIVE_INT, default=None,
                     help="cgcnn/megnet: width of the atom vectors [default: 64]"),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _backbone_options(params: dict) -> dict | None:
    """``backbone_options`` of train_model from the network flags (None for the MLP)."""
    chosen = {
        "elements": params.pop("elements"),
        "d_model": params.pop("d_model"),
        "heads": params.pop("heads"),
        "layers": params.pop("layers"),
        "width": params.pop("width"),
    }
    applies = {"mlp": (), "attention": ("elements", "d_model", "heads", "layers"),
               "cgcnn": ("elements", "layers", "width")}  # fmt: skip
    allowed = applies.get(params["backbone"], applies["cgcnn"])
    given = [k for k, v in chosen.items() if v is not None and k not in allowed]
    if given:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise click.UsageError(f"{flags} do(es) not apply to --model {params['backbone']}")
    if params["backbone"] == "mlp":
        return None
    return {k: (v.lower() if k == "elements" else v) for k, v in chosen.items() if v is not None}


_FRACTION = click.FloatRange(0.0, 1.0, max_open=True)

_DATA_OPTIONS = (
    "split",
    "val_fraction",
    "test_fraction",
    "folds",
    "fold",
    "group_by",
    "outliers",
    "outlier_z",
    "atom_budget",
)


def data_arguments(command: Callable) -> Callable:
    """STORE, --target, the split and the outlier rule (train and tune)."""
    decorators = [
        click.argument("store"),
        options.target(required=True),
        click.option("--split", type=SPLITS, default="random", show_default=True,
                     help="how validation rows are chosen"),
        click.option("--val-fraction", type=_FRACTION, default=0.1, show_default=True,
                     help="validation share of the rows (random, group)"),
        click.option("--test-fraction", type=_FRACTION, default=0.0, show_default=True,
                     help="test share of the rows"),
        click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True,
                     help="k of the k-fold split"),
        click.option("--fold", type=click.IntRange(min=0), default=0, show_default=True,
                     help="validation fold of the k-fold split"),
        click.option("--group-by", default="input", show_default=True,
                     help="store variable of the groups (--split group)"),
        click.option("--outliers", type=OUTLIERS, default="drop", show_default=True,
                     help="rows with a robust z-score over --outlier-z"),
        click.option("--outlier-z", type=click.FloatRange(min=0, min_open=True), default=10.0,
                     show_default=True, help="robust z-score bound of --outliers"),
        click.option("--atom-budget", type=POSITIVE_INT, default=None,
                     help="cgcnn/megnet: close a batch before its crystals pass this many "
                     "atoms (else --batch-size crystals)"),
        options.seed(default=0, show_default=True),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _data_options(params: dict) -> dict:
    return {name: params.pop(name) for name in _DATA_OPTIONS}


@click.command(cls=Command)
@data_arguments
@options.task()
@click.option(
    "--batch-size",
    type=POSITIVE_INT,
    default=256,
    show_default=True,
    help="rows per training batch",
)
@options.max_epochs(default=100, show_default=True)
@click.option(
    "--max-minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="stop training after this wall time (the best epoch so far is kept)",
)
@options.model_name(required=True)
@options.zoo_options
@options.output()
@backbone_arguments
@click.option("--units", default=None, help="target units, e.g. eV/atom")
@click.option(
    "--hidden", type=INT_LIST, default="512,256,128", show_default=True, help="hidden layer widths"
)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.1,
    show_default=True,
    help="dropout probability",
)
@click.option("--no-batch-norm", is_flag=True, help="no batch normalization")
@click.option(
    "--activation", type=ACTIVATIONS, default="relu", show_default=True, help="activation function"
)
@options.loss(default="mae", show_default=True)
@click.option(
    "--lr",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="learning rate",
)
@click.option(
    "--weight-decay",
    type=click.FloatRange(min=0),
    default=1e-5,
    show_default=True,
    help="AdamW weight decay",
)
@click.option(
    "--lr-schedule",
    "scheduler",
    type=LR_SCHEDULES,
    default="plateau",
    show_default=True,
    help="learning-rate schedule: plateau halves it when validation stalls; cosine anneals it to "
    "0 by --max-epochs or --max-minutes, whichever ends first",
)
@click.option(
    "--patience",
    type=POSITIVE_INT,
    default=12,
    show_default=True,
    help="early-stopping epochs without improvement",
)
@click.option(
    "--accelerator",
    type=ACCELERATORS,
    default="auto",
    show_default=True,
    help="Lightning accelerator",
)
@click.option(
    "--devices", type=DEVICES, default="1", show_default=True, help="number of devices, or auto"
)
@click.option(
    "--strategy",
    type=STRATEGIES,
    default="auto",
    show_default=True,
    help="Lightning strategy (ddp: several devices)",
)
@click.option(
    "--ensemble",
    type=click.IntRange(min=2),
    default=None,
    help="train a deep ensemble of N members as parallel Dask tasks (one zoo entry, "
    "predictions with a standard deviation)",
)
@options.workers()
@options.scheduler("dask_scheduler")
@click.option("--no-register", is_flag=True, help="save only, no zoo entry")
@options.no_progress()
def train(
    store,
    target,
    name,
    zoo,
    artifacts,
    storage_options,
    units,
    no_batch_norm,
    no_register,
    no_progress,
    **params,
) -> int:
    """Train a property model on STORE and register it in the zoo as NAME@N.

    STORE is a feature store (xenonscale featurize -o ...). Lightning trains on
    any accelerator and devices (DDP); -o is the folder of the weights
    (safetensors), card (JSON), learning curve and parity plot (default
    ./models/NAME). --storage-options apply to the store and the zoo's artifacts.
    """
    from xenonscale.models.training import train_model
    from xenonscale.viz.training import training_figures
    from xenonscale.workflows.ensembles import train_ensemble
    from xenonscale.workflows.registration import register_result

    data_options = _data_options(params)
    backbone_options = _backbone_options(params)
    members, workers, address = (params.pop(k) for k in ("ensemble", "workers", "dask_scheduler"))
    if members is None and (workers is not None or address is not None):
        raise click.UsageError("--workers and --scheduler run ensemble members: add --ensemble N")
    dask = {"members": members, "workers": workers, "dask_scheduler": address} if members else {}
    result = (train_ensemble if members else train_model)(
        store,
        list(target),
        name=name,
        backbone_options=backbone_options,
        units={t: units for t in target} if units else None,
        batch_norm=not no_batch_norm,
        data_options=data_options,
        progress=not no_progress,
        storage_options=storage_options,
        **dask,
        **params,
    )
    if no_register:
        result.files.update(training_figures(result))
    else:
        zoo_ = options.open_zoo(zoo, artifacts, storage_options)
        register_result(result, zoo_, figures=training_figures)
    metrics = result.metrics.get("val", {})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
    click.echo(f"validation: {shown}")
    if members:
        means = result.card["ensemble"]["member_mean"].get("val", {})
        click.echo(f"members' mean MAE: {means.get('mae', float('nan')):.4g} ({members} members)")
    click.echo(f"counts: {result.card['split']['counts']}")
    click.echo(f"saved: {result.output}" + (f"  registered: {result.ref}" if result.ref else ""))
    return 0


@click.command(cls=Command)
@data_arguments
@options.task()
@MODEL_OPTION
@ELEMENTS_OPTION
@click.option("--trials", type=POSITIVE_INT, required=True, help="new trials to run")
@click.option(
    "--storage",
    required=True,
    metavar="URL",
    help="Optuna storage: sqlite:///tune.db or postgresql+psycopg://...",
)
@click.option("--study", required=True, help="study name (created if missing)")
@options.max_epochs(default=30, show_default=True)
@click.option("--pruner", type=PRUNERS, default="median", show_default=True, help="trial pruner")
@options.loss(default="mae", show_default=True)
@options.workers()
@options.scheduler()
@options.output()
@options.register()
@options.zoo_options
@options.no_progress()
def tune(store, target, zoo, artifacts, storage_options, register, no_progress, **params) -> int:
    """Optuna search over architecture and optimizer, one Dask task per trial.

    Runs exactly --trials new trials of --study in --storage (SQLite or
    PostgreSQL); -o is the folder of the history and importance plots and
    best.json (default ./tune/STUDY). --storage-options apply to the store
    (every trial) and the zoo's artifacts (--register).
    """
    from xenonscale.models.tuning import tune as run_tune
    from xenonscale.viz.training import training_figures
    from xenonscale.workflows.registration import register_best_trial

    data_options = _data_options(params)
    if params["elements"] is not None:
        if params["backbone"] == "mlp":
            raise click.UsageError("--elements applies to --model attention only")
        params["elements"] = params["elements"].lower()
    result = run_tune(
        store,
        list(target),
        data_options=data_options,
        storage_options=storage_options,
        progress=not no_progress,
        **params,
    )
    click.echo(f"study {result.study}: {result.trials} trials {result.states}")
    best = f"best {result.metric} {result.best_value:.4g}"
    click.echo(f"{best} ({result.task}) with {json.dumps(result.best_params)}")
    for path in result.files.values():
        click.echo(f"plot: {path}")
    if register:
        trained = register_best_trial(
            result,
            store,
            list(target),
            name=register,
            zoo=options.open_zoo(zoo, artifacts, storage_options),
            max_epochs=params["max_epochs"],
            loss=params["loss"],
            seed=params.get("seed", 0),
            data_options=data_options,
            storage_options=storage_options,
            progress=not no_progress,
            figures=training_figures,
        )
        click.echo(f"registered: {trained.ref}")
    return 0


@click.command(cls=Command)
@options.zoo_options
@options.only()
@click.option(
    "--max-age-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="retrain models older than this too",
)
@options.max_epochs(default=None)
@options.no_progress()
def retrain(zoo, artifacts, storage_options, only, max_age_days, max_epochs, no_progress) -> int:
    """Retrain zoo models whose store changed or that are too old; promote if not worse.

    Idempotent and locked: safe to run from a Kubernetes CronJob. --max-epochs
    overrides the epochs on each model's card.
    """
    from xenonscale.viz.training import training_figures
    from xenonscale.workflows.retraining import retrain as run_retrain

    report = run_retrain(
        zoo=options.open_zoo(zoo, artifacts, storage_options),
        only=list(only) if only else None,
        max_age_days=max_age_days,
        max_epochs=max_epochs,
        progress=not no_progress,
        figures=training_figures,
    )
    for row in report:
        details = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in row.items()
            if k not in ("name", "action")
        )
        click.echo(f"{row['name']}: {row['action']}" + (f" ({details})" if details else ""))
    return 0
