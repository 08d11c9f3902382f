"""File sets: a directory or glob of CIF or POSCAR files, one record per file.

Files are sorted by path; ``id`` is the path relative to the directory (or the
glob's fixed prefix) without its ``.cif``/``.vasp`` and compression suffix —
the file stem for a flat directory; ``input`` is the file's text. Each
partition's locator lists its files, so workers read exactly those.

Examples
--------
>>> from xenonscale.config import data_dir
>>> from xenonscale.sources.files import FileSetSource
>>> folder = data_dir() / "structures" / "cifs"  # doctest: +REQUIRES_DATA
>>> source = FileSetSource(str(folder), format="cif")
>>> source.read(source.plan(100)[1][0])["id"].head(2).tolist()
['1000041', '1000050']
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from typing import Any

import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.base import Partition, Source
from xenonscale.sources.frames import build_frame
from xenonscale.sources.stream import KINDS, check_rows_per_partition, make_partitions

__all__ = ["FileSetSource", "file_format", "has_glob"]

_COMPRESSED = (".gz", ".bz2", ".xz")
_FORMATS = ("cif", "poscar")


def has_glob(url: str) -> bool:
    """Whether ``url`` holds a glob pattern (``*``, ``?``, ``[``)."""
    return any(char in url for char in "*?[")


def _strip_compression(name: str) -> str:
    for suffix in _COMPRESSED:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def file_format(name: str) -> str | None:
    """``"cif"`` or ``"poscar"`` from a file name (compression suffix ignored), else None."""
    base = _strip_compression(posixpath.basename(name))
    lower = base.lower()
    if lower.endswith(".cif"):
        return "cif"
    if lower.endswith((".vasp", ".poscar")) or base.startswith(("POSCAR", "CONTCAR")):
        return "poscar"
    return None


def _record_id(path: str, root: str) -> str:
    rel = posixpath.relpath(path, root) if root else posixpath.basename(path)
    rel = _strip_compression(rel)
    for suffix in (".cif", ".vasp", ".poscar"):
        if rel.lower().endswith(suffix):
            return rel[: -len(suffix)]
    return rel


class FileSetSource(Source):
    """A directory or glob of structure files; kind ``structure``.

    Parameters
    ----------
    url
        A directory (searched recursively for files of ``format``), a glob
        (``dir/*.cif``, ``runs/**/POSCAR*``) or one file, local or fsspec.
    format
        ``"cif"`` or ``"poscar"``; default inferred from the pattern or, for a
        directory, from the files it holds (CIF first).
    encoding
        Text encoding of the files; undecodable bytes are replaced.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str | None = None,
        kind: str | None = None,
        encoding: str = "utf-8",
        storage_options: dict | None = None,
    ) -> None:
        self.url = str(url)
        self.storage_options = dict(storage_options or {})
        self.encoding = encoding
        if format is not None and format not in _FORMATS:
            raise ConfigError(f"format={format!r} is not a file-set format: use 'cif' or 'poscar'")
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"kind={kind!r} is unknown: use one of {', '.join(KINDS)}")
        self.kind = kind or "structure"
        fs, path = self._fs()
        if has_glob(self.url):
            self.root = posixpath.dirname(path.split("*")[0].split("?")[0].split("[")[0])
            self.format = format or file_format(path)
            if not fs.glob(path):
                raise SourceError(f"no files match {self.url!r}: check the pattern")
        elif fs.isfile(path):
            self.root = posixpath.dirname(path)
            self.format = format or file_format(path)
        else:
            if not fs.isdir(path):
                raise SourceError(f"{self.url!r} is neither a directory nor a glob of files")
            self.root = path.rstrip("/")
            names = [p for p in fs.find(path) if file_format(p)]
            found = {file_format(p) for p in names}
            self.format = format or ("cif" if "cif" in found else "poscar" if found else None)
        if self.format is None:
            raise SourceError(
                f"no CIF or POSCAR files found at {self.url!r}: pass format='cif' or 'poscar', "
                "or a glob such as dir/*.cif"
            )
        self.column = self.format

    def _fs(self) -> tuple[Any, str]:
        from fsspec.core import url_to_fs

        return url_to_fs(self.url, **self.storage_options)

    def _listing(self) -> dict[str, dict]:
        """``{path: info}`` of the set's files, sorted by path."""
        fs, path = self._fs()
        if has_glob(self.url):
            found = fs.glob(path, detail=True)
            keep = {p: i for p, i in found.items() if i.get("type") != "directory"}
        elif fs.isfile(path):
            keep = {path: fs.info(path)}
        else:
            found = fs.find(path, detail=True)
            keep = {p: i for p, i in found.items() if file_format(p) == self.format}
        return dict(sorted(keep.items()))

    def fingerprint(self) -> str:
        """URL, file count and a hash of the sorted (name, size, mtime/ETag) list."""
        listing = [
            [p, i.get("size"), str(i.get("ETag") or i.get("mtime") or i.get("LastModified"))]
            for p, i in self._listing().items()
        ]
        digest = hashlib.sha256(json.dumps(listing).encode()).hexdigest()
        return json.dumps(
            {"url": self.url, "files": len(listing), "sha256": digest}, sort_keys=True
        )

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """List the files once; each partition's locator holds its paths."""
        rpp = check_rows_per_partition(rows_per_partition)
        paths = list(self._listing())
        locators = [{"files": paths[k : k + rpp]} for k in range(0, len(paths), rpp)]
        return len(paths), make_partitions(len(paths), rpp, locators)

    def read(self, partition: Partition) -> pd.DataFrame:
        """Read the partition's files; an unreadable file gives ``input=None``."""
        fs, _ = self._fs()
        paths = partition.locator["files"]
        texts: list[str | None] = []
        for path in paths:
            try:
                with fs.open(path, "rb", compression="infer") as f:
                    texts.append(f.read().decode(self.encoding, "replace"))
            except OSError:
                texts.append(None)
        ids = [_record_id(p, self.root) for p in paths]
        names = [posixpath.basename(p) for p in paths]
        return build_frame(partition.start, ids, texts, {"file": names})

    def describe(self) -> dict:
        return super().describe() | {"format": self.format, "column": self.column}
