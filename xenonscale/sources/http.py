"""Polite HTTP for sources that live on web services (OPTIMADE databases).

:func:`get_json` is the one way a source reads a web API. It keeps the
manners a shared public service expects:

* a **timeout** on every request (connect and read);
* **retries** on 429, 5xx, dropped connections, timeouts and truncated bodies,
  waiting ``backoff × 2^attempt`` seconds with full jitter (capped at
  ``max_backoff``), or exactly what the server's ``Retry-After`` header asks
  (seconds or an HTTP date; more than ``max_retry_after`` fails at once);
* a **per-host concurrency limit** shared by every thread and every Dask
  worker of the cluster (a ``distributed.Semaphore`` named after the host when
  running on a worker, a process-wide semaphore elsewhere);
* a clear **user agent** (``xenonscale/VERSION (+homepage)``);
* an optional **API key**: :attr:`HttpPolicy.auth_env` names an environment
  variable read at request time on the machine that sends the request, so
  the key never enters a task graph, a store attribute, a log line or an
  error message (only the variable's name does).

A request that keeps failing raises :class:`~xenonscale.errors.SourceUnavailableError`
naming the URL, the attempts and the last failure; a 4xx other than 429 raises
:class:`~xenonscale.errors.SourceError` at once with the server's own detail.

Examples
--------
>>> policy = HttpPolicy(retries=2, backoff=0.5)
>>> 0 <= policy.delay(attempt=3, retry_after=None) <= 4.0  # 0.5 s × 2³, full jitter
True
>>> policy.delay(attempt=0, retry_after="7")
7.0
>>> "xenonscale/" in policy.headers()["User-Agent"]
True
"""

from __future__ import annotations

import email.utils
import functools
import json
import os
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from xenonscale import __version__
from xenonscale.errors import ConfigError, SourceError, SourceUnavailableError

__all__ = ["HttpPolicy", "get_json", "host_slot"]

#: Statuses worth another try (rate limited, server trouble).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = f"xenonscale/{__version__} (+https://github.com/xenonscale/xenonscale)"


