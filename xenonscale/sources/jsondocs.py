"""JSON documents: a top-level list (MP-style docs) and pandas ``orient="split"``.

* A list ``[{"material_id": ..., "structure": {...}, ...}, ...]``: one record per
  element, fields as for JSON Lines (``input`` = ``column`` field, default
  ``structure``; ``id`` = ``material_id``; extras = scalar fields).
* A split table ``{"columns": [...], "index": [...], "data": [[...], ...]}``
  (Matbench): one record per ``data`` row; ``id`` = the ``index`` entry.

Both are scanned with :class:`~xenonscale.sources.jsonscan.JsonScanner`: the
plan parses every element once (streaming: memory is one block plus one
element) and notes the byte offset of each partition's first element, a worker
seeks there and parses only its rows. A plain JSON file is still slower than
JSON Lines (the plan parses everything); for tens of GB, convert to JSONL.

Examples
--------
>>> from xenonscale.datasets import fetch
>>> from xenonscale.sources.jsondocs import open_json
>>> source = open_json(str(fetch("matbench_phonons")))  # doctest: +REQUIRES_DATA
>>> source.column, source.kind
('structure', 'structure')
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.base import Partition
from xenonscale.sources.frames import build_frame, docs_frame, guess_kind, scalar_fields
from xenonscale.sources.jsonscan import JsonScanner
from xenonscale.sources.lines import default_doc_column, default_doc_id
from xenonscale.sources.stream import (
    DEFAULT_BLOCK_SIZE,
    FileSource,
    check_rows_per_partition,
    make_partitions,
)

__all__ = ["JsonListSource", "SplitJsonSource", "open_json"]


class _JsonSource(FileSource):
    def _scanner(self, f, base: int = 0) -> JsonScanner:
        return JsonScanner(f, base, self.block_size, self.url)

    def _check(self, name: str, value: str | None, keys: list[str]) -> None:
        if value is not None and keys and value not in keys:
            raise ConfigError(
                f"{name}={value!r} is not a field of {self.url!r} (fields: {keys}); "
                "pass one of them"
            )

    def _scan_array(self, scan: JsonScanner, rpp: int) -> tuple[int, list[int]]:
        """Count the elements of the array at the scanner; offsets of every rpp-th one."""
        scan.expect("[")
        count, offsets = 0, []
        while not scan.at("]"):
            if count % rpp == 0:
                offsets.append(scan.offset())
            scan.item()
            count += 1
        scan.expect("]")
        return count, offsets

    def _read_items(self, offset: int, rows: int) -> list[Any]:
        with self._open() as f:
            f.seek(offset)
            scan = self._scanner(f, offset)
            return [scan.item() for _ in range(rows)]


class JsonListSource(_JsonSource):
    """A JSON file holding a list of documents (see the module docstring)."""

    format = "json"

    def __init__(
        self,
        url: str,
        *,
        column: str | None = None,
        id_column: str | None = None,
        kind: str | None = None,
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
        with self._open() as f:
            scan = self._scanner(f)
            scan.skip_bom()
            scan.expect("[")
            first = {} if scan.at("]") else scan.value()
        first = first if isinstance(first, dict) else {}
        keys = list(first)
        self._check("column", column, keys)
        self._check("id_column", id_column, keys)
        self.column = column if column is not None else default_doc_column(keys)
        self.id_column = id_column if id_column is not None else default_doc_id(keys)
        self.extras = scalar_fields(first, exclude=(self.column, self.id_column))
        sample = first.get(self.column) if self.column else None
        self.kind = kind or ("structure" if isinstance(sample, dict) else guess_kind(self.column))

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Parse every document once, streaming; note each partition's byte offset."""
        rpp = check_rows_per_partition(rows_per_partition)
        with self._open() as f:
            scan = self._scanner(f)
            scan.skip_bom()
            total, offsets = self._scan_array(scan, rpp)
        return total, make_partitions(total, rpp, [{"offset": o} for o in offsets])

    def read(self, partition: Partition) -> pd.DataFrame:
        docs = self._read_items(partition.locator["offset"], partition.rows)
        return docs_frame(docs, partition.start, self.column, self.id_column, self.extras)

    def describe(self) -> dict:
        return super().describe() | {"id_column": self.id_column}


