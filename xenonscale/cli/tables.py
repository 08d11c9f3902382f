"""Tables on the command line: the table output of ``featurize``, the inputs of
``transfer`` and ``design``.

The table path reads every partition of the same :class:`~xenonscale.sources`
source the store path uses, in order, in this process; the table keeps the
source's own columns, then ``ok``, then the features, and the error rows go to
``x.errors.csv``. A table is written atomically; a table this command wrote
may be replaced by a rerun, any other file only with ``--overwrite``.
``transfer`` and ``design`` read their small input tables whole
(:func:`read_frame`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path, PurePosixPath

from xenonscale.errors import ConfigError, SourceError

__all__ = [
    "TABLE_MARKER",
    "TABLE_PARTITION_ROWS",
    "TABLE_SUFFIXES",
    "check_table_output",
    "errors_path",
    "input_table",
    "read_frame",
    "read_source",
    "write_atomically",
    "write_table",
]

#: ``--output`` names written in-process as one table rather than a store.
TABLE_SUFFIXES = (".parquet", ".csv")
#: Parquet schema metadata key of tables written here (``--overwrite`` not needed for them).
TABLE_MARKER = b"xenonscale"
#: Rows read per partition on the table path (the rows are then featurized in batches).
TABLE_PARTITION_ROWS = 50_000
_ERRORS_HEADER = "row,input,error"


def local_path(url: str) -> Path | None:
    """The local path of ``url`` (plain or ``file://``); None for a remote URL."""
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    return None if "://" in url else Path(url)


def check_parents(flag: str, value: str, path: Path) -> None:
    """The nearest existing folder above ``path`` must be a folder, not a file."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{flag} {value!r}: {str(parent)!r} is a file, not a folder: "
                    "choose an output path under a folder"
                )
            return


def errors_path(output: Path) -> Path:
    """Where the error rows of table ``output`` go (``x.errors.csv``)."""
    return output.with_suffix(".errors.csv")


def check_table_output(value: str, overwrite: bool) -> Path:
    """The local path of table ``value``, refused (ConfigError) where it may not be written."""
    path = local_path(value)
    if path is None:
        raise ConfigError(
            f"--output {value!r}: a {PurePosixPath(value).suffix} table is written to a local "
            "path; give one, or a store URL ending in .zarr for remote output"
        )
    check_parents("--output", value, path)
    for target in (path, errors_path(path)):
        if target.is_dir():
            raise ConfigError(
                f"--output {value!r}: {str(target)!r} is a folder: give a table file name "
                "that is not a folder"
            )
    if path.exists() and not overwrite and not _written_here(path):
        raise ConfigError(
            f"--output {value!r} exists and is not a table written by xenonscale featurize: "
            "pass --overwrite to replace it, or choose another name"
        )
    return path


def _written_here(path: Path) -> bool:
    """True for a table this command wrote (so a rerun may replace it)."""
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return TABLE_MARKER in (pq.read_schema(path).metadata or {})
        errors = errors_path(path)
        if not errors.is_file():
            return False
        with open(errors, encoding="utf-8", errors="replace") as f:
            if f.readline().strip() != _ERRORS_HEADER:
                return False
        import csv

        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            header = next(csv.reader([f.readline(1 << 20)]), [])
        return "ok" in header
    except Exception:  # unreadable: not ours
        return False


def read_source(source, partition_rows: int = TABLE_PARTITION_ROWS):
    """Every record of ``source``: plan, then read each partition in order (this process).

    The frame has the source contract's columns (``row``, ``id``, ``input`` and
    the extras), one row per record, rows ``0 ..< total``.
    """
    import pandas as pd

    total, partitions = source.plan(partition_rows)
    frames = []
    with warnings.catch_warnings():
        # the readers fix ragged records themselves; pandas' note about them is noise here
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        for partition in partitions:
            frame = source.read(partition)
            if len(frame) != partition.rows:
                raise SourceError(
                    f"partition {partition.index} of {source.url!r} gave {len(frame)} records, "
                    f"planned {partition.rows}: the source changed while it was read; rerun"
                )
            frames.append(frame)
    if not frames:
        return pd.DataFrame({"row": pd.Series([], dtype="int64"), "id": [], "input": []})
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frame) != total:
        raise SourceError(f"{source.url!r}: read {len(frame)} records, planned {total}; rerun")
    return frame.reset_index(drop=True)


def input_table(frame, source, labels: list[str]):
    """The source's own columns: input and id under their names, then the extras.

    The id is kept when the source names an id column (a pandas index column
    ``__index_level_0__`` aside) or when its ids are not plain row numbers
    (molecule names, file paths, material ids). A column named like an output
    column (``ok``, a feature label) is refused.
    """
    import pandas as pd

    column = getattr(source, "column", None) or "input"
    id_column = getattr(source, "id_column", None)
    columns = getattr(source, "columns", None)
    tabular = isinstance(columns, list)
    data: dict[str, pd.Series] = {}
    if id_column and id_column.startswith("__index_level_"):
        id_column, named = None, False
    else:
        named = bool(id_column)
    if named or (frame["id"] != frame["row"].astype(str)).any():
        data[id_column or "id"] = frame["id"]
    data[column] = frame["input"]
    for name in frame.columns:
        if name not in ("row", "id", "input") and name not in data:
            data[name] = frame[name]
    if tabular:  # the file's column order; columns of a header-only file are kept
        order = [str(c) for c in columns if str(c) in data or len(frame) == 0]
        order += [name for name in data if name not in order]
        data = {name: data.get(name, pd.Series([], dtype=object)) for name in order}
    clash = sorted({"ok", *labels} & set(data))
    if clash:
        raise ConfigError(
            f"input column {clash[0]!r} has the name of an output column of the table: "
            "rename it in the input, or write a store (-o NAME.zarr)"
        )
    return pd.DataFrame(data).reset_index(drop=True)


def write_atomically(path: Path, write) -> None:
    """``write(temporary path)`` then rename over ``path`` (no half-written file is left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _arrow_safe(table):
    """Object columns Parquet cannot type (text in one partition, numbers in another) as text."""
    import pyarrow as pa

    fixed = {}
    for name in table.columns[table.dtypes.eq(object)]:
        try:
            pa.array(table[name], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            fixed[name] = table[name].map(lambda v: v if v is None or v != v else str(v))
    return table.assign(**fixed) if fixed else table


def write_table(features, output: Path, *, metadata: dict | None = None) -> None:
    """Write ``.parquet`` or ``.csv`` (atomically; parent folders are created).

    Parquet tables carry ``metadata`` (JSON) under the ``xenonscale`` schema key.
    """
    suffix = output.suffix.lower()
    if suffix == ".csv":
        write_atomically(output, lambda tmp: features.to_csv(tmp, index=False))
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(_arrow_safe(features), preserve_index=False)
        marker = json.dumps(metadata or {}, default=str).encode()
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), TABLE_MARKER: marker}
        )
        write_atomically(output, lambda tmp: pq.write_table(table, tmp))
    else:
        raise ConfigError(f"--output {str(output)!r}: use a .parquet or .csv file name")


def read_frame(path: str, flag: str):
    """A whole CSV (or ``.parquet``) file as a DataFrame; unreadable files → ConfigError.

    For the small tables of ``transfer`` and ``design`` (featurize streams its
    input through :mod:`xenonscale.sources` instead).
    """
    import pandas as pd

    if not os.path.isfile(path):
        raise ConfigError(f"{flag} {path!r} does not exist or is not a file: give a CSV file")
    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{flag} {path!r} cannot be read as a table ({type(exc).__name__}: {reason}): "
            "give a UTF-8 CSV with a header row"
        ) from None
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{flag} {path!r} cannot be read ({reason}): check the file") from None
