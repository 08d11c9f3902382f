"""A streaming JSON scanner: walk a big array value by value, with byte offsets.

The standard library has no streaming JSON parser (``ijson`` is not a
dependency), but :meth:`json.JSONDecoder.raw_decode` parses one value at a
given position in C. :class:`JsonScanner` keeps a sliding text window over the
binary stream, parses one array element at a time, and reports the byte offset
(in the decompressed stream) where an element starts — so a plan can remember
where each partition begins and a worker can seek there. Memory: one block
plus the largest element. The text is decoded with ``surrogateescape`` so byte
offsets stay exact even on invalid UTF-8.

Examples
--------
>>> import io
>>> from xenonscale.sources.jsonscan import JsonScanner
>>> scan = JsonScanner(io.BytesIO(b'[{"a": 1}, 2, [3]]'), block_size=4)
>>> scan.expect("[")
>>> out = []
>>> while not scan.at("]"):
...     out.append((scan.offset(), scan.item()))
>>> out
[(1, {'a': 1}), (11, 2), (14, [3])]
"""

from __future__ import annotations

import codecs
import json
import re
from typing import IO, Any

from xenonscale.errors import SourceError

__all__ = ["JsonScanner"]

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+\-]*")
_MAX_VALUE = 1 << 30


class JsonScanner:
    """Incremental reader of JSON values from a binary stream positioned at ``base``.

    Parameters
    ----------
    f
        Binary stream (not closed by the scanner).
    base
        Byte offset of the stream's current position (for :meth:`offset`).
    block_size
        Bytes read per refill.
    where
        Name used in error messages (the URL).
    """

    def __init__(
        self, f: IO[bytes], base: int = 0, block_size: int = 1 << 23, where: str = ""
    ) -> None:
        self.f = f
        self.block_size = block_size
        self.where = where
        self.decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.json = json.JSONDecoder()
        self.buf = ""
        self.i = 0
        self.eof = False
        self.mark_i = 0
        self.mark_byte = base

    def _fill(self) -> bool:
        """Append the next block (dropping what was consumed); False at end of stream."""
        if self.eof:
            return False
        chunk = self.f.read(self.block_size)
        self.offset()
        self.buf, self.i, self.mark_i = self.buf[self.i :], 0, 0
        if not chunk:
            self.eof = True
            self.buf += self.decoder.decode(b"", final=True)
            return True
        self.buf += self.decoder.decode(chunk)
        return True

    def offset(self) -> int:
        """Byte offset of the current position (call in increasing order: it is incremental)."""
        piece = self.buf[self.mark_i : self.i]
        self.mark_byte += len(piece.encode("utf-8", "surrogateescape"))
        self.mark_i = self.i
        return self.mark_byte

    def peek(self) -> str:
        """Skip whitespace; the next character, or ``""`` at the end of the stream."""
        while True:
            self.i = _WS.match(self.buf, self.i).end()
            if self.i < len(self.buf):
                return self.buf[self.i]
            if not self._fill():
                return ""

    def at(self, char: str) -> bool:
        """Whether the next non-blank character is ``char`` (a closing bracket, say)."""
        return self.peek() == char

    def expect(self, char: str) -> None:
        """Consume ``char`` (after whitespace) or raise :class:`SourceError`."""
        found = self.peek()
        if found != char:
            self._fail(f"expected {char!r}, found {found[:1]!r}")
        self.i += 1

    def value(self) -> Any:
        """Parse the next value (refilling until it is complete)."""
        self.peek()
        while True:
            try:
                value, end = self.json.raw_decode(self.buf, self.i)
            except json.JSONDecodeError as exc:
                if len(self.buf) - self.i > _MAX_VALUE or not self._fill():
                    self._fail(f"invalid JSON ({exc.msg})")
                continue
            except RecursionError:
                self._fail("a JSON value nested too deeply to read")
            if not self.eof and _NUMBER_TAIL.match(self.buf, end).end() == len(self.buf):
                self._fill()  # a number or literal cut at the block end: parse it again
                continue
            self.i = end
            return value

    def item(self) -> Any:
        """Parse an array element and the ``,`` after it (a ``]`` is left for :meth:`at`)."""
        value = self.value()
        found = self.peek()
        if found == ",":
            self.i += 1
        elif found != "]":
            self._fail(f"expected ',' or ']' after an array element, found {found[:1]!r}")
        return value

    def skip_bom(self) -> None:
        """Drop a UTF-8 byte-order mark at the current position."""
        self.peek()
        if self.buf.startswith("\ufeff", self.i):
            self.i += 1

    def _fail(self, message: str) -> None:
        raise SourceError(
            f"{self.where!r} at byte {self.offset()}: {message}; "
            "check the file, or convert it to JSON Lines (one document per line)"
        )
