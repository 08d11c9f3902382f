"""``xenonscale sync``: bring a feature store up to date with its source.

Examples
--------
::

    xenonscale sync "optimade:mp?filter=elements HAS \\"Li\\"" mp-li.zarr --auth-env MP_API_KEY
    xenonscale sync oqmd-2027-01.csv.gz oqmd.zarr --workers 2
"""

from __future__ import annotations

import json

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.types import Choice

__all__ = ["sync"]

MODES = Choice(["auto", "last_modified", "content"])


@click.command(cls=Command)
@options.input_argument("source")
@click.argument("store")
@click.option(
    "--mode",
    type=MODES,
    default="auto",
    show_default=True,
    help="how changes are found: last_modified (OPTIMADE dates), content (hash every "
    "record), auto (dates when the store keeps them)",
)
@options.column()
@options.response_fields()
@options.auth_env()
@options.workers()
@options.scheduler()
@options.storage_options()
@click.option("--json", "as_json", is_flag=True, help="print JSON records")
@options.no_progress()
def sync(
    source,
    store,
    mode,
    column,
    response_fields,
    auth_env,
    workers,
    scheduler,
    storage_options,
    as_json,
    no_progress,
) -> int:
    """Bring STORE up to date with SOURCE: fetch and featurize only what changed.

    SOURCE is the store's source as it is now: the same optimade: query, or a new
    dump of the same data (a file of the same format and columns). New records
    are appended, changed ones re-featurized in place, withdrawn ones kept and
    flagged (never dropped); the store's fingerprint changes, so `xenonscale
    retrain` retrains the models trained on it. A killed sync resumes when rerun.
    """
    from xenonscale.cli.featurize import web_options
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import sync_store

    url, column = source.resolve(column)
    source_options = web_options(url, response_fields=response_fields, auth_env=auth_env)
    if column:
        source_options["column"] = column
    client = get_client(scheduler, workers=workers, quiet=no_progress)
    try:
        summary = sync_store(
            url,
            store,
            client=client,
            progress=not no_progress,
            storage_options=storage_options,
            source_options=source_options,
            mode=mode,
        )
    finally:
        close_client(client)
    if as_json:
        click.echo(json.dumps(summary.__dict__ | {"changed": summary.changed}))
        return 0
    click.echo(
        f"{summary.store}: {summary.new:,} new, {summary.modified:,} modified, "
        f"{summary.withdrawn:,} withdrawn, {summary.restored:,} back ({summary.mode}; "
        f"{summary.fetched:,} records featurized) → {summary.rows:,} rows = "
        f"{summary.featurized:,} featurized + {summary.errors:,} errors in {summary.seconds:.1f} s"
        + ("" if summary.changed else " (already up to date)")
    )
    return 0
