"""Line sources: JSON Lines documents and ``.smi`` SMILES files (one record per line).

Every non-blank line is one record, so the scan only counts newlines (numpy,
hundreds of MB/s). A JSON line that does not parse, or is not an object, gives
``input=None`` (the featurizer records the error); it never shifts rows.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from xenonscale.datasets import fetch
>>> from xenonscale.sources.lines import JsonLinesSource, SmilesSource
>>> path = Path(tempfile.mkdtemp()) / "mp_docs.jsonl"
>>> _ = path.write_text('{"material_id": "mp-149", "structure": {}, "band_gap": 0.6}\\n')
>>> docs = JsonLinesSource(str(path))
>>> docs.column, docs.id_column, docs.kind
('structure', 'material_id', 'structure')
>>> SmilesSource(str(fetch("nci_first_5k"))).plan(1000)[0]  # doctest: +REQUIRES_DATA
4999
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from xenonscale.errors import ConfigError
from xenonscale.sources.frames import build_frame, docs_frame, guess_kind, scalar_fields
from xenonscale.sources.stream import DEFAULT_BLOCK_SIZE, OffsetSource, iter_lines

__all__ = ["JsonLinesSource", "SmilesSource", "default_doc_column", "default_doc_id"]

_INPUT_KEYS = ("structure", "formula", "composition", "cif", "smiles", "SMILES", "poscar")
_ID_KEYS = ("material_id", "task_id", "mp_id", "id")


def split_lines(data: bytes, encoding: str = "utf-8") -> list[str]:
    """The non-blank lines of ``data`` (the same rule the scan counts by)."""
    text = data.decode(encoding, "replace")
    return [
        line[:-1] if line[-1] == "\r" else line
        for line in text.split("\n")
        if line and line != "\r"
    ]


def default_doc_column(keys: list[str]) -> str | None:
    """``structure``/``formula``/... if a document has it, else its first key."""
    for key in _INPUT_KEYS:
        if key in keys:
            return key
    return keys[0] if keys else None


def default_doc_id(keys: list[str]) -> str | None:
    """``material_id`` (or ``task_id``, ``mp_id``, ``id``) when present."""
    return next((key for key in _ID_KEYS if key in keys), None)


def _loads(line: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return None


class JsonLinesSource(OffsetSource):
    """JSON Lines (``.jsonl``/``.ndjson``): one JSON object per line.

    ``input`` is the ``column`` field (default ``structure``, ``formula``, ...;
    a structure dict stays a dict), ``id`` the ``id_column`` field (default
    ``material_id`` when present, else the row number), extras the scalar
    fields of the first readable document (the same columns for every
    partition; nested fields other than ``column`` are left out).
    """

    format = "jsonl"

    def __init__(
        self,
        url: str,
        *,
        column: str | None = None,
        id_column: str | None = None,
        kind: str | None = None,
        encoding: str = "utf-8",
        storage_options: dict | None = None,
        compression: str | None = "infer",
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        super().__init__(
            url,
            storage_options=storage_options,
            compression=compression,
            block_size=block_size,
            kind=kind,
        )
        self.encoding = encoding
        first = self._first_document()
        keys = list(first)
        for name, value in (("column", column), ("id_column", id_column)):
            if value is not None and first and value not in keys:
                raise ConfigError(
                    f"{name}={value!r} is not a field of the first document of {self.url!r} "
                    f"(fields: {keys}); pass one of them"
                )
        self.column = column if column is not None else default_doc_column(keys)
        self.id_column = id_column if id_column is not None else default_doc_id(keys)
        self.extras = scalar_fields(first, exclude=(self.column, self.id_column))
        sample = first.get(self.column) if self.column else None
        self.kind = kind or ("structure" if isinstance(sample, dict) else guess_kind(self.column))

    def _first_document(self, limit: int = 1000) -> dict:
        with self._open() as f:
            for i, line in enumerate(iter_lines(f, 1 << 20)):
                doc = _loads(line.decode(self.encoding, "replace")) if line.strip() else None
                if isinstance(doc, dict):
                    return doc
                if i >= limit:
                    break
        return {}

    def _parse(self, data: bytes, start: int) -> pd.DataFrame:
        docs = [_loads(line) for line in split_lines(data, self.encoding)]
        return docs_frame(docs, start, self.column, self.id_column, self.extras)

    def describe(self) -> dict:
        return super().describe() | {"id_column": self.id_column}


class SmilesSource(OffsetSource):
    """A ``.smi`` file: ``SMILES [whitespace name]`` per line; kind ``molecule``.

    ``id`` is the name (rest of the line) or the row number. A first line whose
    first token is ``smiles`` (any case) is a header and skipped; force with
    ``header=True``/``False``.
    """

    format = "smi"
    column = "smiles"

    def __init__(
        self,
        url: str,
        *,
        kind: str | None = None,
        header: bool | None = None,
        encoding: str = "utf-8",
        storage_options: dict | None = None,
        compression: str | None = "infer",
        block_size: int = DEFAULT_BLOCK_SIZE,
    ) -> None:
        super().__init__(
            url,
            storage_options=storage_options,
            compression=compression,
            block_size=block_size,
            kind=kind or "molecule",
        )
        self.encoding = encoding
        with self._open() as f:
            first = next(iter_lines(f, 1 << 16), b"")
        if header is None:
            token = first.split(None, 1)[0].lower() if first.strip() else b""
            header = token in (b"smiles", b"smi")
        self.header = bool(header)
        self.data_offset = len(first) if self.header else 0

    def _parse(self, data: bytes, start: int) -> pd.DataFrame:
        parts = [line.split(None, 1) for line in split_lines(data, self.encoding)]
        inputs = [p[0] if p else None for p in parts]
        ids = [p[1].strip() if len(p) > 1 else None for p in parts]
        return build_frame(start, ids, inputs)
