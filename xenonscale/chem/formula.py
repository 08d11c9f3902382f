"""Chemical formulas → a sparse composition matrix, one batch at a time.

:func:`parse_compositions` turns a batch of inputs into a
:class:`CompositionMatrix`: a CSR matrix ``amounts[n, 118]`` (rows: inputs in
order, columns: elements H..Og by atomic number, values: amounts as written),
an ``ok`` mask and one :class:`RowError` per input that could not be parsed.
A bad row never raises (unless ``on_error="raise"``) and never hides the rest.

Accepted inputs
---------------
* formula strings: ``"Fe2O3"``, ``"Li0.5CoO2"``, nested brackets
  ``"(NH4)2[Fe(SO4)2]"``, whitespace ``"Fe2 O3"``, repeated elements ``"HOH"``;
* hydrates and adducts joined by ``·``, ``•``, ``*`` or ``.``, each part with an
  optional leading multiplier: ``"CuSO4·5H2O"``, ``"CuSO4*5H2O"``,
  ``"Na2CO3.H2O"``. A ``.`` between two digits is a decimal point
  (``"Fe0.5O"``) except in the water-of-hydration form ``"CuSO4.5H2O"``
  (``.`` + integer + ``H2O``), which is read as an adduct;
* mappings ``{"Fe": 2, "O": 3}`` and their string form ``"{'Fe': 2.0, 'O': 3.0}"``
  (XenonPy's quasicrystal file);
* pymatgen ``Composition`` objects (anything with ``get_el_amt_dict()``).

Amounts must be finite and at most ``max_amount`` per element, and a formula
unit at most ``max_formula_atoms`` in total; a text input is at most
``max_input_chars`` long (see :mod:`xenonscale.limits`): beyond
them the row is an error whose reason names the limit and the flag that
raises it. Any other failure on one row (however odd the input) becomes that
row's error, never the batch's.

The common case (plain element-amount strings) is parsed for the whole batch
with one regular-expression scan over the joined text; only rows with brackets,
adducts or other syntax take the general parser.

Examples
--------
>>> from xenonscale.chem import parse_compositions
>>> batch = parse_compositions(["Fe2O3", "CuSO4·5H2O", "Xx2"])
>>> batch.ok.tolist()
[True, True, False]
>>> batch.as_dicts()[1]
{'H': 10.0, 'O': 9.0, 'S': 1.0, 'Cu': 1.0}
>>> batch.errors[0].reason
"unknown element 'Xx'"
"""

from __future__ import annotations

import math
import operator
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError, FormulaError, XenonscaleError
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = ["CompositionMatrix", "RowError", "parse_compositions", "parse_formula"]

N_ELEMENTS = len(PERIODIC_SYMBOLS)
_COLUMN_OF = {symbol: z - 1 for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}
_ON_ERROR = ("record", "raise")

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Whole-batch path: split on element symbols. Valid text holds only symbols,
# digits, "." and the row separator; _JUNK finds anything else (including a
# lowercase letter that does not end a symbol, or a number that starts a row).
_SYMBOL_SPLIT = re.compile(r"([A-Z][a-z]?|\n)")
_SEPARATOR = -2
_JUNK = re.compile(r"[^A-Za-z0-9.\n]|(?<![A-Z])[a-z]|^[0-9.]", re.MULTILINE)
_HYDRATE_DOT = re.compile(r"(?<=\d)\.\d+H2O(?![a-z\d])")
# Every string _SYMBOL_SPLIT can capture -> column (or -1): lookups never miss.
_SYMBOL_COLUMN = {
    upper + lower: _COLUMN_OF.get(upper + lower, -1)
    for upper in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for lower in ["", *"abcdefghijklmnopqrstuvwxyz"]
} | {"\n": _SEPARATOR}
# Tails seen most often -> amount; anything else goes through float().
_COMMON_AMOUNTS = {"": 1.0} | {str(i): float(i) for i in range(1, 201)}
# General parser tokens.
_TOKEN = re.compile(rf"([A-Z][a-z]?)|([(\[{{])|([)\]}}])|({_NUMBER})")
_LEADING_NUMBER = re.compile(rf"\s*({_NUMBER})")
# Adduct separators: "·", "•", "*", a "." before a non-digit, and the "." of the
# water-of-hydration form "CuSO4.5H2O" (digits after an element or bracket).
_ADDUCT_SPLIT = re.compile(
    r"[·•∙*]|\.(?=[^\d])"
    r"|(?:(?<=[A-Za-z)\]]\d)|(?<=[A-Za-z)\]]\d\d))\.(?=\d+H2O(?![a-z\d]))"
)
_WHITESPACE = re.compile(r"\s+")
# One "'Fe': 2.0," item of a mapping literal (XenonPy's quasicrystal file): read
# item by item from a position, so the text is scanned once (no eval, no AST).
_MAPPING_ITEM = re.compile(r"""\s*(['"])([^'"]{1,8})\1\s*:([^,}]*)(,|\})""")
_CLOSING = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class RowError:
    """One input that could not be used: its 0-based ``row``, the ``input`` and why."""

    row: int
    input: str
    reason: str


