"""``xenonscale enumerate``: candidate compositions, counted or streamed to Parquet.

``compositions ELEMENTS --atoms N`` writes every reduced formula over the
elements with at most N atoms per formula unit
(:class:`~xenonscale.chem.enumeration.CompositionSpace`), optionally only the
charge-balanced ones, batch by batch through one Parquet writer (memory stays
flat however large the space), and prints the count and the rate. ``--count``
prints the number of candidates and writes nothing. The same space is a
featurize input: ``enumerate:compositions?elements=...&max_atoms=N``.

Examples
--------
::

    xenonscale enumerate compositions Li,Fe,Mn,P,O --atoms 20 -o cands.parquet
    xenonscale enumerate compositions Li-Fe-Mn-P-O --atoms 20 --charge-balanced --count
    xenonscale enumerate compositions Li,Fe,O --atoms 8 --max-elements 2 --limit 100 -o f.parquet
    xenonscale featurize "enumerate:compositions?elements=Li,Fe,O&max_atoms=8" -o lfo.zarr
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Group
from xenonscale.cli.types import POSITIVE_INT, Choice
from xenonscale.errors import ConfigError

__all__ = ["enumerate_group"]

OXIDATION_STATES = Choice("xenonscale.chem.neutrality:OXIDATION_STATE_SETS")
#: Raw rows of the space made per Parquet batch (a row group holds the kept ones).
BATCH_ROWS = 1 << 18


class ElementSymbols(click.ParamType):
    """``Li,Fe,O`` or ``Li-Fe-O`` → the symbols, checked (and put in formula order)."""

    name = "elements"

    def get_metavar(self, param, ctx=None) -> str | None:
        return None if isinstance(param, click.Argument) else "A,B,..."

    def convert(self, value, param, ctx) -> tuple[str, ...]:
        from xenonscale.chem.enumeration import parse_elements

        if isinstance(value, tuple):
            return value
        try:
            return parse_elements(str(value))
        except ConfigError as exc:
            self.fail(str(exc).removeprefix("elements: "), param, ctx)


@click.group("enumerate", cls=Group)
def enumerate_group() -> None:
    """Candidate materials at database scale: every composition over given elements.

    The rows are numbered in a fixed order and made from their numbers alone, so
    `xenonscale featurize enumerate:compositions?...` featurizes a space of any
    size on Dask workers, each making its own partitions.
    """


@enumerate_group.command("compositions")
@click.argument("elements", type=ElementSymbols())
@options.atoms("max_atoms", required=True)
@click.option(
    "--min-elements",
    type=POSITIVE_INT,
    default=2,
    show_default=True,
    help="fewest distinct elements in a composition",
)
@click.option(
    "--max-elements",
    type=POSITIVE_INT,
    default=None,
    help="most distinct elements in a composition (default: all given)",
)
@options.charge_balanced()
@click.option(
    "--oxidation-states",
    type=OXIDATION_STATES,
    default="icsd",
    show_default=True,
    help="pymatgen's oxidation states for --charge-balanced: icsd (else common), common, all",
)
@options.limit()
@options.output()
@click.option("--count", is_flag=True, help="print the number of candidates; write nothing")
def compositions(
    elements,
    max_atoms,
    min_elements,
    max_elements,
    charge_balanced,
    oxidation_states,
    limit,
    output,
    count,
) -> int:
    """Every reduced formula over ELEMENTS (comma- or dash-separated symbols) with at most
    --atoms atoms, written to the Parquet file -o (formula, n_atoms, n_elements, one amount
    column per element), or counted with --count.

    Formulas are reduced (Fe2O3, never Fe4O6) and written in pymatgen's element order
    (electronegativity); rows come by number of elements, element set, total atoms.
    """
    from xenonscale.chem.enumeration import CompositionSpace

    if count and output:
        raise ConfigError(f"--count writes nothing: leave out --output {output!r}")
    if not count and not output:
        raise click.UsageError("give -o PATH.parquet to write the candidates, or --count")
    path = _output_path(output) if output else None
    space = CompositionSpace(
        elements,
        max_atoms,
        min_elements=min_elements,
        max_elements=max_elements,
        charge_balanced=charge_balanced,
        oxidation_states=oxidation_states,
    )
    started = time.perf_counter()
    if count:
        total = space.count()
        click.echo(total if limit is None else min(total, limit))
        if charge_balanced:
            elapsed = time.perf_counter() - started
            click.echo(
                f"{total:,} of {space.size:,} compositions are charge-balanced (scanned in "
                f"{elapsed:.1f} s, {space.size / max(elapsed, 1e-9):,.0f} rows/s)",
                err=True,
            )
        return 0
    written, scanned = _write(space, path, limit)
    elapsed = time.perf_counter() - started
    kept = f" (charge-balanced, of {scanned:,} enumerated)" if charge_balanced else ""
    click.echo(
        f"{output}: {written:,} compositions{kept} in {elapsed:.1f} s "
        f"({written / max(elapsed, 1e-9):,.0f} rows/s)"
    )
    return 0


def _output_path(value: str) -> Path:
    from xenonscale.cli.tables import TABLE_MARKER, check_parents, local_path

    path = local_path(value)
    if path is None or path.suffix.lower() != ".parquet":
        raise ConfigError(f"--output {value!r}: give a local file name ending in .parquet")
    check_parents("--output", value, path)
    if path.is_dir():
        raise ConfigError(f"--output {value!r} is a folder: give a .parquet file name")
    if path.exists():
        import pyarrow.parquet as pq

        try:
            ours = TABLE_MARKER in (pq.read_schema(path).metadata or {})
        except Exception:  # unreadable: not ours
            ours = False
        if not ours:
            raise ConfigError(
                f"--output {value!r} exists and was not written by xenonscale: remove it or "
                "choose another name"
            )
    return path


def _write(space, path: Path, limit: int | None) -> tuple[int, int]:
    """Stream the candidates into ``path`` (atomically); ``(rows written, rows scanned)``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from xenonscale.cli.tables import TABLE_MARKER, write_atomically

    amount = pa.int16() if space.max_atoms < 2**15 else pa.int32()
    schema = pa.schema(
        [("formula", pa.string()), ("n_atoms", amount), ("n_elements", pa.int8())]
        + [(symbol, amount) for symbol in space.elements],
        metadata={TABLE_MARKER: json.dumps(space.describe()).encode()},
    )
    counts = {"written": 0, "scanned": 0}

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            for batch in space.batches(BATCH_ROWS, limit):
                columns = [
                    pa.array(batch.formulas, type=pa.string()),
                    pa.array(batch.n_atoms, type=amount),
                    pa.array(batch.n_elements.astype(np.int8), type=pa.int8()),
                ]
                columns += [pa.array(column, type=amount) for column in batch.amounts.T]
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))
                counts["written"] += len(batch)
                counts["scanned"] = int(batch.index[-1]) + 1
        if limit is None or counts["written"] < limit:
            counts["scanned"] = space.size

    write_atomically(path, write)
    return counts["written"], counts["scanned"]
