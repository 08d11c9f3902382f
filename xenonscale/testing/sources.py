"""``SourceTests``: the source contract as a pytest base class (like zarr's ``StoreTests``).

A subclass says how to write records in its format (:meth:`SourceTests.encode`,
or :meth:`SourceTests.write` for a set of files) and which records to write
(the ``records`` fixture); the base class provides the tests of
:class:`~xenonscale.sources.base.Source`:

* every row is planned exactly once, in contiguous partitions, for 1, 3 and
  many rows per partition, and the plan is deterministic;
* ``read`` gives ``row`` = ``start .. stop - 1``, string ids equal to the
  written ones (or the row number), inputs and extras equal to what was written;
* ids are stable across two opens; the fingerprint is stable, and changes
  when the content changes;
* an empty file gives 0 rows (or error rows) or a :class:`~xenonscale.errors.SourceError`;
  a missing file a ``SourceError`` naming it; a malformed file (truncated,
  garbage, binary) a :class:`~xenonscale.errors.XenonscaleError` or rows,
  never another exception;
* the source pickles (Dask ships it), reads concurrently from threads, and
  ``describe()`` is JSON.

The ``location`` fixture says where files go: a local ``tmp_path`` by
default; override it (for instance with an ``s3://`` bucket and its
``storage_options``) to run the same tests on another file system.

Needs pytest (a test dependency).

Examples
--------
A tab-separated format of ``id<TAB>formula`` lines, tested on the local disk::

    import pytest
    from xenonscale.testing import SourceRecord, SourceTests

    class TestTsv(SourceTests):
        filename = "records.tsv"
        kind = "composition"

        @pytest.fixture
        def records(self):
            formulas = ["Fe2O3", "NaCl", "LiFePO4", "GaN", "SiO2", "MgO", "TiO2"]
            return [SourceRecord(f, id=f"m{i}") for i, f in enumerate(formulas)]

        def encode(self, records):
            lines = ["id\\tformula", *(f"{r.id}\\t{r.input}" for r in records)]
            return ("\\n".join(lines) + "\\n").encode()

        open_options = {"id_column": "id"}
"""

from __future__ import annotations

import itertools
import json
import math
import pickle
import posixpath
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from xenonscale.errors import SourceError, XenonscaleError
from xenonscale.sources import open_source
from xenonscale.sources.base import Partition, Source

__all__ = [
    "PARTITION_SIZES",
    "SourceRecord",
    "SourceTests",
    "Written",
    "mark_known_violation",
    "write_bytes",
]

#: Rows per partition every plan/read test runs with: one, a few, more than the records.
PARTITION_SIZES = (1, 3, 1_000_000)

#: Malformed contents every format must survive (besides its own encoding, truncated).
GARBAGE = {
    "garbage": b'}{ not :: a "record at all\n\x00\x00 {[ <<>> \xff\xfe\n$$$$\nM  END\n\n,,,"\n',
    "binary": bytes(range(256)) * 8,
}


@dataclass(frozen=True)
class Written:
    """Records written by :meth:`SourceTests.write` into ``folder`` and opened at ``url``."""

    source: Source
    records: list
    url: str
    folder: str
    options: dict


@dataclass(frozen=True)
class SourceRecord:
    """One record to write: ``input`` (what ``read`` must give back), ``id``, ``extras``.

    ``id=None`` means the format has no id for it: ``read`` must give the row
    number as text. ``extras`` are columns ``read`` must give back (numbers
    compared with a relative tolerance of 1e-9).
    """

    input: Any
    id: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)