@dataclass(frozen=True)
class CompositionMatrix:
    """A parsed batch.

    Attributes
    ----------
    amounts : scipy.sparse.csr_matrix
        ``float64[n, 118]``; column ``Z - 1`` holds the amount of element ``Z``.
        Rows that failed are empty.
    ok : numpy.ndarray
        ``bool[n]``: True where the input was parsed.
    errors : list of RowError
        One entry per failed row, in row order.
    """

    amounts: sp.csr_matrix
    ok: np.ndarray
    errors: list[RowError]

    def __len__(self) -> int:
        return self.amounts.shape[0]

    def fractions(self) -> sp.csr_matrix:
        """Amounts normalized to sum to 1 per row (failed rows stay empty)."""
        totals = np.asarray(self.amounts.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / totals) @ self.amounts)

    def as_dicts(self) -> list[dict[str, float] | None]:
        """Rows as ``{symbol: amount}`` (None for failed rows); for inspection, not speed."""
        out: list[dict[str, float] | None] = []
        m = self.amounts
        for i in range(m.shape[0]):
            if not self.ok[i]:
                out.append(None)
                continue
            cols = m.indices[m.indptr[i] : m.indptr[i + 1]]
            vals = m.data[m.indptr[i] : m.indptr[i + 1]]
            out.append({PERIODIC_SYMBOLS[c]: float(v) for c, v in zip(cols, vals, strict=True)})
        return out


def parse_formula(formula: str) -> dict[str, float]:
    """Parse one formula string; raises :class:`FormulaError` with the reason.

    >>> parse_formula("Ca3(PO4)2")
    {'Ca': 3.0, 'P': 2.0, 'O': 8.0}
    """
    columns = _parse_general(formula)
    return {PERIODIC_SYMBOLS[c]: v for c, v in columns.items()}


# The last batch parsed in this thread (its items, result and limits): several
# featurizers of one union, and the engine's composition slots, parse the same
# partition; the second and later calls get the first one's result.
_CACHE = threading.local()


def parse_compositions(
    inputs: Iterable[object], *, on_error: str = "record", cache: bool = True
) -> CompositionMatrix:
    """Parse a batch of formulas / mappings / pymatgen compositions.

    Parameters
    ----------
    inputs
        Any iterable of inputs (see the module docstring for the forms).
    on_error : {"record", "raise"}
        ``"record"`` (default): bad rows become :class:`RowError` entries.
        ``"raise"``: the first bad row raises :class:`FormulaError`.
    cache
        Reuse the previous batch parsed in this thread when ``inputs`` holds
        the very same text objects under the same record limits (a union of
        composition featurizers, and the engine's composition slots, parse a
        partition once). The result is shared: treat it as read-only.

    Returns
    -------
    CompositionMatrix
    """
    if on_error not in _ON_ERROR:
        raise ConfigError(f"on_error={on_error!r} is not supported; use one of {_ON_ERROR}")
    items = inputs if isinstance(inputs, Sequence) and not isinstance(inputs, str) else list(inputs)
    limits = current_limits()
    cache = cache and on_error == "record"
    cached = getattr(_CACHE, "last", None) if cache else None
    if (
        cached is not None
        and cached[2] == limits  # other budgets give other error rows
        and len(cached[0]) == len(items)
        and all(map(operator.is_, cached[0], items))
    ):
        return cached[1]
    result = _parse_batch(items, on_error, limits)
    if cache and all(isinstance(x, str) or x is None for x in items):
        _CACHE.last = (list(items), result, limits)
    elif cache:
        _CACHE.last = None
    return result


