"""Parquet sources: row groups are the locators; workers read only theirs.

The plan reads only the footer (row-group sizes). A partition's locator lists
the row groups that hold its rows and how many rows of the first one to skip;
``read`` loads those groups (only the needed columns) and slices.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import pandas as pd
>>> from xenonscale.sources.parquet import ParquetSource
>>> path = Path(tempfile.mkdtemp()) / "formulas.parquet"
>>> pd.DataFrame({"formula": ["Fe2O3", "NaCl"], "target": [1.5, 2.0]}).to_parquet(path)
>>> source = ParquetSource(str(path), column="formula")
>>> total, partitions = source.plan(50_000)
>>> source.read(partitions[0])["input"].tolist()
['Fe2O3', 'NaCl']
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.base import Partition
from xenonscale.sources.frames import build_frame, guess_kind
from xenonscale.sources.stream import FileSource, check_rows_per_partition, make_partitions

__all__ = ["ParquetSource"]

_INDEX = "__index_level_0__"


class ParquetSource(FileSource):
    """A Parquet file (see the module docstring).

    Parameters
    ----------
    column
        The input column; default ``formula`` if present, else the first column.
    id_column
        The id column; default the pandas index column if stored, else the row number.
    kind
        Default guessed from ``column``.
    storage_options
        fsspec options (S3 credentials, endpoint).
    """

    format = "parquet"

    def __init__(
        self,
        url: str,
        *,
        column: str | None = None,
        id_column: str | None = None,
        kind: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__(url, storage_options=storage_options, compression=None, kind=kind)
        schema = self._metadata().schema.to_arrow_schema()
        self.columns = list(schema.names)
        data_columns = [c for c in self.columns if c != _INDEX]
        for name, value in (("column", column), ("id_column", id_column)):
            if value is not None and value not in self.columns:
                raise ConfigError(
                    f"{name}={value!r} is not a column of {self.url!r} "
                    f"(columns: {data_columns}); pass one of them"
                )
        self.id_column = id_column or (_INDEX if _INDEX in self.columns else None)
        if column is None:
            rest = [c for c in data_columns if c != self.id_column]
            column = "formula" if "formula" in rest else (rest[0] if rest else None)
        self.column = column
        self.kind = kind or guess_kind(self.column)

    def _metadata(self):
        with self._open() as f:
            try:
                return pq.ParquetFile(f).metadata
            except (pa.ArrowException, OSError) as exc:
                raise self._unreadable(exc) from exc

    def _unreadable(self, exc: BaseException) -> SourceError:
        return SourceError(
            f"{self.url!r} is not a readable Parquet file ({type(exc).__name__}: {exc}); "
            "it is empty, truncated or not Parquet: write it again"
        )

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """From the footer: each partition's row groups and the rows to skip in the first."""
        rpp = check_rows_per_partition(rows_per_partition)
        meta = self._metadata()
        bounds, first = [], 0
        for g in range(meta.num_row_groups):
            rows = meta.row_group(g).num_rows
            bounds.append((first, first + rows))
            first += rows
        total = first
        locators = []
        for start in range(0, total, rpp):
            stop = min(start + rpp, total)
            groups = [g for g, (a, b) in enumerate(bounds) if a < stop and b > start]
            locators.append({"row_groups": groups, "skip": start - bounds[groups[0]][0]})
        return total, make_partitions(total, rpp, locators)

    def read(self, partition: Partition) -> pd.DataFrame:
        """Load the partition's row groups and slice its rows."""
        with self._open() as f:
            try:
                table = pq.ParquetFile(f).read_row_groups(
                    partition.locator["row_groups"], columns=self.columns, use_pandas_metadata=False
                )
            except (pa.ArrowException, OSError) as exc:
                raise self._unreadable(exc) from exc
        table = table.slice(partition.locator["skip"], partition.rows)
        frame = table.to_pandas(ignore_metadata=True)
        inputs = frame[self.column].to_numpy(dtype=object) if self.column else [None] * len(frame)
        ids = frame[self.id_column].to_numpy(dtype=object) if self.id_column else None
        extras = {c: frame[c] for c in frame.columns if c not in (self.column, self.id_column)}
        extras.pop(_INDEX, None)
        return build_frame(partition.start, ids, inputs, extras)

    def describe(self) -> dict:
        return super().describe() | {"id_column": self.id_column}