def write_bytes(url: str, data: bytes, storage_options: Mapping | None = None) -> None:
    """Write ``data`` to the fsspec ``url`` (parent folders created)."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url, **dict(storage_options or {}))
    parent = posixpath.dirname(path)
    if parent and "file" in np.atleast_1d(fs.protocol):
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, data)
    fs.invalidate_cache(path)


class SourceTests:
    """Base class of a source format's contract tests (see the module docstring).

    Subclass it in a test module under a name starting with ``Test`` and give:

    ``records`` (fixture)
        At least :attr:`min_records` :class:`SourceRecord` (real data).
    :meth:`encode`
        Records → the bytes of one file of the format; or override
        :meth:`write` (and :meth:`write_raw`) for a set of files.
    :attr:`filename`, :attr:`open_options`, :attr:`kind`
        The file's name (its suffix picks the reader), keyword arguments of
        :func:`~xenonscale.sources.open_source` (or override :meth:`open`),
        the kind the source must report (``None``: not checked).
    :meth:`write_raw`, :meth:`missing_url`, :meth:`expected_input`
        Overridable: raw bytes (empty, malformed) as the format's file, a URL
        where nothing is, what ``read`` gives back for a record.
    :attr:`known_violations`
        Tests that fail for a known bug, with the reason (strict xfails).

    Examples
    --------
    See the module docstring (``xenonscale.testing.sources``).
    """

    filename: ClassVar[str] = "records"
    open_options: ClassVar[Mapping[str, Any]] = {}
    kind: ClassVar[str | None] = None
    min_records: ClassVar[int] = 7
    #: ``{test name: reason}`` (or ``"test name[param]"``, e.g. ``[truncated]``) of known
    #: violations: those tests are strict xfails, so they fail again once the bug is fixed.
    known_violations: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_violation(self, request):
        mark_known_violation(request, self.known_violations)

    # -- what a subclass provides -----------------------------------------------------------

    @pytest.fixture
    def records(self) -> list[SourceRecord]:
        raise NotImplementedError(
            f"{type(self).__name__}: define a `records` fixture returning SourceRecord objects"
        )

    @pytest.fixture
    def location(self, tmp_path) -> tuple[str, dict]:
        """``(base URL, storage_options)`` where the tests write (default: ``tmp_path``)."""
        return str(tmp_path), {}

    def encode(self, records: list[SourceRecord]) -> bytes:
        """The bytes of one file holding ``records`` in the format."""
        raise NotImplementedError(
            f"{type(self).__name__}: implement encode(records) -> bytes, or override write()"
        )

    def write(self, records: list[SourceRecord], url: str, storage_options: dict) -> str:
        """Write ``records`` under the folder ``url``; return the URL to open."""
        target = f"{url}/{self.filename}"
        write_bytes(target, self.encode(records), storage_options)
        return target

    def write_raw(self, data: bytes, url: str, storage_options: dict) -> str:
        """Write ``data`` as the format's file (empty, malformed) under ``url``; the URL to open."""
        target = f"{url}/{self.filename}"
        write_bytes(target, data, storage_options)
        return target

    def open(self, url: str, storage_options: dict) -> Source:
        """Open ``url`` (default: ``open_source(url, **open_options)``)."""
        return open_source(url, storage_options=storage_options or None, **self.open_options)

    def missing_url(self, url: str) -> str:
        """A URL under the folder ``url`` where nothing is (default ``missing-FILENAME``)."""
        return f"{url}/missing-{self.filename}"

    def expected_input(self, record: SourceRecord) -> Any:
        """What ``read`` must give as ``input`` for ``record`` (default ``record.input``)."""
        return record.input

    # -- fixtures of the base class ---------------------------------------------------------

    @pytest.fixture
    def written(self, records, location) -> Written:
        """The records written once and opened (:class:`Written`)."""
        if len(records) < self.min_records:
            pytest.fail(f"{type(self).__name__}: give at least {self.min_records} records")
        base, options = location
        folder = _fresh(base)
        url = self.write(records, folder, options)
        return Written(self.open(url, options), list(records), url, folder, options)

    # -- the contract -----------------------------------------------------------------------

    @pytest.mark.parametrize("rows_per_partition", PARTITION_SIZES)
    def test_every_row_is_planned_once_and_read_as_written(self, written, rows_per_partition):
        source, records = written.source, written.records
        total, partitions = source.plan(rows_per_partition)
        assert total == len(records), f"planned {total} rows for {len(records)} records"
        _check_partitions(total, partitions, rows_per_partition)
        assert source.plan(rows_per_partition) == (total, partitions), "plan is not deterministic"
        json.dumps([p.locator for p in partitions])  # locators travel as JSON (manifest)
        assert pickle.loads(pickle.dumps(partitions)) == partitions
        frame = _read_all(source, rows_per_partition)
        _check_frame(self, frame, records)

    def test_ids_are_stable_across_opens(self, written):
        first = _read_all(written.source, 3)["id"].tolist()
        second = _read_all(self.open(written.url, written.options), 4)["id"].tolist()
        assert first == second, "ids differ between two opens of the same file"

    def test_fingerprint_is_stable_and_follows_the_content(self, written):
        records, base, options = written.records, written.folder, written.options
        before = written.source.fingerprint()
        assert isinstance(before, str) and before
        reopened = self.open(written.url, options).fingerprint()
        assert reopened == before, "fingerprint differs on reopen"
        time.sleep(0.02)  # a local fingerprint may use mtime (kernel ticks): let it move on
        fewer = self.open(self.write(records[:-1], base, options), options).fingerprint()
        assert fewer != before, "fingerprint unchanged after a record was removed"
        time.sleep(0.02)
        rotated = [
            SourceRecord(records[(i + 1) % len(records)].input, r.id, r.extras)
            for i, r in enumerate(records)
        ]
        changed = self.open(self.write(rotated, base, options), options).fingerprint()
        assert changed not in (before, fewer), "fingerprint unchanged after inputs changed"

    def test_no_records_gives_zero_rows_or_a_source_error(self, location):
        base, options = location
        _zero_or_error(self, lambda: self.open(self.write([], _fresh(base), options), options))

    def test_empty_file_gives_zero_rows_or_a_source_error(self, location):
        base, options = location
        _zero_or_error(self, lambda: self.open(self.write_raw(b"", _fresh(base), options), options))

    def test_missing_file_is_a_source_error_naming_it(self, location):
        base, options = location
        url = self.missing_url(_fresh(base))
        with pytest.raises(SourceError) as caught:
            source = self.open(url, options)
            source.plan(10)  # a reader may open lazily: then planning must say it
        name = posixpath.basename(url.split("*")[0].rstrip("/"))
        assert name in str(caught.value), f"the error does not name {name!r}: {caught.value}"

    @pytest.mark.parametrize("kind", ["truncated", *GARBAGE])
    def test_malformed_file_is_a_clear_error_or_error_rows(self, records, location, kind):
        base, options = location
        data = GARBAGE.get(kind) or _truncated(self, records)
        url = self.write_raw(data, _fresh(base), options)
        try:
            source = self.open(url, options)
            frame = _read_all(source, 3)
        except AssertionError:
            raise
        except XenonscaleError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message"
            return
        except Exception as exc:
            pytest.fail(
                f"{kind} file: {type(exc).__name__} escaped ({exc}); expected a SourceError "
                "(a XenonscaleError) or error rows"
            )
        assert all(isinstance(i, str) for i in frame["id"])

    def test_source_pickles(self, written):
        source = written.source
        copy = pickle.loads(pickle.dumps(source))
        assert copy.fingerprint() == source.fingerprint()
        assert copy.describe() == source.describe()
        assert copy.plan(3) == source.plan(3)
        _assert_frames_equal(_read_all(copy, 3), _read_all(source, 3))

    def test_concurrent_reads_equal_sequential_ones(self, written):
        source = written.source
        _, partitions = source.plan(2)
        sequential = [source.read(p) for p in partitions]
        with ThreadPoolExecutor(4) as pool:
            concurrent = list(pool.map(source.read, partitions))
        for a, b in zip(sequential, concurrent, strict=True):
            _assert_frames_equal(a, b)

    def test_describe_is_json_with_url_and_kind(self, written):
        source = written.source
        described = json.loads(json.dumps(source.describe()))
        assert {"url", "kind"} <= set(described)
        assert source.kind in ("composition", "structure", "molecule")
        if self.kind is not None:
            assert source.kind == self.kind, f"kind {source.kind!r}, expected {self.kind!r}"


