"""Workflows: what is built from the floors below (train and register, presets, retraining).

The floors below do one thing each: :func:`xenonscale.models.training.train_model`
trains and returns a result, :class:`xenonscale.zoo.Zoo` stores models. The
workflows here combine them: :func:`train_and_register` (what ``xenonscale
train`` runs; :func:`train_ensemble` for ``--ensemble N``),
:func:`register_best_trial` (``xenonscale tune --register``),
:func:`build_preset` (the source-model library, ``xenonscale zoo build``),
:func:`retrain` (scheduled retraining, ``xenonscale retrain``) and
:func:`predict_to_store` (zoo models over a store or a source as Dask tasks,
``xenonscale predict``). Plots are
drawn by the front ends (``figures=``, e.g.
:func:`xenonscale.viz.training.training_figures`), which sit above.

Examples
--------
>>> from xenonscale.workflows import PRESETS
>>> [m.name for m in PRESETS["mp"]]
['mp-e-form', 'mp-gap']
"""

from xenonscale.workflows.ensembles import train_ensemble
from xenonscale.workflows.prediction import PredictionSummary, predict_to_store
from xenonscale.workflows.presets import PRESETS, SourceModel, build_preset
from xenonscale.workflows.registration import (
    register_best_trial,
    register_result,
    train_and_register,
)
from xenonscale.workflows.retraining import retrain, staleness

__all__ = [
    "PRESETS",
    "PredictionSummary",
    "SourceModel",
    "build_preset",
    "predict_to_store",
    "register_best_trial",
    "register_result",
    "retrain",
    "staleness",
    "train_and_register",
    "train_ensemble",
]
