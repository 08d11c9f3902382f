"""Train and register: a model trained from a store becomes a zoo version ``NAME@N``.

:func:`train_and_register` is ``xenonscale train``: it calls
:func:`~xenonscale.models.training.train_model`, lets the caller add files
(``figures``: e.g. :func:`xenonscale.viz.training.training_figures`, the
learning curve and parity plot) and registers the model, its card and those
files in a :class:`~xenonscale.zoo.Zoo`. :func:`register_best_trial` does the
same for the best parameters of an Optuna study
(:func:`xenonscale.models.tuning.tune`), trained twice as long.

Examples
--------
A store of 64 iron oxides (target: the iron fraction) featurized on an
in-process Dask client, a small network trained on it for three epochs and
registered with its plots (a few seconds):

>>> import tempfile
>>> from pathlib import Path
>>> from distributed import Client
>>> from xenonscale.engine import featurize_to_store
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.viz.training import training_figures
>>> from xenonscale.workflows.registration import train_and_register
>>> from xenonscale.zoo import Zoo
>>> folder = Path(tempfile.mkdtemp())
>>> rows = [f"Fe{a}O{b},{a / (a + b):.3f}" for a in range(1, 9) for b in range(1, 9)]
>>> _ = (folder / "oxides.csv").write_text("formula,target\\n" + "\\n".join(rows))
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     _ = featurize_to_store(
...         str(folder / "oxides.csv"), str(folder / "oxides.zarr"),
...         FeaturizerSpec.parse("composition", "classic"),
...         column="formula", client=client, progress=False,
...     )
>>> zoo = Zoo(folder / "zoo")
>>> result = train_and_register(
...     str(folder / "oxides.zarr"), name="fe-o", zoo=zoo, figures=training_figures,
...     output=folder / "fe-o", hidden=(16,), max_epochs=3, batch_size=16,
...     accelerator="cpu", progress=False,
... )
>>> result.ref, sorted(result.files)
('fe-o@1', ['learning_curve.png', 'parity.png'])
>>> zoo.load("fe-o").predict(["Fe3O4", "Xx2"])["target"].isna().tolist()
[False, True]
>>> zoo.close()
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from xenonscale.errors import ConfigError
from xenonscale.models.training import TrainResult, train_model
from xenonscale.models.tuning import TuneResult, network_from_params
from xenonscale.workflows.ensembles import train_ensemble
from xenonscale.zoo import Zoo

__all__ = ["Figures", "register_best_trial", "register_result", "train_and_register"]

#: Draws files for a trained model (plots) and returns ``{file name: path}``.
Figures = Callable[[TrainResult], dict[str, Path]]


def train_and_register(
    store: str,
    targets: str | list[str] = "target",
    *,
    name: str,
    zoo: Zoo | str | None = None,
    figures: Figures | None = None,
    promote: bool = False,
    ensemble: int | None = None,
    **train_options,
) -> TrainResult:
    """Train on ``store`` (:func:`train_model` options), register as ``name@N``; ``result.ref``.

    ``zoo`` is a :class:`Zoo` or its location (default: the default zoo);
    ``figures`` draws files registered with the model; ``promote`` makes the
    new version the production one. ``ensemble=N`` trains a deep ensemble of N
    members as parallel Dask tasks (:func:`~xenonscale.workflows.ensembles.train_ensemble`,
    which also takes ``client``, ``dask_scheduler``, ``workers``) and registers it as one
    version.
    """
    if not name:
        raise ConfigError("name='' : a registered model needs a name, e.g. name='mp-gap'")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    if ensemble is not None:
        result = train_ensemble(store, targets, members=ensemble, name=name, **train_options)
    else:
        result = train_model(store, targets, name=name, **train_options)
    return register_result(result, zoo, figures=figures, promote=promote)


def register_result(
    result: TrainResult, zoo: Zoo, *, figures: Figures | None = None, promote: bool = False
) -> TrainResult:
    """Add ``figures`` to a trained result, register it in ``zoo`` under its name; set ``ref``."""
    if figures is not None:
        result.files.update(figures(result))
    ref = zoo.register(result.name, result.model, result.card, files=dict(result.files))
    result.ref = str(ref)
    if promote:
        zoo.promote(result.ref)
    return result


def register_best_trial(
    tuned: TuneResult,
    store: str,
    targets: str | list[str],
    *,
    name: str,
    zoo: Zoo | str | None = None,
    max_epochs: int = 30,
    loss: str = "mae",
    seed: int = 0,
    data_options: dict | None = None,
    storage_options: dict | None = None,
    progress: bool = True,
    figures: Figures | None = None,
) -> TrainResult:
    """Train the study's best parameters for ``max_epochs × 2`` epochs and register the model.

    The weights, card and plots go to ``best/`` beside the study's plots.
    """
    params = tuned.best_params
    return train_and_register(
        store,
        targets,
        name=name,
        zoo=zoo,
        figures=figures,
        output=Path(tuned.output) / "best",
        **network_from_params(params, tuned.backbone, tuned.elements),
        lr=params["lr"],
        weight_decay=params["weight_decay"],
        batch_size=params["batch_size"],
        max_epochs=max_epochs * 2,
        loss=loss,
        task=tuned.task,
        seed=seed,
        data_options=data_options,
        storage_options=storage_options,
        progress=progress,
    )