class SplitJsonSource(_JsonSource):
    """A pandas ``orient="split"`` JSON table (Matbench); see the module docstring."""

    format = "json-split"

    def __init__(
        self,
        url: str,
        *,
        column: str | None = None,
        id_column: str | None = None,
        kind: str | None = None,
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
        self.columns = [str(c) for c in self._walk(None).get("columns", [])]
        self._check("column", column, self.columns)
        self._check("id_column", id_column, self.columns)
        self.id_column = id_column
        if column is None:
            column = next(
                (c for c in ("structure", "formula", "composition") if c in self.columns), None
            )
            column = column or (self.columns[0] if self.columns else None)
        self.column = column
        self.kind = kind or guess_kind(self.column)

    def _walk(self, rpp: int | None) -> dict[str, Any]:
        """Walk the top-level object: parse ``columns``, stream through the arrays.

        With ``rpp``, ``index`` and ``data`` give ``(count, offsets of every rpp-th
        element)``; without, arrays other than ``columns`` are skipped element by
        element (never held in memory).
        """
        found: dict[str, Any] = {}
        with self._open() as f:
            scan = self._scanner(f)
            scan.skip_bom()
            scan.expect("{")
            while not scan.at("}"):
                key = scan.value()
                scan.expect(":")
                if key != "columns" and scan.at("["):
                    found[key] = self._scan_array(scan, rpp or 1 << 62)
                else:
                    found[key] = scan.value()
                if rpp is None and "columns" in found:
                    break  # opening needs only the column names
                if not scan.at("}"):
                    scan.expect(",")
        has_data = rpp is None or isinstance(found.get("data"), tuple)
        if not isinstance(found.get("columns"), list) or not has_data:
            raise SourceError(
                f"{self.url!r} is not a pandas orient='split' table (keys: {list(found)}); "
                "convert it to JSON Lines or a list of documents"
            )
        return found

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Parse every row once, streaming; note each partition's byte offset in data/index."""
        rpp = check_rows_per_partition(rows_per_partition)
        found = self._walk(rpp)
        total, data_offsets = found["data"]
        index = found.get("index")
        index_offsets = index[1] if isinstance(index, tuple) and index[0] == total else None
        locators = [
            {"offset": o, "index": index_offsets[k] if index_offsets else None}
            for k, o in enumerate(data_offsets)
        ]
        return total, make_partitions(total, rpp, locators)

    def read(self, partition: Partition) -> pd.DataFrame:
        rows = self._read_items(partition.locator["offset"], partition.rows)
        width = len(self.columns)
        table = [
            (list(r[:width]) + [None] * (width - len(r))) if isinstance(r, list) else [None] * width
            for r in rows
        ]
        columns = {name: [row[j] for row in table] for j, name in enumerate(self.columns)}
        index_at = partition.locator.get("index")
        if self.id_column:
            ids = columns[self.id_column]
        elif index_at is not None:
            ids = self._read_items(index_at, partition.rows)
        else:
            ids = None
        inputs = columns[self.column] if self.column else [None] * len(rows)
        extras = {
            name: pd.Series(values, dtype=object).infer_objects()
            for name, values in columns.items()
            if name not in (self.column, self.id_column)
        }
        return build_frame(partition.start, ids, inputs, extras)

    def describe(self) -> dict:
        return super().describe() | {"columns": self.columns, "id_column": self.id_column}


def open_json(url: str, **options: Any) -> JsonListSource | SplitJsonSource:
    """A list of documents (``[``) or a split table (``{``), told apart by the first character."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(str(url), **(options.get("storage_options") or {}))
    if not fs.isfile(path):
        raise SourceError(f"source {url!r} does not exist or is not a file")
    with fs.open(path, "rb", compression=options.get("compression", "infer")) as f:
        scan = JsonScanner(f, 0, 1 << 16, url)
        scan.skip_bom()
        first = scan.peek()
    if first == "[":
        return JsonListSource(url, **options)
    if first == "{":
        return SplitJsonSource(url, **options)
    raise SourceError(f"{url!r} does not start with a JSON list or object: is it JSON?")
