"""The batch featurizer contract shared by every featurizer and the engine.

A featurizer is a pure function of a *batch*::

    batch = featurizer.featurize_batch(inputs)   # -> FeatureBatch
    batch.values   # float64[n, d]   (NaN rows where ok is False)
    batch.ok       # bool[n]
    batch.errors   # list[RowError]  (row, input, reason), one per failed row

plus ``labels`` (the ``d`` feature names) and ``citations``. Featurizers know
nothing of Dask: the engine hands them whole partitions. On top sits
:class:`BatchTransformer`, the scikit-learn style in-memory API (``transform``
returns a DataFrame, ``errors_`` lists failed rows).

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> frame = Compositions(elements="xenonpy58").transform(["Fe2O3"])  # doctest: +SKIP
>>> frame.shape  # doctest: +SKIP
(1, 290)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xenonscale.chem.formula import RowError
from xenonscale.errors import ConfigError, FeaturizerError

__all__ = ["BatchTransformer", "FeatureBatch", "RowError", "errors_frame"]

ON_ERROR_MODES = ("record", "raise")


@dataclass(frozen=True)
class FeatureBatch:
    """Result of featurizing one batch (see the module docstring)."""

    values: np.ndarray
    ok: np.ndarray
    errors: list[RowError] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ok)
        if self.values.ndim != 2 or self.values.shape[0] != n:
            raise FeaturizerError(f"values shape {self.values.shape} does not match {n} rows of ok")
        if int((~self.ok).sum()) != len(self.errors):
            raise FeaturizerError(
                f"{int((~self.ok).sum())} failed rows but {len(self.errors)} error records: "
                "every failed row needs exactly one reason"
            )


def errors_frame(errors: Sequence[RowError]) -> pd.DataFrame:
    """Errors as a DataFrame with columns ``row``, ``input``, ``error``."""
    return pd.DataFrame(
        {
            "row": pd.Series([e.row for e in errors], dtype="int64"),
            "input": pd.Series([e.input for e in errors], dtype="object"),
            "error": pd.Series([e.reason for e in errors], dtype="object"),
        }
    )


class BatchTransformer:
    """scikit-learn manners over :meth:`featurize_batch`.

    Subclasses store their ``__init__`` keyword arguments unchanged (so
    ``sklearn.base.clone`` works), implement ``featurize_batch`` and ``labels``.
    ``fit`` is a no-op; ``transform`` returns a DataFrame whose index follows
    the input (a pandas Series keeps its index) and records failed rows in
    ``errors_`` and ``frame.attrs["errors"]``.
    """

    on_error: str = "record"

    # -- to implement -------------------------------------------------------
    @property
    def labels(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:  # pragma: no cover
        raise NotImplementedError

    citations: tuple[str, ...] = ()

    # -- scikit-learn API ---------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, object]:
        """Constructor arguments (scikit-learn protocol)."""
        import inspect

        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind is not p.VAR_KEYWORD
        ]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: object) -> BatchTransformer:
        """Set constructor arguments (scikit-learn protocol)."""
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(f"unknown parameter {key!r}; valid: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def fit(self, inputs: object = None, y: object = None) -> BatchTransformer:
        """No-op (featurizers are stateless); returns self."""
        return self

    def get_feature_names_out(self, input_features: object = None) -> np.ndarray:
        """The feature labels as an object array."""
        return np.asarray(self.labels, dtype=object)

    def transform(self, inputs: Iterable[object]) -> pd.DataFrame:
        """Featurize ``inputs``; failed rows are NaN and listed in ``errors_``."""
        index = inputs.index if isinstance(inputs, pd.Series) else None
        items = inputs.tolist() if isinstance(inputs, pd.Series) else _as_list(inputs)
        batch = self.featurize_batch(items)
        self.errors_ = errors_frame(batch.errors)
        if self.on_error == "raise" and batch.errors:
            first = batch.errors[0]
            raise FeaturizerError(f"row {first.row}: {first.input!r}: {first.reason}")
        frame = pd.DataFrame(batch.values, columns=self.labels, index=index, copy=False)
        frame.attrs["errors"] = self.errors_.to_dict("records")
        return frame

    def fit_transform(self, inputs: Iterable[object], y: object = None) -> pd.DataFrame:
        """Same as :meth:`transform`."""
        return self.transform(inputs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


def _as_list(inputs: Iterable[object]) -> list[object]:
    if isinstance(inputs, str):
        raise ConfigError(
            f"transform() got a single string {inputs[:40]!r}; pass a list of inputs, "
            "e.g. transform(['Fe2O3'])"
        )
    if isinstance(inputs, np.ndarray):
        return inputs.tolist()
    return list(inputs)


def check_on_error(value: str) -> str:
    """Validate an ``on_error`` argument."""
    if value not in ON_ERROR_MODES:
        raise ConfigError(f"on_error={value!r} is not supported; use one of {ON_ERROR_MODES}")
    return value
