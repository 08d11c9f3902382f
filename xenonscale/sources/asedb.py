"""ASE databases (``ase.db``): SQLite (``.db``) or ASE's JSON format, one record per row.

Opened with ``ase.db.connect``. Planning selects every row once without its
``data`` (ids, key-value pairs, ``energy``), sorted by id, and cuts the id list
into partitions of ``rows_per_partition`` rows; each locator holds its first
and last id, and a worker selects just that id range. A SQLite database is
queried through its id index; ASE's JSON backend parses the whole file on every
read, so each partition of a JSON database costs one parse of it — fine for
thousands of rows, beyond that convert it (``ase db in.json --insert-into out.db``).

Only local files are read (SQLite needs a file). A file that is not an ASE
database (an empty file, another SQLite database, other JSON) is a
:class:`~xenonscale.errors.SourceError`, and the file is never written to.

Each row becomes a record through
:func:`~xenonscale.sources.aseatoms.atoms_input` (crystal → pymatgen structure
JSON, molecule → XYZ block, partial periodicity → an error row). ``id`` is the
row's ``name``/``material_id`` key-value pair (or ``id_column``), else the
database id; the other key-value pairs of all rows, and ``energy`` when a row
has one, are extras. ``kind`` defaults to the first row's periodicity.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import ase.db
>>> from ase.build import bulk
>>> from xenonscale.sources.asedb import AseDbSource
>>> path = Path(tempfile.mkdtemp()) / "metals.db"
>>> with ase.db.connect(path) as db:
...     for symbol, a in [("Cu", 3.61), ("Al", 4.05), ("Ni", 3.52)]:
...         _ = db.write(bulk(symbol, "fcc", a=a), name=symbol, lattice_a=a)
>>> source = AseDbSource(str(path))
>>> total, partitions = source.plan(rows_per_partition=2)
>>> total, [(p.locator["first"], p.locator["last"]) for p in partitions]
(3, [(1, 2), (3, 3)])
>>> source.read(partitions[0])[["id", "lattice_a"]].to_dict("records")
[{'id': 'Cu', 'lattice_a': 3.61}, {'id': 'Al', 'lattice_a': 4.05}]
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.aseatoms import (
    ID_KEYS,
    atoms_frame,
    atoms_input,
    atoms_kind,
    require_ase,
    scalar_value,
)
from xenonscale.sources.base import Partition, Source
from xenonscale.sources.stream import KINDS, check_rows_per_partition, make_partitions

__all__ = ["AseDbSource", "database_type"]

_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Row attributes kept as extras when a row has them (besides its key-value pairs).
_ROW_VALUES = ("energy",)
_PLAN_COLUMNS = ["id", "key_value_pairs", "energy"]


def database_type(path: str) -> str:
    """``"db"`` (SQLite) or ``"json"`` for the file at ``path``, told by its first bytes.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.json"
    >>> _ = path.write_text('{"ids": [], "nextid": 1}')
    >>> database_type(str(path))
    'json'
    """
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise SourceError(f"ASE database {path!r} cannot be read: {exc}") from exc
    if head == _SQLITE_MAGIC:
        return "db"
    if head.lstrip()[:1] == b"{":
        return "json"
    what = "is empty" if not head else "is neither SQLite nor a JSON object"
    raise SourceError(
        f"ASE database {path!r} {what}: give a .db written by ase.db or ASE's JSON format"
    )


class AseDbSource(Source):
    """An ASE database file; kind ``structure`` or ``molecule`` (see the module docstring).

    Parameters
    ----------
    url
        A local path (or ``file://`` URL) of an ASE SQLite or JSON database.
    id_column
        The key-value pair holding each row's id; default the first of
        ``name``, ``material_id`` present, else the database id.
    kind
        ``structure``, ``molecule`` or ``composition``; default from the first row.
    storage_options
        Accepted for a uniform call; must be empty (local files only).
    """

    format = "ase-db"
    column = "atoms"

    def __init__(
        self,
        url: str,
        *,
        id_column: str | None = None,
        kind: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        require_ase()
        if storage_options:
            raise ConfigError(
                f"storage_options do not apply to the ASE database {url!r}: ASE reads local "
                "files only; copy the database to a local disk"
            )
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"kind={kind!r} is unknown: use one of {', '.join(KINDS)}")
        path = str(url).removeprefix("file://")
        if "://" in path:
            raise ConfigError(
                f"ASE database {url!r} is not a local file: copy it to a local disk first"
            )
        self.url = str(url)
        self.path = str(Path(path).expanduser())
        if not os.path.isfile(self.path):
            raise SourceError(f"ASE database {self.url!r} does not exist or is not a file")
        self.type = database_type(self.path)
        if self.type == "db":
            self._check_sqlite()
        self.id_column = id_column
        self.kind = kind or self._first_kind()

    # -- the database ---------------------------------------------------------------------

    def _check_sqlite(self) -> None:
        """Refuse a SQLite file without ASE's tables (ASE would add them to it)."""
        try:
            uri = Path(self.path).resolve().as_uri() + "?mode=ro"
            with sqlite3.connect(uri, uri=True) as con:
                found = con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name='systems'"
                ).fetchone()
        except sqlite3.Error as exc:
            raise SourceError(f"ASE database {self.url!r} cannot be read: {exc}") from exc
        if found is None:
            raise SourceError(
                f"{self.url!r} is a SQLite database but not an ASE one (no 'systems' table): "
                "give a database written by ase.db"
            )

    def _connect(self):
        import ase.db  # lazy: ASE is optional (require_ase)

        return ase.db.connect(self.path, type=self.type, create_indices=False, use_lock_file=False)

    def _select(self, selection: Any = None, **kwargs: Any) -> list:
        from ase.io.formats import UnknownFileTypeError  # lazy: ASE is optional (require_ase)

        unreadable = (sqlite3.Error, UnknownFileTypeError, ValueError, KeyError, TypeError)
        try:
            return list(self._connect().select(selection, sort="id", **kwargs))
        except unreadable as exc:
            raise SourceError(
                f"{self.url!r} is not a readable ASE {self.type} database "
                f"({type(exc).__name__}: {exc}): give a database written by ase.db"
            ) from exc

    def _first_kind(self) -> str:
        rows = self._select(limit=1)
        return atoms_kind(rows[0].toatoms()) if rows else "structure"

    # -- the contract -----------------------------------------------------------------------

    def fingerprint(self) -> str:
        """``url|size|mtime`` of the database file."""
        stat = os.stat(self.path)
        return json.dumps(
            {"url": self.url, "size": stat.st_size, "stamp": str(stat.st_mtime_ns)}, sort_keys=True
        )

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Select every row once (no ``data``): ids in order, the union of their keys."""
        rpp = check_rows_per_partition(rows_per_partition)
        ids: list[int] = []
        keys: dict[str, None] = {}
        for row in self._select(include_data=False, columns=_PLAN_COLUMNS):
            ids.append(int(row.id))
            keys.update(dict.fromkeys(row.key_value_pairs))
            keys.update({name: None for name in _ROW_VALUES if row.get(name) is not None})
        id_key = self.id_column or next((k for k in ID_KEYS if k in keys), None)
        extras = [key for key in keys if key != id_key]
        locators = [
            {"first": ids[k], "last": ids[min(k + rpp, len(ids)) - 1], "id_key": id_key,
             "extras": extras}
            for k in range(0, len(ids), rpp)
        ]  # fmt: skip
        return len(ids), make_partitions(len(ids), rpp, locators)

    def read(self, partition: Partition) -> pd.DataFrame:
        """Select the partition's id range; each row → a record."""
        first, last = partition.locator["first"], partition.locator["last"]
        rows = self._select([("id", ">=", first), ("id", "<=", last)])
        if len(rows) != partition.rows:
            raise SourceError(
                f"{self.url!r} ids {first}..{last}: {len(rows)} rows where the plan has "
                f"{partition.rows}: the database changed since planning; plan again"
            )
        id_key = partition.locator.get("id_key")
        extras = partition.locator.get("extras", [])
        ids, inputs, values = [], [], []
        for row in rows:
            ident = scalar_value(row.get(id_key)) if id_key else None
            ids.append(str(ident) if ident not in (None, "") else str(row.id))
            inputs.append(atoms_input(row.toatoms(), self.kind))
            values.append({name: scalar_value(row.get(name)) for name in extras})
        return atoms_frame(partition.start, ids, inputs, values, extras)

    def describe_partition(self, partition: Partition) -> str:
        return (
            f"rows {partition.start}..{partition.stop - 1} "
            f"(database ids {partition.locator['first']}..{partition.locator['last']})"
        )

    def describe(self) -> dict:
        return super().describe() | {
            "format": self.format,
            "database": self.type,
            "id_column": self.id_column,
        }
