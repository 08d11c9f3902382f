"""The CSV record rule shared by planning and reading (so boundaries always agree).

A line without a quote character is one record, split on the delimiter; a line
with one goes to :func:`csv.reader`, which may pull further lines while a quoted
field is open (CIF text in a cell). Blank lines (empty or a lone ``\\r``) are
skipped. A record :mod:`csv` rejects is split on the delimiter as is. Offsets
count bytes of the undecoded lines, so a plan can note where records start.

Examples
--------
>>> from xenonscale.sources.csvrecords import chain_lines, iter_records
>>> data = b'id,cif\\n1,"data_x\\n_cell 1"\\n\\n2,plain\\n'
>>> [(start, fields) for start, _, fields in iter_records(chain_lines(data), ",")]
[(0, ['id', 'cif']), (7, ['1', 'data_x\\n_cell 1']), (27, ['2', 'plain'])]
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

__all__ = ["chain_lines", "header_names", "iter_records"]

_BLANK = frozenset({b"", b"\n", b"\r", b"\r\n"})
_FIELD_LIMIT = 1 << 30


def _split(text: str, delimiter: str) -> list[str]:
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text.split(delimiter)


class _Feed:
    """Line iterator handed to :func:`csv.reader`; keeps what it consumed."""

    def __init__(self, lines: Iterator[bytes], encoding: str) -> None:
        self.lines = lines
        self.encoding = encoding
        self.pending: bytes | None = None
        self.consumed: list[bytes] = []

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = self.pending
        if line is None:
            line = next(self.lines)
            self.consumed.append(line)
        self.pending = None
        return line.decode(self.encoding, "replace")


def iter_records(
    lines: Iterator[bytes], delimiter: str, encoding: str = "utf-8", parse: bool = True
) -> Iterator[tuple[int, int, list[str] | None]]:
    """``(start, end, fields)`` of each record; offsets relative to the first line."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    feed = _Feed(lines, encoding)
    reader = csv.reader(feed, delimiter=delimiter, strict=False)
    pos = 0
    for line in lines:
        start = pos
        pos += len(line)
        if line in _BLANK:
            continue
        if b'"' not in line:
            yield (
                start,
                pos,
                (_split(line.decode(encoding, "replace"), delimiter) if parse else None),
            )
            continue
        feed.pending, feed.consumed = line, []
        try:
            fields = next(reader)
        except (csv.Error, StopIteration):
            text = (line + b"".join(feed.consumed)).decode(encoding, "replace")
            fields = _split(text, delimiter)
        if feed.consumed:
            pos += sum(map(len, feed.consumed))
        yield start, pos, (fields if parse else None)


def header_names(fields: list[str]) -> list[str]:
    """Column names as pandas gives them: ``Unnamed: i`` for blanks, ``x.1`` for repeats."""
    names: list[str] = []
    for i, name in enumerate(fields):
        base = name if name else f"Unnamed: {i}"
        candidate, k = base, 0
        while candidate in names:
            k += 1
            candidate = f"{base}.{k}"
        names.append(candidate)
    return names


def chain_lines(first: bytes, blocks: Iterator[bytes] | None = None) -> Iterator[bytes]:
    """Lines of ``first`` then of every later block (one shared iterator)."""
    yield from io.BytesIO(first)
    for block in blocks or ():
        yield from io.BytesIO(block)
