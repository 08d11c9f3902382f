"""Per-record budgets: what one record may cost before it becomes an error row.

A featurization job must finish whatever its input holds. One record that is
too large (a 100,000-atom SMILES, a 1 MB cell), too dense (one atom in a
0.1 Å cube), too expensive for a neighbour search (a cell 2e-6 Å thin) or
simply too slow becomes an **error row** whose reason names the limit and how
to raise it; the rest of the batch goes on.

:class:`RecordLimits` holds the budgets. The defaults fit every real dataset
in the project's mirror with a wide margin; change them for one block of code
with :func:`record_limits` (a context manager, thread- and task-local), in the
engine with ``FeaturizerSpec(limits=...)`` and on the command line with the
``--max-*`` / ``--record-seconds`` flags of ``xenonscale featurize``.

The wall-time limit is enforced without killing the process: a watchdog
thread raises :class:`RecordTimeout` in the thread that runs the record, at
its next Python instruction (a long call into compiled code finishes first,
then the record fails). :class:`RecordTimeout` derives from
``BaseException`` so that ``except Exception`` inside a library cannot
swallow it; only :func:`run_record` catches it.

Examples
--------
>>> from xenonscale.limits import current_limits, record_limits
>>> current_limits().max_atoms
2000
>>> with record_limits(max_atoms=10_000):
...     current_limits().max_atoms
10000
>>> current_limits().limit_reason("max_atoms", 2500, "the structure has 2500 sites")
'the structure has 2500 sites: exceeds max_atoms, limit 2000; raise it with --max-atoms'
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from xenonscale.errors import ConfigError

__all__ = [
    "RecordLimits",
    "RecordTimeout",
    "current_limits",
    "failure_reason",
    "record_limits",
    "run_record",
]

T = TypeVar("T")


@dataclass(frozen=True)
class RecordLimits:
    """Budgets of one record (see the module docstring).

    Attributes
    ----------
    max_input_chars : int
        Characters of one text input (formula, CIF/POSCAR/JSON text, SMILES,
        molblock). Checked before any parsing.
    max_amount : float
        Largest amount of one element in a formula (``Fe1e7`` is refused).
    max_formula_atoms : float
        Largest total amount of a formula unit.
    max_atoms : int
        Sites of one structure.
    min_volume_per_atom : float
        Smallest cell volume per site (Å³); real solids have 5–50 Å³.
    max_neighbors : int
        Budget of one structure's periodic neighbour search: the larger of
        the expected pairs within the cutoff and the site images the search
        scans (a very thin cell needs millions of images).
    max_smiles_chars : int
        Characters of one SMILES (molblocks are bounded by ``max_input_chars``).
    max_molecule_atoms : int
        Atoms of one molecule (heavy atoms as RDKit reads the input).
    record_seconds : float
        Wall time one record may take in a per-record step; ``inf`` disables.
    """

    max_input_chars: int = 1_000_000
    max_amount: float = 1e6
    max_formula_atoms: float = 1e7
    max_atoms: int = 2_000
    min_volume_per_atom: float = 1.0
    max_neighbors: int = 20_000_000
    max_smiles_chars: int = 5_000
    max_molecule_atoms: int = 1_000
    record_seconds: float = 30.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(
                    f"{item.name}={value!r}: give a number, e.g. "
                    f"{item.name}={getattr(RecordLimits, item.name)!r}"
                )
            if math.isnan(value) or value <= 0:
                raise ConfigError(
                    f"{flag(item.name)} {value!r}: give a positive number, e.g. "
                    f"{getattr(RecordLimits, item.name)!r}"
                )

    def limit_reason(self, name: str, value: object, what: str) -> str:
        """The error-row text for ``what`` over the limit ``name``."""
        limit = _number(getattr(self, name))
        return f"{what}: exceeds {name}, limit {limit}; raise it with {flag(name)}"

    def to_dict(self) -> dict[str, float]:
        """JSON-friendly form (``inf`` as a string is avoided: a large float stays a float)."""
        return {k: (v if math.isfinite(v) else 0) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RecordLimits:
        """Inverse of :meth:`to_dict` (``0`` means no limit for ``record_seconds``)."""
        data = dict(data or {})
        if data.get("record_seconds") == 0:
            data["record_seconds"] = math.inf
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown record limit {unknown[0]!r}: use one of {sorted(known)}")
        return cls(**data)


def flag(name: str) -> str:
    """The ``xenonscale featurize`` flag that sets limit ``name``."""
    return "--" + name.replace("_", "-")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


_DEFAULT = RecordLimits()
_CURRENT: contextvars.ContextVar[RecordLimits] = contextvars.ContextVar(
    "xenonscale_record_limits", default=_DEFAULT
)


def current_limits() -> RecordLimits:
    """The limits in force in this thread/task (the defaults unless changed)."""
    return _CURRENT.get()


@contextlib.contextmanager
def record_limits(
    limits: RecordLimits | None = None, /, **changes: float
) -> Iterator[RecordLimits]:
    """Use ``limits`` (or the current ones with ``changes``) inside the block.

    >>> with record_limits(record_seconds=5) as limits:
    ...     limits.record_seconds
    5
    """
    base = limits if limits is not None else current_limits()
    active = replace(base, **changes) if changes else base
    token = _CURRENT.set(active)
    try:
        yield active
    finally:
        _CURRENT.reset(token)


class RecordTimeout(BaseException):
    """A record ran past ``record_seconds`` (raised in the thread running it).

    A ``BaseException`` so that ``except Exception`` in a library does not
    swallow it; :func:`run_record` turns it into the record's error.
    """


def failure_reason(exc: BaseException) -> str:
    """One line for an exception raised by one record (type and message, ≤ 300 chars)."""
    if isinstance(exc, RecordTimeout):
        return str(exc)
    if isinstance(exc, RecursionError):
        text = "RecursionError: input nested too deeply"
    elif isinstance(exc, MemoryError):
        text = "MemoryError: input too large to process"
    else:
        message = " ".join(str(exc).split())
        text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# -- the watchdog -------------------------------------------------------------


class _Watch:
    """Deadline of the record a thread is running (guarded by the watchdog's lock)."""

    __slots__ = ("deadline", "delivered", "fired", "seconds")

    def __init__(self, deadline: float, seconds: float) -> None:
        self.deadline = deadline
        self.seconds = seconds
        self.fired = False
        self.delivered = False


class _Watchdog:
    """One daemon thread per process that interrupts records past their deadline."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._watches: dict[int, _Watch] = {}
        self._thread: threading.Thread | None = None

    def enter(self, seconds: float) -> _Watch:
        watch = _Watch(time.monotonic() + seconds, seconds)
        tid = threading.get_ident()
        with self._lock:
            self._watches[tid] = watch
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="xenonscale-record-watchdog", daemon=True
                )
                self._thread.start()
            self._lock.notify()
        return watch

    def leave(self, watch: _Watch) -> bool:
        """Stop watching; True when the record timed out (its exception is absorbed here)."""
        tid = threading.get_ident()
        try:
            with self._lock:
                if self._watches.get(tid) is watch:
                    del self._watches[tid]
                pending = watch.fired and not watch.delivered
            if pending:  # the exception is on its way: let it land here, not in the caller
                end = time.monotonic() + 5.0
                while time.monotonic() < end:
                    time.sleep(0)
        except RecordTimeout:
            watch.delivered = True
        with self._lock:
            if self._watches.get(tid) is watch:
                del self._watches[tid]
        return watch.fired

    def _loop(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                wait = 60.0
                for tid, watch in list(self._watches.items()):
                    if watch.fired:
                        continue
                    if watch.deadline <= now:
                        watch.fired = True
                        _raise_in_thread(tid, watch.seconds)
                    else:
                        wait = min(wait, watch.deadline - now)
                self._lock.wait(timeout=max(wait, 0.001))


def _raise_in_thread(tid: int, seconds: float) -> None:
    exc = type(
        "RecordTimeout",
        (RecordTimeout,),
        {"__init__": lambda self: RecordTimeout.__init__(self, _timeout_text(seconds))},
    )
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(exc))


def _timeout_text(seconds: float) -> str:
    return (
        f"timed out after {_number(seconds)} s: exceeds record_seconds, limit "
        f"{_number(seconds)}; raise it with --record-seconds"
    )


_WATCHDOG = _Watchdog()


def run_record(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` under the current ``record_seconds`` budget.

    Raises :class:`RecordTimeout` (with the error-row text) when the record
    runs past it; any other exception propagates unchanged.

    >>> run_record(len, "Fe2O3")
    5
    """
    seconds = _CURRENT.get().record_seconds
    if not math.isfinite(seconds):
        return function(*args)
    watch = _WATCHDOG.enter(seconds)
    delivered = False
    try:
        return function(*args)
    except RecordTimeout:
        watch.delivered = delivered = True
        raise
    finally:
        if _WATCHDOG.leave(watch) and not delivered:
            raise RecordTimeout(_timeout_text(seconds))
