"""matminer's featurizers by name (``matminer:EwaldEnergy()``), run in matminer's own interpreter.

matminer pins ``pandas<3``, so it usually cannot be imported next to
xenonscale. The ``matminer:`` family runs each featurizer in a long-lived
*sidecar*: an interpreter that has matminer, running
:mod:`xenonscale.featurize.matminer_sidecar` (standard library, numpy,
pymatgen and matminer only), talking JSON lines. A whole batch goes there in
one message; matminer's ``featurize`` runs record by record and each record
comes back on its own line, its float64 values written as ``repr`` text
(exact) or its error text.

Spec syntax (after ``matminer:``)::

    CALL [; oxidation=keep|remove|guess] [; seconds=N]

``CALL`` is ``Name(...)`` or ``Name.from_preset(...)`` with literal arguments
only (``ast.literal_eval`` of each); ``Name`` is a featurizer class of
``matminer.featurizers.structure`` (structure records) or
``matminer.featurizers.composition`` (composition records), looked up by
name, never evaluated. ``oxidation=guess`` replaces the records' oxidation
states by pymatgen's guesses (``add_oxidation_state_by_guess``, as
matminer's ``StructureToOxidStructure``; ``add_charges_from_oxi_state_guesses``
for compositions) before featurizing (EwaldEnergy needs them); ``remove``
drops them; ``keep`` (default) passes records as given. ``seconds`` is the
wall time one record may take (default ``record_seconds`` of
:mod:`xenonscale.limits`, ``--record-seconds``): a record past it becomes the
error row ``timed out after N s``, the sidecar is killed (even inside
compiled code), restarted, and the batch goes on with the next record.
Featurizers that must be fitted need the fitted state in the call (e.g.
``BondFractions(allowed_bonds=['Al - O', 'O - O'])``): each partition is
featurized on its own, so fitting on data would differ between partitions.

The interpreter: ``$XENONSCALE_MATMINER_PYTHON``; else this one if it can
import matminer; else ``$XENONSCALE_PEERS_PYTHON``. Each process keeps one
sidecar per spec (per concurrent caller), started on first use, restarted
after a kill, stopped at exit.

Examples
--------
>>> from xenonscale.featurize.matminer import parse_matminer_spec
>>> spec = parse_matminer_spec("XRDPowderPattern(two_theta_range=(0, 127), pattern_length=128)")
>>> spec.name, spec.kwargs
('XRDPowderPattern', {'two_theta_range': '(0, 127)', 'pattern_length': '128'})
>>> parse_matminer_spec("EwaldEnergy(); oxidation=guess; seconds=5").seconds
5.0
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import difflib
import importlib.util
import json
import math
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from xenonscale.chem.formula import RowError, describe_input
from xenonscale.errors import ConfigError, FeaturizerError
from xenonscale.featurize.base import BatchTransformer, FeatureBatch, check_on_error
from xenonscale.featurize.structures.parse import parse_structures, to_structure
from xenonscale.limits import current_limits, failure_reason

__all__ = [
    "MatminerFeaturizer",
    "MatminerSpec",
    "close_sidecars",
    "matminer_family",
    "matminer_python",
    "parse_matminer_spec",
]

SIDECAR = Path(__file__).with_name("matminer_sidecar.py")
ENV_VARIABLE = "XENONSCALE_MATMINER_PYTHON"
PEERS_VARIABLE = "XENONSCALE_PEERS_PYTHON"
OXIDATION = ("keep", "remove", "guess")
KINDS = ("structure", "composition")
#: Seconds a sidecar may take to import matminer and build the featurizer.
STARTUP_SECONDS = 300.0
#: Seconds a sidecar may take to read a batch before its first record (plus 10 ms a record).
READ_SECONDS = 120.0
_FIX = (
    f"make an environment with matminer (it pins pandas<3), e.g. `python -m venv .venv-matminer "
    f"&& .venv-matminer/bin/pip install matminer`, and set {ENV_VARIABLE} to its python"
)


@dataclass(frozen=True)
class MatminerSpec:
    """A parsed ``matminer:`` spec: class ``name``, ``preset`` (``from_preset``), arguments as
    literal source text, ``oxidation`` and ``seconds`` (None: ``record_seconds``)."""

    name: str
    preset: bool = False
    args: tuple[str, ...] = ()
    kwargs: dict[str, str] = field(default_factory=dict)
    oxidation: str = "keep"
    seconds: float | None = None

    @property
    def call(self) -> str:
        """The call in canonical form (the sidecar's key)."""
        parts = [*self.args, *(f"{k}={v}" for k, v in self.kwargs.items())]
        return f"{self.name}{'.from_preset' if self.preset else ''}({', '.join(parts)})"


def parse_matminer_spec(text: str) -> MatminerSpec:
    """Read ``CALL[; option=value]...`` (see the module docstring); ConfigError if not valid."""
    call, *options = _split_top_level(text.strip(), ";")
    try:
        node = ast.parse(call.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConfigError(
            f"{_where(text)} is not a call ({exc.msg}): write e.g. matminer:EwaldEnergy()"
        ) from None
    source = call.strip()
    target = node.func if isinstance(node, ast.Call) else None
    preset = isinstance(target, ast.Attribute) and target.attr == "from_preset"
    name_node = target.value if preset else target
    if not isinstance(name_node, ast.Name):
        raise ConfigError(
            f"{_where(text)}: give Name(...) or Name.from_preset(...), "
            "e.g. matminer:ElementProperty.from_preset('magpie')"
        )
    args, kwargs = [], {}
    for arg in [*node.args, *node.keywords]:
        value = arg.value if isinstance(arg, ast.keyword) else arg
        segment = ast.get_source_segment(source, value) or ""
        try:
            ast.literal_eval(value)
        except ValueError:
            raise ConfigError(
                f"{_where(text)}: argument {segment!r} is not a literal; only numbers, "
                "strings, lists, tuples, dicts, True/False/None are accepted"
            ) from None
        if isinstance(arg, ast.keyword):
            if arg.arg is None:
                raise ConfigError(f"{_where(text)}: **{segment} is not accepted; name each")
            kwargs[arg.arg] = segment
        else:
            args.append(segment)
    settings: dict[str, object] = {}
    for option in options:
        key, sep, value = (part.strip() for part in option.partition("="))
        if not sep or key not in ("oxidation", "seconds"):
            raise ConfigError(
                f"{_where(text)}: option {option.strip()!r} is unknown; use "
                "oxidation=keep|remove|guess or seconds=N"
            )
        settings[key] = _option(text, key, value)
    return MatminerSpec(name_node.id, preset, tuple(args), kwargs, **settings)


def _where(text: str) -> str:
    return repr(f"matminer:{text}")


def _option(text: str, key: str, value: str) -> object:
    if key == "oxidation":
        if value not in OXIDATION:
            raise ConfigError(f"{_where(text)}: oxidation={value!r}; use one of {OXIDATION}")
        return value
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise ConfigError(f"{_where(text)}: seconds={value!r}; give a positive number")
    return seconds


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets and quotes."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    return [*parts, text[start:]]


# -- the interpreter ------------------------------------------------------------------------


def matminer_python() -> str:
    """The interpreter that runs matminer (see the module docstring); ConfigError names the fix."""
    configured = os.environ.get(ENV_VARIABLE)
    if configured:
        if not Path(configured).is_file():
            raise ConfigError(f"{ENV_VARIABLE}={configured!r} is not a file: {_FIX}")
        return configured
    if _imports_matminer(sys.executable):
        return sys.executable
    peers = os.environ.get(PEERS_VARIABLE)
    if peers and Path(peers).is_file():
        return peers
    raise ConfigError(f"matminer cannot be imported by {sys.executable!r}: {_FIX}")


@lru_cache(maxsize=4)
def _imports_matminer(python: str) -> bool:
    if importlib.util.find_spec("matminer") is None:
        return False
    check = [python, "-c", "import matminer.featurizers.structure"]
    return subprocess.run(check, capture_output=True, timeout=STARTUP_SECONDS).returncode == 0


# -- the sidecar process ----------------------------------------------------------------------


class _SidecarLost(Exception):
    """The sidecar died or stalled outside a record (the batch is retried in halves)."""


class _Sidecar:
    """One sidecar process (one featurizer built at a time); reads its answers with deadlines."""

    def __init__(self, python: str):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.setdefault("OMP_NUM_THREADS", "1")
        try:
            self.process = subprocess.Popen(
                [python, "-u", str(SIDECAR)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                start_new_session=True,  # a Ctrl-C reaches us, not matminer mid-record
            )
        except OSError as exc:
            raise FeaturizerError(f"cannot run {python!r} ({exc.strerror or exc}): {_FIX}") from exc
        self._buffer = bytearray()
        self.stalled = False  # killed by us for running past a deadline
        hello = self._answer(STARTUP_SECONDS)
        if hello is None or "hello" not in hello:
            self.kill()
            why = hello.get("fatal") if hello else f"no answer within {STARTUP_SECONDS:g} s"
            raise FeaturizerError(f"the matminer interpreter {python!r} failed ({why}): {_FIX}")
        self.versions = hello["hello"]

    def build(self, spec: MatminerSpec) -> dict:
        """Build ``spec`` there: ``{"built": {...}}``, or the reason it could not be built."""
        build = {"name": spec.name, "preset": spec.preset, "args": list(spec.args)}
        self._send({"op": "build", **build, "kwargs": spec.kwargs, "oxidation": spec.oxidation})
        return self._answer(STARTUP_SECONDS) or {"error": "no answer (killed)"}

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _send(self, message: dict) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:  # BrokenPipe: it died; the next read says so
            pass

    def _send_records(self, records: list[str]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(b'{"op": "featurize", "records": [')
            self.process.stdin.write(",".join(records).encode())
            self.process.stdin.write(b"]}\n")
            self.process.stdin.flush()
        except OSError:
            pass

    def _answer(self, seconds: float) -> dict | None:
        """The next answer line; None after ``seconds`` (the process is then killed) or at EOF."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while (end := self._buffer.find(b"\n")) < 0:
                left = deadline - time.monotonic() if math.isfinite(deadline) else None
                if (left is not None and left <= 0) or not selector.select(left):
                    self.stalled = True
                    self.kill()
                    return None
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    self.process.wait()
                    return None
                self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return json.loads(line)

    def featurize(self, records: list[str], start: int, seconds: float, emit: Callable) -> int:
        """Featurize ``records[start:]``, calling ``emit(k, answer)`` per record; returns the
        next record to do (``len(records)`` when done; less after a kill or a crash)."""
        self._send_records(records[start:])
        ready = self._answer(READ_SECONDS + 0.01 * (len(records) - start))
        if ready is None or "ready" not in ready:
            self.kill()
            raise _SidecarLost(f"the matminer interpreter did not read the batch ({ready})")
        for k in range(start, len(records)):
            answer = self._answer(seconds)
            if answer is None:
                code = self.process.returncode
                emit(k, {"e": _timeout_text(seconds) if self.stalled else _died_text(code)})
                return k + 1
            emit(k, answer)
        done = self._answer(READ_SECONDS)
        if done is None or "done" not in done:
            raise _SidecarLost(f"the matminer interpreter did not finish the batch ({done})")
        return len(records)

    def kill(self) -> None:
        if self.alive:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        """End it (it holds nothing to save) and release its pipes."""
        self.kill()
        for pipe in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):  # a write still buffered to the dead process
                pipe.close()


def _timeout_text(seconds: float) -> str:
    n = f"{seconds:g}"
    return (
        f"timed out after {n} s: exceeds record_seconds, limit {n}; raise it with "
        "--record-seconds or seconds=N in the matminer: spec"
    )


def _died_text(code: int | None) -> str:
    return f"the matminer interpreter died on this record (exit code {code}); it was restarted"


_IDLE: dict[tuple[str, str], list[_Sidecar]] = {}
_SPARE: dict[str, list[_Sidecar]] = {}  # started, nothing built (a build failed there)
_BUILT: dict[tuple[str, str], dict] = {}
_LOCK = threading.Lock()


def _acquire(python: str, spec: MatminerSpec) -> _Sidecar:
    """An idle sidecar of this spec, else a spare or new one (one per concurrent caller)."""
    key = (python, spec.call + spec.oxidation)
    with _LOCK:
        for sidecar in _alive(_IDLE.get(key, [])):
            return sidecar
        spare = next(_alive(_SPARE.get(python, [])), None)
    sidecar = spare or _Sidecar(python)
    answer = sidecar.build(spec)
    if "built" not in answer or "labels" not in answer["built"]:
        if sidecar.alive:
            with _LOCK:
                _SPARE.setdefault(python, []).append(sidecar)
        raise _build_error(spec, answer)
    with _LOCK:
        _BUILT.setdefault(key, answer["built"] | {"runtime": sidecar.versions})
    return sidecar


def _alive(group: list[_Sidecar]) -> Iterator[_Sidecar]:
    """Take sidecars off ``group`` until a live one (the dead are dropped)."""
    while group:
        sidecar = group.pop()
        if sidecar.alive:
            yield sidecar


def _release(python: str, spec: MatminerSpec, sidecar: _Sidecar) -> None:
    if sidecar.alive:
        with _LOCK:
            _IDLE.setdefault((python, spec.call + spec.oxidation), []).append(sidecar)


def _build_error(spec: MatminerSpec, answer: dict) -> ConfigError:
    if "unknown" in answer:
        close = difflib.get_close_matches(spec.name, answer["known"], n=5, cutoff=0.4)
        known = ", ".join(close or answer["known"])
        return ConfigError(
            f"{_where(spec.call)}: {spec.name!r} is not a matminer structure or composition "
            f"featurizer; {'did you mean' if close else 'known:'} {known}{'?' if close else ''}"
        )
    if "built" in answer:
        return ConfigError(
            f"{_where(spec.call)} must be fitted ({answer['built']['needs_fit']}); partitions are "
            "featurized apart, so state the fitted choice in the call, e.g. "
            "BondFractions(allowed_bonds=['Al - O'])"
        )
    return ConfigError(f"{_where(spec.call)} could not be built: {answer.get('error')}")


@atexit.register
def close_sidecars() -> None:
    """Stop this process's idle sidecars (also run at exit)."""
    with _LOCK:
        idle = [s for group in [*_IDLE.values(), *_SPARE.values()] for s in group]
        _IDLE.clear()
        _SPARE.clear()
    for sidecar in idle:
        sidecar.close()


# -- the featurizer ---------------------------------------------------------------------------


class MatminerFeaturizer(BatchTransformer):
    """One matminer featurizer from a ``matminer:`` spec (see the module docstring).

    ``labels`` are matminer's ``feature_labels()``, ``citations`` its
    ``citations()``; :meth:`provenance` adds its implementors and versions.
    A record matminer fails on, that times out or that kills the interpreter
    is an error row with the reason; the other rows go on. Thread-safe: each
    concurrent call gets its own sidecar.

    Parameters
    ----------
    spec : str
        The text after ``matminer:``.
    kind : str, optional
        The records' kind (``--kind``): ``structure`` or ``composition``; None
        takes the featurizer's own. Composition featurizers also take
        structures (their composition, as matminer's ``StructureToComposition``).
    python : str, optional
        The interpreter (default :func:`matminer_python`).
    on_error : {"record", "raise"}
        ``transform`` records bad rows (default) or raises on the first.
    """

    def __init__(
        self,
        spec: str,
        *,
        kind: str | None = None,
        python: str | None = None,
        on_error: str = "record",
    ):
        self.spec = spec
        self.kind = kind
        self.python = python
        self.on_error = on_error
        self._parsed = parse_matminer_spec(spec)
        if kind not in (None, *KINDS):
            raise ConfigError(
                f"{_where(spec)} with --kind {kind!r}: matminer featurizes {' or '.join(KINDS)}"
            )

    def _interpreter(self) -> str:
        return self.python or matminer_python()

    def _built(self) -> dict:
        python = self._interpreter()
        key = (python, self._parsed.call + self._parsed.oxidation)
        if key not in _BUILT:
            _release(python, self._parsed, _acquire(python, self._parsed))
        built = _BUILT[key]
        if self.kind == "composition" and built["kind"] == "structure":
            raise ConfigError(
                f"{_where(self.spec)} featurizes structures, not compositions: use --kind structure"
            )
        return built

    @property
    def labels(self) -> list[str]:
        return list(self._built()["labels"])

    @property
    def citations(self) -> tuple[str, ...]:
        return tuple(self._built()["citations"])

    def provenance(self) -> dict:
        """What the store records: class, implementors, versions, oxidation and time limit."""
        built = self._built()
        runtime = {k: v for k, v in built["runtime"].items() if k != "executable"}
        return {
            "family": "matminer",
            "spec": self.spec,
            "class": built["class"],
            "implementors": built["implementors"],
            "versions": runtime,
            "oxidation": self._parsed.oxidation,
            "seconds": self._parsed.seconds,
        }

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        check_on_error(self.on_error)
        items = inputs if isinstance(inputs, list) else list(inputs)
        built = self._built()
        values = np.full((len(items), len(built["labels"])), np.nan)
        ok = np.zeros(len(items), dtype=bool)
        errors: list[RowError] = []
        if built["kind"] == "structure":
            reader = _structure_records
        elif self.kind == "structure":
            reader = _structure_compositions
        else:
            reader = _composition_records
        rows, records = reader(items, errors)
        limit = self._parsed.seconds or current_limits().record_seconds

        def emit(k: int, answer: dict) -> None:
            row = rows[k]
            if "v" in answer and len(answer["v"]) == values.shape[1]:
                values[row] = answer["v"]
                ok[row] = True
            else:
                reason = answer.get("e", f"unexpected answer {str(answer)[:100]}")
                errors.append(RowError(row, describe_input(items[row]), reason))

        python, position = self._interpreter(), 0
        while position < len(records):
            sidecar = _acquire(python, self._parsed)
            try:
                position = sidecar.featurize(records, position, limit, emit)
            finally:
                _release(python, self._parsed, sidecar)
        return FeatureBatch(values, ok, sorted(errors, key=lambda e: e.row))


def _structure_records(items: list, errors: list[RowError]) -> tuple[list[int], list[str]]:
    """Readable structures as ``Structure.as_dict()`` JSON; the others become ``errors``."""
    batch = parse_structures(items)
    errors.extend(batch.errors)
    rows, records = [], []
    for row in np.flatnonzero(batch.ok).tolist():
        try:
            records.append(json.dumps(to_structure(items[row]).as_dict(), default=_plain))
        except Exception as exc:  # a site property that JSON cannot hold
            errors.append(RowError(row, describe_input(items[row]), failure_reason(exc)))
            continue
        rows.append(row)
    return rows, records


def _structure_compositions(items: list, errors: list[RowError]) -> tuple[list[int], list[str]]:
    """Readable structures as their composition ``{species: amount}``; others become ``errors``."""
    rows, records = _structure_records(items, errors)
    compositions = [json.dumps(_composition_of(record)) for record in records]
    return rows, compositions


def _composition_of(record: str) -> dict[str, float]:
    from pymatgen.core import Structure  # lazy: pymatgen stays off the import path

    return Structure.from_dict(json.loads(record)).composition.as_dict()


def _composition_records(items: list, errors: list[RowError]) -> tuple[list[int], list[str]]:
    """Formula strings as they are (pymatgen reads them, as in matminer), mappings and
    pymatgen ``Composition`` objects as ``{element: amount}``; the others become ``errors``."""
    max_chars = current_limits().max_input_chars
    rows, records = [], []
    for row, item in enumerate(items):
        if isinstance(item, str) and item.strip() and len(item) <= max_chars:
            record: object = item.strip()
        elif isinstance(item, Mapping):
            record = {str(k): v for k, v in item.items()}
        elif hasattr(item, "get_el_amt_dict") and hasattr(item, "as_dict"):
            record = item.as_dict()
        else:
            if isinstance(item, str) and item.strip():
                reason = current_limits().limit_reason("max_input_chars", len(item), "formula")
            elif item is None or isinstance(item, str) or _is_nan(item):
                reason = "empty input (None/NaN/blank)"
            else:
                reason = f"not a composition: {type(item).__name__}; give a formula or a mapping"
            errors.append(RowError(row, describe_input(item), reason))
            continue
        try:
            records.append(json.dumps(record, default=_plain))
        except (TypeError, ValueError) as exc:
            errors.append(RowError(row, describe_input(item), failure_reason(exc)))
            continue
        rows.append(row)
    return rows, records


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def matminer_family(
    arg: str, elements: str | None = None, *, kind: str | None = None
) -> MatminerFeaturizer:
    """The ``matminer:SPEC`` family (entry point of :mod:`xenonscale.featurize.registry`).

    Builds the featurizer in its sidecar right away, so a bad name or argument
    fails before any work; ``elements`` does not apply (matminer has its own data).
    """
    featurizer = MatminerFeaturizer(arg, kind=kind)
    featurizer.labels  # noqa: B018 - start the sidecar: fail fast, labels cached
    return featurizer
