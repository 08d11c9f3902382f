"""A loaded zoo model: predicts from features, or from raw inputs through its featurizer.

Examples
--------
A model of the default zoo (``$XENONSCALE_ZOO`` or ``~/.xenonscale/zoo``;
:mod:`xenonscale.zoo` has a runnable example on a temporary zoo):

>>> import xenonscale.zoo
>>> model = xenonscale.zoo.load("steels-yield")  # doctest: +SKIP
>>> frame = model.predict(["Fe2O3", "NaCl", "Xx2"])  # doctest: +SKIP
>>> frame.attrs["errors"]  # doctest: +SKIP
[{'row': 2, 'input': 'Xx2', 'error': "unknown element 'Xx'"}]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, ZooError, ZooMismatchError
from xenonscale.featurize.base import errors_frame, featurize_safely
from xenonscale.featurize.registry import element_tables
from xenonscale.models.backbones import predict_array
from xenonscale.models.ensemble import has_uncertainty, predict_array_with_std
from xenonscale.zoo.card import featurizer_spec
from xenonscale.zoo.refs import ModelRef

__all__ = ["ZooModel"]


class ZooModel:
    """A registered model version, ready to predict (see :meth:`Zoo.load`).

    Attributes
    ----------
    ref : ModelRef
        ``name@version``.
    card : dict
        The model card.
    model : PropertyModel
        The network in eval mode (CPU).
    errors_ : pandas.DataFrame
        ``row``, ``input``, ``error`` of the inputs the last :meth:`predict` could
        not featurize (empty before the first call).
    """

    #: Rows per forward pass.
    batch_rows = 65_536

    def __init__(
        self,
        ref: ModelRef,
        card: dict,
        model,
        files: Sequence[str] = (),
        read_file: Callable[[str], bytes] | None = None,
    ):
        self.ref = ref
        self.card = card
        self.model = model.eval()
        self.files = list(files)
        self._read_file = read_file
        self._featurizer = None
        self.errors_ = errors_frame([])

    def __repr__(self) -> str:
        return f"ZooModel({str(self.ref)!r}, targets={self.targets})"

    @property
    def targets(self) -> list[str]:
        return list(self.card["targets"])

    def read_file(self, name: str) -> bytes:
        """An extra file of this version (a plot), checked against its recorded sha256."""
        if name not in self.files or self._read_file is None:
            raise ConfigError(f"{self.ref} has no file {name!r}; files: {self.files}")
        return self._read_file(name)

    @property
    def has_uncertainty(self) -> bool:
        """True when the model predicts its own standard deviation (a deep ensemble)."""
        return has_uncertainty(self.model)

    def _check_uncertainty(self) -> None:
        if not self.has_uncertainty:
            raise ConfigError(
                f"{self.ref} has no uncertainty of its own (one network, not an ensemble): "
                "train it with xenonscale train --ensemble N to predict with return_std=True"
            )

    def predict_features(self, x: np.ndarray, return_std: bool = False):
        """Predictions ``float32[n, targets]`` in the targets' units from ``float32[n, in]``.

        Batched, without gradients; NaN features count as the training mean.
        ``return_std=True`` (ensembles only) returns ``(mean, std)``, the std
        across the ensemble's members (:mod:`xenonscale.models.ensemble`).
        """
        if return_std:
            self._check_uncertainty()
        x = np.asarray(x, dtype=np.float32)
        width = self.model.config["in_features"]
        if x.ndim != 2 or x.shape[1] != width:
            raise ConfigError(
                f"features of shape {x.shape}: {self.ref} needs a 2-D array with {width} "
                "columns (one row per sample)"
            )
        rows = min(self.batch_rows, getattr(self.model, "predict_batch_rows", self.batch_rows))
        if return_std:
            return predict_array_with_std(self.model, x, rows)
        return predict_array(self.model, x, rows)

    @property
    def featurizer(self):
        """The featurizer of the card (built once, checked against the card)."""
        if self._featurizer is None:
            self._featurizer = self._build_featurizer()
        return self._featurizer

    def _build_featurizer(self):
        if self.card.get("featurizer") is None:
            raise ZooError(
                f"{self.ref} was trained on arbitrary features (its card has no featurizer): "
                "compute them yourself and call predict_features(x)"
            )
        spec = featurizer_spec(self.card["featurizer"])
        featurizer = dataclasses.replace(spec, on_error="record").build()
        labels = [str(label) for label in featurizer.labels]
        expected = self.card.get("feature_labels")
        if expected is not None and labels != expected:
            first = next(
                (i for i, (a, b) in enumerate(zip(labels, expected, strict=False)) if a != b),
                min(len(labels), len(expected)),
            )
            raise ZooMismatchError(
                f"{self.ref}: featurizer {spec.names} now gives {len(labels)} labels, the model "
                f"was trained on {len(expected)}; first difference at column {first} "
                f"({_at(labels, first)!r} vs {_at(expected, first)!r}): install the xenonscale "
                f"version in the card ({self.card.get('versions', {}).get('xenonscale')}) or "
                "retrain"
            )
        if len(labels) != self.model.config["in_features"]:
            raise ZooMismatchError(
                f"{self.ref}: featurizer {spec.names} gives {len(labels)} features, the model "
                f"takes {self.model.config['in_features']}: the card's featurizer is wrong"
            )
        recorded = self.card.get("element_tables")
        if recorded is not None:
            tables = element_tables(featurizer)
            found = [t.sha256 for t in tables]
            wanted = [t["sha256"] for t in recorded]
            if found != wanted:
                names = [t.name for t in tables]
                raise ZooMismatchError(
                    f"{self.ref}: element table(s) {names} have sha256 {found}, the model was "
                    f"trained with {recorded}: use the same element table (the same "
                    f"{spec.elements!r} preset and data files) or retrain"
                )
        return featurizer

    def predict(self, raw_inputs: Sequence[object], return_std: bool = False) -> pd.DataFrame:
        """Featurize ``raw_inputs`` (formulas, structures, SMILES) and predict.

        Returns one float64 column per target, one row per input (in order; a
        pandas Series keeps its index); rows whose input could not be featurized
        are NaN and listed in :attr:`errors_` and ``frame.attrs["errors"]``
        (``row`` is the 0-based position, ``input``, ``error``).
        ``return_std=True`` adds a ``<target>_std`` column per target: the
        standard deviation across an ensemble's members (a model trained with
        ``xenonscale train --ensemble N``; a single network raises
        :class:`ConfigError`).
        Raises :class:`ZooMismatchError` if the featurizer or its element tables
        differ from the training ones recorded in the card.
        """
        if isinstance(raw_inputs, str):
            raise ConfigError(
                f"predict({raw_inputs!r}): pass a list of inputs, e.g. [{raw_inputs!r}]"
            )
        if return_std:
            self._check_uncertainty()
        inputs = list(raw_inputs)
        featurizer = self.featurizer
        values = np.full((len(inputs), len(self.targets)), np.nan)
        stds = np.full_like(values, np.nan)
        errors = []
        for start in range(0, len(inputs), self.batch_rows):
            chunk = inputs[start : start + self.batch_rows]
            batch = featurize_safely(featurizer, list(chunk))
            ok = np.asarray(batch.ok, dtype=bool)
            if ok.any():
                rows = start + np.flatnonzero(ok)
                predicted = self.predict_features(np.asarray(batch.values)[ok], return_std)
                if return_std:
                    values[rows], stds[rows] = predicted
                else:
                    values[rows] = predicted
            errors.extend(
                type(error)(start + error.row, error.input, error.reason) for error in batch.errors
            )
        self.errors_ = errors_frame(errors)
        index = raw_inputs.index if isinstance(raw_inputs, pd.Series) else None
        frame = pd.DataFrame(values, columns=self.targets, index=index)
        if return_std:
            for k, target in enumerate(self.targets):
                frame[f"{target}_std"] = stds[:, k]
        frame.attrs["errors"] = self.errors_.to_dict("records")
        frame.attrs["model"] = str(self.ref)
        frame.attrs["task"] = self.model.task  # classification: the columns are P(class 1)
        return frame


def _at(items: list, index: int):
    return items[index] if index < len(items) else None
