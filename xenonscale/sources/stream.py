"""Shared streaming machinery: fsspec files, line-aligned blocks, byte-offset partitions.

A streaming source scans its file once in blocks (16 MiB by default) and notes
the byte offset — in the *decompressed* stream — where every
``rows_per_partition``-th record starts. A worker then reads only its byte
range ``offset ..< end``. For an uncompressed file that is a seek (an HTTP range
request on ``s3://``); for a gzip/bz2/xz file the worker decompresses from the
start and discards ``offset`` bytes, so reading partition ``k`` costs
decompressing ``k`` partitions' worth of data: fine up to a few GB, beyond that
decompress the file once or use Parquet.

Examples
--------
>>> import io
>>> from xenonscale.sources.stream import iter_line_blocks, nonblank_line_starts
>>> [bytes(b) for b in iter_line_blocks(io.BytesIO(b"a\\nb\\n\\nc"), block_size=2)]
[b'a\\n', b'b\\n', b'\\n', b'c']
>>> nonblank_line_starts(b"a\\n\\r\\nbc\\n").tolist()
[0, 4]
"""

from __future__ import annotations

import gzip
import json
import lzma
import zlib
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.base import Partition, Source

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "FileSource",
    "OffsetSource",
    "check_rows_per_partition",
    "iter_line_blocks",
    "make_partitions",
    "nonblank_line_starts",
]

DEFAULT_BLOCK_SIZE = 16 << 20
KINDS = ("composition", "structure", "molecule")


def check_rows_per_partition(rows_per_partition: int) -> int:
    """Validate ``rows_per_partition`` (a positive integer) and return it."""
    if isinstance(rows_per_partition, bool) or not isinstance(rows_per_partition, int | np.integer):
        raise ConfigError(
            f"rows_per_partition={rows_per_partition!r} is not an integer: pass e.g. 50_000"
        )
    if rows_per_partition < 1:
        raise ConfigError(f"rows_per_partition={rows_per_partition!r} must be at least 1")
    return int(rows_per_partition)


def make_partitions(total: int, rows_per_partition: int, locators: list[dict]) -> list[Partition]:
    """Partitions of exactly ``rows_per_partition`` rows (the last one shorter)."""
    return [
        Partition(k, k * rows_per_partition, min((k + 1) * rows_per_partition, total), locator)
        for k, locator in enumerate(locators)
    ]


def iter_line_blocks(f: IO[bytes], block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[bytes]:
    """Blocks of about ``block_size`` bytes that end at a ``\\n`` (the last one may not)."""
    rest = b""
    while True:
        chunk = f.read(block_size)
        if not chunk:
            if rest:
                yield rest
            return
        buf = rest + chunk if rest else chunk
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            rest = buf
            continue
        yield buf[:cut]
        rest = buf[cut:]


def iter_lines(f: IO[bytes], block_size: int = DEFAULT_BLOCK_SIZE) -> Iterator[bytes]:
    """The stream's lines (split on ``\\n`` only, terminators kept)."""
    for block in iter_line_blocks(f, block_size):
        yield from block.splitlines(keepends=True) if b"\r" not in block else _split_nl(block)


def _split_nl(block: bytes) -> list[bytes]:
    parts = block.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def nonblank_line_starts(block: bytes) -> np.ndarray:
    """Start offsets of the lines of ``block`` that are not blank (``""`` or ``"\\r"``)."""
    if not block:
        return np.empty(0, dtype=np.int64)
    arr = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(block)]))
    length = ends - starts
    first = arr[np.minimum(starts, len(block) - 1)]
    blank = (length == 0) | ((length == 1) & (first == 13))
    return starts[~blank].astype(np.int64, copy=False)


