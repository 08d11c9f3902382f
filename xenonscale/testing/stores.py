"""``StoreTests``: the FeatureStore contract on one location, as a pytest base class.

The same tests run against every place a store can live (a local folder, an
``s3://`` bucket, any fsspec file system): a subclass gives the ``location``
fixture (a base URL and its ``storage_options``) and real input records; the
base class runs :func:`~xenonscale.engine.featurize_to_store` jobs there and
checks what the engine promises:

* every row lands once: ``rows == featurized + errors``; the values, ``ok``
  and the error table equal the in-memory featurizer's on the same inputs
  (the store holds float32); chunks along ``sample`` are ``chunk_rows``;
* a rerun of the same job resumes every partition and changes nothing;
* another featurizer spec is refused (:class:`~xenonscale.errors.StoreError`)
  unless ``overwrite=True``, which replaces the store;
* a held job lock (:class:`~xenonscale.engine.bookkeeping.JobLock`) refuses a
  second job (:class:`~xenonscale.errors.StoreLockedError`), and a finished
  job leaves the lock free;
* a folder holding something else is never written into;
* :func:`~xenonscale.store.open_store` and :func:`~xenonscale.store.read_errors`
  read a finished store and refuse a missing one.

Needs pytest (a test dependency) and a Dask client: the ``client`` fixture
starts an embedded one-worker cluster for the class; override it to reuse one.

Examples
--------
::

    import pytest
    from xenonscale.testing import StoreTests

    class TestLocalStore(StoreTests):
        @pytest.fixture(scope="class")
        @classmethod
        def source_frame(cls):
            return pd.read_csv("matbench_expt_gap.csv").head(40)  # formula, target

    class TestS3Store(TestLocalStore):
        @pytest.fixture(scope="class")
        @classmethod
        def location(cls, s3_base):  # a module- or session-scoped bucket fixture
            return s3_base  # ("s3://bucket", storage_options)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest

from xenonscale.cluster import close_client, get_client
from xenonscale.engine import featurize_to_store
from xenonscale.engine.bookkeeping import JobLock
from xenonscale.errors import StoreError, StoreLockedError
from xenonscale.featurize.base import featurize_safely
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store import StoreLocation, open_store, read_errors
from xenonscale.testing.sources import mark_known_violation

__all__ = ["StoreTests"]


class StoreTests:
    """Base class of a store location's contract tests (see the module docstring).

    Subclass it under a name starting with ``Test`` and give (class-scoped fixtures are
    written ``@pytest.fixture(scope="class")`` over ``@classmethod``, as pytest asks):

    ``source_frame`` (class-scoped fixture)
        A small DataFrame of real records: the :attr:`column` of inputs and
        extra columns (e.g. ``target``). The base class writes it as a CSV
        with :attr:`invalid_inputs` inserted, so the store has error rows.
    ``location`` (class-scoped fixture)
        ``(base URL, storage_options)``; default a local temporary folder.
        Every test writes its own store under it.
    ``client`` (class-scoped fixture)
        A ``distributed.Client``; default an embedded cluster for the class.
    :attr:`spec`, :attr:`other_spec`
        The featurizer spec of the jobs, and a different one (spec refusal).
    :attr:`known_violations`
        Tests that fail for a known bug, with the reason (strict xfails).
    """

    spec: ClassVar[FeaturizerSpec] = FeaturizerSpec.parse("composition", "classic")
    other_spec: ClassVar[FeaturizerSpec] = FeaturizerSpec.parse("composition", "Counting")
    column: ClassVar[str] = "formula"
    #: Inputs every featurizer must reject; ``None`` is written as an empty cell.
    invalid_inputs: ClassVar[tuple] = ("Xx2O3", None)
    chunk_rows: ClassVar[int] = 8
    partition_rows: ClassVar[int] = 16
    #: ``{test name: reason}`` of known violations (strict xfails: they fail once fixed).
    known_violations: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_violation(self, request):
        mark_known_violation(request, self.known_violations)

    # -- what a subclass provides (class-scoped fixtures) -----------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def source_frame(cls) -> pd.DataFrame:
        raise NotImplementedError(
            f"{cls.__name__}: define a class-scoped `source_frame` fixture (a DataFrame "
            "of real records)"
        )

    @pytest.fixture(scope="class")
    @classmethod
    def location(cls, tmp_path_factory) -> tuple[str, dict]:
        """``(base URL, storage_options)`` where stores go (default: a temporary folder)."""
        return str(tmp_path_factory.mktemp("stores")), {}

    @pytest.fixture(scope="class")
    @classmethod
    def client(cls):
        """A Dask client for the jobs (default: an embedded one-worker cluster)."""
        client = get_client(workers=1, quiet=True)
        yield client
        close_client(client)

    # -- fixtures and helpers of the base class ---------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def source(cls, source_frame, tmp_path_factory) -> tuple[str, list]:
        """``(CSV path, inputs as the engine reads them)``: the records + invalid rows."""
        frame = source_frame.reset_index(drop=True)
        if cls.column not in frame.columns or len(frame) < 2:
            pytest.fail(f"source_frame needs a {cls.column!r} column and a few rows")
        rows = frame.to_dict("records")
        for k, bad in enumerate(cls.invalid_inputs):
            at = 1 + k * max(1, len(rows) // max(1, len(cls.invalid_inputs)))
            rows.insert(min(at, len(rows)), {cls.column: bad})
        table = pd.DataFrame(rows, columns=frame.columns)
        path = tmp_path_factory.mktemp("store-source") / "source.csv"
        table.to_csv(path, index=False)
        inputs = [None if _blank(v) else v for v in table[cls.column].tolist()]
        return str(path), inputs

    @pytest.fixture
    def store(self, location) -> tuple[str, dict]:
        """``(store URL, storage_options)``: a fresh path at the location."""
        return self.fresh_store(location)

    @pytest.fixture(scope="class")
    @classmethod
    def finished(cls, location, source, client) -> tuple[tuple[str, dict], Any]:
        """``(store, summary)`` of one job run for the class (the tests that only read or
        resume share it)."""
        store = cls.fresh_store(location)
        return store, cls.run_job(source[0], store, client)

    @staticmethod
    def fresh_store(location: tuple[str, dict]) -> tuple[str, dict]:
        base, options = location
        return f"{base.rstrip('/')}/{uuid.uuid4().hex[:10]}.zarr", dict(options or {})

    @classmethod
    def run_job(cls, source, store, client, *, spec=None, overwrite=False):
        """One engine job from the CSV ``source`` into ``store`` (the summary)."""
        url, options = store
        return featurize_to_store(
            source,
            url,
            spec or cls.spec,
            column=cls.column,
            client=client,
            chunk_rows=cls.chunk_rows,
            partition_rows=cls.partition_rows,
            progress=False,
            overwrite=overwrite,
            storage_options=options or None,
        )

    @classmethod
    def expected(cls, inputs: list, spec: FeaturizerSpec | None = None):
        """The in-memory result on the same inputs (what the store must hold)."""
        spec = spec or cls.spec
        return featurize_safely(spec.build(), inputs, spec.limits)

    # -- the contract -----------------------------------------------------------------------

    def test_a_job_writes_every_row_as_the_featurizer_computes_it(self, source, finished):
        _, inputs = source
        (url, options), job = finished
        n = len(inputs)
        partitions = -(-n // self.partition_rows)
        assert (job.rows, job.featurized + job.errors) == (n, n)
        assert (job.partitions, job.resumed_partitions) == (partitions, 0)
        want = self.expected(inputs)
        assert (job.featurized, job.errors) == (int(want.ok.sum()), len(want.errors))

        ds = open_store(url, storage_options=options or None)
        assert ds.attrs["complete"] is True
        labels = list(self.spec.build().labels)
        assert ds.features.shape == (n, len(labels))
        assert ds.features.dtype == np.float32
        assert list(ds.feature.values) == labels
        assert ds.sample.values.tolist() == list(range(n))
        assert ds.features.chunks[0][0] == self.chunk_rows
        np.testing.assert_array_equal(ds.ok.values, want.ok)
        np.testing.assert_array_equal(ds.features.values, want.values.astype(np.float32))
        stored_inputs = [None if _blank(v) else v for v in ds.input.values.tolist()]
        assert stored_inputs == inputs
        assert all(isinstance(i, str) for i in ds.id.values.tolist())

        errors = read_errors(url, storage_options=options or None)
        assert list(errors.columns) == ["row", "input", "error"]
        assert errors["row"].tolist() == [e.row for e in want.errors]
        assert errors["error"].tolist() == [e.reason for e in want.errors]

    def test_a_rerun_resumes_every_partition(self, source, finished, client):
        store, first = finished
        url, options = store
        before = open_store(url, storage_options=options or None).features.values
        again = self.run_job(source[0], store, client)
        assert (again.rows, again.partitions) == (first.rows, first.partitions)
        assert again.resumed_partitions == first.partitions
        assert (again.featurized, again.errors) == (first.featurized, first.errors)
        after = open_store(url, storage_options=options or None).features.values
        np.testing.assert_array_equal(after, before)

    def test_a_held_job_lock_refuses_a_second_job(self, source, store, finished, client):
        path, _ = source
        for target in (store, finished[0]):  # a new store, and a rerun of a finished one
            location = StoreLocation(target[0], target[1] or None)
            with JobLock(location), pytest.raises(StoreLockedError):
                self.run_job(path, target, client)
        # the lock is free again once released (and a finished job left it free)
        job = self.run_job(path, store, client)
        assert (job.featurized + job.errors, job.resumed_partitions) == (job.rows, 0)

    def test_another_spec_is_refused_unless_overwrite(self, source, store, client):
        path, inputs = source
        self.run_job(path, store, client)
        with pytest.raises(StoreError, match="overwrite"):
            self.run_job(path, store, client, spec=self.other_spec)
        url, options = store
        kept = open_store(url, storage_options=options or None)
        assert list(kept.feature.values) == list(self.spec.build().labels), "store changed"
        replaced = self.run_job(path, store, client, spec=self.other_spec, overwrite=True)
        assert replaced.resumed_partitions == 0
        ds = open_store(url, storage_options=options or None)
        assert list(ds.feature.values) == list(self.other_spec.build().labels)
        want = self.expected(inputs, self.other_spec)
        np.testing.assert_array_equal(ds.features.values, want.values.astype(np.float32))

    def test_a_folder_holding_other_files_is_never_written(self, source, store, client):
        from fsspec.core import url_to_fs

        path, _ = source
        url, options = store
        fs, root = url_to_fs(url, **(options or {}))
        note = f"{root}/notes.txt"
        if "file" in np.atleast_1d(fs.protocol):
            fs.makedirs(root, exist_ok=True)
        fs.pipe_file(note, b"not a store")
        for overwrite in (False, True):
            with pytest.raises(StoreError):
                self.run_job(path, store, client, overwrite=overwrite)
        fs.invalidate_cache()
        assert fs.cat_file(note) == b"not a store"
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) == ["notes.txt"]

    def test_open_store_and_read_errors_refuse_a_missing_store(self, store):
        url, options = store
        with pytest.raises(StoreError):
            open_store(url, storage_options=options or None)
        with pytest.raises(StoreError):
            read_errors(url, storage_options=options or None)


def _blank(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and np.isnan(value))
