"""OPTIMADE databases as a partitioned source: ``optimade:URL?filter=...``.

Materials Project, OQMD, AFLOW, JARVIS, Alexandria, COD, NOMAD and more
serve their structures through the OPTIMADE API. This source reads one
``/structures`` query of such a database like a file:

* **URL**: ``optimade:https://HOST/v1/structures?filter=elements HAS "Li"``
  (the filter is passed through unchanged; spaces and quotes may stay
  unescaped), a base URL (``optimade:https://HOST`` → ``HOST/v1/structures``)
  or a short name from :mod:`xenonscale.sources.providers`
  (``optimade:mp?filter=...``, ``optimade:alexandria.pbesol``).
* **Planning** asks the server once for the query's count
  (``meta.data_returned``) and the page size it grants. Partitions are row
  ranges fetched by the workers themselves, page by page, with ``page_offset``
  where the server offers it (its ``links.next`` uses it, or asking for record
  1 alone gives the page's second record). Where a server pages only with
  cursors (opaque ``links.next``), the plan walks the query once asking for
  ids only and records, for each partition, the link of the page where it
  starts and how many records to skip there; each worker starts from its link
  and follows ``next`` with the full field list (the partitions are chained
  through that one light pass).
* **Records**: each entry becomes a pymatgen ``Structure`` dict (species with
  their concentrations, fractional coordinates from the Cartesian ones).
  An entry that cannot be one (no lattice or sites, not periodic in 3-D,
  assemblies, unknown symbols) becomes an error row with its reason
  (:class:`~xenonscale.featurize.base.RejectedInput`); disorder is kept as
  partial occupancies and left to the featurizer to accept or reject.
* **Columns**: ``id`` is ``PROVIDER:ID`` (stable across runs), the extra
  column ``last_modified`` keeps the entry's date (incremental sync reads it),
  and ``response_fields`` adds provider fields as extra store variables; a
  field with the provider's own prefix loses it (``_mp_band_gap`` →
  ``band_gap``) unless that clashes with another column.
* **Manners**: every request goes through :func:`xenonscale.sources.http.get_json`
  (timeouts, retries with backoff and ``Retry-After``, a per-host limit across
  the cluster, user agent, an API key from the environment variable named by
  ``auth_env``, never stored).

Examples
--------
>>> source = OptimadeSource('optimade:https://optimade.example.org?filter=elements HAS "Li"')
>>> source.endpoint, source.filter
('https://optimade.example.org/v1/structures', 'elements HAS "Li"')
>>> to_structure_dict({"lattice_vectors": [[4, 0, 0], [0, 4, 0], [0, 0, 4]],
...     "cartesian_site_positions": [[0, 0, 0], [2, 2, 2]], "species_at_sites": ["Cs", "Cl"],
...     "species": [{"name": "Cs", "chemical_symbols": ["Cs"], "concentration": [1.0]},
...                 {"name": "Cl", "chemical_symbols": ["Cl"], "concentration": [1.0]}],
...     "dimension_types": [1, 1, 1]})["sites"][1]["abc"]
[0.5, 0.5, 0.5]
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, SourceError
from xenonscale.featurize.base import RejectedInput
from xenonscale.sources.base import Partition, Source
from xenonscale.sources.http import HttpPolicy, get_json
from xenonscale.sources.providers import resolve_base_url

__all__ = ["OPTIMADE_PREFIX", "STRUCTURE_FIELDS", "OptimadeSource", "to_structure_dict"]

OPTIMADE_PREFIX = "optimade:"
#: The fields every request asks for (what a structure needs, its id and date).
STRUCTURE_FIELDS = (
    "id",
    "last_modified",
    "lattice_vectors",
    "cartesian_site_positions",
    "species",
    "species_at_sites",
    "dimension_types",
    "nperiodic_dimensions",
    "structure_features",
)
#: Query parameters an ``optimade:`` URL may carry.
URL_PARAMETERS = ("filter", "response_fields", "page_limit", "sort")
#: Rows a plan asks for per page unless the URL or ``page_limit`` says otherwise.
DEFAULT_PAGE_LIMIT = 100
PAGING_MODES = ("auto", "offset", "cursor")


class OptimadeSource(Source):
    """The structures an OPTIMADE query returns (see the module docstring).

    Parameters
    ----------
    url
        ``optimade:`` + an endpoint, base URL or short provider name, with an
        optional query (``filter``, ``response_fields``, ``page_limit``, ``sort``).
    kind
        Only ``structure``.
    response_fields
        Provider or standard fields kept as extra store variables
        (comma-separated text or a sequence).
    page_limit
        Records per request (the server may grant fewer; it is asked once).
    paging
        ``auto`` (offsets when the server has them), ``offset`` or ``cursor``.
    policy
        :class:`~xenonscale.sources.http.HttpPolicy` (timeouts, retries, per-host
        limit); ``auth_env`` is a shortcut for its API-key variable.
    """

    def __init__(
        self,
        url: str,
        *,
        kind: str | None = None,
        response_fields: str | tuple | list | None = None,
        page_limit: int | None = None,
        paging: str = "auto",
        policy: HttpPolicy | None = None,
        auth_env: str | None = None,
        storage_options: dict | None = None,
    ) -> None:
        if kind not in (None, "structure"):
            raise ConfigError(
                f"--kind {kind!r} with an optimade: source: OPTIMADE entries are structures; "
                "use --kind structure (--featurizers composition gives their composition features)"
            )
        if paging not in PAGING_MODES:
            raise ConfigError(f"paging={paging!r} is unknown: use one of {', '.join(PAGING_MODES)}")
        self.url = url
        self.kind = "structure"
        self.column = None  # the input is the structure itself
        self.endpoint, query = _endpoint_and_query(url)
        self.filter = query.get("filter")
        self.sort = query.get("sort")
        fields = _fields(query.get("response_fields")) + _fields(response_fields)
        self.response_fields = tuple(dict.fromkeys(f for f in fields if f not in STRUCTURE_FIELDS))
        limit = page_limit or query.get("page_limit") or DEFAULT_PAGE_LIMIT
        try:
            self.page_limit = int(limit)
        except ValueError:
            raise ConfigError(f"page_limit={limit!r}: use a positive whole number") from None
        if self.page_limit < 1:
            raise ConfigError(f"page_limit={self.page_limit!r}: use a positive whole number")
        self.paging = paging
        if policy is None:
            policy = HttpPolicy(auth_env=auth_env)
        elif auth_env is not None:
            policy = HttpPolicy(**{**policy.__dict__, "auth_env": auth_env})
        self.policy = policy
        if storage_options:
            raise ConfigError(
                "storage_options do not apply to optimade: sources (they are for s3:// files); "
                "use auth_env / --auth-env for an API key"
            )

    # -- Source contract ------------------------------------------------------------------

    def fingerprint(self) -> str:
        """The query's identity (endpoint, filter, sort, fields); no request is sent."""
        identity = [self.endpoint, self.filter, self.sort, list(self.response_fields)]
        return "optimade:" + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]

    def describe(self) -> dict:
        """Provenance: endpoint, filter, fields, paging, and the API-key variable's *name*."""
        return {
            "url": self.url,
            "kind": self.kind,
            "type": type(self).__name__,
            "endpoint": self.endpoint,
            "filter": self.filter,
            "sort": self.sort,
            "response_fields": list(self.response_fields),
            "auth_env": self.policy.auth_env,
        }

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Ask for the count and page size; offset ranges, or cursor links walked once."""
        probe, page = self._probe()
        meta = probe.get("meta") or {}
        total = meta.get("data_returned")
        if not isinstance(total, int):
            raise SourceError(
                f"{self.endpoint} did not report meta.data_returned for the query: it cannot "
                "be planned into partitions (is it an OPTIMADE structures endpoint?)"
            )
        prefix = _provider_prefix(meta)
        mode = self.paging
        if mode == "auto":
            mode = "offset" if self._offsets_work(probe, total) else "cursor"
        common = {"page": page, "prefix": prefix, "mode": mode}
        starts = list(range(0, total, rows_per_partition))
        if mode == "offset":
            locators = [common | {"offset": s} for s in starts]
        else:
            locators = [common | link for link in self._walk_links(starts, page, total)]
        partitions = [
            Partition(i, s, min(s + rows_per_partition, total), loc)
            for i, (s, loc) in enumerate(zip(starts, locators, strict=True))
        ]
        return total, partitions

    def read(self, partition: Partition) -> pd.DataFrame:
        """Fetch the partition's records (pages of the planned size) → rows."""
        where = partition.locator
        page = int(where.get("page", self.page_limit))
        entries: list[dict] = []
        if where.get("mode", "offset") == "offset":
            for offset in range(partition.start, partition.stop, page):
                limit = min(page, partition.stop - offset)
                data = _data(
                    self._get(self._params(page_offset=offset, page_limit=limit)), self.endpoint
                )
                entries += data[:limit]
                if len(data) < limit:
                    break  # the engine names the shortfall: the database changed
        else:
            url, skip = where["link"], int(where.get("skip", 0))
            while url and len(entries) < partition.rows:
                doc = get_json(_with_fields(url, self._field_list()), policy=self.policy)
                entries += _data(doc, self.endpoint)[skip:]
                skip = 0
                url = _next_link(doc)
            entries = entries[: partition.rows]
        return self._frame(entries, partition.start, where.get("prefix"))

    def preview(self, partition: Partition) -> pd.DataFrame:
        """No records: the columns, with the extras typed by the server's ``/info/structures``
        (numbers as float64, the rest text), so planning fetches no page twice. Falls back to
        reading the partition when the server does not describe a field."""
        info = self.endpoint.rsplit("/", 1)[0] + "/info/structures"
        try:
            properties = (get_json(info, policy=self.policy).get("data") or {}).get("properties")
        except SourceError:
            properties = None
        if not isinstance(properties, Mapping) or any(
            f not in properties for f in self.response_fields
        ):
            return self.read(partition)
        frame = self._frame([], partition.start, partition.locator.get("prefix"))
        for field, name in self.extra_names(partition.locator.get("prefix")).items():
            numeric = (properties[field] or {}).get("type") in ("float", "integer")
            frame[name] = pd.Series([], dtype="float64" if numeric else object)
        return frame

    def describe_partition(self, partition: Partition) -> str:
        """``records A..B`` and the pages holding them (offsets, or the starting link)."""
        where = partition.locator
        page = int(where.get("page", self.page_limit))
        if where.get("mode", "offset") == "offset":
            first, last = partition.start, partition.start + (partition.rows - 1) // page * page
            pages = f"page_offset={first}" if first == last else f"page_offset={first}..{last}"
            return f"records {partition.start}..{partition.stop - 1} ({pages}, page_limit={page})"
        return (
            f"records {partition.start}..{partition.stop - 1} (cursor pages from {where['link']})"
        )

    # -- what sync needs ---------------------------------------------------------------------

    def listing(self, page_limit: int = 1000) -> pd.DataFrame:
        """Every record's ``id`` (``PROVIDER:ID``) and ``last_modified``, from ids-only pages
        (``links.next`` followed, offsets or cursors alike): what a sync compares."""
        light = copy.copy(self)
        light.page_limit = page_limit
        first, _ = light._probe(fields="id,last_modified")
        prefix = _provider_prefix(first.get("meta") or {})
        ids, dates, doc = [], [], first
        while True:
            for entry in _data(doc, self.endpoint):
                ident = entry.get("id")
                ids.append(f"{prefix}:{ident}" if prefix else str(ident))
                dates.append(_text((entry.get("attributes") or {}).get("last_modified")))
            url = _next_link(doc) if _data(doc, self.endpoint) else None
            if not url:
                break
            doc = get_json(url, policy=self.policy)
        return pd.DataFrame({"id": pd.Series(ids, dtype=object), "last_modified": dates})

    def narrowed(self, clause: str) -> OptimadeSource:
        """This query AND ``clause`` (an OPTIMADE filter), e.g. what changed since a date."""
        narrowed = copy.copy(self)
        narrowed.filter = f"({self.filter}) AND ({clause})" if self.filter else clause
        narrowed.url = f"{OPTIMADE_PREFIX}{self.endpoint}?filter={narrowed.filter}"
        return narrowed

    # -- requests ---------------------------------------------------------------------------

    def _field_list(self) -> str:
        return ",".join((*STRUCTURE_FIELDS, *self.response_fields))

    def _params(self, **extra) -> dict:
        params = {"response_fields": self._field_list()}
        if self.filter:
            params["filter"] = self.filter
        if self.sort:
            params["sort"] = self.sort
        return params | {k: v for k, v in extra.items() if v is not None}

    def _get(self, params: dict) -> dict:
        return get_json(self.endpoint, params, policy=self.policy)

    def _probe(self, fields: str = "id") -> tuple[dict, int]:
        """First page (ids only) at the asked page size, halving it if the server refuses."""
        limit = self.page_limit
        while True:
            try:
                doc = self._get(self._params(page_limit=limit, response_fields=fields))
            except SourceError as exc:
                if "page_limit" in str(exc) and limit > 1 and "HTTP 4" in str(exc):
                    limit //= 2
                    continue
                raise
            data = _data(doc, self.endpoint)
            more = bool((doc.get("meta") or {}).get("more_data_available"))
            return doc, (len(data) if more and data else limit)

    def _offsets_work(self, probe: dict, total: int) -> bool:
        """Does ``page_offset=1`` give the query's second record? (the server honours offsets)"""
        data = _data(probe, self.endpoint)
        if total < 2 or len(data) < 2:
            return True  # one page holds everything: offsets are never needed past 0
        if "page_offset=" in str(_next_link(probe) or ""):
            return True  # the server pages by offset itself: no request needed to check
        try:
            doc = self._get(self._params(page_offset=1, page_limit=1, response_fields="id"))
        except SourceError:
            return False
        second = _data(doc, self.endpoint)
        return bool(second) and second[0].get("id") == data[1].get("id")

    def _walk_links(self, starts: list[int], page: int, total: int) -> list[dict]:
        """Cursor paging: one ids-only pass; each partition's first link and skip count."""
        params = self._params(page_limit=page, response_fields="id")
        url = f"{self.endpoint}?{urlencode(params, quote_via=quote)}"
        seen, found, wanted = 0, [], iter(starts)
        start = next(wanted, None)
        while url and start is not None:
            doc = get_json(url, policy=self.policy)
            count = len(_data(doc, self.endpoint))
            while start is not None and seen <= start < seen + count:
                found.append({"link": url, "skip": start - seen})
                start = next(wanted, None)
            seen += count
            url = _next_link(doc) if count else None
        if len(found) != len(starts):
            raise SourceError(
                f"{self.endpoint} reported {total} records but its pages ended after {seen}: "
                "the database changed while planning; rerun"
            )
        return found

    # -- records → rows ---------------------------------------------------------------------

    def _frame(self, entries: list[dict], start: int, prefix: str | None) -> pd.DataFrame:
        ids, inputs, dates = [], [], []
        extras: dict[str, list] = {field: [] for field in self.response_fields}
        for entry in entries:
            attributes = entry.get("attributes") or {}
            ident = f"{prefix}:{entry.get('id')}" if prefix else str(entry.get("id"))
            ids.append(ident)
            try:
                inputs.append(to_structure_dict(attributes))
            except _Unconvertible as exc:
                text = json.dumps({"id": entry.get("id"), **attributes}, default=str)
                inputs.append(RejectedInput(text, f"OPTIMADE entry {ident}: {exc}"))
            dates.append(_text(attributes.get("last_modified")))
            for field in self.response_fields:
                extras[field].append(attributes.get(field))
        frame = pd.DataFrame(
            {
                "row": np.arange(start, start + len(entries), dtype=np.int64),
                "id": pd.Series(ids, dtype=object),
                "input": pd.Series(inputs, dtype=object),
                "last_modified": pd.Series(dates, dtype=object),
            }
        )
        for field, name in self.extra_names(prefix).items():
            frame[name] = _column(extras[field])
        return frame

    def extra_names(self, prefix: str | None) -> dict[str, str]:
        """``{response field: store column}``: the provider's own prefix dropped unless that
        clashes (``_mp_band_gap`` → ``band_gap``)."""
        names: dict[str, str] = {}
        taken = {"row", "id", "input", "last_modified"}
        own = f"_{prefix}_" if prefix else None
        for field in self.response_fields:
            short = field[len(own) :] if own and field.startswith(own) else field
            name = short if short and short not in taken else field
            names[field] = name
            taken.add(name)
        return names


