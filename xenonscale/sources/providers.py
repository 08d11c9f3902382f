"""OPTIMADE providers and their databases: the short names of ``optimade:`` sources.

The OPTIMADE consortium lists the providers (Materials Project ``mp``, OQMD
``oqmd``, Alexandria ``alexandria``, ...), each with an *index
meta-database* whose ``/v1/links`` names the provider's child databases;
each child database has a *base URL* that serves ``/v1/structures``. This
module joins two shipped facts:

* the **providers list**: the ``providers.json`` that the ``optimade``
  package carries (read as a file when the package is installed; none of its
  Python modules is imported), else the copy shipped here
  (``data/optimade_providers.json``, written from optimade 1.5.0's);
* the **curated table** ``data/optimade_databases.json``: known child
  databases (base URL, the provider's default, where each URL comes from and
  when it was checked).

Names (:func:`resolve_base_url`): ``PREFIX`` is the provider's default
database (``mp``, ``alexandria`` → PBE), ``PREFIX.NAME`` one of its databases
(``alexandria.pbesol``), and an ``http(s)://`` URL is itself. So
``optimade:mp?filter=...`` and ``optimade:alexandria.pbesol?filter=...`` are
sources. The table is shipped, not fetched: :func:`live_databases` asks a
provider's index for its current databases
(``xenonscale databases show PREFIX --live``).

Not to be confused with :mod:`xenonscale.datasets` (files of public
datasets, the ``dataset:NAME`` inputs).

Examples
--------
>>> resolve_base_url("mp")
'https://optimade.materialsproject.org'
>>> resolve_base_url("alexandria")
'https://alexandria.icams.rub.de/pbe'
>>> resolve_base_url("alexandria.pbesol")
'https://alexandria.icams.rub.de/pbesol'
>>> resolve_base_url("https://optimade.example.org/v1")
'https://optimade.example.org/v1'
>>> provider("mp").name, provider("mp").default.name
('The Materials Project', 'main')
>>> [db.name for db in provider("alexandria").databases][:2]
['pbe', 'pbesol']
>>> try:
...     resolve_base_url("alexandira")
... except ConfigError as exc:
...     print(str(exc)[:75])
'alexandira' is not a known OPTIMADE database: did you mean alexandria or ...
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

from xenonscale import __version__
from xenonscale.errors import ConfigError, SourceError

__all__ = [
    "USER_AGENT",
    "Database",
    "Provider",
    "live_databases",
    "provider",
    "provider_list_origin",
    "providers",
    "resolve_base_url",
]

#: Sent with every request to an index meta-database.
USER_AGENT = f"xenonscale/{__version__}"
#: The separator of ``PREFIX.NAME``.
SEPARATOR = "."
_DATA = "data"
_SNAPSHOT = "optimade_providers.json"
_CURATED = "optimade_databases.json"
_FIX = "xenonscale databases list shows the names"


@dataclass(frozen=True)
class Database:
    """One OPTIMADE database: ``base_url`` serves ``/v1/structures``.

    ``default`` marks the database ``PREFIX`` alone names; ``source`` says
    where the URL comes from and ``checked`` when (and whether) it was
    checked; both are empty for databases read live from an index.
    """

    name: str
    base_url: str
    description: str = ""
    default: bool = False
    source: str = ""
    checked: str = ""


@dataclass(frozen=True)
class Provider:
    """An OPTIMADE provider: ``prefix`` (``mp``), ``index_url`` its index
    meta-database (``None`` when it lists none) and its known ``databases``
    (the default first)."""

    prefix: str
    name: str
    description: str
    homepage: str | None
    index_url: str | None
    databases: tuple[Database, ...] = ()

    @property
    def default(self) -> Database | None:
        """The database ``optimade:PREFIX`` names (None when none is known)."""
        return next((db for db in self.databases if db.default), None)

    def database(self, name: str) -> Database:
        """The database called ``name``; a ConfigError lists the known names."""
        for db in self.databases:
            if db.name == name:
                return db
        known = ", ".join(f"{self.prefix}{SEPARATOR}{db.name}" for db in self.databases)
        raise ConfigError(
            f"{self.prefix + SEPARATOR + name!r}: provider {self.prefix!r} has no database "
            f"{name!r} known to xenonscale"
            + (f"; use one of {known}" if known else "")
            + f" (xenonscale databases show {self.prefix} --live asks its index), "
            "or give the database's URL: optimade:https://HOST/..."
        )


# -- loading ----------------------------------------------------------------------------------


def _read_json(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(_DATA, name).read_text("utf-8"))


def _package_list() -> tuple[list[dict], str] | None:
    """The optimade package's providers list (records, origin), or None without it.

    The file is read where the package lies; nothing of it is imported but its
    (trivial) top-level ``__init__``.
    """
    try:
        path = resources.files("optimade").joinpath("server", "data", "providers.json")
        text = path.read_text("utf-8")
        version = metadata.version("optimade")
    except (ModuleNotFoundError, OSError, metadata.PackageNotFoundError):  # not installed
        return None
    try:
        document = json.loads(text)
        records = [
            {"id": entry["id"], **entry["attributes"]}
            for entry in document["data"]
            if entry.get("type", "links") == "links"
        ]
    except (ValueError, KeyError, TypeError):  # a broken install: use the shipped copy
        return None
    return records, f"optimade {version} package (optimade/server/data/providers.json)"


def _snapshot_list() -> tuple[list[dict], str]:
    snapshot = _read_json(_SNAPSHOT)
    origin = f"shipped copy of the optimade {snapshot['optimade_version']} providers list"
    return snapshot["providers"], origin


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, Provider], str]:
    """``({prefix: Provider}, origin of the providers list)``, read once."""
    records, origin = _package_list() or _snapshot_list()
    curated: dict[str, list[Database]] = {}
    for row in _read_json(_CURATED)["databases"]:
        db = Database(
            name=row["name"],
            base_url=row["base_url"],
            description=row.get("description", ""),
            default=bool(row.get("default", False)),
            source=row.get("source", ""),
            checked=row.get("checked", ""),
        )
        curated.setdefault(row["provider"], []).append(db)
    catalog: dict[str, Provider] = {}
    for record in records:
        prefix = record["id"]
        catalog[prefix] = Provider(
            prefix=prefix,
            name=record.get("name") or prefix,
            description=record.get("description") or "",
            homepage=record.get("homepage") or None,
            index_url=record.get("base_url") or None,
        )
    for prefix, dbs in curated.items():
        known = catalog.get(prefix) or Provider(prefix, prefix, "", None, None)
        ordered = tuple(sorted(dbs, key=lambda db: not db.default))  # the default first
        catalog[prefix] = dataclasses.replace(known, databases=ordered)
    return dict(sorted(catalog.items())), origin


def providers() -> tuple[Provider, ...]:
    """Every OPTIMADE provider (sorted by prefix) with its known databases.

    >>> "mp" in [p.prefix for p in providers()]
    True
    """
    return tuple(_catalog()[0].values())


def provider_list_origin() -> str:
    """Where the providers list was read from (the optimade package, or the shipped copy)."""
    return _catalog()[1]


def _suggest(value: str, *, databases: bool = True) -> str:
    """``"did you mean X or Y? "``: close prefixes (and ``PREFIX.NAME``s), or providers
    whose name is close; empty when nothing is close."""
    catalog = _catalog()[0]
    names = list(catalog)
    if databases:
        names += [f"{p.prefix}{SEPARATOR}{db.name}" for p in catalog.values() for db in p.databases]
    close = difflib.get_close_matches(value.lower(), names, n=3, cutoff=0.6)
    by_title = {p.name.lower(): p.prefix for p in catalog.values()}
    close += [by_title[t] for t in difflib.get_close_matches(value.lower(), by_title, n=2)]
    close = list(dict.fromkeys(close))
    return f"did you mean {' or '.join(close)}? " if close else ""


def provider(prefix: str) -> Provider:
    """The provider ``prefix`` (case-insensitive), or a ConfigError naming close matches.

    >>> provider("OQMD").prefix
    'oqmd'
    """
    key = str(prefix).strip().lower()
    found = _catalog()[0].get(key)
    if found is None:
        raise ConfigError(
            f"{prefix!r} is not an OPTIMADE provider prefix: {_suggest(key, databases=False)}{_FIX}"
        )
    return found


def resolve_base_url(name: str) -> str:
    """The base URL ``name`` stands for: ``PREFIX`` (its default database),
    ``PREFIX.NAME``, or an ``http(s)://`` URL (returned unchanged).

    Raises
    ------
    ConfigError
        An unknown prefix or database (the message names the value, close
        matches and ``xenonscale databases list``), or a provider with no
        database known here.
    """
    text = str(name).strip()
    if text.lower().startswith(("http://", "https://")):
        return text
    if "://" in text:
        raise ConfigError(f"{name!r}: an OPTIMADE database URL must be http:// or https://")
    if "/" in text:
        hint = text.replace("/", SEPARATOR, 1)
        raise ConfigError(
            f"{name!r} is not a database name: write PREFIX{SEPARATOR}NAME (e.g. {hint!r}) "
            "or a full https:// URL"
        )
    prefix, _, database = text.partition(SEPARATOR)
    key = prefix.lower()
    if key not in _catalog()[0]:
        raise ConfigError(
            f"{name!r} is not a known OPTIMADE database: {_suggest(text)}{_FIX}, "
            "or give the database's URL: optimade:https://HOST/..."
        )
    found = _catalog()[0][key]
    if database:
        return found.database(database.lower()).base_url
    if found.default is None:
        raise ConfigError(
            f"{name!r}: no database of provider {found.prefix!r} ({found.name}) is known to "
            f"xenonscale: xenonscale databases show {found.prefix} --live asks its index, "
            "then give the database's URL: optimade:https://HOST/..."
        )
    return found.default.base_url


# -- live ---------------------------------------------------------------------------------------


def _links_url(index_url: str) -> str:
    base = index_url.rstrip("/")
    last = base.rsplit("/", 1)[-1]
    versioned = len(last) > 1 and last[0] == "v" and last[1:].replace(".", "").isdigit()
    return f"{base}/links" if versioned else f"{base}/v1/links"


def _href(value: Any) -> str | None:
    """A links entry's ``base_url``: a string or a Link object ``{"href": ...}``."""
    if isinstance(value, dict):
        value = value.get("href")
    return value if isinstance(value, str) and value else None