def _parse_batch(items: Sequence[object], on_error: str, limits) -> CompositionMatrix:
    n = len(items)
    ok = np.zeros(n, dtype=bool)
    errors: list[RowError] = []

    string_rows = _plain_string_rows(items, limits.max_input_chars)
    plain = _parse_plain_rows(items, string_rows, ok, errors, limits)
    is_string = np.zeros(n, dtype=bool)
    is_string[string_rows] = True
    general = sorted(np.flatnonzero(~is_string).tolist() + plain.general)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    for i in general:
        try:
            parsed = run_record(_parse_any, items[i])
        except FormulaError as exc:
            errors.append(RowError(i, describe_input(items[i]), str(exc)))
            continue
        except XenonscaleError:
            raise
        except (Exception, RecordTimeout) as exc:  # anything one odd input can raise
            errors.append(RowError(i, describe_input(items[i]), failure_reason(exc)))
            continue
        ok[i] = True
        rows.extend([i] * len(parsed))
        cols.extend(parsed.keys())
        vals.extend(parsed.values())

    if on_error == "raise" and errors:
        first = min(errors, key=lambda e: e.row)
        raise FormulaError(f"row {first.row}: {first.input!r}: {first.reason}")
    errors.sort(key=lambda e: e.row)
    amounts = sp.csr_matrix(
        (
            np.concatenate([plain.vals, np.asarray(vals, dtype=np.float64)]),
            (
                np.concatenate([plain.rows, np.asarray(rows, dtype=np.int64)]),
                np.concatenate([plain.cols, np.asarray(cols, dtype=np.int64)]),
            ),
        ),
        shape=(n, N_ELEMENTS),
    )
    amounts.sum_duplicates()
    return CompositionMatrix(amounts=amounts, ok=ok, errors=errors)


def _plain_string_rows(items: Sequence[object], max_chars: int) -> list[int]:
    """Rows eligible for the whole-batch path: strings without newlines, not too long."""
    try:
        text = "\n".join(items)
        if text.count("\n") == len(items) - 1 and len(text) <= max_chars:
            return list(range(len(items)))  # all strings, no newlines, none too long
    except TypeError:
        pass
    return [
        i for i, x in enumerate(items) if type(x) is str and "\n" not in x and len(x) <= max_chars
    ]


@dataclass(frozen=True)
class _PlainResult:
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    general: list[int]