# -- URL handling ---------------------------------------------------------------------------


def _endpoint_and_query(url: str) -> tuple[str, dict[str, str]]:
    if not isinstance(url, str) or not url.startswith(OPTIMADE_PREFIX):
        raise ConfigError(
            f"{url!r} is not an optimade: URL: write optimade:HOST-OR-NAME?filter=..."
        )
    rest = url[len(OPTIMADE_PREFIX) :]
    target, _, query_text = rest.partition("?")
    if not target:
        raise ConfigError(
            f"{url!r} names no database: write optimade:mp, optimade:https://HOST/v1/structures "
            "(xenonscale databases list shows the names)"
        )
    query: dict[str, str] = {}
    for part in query_text.split("&") if query_text else []:
        key, _, value = part.partition("=")
        key = unquote(key)
        if key not in URL_PARAMETERS:
            raise ConfigError(
                f"query parameter {key!r} in {url!r} is not used by optimade: sources: "
                f"give {', '.join(URL_PARAMETERS)} (paging is planned by xenonscale)"
            )
        query[key] = unquote(value)  # not unquote_plus: '+' may be part of a filter (1e+5)
    base = resolve_base_url(target) if "://" not in target else target
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{url!r}: the database URL must be http:// or https://")
    path = parts.path.rstrip("/")
    if not path.endswith("/structures"):
        if not _has_version(path):
            path += "/v1"
        path += "/structures"
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")), query


