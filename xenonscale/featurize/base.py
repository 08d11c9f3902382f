"""The batch featurizer contract shared by every featurizer and the engine.

A featurizer is a pure function of a *batch*::

    batch = featurizer.featurize_batch(inputs)   # -> FeatureBatch
    batch.values   # float64[n, d]   (NaN rows where ok is False)
    batch.ok       # bool[n]
    batch.errors   # list[RowError]  (row, input, reason), one per failed row

plus ``labels`` (the ``d`` feature names), ``citations`` and
``feature_encoding``: what the values are, so a store can keep them compactly
(:data:`FEATURE_ENCODINGS`; ``"float32"`` unless a featurizer says ``"bits"``
or ``"counts"``). Featurizers know nothing of Dask: the engine hands them
whole partitions. On top sits
:class:`BatchTransformer`, the scikit-learn style in-memory API (``transform``
returns a DataFrame, ``errors_`` lists failed rows).

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> frame = Compositions(elements="xenonpy58").transform(["Fe2O3"])  # doctest: +REQUIRES_DATA
>>> frame.shape
(1, 290)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.errors import ConfigError, FeaturizerError, XenonscaleError
from xenonscale.limits import (
    RecordLimits,
    RecordTimeout,
    failure_reason,
    record_limits,
)

__all__ = [
    "FEATURE_ENCODINGS",
    "BatchTransformer",
    "FeatureBatch",
    "RejectedInput",
    "RowError",
    "combined_encoding",
    "encoding_of",
    "errors_frame",
    "featurize_safely",
]

ON_ERROR_MODES = ("record", "raise")

#: What a featurizer's values are (its ``feature_encoding``), and so how a store keeps them:
#: ``float32`` any real value (NaN rows where ``ok`` is False); ``bits`` only 0 and 1 on ok
#: rows (binary fingerprints); ``counts`` only non-negative integers on ok rows (count
#: fingerprints), optionally at most the featurizer's ``feature_max``.
FEATURE_ENCODINGS = ("float32", "bits", "counts")


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


@dataclass(frozen=True, repr=False)
class RejectedInput:
    """A record its source could not turn into an input (a database entry with missing
    sites, disorder it cannot express...): ``featurize_safely`` makes it an error row
    with ``reason`` without calling the featurizer; ``text`` is what the store keeps.

    >>> from xenonscale.featurize import Compositions
    >>> rows = ["NaCl", RejectedInput("{'id': 7}", "entry 7 has no sites")]
    >>> featurize_safely(Compositions(featurizers="Counting"), rows).errors[0].reason
    'entry 7 has no sites'
    """

    text: str
    reason: str

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__


def featurize_safely(
    featurizer, inputs: Sequence[object], limits: RecordLimits | None = None
) -> FeatureBatch:
    """``featurizer.featurize_batch(inputs)`` that no single record can break.

    The batch runs under ``limits`` (default: the limits in force, see
    :mod:`xenonscale.limits`). Featurizers turn bad records into
    error rows themselves; this is the net below them: if the batch raises
    anything but a :class:`~xenonscale.errors.XenonscaleError` (a bad
    argument, ``on_error="raise"``), it is split in halves until the record
    that raised is alone, and that record becomes an error row with the
    exception's type and message (``RecursionError``, ``MemoryError``, a
    pymatgen or spglib failure...). Rows with infinite values are errors too:
    an ``inf`` is never passed on as a feature. Counts always add up.

    Examples
    --------
    >>> from xenonscale.featurize import Compositions
    >>> batch = featurize_safely(Compositions(featurizers="Counting"), ["Fe2O3", "Fe" + "9" * 400])
    >>> batch.ok.tolist()
    [True, False]
    """
    items = inputs if isinstance(inputs, list) else list(inputs)
    rejected = np.fromiter((isinstance(x, RejectedInput) for x in items), bool, len(items))
    if rejected.any():
        return _with_rejected(featurizer, items, rejected, limits)
    with record_limits(limits) if limits is not None else record_limits():
        batch = _bisect(featurizer, items, len(featurizer.labels))
    return _infinite_rows_as_errors(batch, items)


def _with_rejected(featurizer, items, rejected, limits) -> FeatureBatch:
    """Featurize the readable rows; the rejected ones become error rows with their reason."""
    kept = np.flatnonzero(~rejected)
    width = len(featurizer.labels)
    values = np.full((len(items), width), np.nan)
    ok = np.zeros(len(items), dtype=bool)
    errors = [
        RowError(int(i), items[i].text[:200], items[i].reason) for i in np.flatnonzero(rejected)
    ]
    if len(kept):
        inner = featurize_safely(featurizer, [items[i] for i in kept], limits)
        values[kept] = inner.values
        ok[kept] = inner.ok
        errors += [RowError(int(kept[e.row]), e.input, e.reason) for e in inner.errors]
    return FeatureBatch(values=values, ok=ok, errors=sorted(errors, key=lambda e: e.row))


def _bisect(featurizer, items: list[object], width: int) -> FeatureBatch:
    try:
        return featurizer.featurize_batch(items)
    except XenonscaleError:
        raise
    except (Exception, RecordTimeout) as exc:
        if len(items) == 1:
            return FeatureBatch(
                values=np.full((1, width), np.nan),
                ok=np.zeros(1, dtype=bool),
                errors=[RowError(0, describe_input(items[0]), failure_reason(exc))],
            )
        if not items:
            raise
    half = len(items) // 2
    first = _bisect(featurizer, items[:half], width)
    second = _bisect(featurizer, items[half:], width)
    return FeatureBatch(
        values=np.concatenate([first.values, second.values]),
        ok=np.concatenate([first.ok, second.ok]),
        errors=[*first.errors, *(RowError(e.row + half, e.input, e.reason) for e in second.errors)],
    )


def _infinite_rows_as_errors(batch: FeatureBatch, items: list[object]) -> FeatureBatch:
    infinite = np.isinf(batch.values).any(axis=1) & batch.ok
    if not infinite.any():
        return batch
    values = batch.values.copy()
    values[infinite] = np.nan
    ok = batch.ok & ~infinite
    new = [
        RowError(
            int(i), describe_input(items[i]), "infinite feature value: the input is out of range"
        )
        for i in np.flatnonzero(infinite)
    ]
    errors = sorted([*batch.errors, *new], key=lambda e: e.row)
    return FeatureBatch(values=values, ok=ok, errors=errors)


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
    #: What the values are (see :data:`FEATURE_ENCODINGS`); a class attribute or a
    #: property (``ECFP(counting=True)`` is ``"counts"``, ``ECFP()`` ``"bits"``).
    feature_encoding: str = "float32"
    #: The largest value a ``"counts"`` featurizer can return, when it is known (it picks
    #: the store's integer width); None: unknown.
    feature_max: int | None = None

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
        batch = featurize_safely(self, items)
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


def encoding_of(featurizer) -> str:
    """A featurizer's ``feature_encoding`` (``"float32"`` when it declares none), checked.

    >>> from xenonscale.featurize.molecules import ECFP, RDKitDescriptors
    >>> encoding_of(ECFP()), encoding_of(ECFP(counting=True)), encoding_of(RDKitDescriptors())
    ('bits', 'counts', 'float32')
    """
    encoding = getattr(featurizer, "feature_encoding", "float32")
    if encoding not in FEATURE_ENCODINGS:
        raise FeaturizerError(
            f"{type(featurizer).__name__}.feature_encoding = {encoding!r} is unknown: declare "
            f"one of {', '.join(FEATURE_ENCODINGS)}"
        )
    return encoding


def combined_encoding(parts: Sequence[object]) -> tuple[str, int | None]:
    """``(encoding, feature_max)`` of featurizers side by side (a :class:`FeatureUnion`).

    The rule: every part ``bits`` → ``bits``; every part ``bits`` or ``counts``
    → ``counts`` (a bit is a count of 0 or 1), with the largest ``feature_max``
    (None if a counts part declares none); any ``float32`` part, or no part →
    ``float32``.

    >>> from xenonscale.featurize.molecules import ECFP, MACCS, RDKitDescriptors
    >>> combined_encoding([ECFP(), MACCS()]), combined_encoding([ECFP(), RDKitDescriptors()])
    (('bits', 1), ('float32', None))
    >>> combined_encoding([ECFP(), ECFP(counting=True)])
    ('counts', None)
    """
    encodings = [encoding_of(part) for part in parts]
    if not encodings or "float32" in encodings:
        return "float32", None
    if set(encodings) == {"bits"}:
        return "bits", 1
    highs = [
        1 if encoding == "bits" else getattr(part, "feature_max", None)
        for part, encoding in zip(parts, encodings, strict=True)
    ]
    return "counts", None if None in highs else max(highs)


def check_on_error(value: str) -> str:
    """Validate an ``on_error`` argument."""
    if value not in ON_ERROR_MODES:
        raise ConfigError(f"on_error={value!r} is not supported; use one of {ON_ERROR_MODES}")
    return value
