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

import ast
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError, FormulaError

__all__ = ["CompositionMatrix", "RowError", "parse_compositions", "parse_formula"]

N_ELEMENTS = len(PERIODIC_SYMBOLS)
_COLUMN_OF = {symbol: z - 1 for z, symbol in enumerate(PERIODIC_SYMBOLS, start=1)}
_ON_ERROR = ("record", "raise")

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
# Over the joined batch: an element with its amount (a decimal point, unless it
# starts the water-of-hydration form ".5H2O"), the row separator, or any other
# character (which sends the row to the general parser).
_BATCH_TOKEN = re.compile(r"([A-Z][a-z]?)(\d+(?:\.(?!\d+H2O(?![a-z\d]))\d+)?)?|(\n)|(.)")
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


def parse_compositions(inputs: Iterable[object], *, on_error: str = "record") -> CompositionMatrix:
    """Parse a batch of formulas / mappings / pymatgen compositions.

    Parameters
    ----------
    inputs
        Any iterable of inputs (see the module docstring for the forms).
    on_error : {"record", "raise"}
        ``"record"`` (default): bad rows become :class:`RowError` entries.
        ``"raise"``: the first bad row raises :class:`FormulaError`.

    Returns
    -------
    CompositionMatrix
    """
    if on_error not in _ON_ERROR:
        raise ConfigError(f"on_error={on_error!r} is not supported; use one of {_ON_ERROR}")
    items = inputs if isinstance(inputs, Sequence) and not isinstance(inputs, str) else list(inputs)
    n = len(items)
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    ok = np.zeros(n, dtype=bool)
    errors: list[RowError] = []

    string_rows = [i for i, x in enumerate(items) if type(x) is str and "\n" not in x]
    needs_general = _parse_plain_rows(items, string_rows, rows, cols, vals, ok, errors)
    string_mask = np.zeros(n, dtype=bool)
    string_mask[string_rows] = True
    general = sorted(np.flatnonzero(~string_mask).tolist() + needs_general)
    for i in general:
        try:
            parsed = _parse_any(items[i])
        except FormulaError as exc:
            errors.append(RowError(i, describe_input(items[i]), str(exc)))
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
        (np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64), cols)),
        shape=(n, N_ELEMENTS),
    )
    amounts.sum_duplicates()
    return CompositionMatrix(amounts=amounts, ok=ok, errors=errors)


def _parse_plain_rows(items, string_rows, rows, cols, vals, ok, errors) -> list[int]:
    """Whole-batch path: one regex scan over the strings joined by newlines.

    Rows made only of element symbols and amounts are finished here; rows with
    any other character (brackets, adducts, spaces, ...) or an empty string are
    returned for the general parser.
    """
    if not string_rows:
        return []
    text = "\n".join(items[i] for i in string_rows)
    tokens = _BATCH_TOKEN.findall(text)
    symbols = [t[0] for t in tokens]
    is_sep = np.fromiter((t[2] != "" for t in tokens), dtype=bool, count=len(tokens))
    is_other = np.fromiter((t[3] != "" for t in tokens), dtype=bool, count=len(tokens))
    token_row = np.cumsum(is_sep)
    elem = ~(is_sep | is_other)
    local_row = token_row[elem]
    col = np.fromiter(
        (_COLUMN_OF.get(s, -1) for s, e in zip(symbols, elem.tolist(), strict=True) if e),
        dtype=np.int64,
    )
    amount = np.fromiter(
        (float(t[1]) if t[1] else 1.0 for t, e in zip(tokens, elem.tolist(), strict=True) if e),
        dtype=np.float64,
    )
    n_local = len(string_rows)
    general = np.zeros(n_local, dtype=bool)
    general[token_row[is_other]] = True
    general[np.bincount(local_row, minlength=n_local) == 0] = True  # empty strings
    bad = np.zeros(n_local, dtype=bool)
    bad[local_row[(col < 0) | (amount <= 0)]] = True
    bad &= ~general
    local = np.asarray(string_rows, dtype=np.int64)
    for k in np.flatnonzero(bad).tolist():
        i = string_rows[k]
        errors.append(RowError(i, items[i], _plain_reason(items[i])))
    good = ~(bad | general)
    ok[local[good]] = True
    keep = good[local_row]
    rows.extend(local[local_row[keep]].tolist())
    cols.extend(col[keep].tolist())
    vals.extend(amount[keep].tolist())
    return local[general].tolist()


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
        stripped = item.strip()
        if stripped.startswith("{"):
            return _parse_mapping_text(stripped)
        return _parse_general(item)
    if isinstance(item, Mapping):
        return _parse_mapping(item)
    get_amounts = getattr(item, "get_el_amt_dict", None)
    if callable(get_amounts):
        return _parse_mapping(get_amounts())
    if item is None or (isinstance(item, float) and math.isnan(item)):
        raise FormulaError("empty input (None/NaN)")
    raise FormulaError(
        f"unsupported input type {type(item).__name__}: give a formula string, "
        "a {symbol: amount} mapping or a pymatgen Composition"
    )


def _parse_mapping_text(text: str) -> dict[int, float]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise FormulaError(f"not a valid mapping literal: {describe_input(text)!r}") from None
    if not isinstance(value, Mapping):
        raise FormulaError("braces must hold a {symbol: amount} mapping")
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
    return out


def _check_amount(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise FormulaError(f"non-finite amount {value!r} for {where}")
    if value <= 0:
        raise FormulaError(f"amount {value:g} for {where} must be positive")


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
    return total


def _parse_group(text: str) -> dict[int, float]:
    stack: list[tuple[str, dict[int, float]]] = [("", {})]
    # What a following number multiplies: the last element, or the group just closed.
    last_kind, last_element, last_group = "start", -1, {}
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FormulaError(f"unexpected character {text[pos]!r} at position {pos}")
        symbol, opening, closing, number = match.groups()
        pos = match.end()
        current = stack[-1][1]
        if symbol:
            column = _COLUMN_OF.get(symbol)
            if column is None:
                raise FormulaError(f"unknown element {symbol!r}")
            current[column] = current.get(column, 0.0) + 1.0
            last_kind, last_element = "element", column
        elif opening:
            stack.append((opening, {}))
            last_kind = "open"
        elif closing:
            if len(stack) == 1:
                raise FormulaError(f"unbalanced bracket: {closing!r} without an opening bracket")
            kind, group = stack.pop()
            if _CLOSING[kind] != closing:
                raise FormulaError(f"unbalanced bracket: {kind!r} closed by {closing!r}")
            if not group:
                raise FormulaError("empty brackets")
            _merge(stack[-1][1], group, 1.0)
            last_kind, last_group = "group", group
        else:
            value = float(number)
            if last_kind == "element":
                _check_amount(value, PERIODIC_SYMBOLS[last_element])
                current[last_element] += value - 1.0
            elif last_kind == "group":
                _check_amount(value, "a bracketed group")
                _merge(current, last_group, value - 1.0)
            else:
                raise FormulaError(f"number {number!r} at position {match.start()} has no element")
            last_kind = "number"
    if len(stack) > 1:
        raise FormulaError(f"unbalanced bracket: {stack[-1][0]!r} never closed")
    if not stack[0][1]:
        raise FormulaError("no element in formula")
    return stack[0][1]


def _merge(into: dict[int, float], group: dict[int, float], factor: float) -> None:
    for column, amount in group.items():
        into[column] = into.get(column, 0.0) + factor * amount
