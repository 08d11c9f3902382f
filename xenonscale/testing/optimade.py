"""OPTIMADE sources under test: a real reference server with real structures, and a faulty proxy.

:func:`optimade_entries`
    The mirror's structure files (Matbench phonons, Perov-5, Carbon-24; 7,084
    crystals) as OPTIMADE v1 ``structures`` entries, converted here from
    pymatgen (:func:`structure_attributes`), with the files' numeric columns
    as provider fields (``_exmpl_last_phdos_peak``, ``_exmpl_heat_all``, ...).
:class:`OptimadeServer`
    The optimade-python-tools reference server (FastAPI + uvicorn, in-memory
    mongomock backend) in a subprocess on a free port of 127.0.0.1, loaded
    with those entries from a JSON-lines file.
:class:`FaultProxy`
    A threaded HTTP proxy in front of any server, with an access log
    (:class:`ProxyRecord`: path, query, status, the ids of the page) and
    injected faults: an HTTP status (429 with ``Retry-After``, 5xx), a
    connection dropped mid-body, a slow page, a server that stays down.
    Its upstream can be switched while it runs.

``optimade`` (``optimade[server,http-client]``, a test dependency) is imported
only by the server's subprocess; this module itself needs pymatgen and the
standard library.

Examples
--------
The OPTIMADE attributes of a pymatgen structure:

>>> from pymatgen.core import Lattice, Structure
>>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
>>> attributes = structure_attributes(nacl)
>>> attributes["chemical_formula_reduced"], attributes["species_at_sites"]
('ClNa', ['Na', 'Cl'])

A proxy whose upstream stays down answers 503 to every request:

>>> import urllib.error, urllib.request
>>> with FaultProxy("http://127.0.0.1:9") as proxy:
...     proxy.down = True
...     try:
...         urllib.request.urlopen(proxy.url + "/v1/info", timeout=10)
...     except urllib.error.HTTPError as exc:
...         status = exc.code
...     records = proxy.log
>>> status, records[0].path, records[0].fault
(503, '/v1/info', 'down')

The reference server with the first two structures of each file, behind a proxy::

    entries = optimade_entries(limit=2)
    with OptimadeServer(entries) as server, FaultProxy(server.base_url) as proxy:
        proxy.add_fault("status", status=429, retry_after=1)
        httpx.get(proxy.url + "/v1/structures")  # 429, then the next one is served
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import http.server
import itertools
import json
import math
import os
import re
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from math import gcd
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd
from pymatgen.core import Element, Structure

from xenonscale.datasets import fetch
from xenonscale.errors import ConfigError, DatasetError, XenonscaleError

__all__ = [
    "DATASETS",
    "FAULT_KINDS",
    "FaultProxy",
    "OptimadeServer",
    "OptimadeServerError",
    "ProxyRecord",
    "anonymous_symbols",
    "optimade_entries",
    "structure_attributes",
]

#: The mirror's structure files by dataset name: (registry name, id column; None = the index).
DATASETS: dict[str, tuple[str, str | None]] = {
    "phonons": ("matbench_phonons", None),
    "perov5": ("perov5_val", "material_id"),
    "carbon24": ("carbon24_val", "material_id"),
}

#: Fault kinds :meth:`FaultProxy.add_fault` injects.
FAULT_KINDS = ("status", "drop", "delay")

_PREFIX = re.compile(r"^[a-z][a-z0-9_]*$")
_API_VERSION = "1.2.0"
_PROPERTY_TYPES = {str: "string", int: "integer", float: "float", bool: "boolean"}


class OptimadeServerError(XenonscaleError, RuntimeError):
    """The reference server did not start (the message ends with its output)."""


# -- entries --------------------------------------------------------------------------


def anonymous_symbols(count: int) -> list[str]:
    """The first ``count`` anonymous symbols: A … Z, then Aa, Ab … Az, Ba … Zz, Aaa, ….

    The order the reference implementation checks ``chemical_formula_anonymous``
    against (one letter, then two, ... each run in lexicographic order).

    >>> anonymous_symbols(3), anonymous_symbols(29)[26:]
    (['A', 'B', 'C'], ['Aa', 'Ab', 'Ac'])
    """
    symbols: list[str] = []
    size = 1
    while len(symbols) < count:
        for letters in itertools.product(string.ascii_lowercase, repeat=size):
            symbols.append("".join(letters).capitalize())
            if len(symbols) == count:
                break
        size += 1
    return symbols


def _formula(counts: Mapping[str, int]) -> str:
    return "".join(f"{symbol}{n if n != 1 else ''}" for symbol, n in counts.items())


def structure_attributes(structure: Structure) -> dict[str, Any]:
    """The OPTIMADE v1 ``structures`` attributes of an ordered, periodic pymatgen structure.

    Lattice vectors and Cartesian positions are the structure's float64
    ``lattice.matrix`` and ``cart_coords`` (Å); one species per element, named
    after it, with its pymatgen atomic mass; formulas as the specification
    wants them (reduced and descriptive in alphabetical order, anonymous by
    decreasing proportion). ``id``, ``type`` and ``last_modified`` are the
    caller's.

    Raises
    ------
    ConfigError
        A disordered structure (partial occupancies): not supported here.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> s = Structure(Lattice.cubic(4.0), ["Ti", "O", "O", "Sr", "O"],
    ...               [[.5, .5, .5], [.5, .5, 0], [.5, 0, .5], [0, 0, 0], [0, .5, .5]])
    >>> a = structure_attributes(s)
    >>> a["chemical_formula_reduced"], a["chemical_formula_anonymous"], a["elements_ratios"]
    ('O3SrTi', 'A3BC', [0.6, 0.2, 0.2])
    """
    if not structure.is_ordered:
        raise ConfigError(
            f"structure {structure.composition.formula!r} is disordered (partial occupancies): "
            "structure_attributes writes ordered structures only"
        )
    symbols = [site.specie.symbol for site in structure]
    counts = Counter(symbols)
    elements = sorted(counts)
    nsites = len(symbols)
    divisor = reduce(gcd, counts.values())
    reduced = {symbol: counts[symbol] // divisor for symbol in elements}
    by_proportion = sorted(reduced.values(), reverse=True)
    anonymous = dict(zip(anonymous_symbols(len(by_proportion)), by_proportion, strict=True))
    return {
        "lattice_vectors": np.asarray(structure.lattice.matrix, dtype=np.float64).tolist(),
        "cartesian_site_positions": np.asarray(structure.cart_coords, dtype=np.float64).tolist(),
        "species": [
            {
                "name": symbol,
                "chemical_symbols": [symbol],
                "concentration": [1.0],
                "mass": [float(Element(symbol).atomic_mass)],
            }
            for symbol in elements
        ],
        "species_at_sites": symbols,
        "nsites": nsites,
        "elements": elements,
        "nelements": len(elements),
        "elements_ratios": [counts[symbol] / nsites for symbol in elements],
        "chemical_formula_reduced": _formula(reduced),
        "chemical_formula_descriptive": _formula({s: counts[s] for s in elements}),
        "chemical_formula_anonymous": _formula(anonymous),
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "structure_features": [],
    }


def _field_name(column: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", column.lower())


def _number(value: Any) -> int | float | None:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


def _is_number(value: Any) -> bool:
    return value is None or (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool | np.bool_)
    )


def _read_dataset(name: str, data_dir, limit: int | None) -> tuple[list, list[str], dict]:
    """(pymatgen structures, ids as the file sources give them, {column: values}) of one file."""
    registry_name, id_column = DATASETS[name]
    path = fetch(registry_name, data_dir=data_dir, download=False)
    try:
        if id_column is None:  # pandas split JSON: pymatgen dicts in `structure`, id = index
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                document = json.load(handle)
            rows = document["data"][:limit]
            columns = document["columns"]
            ids = [str(index) for index in document["index"][: len(rows)]]
            where = columns.index("structure")
            structures = [Structure.from_dict(row[where]) for row in rows]
            extras = {
                column: [row[i] for row in rows]
                for i, column in enumerate(columns)
                if i != where and all(_is_number(row[i]) for row in rows)
            }
        else:  # CSV: CIF text in `cif`, the unnamed first column is pandas' index
            frame = pd.read_csv(path, index_col=0, dtype={id_column: str}, nrows=limit)
            ids = frame[id_column].tolist()
            with warnings.catch_warnings():  # "fractional coordinates rounded to ideal values"
                warnings.filterwarnings("ignore", "Issues encountered while parsing CIF")
                structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
            extras = {
                column: frame[column].tolist()
                for column in frame.columns
                if column not in (id_column, "cif")
                and pd.api.types.is_numeric_dtype(frame[column])
                and not pd.api.types.is_bool_dtype(frame[column])
            }
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(
            f"cannot read the {name!r} structures from {str(path)!r}: {exc}"
        ) from exc
    return structures, ids, extras


def optimade_entries(
    names: Sequence[str] = ("phonons", "perov5", "carbon24"),
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    provider: str = "exmpl",
    base_time: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    qualify_ids: bool = True,
) -> list[dict[str, Any]]:
    """The mirror's structure files as flat OPTIMADE ``structures`` entries, in file order.

    Parameters
    ----------
    names
        Datasets of :data:`DATASETS`, in the order wanted: ``phonons`` (1,265
        Matbench phonons structures), ``perov5`` (3,787 Perov-5 CIFs),
        ``carbon24`` (2,032 Carbon-24 CIFs).
    data_dir
        The mirror; default ``$XENONSCALE_DATA_DIR`` (see :mod:`xenonscale.config`),
        else the dataset cache (nothing is downloaded).
    limit
        The first ``limit`` rows of *each* file (default all).
    provider
        The provider prefix of the extra fields (lower-case letters, digits, ``_``).
    base_time
        ``last_modified`` of the first entry; entry ``i`` gets ``base_time + i`` s
        (a naive time is taken as UTC).
    qualify_ids
        ``True``: ids are ``{dataset}-{file id}`` (``phonons-0``,
        ``perov5-18517``, ``carbon24-C-148264-7891-51``), unique across the
        files. ``False``: the file ids themselves, which clash across the
        default files (Matbench's index ``0 … 1264`` and Perov-5's
        ``material_id``): a clash raises.

    Returns
    -------
    list of dict
        One flat dict per structure, as the reference server's collection
        holds them: ``id``, ``type``, ``last_modified`` (an aware datetime), the
        :func:`structure_attributes`, and provider fields
        ``_{provider}_dataset``, ``_{provider}_source_id`` (the id the file
        sources give the record: ``xenonscale.sources.open_source(path)`` for
        the split JSON, ``open_source(path, id_column="material_id")`` for the
        CSVs) and every numeric column of the file other than the id, lower
        case with characters outside ``[a-z0-9_]`` replaced by ``_``
        (``last phdos peak`` → ``_exmpl_last_phdos_peak``; JSON has no NaN:
        missing values are None).

    Raises
    ------
    ConfigError
        An unknown dataset or a bad argument; ids that clash (``qualify_ids=False``);
        a disordered structure.
    DatasetUnavailableError
        A file is neither in the mirror nor in the cache.

    Examples
    --------
    >>> entries = optimade_entries(["perov5"], limit=2)  # doctest: +REQUIRES_DATA
    >>> [e["id"] for e in entries], entries[0]["_exmpl_source_id"]  # doctest: +REQUIRES_DATA
    (['perov5-18517', 'perov5-15400'], '18517')
    >>> entries[0]["chemical_formula_reduced"], entries[0]["nsites"]  # doctest: +REQUIRES_DATA
    ('CdCuN3', 5)
    """
    unknown = [name for name in names if name not in DATASETS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"names={list(names)!r}: give each of {', '.join(DATASETS)} at most once")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit={limit!r}: use a number of rows ≥ 0, or None for all")
    if not isinstance(provider, str) or not _PREFIX.match(provider):
        raise ConfigError(
            f"provider={provider!r}: an OPTIMADE prefix is lower-case letters, digits and '_', "
            "starting with a letter"
        )
    if base_time.tzinfo is None:
        base_time = base_time.replace(tzinfo=UTC)
    base_time = base_time.astimezone(UTC)
    entries: list[dict[str, Any]] = []
    for name in names:
        structures, ids, extras = _read_dataset(name, data_dir, limit)
        fields = {_field_name(column): values for column, values in extras.items()}
        clash = sorted(set(fields) & {"dataset", "source_id"})
        if clash or len(fields) != len(extras):
            raise ConfigError(f"the {name!r} columns {sorted(extras)} give clashing field names")
        for row, (structure, source_id) in enumerate(zip(structures, ids, strict=True)):
            try:
                attributes = structure_attributes(structure)
            except ConfigError as exc:
                raise ConfigError(f"{name} record {source_id!r}: {exc}") from exc
            entry = {
                "id": f"{name}-{source_id}" if qualify_ids else source_id,
                "type": "structures",
                "last_modified": base_time + timedelta(seconds=len(entries)),
                **attributes,
                f"_{provider}_dataset": name,
                f"_{provider}_source_id": source_id,
            }
            for field_name, values in fields.items():
                entry[f"_{provider}_{field_name}"] = _number(values[row])
            entries.append(entry)
    counts = Counter(entry["id"] for entry in entries)
    clashes = [identifier for identifier, n in counts.items() if n > 1]
    if clashes:
        raise ConfigError(
            f"{len(clashes)} ids occur more than once across {list(names)} "
            f"(e.g. {clashes[:5]}): pass qualify_ids=True, or fewer datasets"
        )
    return entries


# -- the reference server ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):  # MongoDB extended JSON: a real date in the collection
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        millis = round(aware.timestamp() * 1000)
        return {"$date": {"$numberLong": str(millis)}}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _jsonl_lines(entries: Iterable[Mapping[str, Any]], provider: str) -> Iterable[str]:
    """The reference server's JSON-lines format: a header, then one JSON:API resource a line."""
    yield json.dumps({"x-optimade": {"meta": {"api_version": _API_VERSION}}})
    own = f"_{provider}_"
    for entry in entries:
        attributes = {}
        for key, value in entry.items():
            if key in ("id", "type"):
                continue
            if key.startswith("_"):  # the collection holds provider fields without the prefix
                if not key.startswith(own):
                    raise ConfigError(
                        f"entry {entry.get('id')!r} has the field {key!r}, not of provider "
                        f"{provider!r}: pass provider= as optimade_entries was given it"
                    )
                key = key.removeprefix(own)
            attributes[key] = value
        document = {"id": entry["id"], "type": entry.get("type", "structures")}
        yield json.dumps({**document, "attributes": attributes}, default=_json_default)


