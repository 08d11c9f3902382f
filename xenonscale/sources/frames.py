"""Building a partition's DataFrame: ``row``, ``id``, ``input`` and typed extras.

Text fields are typed the way :func:`pandas.read_csv` types a whole column:
pandas' missing-value markers become NaN, a column whose other values all parse
as numbers becomes numeric, ``True``/``False`` becomes bool, anything else stays
text. Typing is per partition, so a column can be numeric in one partition and
text in another that holds a garbage value; consumers coerce by column kind.

Examples
--------
>>> from xenonscale.sources.frames import infer_column, guess_kind
>>> infer_column(["1", "", "2.5"]).tolist()
[1.0, nan, 2.5]
>>> guess_kind("cif"), guess_kind("SMILES"), guess_kind("formula")
('structure', 'molecule', 'composition')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "NA_STRINGS",
    "build_frame",
    "docs_frame",
    "guess_kind",
    "infer_column",
    "scalar_fields",
]

#: pandas' default missing-value markers (``pandas.read_csv(na_values=...)``).
NA_STRINGS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
     "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)  # fmt: skip
_TRUE = frozenset({"True", "TRUE", "true"})
_FALSE = frozenset({"False", "FALSE", "false"})
_SCALARS = (str, int, float, bool, type(None))


def guess_kind(column: str | None) -> str:
    """``structure`` for cif/poscar/structure columns, ``molecule`` for SMILES, else composition."""
    name = (column or "").lower()
    if "smiles" in name or name in ("smi", "mol", "molblock", "sdf"):
        return "molecule"
    if any(word in name for word in ("cif", "poscar", "structure")):
        return "structure"
    return "composition"


def infer_column(values: Sequence[str | None]) -> pd.Series:
    """Type a column of text fields (``None`` = missing field) like ``pandas.read_csv``."""
    text = pd.Series(values, dtype=object)
    missing = text.isna() | text.isin(NA_STRINGS)
    if missing.all():
        return pd.Series(np.nan, index=text.index, dtype=np.float64)
    present = text[~missing]
    numbers = pd.to_numeric(text.mask(missing), errors="coerce")
    if not numbers[~missing].isna().any():
        return numbers
    labels = set(present.unique())
    if labels <= _TRUE | _FALSE:
        flags = text.map(lambda v: v in _TRUE)
        return flags.astype(bool) if not missing.any() else flags.mask(missing, np.nan)
    return text.mask(missing, np.nan)


def build_frame(
    start: int,
    ids: Sequence[Any] | None,
    inputs: Sequence[Any],
    extras: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The contract's frame: ``row`` int64 from ``start``, ``id`` str, ``input``, extras.

    A missing (None/NaN) or empty id becomes the row number as text; a missing
    input or an empty input string becomes ``None``.
    """
    n = len(inputs)
    values = np.fromiter(inputs, dtype=object, count=n)  # lists stay single items
    rows = np.arange(start, start + n, dtype=np.int64)
    row_text = rows.astype(str).astype(object)
    if ids is None:
        id_values = row_text
    else:
        id_series = pd.Series(ids, dtype=object)
        missing = (id_series.isna() | (id_series == "")).to_numpy()
        id_values = id_series.map(str).to_numpy(dtype=object) if n else row_text
        id_values[missing] = row_text[missing]
    blank = pd.isna(values) | (values == "")
    values[blank] = None
    # object columns: pandas 3 would infer its string dtype, whose missing value is NaN
    data: dict[str, Any] = {
        "row": rows,
        "id": pd.Series(id_values, dtype=object),
        "input": pd.Series(values, dtype=object),
    }
    for name, column in (extras or {}).items():
        if name not in data:
            data[name] = column.to_numpy() if isinstance(column, pd.Series) else column
    return pd.DataFrame(data)


def scalar_fields(doc: Mapping[str, Any], exclude: Sequence[str | None] = ()) -> list[str]:
    """Names of a document's scalar (str, number, bool, null) fields, minus ``exclude``."""
    return [k for k, v in doc.items() if isinstance(v, _SCALARS) and k not in exclude]


def _column(values: list[Any]) -> pd.Series:
    series = pd.Series(values, dtype=object)
    converted = series.infer_objects()
    return converted if converted.dtype != object else series


def docs_frame(
    docs: Sequence[Any],
    start: int,
    column: str | None,
    id_column: str | None,
    extras: Sequence[str],
) -> pd.DataFrame:
    """Frame from JSON documents; a document that is not an object gives ``input=None``."""
    ids, inputs = [], []
    columns: dict[str, list[Any]] = {name: [] for name in extras}
    for doc in docs:
        ok = isinstance(doc, Mapping)
        ids.append(doc.get(id_column) if ok and id_column else None)
        inputs.append(doc.get(column) if ok and column else None)
        for name, values in columns.items():
            value = doc.get(name) if ok else None
            values.append(value if isinstance(value, _SCALARS) else None)
    typed = {name: _column(values) for name, values in columns.items()}
    return build_frame(start, ids if id_column else None, inputs, typed)
