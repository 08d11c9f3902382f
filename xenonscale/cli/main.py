"""The ``xenonscale`` command: a thin layer over the library, on Click.

:data:`cli` is the group of every command; its ``main`` reports every failure
in one line (:mod:`xenonscale.cli.errors`), whether it runs as the console
script, through :func:`main` or under :class:`click.testing.CliRunner`.

Examples
--------
::

    xenonscale datasets list
    xenonscale databases show mp
    xenonscale elements show xenonpy58
    xenonscale featurize dataset:matbench_expt_gap -o gap.parquet --elements xenonpy58
    xenonscale sync oqmd-2027-01.csv.gz oqmd.zarr
    xenonscale demo
    eval "$(xenonscale completion bash)"
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from xenonscale import __version__
from xenonscale.cli.benchmark import benchmark
from xenonscale.cli.catalog import datasets, elements
from xenonscale.cli.command import Group
from xenonscale.cli.completion import COMPLETE_VAR, completion
from xenonscale.cli.databases import databases
from xenonscale.cli.demo import demo
from xenonscale.cli.design import design
from xenonscale.cli.enumerate import enumerate_group
from xenonscale.cli.errors import one_line, os_error_line, usage_line
from xenonscale.cli.featurize import featurize
from xenonscale.cli.ngram import ngram
from xenonscale.cli.predict import predict
from xenonscale.cli.screen import screen
from xenonscale.cli.similarity import index, similar
from xenonscale.cli.sync import sync
from xenonscale.cli.train import retrain, train, tune
from xenonscale.cli.transfer import transfer
from xenonscale.cli.zoo import zoo

__all__ = ["PROG", "cli", "main"]

#: The program name in usage lines and error messages.
PROG = "xenonscale"


class Root(Group):
    """The top group: its ``main`` turns every failure into one line and an exit status.

    0: done; 2: a bad argument, input or setting (one line on stderr, no
    traceback); 130: interrupted. A command may return 1 for a partial failure
    (``design``: a chain failed). In standalone mode (the console script,
    ``CliRunner``) it exits with the status, else it returns it.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        status = self._run(args, prog_name or PROG, complete_var or COMPLETE_VAR, **extra)
        if standalone_mode:
            sys.exit(status)
        return status

    def _run(self, args, prog_name: str, complete_var: str, **extra) -> int:
        try:
            status = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click.exceptions.NoArgsIsHelpError as exc:  # `xenonscale zoo`: the help
            exc.show()
            return 2
        except click.UsageError as exc:
            click.echo(usage_line(exc), err=True)
            return 2
        except click.ClickException as exc:  # library errors, in the command's flag names
            click.echo(f"{PROG}: error: {one_line(exc.format_message())}", err=True)
            return exc.exit_code
        except OSError as exc:  # a path that cannot be read or written: the system's words
            click.echo(os_error_line(exc), err=True)
            return 2
        except (click.Abort, KeyboardInterrupt):  # Ctrl-C (Click makes it an Abort)
            click.echo(f"{PROG}: interrupted", err=True)
            return 130
        return status if isinstance(status, int) else 0


@click.group(
    PROG,
    cls=Root,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
def cli() -> None:
    """Materials informatics at database scale: descriptors, models, transfer, design."""


for _command in (featurize, sync, enumerate_group, datasets, databases, elements, train, tune,
                 retrain, zoo, predict, screen, index, similar, transfer, ngram, design, demo,
                 benchmark, completion):  # fmt: skip
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xenonscale`` console script; returns the exit status (see
    :class:`Root`). ``argv`` defaults to ``sys.argv[1:]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return cli.main(args=args, prog_name=PROG, standalone_mode=False)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
