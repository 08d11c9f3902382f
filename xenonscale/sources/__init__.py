"""Partitioned, streaming record readers (see :mod:`xenonscale.sources.base`).

:func:`open_source` picks a reader from the URL's name (after dropping a
``.gz``/``.bz2``/``.xz`` suffix) unless ``format`` is given:

============================  ===========================  =========================
name                          format                       class
============================  ===========================  =========================
``*.csv`` / ``*.tsv``         ``csv`` / ``tsv``            :class:`DelimitedSource`
``*.parquet`` / ``*.pq``      ``parquet``                  :class:`ParquetSource`
``*.jsonl`` / ``*.ndjson``    ``jsonl``                    :class:`JsonLinesSource`
``*.json``                    ``json`` (list or split)     :class:`JsonListSource`,
                                                           :class:`SplitJsonSource`
``*.smi`` / ``*.smiles``      ``smi``                      :class:`SmilesSource`
``*.sdf`` / ``*.sd``          ``sdf``                      :class:`SdfSource`
dir, ``*.cif``, ``**/POSCAR*``  ``cif`` / ``poscar``       :class:`FileSetSource`
``*.xyz`` / ``*.extxyz``      ``extxyz`` (frames, ASE)     :class:`ExtxyzSource`
``*.db``                      ``ase-db`` (ASE SQLite db)   :class:`AseDbSource`
``ase:PATH``                  extxyz by name, else ase-db  :class:`ExtxyzSource`,
                              (SQLite or ASE's JSON db)    :class:`AseDbSource`
``optimade:URL-OR-NAME?...``  (an OPTIMADE query)          :class:`OptimadeSource`
``enumerate:compositions?..`` (candidate compositions)     :class:`EnumeratedSource`
============================  ===========================  =========================

A plain ``*.json`` is JSON documents: an ASE JSON database is read as
``ase:PATH.json`` (or ``format="ase-db"``).

URLs are fsspec URLs: plain paths, ``file://``, ``s3://bucket/key`` with
``storage_options`` (e.g. ``{"key": ..., "secret": ..., "client_kwargs":
{"endpoint_url": ...}}``).

Examples
--------
>>> from xenonscale.datasets import fetch
>>> from xenonscale.sources import open_source
>>> source = open_source(str(fetch("matbench_expt_gap")))  # doctest: +REQUIRES_DATA
>>> source.column, source.kind
('formula', 'composition')
>>> total, partitions = source.plan(rows_per_partition=1_000)
>>> total, len(partitions)
(4604, 5)
>>> source.read(partitions[0]).columns.tolist()
['row', 'id', 'input', 'target']
"""

from __future__ import annotations

import inspect
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources.asedb import AseDbSource
from xenonscale.sources.base import Partition, Source
from xenonscale.sources.delimited import DelimitedSource
from xenonscale.sources.enumerated import ENUMERATE_PREFIX, EnumeratedSource, refuse_file_options
from xenonscale.sources.extxyz import ExtxyzSource
from xenonscale.sources.files import FileSetSource, file_format, has_glob
from xenonscale.sources.jsondocs import JsonListSource, SplitJsonSource, open_json
from xenonscale.sources.lines import JsonLinesSource, SmilesSource
from xenonscale.sources.optimade import OPTIMADE_PREFIX, OptimadeSource
from xenonscale.sources.parquet import ParquetSource
from xenonscale.sources.sdf import SdfSource

__all__ = [
    "ASE_PREFIX",
    "FORMATS",
    "AseDbSource",
    "DelimitedSource",
    "EnumeratedSource",
    "ExtxyzSource",
    "FileSetSource",
    "JsonLinesSource",
    "JsonListSource",
    "OptimadeSource",
    "ParquetSource",
    "Partition",
    "SdfSource",
    "SmilesSource",
    "Source",
    "SplitJsonSource",
    "canonical_url",
    "infer_format",
    "open_source",
]

#: Formats :func:`open_source` accepts.
FORMATS = (
    "csv", "tsv", "parquet", "jsonl", "json", "json-split", "smi", "sdf", "cif", "poscar",
    "extxyz", "ase-db",
)  # fmt: skip
#: ``ase:PATH``: an extxyz file or an ASE database (SQLite or ASE's JSON format).
ASE_PREFIX = "ase:"

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".smi": "smi",
    ".smiles": "smi",
    ".sdf": "sdf",
    ".sd": "sdf",
    ".xyz": "extxyz",
    ".extxyz": "extxyz",
    ".db": "ase-db",
}
_COMPRESSION = (".gz", ".bz2", ".xz")


def infer_format(url: str, storage_options: dict | None = None) -> str:
    """The format of ``url``: from its name (compression dropped), else a directory's files.

    Examples
    --------
    >>> infer_format("data/oqmd.csv.gz"), infer_format("cifs/*.cif"), infer_format("x.ndjson")
    ('csv', 'cif', 'jsonl')
    """
    named = _format_from_name(url)
    if named is not None:
        return named
    if not has_glob(str(url)):
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(str(url), **(storage_options or {}))
        if fs.isdir(path):
            return FileSetSource(url, storage_options=storage_options).format
        if not fs.exists(path):
            raise SourceError(f"source {url!r} does not exist: check the path or URL")
    raise SourceError(
        f"cannot tell the format of {url!r} from its name: pass format= one of {', '.join(FORMATS)}"
    )


def _format_from_name(url: str) -> str | None:
    """The format told by ``url``'s name alone (compression suffix dropped), else None."""
    name = posixpath.basename(str(url).rstrip("/"))
    for suffix in _COMPRESSION:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return file_format(name) or _SUFFIXES.get(posixpath.splitext(name)[1].lower())