def live_databases(
    prefix: str, *, timeout: float = 5.0, index_url: str | None = None
) -> tuple[Database, ...]:
    """The child databases the provider's index meta-database lists now.

    GETs ``{index_url}/v1/links`` (``index_url`` defaults to the provider's)
    and keeps the entries with ``link_type == "child"`` and a base URL. A
    database whose base URL is in the curated table keeps its name there (so
    ``PREFIX.NAME`` still resolves); others are named by their link id.

    Raises
    ------
    ConfigError
        An unknown prefix.
    SourceError
        The provider lists no index, or it cannot be read within ``timeout``
        seconds (one line naming the URL and the reason).
    """
    import httpx  # lazy: only the live path talks to the network

    found = provider(prefix)
    index = index_url or found.index_url
    if not index:
        raise SourceError(
            f"provider {found.prefix!r} lists no index meta-database: use the shipped table "
            f"(xenonscale databases show {found.prefix}) or the database's URL"
        )
    url = _links_url(index)
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        document = response.json()
        entries = document["data"]
        if not isinstance(entries, list):
            raise TypeError("'data' is not a list")
    except httpx.HTTPStatusError as exc:
        raise SourceError(
            f"the index of {found.prefix!r} at {url} answered HTTP "
            f"{exc.response.status_code}: use the shipped table (leave out --live)"
        ) from None
    except httpx.HTTPError as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SourceError(
            f"the index of {found.prefix!r} at {url} is unreachable ({type(exc).__name__}: "
            f"{reason}): check the network, or use the shipped table (leave out --live)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"the index of {found.prefix!r} at {url} did not answer an OPTIMADE links "
            f"document ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    known = {db.base_url.rstrip("/"): db for db in found.databases}
    databases = []
    for entry in entries:
        attributes = entry.get("attributes") if isinstance(entry, dict) else None
        if not isinstance(attributes, dict) or attributes.get("link_type") != "child":
            continue
        base_url = _href(attributes.get("base_url"))
        if base_url is None:
            continue
        curated = known.get(base_url.rstrip("/"))
        databases.append(
            Database(
                name=curated.name if curated else str(entry.get("id") or base_url),
                base_url=base_url.rstrip("/"),
                description=str(attributes.get("description") or attributes.get("name") or ""),
                default=bool(curated and curated.default),
            )
        )
    return tuple(databases)