def _has_version(path: str) -> bool:
    last = path.rsplit("/", 1)[-1]
    return len(last) > 1 and last[0] == "v" and last[1:].replace(".", "").isdigit()


def _fields(value) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    fields = [str(item).strip() for item in items if str(item).strip()]
    for field in fields:
        if not field.replace("_", "a").isalnum() or not field.islower():
            raise ConfigError(
                f"response field {field!r} is not an OPTIMADE field name: use lower-case "
                "letters, digits and '_' (provider fields start with _PREFIX_, e.g. _mp_band_gap)"
            )
    return fields


def _with_fields(url: str, fields: str) -> str:
    """A next/cursor link with its ``response_fields`` replaced (the rest kept as given)."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    pairs = [(k, v) for k, v in pairs if k != "response_fields"] + [("response_fields", fields)]
    return urlunsplit(parts._replace(query=urlencode(pairs, quote_via=quote)))


def _next_link(doc: dict) -> str | None:
    link = (doc.get("links") or {}).get("next")
    if isinstance(link, Mapping):
        link = link.get("href")
    more = (doc.get("meta") or {}).get("more_data_available")
    return link if link and more is not False else None


def _data(doc: dict, endpoint: str) -> list[dict]:
    data = doc.get("data")
    if not isinstance(data, list):
        raise SourceError(f"{endpoint} answered without a 'data' list: not an OPTIMADE response")
    return data


def _provider_prefix(meta: dict) -> str | None:
    provider = meta.get("provider") or {}
    prefix = provider.get("prefix") if isinstance(provider, Mapping) else None
    return str(prefix) if prefix else None


def _text(value) -> str | None:
    return None if value is None else str(value)


def _column(values: list) -> pd.Series:
    """A response field as a column: numbers (bools excluded) as float64, the rest as text."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.Series([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series(
        [
            None if v is None else (v if isinstance(v, str) else json.dumps(v, default=str))
            for v in values
        ],
        dtype=object,
    )


