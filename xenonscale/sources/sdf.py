"""SDF (``.sdf``) molecule files: records end at a ``$$$$`` line.

Each record terminated by a ``$$$$`` line is one record (an empty one gives
``input=None``), plus a trailing unterminated record when it holds anything
but whitespace. ``input`` is the molblock text (through ``M  END``), ``id`` the
title line (RDKit's ``_Name``) or the ``id_column`` data item, extras the data
items (``> <NAME>``) of the first record.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from rdkit import Chem
>>> from xenonscale.sources.sdf import SdfSource
>>> path = Path(tempfile.mkdtemp()) / "molecules.sdf"
>>> with Chem.SDWriter(str(path)) as writer:
...     for smiles, name in [("CCO", "ethanol"), ("c1ccccc1", "benzene")]:
...         molecule = Chem.MolFromSmiles(smiles)
...         molecule.SetProp("_Name", name)
...         writer.write(molecule)
>>> source = SdfSource(str(path))
>>> source.read(source.plan(100)[1][0])["id"].tolist()
['ethanol', 'benzene']
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError
from xenonscale.sources.frames import build_frame, infer_column
from xenonscale.sources.stream import DEFAULT_BLOCK_SIZE, OffsetSource, iter_line_blocks

__all__ = ["SdfSource", "parse_record", "split_records"]

_SEPARATOR = re.compile(rb"^\$\$\$\$[^\n]*(?:\n|\Z)", re.M)
# A data header ">  <NAME>  (ID)": [^<]* cannot pass the first "<", so a line of
# many "<" fails in linear time (".*?<" retried from every "<": quadratic).
_ITEM = re.compile(r"^>[^<]*<([^>]*)>")


def split_records(data: bytes) -> list[bytes]:
    """Records of ``data`` (which starts at a record start), terminators dropped."""
    records, start = [], 0
    for match in _SEPARATOR.finditer(data):
        records.append(data[start : match.start()])
        start = match.end()
    if data[start:].strip():
        records.append(data[start:])
    return records


def parse_record(text: str) -> tuple[str | None, str, dict[str, str]]:
    """``(molblock or None, title, data items)`` of one record's text."""
    if not text.strip():
        return None, "", {}
    lines = text.split("\n")
    end = next((i for i, line in enumerate(lines) if line.rstrip("\r") == "M  END"), None)
    if end is None:
        return text, lines[0].strip(), {}
    molblock = "\n".join(lines[: end + 1]) + "\n"
    items: dict[str, str] = {}
    name, values = None, []
    for line in lines[end + 1 :]:
        line = line.rstrip("\r")
        match = _ITEM.match(line)
        if match:
            name, values = match.group(1), []
        elif name is not None and line == "":
            items[name] = "\n".join(values)
            name = None
        elif name is not None:
            values.append(line)
    if name is not None:
        items[name] = "\n".join(values)
    return molblock, lines[0].strip(), items


class SdfSource(OffsetSource):
    """An SDF file; kind ``molecule`` (see the module docstring).

    Parameters
    ----------
    id_column
        A data item to use as the id instead of the title line.
    """

    format = "sdf"
    column = "molblock"

    def __init__(
        self,
        url: str,
        *,
        id_column: str | None = None,
        kind: str | None = None,
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
            kind=kind or "molecule",
        )
        self.encoding = encoding
        with self._open() as f:
            head = f.read(1 << 20)
        first = split_records(head)[:1]
        _, _, items = parse_record(first[0].decode(encoding, "replace")) if first else (0, 0, {})
        if id_column is not None and items and id_column not in items:
            raise ConfigError(
                f"id_column={id_column!r} is not a data item of the first record of "
                f"{self.url!r} (items: {list(items)}); pass one of them or None for the title"
            )
        self.id_column = id_column
        self.extras = [name for name in items if name != id_column]

    def _record_starts(self, f: IO[bytes]) -> Iterator[np.ndarray]:
        base, record_start, content = 0, 0, False
        for block in iter_line_blocks(f, self.block_size):
            starts, tail = [], 0
            for match in _SEPARATOR.finditer(block):
                starts.append(record_start)
                record_start, tail, content = base + match.end(), match.end(), False
            content = content or bool(block[tail:].strip())
            yield np.asarray(starts, dtype=np.int64)
            base += len(block)
        if content:
            yield np.asarray([record_start], dtype=np.int64)

    def _parse(self, data: bytes, start: int) -> pd.DataFrame:
        parsed = [parse_record(r.decode(self.encoding, "replace")) for r in split_records(data)]
        inputs = [molblock for molblock, _, _ in parsed]
        if self.id_column:
            ids = [items.get(self.id_column) for _, _, items in parsed]
        else:
            ids = [title for _, title, _ in parsed]
        extras = {
            name: infer_column([items.get(name) for _, _, items in parsed]) for name in self.extras
        }
        return build_frame(start, ids, inputs, extras)

    def describe(self) -> dict:
        return super().describe() | {"id_column": self.id_column}