class FileSource(Source):
    """A source backed by one fsspec file (local, ``file://``, ``s3://``, compressed).

    Parameters
    ----------
    url
        Path or fsspec URL.
    storage_options
        Passed to the fsspec filesystem (e.g. S3 key, secret, endpoint).
    compression
        ``"infer"`` (from the name: gzip, bz2, xz), a codec name, or ``None``.
    block_size
        Bytes read per step of the streaming scan.
    """

    format = "file"
    column: str | None = None

    def __init__(
        self,
        url: str,
        *,
        storage_options: dict | None = None,
        compression: str | None = "infer",
        block_size: int = DEFAULT_BLOCK_SIZE,
        kind: str | None = None,
    ) -> None:
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        if not isinstance(block_size, int) or block_size < 1:
            raise ConfigError(f"block_size={block_size!r} must be a positive integer of bytes")
        self.block_size = block_size
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"kind={kind!r} is unknown: use one of {', '.join(KINDS)}")
        self.kind = kind or "composition"
        fs, path = self._fs()
        if compression == "infer":
            from fsspec.utils import infer_compression

            compression = infer_compression(path)
        self.compression = compression
        if not fs.isfile(path):
            raise SourceError(f"source {self.url!r} does not exist or is not a file")

    def _fs(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **self.storage_options)

    def _open(self) -> IO[bytes]:
        fs, path = self._fs()
        handle = fs.open(path, "rb", compression=self.compression)
        if self.compression is None:
            return handle
        return _DecompressedStream(handle, self.url, self.compression)  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """``url|size|mtime`` (or ETag) of the stored (possibly compressed) file."""
        fs, path = self._fs()
        info = fs.info(path)
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        return json.dumps(
            {"url": self.url, "size": info.get("size"), "stamp": str(stamp)}, sort_keys=True
        )

    def describe(self) -> dict:
        return super().describe() | {
            "format": self.format,
            "column": self.column,
            "compression": self.compression,
        }


class OffsetSource(FileSource):
    """A file whose records are located by byte offsets in the decompressed stream.

    Subclasses implement :meth:`_record_starts` (a streaming scan yielding arrays
    of record start offsets) and :meth:`_parse` (bytes of whole records → frame).
    Locators are ``{"offset": first byte, "end": first byte of the next
    partition or None}``.
    """

    data_offset = 0

    def _record_starts(self, f: IO[bytes]) -> Iterator[np.ndarray]:
        """Line records: every non-blank line from ``data_offset`` on is one record."""
        f.seek(self.data_offset)
        base = self.data_offset
        for block in iter_line_blocks(f, self.block_size):
            yield nonblank_line_starts(block) + base
            base += len(block)

    def _parse(self, data: bytes, start: int) -> pd.DataFrame:
        raise NotImplementedError

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Stream the file once; note where every ``rows_per_partition``-th record starts."""
        rpp = check_rows_per_partition(rows_per_partition)
        total = 0
        offsets: list[int] = []
        with self._open() as f:
            for starts in self._record_starts(f):
                first = (-total) % rpp
                offsets.extend(int(x) for x in starts[first::rpp])
                total += len(starts)
        ends: list[int | None] = [*offsets[1:], None] if offsets else []
        locators = [{"offset": o, "end": e} for o, e in zip(offsets, ends, strict=True)]
        return total, make_partitions(total, rpp, locators)

    def read_bytes(self, partition: Partition) -> bytes:
        """The raw (decompressed) bytes of the partition's records."""
        offset, end = partition.locator["offset"], partition.locator.get("end")
        with self._open() as f:
            f.seek(offset)
            return f.read() if end is None else f.read(end - offset)

    def read(self, partition: Partition) -> pd.DataFrame:
        """Read only the partition's byte range and parse its records."""
        return self._parse(self.read_bytes(partition), partition.start)


#: What a damaged compressed file raises while it is read (a truncated gzip: EOFError).
_DECOMPRESSION_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError)


class _DecompressedStream:
    """A decompressing file whose damage surfaces as one :class:`SourceError` naming the file.

    Reads, seeks and line iteration go to the wrapped file; a truncated or
    corrupt stream (``EOFError``, ``gzip.BadGzipFile``, ``zlib.error``,
    ``lzma.LZMAError``) becomes ``SourceError`` with the fix.
    """

    _GUARDED = frozenset({"read", "read1", "readinto", "readline", "readlines", "seek", "peek"})

    def __init__(self, handle: IO[bytes], url: str, compression: str):
        self._handle = handle
        self._url = url
        self._compression = compression

    def _damaged(self, exc: BaseException) -> SourceError:
        return SourceError(
            f"{self._url!r} is not a readable {self._compression} file "
            f"({type(exc).__name__}: {exc}); it is truncated or corrupt: fetch or write it again"
        )

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._handle, name)
        if name not in self._GUARDED:
            return attribute

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except _DECOMPRESSION_ERRORS as exc:
                raise self._damaged(exc) from exc

        return guarded

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def __enter__(self) -> _DecompressedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()
