"""The job lock under races: two processes, 500 trials, never two holders at once.

Each trial gives both processes a fresh store folder; they start together (a
barrier) and try to take the lock. Whoever wins creates an ``inside`` marker
with ``O_EXCL`` (it fails if the other is inside too), holds the lock for a
moment, checks it still holds it, removes the marker and releases. A double
holder is counted whenever the marker already exists or the winner finds the
lock taken from it. The same runs with a stale lock (a dead process of this
host) in every folder, which both processes try to take over, and on the S3
test server.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from xenonscale.engine.bookkeeping import JobLock
from xenonscale.errors import StoreError, StoreLockedError
from xenonscale.store.layout import StoreLocation

TRIALS = 500
DEAD_PID = 4_194_304 + 17  # above Linux's pid_max: never a live process


def _contender(urls, options, inside_dir, barrier, results) -> None:
    won = refused = doubles = 0
    unexpected: list[str] = []
    for i, url in enumerate(urls):
        barrier.wait()
        lock = JobLock(StoreLocation(url, options))
        try:
            lock.acquire()
        except StoreLockedError:
            refused += 1
            continue
        except Exception as exc:
            unexpected.append(f"{type(exc).__name__}: {exc}")
            continue
        won += 1
        marker = os.path.join(inside_dir, f"inside-{i}")
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            doubles += 1
        else:
            time.sleep(0.002)
            if not lock.held():
                doubles += 1
            os.close(fd)
            os.remove(marker)
        lock.release()
    results.put({"won": won, "refused": refused, "doubles": doubles, "unexpected": unexpected})


def _race(urls, options, tmp_path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    inside = tmp_path / "inside"
    inside.mkdir()
    procs = [
        ctx.Process(target=_contender, args=(urls, options, str(inside), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return {key: sum(o[key] for o in outcomes) for key in ("won", "refused", "doubles")} | {
        "unexpected": [u for o in outcomes for u in o["unexpected"]]
    }


def _stale_record() -> str:
    return json.dumps({"host": socket.gethostname(), "pid": DEAD_PID, "started": "x", "token": "t"})


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_two_processes_never_both_hold_the_lock_on_local_disk(tmp_path, stale):
    urls = []
    for i in range(TRIALS):
        folder = tmp_path / f"store{i}" / "_xenonscale"
        folder.mkdir(parents=True)
        if stale:
            (folder / "lock.json").write_text(_stale_record())
        urls.append(str(folder.parent))
    outcome = _race(urls, None, tmp_path)
    assert outcome["unexpected"] == []
    assert outcome["doubles"] == 0
    # every trial had a winner (the loser was refused, or came after the release)
    assert outcome["won"] >= TRIALS
    assert outcome["won"] + outcome["refused"] == 2 * TRIALS


def test_two_processes_never_both_hold_the_lock_on_s3(tmp_path, s3_bucket):
    """Guarantee on S3: conditional create (If-None-Match) + conditional delete (If-Match)."""
    import fsspec

    bucket, options = s3_bucket
    fs = fsspec.filesystem("s3", **options)
    trials = 50
    urls = [f"{bucket}/store{i}" for i in range(trials)]
    for url in urls[trials // 2 :]:  # half of them with a stale lock to take over
        fs.pipe_file(f"{url}/_xenonscale/lock.json", _stale_record().encode())
    outcome = _race(urls, options, tmp_path)
    assert outcome["unexpected"] == []
    assert outcome["doubles"] == 0
    assert outcome["won"] + outcome["refused"] == 2 * trials
    assert outcome["won"] >= trials


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"host": "h"}'])
def test_a_malformed_lock_file_is_reported_not_taken_over(tmp_path, text):
    folder = tmp_path / "store" / "_xenonscale"
    folder.mkdir(parents=True)
    (folder / "lock.json").write_text(text)
    with pytest.raises(StoreLockedError, match=r"lock file .*lock\.json' is malformed .*remove"):
        JobLock(StoreLocation(str(folder.parent))).acquire()
    assert (folder / "lock.json").read_text() == text


def test_a_live_holder_is_refused_and_a_dead_one_taken_over(tmp_path):
    folder = tmp_path / "store" / "_xenonscale"
    folder.mkdir(parents=True)
    live = {"host": socket.gethostname(), "pid": os.getpid(), "started": "now", "token": "x"}
    (folder / "lock.json").write_text(json.dumps(live))
    with pytest.raises(StoreLockedError, match=f"pid {os.getpid()}"):
        JobLock(StoreLocation(str(folder.parent))).acquire()
    (folder / "lock.json").write_text(_stale_record())
    with JobLock(StoreLocation(str(folder.parent))) as lock:
        assert lock.held()
        assert json.loads((folder / "lock.json").read_text())["pid"] == os.getpid()
    assert not (folder / "lock.json").exists()
    assert not list(folder.glob("*.tmp"))


def test_corrupt_bookkeeping_gives_one_clear_line(tmp_path, dask_client, data_dir):
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    store = tmp_path / "s.zarr"
    spec = FeaturizerSpec.parse("composition", "classic")
    kwargs = dict(column="formula", client=dask_client, progress=False, chunk_rows=100)
    featurize_to_store(source, str(store), spec, **kwargs)
    done = sorted((store / "_xenonscale" / "done").glob("*.json"))[0]
    done.write_text("")
    with pytest.raises(StoreError, match=r"done/000000\.json' of store .* corrupt .*--overwrite"):
        featurize_to_store(source, str(store), spec, **kwargs)
    (store / "_xenonscale" / "manifest.json").write_text("[]")
    with pytest.raises(StoreError, match=r"manifest\.json' of store .* is corrupt"):
        featurize_to_store(source, str(store), spec, **kwargs)
    job = featurize_to_store(source, str(store), spec, overwrite=True, **kwargs)
    assert job.rows == job.featurized + job.errors == 312
    assert Path(store).is_dir()
