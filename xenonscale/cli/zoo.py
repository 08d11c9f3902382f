"""``xenonscale zoo``: list, show, export, import, remove, promote and build zoo models.

Examples
--------
::

    xenonscale zoo list
    xenonscale zoo show steels-yield@2 --zoo ./my-zoo
    xenonscale zoo promote steels-yield@2
    xenonscale zoo export steels-yield -o steels-yield.zip
    xenonscale zoo import steels-yield.zip --name steels-yield-copy
    xenonscale zoo remove steels-yield@1
    xenonscale zoo build --preset mp --limit 2000 -o zoo-build
    xenonscale zoo list --zoo postgresql+psycopg://zoo@db/zoo --artifacts s3://models/zoo \\
        --storage-options '{"anon": false}'
"""

from __future__ import annotations

import json

import click

from xenonscale.cli import options
from xenonscale.cli.command import Group
from xenonscale.cli.inputs import MODEL_REF, ExistingPath
from xenonscale.cli.types import Choice

__all__ = ["zoo"]

PRESETS = Choice(("mp", "oqmd", "qm9", "all"), library="xenonscale.workflows.presets:PRESETS")


@click.group(cls=Group)
def zoo() -> None:
    """The model zoo: list, show, export, import, remove, promote, build.

    A versioned registry of trained property models (safetensors + JSON
    cards; SQLite or PostgreSQL catalog). REF is NAME@VERSION, or NAME for the
    production version (else the latest).
    """


@zoo.command("list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="print JSON records")
@options.zoo_options
def list_models(name, as_json, **where) -> int:
    """Versions, stages and metrics (of model NAME only, if given)."""
    with options.open_zoo(**where) as models:
        frame = models.list(name)
    if as_json:
        click.echo(frame.to_json(orient="records", indent=1))
    elif frame.empty:
        click.echo("no models in the zoo" + (f" named {name!r}" if name else ""))
    else:
        click.echo(frame.to_string(index=False))
    return 0


@zoo.command("show")
@click.argument("ref", type=MODEL_REF)
@options.zoo_options
def show(ref, **where) -> int:
    """Print the card of REF (JSON)."""
    with options.open_zoo(**where) as models:
        click.echo(json.dumps(models.show(ref), indent=1))
    return 0


@zoo.command("export")
@click.argument("ref", type=MODEL_REF)
@options.output(required=True)
@options.zoo_options
def export(ref, output, **where) -> int:
    """Write REF to an archive: -o ending in .zip or .tar.gz."""
    with options.open_zoo(**where) as models:
        click.echo(f"{ref} → {models.export(ref, output)}")
    return 0


@zoo.command("import")
@click.argument("archive", type=ExistingPath("archive (.zip or .tar.gz)"))
@options.model_name()
@options.zoo_options
def import_(archive, name, **where) -> int:
    """Register ARCHIVE (written by `xenonscale zoo export`)."""
    with options.open_zoo(**where) as models:
        ref = models.import_(archive, name)
        click.echo(f"{archive} → {ref} (imported from {models.show(ref)['imported_from']})")
    return 0


@zoo.command("remove")
@click.argument("ref", type=MODEL_REF)
@click.option("--force", is_flag=True, help="also a production version")
@options.zoo_options
def remove(ref, force, **where) -> int:
    """Delete version REF."""
    with options.open_zoo(**where) as models:
        models.remove(ref, force=force)
    click.echo(f"removed {ref}")
    return 0


@zoo.command("promote")
@click.argument("ref", type=MODEL_REF)
@options.zoo_options
def promote(ref, **where) -> int:
    """Make REF the production version of its name."""
    with options.open_zoo(**where) as models:
        previous = models.production(ref.partition("@")[0])
        promoted = models.promote(ref)
    moved = f" ({previous} archived)" if previous and previous != promoted else ""
    click.echo(f"{promoted} is production{moved}")
    return 0


@zoo.command("build")
@click.option("--preset", type=PRESETS, required=True, help="source-model library to build")
@options.only()
@options.output(name="workdir", default="zoo-build", show_default=True)
@options.max_epochs(default=60, show_default=True)
@options.limit(name="rows")
@options.workers()
@options.no_progress()
@options.zoo_options
def build(preset, only, workdir, max_epochs, rows, workers, no_progress, **where) -> int:
    """Train the source-model library from public datasets and promote it.

    -o is the folder of the stores and the training output; --limit takes the
    first rows of each dataset.
    """
    from xenonscale.viz.training import training_figures
    from xenonscale.workflows.presets import build_preset

    with options.open_zoo(**where) as models:
        report = build_preset(
            preset,
            zoo=models,
            workdir=workdir,
            max_epochs=max_epochs,
            rows=rows,
            only=list(only) if only else None,
            workers=workers,
            progress=not no_progress,
            figures=training_figures,
        )
    for row in report:
        mae = row["val"].get("mae") if isinstance(row["val"], dict) else None
        click.echo(f"{row['model']} (production)  val MAE {mae:.4g}  store {row['store']}")
    return 0
