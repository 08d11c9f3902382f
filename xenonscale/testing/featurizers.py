"""``check_featurizer``: the featurizer contract in one call (scikit-learn's ``check_estimator``).

Every registered featurizer passes it (``tests/test_contracts.py``); a plugin
author runs it on a new featurizer to know it will behave in the engine (Dask
ships it, partitions of any size reach it, bad records become error rows) and
in memory (scikit-learn manners). It needs neither pytest nor Dask.

Examples
--------
>>> from xenonscale.featurize import Compositions
>>> from xenonscale.testing import check_featurizer
>>> check_featurizer(
...     Compositions(featurizers="Counting"), ["Fe2O3", "NaCl", "LiFePO4"], ["Xx2O3", None]
... )  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from xenonscale.errors import ConfigError, XenonscaleError

__all__ = ["FEATURIZER_CHECKS", "check_featurizer"]

#: The checks :func:`check_featurizer` runs, in order (names used in its messages
#: and in ``expected_failed_checks``).
FEATURIZER_CHECKS = (
    "params",
    "labels",
    "empty_batch",
    "batch_contract",
    "on_error_raise",
    "on_error_validated",
    "pickle",
    "deterministic",
    "batch_invariance",
    "transform",
)


class _Context:
    """What every check needs: the featurizer, the inputs and the tolerances."""

    def __init__(self, featurizer, valid: list, invalid: list, rtol: float, atol: float):
        self.featurizer = featurizer
        self.valid = valid
        self.invalid = invalid
        self.rtol = rtol
        self.atol = atol
        # invalid inputs interleaved with valid ones, so row bookkeeping is exercised
        self.mixed, self.bad_rows = _interleave(valid, invalid)

    def clone(self):
        from sklearn.base import clone

        return clone(self.featurizer)


def check_featurizer(
    featurizer: Any,
    valid_inputs: Iterable[object],
    invalid_inputs: Iterable[object] = (),
    *,
    name: str | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    expected_failed_checks: Mapping[str, str] | None = None,
) -> None:
    """Check that ``featurizer`` keeps the batch-featurizer contract.

    The featurizer must follow :class:`~xenonscale.featurize.base.BatchTransformer`
    (``featurize_batch``, ``labels``, ``transform``, ``get_params``/``set_params``,
    an ``on_error`` parameter). The checks (see :data:`FEATURIZER_CHECKS`):

    ``params``
        ``sklearn.base.clone`` works, ``get_params()`` round-trips through the
        constructor and ``set_params``, an unknown parameter is refused, and the
        clone featurizes like the original.
    ``labels``
        ``labels`` are unique strings, stable (two accesses and a clone give
        equal labels), as many as the value columns, equal to
        ``get_feature_names_out()``.
    ``empty_batch``
        ``featurize_batch([])`` gives values of shape ``(0, d)`` and no errors.
    ``batch_contract``
        On the valid and invalid inputs interleaved: ``ok.sum() + len(errors)
        == n``; errors sorted by row, one per failed row, with a text reason;
        failed rows all NaN; every valid input ok, every invalid input failed.
    ``on_error_raise``
        With ``on_error="raise"`` (through ``set_params`` and as an attribute),
        ``transform`` raises a :class:`~xenonscale.errors.XenonscaleError`
        (``FeaturizerError``) on each invalid input and none on the valid ones;
        ``featurize_batch`` either raises a ``XenonscaleError`` or records the
        row, never anything else.
    ``on_error_validated``
        An unknown ``on_error`` mode is refused (a ``XenonscaleError`` or
        ``ValueError``), not silently treated as ``"record"``.
    ``pickle``
        A pickle round trip (before and after use: Dask ships featurizers)
        gives the same parameters, labels and results.
    ``deterministic``
        The same batch twice gives identical values, ``ok`` and errors.
    ``batch_invariance``
        A row's result does not depend on the other rows of the batch: the
        batch shuffled, each valid row alone and the valid rows without the
        invalid ones give the same rows (within ``rtol``/``atol``).
    ``transform``
        ``transform`` returns a DataFrame with the labels as columns, one row per
        input (a Series keeps its index), values as ``featurize_batch``, and the
        failed rows in ``errors_`` (columns ``row``, ``input``, ``error``);
        ``fit`` returns the featurizer, ``fit_transform`` equals ``transform``.

    Parameters
    ----------
    featurizer
        The featurizer to check (not modified: the checks work on clones and copies).
    valid_inputs
        At least two inputs the featurizer must featurize (real records).
    invalid_inputs
        Inputs it must turn into error rows (unknown element, garbage text, ``None``).
    name
        How messages name the featurizer; default its class name.
    rtol, atol
        Tolerance of ``batch_invariance`` (batched linear algebra may differ in
        the last bits with the batch size); every other comparison is exact.
    expected_failed_checks
        ``{check: reason}`` for known violations: such a check must fail (it is
        then skipped); if it passes, that is reported, so the entry is removed
        once the bug is fixed.

    Raises
    ------
    AssertionError
        Naming the featurizer, every failed check and what went wrong.
    ConfigError
        Fewer than two valid inputs, or an unknown check name.

    Examples
    --------
    >>> from xenonscale.featurize.registry import FeaturizerSpec
    >>> from xenonscale.testing import check_featurizer
    >>> featurizer = FeaturizerSpec.parse("molecule", "maccs").build()
    >>> check_featurizer(featurizer, ["CCO", "c1ccccc1O"], ["C1CC", "not smiles", None])
    """
    valid = _as_list(valid_inputs)
    invalid = _as_list(invalid_inputs)
    if len(valid) < 2:
        raise ConfigError(
            f"check_featurizer needs at least two valid inputs, got {len(valid)}: pass a "
            "handful of real records"
        )
    expected = dict(expected_failed_checks or {})
    unknown = sorted(set(expected) - set(FEATURIZER_CHECKS))
    if unknown:
        raise ConfigError(
            f"expected_failed_checks names unknown checks {unknown}: use {list(FEATURIZER_CHECKS)}"
        )
    label = name or type(featurizer).__name__
    context = _Context(featurizer, valid, invalid, rtol, atol)
    failures: list[str] = []
    for check in FEATURIZER_CHECKS:
        try:
            _CHECKS[check](context)
        except AssertionError as exc:
            if check not in expected:
                failures.append(f"check {check!r} failed: {exc}")
        except Exception as exc:  # a check that crashes is a failed check, named
            if check not in expected:
                failures.append(f"check {check!r} raised {type(exc).__name__}: {exc}")
        else:
            if check in expected:
                failures.append(
                    f"check {check!r} passed but is listed in expected_failed_checks "
                    f"({expected[check]!r}): remove it from that list"
                )
    if failures:
        raise AssertionError(f"check_featurizer({label}):\n  " + "\n  ".join(failures))


# -- helpers --------------------------------------------------------------------------------


def _as_list(inputs: Iterable[object]) -> list:
    if isinstance(inputs, str):
        raise ConfigError(f"pass a list of inputs, not the single string {inputs[:40]!r}")
    if hasattr(inputs, "tolist"):  # pandas Series, numpy array
        return list(inputs.tolist())
    return list(inputs)


def _interleave(valid: list, invalid: list) -> tuple[list, list[int]]:
    """Valid inputs with the invalid ones spread between them; the invalid rows."""
    mixed: list = []
    bad_rows: list[int] = []
    step = max(1, len(valid) // (len(invalid) + 1))
    pending = list(invalid)
    for i, item in enumerate(valid):
        if pending and i > 0 and i % step == 0:
            bad_rows.append(len(mixed))
            mixed.append(pending.pop(0))
        mixed.append(item)
    for item in pending:
        bad_rows.append(len(mixed))
        mixed.append(item)
    return mixed, bad_rows


def _require(condition: object, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _values(batch) -> np.ndarray:
    return np.asarray(batch.values)


def _error_rows(batch) -> list[int]:
    return [int(e.row) for e in batch.errors]


def _same_batch(a, b, what: str) -> None:
    """Exactly equal values (NaN == NaN), ok and errors."""
    va, vb = _values(a), _values(b)
    _require(va.shape == vb.shape, f"{what}: values shape {vb.shape} != {va.shape}")
    _require(
        np.array_equal(va, vb, equal_nan=True),
        f"{what}: values differ in rows {_differing_rows(va, vb)}",
    )
    _require(
        np.array_equal(np.asarray(a.ok), np.asarray(b.ok)),
        f"{what}: ok {np.asarray(b.ok).tolist()} != {np.asarray(a.ok).tolist()}",
    )
    ea = [(int(e.row), e.reason) for e in a.errors]
    eb = [(int(e.row), e.reason) for e in b.errors]
    _require(ea == eb, f"{what}: errors {eb} != {ea}")


def _differing_rows(a: np.ndarray, b: np.ndarray, rtol: float = 0.0, atol: float = 0.0) -> list:
    with np.errstate(invalid="ignore"):
        close = np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    return np.flatnonzero(~close.all(axis=1)).tolist()[:10]


def _same_params(a: Mapping[str, Any], b: Mapping[str, Any], what: str) -> None:
    _require(set(a) == set(b), f"{what}: parameters {sorted(b)} != {sorted(a)}")
    for key in a:
        _require(_equal_param(a[key], b[key]), f"{what}: parameter {key}={b[key]!r} != {a[key]!r}")


def _equal_param(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if hasattr(a, "get_params") and hasattr(b, "get_params"):
        if type(a) is not type(b):
            return False
        pa, pb = a.get_params(deep=False), b.get_params(deep=False)
        return set(pa) == set(pb) and all(_equal_param(pa[k], pb[k]) for k in pa)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_equal_param(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    try:
        return bool(a == b)
    except Exception:  # objects whose == is not a truth value
        return False


def _raising(featurizer_factory: Callable[[], Any], inputs: list, what: str) -> None:
    """``transform`` in raise mode must raise a XenonscaleError."""
    featurizer = featurizer_factory()
    try:
        featurizer.transform(inputs)
    except XenonscaleError:
        return
    except Exception as exc:
        raise AssertionError(
            f"{what}: raised {type(exc).__name__}: {exc} (expected a XenonscaleError, "
            "e.g. FeaturizerError)"
        ) from exc
    raise AssertionError(f"{what}: no error raised")


# -- the checks ------------------------------------------------------------------------------


def _check_params(c: _Context) -> None:
    f = c.featurizer
    params = f.get_params()
    _require(isinstance(params, dict), f"get_params() returned {type(params).__name__}, not dict")
    _require(all(isinstance(k, str) for k in params), "get_params() keys are not all strings")
    _require("on_error" in params, f"no on_error parameter in get_params(): {sorted(params)}")
    clone = c.clone()  # sklearn's clone checks that __init__ stores its arguments unchanged
    _require(type(clone) is type(f), f"clone is a {type(clone).__name__}")
    _same_params(params, clone.get_params(), "clone(featurizer).get_params()")
    rebuilt = type(f)(**f.get_params(deep=False))
    _same_params(params, rebuilt.get_params(), "type(f)(**f.get_params())")
    returned = clone.set_params(**clone.get_params(deep=False))
    _require(returned is clone, "set_params(...) does not return the featurizer itself")
    _same_params(params, clone.get_params(), "set_params(**get_params())")
    try:
        clone.set_params(no_such_parameter_xyz=1)
    except (ValueError, XenonscaleError):
        pass
    else:
        raise AssertionError("set_params(no_such_parameter_xyz=1) was accepted")
    _same_batch(f.featurize_batch(c.valid), c.clone().featurize_batch(c.valid), "clone's results")


def _check_labels(c: _Context) -> None:
    f = c.featurizer
    labels = list(f.labels)
    _require(labels, "no labels")
    bad = [label for label in labels if not isinstance(label, str)]
    _require(not bad, f"labels that are not str: {bad[:5]!r}")
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    _require(not duplicated, f"duplicated labels: {duplicated[:5]!r}")
    _require(list(f.labels) == labels, "labels differ between two accesses")
    _require(list(c.clone().labels) == labels, "a clone has other labels")
    names = list(f.get_feature_names_out())
    _require(names == labels, "get_feature_names_out() != labels")
    width = _values(f.featurize_batch(c.valid[:1])).shape[1]
    _require(width == len(labels), f"{len(labels)} labels but {width} value columns")


def _check_empty_batch(c: _Context) -> None:
    f = c.featurizer
    batch = f.featurize_batch([])
    values, ok = _values(batch), np.asarray(batch.ok)
    d = len(f.labels)
    _require(values.shape == (0, d), f"values shape {values.shape} for [], expected (0, {d})")
    _require(ok.shape == (0,), f"ok shape {ok.shape} for []")
    _require(list(batch.errors) == [], f"errors for []: {batch.errors!r}")


def _check_batch_contract(c: _Context) -> None:
    f = c.featurizer
    n = len(c.mixed)
    batch = f.featurize_batch(c.mixed)
    values, ok = _values(batch), np.asarray(batch.ok)
    _require(values.ndim == 2, f"values have {values.ndim} dimensions, expected 2")
    _require(values.shape == (n, len(f.labels)), f"values shape {values.shape} for {n} inputs")
    _require(np.issubdtype(values.dtype, np.floating), f"values dtype {values.dtype} not float")
    _require(ok.dtype == np.bool_ and ok.shape == (n,), f"ok is {ok.dtype} {ok.shape}, not bool")
    rows = _error_rows(batch)
    _require(
        int(ok.sum()) + len(rows) == n, f"ok.sum() {int(ok.sum())} + {len(rows)} errors != {n}"
    )
    _require(rows == sorted(set(rows)), f"error rows not sorted and unique: {rows}")
    _require(rows == np.flatnonzero(~ok).tolist(), f"error rows {rows} are not the failed rows")
    for error in batch.errors:
        _require(
            isinstance(error.reason, str) and error.reason.strip(),
            f"error of row {error.row} has no reason: {error.reason!r}",
        )
    if len(rows):
        _require(np.isnan(values[~ok]).all(), "failed rows are not all NaN")
    good = [i for i in range(n) if i not in c.bad_rows]
    failed = [i for i in good if not ok[i]]
    _require(not failed, f"valid inputs failed: {_reasons(batch, failed, c.mixed)}")
    passed = [c.mixed[i] for i in c.bad_rows if ok[i]]
    _require(not passed, f"invalid inputs were featurized without error: {passed!r}")


def _reasons(batch, rows: list[int], inputs: list) -> list:
    by_row = {int(e.row): e.reason for e in batch.errors}
    return [(repr(inputs[r])[:60], by_row.get(r)) for r in rows]


def _check_on_error_raise(c: _Context) -> None:
    def by_set_params():
        return c.clone().set_params(on_error="raise")

    def by_attribute():
        clone = c.clone()
        clone.on_error = "raise"
        return clone

    head = c.valid[:2]
    for factory, how, invalid in (
        (by_set_params, "set_params(on_error='raise')", c.invalid),
        (by_attribute, "featurizer.on_error = 'raise'", c.invalid[:1]),
    ):
        clean = factory().transform(head)
        _require(len(clean) == len(head), f"{how}: transform of valid inputs lost rows")
        for bad in invalid:
            _raising(factory, [*head, bad], f"{how}; transform([..., {bad!r}])")
    if not c.invalid:
        return
    items = [*head, *c.invalid]
    try:
        batch = by_set_params().featurize_batch(items)
    except XenonscaleError:
        return
    except Exception as exc:
        raise AssertionError(
            f"on_error='raise'; featurize_batch(valid + invalid) raised {type(exc).__name__}: "
            f"{exc} (expected a XenonscaleError or error rows)"
        ) from exc
    passed = [
        item for item, ok in zip(items[len(head) :], batch.ok[len(head) :], strict=True) if ok
    ]
    _require(
        not passed,
        f"on_error='raise'; featurize_batch neither raised nor failed the rows of {passed!r}",
    )


def _check_on_error_validated(c: _Context) -> None:
    featurizer = c.clone().set_params(on_error="sometimes")
    try:
        featurizer.featurize_batch(c.valid[:1])
        featurizer.transform(c.valid[:1])
    except (XenonscaleError, ValueError):
        return
    raise AssertionError("on_error='sometimes' was accepted (featurize_batch and transform)")


def _check_pickle(c: _Context) -> None:
    fresh = c.clone()
    copy = pickle.loads(pickle.dumps(fresh))
    _require(type(copy) is type(fresh), f"unpickled as {type(copy).__name__}")
    _same_params(fresh.get_params(), copy.get_params(), "unpickled get_params()")
    reference = c.featurizer.featurize_batch(c.mixed)
    _same_batch(reference, copy.featurize_batch(c.mixed), "unpickled (fresh) featurizer")
    used = pickle.loads(pickle.dumps(c.featurizer))  # after use: caches must pickle too
    _require(list(used.labels) == list(c.featurizer.labels), "unpickled labels differ")
    _same_batch(reference, used.featurize_batch(c.mixed), "unpickled (used) featurizer")


def _check_deterministic(c: _Context) -> None:
    f = c.featurizer
    _same_batch(f.featurize_batch(c.mixed), f.featurize_batch(c.mixed), "second run")


def _check_batch_invariance(c: _Context) -> None:
    f = c.featurizer
    reference = f.featurize_batch(c.mixed)
    values, ok = _values(reference), np.asarray(reference.ok)
    reasons = {int(e.row): e.reason for e in reference.errors}
    order = np.random.default_rng(0).permutation(len(c.mixed))
    if len(order) > 1 and (order == np.arange(len(order))).all():
        order = order[::-1]
    subsets = {"shuffled batch": order.tolist()}
    good = [i for i in range(len(c.mixed)) if i not in c.bad_rows]
    subsets["valid rows only"] = good
    for i in good:
        subsets[f"row {i} alone"] = [i]
    for what, rows in subsets.items():
        batch = f.featurize_batch([c.mixed[i] for i in rows])
        got = _values(batch)
        want = values[rows]
        _require(got.shape == want.shape, f"{what}: values shape {got.shape} != {want.shape}")
        differ = _differing_rows(want, got, c.rtol, c.atol)
        _require(not differ, f"{what}: rows {[rows[k] for k in differ]} differ from the full batch")
        _require(
            np.array_equal(np.asarray(batch.ok), ok[rows]),
            f"{what}: ok differs from the full batch",
        )
        for error in batch.errors:
            row = rows[int(error.row)]
            _require(
                reasons.get(row) == error.reason,
                f"{what}: row {row} error {error.reason!r} != {reasons.get(row)!r}",
            )


def _check_transform(c: _Context) -> None:
    import pandas as pd

    f = c.clone()
    batch = f.featurize_batch(c.mixed)
    _require(f.fit(c.mixed) is f, "fit() does not return the featurizer")
    frame = f.transform(c.mixed)
    _require(isinstance(frame, pd.DataFrame), f"transform returned {type(frame).__name__}")
    _require(list(frame.columns) == list(f.labels), "transform's columns are not the labels")
    _require(len(frame) == len(c.mixed), f"transform gave {len(frame)} rows for {len(c.mixed)}")
    _require(frame.index.equals(pd.RangeIndex(len(c.mixed))), "transform(list) index is not 0..n-1")
    _require(
        np.array_equal(frame.to_numpy(), _values(batch), equal_nan=True),
        "transform's values differ from featurize_batch's",
    )
    errors = getattr(f, "errors_", None)
    _require(isinstance(errors, pd.DataFrame), "no errors_ DataFrame after transform")
    _require(
        list(errors.columns) == ["row", "input", "error"],
        f"errors_ columns {list(errors.columns)}, expected ['row', 'input', 'error']",
    )
    _require(
        errors["row"].tolist() == _error_rows(batch),
        f"errors_ rows {errors['row'].tolist()} != failed rows {_error_rows(batch)}",
    )
    index = pd.Index([f"r{i}" for i in range(len(c.mixed))])
    indexed = f.transform(pd.Series(c.mixed, index=index, dtype=object))
    _require(indexed.index.equals(index), "transform(Series) does not keep the Series' index")
    again = c.clone().fit_transform(c.mixed)
    _require(
        np.array_equal(again.to_numpy(), frame.to_numpy(), equal_nan=True),
        "fit_transform differs from transform",
    )
    empty = f.transform([])
    _require(empty.shape == (0, len(f.labels)), f"transform([]) shape {empty.shape}")


_CHECKS: dict[str, Callable[[_Context], None]] = {
    "params": _check_params,
    "labels": _check_labels,
    "empty_batch": _check_empty_batch,
    "batch_contract": _check_batch_contract,
    "on_error_raise": _check_on_error_raise,
    "on_error_validated": _check_on_error_validated,
    "pickle": _check_pickle,
    "deterministic": _check_deterministic,
    "batch_invariance": _check_batch_invariance,
    "transform": _check_transform,
}
if tuple(_CHECKS) != FEATURIZER_CHECKS:  # pragma: no cover - a check added to one list only
    raise ImportError("FEATURIZER_CHECKS and _CHECKS disagree")
