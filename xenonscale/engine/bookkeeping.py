"""Engine bookkeeping inside a store: manifest, per-region done markers, job lock.

All of it lives under ``STORE/_xenonscale/`` as small JSON files:

``manifest.json``
    The job's spec hash, row count and partitions (written before any region).
``done/NNNNNN.json``
    Written by a worker *after* its region is in the store: counts and errors.
    A rerun skips every partition with a marker, which is what makes a crashed
    job resumable.
``lock.json``
    The running job (host, pid, start time). A second job on the same store is
    refused while the first is alive; a lock left by a dead process on this
    host (e.g. after ``kill -9``) is taken over.

Examples
--------
>>> from xenonscale.engine.bookkeeping import spec_hash
>>> len(spec_hash({"a": 1}))
16
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import uuid

from xenonscale.errors import StoreLockedError
from xenonscale.store.layout import BOOKKEEPING, StoreLocation

__all__ = ["JobLock", "done_markers", "spec_hash", "write_done"]


def spec_hash(spec: dict) -> str:
    """A short, stable hash of a JSON-serializable spec."""
    text = json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_done(location: StoreLocation, index: int, record: dict) -> None:
    """Mark partition ``index`` finished (called by the worker after its writes)."""
    location.write_json(record, BOOKKEEPING, "done", f"{index:06d}.json")


def done_markers(location: StoreLocation) -> dict[int, dict]:
    """Finished partitions: ``{index: record}``."""
    fs = location.fs
    folder = location.path(BOOKKEEPING, "done")
    if not fs.exists(folder):
        return {}
    out = {}
    for path in fs.ls(folder, detail=False):
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".json"):
            with fs.open(path, "r") as handle:
                out[int(name[:-5])] = json.load(handle)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class JobLock:
    """Exclusive job lock on a store (context manager).

    On a local disk the lock file is created atomically (``O_EXCL``); on an
    object store it is written and read back (best effort: two jobs started
    within the same second on different hosts may both proceed).
    """

    def __init__(self, location: StoreLocation, purpose: str = "featurize job"):
        self.location = location
        self.purpose = purpose
        self.token = uuid.uuid4().hex
        self.path = location.path(BOOKKEEPING, "lock.json")

    def _record(self) -> dict:
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": self.token,
        }

    def acquire(self) -> JobLock:
        fs = self.location.fs
        fs.makedirs(self.path.rsplit("/", 1)[0], exist_ok=True)
        if fs.exists(self.path):
            holder = self._holder()
            if holder and not self._stale(holder):
                raise StoreLockedError(
                    f"{self.location.url!r} is held by another {self.purpose} "
                    f"(host {holder.get('host')!r}, pid {holder.get('pid')}, started "
                    f"{holder.get('started')}): wait for it, or remove "
                    f"{self.path!r} if that job is gone"
                )
            fs.rm(self.path)
        text = json.dumps(self._record())
        if "file" in fs.protocol or fs.protocol == "file":
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                raise StoreLockedError(
                    f"store {self.location.url!r} was just locked by another job"
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
        else:
            with fs.open(self.path, "w") as handle:
                handle.write(text)
            if (self._holder() or {}).get("token") != self.token:
                raise StoreLockedError(f"store {self.location.url!r} was locked by another job")
        return self

    def _holder(self) -> dict | None:
        try:
            with self.location.fs.open(self.path, "r") as handle:
                return json.load(handle)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @staticmethod
    def _stale(holder: dict) -> bool:
        return holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"]))

    def release(self) -> None:
        holder = self._holder()
        if holder and holder.get("token") == self.token:
            self.location.fs.rm(self.path)

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