@dataclass(frozen=True)
class HttpPolicy:
    """How a source talks to one web service (see the module docstring).

    ``auth_env`` is the *name* of an environment variable holding an API key,
    sent as ``auth_header`` (Materials Project: ``X-API-KEY``); the value is
    read when a request is sent and is never stored.
    """

    timeout: float = 60.0
    retries: int = 6
    backoff: float = 1.0
    max_backoff: float = 60.0
    max_retry_after: float = 600.0
    per_host: int = 4
    auth_env: str | None = None
    auth_header: str = "X-API-KEY"
    user_agent: str = USER_AGENT

    def __post_init__(self) -> None:
        for name in ("timeout", "backoff", "max_backoff", "max_retry_after"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name}={getattr(self, name)!r}: use a number of seconds ≥ 0")
        if self.retries < 0:
            raise ConfigError(f"retries={self.retries!r}: use 0 or more")
        if self.per_host < 1:
            raise ConfigError(f"per_host={self.per_host!r}: allow at least 1 request per host")
        if self.auth_env is not None and not str(self.auth_env).isidentifier():
            raise ConfigError(
                f"auth_env={self.auth_env!r}: give the NAME of an environment variable "
                "(e.g. MP_API_KEY), never the key itself"
            )

    def headers(self) -> dict[str, str]:
        """Request headers: user agent, JSON, and the API key when ``auth_env`` is set."""
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        if self.auth_env:
            key = os.environ.get(self.auth_env)
            if not key:
                raise ConfigError(
                    f"auth_env={self.auth_env!r}: the environment variable is not set on this "
                    "machine; export it (and on every Dask worker) or leave --auth-env out"
                )
            headers[self.auth_header] = key
        return headers

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try ``attempt + 2``: ``Retry-After`` when the server
        says, else exponential backoff with full jitter."""
        if retry_after:
            seconds = _retry_after_seconds(retry_after)
            if seconds is not None:
                return seconds
        cap = min(self.max_backoff, self.backoff * 2.0**attempt)
        return random.uniform(0.0, cap)


def _retry_after_seconds(value: str) -> float | None:
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def get_json(url: str, params: dict | None = None, *, policy: HttpPolicy | None = None) -> dict:
    """GET ``url`` with ``params`` and return its JSON object, politely (module docstring).

    Raises
    ------
    SourceUnavailableError
        Every try failed (429/5xx, dropped connection, timeout, truncated body),
        or the server asked to wait longer than ``max_retry_after``.
    SourceError
        The server refused the request (4xx other than 429), with its detail.
    """
    import httpx

    policy = policy or HttpPolicy()
    headers = policy.headers()
    last = "no attempt made"
    for attempt in range(policy.retries + 1):
        retry_after = None
        try:
            with host_slot(url, policy.per_host):
                response = _client(policy.timeout).get(url, params=params, headers=headers)
                body = response.content
            if response.status_code == 200:
                try:
                    doc = json.loads(body)
                except ValueError:
                    last = f"HTTP 200 with a body that is not JSON ({len(body)} bytes, cut short?)"
                else:
                    if isinstance(doc, dict):
                        return doc
                    last = "HTTP 200 with JSON that is not an object"
            elif response.status_code in RETRY_STATUSES:
                retry_after = response.headers.get("Retry-After")
                last = f"HTTP {response.status_code}" + _detail(body)
            else:
                raise SourceError(
                    f"{_shown(response.request.url)} answered HTTP {response.status_code}"
                    f"{_detail(body)}: check the URL and the filter"
                )
        except httpx.TransportError as exc:  # refused, reset, dropped mid-body, timed out
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if attempt == policy.retries:
            break
        wait = policy.delay(attempt, retry_after)
        if wait > policy.max_retry_after:
            raise SourceUnavailableError(
                f"{_shown(url)} asks to retry after {wait:.0f} s (> max_retry_after "
                f"{policy.max_retry_after:.0f} s): rerun later to resume"
            )
        time.sleep(wait)
    raise SourceUnavailableError(
        f"{_shown(url)} failed {policy.retries + 1} times (last: {last}): "
        "rerun the same command to resume when the service is back"
    )


def _shown(url) -> str:
    """A URL for messages: no query string (filters can be long; keys never travel there)."""
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _detail(body: bytes) -> str:
    """The first OPTIMADE/JSON:API error detail of a response body, if any."""
    try:
        doc = json.loads(body)
        error = (doc.get("errors") or [{}])[0]
        text = error.get("detail") or error.get("title") or ""
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
    text = " ".join(str(text).split())
    return f" ({text[:200]})" if text else ""


@functools.lru_cache(maxsize=8)
def _client(timeout: float):
    """One connection pool per process and timeout (httpx clients are thread-safe)."""
    import httpx

    return httpx.Client(timeout=timeout, follow_redirects=True)


_LOCAL_SLOTS: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_LOCAL_GUARD = threading.Lock()


@contextmanager
def host_slot(url: str, limit: int):
    """Hold one of ``limit`` request slots for ``url``'s host while the block runs.

    On a Dask worker the slots are a cluster-wide ``distributed.Semaphore``
    (named ``xenonscale-http:HOST``), so every worker together sends at most
    ``limit`` concurrent requests to a host; elsewhere a process-wide one.
    """
    host = urlsplit(url).netloc.lower()
    semaphore = _cluster_semaphore(host, limit)
    if semaphore is None:
        with _LOCAL_GUARD:
            semaphore = _LOCAL_SLOTS.setdefault((host, limit), threading.BoundedSemaphore(limit))
    with semaphore:
        yield


def _cluster_semaphore(host: str, limit: int):
    try:
        from distributed import get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    return _worker_semaphore(host, limit)


@functools.lru_cache(maxsize=64)
def _worker_semaphore(host: str, limit: int):
    from distributed import Semaphore

    return Semaphore(max_leases=limit, name=f"xenonscale-http:{host}")