# -- helpers --------------------------------------------------------------------------------


def mark_known_violation(request, known: Mapping[str, str]) -> None:
    """Mark the running test a strict xfail when ``known`` lists it (by name or name[param])."""
    name = getattr(request.node, "originalname", request.node.name)
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    keys = [name, *(f"{name}[{value}]" for value in params.values())]
    reason = next((known[key] for key in keys if key in known), None)
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=f"known violation: {reason}", strict=True))


def _fresh(base: str) -> str:
    return f"{base.rstrip('/')}/{uuid.uuid4().hex[:10]}"


def _check_partitions(total: int, partitions: list[Partition], rpp: int) -> None:
    assert all(isinstance(p, Partition) for p in partitions)
    if total == 0:
        assert partitions == [], f"partitions {partitions} for 0 rows"
        return
    assert [p.index for p in partitions] == list(range(len(partitions))), "indexes not 0..k-1"
    assert partitions[0].start == 0, f"first partition starts at {partitions[0].start}"
    assert partitions[-1].stop == total, f"last partition stops at {partitions[-1].stop}"
    for a, b in itertools.pairwise(partitions):
        assert b.start == a.stop, f"rows {a.stop}..{b.start} not contiguous (gap or overlap)"
    sizes = [p.rows for p in partitions]
    assert all(size == rpp for size in sizes[:-1]), f"partition sizes {sizes} for {rpp}"
    assert 1 <= sizes[-1] <= rpp, f"last partition has {sizes[-1]} rows for {rpp}"


