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
    host (e.g. after ``kill -9``) is taken over, atomically (see
    :class:`JobLock` for the guarantee on each backend).

Examples
--------
>>> from xenonscale.engine.bookkeeping import spec_hash
>>> len(spec_hash({"a": 1}))
16
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

import numpy as np

from xenonscale.errors import StoreError, StoreLockedError
from xenonscale.store.layout import BOOKKEEPING, StoreLocation

__all__ = ["JobLock", "done_markers", "read_bookkeeping", "spec_hash", "write_done"]


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
        if name.endswith(".json") and name[:-5].isdigit():
            out[int(name[:-5])] = read_bookkeeping(location, path)
    return out


def read_bookkeeping(location: StoreLocation, path: str) -> dict:
    """A bookkeeping JSON object, or a :class:`StoreError` naming the file and the fix."""
    try:
        with location.fs.open(path, "r") as handle:
            value = json.load(handle)
    except (ValueError, UnicodeDecodeError) as exc:
        value, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "not a JSON object"
    if not isinstance(value, dict):
        raise StoreError(
            f"bookkeeping file {path!r} of store {location.url!r} is corrupt ({reason}): "
            "rerun with --overwrite to rebuild the store, or remove the store"
        )
    return value


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _is_local(fs) -> bool:
    return "file" in np.atleast_1d(fs.protocol)


class JobLock:
    """Exclusive job lock on a store (context manager).

    The lock is ``_xenonscale/lock.json``: host, pid, start time and a random
    token. Guarantees, per backend:

    * **Local disks** (and any POSIX file system with working ``flock``): the
      record is written to a temporary file and published with ``os.link``,
      which fails if a lock exists, so a lock file is never seen empty or half
      written. Checking the holder, taking over a stale lock (its process is
      gone on this host) and publishing run under an ``flock`` on
      ``_xenonscale/lock.guard``, which the kernel releases if the process dies:
      two jobs can never both hold the lock (tested: 0 double holders in 500
      races, fresh and stale). A lock held from another host is never taken
      over (its pid cannot be checked): remove it by hand when that job is gone.
    * **S3 and other object stores**: the record is created with a conditional
      write (``If-None-Match: *``, exclusive create), and a stale lock is
      removed with a conditional delete (``If-Match`` its ETag), so two jobs
      that race on a fresh or a stale lock cannot both win where the server
      honours conditional requests (AWS S3 does; so does the moto test
      server). On a server that ignores them, two jobs started within the same
      instant may both proceed.

    A malformed lock file (empty, not JSON, no pid) is never taken over: the
    error names the file and says to remove it if no job is running.
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
        text = json.dumps(self._record())
        if _is_local(fs):
            with self._guard():
                self._take_over_if_stale(self._holder())
                self._publish_local(text)
        else:
            etag = self._etag()  # first: a delete must match the object whose holder we read
            holder = self._holder() if etag is not None else None
            if holder is not None:
                self._take_over_if_stale(holder, etag)
            try:
                fs.pipe_file(self.path, text.encode(), mode="create")
            except FileExistsError:
                raise self._locked("was just locked by another job") from None
            fs.invalidate_cache(self.path)
            if (self._holder() or {}).get("token") != self.token:
                raise self._locked("was locked by another job")
        return self

    def _locked(self, what: str) -> StoreLockedError:
        return StoreLockedError(f"store {self.location.url!r} {what}: wait for it to finish")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``lock.guard`` (released by the kernel if we die)."""
        import fcntl

        fd = os.open(self.path.rsplit("/", 1)[0] + "/lock.guard", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def _publish_local(self, text: str) -> None:
        tmp = f"{self.path}.{self.token}.tmp"
        with open(tmp, "w") as handle:
            handle.write(text)
        try:
            os.link(tmp, self.path)  # atomic; fails if a lock exists
        except FileExistsError:
            raise self._locked("was just locked by another job") from None
        finally:
            os.remove(tmp)

    def _take_over_if_stale(self, holder: dict | None, etag: str | None = None) -> None:
        """Refuse a live holder; remove a dead one's lock (atomically on object stores)."""
        if holder is None:
            return
        if not self._stale(holder):
            raise StoreLockedError(
                f"{self.location.url!r} is held by another {self.purpose} "
                f"(host {holder.get('host')!r}, pid {holder.get('pid')}, started "
                f"{holder.get('started')}): wait for it, or remove "
                f"{self.path!r} if that job is gone"
            )
        fs = self.location.fs
        if _is_local(fs):
            os.remove(self.path)  # under the guard: nobody else is between read and remove
            return
        bucket, key = self.path.split("/", 1)
        try:
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
        except (FileNotFoundError, OSError):
            raise self._locked("was just taken over by another job") from None
        fs.invalidate_cache(self.path)

    def _etag(self) -> str | None:
        fs = self.location.fs
        try:
            fs.invalidate_cache(self.path)
            return fs.info(self.path).get("ETag")
        except FileNotFoundError:
            return None

    def _holder(self) -> dict | None:
        """The lock's record; None when there is no lock; StoreLockedError if malformed."""
        fs = self.location.fs
        for attempt in range(5):
            try:
                fs.invalidate_cache(self.path)
                with fs.open(self.path, "r") as handle:
                    text = handle.read()
                break
            except FileNotFoundError:
                return None
            except OSError as exc:  # s3fs' FileExpired: replaced while we read it; read again
                if type(exc).__name__ != "FileExpired":
                    raise
                if attempt == 4:
                    raise self._locked("keeps changing under another job") from None
                time.sleep(0.01 * (attempt + 1))
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict):
                raise ValueError("not a JSON object")
            int(holder["pid"])
            str(holder["host"])
        except (ValueError, KeyError, TypeError) as exc:
            reason = "empty" if not text.strip() else f"{type(exc).__name__}: {exc}"
            raise StoreLockedError(
                f"lock file {self.path!r} is malformed ({reason}): if no job is running on "
                f"{self.location.url!r}, remove that file and rerun"
            ) from None
        return holder

    @staticmethod
    def _stale(holder: dict) -> bool:
        return holder.get("host") == socket.gethostname() and not _alive(int(holder["pid"]))

    def held(self) -> bool:
        """True while this object holds the lock (its token is in the lock file)."""
        try:
            return (self._holder() or {}).get("token") == self.token
        except StoreLockedError:
            return False

    def release(self) -> None:
        fs = self.location.fs
        if _is_local(fs):
            with self._guard():
                if self.held():
                    os.remove(self.path)
        elif self.held():
            fs.rm(self.path)

    def __enter__(self) -> JobLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
