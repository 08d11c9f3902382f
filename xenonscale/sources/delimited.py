"""CSV and TSV sources: one record per CSV record, quoted newlines included.

Record boundaries come from one rule, used by both :meth:`~DelimitedSource.plan`
and :meth:`~DelimitedSource.read`: a line without a quote character is one
record (split on the delimiter); a line with one is handed to :mod:`csv`, which
may pull more lines for a quoted field spanning lines (CIF text in a column).
Blank lines are skipped. The scan counts newlines with numpy until it meets the
first quote character, then walks records line by line (~1–2 M rows/s).

Malformed records never shift rows: a short record gets NaN extras (and
``input=None`` when its input field is missing), a long one keeps its first N
fields, undecodable bytes are replaced (U+FFFD), an empty input cell gives
``input=None``, a record :mod:`csv` rejects is split on the delimiter as is.
An unterminated quote runs to the next closing quote (CSV semantics).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "formulas.csv"
>>> _ = path.write_text("formula,target\\nFe2O3,1.5\\nNaCl,2.0\\nSiO2,8.9\\n")
>>> from xenonscale.sources.delimited import DelimitedSource
>>> source = DelimitedSource(str(path), column="formula")
>>> total, partitions = source.plan(50_000)
>>> source.read(partitions[0]).columns.tolist()
['row', 'id', 'input', 'target']
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.csvrecords import chain_lines, header_names, iter_records
from xenonscale.sources.frames import NA_STRINGS, build_frame, guess_kind, infer_column
from xenonscale.sources.stream import (
    DEFAULT_BLOCK_SIZE,
    OffsetSource,
    iter_line_blocks,
    iter_lines,
    nonblank_line_starts,
)

__all__ = ["DelimitedSource"]

_BOM = b"\xef\xbb\xbf"


class DelimitedSource(OffsetSource):
    """A CSV/TSV file with a header row (see the module docstring for the record rule).

    Parameters
    ----------
    url
        Path or fsspec URL (``.gz``/``.bz2``/``.xz`` decompressed transparently).
    column
        The input column; default ``formula`` if present, else the first column
        that is not the id column.
    id_column
        The id column; default the unnamed index column if the file has one
        (a pandas ``to_csv`` index), else the row number.
    kind
        ``composition | structure | molecule``; default guessed from ``column``.
    delimiter
        Field separator (``","``; ``"\\t"`` for ``format="tsv"``).
    encoding
        Text encoding; undecodable bytes are replaced.
    storage_options, compression, block_size
        See :class:`~xenonscale.sources.stream.FileSource`.
    """

    format = "csv"

    def __init__(
        self,
        url: str,
        *,
        column: str | None = None,
        id_column: str | None = None,
        kind: str | None = None,
        delimiter: str = ",",
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
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise ConfigError(f"delimiter={delimiter!r} must be one character, e.g. ',' or '\\t'")
        self.delimiter = delimiter
        self.encoding = encoding
        self.format = "tsv" if delimiter == "\t" else "csv"
        self.columns, self.data_offset = self._read_header()
        if not self.columns and (column is not None or id_column is not None):
            raise SourceError(
                f"{self.url!r} is empty (no header line), so it has no column "
                f"{column if column is not None else id_column!r}: check the file"
            )
        self.id_column = self._resolve_id(id_column)
        self.column = self._resolve_column(column)
        self.kind = kind or guess_kind(self.column)

    def _read_header(self) -> tuple[list[str], int]:
        with self._open() as f:
            head = f.read(3)
            skip = 3 if head == _BOM else 0
            f.seek(skip)
            for _, end, fields in iter_records(
                iter_lines(f, 1 << 20), self.delimiter, self.encoding
            ):
                return header_names(fields or []), skip + end
        return [], skip

    def _resolve_id(self, id_column: str | None) -> str | None:
        if id_column is not None:
            if id_column not in self.columns:
                raise ConfigError(
                    f"id_column={id_column!r} is not a column of {self.url!r} "
                    f"(columns: {self.columns}); pass one of them or None for row numbers"
                )
            return id_column
        first = self.columns[0] if self.columns else None
        return first if first is not None and first.startswith("Unnamed: ") else None

    def _resolve_column(self, column: str | None) -> str | None:
        if column is not None:
            if column not in self.columns:
                raise ConfigError(
                    f"column={column!r} is not a column of {self.url!r} "
                    f"(columns: {self.columns}); pass one of them"
                )
            return column
        if "formula" in self.columns:
            return "formula"
        rest = [name for name in self.columns if name != self.id_column]
        return rest[0] if rest else None

    def _record_starts(self, f: IO[bytes]) -> Iterator[np.ndarray]:
        f.seek(self.data_offset)
        base = self.data_offset
        blocks = iter_line_blocks(f, self.block_size)
        for block in blocks:
            if b'"' in block:
                break
            yield nonblank_line_starts(block) + base
            base += len(block)
        else:
            return
        lines = chain_lines(block, blocks)
        starts: list[int] = []
        for start, _, _ in iter_records(lines, self.delimiter, self.encoding, parse=False):
            starts.append(start)
            if len(starts) >= 1 << 16:
                yield np.asarray(starts, dtype=np.int64) + base
                starts = []
        yield np.asarray(starts, dtype=np.int64) + base

    def records(self, data: bytes) -> list[list[str]]:
        """Split bytes holding whole records into field lists (before fixing their length)."""
        if b'"' not in data:
            text = data.decode(self.encoding, "replace")
            d = self.delimiter
            return [
                (line[:-1] if line[-1] == "\r" else line).split(d)
                for line in text.split("\n")
                if line and line != "\r"
            ]
        lines = chain_lines(data)
        return [fields for _, _, fields in iter_records(lines, self.delimiter, self.encoding)]

    def _read_c(self, buffer: io.IOBase, **options) -> pd.DataFrame:
        """pandas' C parser with the source's columns; id and input stay text."""
        text_columns = {name: object for name in (self.column, self.id_column) if name}
        return pd.read_csv(
            buffer,
            header=None,
            names=self.columns,
            dtype=text_columns,
            index_col=False,
            engine="c",
            skip_blank_lines=True,
            low_memory=False,
            **options,
        )

    def _fast_frame(self, data: bytes) -> pd.DataFrame | None:
        """pandas' C parser straight on clean quote-free bytes; None when it could differ."""
        if b'"' in data or b"\x00" in data or data.count(b"\r") != data.count(b"\r\n"):
            return None
        try:
            frame = self._read_c(
                io.BytesIO(data),
                sep=self.delimiter,
                quoting=csv.QUOTE_NONE,
                encoding=self.encoding,
                encoding_errors="replace",
            )
        except (pd.errors.ParserError, ValueError, UnicodeError):
            return None
        if len(frame) != len(nonblank_line_starts(data)):
            return None  # whitespace-only lines: pandas skips them, the record rule does not
        return frame

    def _slow_frame(self, data: bytes) -> pd.DataFrame:
        """The record rule in Python, then typed by pandas from a re-quoted, clean copy."""
        records = self.records(data)
        width = len(self.columns)
        if any(len(r) != width for r in records):
            records = [r[:width] + [None] * (width - len(r)) for r in records]
        if not records:
            return pd.DataFrame({name: [] for name in self.columns})
        if b"\x00" not in data:  # NUL is the one character the re-quoted copy cannot carry
            clean = io.StringIO()
            csv.writer(clean, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(records)
            clean.seek(0)
            frame = self._read_c(clean)
            if len(frame) == len(records):
                return frame
        columns = list(zip(*records, strict=True))
        frame = {}
        for name, values in zip(self.columns, columns, strict=True):
            if name in (self.column, self.id_column):
                frame[name] = [None if v in NA_STRINGS else v for v in values]
            else:
                frame[name] = infer_column(values)
        return pd.DataFrame(frame, columns=self.columns)

    def _parse(self, data: bytes, start: int) -> pd.DataFrame:
        frame = self._fast_frame(data)
        if frame is None:
            frame = self._slow_frame(data)
        n = len(frame)
        inputs = frame[self.column].to_numpy(dtype=object) if self.column else [None] * n
        ids = frame[self.id_column].to_numpy(dtype=object) if self.id_column else None
        extras = {
            name: frame[name] for name in self.columns if name not in (self.column, self.id_column)
        }
        return build_frame(start, ids, inputs, extras)

    def describe(self) -> dict:
        return super().describe() | {"id_column": self.id_column, "delimiter": self.delimiter}
