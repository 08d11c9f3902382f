"""``xenonscale demo``: the main job end to end on real data (``make demo``).

Examples
--------
::

    xenonscale demo
    xenonscale demo --limit 3000 -o /tmp/demo --max-epochs 5
"""

from __future__ import annotations

from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command

__all__ = ["demo"]


@click.command(cls=Command)
@options.limit(name="rows")
@options.output(name="output_dir", default="demo-output", show_default=True)
@options.workers(default=2, show_default=True)
@options.max_epochs(name="epochs", default=15, show_default=True)
def demo(rows, output_dir, workers, epochs) -> int:
    """Run the main job end to end on real data.

    Featurize Matbench mp_gap into a store, train and register a band-gap
    model, predict, transfer it to experimental band gaps, and design
    molecules; every file goes into the -o folder.
    """
    from xenonscale.demo import run_demo

    run_demo(output_dir=Path(output_dir), rows=rows, workers=workers, epochs=epochs)
    return 0