def _parse_plain_rows(items, string_rows, ok, errors, limits) -> _PlainResult:
    """Whole-batch path: one split of all strings joined by newlines.

    ``_SYMBOL_SPLIT`` cuts the text into ``[head, token, tail, token, tail, ...]``
    where a token is an element symbol or the row separator and a tail holds
    the amount of the symbol before it. Rows made only of symbols and amounts
    are finished here. Rows with any other character (brackets, adducts,
    spaces, stray lowercase, ...), the hydrate form ``CuSO4.5H2O`` and malformed
    numbers are returned in ``general`` for the general parser.
    """
    empty = np.zeros(0, dtype=np.int64)
    if not string_rows:
        return _PlainResult(empty, empty, np.zeros(0), [])
    strings = [items[i] for i in string_rows]
    n_local = len(strings)
    text = "\n".join(strings)
    parts = _SYMBOL_SPLIT.split(text)
    tokens, tails = parts[1::2], parts[2::2]
    column = np.fromiter(map(_SYMBOL_COLUMN.__getitem__, tokens), dtype=np.int64, count=len(tokens))
    is_separator = column == _SEPARATOR
    token_row = np.cumsum(is_separator)
    is_symbol = ~is_separator
    symbol_row = token_row[is_symbol]
    column = column[is_symbol]

    general = np.bincount(symbol_row, minlength=n_local) == 0  # empty or symbol-free rows
    junk = [m.start() for m in _JUNK.finditer(text)]
    if "H2O" in text:
        junk.extend(m.start() for m in _HYDRATE_DOT.finditer(text))
    if junk:
        lengths = np.fromiter(map(len, strings), dtype=np.int64, count=n_local)
        general[np.searchsorted(np.cumsum(lengths + 1) - 1, junk)] = True

    symbol_tails = [t for t, keep in zip(tails, is_symbol.tolist(), strict=True) if keep]
    amount = np.array(list(map(_COMMON_AMOUNTS.get, symbol_tails)), dtype=np.float64)
    for k in np.flatnonzero(np.isnan(amount)).tolist():
        try:
            amount[k] = float(symbol_tails[k])
        except ValueError:  # e.g. "1.2.3": the general parser names the problem
            general[symbol_row[k]] = True

    bad = np.zeros(n_local, dtype=bool)
    bad[symbol_row[(column < 0) | ~(amount > 0) | ~(amount <= limits.max_amount)]] = True
    # Totals per element (repeated symbols add up) and per formula unit.
    key = symbol_row * N_ELEMENTS + np.maximum(column, 0)
    keys, inverse = np.unique(key, return_inverse=True)
    per_element = np.bincount(inverse.ravel(), weights=amount, minlength=len(keys))
    bad[keys[~(per_element <= limits.max_amount)] // N_ELEMENTS] = True
    bad |= ~(np.bincount(symbol_row, weights=amount, minlength=n_local) <= limits.max_formula_atoms)
    bad &= ~general
    local = np.asarray(string_rows, dtype=np.int64)
    for k in np.flatnonzero(bad).tolist():
        i = string_rows[k]
        errors.append(RowError(i, items[i], _plain_reason(items[i])))
    good = ~(bad | general)
    ok[local[good]] = True
    keep = good[symbol_row]
    return _PlainResult(
        rows=local[symbol_row[keep]],
        cols=column[keep],
        vals=amount[keep],
        general=local[general].tolist(),
    )


def _plain_reason(formula: str) -> str:
    try:
        _parse_general(formula)
    except FormulaError as exc:
        return str(exc)
    return "invalid formula"  # pragma: no cover - the fast path and general parser agree


def describe_input(item: object) -> str:
    """A short text form of an input for error tables (at most 200 characters)."""
    text = item if isinstance(item, str) else repr(item)
    return text if len(text) <= 200 else text[:197] + "..."


def _parse_any(item: object) -> dict[int, float]:
    if isinstance(item, str):
        limits = current_limits()
        if len(item) > limits.max_input_chars:
            raise FormulaError(
                limits.limit_reason(
                    "max_input_chars", len(item), f"input of {len(item)} characters"
                )
            )
        stripped = item.strip()
        if stripped.startswith("{"):
            return _parse_mapping_text(stripped)
        return _parse_general(item)
    get_amounts = getattr(item, "get_el_amt_dict", None)
    if callable(get_amounts):  # pymatgen Composition (a Mapping whose keys may be Species)
        return _parse_mapping(get_amounts())
    if isinstance(item, Mapping):
        return _parse_mapping(item)
    if item is None or (isinstance(item, float) and math.isnan(item)):
        raise FormulaError("empty input (None/NaN)")
    raise FormulaError(
        f"unsupported input type {type(item).__name__}: give a formula string, "
        "a {symbol: amount} mapping or a pymatgen Composition"
    )


def _parse_mapping_text(text: str) -> dict[int, float]:
    """``"{'Fe': 2, 'O': 3.0}"`` read item by item in one pass (quoted symbols, plain numbers)."""
    value: dict[str, str] = {}
    pos = 1
    if re.match(r"\{\s*\}\Z", text):
        raise FormulaError("empty composition")
    while True:
        match = _MAPPING_ITEM.match(text, pos)
        if match is None:
            raise FormulaError(
                f"not a {{symbol: amount}} mapping literal at position {pos}: "
                f"{describe_input(text)!r} (write e.g. {{'Fe': 2, 'O': 3}})"
            )
        symbol, amount, end = match.group(2), match.group(3).strip().strip("'\""), match.group(4)
        if symbol in value:
            raise FormulaError(f"element {symbol!r} appears twice in the mapping")
        value[symbol] = amount
        pos = match.end()
        if end == "}":
            break
    if text[pos:].strip():
        raise FormulaError(f"text after the mapping's closing brace: {text[pos : pos + 20]!r}")
    return _parse_mapping(value)


def _parse_mapping(mapping: Mapping) -> dict[int, float]:
    if not mapping:
        raise FormulaError("empty composition")
    out: dict[int, float] = {}
    for symbol, amount in mapping.items():
        column = _COLUMN_OF.get(str(symbol).strip())
        if column is None:
            raise FormulaError(f"unknown element {symbol!r}")
        try:
            value = float(amount)
        except (TypeError, ValueError):
            raise FormulaError(f"amount {amount!r} of {symbol} is not a number") from None
        _check_amount(value, str(symbol))
        out[column] = out.get(column, 0.0) + value
    return _check_totals(out)


def _check_amount(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise FormulaError(f"non-finite amount {value!r} for {where} (a number too large?)")
    if value <= 0:
        raise FormulaError(f"amount {value:g} for {where} must be positive")
    limits = current_limits()
    if not value <= limits.max_amount:
        raise FormulaError(limits.limit_reason("max_amount", value, f"amount {value:g} of {where}"))


def _check_totals(amounts: dict[int, float]) -> dict[int, float]:
    """Per-element totals ≤ ``max_amount`` and their sum ≤ ``max_formula_atoms``."""
    limits = current_limits()
    for column, value in amounts.items():
        if not value <= limits.max_amount:
            where = f"total amount {value:g} of {PERIODIC_SYMBOLS[column]}"
            raise FormulaError(limits.limit_reason("max_amount", value, where))
    total = math.fsum(amounts.values())
    if not total <= limits.max_formula_atoms:
        raise FormulaError(
            limits.limit_reason("max_formula_atoms", total, f"formula unit of {total:g} atoms")
        )
    return amounts


def _parse_general(formula: str) -> dict[int, float]:
    """Brackets, adducts, whitespace; raises FormulaError with a precise reason."""
    text = _WHITESPACE.sub("", formula)
    if not text:
        raise FormulaError("empty formula")
    total: dict[int, float] = {}
    for part in _ADDUCT_SPLIT.split(text):
        if not part:
            raise FormulaError("empty part around an adduct separator")
        multiplier = 1.0
        lead = _LEADING_NUMBER.match(part)
        if lead:
            multiplier = float(lead.group(1))
            _check_amount(multiplier, "adduct multiplier")
            part = part[lead.end() :]
            if not part:
                raise FormulaError("adduct multiplier without a formula")
        for column, amount in _parse_group(part).items():
            total[column] = total.get(column, 0.0) + multiplier * amount
    return _check_totals(total)


def _parse_group(text: str) -> dict[int, float]:
    """Brackets and amounts of one adduct part (no separators, no whitespace)."""
    stack: list[tuple[str, dict[int, float]]] = [("", {})]
    # The last element or closed group waits here until we know its amount.
    pending: dict[int, float] | None = None
    multiplier: float | None = None
    pending_label = ""

    def flush() -> None:
        if pending is not None:
            _merge(stack[-1][1], pending, 1.0 if multiplier is None else multiplier)

    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FormulaError(f"unexpected character {text[pos]!r} at position {pos}")
        symbol, opening, closing, number = match.groups()
        pos = match.end()
        if number:
            if pending is None or multiplier is not None:
                raise FormulaError(f"number {number!r} at position {match.start()} has no element")
            multiplier = float(number)
            _check_amount(multiplier, pending_label)
            continue
        flush()
        pending, multiplier = None, None
        if symbol:
            column = _COLUMN_OF.get(symbol)
            if column is None:
                raise FormulaError(f"unknown element {symbol!r}")
            pending, pending_label = {column: 1.0}, symbol
        elif opening:
            stack.append((opening, {}))
        else:
            if len(stack) == 1:
                raise FormulaError(f"unbalanced bracket: {closing!r} without an opening bracket")
            kind, group = stack.pop()
            if _CLOSING[kind] != closing:
                raise FormulaError(f"unbalanced bracket: {kind!r} closed by {closing!r}")
            if not group:
                raise FormulaError("empty brackets")
            pending, pending_label = group, "a bracketed group"
    flush()
    if len(stack) > 1:
        raise FormulaError(f"unbalanced bracket: {stack[-1][0]!r} never closed")
    if not stack[0][1]:
        raise FormulaError("no element in formula")
    return stack[0][1]


def _merge(into: dict[int, float], group: dict[int, float], factor: float) -> None:
    for column, amount in group.items():
        into[column] = into.get(column, 0.0) + factor * amount
