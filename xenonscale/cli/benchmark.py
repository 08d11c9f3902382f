"""``xenonscale benchmark``: a Matbench v0.1 composition task, run exactly as Matbench defines it.

Examples
--------
::

    xenonscale benchmark matbench_steels_yield --rf-magpie -o bench/steels-rf
    xenonscale benchmark matbench_expt_gap --model mlp --max-epochs 200 --baseline -o bench/gap
    xenonscale benchmark matbench_glass --model attention --workers 5 -o bench/glass
    xenonscale benchmark matbench_expt_gap --transfer-from mp-gap@1,mp-e-form@1 \\
        --learner gbm --features descriptors+prediction -o bench/gap-transfer
    xenonscale benchmark matbench_expt_gap --transfer-from mp-gap-att@1 --fine-tune none \\
        --max-epochs 150 -o bench/gap-fine-tune
    xenonscale benchmark matbench_steels_yield --outer-folds 0,1 --max-epochs 2 -o /tmp/quick
"""

from __future__ import annotations

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.train import ACCELERATORS, MODEL_OPTION
from xenonscale.cli.transfer import FEATURES_OPTION, FREEZE_MODES, LEARNERS, ModelRefs
from xenonscale.cli.types import POSITIVE_INT, Choice, CommaList

__all__ = ["benchmark"]

#: The Matbench v0.1 composition tasks of the data mirror.
TASKS = Choice(
    (
        "matbench_expt_gap",
        "matbench_expt_is_metal",
        "matbench_glass",
        "matbench_steels_yield",
        "matbench_mp_e_form",
        "matbench_mp_gap",
    ),
    library="xenonscale.workflows.matbench:TASKS",
)


@click.command(cls=Command)
@click.argument("task", type=TASKS, metavar="TASK")
@MODEL_OPTION
@click.option(
    "--rf-magpie",
    is_flag=True,
    help="Matbench's reference baseline instead of a network: a random forest on Magpie features",
)
@click.option(
    "--baseline",
    is_flag=True,
    help="also run the random forest on Magpie features on the same folds, shown beside",
)
@click.option(
    "--transfer-from",
    type=ModelRefs(),
    default=None,
    help="zoo models trained on other datasets: source selection inside each training fold",
)
@options.zoo_options
@click.option(
    "--learner",
    type=LEARNERS,
    default=None,
    help="the cheap learner on each source's features",
)
@FEATURES_OPTION
@click.option(
    "--fine-tune",
    "fine_tune",
    type=FREEZE_MODES,
    default=None,
    help="fine-tune the --transfer-from sources on each training fold instead of selecting "
    "features for a learner: what stays frozen (none: every layer learns); the source with "
    "the best validation score predicts the test fold",
)
@click.option(
    "--outer-folds",
    "folds",
    type=CommaList(Choice(("0", "1", "2", "3", "4"))),
    default=None,
    help="only these Matbench folds (0-4, comma-separated) for a quick, partial run",
)
@options.max_epochs(default=100, show_default=True)
@click.option(
    "--trees",
    "n_estimators",
    type=POSITIVE_INT,
    default=500,
    show_default=True,
    help="trees of the random forest (Matbench's RF-SCM/Magpie: 500)",
)
@options.seed(default=0, show_default=True)
@click.option(
    "--accelerator",
    type=ACCELERATORS,
    default="auto",
    show_default=True,
    help="Lightning accelerator",
)
@click.option("--store", default=None, help="feature store to reuse [default: OUTPUT/store-*.zarr]")
@options.workers()
@options.scheduler()
@options.no_progress()
@options.output(required=True)
def benchmark(
    task,
    backbone,
    rf_magpie,
    baseline,
    transfer_from,
    zoo,
    artifacts,
    storage_options,
    learner,
    features,
    fine_tune,
    folds,
    max_epochs,
    n_estimators,
    seed,
    accelerator,
    store,
    workers,
    scheduler,
    no_progress,
    output,
) -> int:
    """Run Matbench v0.1 on TASK and print per-fold and mean scores beside the leaderboard.

    TASK is a Matbench v0.1 composition task of the data mirror (choices
    above). Outer folds are Matbench's
    (KFold(5, shuffle=True, random_state=18012019); stratified for the 0/1
    tasks); early stopping, scaling and transfer-source selection use the
    training fold only, and the test fold is predicted once. Folds run as
    parallel Dask tasks when there are workers. -o is the folder of
    benchmark.json (the record), predictions.parquet and fold_rows.parquet.
    With --transfer-from, --learner defaults to ridge (logistic for a 0/1 task);
    with --transfer-from and --fine-tune, each source network is trained further
    on each training fold instead.
    Exit status 1 when a fold failed (it is reported, not dropped).
    """
    from xenonscale.errors import ConfigError
    from xenonscale.workflows.matbench import run_benchmark

    if rf_magpie and transfer_from:
        raise ConfigError("--rf-magpie and --transfer-from: choose one way to predict")
    if fine_tune and not transfer_from:
        raise ConfigError(
            f"--fine-tune {fine_tune} needs --transfer-from REF,...: the zoo models to fine-tune"
        )
    if fine_tune and learner:
        raise ConfigError(
            f"--fine-tune {fine_tune} and --learner {learner}: fine-tuning trains the source "
            "network itself; drop --learner"
        )
    model = "rf-magpie" if rf_magpie else backbone
    zoo_location = None
    if transfer_from:
        zoo_location = options.open_zoo(zoo, artifacts, storage_options)
    try:
        result = run_benchmark(
            task,
            model=model,
            transfer_from=list(transfer_from) if transfer_from else None,
            zoo=zoo_location,
            transfer_options=(
                {"features": "+".join(features)} | ({"learner": learner} if learner else {})
                if transfer_from
                else None
            ),
            folds=[int(f) for f in folds] if folds else None,
            max_epochs=max_epochs,
            n_estimators=n_estimators,
            seed=seed,
            train_options={"accelerator": accelerator},
            baseline=baseline,
            fine_tune=fine_tune,
            output=output,
            store=store,
            workers=workers,
            scheduler=scheduler,
            progress=not no_progress,
        )
    finally:
        if zoo_location is not None:
            zoo_location.close()
    click.echo(result.table())
    click.echo(f"record: {result.output / 'benchmark.json'}")
    return 1 if result.failed else 0
