"""``xenonscale datasets`` and ``xenonscale elements``: what ships with xenonscale.

Examples
--------
::

    xenonscale datasets list
    xenonscale datasets info matbench_expt_gap
    xenonscale datasets fetch qm9
    xenonscale elements list
    xenonscale elements show xenonpy58
"""

from __future__ import annotations

import dataclasses

import click

from xenonscale.cli.command import Group
from xenonscale.cli.inputs import DatasetName
from xenonscale.cli.types import Choice

__all__ = ["datasets", "elements"]


@click.group(cls=Group)
def datasets() -> None:
    """List, describe or fetch the public datasets (use them as dataset:NAME inputs)."""


@datasets.command("list")
def list_datasets() -> int:
    """Names, kinds, rows and files."""
    from xenonscale import datasets as registry

    for name in registry.names():
        info = registry.info(name)
        rows = f"{info.rows:,}" if info.rows else "?"
        click.echo(f"{name:34s} {info.kind:12s} {rows:>10s}  {info.path}")
    return 0


@datasets.command("info")
@click.argument("name", type=DatasetName())
def dataset_info(name: str) -> int:
    """Everything the registry knows about dataset NAME."""
    from xenonscale import datasets as registry

    for key, value in dataclasses.asdict(registry.info(name)).items():
        click.echo(f"{key:15s} {value}")
    return 0


@datasets.command("fetch")
@click.argument("name", type=DatasetName())
def fetch_dataset(name: str) -> int:
    """Find or download dataset NAME (mirror, cache, URL) and print its path."""
    from xenonscale import datasets as registry

    click.echo(str(registry.fetch(name)))
    return 0


@click.group(cls=Group)
def elements() -> None:
    """Element property tables (the presets of --elements)."""


@elements.command("list")
def list_elements() -> int:
    """The presets."""
    from xenonscale.elements import PRESETS

    for name, text in PRESETS.items():
        click.echo(f"{name:12s} {text}")
    return 0


@elements.command("show")
@click.argument("name", type=Choice("xenonscale.elements.presets:PRESETS", case_sensitive=False))
def show_elements(name: str) -> int:
    """Properties, units, sources and imputed counts of preset NAME."""
    from xenonscale.elements import load_table

    table = load_table(name)
    click.echo(repr(table))
    if table.description:
        click.echo(table.description)
    imputed = table.imputed.sum(axis=0)
    click.echo(f"{'property':32s} {'unit':14s} {'imputed':>7s}  source")
    for i, prop in enumerate(table.properties):
        click.echo(
            f"{prop:32s} {table.units[prop]:14s} {int(imputed[i]):7d}  {table.sources[prop]}"
        )
    return 0