# -- entries → structures -------------------------------------------------------------------


class _Unconvertible(ValueError):
    """An entry that is no periodic structure; the message is the error row's reason."""


def to_structure_dict(attributes: Mapping) -> dict:
    """An OPTIMADE structure entry's attributes → a pymatgen ``Structure.as_dict()`` mapping.

    Fractional coordinates are ``cartesian @ inverse(lattice)`` (as pymatgen
    computes them); a species with several symbols or a concentration below 1
    becomes a partially occupied site (``vacancy`` is the missing part).
    Raises ``ValueError`` (with the reason) for entries that are no 3-D crystal.
    """
    lattice = attributes.get("lattice_vectors")
    positions = attributes.get("cartesian_site_positions")
    at_sites = attributes.get("species_at_sites")
    if not lattice or positions is None or at_sites is None:
        missing = [
            name
            for name, value in (
                ("lattice_vectors", lattice),
                ("cartesian_site_positions", positions),
                ("species_at_sites", at_sites),
            )
            if not value and value != []
        ]
        raise _Unconvertible(f"missing {', '.join(missing) or 'sites'}: no structure to build")
    if not positions:
        raise _Unconvertible("has no sites")
    dims = attributes.get("dimension_types")
    if dims is not None and list(dims) != [1, 1, 1]:
        raise _Unconvertible(
            f"is not periodic in 3-D (dimension_types {list(dims)}): the structure "
            "featurizers take 3-D crystals"
        )
    features = attributes.get("structure_features") or []
    if "assemblies" in features:
        raise _Unconvertible("uses assemblies (alternative site groups): not supported")
    try:
        matrix = np.asarray(lattice, dtype=np.float64)
        cart = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Unconvertible("lattice or positions hold nulls or non-numbers") from None
    if matrix.shape != (3, 3) or cart.ndim != 2 or cart.shape[1] != 3:
        raise _Unconvertible(
            f"lattice {matrix.shape} / positions {cart.shape} are not 3 × 3 / N × 3"
        )
    if len(at_sites) != len(cart):
        raise _Unconvertible(f"{len(at_sites)} species_at_sites for {len(cart)} positions")
    if not np.isfinite(matrix).all() or abs(np.linalg.det(matrix)) < 1e-8:
        raise _Unconvertible("lattice is degenerate or not finite")
    frac = cart @ np.linalg.inv(matrix)
    occupancies = _species(attributes.get("species"), at_sites)
    sites = [
        {"species": occupancies[name], "abc": [float(x) for x in f], "xyz": [float(x) for x in c],
         "label": name, "properties": {}}
        for name, f, c in zip(at_sites, frac, cart, strict=True)
    ]  # fmt: skip
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": matrix.tolist(), "pbc": [True, True, True]},
        "properties": {},
        "sites": sites,
    }


