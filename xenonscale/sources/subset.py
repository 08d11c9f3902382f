"""Some rows of another source, as a source of their own (what a sync re-featurizes).

:class:`RowSubsetSource` holds a sorted list of row numbers of an inner
source. Planning groups them by the inner source's own partitions, so a
worker reads each inner partition it needs once and keeps the wanted rows;
record ``k`` of the subset is the ``k``-th wanted row (the ``row`` column is
renumbered ``0..n-1``; ``source_row`` keeps the inner row number).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from xenonscale.sources import open_source
>>> path = Path(tempfile.mkdtemp()) / "f.csv"
>>> _ = path.write_text("formula,target\\nFe2O3,1\\nNaCl,2\\nSiO2,3\\nMgO,4\\n")
>>> subset = RowSubsetSource(open_source(str(path)), [1, 3])
>>> total, parts = subset.plan(rows_per_partition=10)
>>> subset.read(parts[0])[["row", "input", "source_row"]].to_dict("records")
[{'row': 0, 'input': 'NaCl', 'source_row': 1}, {'row': 1, 'input': 'MgO', 'source_row': 3}]
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

import numpy as np
import pandas as pd

from xenonscale.errors import StoreError
from xenonscale.sources.base import Partition, Source

__all__ = ["RowSubsetSource"]

#: Rows of the inner source one inner partition covers while planning a subset.
INNER_PARTITION_ROWS = 10_000


class RowSubsetSource(Source):
    """Rows ``rows`` (sorted, unique) of ``inner`` (see the module docstring)."""

    def __init__(self, inner: Source, rows, *, inner_partition_rows: int = INNER_PARTITION_ROWS):
        self.inner = inner
        self.rows = np.unique(np.asarray(rows, dtype=np.int64))
        self.url = inner.url
        self.kind = inner.kind
        self.column = getattr(inner, "column", None)
        self.inner_partition_rows = inner_partition_rows

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.rows.tobytes()).hexdigest()[:16]
        return f"{self.inner.fingerprint()}+rows:{len(self.rows)}:{digest}"

    def describe(self) -> dict:
        return {**self.inner.describe(), "subset_rows": len(self.rows)}

    def describe_partition(self, partition: Partition) -> str:
        rows = f"{partition.start}..{partition.stop - 1}"
        return f"{partition.rows} rows of {self.url} (subset rows {rows})"

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        _, inner_parts = self.inner.plan(self.inner_partition_rows)
        bounds = np.array([p.stop for p in inner_parts], dtype=np.int64)
        owner = np.searchsorted(bounds, self.rows, side="right")
        if len(self.rows) and (self.rows[-1] >= (bounds[-1] if len(bounds) else 0)):
            raise StoreError(f"row {int(self.rows[-1])} is past the end of {self.url!r}")
        partitions = []
        for index, start in enumerate(range(0, len(self.rows), rows_per_partition)):
            stop = min(start + rows_per_partition, len(self.rows))
            pieces = []
            for part in np.unique(owner[start:stop]):
                wanted = self.rows[start:stop][owner[start:stop] == part]
                pieces.append({"partition": asdict(inner_parts[part]), "rows": wanted.tolist()})
            partitions.append(Partition(index, start, stop, {"pieces": pieces}))
        return len(self.rows), partitions

    def read(self, partition: Partition) -> pd.DataFrame:
        frames = []
        for piece in partition.locator["pieces"]:
            frame = self.inner.read(Partition(**piece["partition"]))
            frames.append(frame[frame["row"].isin(piece["rows"])])
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        frame = frame.rename(columns={"row": "source_row"})
        frame.insert(0, "row", np.arange(partition.start, partition.start + len(frame)))
        return frame