def open_source(
    url: str,
    *,
    format: str | None = None,
    column: str | None = None,
    id_column: str | None = None,
    kind: str | None = None,
    storage_options: dict | None = None,
    **options: Any,
) -> Source:
    """Open a partitioned, streaming reader of ``url``.

    Parameters
    ----------
    url
        Path or fsspec URL of a file, a directory, or a glob (CIF/POSCAR).
    format
        One of :data:`FORMATS`; default inferred from the name.
    column
        The input field (tabular and JSON formats); default ``formula`` or
        ``structure`` when present, else the first column.
    id_column
        The id field; default the unnamed index column (CSV), ``material_id``
        (JSON documents), the index (split JSON), the name/title (SMILES, SDF),
        the file's relative path (CIF/POSCAR), else the row number.
    kind
        ``composition``, ``structure`` or ``molecule``; default guessed from the
        format and column.
    storage_options
        fsspec filesystem options (S3 credentials and endpoint).
    **options
        Format options, e.g. ``delimiter``, ``encoding``, ``block_size``,
        ``compression``, ``header`` (SMILES).

    Returns
    -------
    Source
        Picklable; ``plan`` then ``read`` (see :mod:`xenonscale.sources.base`).

    Raises
    ------
    ConfigError
        A bad argument: unknown format or option, a column that is not there.
    SourceError
        The URL does not exist or its format cannot be told.
    """
    url = canonical_url(url)
    if isinstance(url, str) and url.startswith(ASE_PREFIX):
        url = url[len(ASE_PREFIX) :]
        format = format or ("extxyz" if _format_from_name(url) == "extxyz" else "ase-db")
    if isinstance(url, str) and url.startswith(OPTIMADE_PREFIX):
        _refuse_for_optimade(format=format, column=column, id_column=id_column)
        return OptimadeSource(url, kind=kind, storage_options=storage_options, **options)
    if isinstance(url, str) and url.startswith(ENUMERATE_PREFIX):
        refuse_file_options(format=format, column=column, id_column=id_column)
        return EnumeratedSource(url, kind=kind, storage_options=storage_options, **options)
    fmt = format or infer_format(url, storage_options)
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt!r} is unknown: use one of {', '.join(FORMATS)}")
    common: dict[str, Any] = {"kind": kind, "storage_options": storage_options}
    tabular = {"column": column, "id_column": id_column}
    if fmt in ("cif", "poscar"):
        _refuse(fmt, column=column, id_column=id_column)
        cls, kwargs = FileSetSource, {"format": fmt}
    elif fmt in ("smi", "sdf"):
        _refuse(fmt, column=column, id_column=id_column if fmt == "smi" else None)
        cls, kwargs = (SmilesSource, {}) if fmt == "smi" else (SdfSource, {"id_column": id_column})
    elif fmt in ("extxyz", "ase-db"):
        _refuse(fmt, column=column)
        cls = ExtxyzSource if fmt == "extxyz" else AseDbSource
        kwargs = {"id_column": id_column}
    elif fmt in ("csv", "tsv"):
        cls, kwargs = DelimitedSource, tabular | ({"delimiter": "\t"} if fmt == "tsv" else {})
    else:
        cls, kwargs = (
            {
                "parquet": ParquetSource,
                "jsonl": JsonLinesSource,
                "json": open_json,
                "json-split": SplitJsonSource,
            }[fmt],
            tabular,
        )
    reader = JsonListSource if cls is open_json else cls
    accepted = set(inspect.signature(reader).parameters) - {"url"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"option(s) {unknown!r} are not accepted by format {fmt!r}: "
            f"it takes {sorted(accepted - set(common) - set(kwargs))}"
        )
    return cls(url, **common, **kwargs, **options)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def canonical_url(url: str) -> str:
    """A local path made absolute and resolved (``csv/x.csv``, ``./csv/x.csv`` and
    ``/abs/csv/x.csv`` are one source, so a rerun resumes whatever the spelling);
    URLs with a scheme (``s3://``, ``https://``) are kept as given.

    >>> canonical_url("s3://bucket/x.csv")
    's3://bucket/x.csv'
    >>> canonical_url("x.csv") == str(Path("x.csv").resolve())
    True
    """
    if not isinstance(url, str) or not url:
        return url
    if url.startswith(ASE_PREFIX):  # ase:PATH names a file: its path is made canonical
        return ASE_PREFIX + canonical_url(url[len(ASE_PREFIX) :])
    if url.startswith("file://"):
        path = url.removeprefix("file://")
    elif _SCHEME.match(url):  # s3://, https://, dataset:NAME, ...
        return url
    else:
        path = url
    return str(Path(os.path.expanduser(path)).resolve())


_NATURAL = {"cif": {"cif", "structure"}, "poscar": {"poscar", "structure"},
            "smi": {"smiles", "smi"}, "sdf": {"molblock", "sdf", "mol"},
            "extxyz": {"atoms", "extxyz", "xyz"}, "ase-db": {"atoms"}}  # fmt: skip


def _refuse_for_optimade(**given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise ConfigError(
                f"{name}={value!r} does not apply to optimade: sources (ids are PROVIDER:ID, "
                "inputs the structures): leave it out; --response-fields adds columns"
            )


def _refuse(fmt: str, **given: Any) -> None:
    """Column/id arguments that a fixed-layout format cannot honour (its own names pass)."""
    for name, value in given.items():
        if value is not None and not (name == "column" and str(value).lower() in _NATURAL[fmt]):
            raise ConfigError(
                f"{name}={value!r} does not apply to format {fmt!r}: leave it out "
                "(ids and inputs of this format are fixed; see open_source)"
            )
