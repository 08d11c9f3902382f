"""Options shared by the ``xenonscale`` commands, each defined once.

A flag means the same thing, with the same help text and type, in every
command that takes it (``tests/test_cli_flags.py`` walks the commands to keep
it so): ``--scheduler`` is always the Dask scheduler address, ``-o/--output``
is always where the command writes, ``--limit`` always the first N input
rows, ``--max-epochs`` always the training epochs. Only the default, whether
the option is required and the Python name it fills may differ: a command
names the option after the library parameter it fills (``--limit`` fills
``rows=`` of ``run_demo``), so library messages can be mapped back to the
flag (:func:`xenonscale.cli.command.flag_names`).

Examples
--------
>>> import click
>>> @click.command()
... @workers()
... @scheduler()
... def job(workers, scheduler):
...     pass
>>> [p.opts for p in job.params]
[['--workers'], ['--scheduler']]
"""

from __future__ import annotations

from collections.abc import Callable

import click

from xenonscale.cli.inputs import INPUT
from xenonscale.cli.types import (
    POSITIVE_INT,
    STORAGE_OPTIONS,
    WORKERS,
    Choice,
    CommaList,
    TargetRange,
)

__all__ = [
    "KINDS",
    "LOSSES",
    "TASKS",
    "auth_env",
    "charge_balanced",
    "column",
    "input_argument",
    "kind",
    "limit",
    "loss",
    "max_epochs",
    "model_name",
    "no_progress",
    "only",
    "order",
    "output",
    "partition_rows",
    "refeaturize",
    "register",
    "response_fields",
    "scheduler",
    "seed",
    "storage_options",
    "target",
    "target_range",
    "task",
    "workers",
    "zoo_options",
]

Decorator = Callable[[Callable], Callable]


def _kinds() -> list[str]:
    from xenonscale.featurize.registry import registered

    return list(registered())


#: Input kinds with registered featurizers (composition, molecule, structure).
KINDS = Choice(_kinds)
#: Training losses of the property models.
LOSSES = Choice(("mae", "mse", "huber"), library="xenonscale.models.module:LOSSES")
#: What a model learns: a number, or the probability of class 1 of a 0/1 target.
TASKS = Choice(("regression", "classification"), library="xenonscale.models.backbones:TASKS")


def _option(*decls: str, **shared) -> Callable[..., Decorator]:
    """A factory of one shared option: ``name`` (the Python parameter) and the
    command-specific ``default``/``required``/``show_default`` may be given."""

    def factory(name: str | None = None, **specific) -> Decorator:
        allowed = {"default", "required", "show_default"}
        if set(specific) - allowed:
            raise TypeError(f"{decls[-1]}: only {sorted(allowed)} differ between commands")
        return click.option(*decls, *([name] if name else []), **shared, **specific)

    factory.__name__ = decls[-1].lstrip("-").replace("-", "_")
    factory.__doc__ = f"``{'/'.join(decls)}``: {shared.get('help', '')}"
    return factory


output = _option(
    "-o",
    "--output",
    metavar="PATH",
    help="where to write the result (a file or folder: the description above says which)",
)
workers = _option(
    "--workers",
    type=WORKERS,
    help="worker processes of the embedded Dask cluster (when no --scheduler is given)",
)
scheduler = _option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: "
    "$DASK_SCHEDULER_ADDRESS, else an embedded cluster)",
)
storage_options = _option(
    "--storage-options",
    type=STORAGE_OPTIONS,
    help="fsspec options (S3 credentials, endpoint) as a JSON object, e.g. '{\"anon\": true}'",
)
response_fields = _option(
    "--response-fields",
    type=CommaList(),
    help="optimade: sources: further fields kept as store variables, comma-separated "
    "(provider fields like _mp_band_gap lose their prefix)",
)
auth_env = _option(
    "--auth-env",
    metavar="VAR",
    help="optimade: sources: NAME of the environment variable holding an API key "
    "(sent as X-API-KEY; the key is never printed or stored)",
)
target_range = _option(
    "--target-range",
    type=TargetRange(),
    multiple=True,
    help="target range of a property, e.g. 'E=0:200' or 'HOMO-LUMO gap=:3' (either end "
    "optional); repeat for several",
)
refeaturize = _option(
    "--refeaturize",
    is_flag=True,
    help="featurize a store's input text with each model's featurizer where the store's "
    "features are not the model's",
)
atoms = _option(
    "--atoms",
    type=POSITIVE_INT,
    help="the most atoms in a candidate's reduced formula",
)
charge_balanced = _option(
    "--charge-balanced",
    is_flag=True,
    help="only compositions that can be charge-neutral with common oxidation states "
    "(mixed valence allowed, as pymatgen's oxi_state_guesses)",
)
column = _option(
    "--column",
    metavar="NAME",
    help="input column of the source (default: the dataset's input column, else inferred)",
)
limit = _option(
    "--limit",
    type=POSITIVE_INT,
    help="use only the first N rows of the input",
)
max_epochs = _option(
    "--max-epochs",
    type=POSITIVE_INT,
    help="most training epochs",
)
partition_rows = _option(
    "--partition-rows",
    type=POSITIVE_INT,
    help="rows per task (default: by feature width)",
)
no_progress = _option(
    "--no-progress",
    is_flag=True,
    help="hide the progress bars",
)
kind = _option(
    "--kind",
    type=KINDS,
    is_eager=True,  # before --featurizers, whose names depend on the kind
    help="what the inputs are",
)
seed = _option(
    "--seed",
    type=int,
    help="random seed (the same seed gives the same result)",
)
target = _option(
    "--target",
    type=CommaList(),
    help="target property column(s) of the data, comma-separated",
)
model_name = _option(
    "--name",
    metavar="NAME",
    help="register the model in the zoo under this name",
)
register = _option(
    "--register",
    metavar="NAME",
    help="register the resulting model in the zoo as NAME",
)
only = _option(
    "--only",
    type=CommaList(),
    help="only these model names (comma-separated)",
)
loss = _option(
    "--loss",
    type=LOSSES,
    help="training loss",
)
task = _option(
    "--task",
    type=TASKS,
    help="regression, or classification of a 0/1 target (default: classification when "
    "every target holds only 0 and 1, else regression)",
)
order = _option(
    "--order",
    type=POSITIVE_INT,
    help="n-gram order: the longest context in tokens",
)
_zoo = _option(
    "--zoo",
    metavar="LOCATION",
    help="zoo folder or catalog URL (default: $XENONSCALE_ZOO, else ~/.xenonscale/zoo)",
)
_artifacts = _option(
    "--artifacts",
    metavar="URL",
    help="artifacts folder or s3:// URL of a catalog-URL zoo",
)


def zoo_options(command: Callable) -> Callable:
    """``--zoo``, ``--artifacts`` and ``--storage-options`` (for the artifacts)."""
    for option in (storage_options(), _artifacts(), _zoo()):
        command = option(command)
    return command


def input_argument(name: str = "input", *, required: bool = True) -> Decorator:
    """A positional input: a file, folder, glob, URL or ``dataset:NAME``."""
    return click.argument(name, type=INPUT, required=required)


def open_zoo(zoo: str | None, artifacts: str | None, storage_options: dict | None):
    """The :class:`~xenonscale.zoo.Zoo` the zoo options name."""
    from xenonscale.zoo import Zoo

    return Zoo(zoo, artifacts=artifacts, storage_options=storage_options)