def _get_json(url: str, timeout: float) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None


class OptimadeServer:
    """The optimade-python-tools reference server on 127.0.0.1, loaded with ``entries``.

    A context manager (or :meth:`start` / :meth:`stop`). It writes the entries
    to a JSON-lines file and a server configuration (``OPTIMADE_CONFIG_FILE``:
    mongomock backend, no test data, the provider and its fields, page limits)
    into a temporary folder, starts ``python -m uvicorn
    optimade.server.main:app`` on a free port with this interpreter, and
    waits until ``/v1/info`` answers and ``/v1/structures`` reports all
    entries. Its output goes to ``server.log`` in that folder.

    The JSON-lines file is what ``optimade.utils.insert_from_jsonl`` reads:
    a first line ``{"x-optimade": {"meta": {"api_version": "1.2.0"}}}``, then
    one ``{"id", "type", "attributes"}`` resource a line, parsed as MongoDB
    extended JSON. So ``last_modified`` is written ``{"$date": {"$numberLong":
    MILLISECONDS}}`` and stored as a real (naive UTC) date, which makes
    ``last_modified > "2024-01-01T00:30:00Z"`` a date comparison; the server
    answers it as ``"2024-01-01T00:30:01"`` (no zone). Provider fields are
    stored without their prefix (``dataset``) and declared with their types
    in ``provider_fields``, so the server maps them to ``_exmpl_dataset`` in
    filters and answers and lists them in ``/info/structures``; every entry
    is answered with every declared field (null where it has none).

    Parameters
    ----------
    entries
        Flat entries (:func:`optimade_entries`): ``id``, ``type``,
        attributes; provider fields named ``_{provider}_{name}``.
    provider
        The provider prefix; the server serves the fields of ``provider_fields``.
    provider_fields
        Field names without the prefix (default: every ``_{provider}_…``
        field of the entries).
    page_limit, page_limit_max
        The default and the largest ``page_limit`` the server accepts (a
        larger one is answered 403). optimade 1.5.0 reads ``page_limit`` only
        for ``page_limit=0``: a request without one gets its own default, 20.
    timeout
        Seconds to wait for the server to answer with all entries.

    Attributes
    ----------
    base_url
        ``http://127.0.0.1:PORT`` (a :class:`FaultProxy` upstream).
    url
        ``http://127.0.0.1:PORT/v1``.

    Raises
    ------
    OptimadeServerError
        The server exited or did not answer in time; the message ends with the
        last 2,000 characters of its output. It is stopped first.
    """

    def __init__(
        self,
        entries: Sequence[Mapping[str, Any]],
        *,
        provider: str = "exmpl",
        provider_fields: Sequence[str] | None = None,
        page_limit: int = 100,
        page_limit_max: int = 1000,
        timeout: float = 120.0,
    ) -> None:
        if not isinstance(provider, str) or not _PREFIX.match(provider):
            raise ConfigError(f"provider={provider!r}: use an OPTIMADE prefix such as 'exmpl'")
        if not 1 <= page_limit <= page_limit_max:
            raise ConfigError(
                f"page_limit={page_limit!r}, page_limit_max={page_limit_max!r}: "
                "use 1 ≤ page_limit ≤ page_limit_max"
            )
        self.entries = entries
        self.provider = provider
        own = f"_{provider}_"
        if provider_fields is None:
            found = {key for entry in entries for key in entry if key.startswith(own)}
            provider_fields = sorted(key.removeprefix(own) for key in found)
        self.provider_fields = [str(name).removeprefix(own) for name in provider_fields]
        self.page_limit = page_limit
        self.page_limit_max = page_limit_max
        self.timeout = timeout
        self.port: int | None = None
        self._process: subprocess.Popen | None = None
        self._folder: Path | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise ConfigError("the server is not started: use it as a context manager")
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/v1"

    def __enter__(self) -> OptimadeServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _described_fields(self) -> list[dict[str, str]]:
        """The provider fields with their types, so ``/info/structures`` lists them."""
        kinds = {}
        for name in self.provider_fields:
            key = f"_{self.provider}_{name}"
            values = (entry.get(key) for entry in self.entries)
            value = next((v for v in values if v is not None), None)
            kinds[name] = _PROPERTY_TYPES.get(type(value), "string")
        return [
            {"name": name, "type": kind, "description": f"xenonscale test data: {name}"}
            for name, kind in kinds.items()
        ]

    def _write(self, folder: Path, port: int) -> dict[str, str]:
        jsonl = folder / "entries.jsonl"
        with jsonl.open("w", encoding="utf-8") as handle:
            for line in _jsonl_lines(self.entries, self.provider):
                handle.write(line + "\n")
        config = {
            "debug": False,
            "insert_test_data": False,
            "insert_from_jsonl": str(jsonl),
            "database_backend": "mongomock",
            "provider": {
                "prefix": self.provider,
                "name": f"xenonscale test provider ({self.provider})",
                "description": "Real structures served by xenonscale.testing.optimade",
                "homepage": None,
            },
            "provider_fields": {"structures": self._described_fields()},
            "page_limit": self.page_limit,
            "page_limit_max": self.page_limit_max,
            "base_url": f"http://127.0.0.1:{port}",
            "log_dir": str(folder / "logs"),
            "log_level": "warning",
        }
        config_file = folder / "optimade_config.json"
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().startswith("OPTIMADE_")
        }
        env["OPTIMADE_CONFIG_FILE"] = str(config_file)
        return env

    def start(self) -> OptimadeServer:
        """Start the server and wait for it (see the class); a no-op when running."""
        if self._process is not None:
            return self
        self._folder = Path(tempfile.mkdtemp(prefix="xenonscale-optimade-"))
        try:
            for attempt in range(3):  # the free port may be taken before uvicorn binds it
                self.port = _free_port()
                env = self._write(self._folder, self.port)
                if self._launch(env, last=attempt == 2):
                    return self
        except BaseException:
            self.stop()
            raise
        return self  # pragma: no cover - _launch raises on its last attempt

    def _launch(self, env: dict[str, str], *, last: bool) -> bool:
        log = self._folder / "server.log"
        command = [sys.executable, "-m", "uvicorn", "optimade.server.main:app",
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        with log.open("wb") as output:
            self._process = subprocess.Popen(
                command, cwd=self._folder, env=env, stdout=output, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.timeout
        failure = "did not answer"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                failure = f"exited with status {self._process.returncode}"
                break
            try:
                status, _ = _get_json(self.url + "/info", timeout=5)
                if status == 200:
                    status, page = _get_json(self.url + "/structures?page_limit=1", timeout=60)
                    available = (page or {}).get("meta", {}).get("data_available")
                    if status == 200 and available == len(self.entries):
                        return True
                    failure = f"serves {available} entries, not {len(self.entries)} (HTTP {status})"
                    break
            except (OSError, ValueError):  # not listening yet
                pass
            time.sleep(0.2)
        else:
            failure = f"did not answer in {self.timeout:g} s"
        output = log.read_text(encoding="utf-8", errors="replace")
        self._terminate()
        if not last and "address already in use" in output.lower():
            return False
        raise OptimadeServerError(
            f"the OPTIMADE reference server on port {self.port} {failure}; its output "
            f"(last 2,000 characters of {log}):\n{output[-2000:]}"
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s) and remove its folder; idempotent."""
        self._terminate()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


# -- the fault-injecting proxy ------------------------------------------------------------


@dataclass(frozen=True)
class ProxyRecord:
    """One request through a :class:`FaultProxy`.

    A request is logged just before its answer is sent, so a client holding
    its answer finds the record. ``query`` holds the decoded parameters (the
    last value of a repeated one); ``records`` and ``ids`` count the ``data``
    list of a 2xx JSON body sent whole (0 and ``()`` otherwise, also for a
    dropped body); ``fault`` names what was injected (``status``, ``drop``,
    ``delay``, ``down``) or is None; ``seconds`` is the time the proxy took
    until the answer (a delay included), from ``started`` (``time.monotonic``);
    ``headers`` are the request's headers, names lower-cased. An unreachable
    upstream is a 502.
    """

    path: str
    query: dict[str, str]
    status: int
    records: int
    ids: tuple[str, ...]
    fault: str | None
    seconds: float
    started: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def user_agent(self) -> str | None:
        return self.headers.get("user-agent")


@dataclass
class _Fault:
    kind: str
    times: int
    match: str | Callable[[str, dict[str, str]], bool] | None
    status: int
    retry_after: int | float | str | None
    seconds: float | None

    def matches(self, path: str, query: dict[str, str], raw: str) -> bool:
        if self.match is None:
            return True
        if callable(self.match):
            return bool(self.match(path, query))
        return self.match in raw


_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "content-length", "content-encoding", "server", "date", "host",
     "accept-encoding", "proxy-authorization", "proxy-authenticate"}
)  # fmt: skip


def _page(body: bytes) -> tuple[int, tuple[str, ...]]:
    try:
        document = json.loads(body)
    except ValueError:
        return 0, ()
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, list):
        return 0, ()
    ids = tuple(str(item["id"]) for item in data if isinstance(item, dict) and "id" in item)
    return len(data), ids


def _error_body(status: int, detail: str) -> bytes:
    title = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ else ""
    error = {"status": str(status), "title": title, "detail": detail}
    return json.dumps({"errors": [error], "meta": {"api_version": _API_VERSION}}).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.0"  # one request a connection: a drop ends only its own page

    def log_message(self, format: str, *args: Any) -> None:  # the access log is FaultProxy.log
        pass

    def do_GET(self) -> None:
        self.server.owner._handle(self)


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FaultProxy


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1 that injects faults and logs every request.

    GET requests to ``proxy.url + PATH`` go to ``upstream + PATH`` (query
    unchanged); status, headers and body come back, with every occurrence of
    the upstream's base URL in the body (``links.next``, ``meta``) replaced by
    the proxy's own. The body is asked for uncompressed (``Accept-Encoding:
    identity``). An unreachable upstream answers 502.

    Attributes
    ----------
    url
        ``http://127.0.0.1:PORT``.
    upstream
        The server behind it (``http://HOST:PORT``, optionally with a path);
        assign a new one at any time.
    down
        While True, every request is answered 503 (a server that stays down).
    log
        A copy of the access log, a list of :class:`ProxyRecord` in the order
        the responses finished.

    Examples
    --------
    See the module docstring.
    """

    def __init__(self, upstream: str, *, upstream_timeout: float = 300.0) -> None:
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self.down = False
        self._lock = threading.Lock()
        self._log: list[ProxyRecord] = []
        self._faults: list[_Fault] = []
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    # -- configuration

    @property
    def upstream(self) -> str:
        return self._upstream

    @upstream.setter
    def upstream(self, value: str) -> None:
        parts = urlsplit(str(value))
        if parts.scheme != "http" or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"upstream={value!r}: use a base URL like 'http://127.0.0.1:5000'")
        self._upstream = str(value).rstrip("/")

    @property
    def url(self) -> str:
        if self._server is None:
            raise ConfigError("the proxy is not started: use it as a context manager")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_fault(
        self,
        kind: str,
        *,
        times: int = 1,
        match: str | Callable[[str, dict[str, str]], bool] | None = None,
        status: int = 503,
        retry_after: int | float | str | None = None,
        seconds: float | None = None,
    ) -> None:
        """Inject a fault into the next ``times`` requests that ``match``.

        Parameters
        ----------
        kind
            ``status``: answer ``status`` with a JSON:API error body (and a
            ``Retry-After: retry_after`` header when given); ``drop``: send the
            upstream's status line, headers and about half of its body, then
            close the connection; ``delay``: wait ``seconds``, then forward.
        match
            None (every request), a substring of ``PATH?QUERY`` as sent, or a
            callable of ``(path, query dict)``.

        Faults are tried in the order they were added; the first one left
        that matches is applied and used up by one.
        """
        if kind not in FAULT_KINDS:
            raise ConfigError(f"kind={kind!r}: use one of {', '.join(FAULT_KINDS)}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ConfigError(f"times={times!r}: use a count ≥ 1")
        if not (match is None or isinstance(match, str) or callable(match)):
            raise ConfigError(f"match={match!r}: use a substring, a callable or None")
        if kind == "status" and not 100 <= int(status) <= 599:
            raise ConfigError(f"status={status!r}: use an HTTP status code")
        if kind == "delay" and (seconds is None or not seconds >= 0):
            raise ConfigError(f"seconds={seconds!r}: a delay needs a number of seconds ≥ 0")
        with self._lock:
            self._faults.append(_Fault(kind, times, match, int(status), retry_after, seconds))

    def faults_left(self) -> int:
        """How many injections are still to come (the sum of every fault's ``times`` left)."""
        with self._lock:
            return sum(fault.times for fault in self._faults)

    @property
    def log(self) -> list[ProxyRecord]:
        with self._lock:
            return list(self._log)

    def clear_faults(self) -> None:
        """Forget the faults not used yet (a server that comes back)."""
        with self._lock:
            self._faults.clear()

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._log.clear()

    # -- life cycle

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Listen on a free port of 127.0.0.1 in a daemon thread; a no-op when running."""
        if self._server is None:
            server = _ProxyServer(("127.0.0.1", 0), _Handler)
            server.owner = self
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"FaultProxy:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (bounded: requests still running are daemon threads); idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    # -- requests

    def _take_fault(self, path: str, query: dict[str, str], raw: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path, query, raw):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, start: float, path: str, query: dict, status: int, body: bytes | None,
                fault: str | None, headers: dict[str, str]) -> None:  # fmt: skip
        records, ids = _page(body) if body else (0, ())
        record = ProxyRecord(path, query, status, records, ids, fault, time.monotonic() - start,
                             start, headers)  # fmt: skip
        with self._lock:
            self._log.append(record)

    def _forward(self, handler: _Handler, upstream: str, own: str) -> tuple[int, list, bytes]:
        base = urlsplit(upstream)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
        headers["Accept-Encoding"] = "identity"
        connection = http.client.HTTPConnection(base.netloc, timeout=self.upstream_timeout)
        try:
            connection.request("GET", base.path + handler.path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            status, response_headers = response.status, response.getheaders()
        finally:
            connection.close()
        encoding = dict((k.lower(), v) for k, v in response_headers).get("content-encoding", "")
        if encoding.lower() in ("gzip", "deflate"):
            body = zlib.decompress(body, zlib.MAX_WBITS | 32)
        kept = [(k, v) for k, v in response_headers if k.lower() not in _HOP_HEADERS]
        return status, kept, body.replace(upstream.encode(), own.encode())

    def _respond(self, handler: _Handler, status: int, headers: list, body: bytes,
                 *, cut: bool = False) -> None:  # fmt: skip
        handler.send_response(status)
        for key, value in headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if not cut:
            handler.wfile.write(body)
            return
        handler.wfile.write(body[: len(body) // 2])  # then the connection goes: no more bytes
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self, handler: _Handler) -> None:
        """Decide, log, then answer: a client that has its answer finds it in the log."""
        start = time.monotonic()
        parts = urlsplit(handler.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        upstream, down = self._upstream, self.down  # one value for the whole request
        own = f"http://127.0.0.1:{handler.server.server_address[1]}"
        fault = None if down else self._take_fault(path, query, handler.path)
        applied = "down" if down else fault and fault.kind
        headers = [("Content-Type", "application/vnd.api+json")]
        if down:
            status = 503
            body = _error_body(503, "FaultProxy: the server is down (proxy.down = True)")
        elif fault is not None and fault.kind == "status":
            status = fault.status
            if fault.retry_after is not None:
                headers.append(("Retry-After", str(fault.retry_after)))
            body = _error_body(status, f"FaultProxy: injected HTTP {status}")
        else:
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.seconds)
            try:
                status, headers, body = self._forward(handler, upstream, own)
            except (OSError, http.client.HTTPException) as exc:
                status = 502
                body = _error_body(502, f"FaultProxy: upstream {upstream} unreachable: {exc}")
        cut = applied == "drop"
        page = body if 200 <= status < 300 and not cut else None
        sent = {k.lower(): v for k, v in handler.headers.items()}
        self._record(start, path, query, status, page, applied, sent)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up
            self._respond(handler, status, headers, body, cut=cut)