def _read_all(source: Source, rpp: int) -> pd.DataFrame:
    """Plan and read every partition, checking each frame's shape and row numbers."""
    total, partitions = source.plan(rpp)
    _check_partitions(total, partitions, rpp)
    frames = []
    for part in partitions:
        frame = source.read(part)
        assert isinstance(frame, pd.DataFrame), f"read gave {type(frame).__name__}"
        assert list(frame.columns[:3]) == ["row", "id", "input"], list(frame.columns)
        assert len(frame) == part.rows, f"partition {part.index}: {len(frame)} rows, {part.rows}"
        assert frame["row"].dtype == np.int64, f"row dtype {frame['row'].dtype}"
        rows = frame["row"].to_numpy()
        assert (rows == np.arange(part.start, part.stop)).all(), f"rows {rows[:5]}..."
        frames.append(frame)
    if not frames:
        return pd.DataFrame({"row": np.empty(0, np.int64), "id": [], "input": []})
    return pd.concat(frames, ignore_index=True)


def _check_frame(tests: SourceTests, frame: pd.DataFrame, records: list[SourceRecord]) -> None:
    assert len(frame) == len(records)
    ids = frame["id"].tolist()
    assert all(isinstance(i, str) for i in ids), f"ids that are not str: {ids[:5]}"
    want_ids = [r.id if r.id is not None else str(k) for k, r in enumerate(records)]
    assert ids == want_ids, f"ids {ids[:5]}... != written {want_ids[:5]}..."
    for k, (got, record) in enumerate(zip(frame["input"].tolist(), records, strict=True)):
        want = tests.expected_input(record)
        assert _same_value(got, want), f"row {k}: input {_short(got)} != written {_short(want)}"
    for name in dict.fromkeys(key for r in records for key in r.extras):
        assert name in frame.columns, f"extra column {name!r} missing: {list(frame.columns)}"
        for k, (got, record) in enumerate(zip(frame[name].tolist(), records, strict=True)):
            want = record.extras.get(name)
            assert _same_value(got, want), f"row {k}: {name} {got!r} != written {want!r}"


def _same_value(got: Any, want: Any) -> bool:
    if _missing(want) or _missing(got):
        return _missing(want) and _missing(got)
    if isinstance(want, bool) or isinstance(got, bool):
        return bool(got) == bool(want) and type(got) is not str
    if isinstance(want, int | float | np.number) and isinstance(got, int | float | np.number):
        return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-12)
    return got == want


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _assert_frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        left, right = a[name].tolist(), b[name].tolist()
        same = all(_same_value(x, y) for x, y in zip(left, right, strict=True))
        assert same, f"column {name!r} differs"


def _zero_or_error(tests: SourceTests, opener) -> None:
    """0 rows, rows that are all unreadable (input None), or a SourceError."""
    try:
        frame = _read_all(opener(), 3)
    except AssertionError:
        raise
    except SourceError as exc:
        assert str(exc).strip()
        return
    except Exception as exc:
        pytest.fail(
            f"{type(exc).__name__} ({exc}); expected 0 rows or a SourceError for an empty source"
        )
    readable = [v for v in frame["input"].tolist() if not _missing(v)]
    assert not readable, f"an empty source gave inputs {readable[:3]!r}"


def _truncated(tests: SourceTests, records: list[SourceRecord]) -> bytes:
    try:
        data = tests.encode(records)
    except NotImplementedError:
        data = str(records[0].input).encode()
    return data[: max(1, len(data) * 3 // 5)]
