"""``xenonscale index`` and ``xenonscale similar``: exact nearest rows of a feature store.

``index`` builds the store's similarity index in ``STORE/_xenonscale/index/``
(:mod:`xenonscale.store.similarity`); ``similar`` answers from it. A query is
a row of the store (``row:N``, ``id:ID``) or a raw input (a formula, a SMILES,
a CIF/POSCAR file for a structure store) featurized by the store's own
featurizer.

Examples
--------
::

    xenonscale index oqmd.zarr
    xenonscale index oqmd.zarr --metric cosine --no-standardize
    xenonscale similar oqmd.zarr Fe2O3 -k 5
    xenonscale similar oqmd.zarr row:42 --json
    xenonscale similar structures.zarr POSCAR
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.types import POSITIVE_INT, Choice

__all__ = ["index", "similar"]

#: ``--metric`` choices (the library's ``store.similarity.METRICS``).
METRICS = Choice(("l2", "cosine"), library="xenonscale.store.similarity:METRICS")


@click.command(cls=Command)
@click.argument("store")
@click.option(
    "--metric",
    type=METRICS,
    default="l2",
    show_default=True,
    help="l2 (Euclidean distance) or cosine (distance 1 - cos)",
)
@click.option(
    "--no-standardize",
    "standardize",
    is_flag=True,
    flag_value=False,
    default=True,
    help="compare raw store values (default: z-scores of every feature)",
)
@options.storage_options()
@click.option("--json", "as_json", is_flag=True, help="print JSON records")
@options.no_progress()
def index(store, metric, standardize, storage_options, as_json, no_progress) -> int:
    """Build the exact similarity index of STORE (kept in STORE/_xenonscale/index/).

    Every featurized row is indexed (failed and withdrawn rows are not); missing
    values become the column mean. Rebuild after the store changes (featurize
    --overwrite, sync): `xenonscale similar` refuses a stale index.
    """
    from xenonscale.store.similarity import build_index

    info = build_index(
        store,
        metric=metric,
        standardize=standardize,
        storage_options=storage_options,
        progress=not no_progress,
    )
    if as_json:
        click.echo(json.dumps(info.__dict__))
        return 0
    scale = "standardized" if info.standardize else "raw values"
    skipped = f" ({info.skipped:,} failed or withdrawn rows left out)" if info.skipped else ""
    click.echo(
        f"{store}: {info.rows:,} rows × {info.features:,} features indexed{skipped}, "
        f"{info.metric}, {scale}, in {info.seconds:.1f} s; {info.bytes / 2**20:.1f} MiB "
        f"on disk → {info.path}"
    )
    return 0


@click.command(cls=Command)
@click.argument("store")
@click.argument("query")
@click.option(
    "-k",
    "k",
    type=POSITIVE_INT,
    default=10,
    show_default=True,
    help="how many nearest rows to show",
)
@click.option(
    "--include-self",
    "include_self",
    is_flag=True,
    help="a row:/id: query may list its own row (default: left out)",
)
@options.storage_options()
@click.option("--json", "as_json", is_flag=True, help="print JSON records")
def similar(store, query, k, include_self, storage_options, as_json) -> int:
    """The K rows of STORE nearest to QUERY, nearest first.

    QUERY is row:N (a row number of the store), id:ID (the row with that id) or
    a raw input featurized by the store's own featurizer: a formula, a SMILES,
    or for a structure store a CIF/POSCAR file. Needs `xenonscale index STORE`.
    """
    import pandas as pd

    from xenonscale.errors import ConfigError
    from xenonscale.store.similarity import open_index

    found = open_index(store, storage_options=storage_options)
    if query.startswith(("row:", "id:")):
        kind, _, value = query.partition(":")
        if kind == "row":
            try:
                row = int(value)
            except ValueError:
                raise ConfigError(
                    f"QUERY {query!r}: row: takes a row number, e.g. row:42"
                ) from None
        else:
            row = found.row_of_id(value)
        distances, rows = found.search_rows([row], k, exclude_self=not include_self)
    else:
        text = query
        path = Path(query)
        if found.kind == "structure" and path.is_file():
            text = path.read_text()
        batch = found.featurize([text])
        if not batch.ok[0]:
            raise ConfigError(
                f"QUERY {query!r} cannot be featurized by the store's {found.kind} featurizer "
                f"({batch.errors[0].reason}): give a valid input, row:N or id:ID"
            )
        distances, rows = found.search(batch.values, k)
    table = found.records(rows[0])
    table.insert(0, "rank", range(1, len(table) + 1))
    table["distance"] = distances[0]
    if as_json:
        click.echo(table.to_json(orient="records"))
        return 0
    table["input"] = table["input"].map(_short)
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        click.echo(f"{len(table)} rows of {store} nearest to {query!r} ({found.metric}):")
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _short(text: str, width: int = 60) -> str:
    """One line of at most ``width`` characters (a CIF or JSON structure is long)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."
