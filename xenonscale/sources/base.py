"""The source contract: partitioned, streaming readers of records.

A :class:`Source` is a small, picklable description of where records live
(an fsspec URL plus options). The engine calls :meth:`Source.plan` once on the
client — a streaming scan that never holds the source in memory — to get the
total record count and fixed row ranges (:class:`Partition`), then ships each
partition to a worker, which calls :meth:`Source.read`.

Every record gets exactly one row number: its 0-based position in the source
(header excluded), stable across runs. ``read`` returns a DataFrame with

* ``row`` (int64): the global row number, ``partition.start ..< partition.stop``;
* ``id`` (str): the record's identifier (an id column, file name, material id,
  molecule name) or the row number as text;
* ``input`` (object): what the featurizer consumes (a formula string, a
  structure dict or CIF/POSCAR text, a SMILES string); ``None`` when the
  record is unreadable, so the featurizer records an error row for it;
* every extra column of the source (e.g. ``target``), numeric or text.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "formulas.csv"
>>> _ = path.write_text("formula,target\\nFe2O3,1.5\\nNaCl,2.0\\nSiO2,8.9\\n")
>>> from xenonscale.sources import open_source
>>> source = open_source(str(path), column="formula")
>>> total, partitions = source.plan(rows_per_partition=2)
>>> total, [(p.start, p.stop) for p in partitions]
(3, [(0, 2), (2, 3)])
>>> source.read(partitions[1]).to_dict("records")
[{'row': 2, 'id': '2', 'input': 'SiO2', 'target': 8.9}]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["Partition", "Source"]


@dataclass(frozen=True)
class Partition:
    """Rows ``start ..< stop`` of a source; ``locator`` says how to reach them fast.

    ``locator`` is JSON-serializable and format specific (a byte offset into the
    decompressed stream, a Parquet row-group list, a slice of a file list, ...).
    """

    index: int
    start: int
    stop: int
    locator: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.stop - self.start


class Source(ABC):
    """A partitioned record reader (see the module docstring).

    Implementations are picklable (no open handles), deterministic (the same
    file gives the same plan and rows), and thread-safe for concurrent ``read``
    calls on different partitions.
    """

    url: str
    kind: str  # "composition" | "structure" | "molecule"

    @abstractmethod
    def fingerprint(self) -> str:
        """A cheap identity of the source's content (URL, size, mtime/ETag)."""

    @abstractmethod
    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Scan once, streaming; return (total records, partitions of that many rows)."""

    @abstractmethod
    def read(self, partition: Partition) -> pd.DataFrame:
        """The partition's records as a DataFrame with ``row``, ``id``, ``input``, extras."""

    def preview(self, partition: Partition) -> pd.DataFrame:
        """Rows with the partition's columns and dtypes (what the store's arrays are made
        from); by default the partition itself. A web source may answer without records."""
        return self.read(partition)

    def describe_partition(self, partition: Partition) -> str:
        """A partition in words for messages (a web source names its pages)."""
        return f"rows {partition.start}..{partition.stop - 1}"

    def describe(self) -> dict:
        """JSON-serializable description for provenance (URL, format, column)."""
        column = getattr(self, "column", None)
        return {"url": self.url, "kind": self.kind, "type": type(self).__name__, "column": column}
