"""Fault tolerance on a real multi-process cluster (issue 3, acceptance).

A ``dask scheduler`` and two ``dask worker`` processes run on 127.0.0.1, each
its own process group (no nanny, so a killed worker stays dead). Jobs go
through the real CLI (``xenonscale featurize ... --scheduler tcp://...``) as a
subprocess; the store is compared with one built by an uninterrupted run on
another cluster (the embedded ``dask_client``).

Data: the real OQMD formation-enthalpy training formulas (239,190 rows, not
resampled) with five bad lines injected at known positions, so the error
table is not empty and its rows span several partitions. With
``--chunk-rows 5000 --partition-rows 10000`` the job has 24 tasks and takes
several seconds on 2 workers: long enough to kill something mid-job.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xenonscale
from xenonscale.engine import featurize_to_store
from xenonscale.featurize.registry import FeaturizerSpec

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
CHUNK_ROWS = 5_000
PARTITION_ROWS = 10_000
BIN = Path(sys.executable).parent
DASK = str(BIN / "dask")
XENONSCALE = str(BIN / "xenonscale")

# (position in the data lines, line): unknown element, broken bracket, empty
# cell, garbage bytes (written as raw 0xFF 0xFE), truncated line (no target).
BAD_LINES = [
    (3, "Xx2O3,1.0"),
    (61_234, "Fe2(SO4,2.0"),
    (150_000, ",3.0"),
    (150_001, "\ufffd\ufffdFe2O3,4.0"),
    (239_194, "NaCl)"),
]
SUMMARY = re.compile(
    r"([\d,]+) rows → ([\d,]+) featurized \+ ([\d,]+) errors "
    r"\((\d+) partitions, (\d+) already done\)"
)


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def oqmd_dirty(tmp_path_factory, data_dir) -> tuple[Path, int]:
    """The real OQMD train CSV with BAD_LINES injected; returns (path, rows)."""
    text = (data_dir / "compositions" / "oqmd_formation_enthalpy_train.csv").read_text()
    header, *lines = text.splitlines()
    assert header == "formula,target"
    assert len(lines) == 239_190
    for position, line in BAD_LINES:
        lines.insert(position, line)
    body = (header + "\n" + "\n".join(lines) + "\n").encode()
    path = tmp_path_factory.mktemp("oqmd") / "oqmd_train_dirty.csv"
    path.write_bytes(body.replace("\ufffd\ufffd".encode(), b"\xff\xfe"))
    return path, len(lines)


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, oqmd_dirty, dask_client) -> str:
    """The same job, uninterrupted, on the embedded cluster (another cluster)."""
    path, rows = oqmd_dirty
    store = str(tmp_path_factory.mktemp("reference") / "ref.zarr")
    job = featurize_to_store(
        str(path),
        store,
        SPEC,
        column="formula",
        client=dask_client,
        chunk_rows=CHUNK_ROWS,
        partition_rows=PARTITION_ROWS,
        progress=False,
    )
    assert (job.rows, job.errors, job.resumed_partitions) == (rows, len(BAD_LINES), 0)
    assert job.partitions == -(-rows // PARTITION_ROWS)
    return store


# ------------------------------------------------------------------------ cluster


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal ``proc``'s process group (it leads one: start_new_session) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        _kill(proc, signal.SIGTERM)
    else:  # the leader is gone; make sure nothing it left in its group survives
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


class Cluster:
    """A ``dask scheduler`` + named ``dask worker`` processes (see the fixture)."""

    def __init__(self, folder: Path, env: dict):
        self.folder = folder
        self.env = env
        self.scheduler: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.address = ""

    def start(self, workers: int) -> None:
        file = self.folder / "scheduler.json"
        self.scheduler = _start(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(file)],
            self.folder / "scheduler.log",
            self.env,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.address:
            assert self.scheduler.poll() is None, self._logs("scheduler died")
            assert time.monotonic() < deadline, self._logs("no scheduler file after 60 s")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, KeyError):
                self.address = json.loads(file.read_text())["address"]
            time.sleep(0.1)
        assert self.address.startswith("tcp://127.0.0.1:")
        for i in range(workers):
            name = f"w{i}"
            self.workers[name] = _start(
                [DASK, "worker", "--scheduler-file", str(file), "--name", name,
                 "--nthreads", "1", "--no-nanny", "--host", "127.0.0.1", "--no-dashboard",
                 "--death-timeout", "60", "--local-directory", str(self.folder / name)],
                self.folder / f"{name}.log",
                self.env,
            )  # fmt: skip

    def stop(self) -> None:
        for proc in self.workers.values():
            _stop(proc)
        if self.scheduler is not None:
            _stop(self.scheduler)

    def _logs(self, message: str) -> str:
        logs = "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.folder.glob("*.log"))
        )
        return f"{message}\n{logs}"


@pytest.fixture
def cluster(tmp_path, data_dir):
    """A real multi-process cluster on 127.0.0.1: a scheduler and 2 single-thread workers.

    Every process leads its own process group and is killed at teardown. The
    fixture yields ``(cluster, client)``; the client (this process) watches it.
    """
    from distributed import Client

    env = dict(os.environ, XENONSCALE_DATA_DIR=str(data_dir))
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    folder = tmp_path / "cluster"
    folder.mkdir()
    running = Cluster(folder, env)
    client = None
    try:
        running.start(workers=2)
        client = Client(running.address, timeout=30)
        client.wait_for_workers(2, timeout=60)
        yield running, client
    finally:
        if client is not None:
            client.close(timeout=10)
        running.stop()


# ---------------------------------------------------------------------- the job


def _command(source: Path, store: Path, address: str) -> list[str]:
    return [
        XENONSCALE, "featurize", str(source), "-o", str(store),
        "--column", "formula", "--featurizers", "classic", "--elements", "xenonpy58",
        "--scheduler", address, "--chunk-rows", str(CHUNK_ROWS),
        "--partition-rows", str(PARTITION_ROWS), "--no-progress",
    ]  # fmt: skip


def _done(store: Path) -> int:
    folder = store / "_xenonscale" / "done"
    return len(list(folder.glob("*.json"))) if folder.is_dir() else 0


def _wait_for_first_region(job: subprocess.Popen, store: Path, log: Path) -> int:
    """Block until ≥ 1 done marker exists while the job still runs; return the count."""
    deadline = time.monotonic() + 60
    while _done(store) == 0:
        assert job.poll() is None, f"job ended before any region: {log.read_text()}"
        assert time.monotonic() < deadline, "no region finished within 60 s"
        time.sleep(0.02)
    assert job.poll() is None, "job already finished: make the input bigger"
    return _done(store)


def _finish(job: subprocess.Popen, log: Path, timeout: float = 90) -> str:
    try:
        rc = job.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(job)
        pytest.fail(f"featurize did not finish within {timeout} s: {log.read_text()}")
    text = log.read_text(errors="replace")
    assert rc == 0, text
    return text


def _summary(text: str) -> tuple[int, int, int, int, int]:
    match = SUMMARY.search(text)
    assert match, text
    rows, featurized, errors, partitions, resumed = (
        int(g.replace(",", "")) for g in match.groups()
    )
    return rows, featurized, errors, partitions, resumed


def assert_same_store(store: str, reference: str) -> None:
    """Same variables, dims, chunks and provenance; every array bit-identical; same errors."""
    import zarr

    got, want = xr.open_zarr(store), xr.open_zarr(reference)  # plain xarray reads both
    assert got.attrs["complete"] is True
    assert set(got.variables) == set(want.variables)
    assert {"features", "ok", "id", "input", "target"} <= set(got.variables)
    for key in ("rows", "featurizer", "element_tables", "featurized", "errors", "chunk_rows"):
        assert got.attrs[key] == want.attrs[key], key
    for name in got.variables:
        a, b = got[name], want[name]
        assert (a.dims, a.shape, a.dtype, a.chunks) == (b.dims, b.shape, b.dtype, b.chunks), name
    groups = zarr.open_group(store, mode="r"), zarr.open_group(reference, mode="r")
    for name in got.variables:
        a, b = (group[name][...] for group in groups)
        if a.dtype.kind in "fiub":  # bit for bit (NaN payloads included), fast
            same = a.tobytes() == b.tobytes()
            if not same:
                np.testing.assert_array_equal(a, b, err_msg=name)
            assert same, f"{name}: equal values but different bits"
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    pd.testing.assert_frame_equal(xenonscale.read_errors(store), xenonscale.read_errors(reference))


# -------------------------------------------------------------------------- tests


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_killing_one_worker_mid_job_still_gives_an_identical_store(
    tmp_path, cluster, oqmd_dirty, reference_store
):
    running, client = cluster
    source, rows = oqmd_dirty
    store = tmp_path / "faults.zarr"
    log = tmp_path / "featurize.log"
    job = _start(_command(source, store, running.address), log, running.env)
    try:
        finished_before = _wait_for_first_region(job, store, log)
        # kill a worker that holds tasks of this job right now (its results are lost too)
        deadline = time.monotonic() + 10
        while not (busy := [a for a, keys in client.processing().items() if keys]):
            assert time.monotonic() < deadline, "no worker is processing the job"
            time.sleep(0.01)
        name = client.scheduler_info()["workers"][busy[0]]["name"]
        _kill(running.workers[name])
        partitions = -(-rows // PARTITION_ROWS)
        assert finished_before < partitions
        assert job.poll() is None, "the job finished before the worker was killed"
        text = _finish(job, log)
    finally:
        _kill(job)
    assert running.workers[name].returncode == -signal.SIGKILL
    assert len(client.scheduler_info()["workers"]) == 1  # the worker stayed dead
    assert _summary(text) == (rows, rows - len(BAD_LINES), len(BAD_LINES), partitions, 0)
    assert _done(store) == partitions
    assert not (store / "_xenonscale" / "lock.json").exists()
    assert_same_store(str(store), reference_store)
    errors = xenonscale.read_errors(str(store))
    assert errors["row"].tolist() == [position for position, _ in BAD_LINES]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.filterwarnings("ignore:Object at _xenonscale is not recognized")
def test_sigkill_of_featurize_then_the_same_command_resumes_to_an_identical_store(
    tmp_path, cluster, oqmd_dirty, reference_store
):
    running, _ = cluster
    source, rows = oqmd_dirty
    store = tmp_path / "resumed.zarr"
    command = _command(source, store, running.address)
    partitions = -(-rows // PARTITION_ROWS)
    first_log = tmp_path / "first.log"
    job = _start(command, first_log, running.env)
    try:
        finished_before = _wait_for_first_region(job, store, first_log)
        _kill(job)  # SIGKILL the whole featurize process (its client dies with it)
    finally:
        _kill(job)
    assert job.returncode == -signal.SIGKILL
    assert 0 < finished_before < partitions
    # the killed job left its lock and an incomplete store behind
    lock_file = store / "_xenonscale" / "lock.json"
    assert lock_file.exists(), "the SIGKILLed job held no lock on its store: it ran unlocked"
    assert json.loads(lock_file.read_text())["pid"] == job.pid
    with pytest.warns(UserWarning, match="not complete"):
        assert xenonscale.open_store(str(store)).attrs["complete"] is False

    # the same command again: takes the dead job's lock over, skips finished regions
    second_log = tmp_path / "second.log"
    rerun = _start(command, second_log, running.env)
    try:
        text = _finish(rerun, second_log)
    finally:
        _kill(rerun)
    total, featurized, errors, planned, resumed = _summary(text)
    assert (total, featurized, errors, planned) == (
        rows,
        rows - len(BAD_LINES),
        len(BAD_LINES),
        partitions,
    )
    # regions finished before the kill (and any that tasks orphaned by the dead
    # client finished after it) are not redone; the rest are
    assert finished_before <= resumed < partitions
    assert _done(store) == partitions
    assert not (store / "_xenonscale" / "lock.json").exists()
    assert_same_store(str(store), reference_store)