def _species(species, at_sites) -> dict[str, list[dict]]:
    from pymatgen.core.periodic_table import Element

    by_name: dict[str, list[dict]] = {}
    for item in species or []:
        name = item.get("name")
        symbols = item.get("chemical_symbols") or []
        concentration = item.get("concentration") or [1.0] * len(symbols)
        if len(symbols) != len(concentration):
            raise _Unconvertible(
                f"species {name!r}: {len(symbols)} symbols, {len(concentration)} concentrations"
            )
        occupancy = []
        for symbol, fraction in zip(symbols, concentration, strict=True):
            if symbol == "vacancy":
                continue
            if not Element.is_valid_symbol(symbol) or symbol == "X":
                raise _Unconvertible(f"species {name!r} has symbol {symbol!r}, not an element")
            occupancy.append({"element": symbol, "occu": float(fraction)})
        if item.get("attached"):
            raise _Unconvertible(f"species {name!r} has attached atoms: not supported")
        if not occupancy:
            raise _Unconvertible(f"species {name!r} is only vacancy")
        by_name[str(name)] = occupancy
    for name in set(at_sites) - set(by_name):
        if not isinstance(name, str) or not Element.is_valid_symbol(name):
            raise _Unconvertible(f"site species {name!r} is not described in 'species'")
        by_name[name] = [{"element": name, "occu": 1.0}]
    return by_name
