"""``xenonscale databases``: the OPTIMADE databases that ``optimade:`` sources name.

``list`` prints every OPTIMADE provider (prefix, name, default base URL,
number of known databases); ``show PREFIX`` one provider's details and each
database's base URL with the command line that reads it. The table is the
one shipped with xenonscale (:mod:`xenonscale.sources.providers`); ``--live``
asks each provider's index meta-database (``/v1/links``) instead, and falls
back to the shipped table with a one-line note on stderr when it cannot be
reached within a few seconds.

Not ``xenonscale datasets``: that is the registry of public dataset *files*
(``dataset:NAME`` inputs); this lists web *databases* (``optimade:NAME``).

Examples
--------
::

    xenonscale databases list
    xenonscale databases show mp
    xenonscale databases show alexandria --live --json
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import click

from xenonscale.cli.command import Group

__all__ = ["LIVE_TIMEOUT", "databases"]

#: Seconds one index meta-database may take to answer ``--live``.
LIVE_TIMEOUT = 5.0
#: An example filter for the usage lines.
EXAMPLE_FILTER = 'elements HAS "Li"'

live_option = click.option(
    "--live",
    is_flag=True,
    help="ask the providers' OPTIMADE index meta-databases (network; falls back to the "
    "shipped table with a note on stderr)",
)
json_option = click.option("--json", "as_json", is_flag=True, help="print JSON records")


def _prefixes(ctx, param, incomplete: str):
    from xenonscale.sources import providers

    return [p.prefix for p in providers.providers() if p.prefix.startswith(incomplete)]


@click.group(cls=Group)
def databases() -> None:
    """OPTIMADE databases for optimade: sources (Materials Project, OQMD, Alexandria, ...).

    optimade:PREFIX reads a provider's default database, optimade:PREFIX.NAME
    one of its databases (e.g. optimade:alexandria.pbesol), and
    optimade:https://HOST/... any OPTIMADE server. Not the same as
    `xenonscale datasets`, the registry of public dataset files (dataset:NAME).
    """


def _live(prefixes: list[str]) -> tuple[dict, dict]:
    """``({prefix: databases read live}, {prefix: why not})``, the indexes asked in parallel."""
    from xenonscale.errors import SourceError
    from xenonscale.sources import providers

    def ask(prefix: str):
        try:
            return prefix, providers.live_databases(prefix, timeout=LIVE_TIMEOUT), None
        except SourceError as exc:
            return prefix, None, str(exc)

    found, failed = {}, {}
    if not prefixes:
        return found, failed
    with ThreadPoolExecutor(max_workers=min(8, len(prefixes))) as pool:
        for prefix, dbs, why in pool.map(ask, prefixes):
            if why is None:
                found[prefix] = dbs
            else:
                failed[prefix] = why
    return found, failed


def _note(failed: dict, asked: int) -> None:
    if not failed:
        return
    first = next(iter(failed.values()))
    if asked == 1:
        text = f"{first}; showing the shipped table"
    else:
        names = ", ".join(sorted(failed))
        text = (
            f"{len(failed)} of {asked} provider indexes could not be read ({names}), "
            f"showing the shipped table for them; first: {first}"
        )
    click.echo(f"xenonscale databases: note: {text}", err=True)


def _record(provider, dbs, live: bool) -> dict:
    import dataclasses

    return {
        "prefix": provider.prefix,
        "name": provider.name,
        "description": provider.description,
        "homepage": provider.homepage,
        "index_url": provider.index_url,
        "live": live,
        "databases": [dataclasses.asdict(db) | {"use": _source_name(provider, db)} for db in dbs],
    }


def _source_name(provider, db) -> str:
    """What follows ``optimade:`` to read ``db``: PREFIX, PREFIX.NAME or the URL."""
    from xenonscale.errors import ConfigError
    from xenonscale.sources import providers

    for name in (provider.prefix, f"{provider.prefix}{providers.SEPARATOR}{db.name}"):
        try:
            if providers.resolve_base_url(name).rstrip("/") == db.base_url.rstrip("/"):
                return name
        except ConfigError:  # a name that does not resolve is not offered
            continue
    return db.base_url


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@databases.command("list")
@live_option
@json_option
def list_databases(live: bool, as_json: bool) -> int:
    """Every OPTIMADE provider: prefix, name, default base URL, number of databases."""
    from xenonscale.sources import providers

    everyone = providers.providers()
    found: dict = {}
    if live:
        asked = [p.prefix for p in everyone if p.index_url]
        found, failed = _live(asked)
        _note(failed, len(asked))
    rows = []
    for p in everyone:
        dbs = found.get(p.prefix, p.databases)
        rows.append((p, dbs, p.prefix in found))
    if as_json:
        click.echo(json.dumps([_record(p, dbs, was_live) for p, dbs, was_live in rows], indent=1))
        return 0
    urls = []
    for _, dbs, _ in rows:
        default = next((db for db in dbs if db.default), dbs[0] if len(dbs) == 1 else None)
        urls.append(default.base_url if default else "-")
    width = max(len("default base URL"), *(len(u) for u in urls))
    click.echo(f"{'prefix':14s} {'name':40s} {'default base URL':{width}s} {'databases':>9s}")
    for (p, dbs, _), url in zip(rows, urls, strict=True):
        click.echo(f"{p.prefix:14s} {_cut(p.name, 40):40s} {url:{width}s} {len(dbs):9d}")
    origin = "live from the providers' indexes where marked" if found else "shipped table"
    click.echo(
        f"\nproviders: {providers.provider_list_origin()}; databases: {origin}. "
        "Details: xenonscale databases show PREFIX"
    )
    return 0


@databases.command("show")
@click.argument("prefix", shell_complete=_prefixes)
@live_option
@json_option
def show_database(prefix: str, live: bool, as_json: bool) -> int:
    """One provider PREFIX: its details, databases, base URLs and how to read them."""
    from xenonscale.sources import providers

    provider = providers.provider(prefix)
    dbs, was_live = provider.databases, False
    if live:
        found, failed = _live([provider.prefix])
        _note(failed, 1)
        if provider.prefix in found:
            dbs, was_live = found[provider.prefix], True
    if as_json:
        click.echo(json.dumps(_record(provider, dbs, was_live), indent=1))
        return 0
    click.echo(f"{provider.prefix}  {provider.name}")
    for label, value in (
        ("description", provider.description),
        ("homepage", provider.homepage),
        ("index", provider.index_url and f"{provider.index_url} (OPTIMADE index meta-database)"),
    ):
        if value:
            click.echo(f"  {label:12s} {value}")
    where = "live from its index" if was_live else "shipped table"
    if not dbs:
        click.echo(f"  no database known ({where})")
        if not was_live and provider.index_url:
            click.echo(f"  ask its index: xenonscale databases show {provider.prefix} --live")
        click.echo("  any OPTIMADE server: optimade:https://HOST/v1/structures?filter=...")
        return 0
    click.echo(f"  databases ({where}):")
    for db in dbs:
        name = db.name + (" (default)" if db.default else "")
        click.echo(f"    {name:18s} {db.base_url}")
        if db.description:
            click.echo(f"    {'':18s} {_cut(db.description, 100)}")
        if db.checked:
            click.echo(f"    {'':18s} checked {db.checked}")
        source = f"optimade:{_source_name(provider, db)}?filter={EXAMPLE_FILTER}"
        quoted = source.replace("\\", "\\\\").replace('"', '\\"')
        click.echo(f'    {"":18s} xenonscale featurize "{quoted}" -o li.zarr --kind structure')
    return 0
