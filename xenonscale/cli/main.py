"""The ``xenonscale`` command: a thin layer over the library.

Examples
--------
::

    xenonscale datasets list
    xenonscale elements show xenonpy58
    xenonscale featurize dataset:matbench_expt_gap -o gap.parquet --elements xenonpy58
    xenonscale demo
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xenonscale import __version__
from xenonscale.cli.args import add_limit_arguments, positive_int, workers
from xenonscale.errors import XenonscaleError

__all__ = ["Parser", "main"]

#: Longest error line printed (a message quoting a huge value is cut).
_MAX_MESSAGE = 2000


def one_line(text: object) -> str:
    """``text`` on one line (newlines become spaces), at most ``_MAX_MESSAGE`` characters."""
    line = " ".join(str(text).splitlines()).strip()
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (no usage block), exit status 2.

    Subparsers are of this class too (argparse makes them with ``type(parent)``).
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="xenonscale",
        description="Materials informatics at database scale (descriptors, datasets, tables).",
    )
    parser.add_argument("--version", action="version", version=f"xenonscale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    feat = sub.add_parser(
        "featurize",
        help="featurize a source into a Zarr feature store (or a .parquet/.csv table)",
        description="INPUT (file, glob, s3:// URL or dataset:NAME) → Dask → STORE. "
        "A STORE ending in .parquet or .csv is written in-process as one table.",
    )
    feat.add_argument("input", help="CSV/TSV/Parquet/JSONL/JSON/CIF dir/SMI/SDF, or dataset:NAME")
    feat.add_argument("-o", "--output", required=True, help="store URL (dir, s3://...) or table")
    feat.add_argument("--kind", default="composition", help="composition|structure|molecule")
    feat.add_argument("--column", default=None, help="input column (default: inferred)")
    feat.add_argument("--featurizers", default="classic", help="comma list of registered names")
    feat.add_argument("--elements", default=None, help="element table preset")
    feat.add_argument("--workers", type=workers, default=None, help="embedded cluster workers")
    feat.add_argument("--scheduler", default=None, help="Dask scheduler address (tcp://...)")
    feat.add_argument("--chunk-rows", type=positive_int, default=10_000, help="Zarr chunk rows")
    feat.add_argument(
        "--partition-rows",
        type=positive_int,
        default=None,
        help="rows per task (default: by width)",
    )
    feat.add_argument(
        "--compression", default="lz4", help="store codec: lz4 (fast) | zstd (smaller) | none"
    )
    feat.add_argument("--on-error", default="record", help="record (error rows) | raise")
    feat.add_argument(
        "--overwrite", action="store_true", help="replace a different store (or foreign table)"
    )
    feat.add_argument(
        "--storage-options", default=None, help="fsspec options as JSON, e.g. '{\"anon\": true}'"
    )
    feat.add_argument(
        "--batch-rows", type=positive_int, default=8192, help="rows per batch (tables)"
    )
    feat.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_limit_arguments(feat)

    data = sub.add_parser("datasets", help="list, describe or fetch public datasets")
    data_sub = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    data_sub.add_parser("list", help="names, kinds, rows and sources")
    for action in ("info", "fetch"):
        p = data_sub.add_parser(action, help=f"{action} one dataset")
        p.add_argument("name")

    elements = sub.add_parser("elements", help="element property tables")
    el_sub = elements.add_subparsers(dest="action", required=True, metavar="ACTION")
    el_sub.add_parser("list", help="presets")
    show = el_sub.add_parser("show", help="properties, units, sources and imputed counts")
    show.add_argument("name")

    demo = sub.add_parser("demo", help="run the main job end to end on real data")
    demo.add_argument(
        "--rows", type=positive_int, default=None, help="limit the number of formulas"
    )
    demo.add_argument("--output", default="demo-output", help="output folder")
    demo.add_argument("--workers", type=workers, default=2, help="embedded cluster workers")
    demo.add_argument(
        "--epochs", type=positive_int, default=15, help="training epochs of the model"
    )

    # Commands in their own modules add their parsers and set ``handler``.
    from xenonscale.cli import design, ngram, train, transfer, zoo

    for module in (train, zoo, transfer, ngram, design):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xenonscale`` console script; returns the exit status.

    0: done; 2: a bad argument, input or setting (one line on stderr, no
    traceback); 130: interrupted. A command may return 1 for a partial failure.
    """
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse error (already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    from xenonscale.cli import commands

    handler = (
        getattr(args, "handler", None)
        or {
            "featurize": commands.featurize,
            "datasets": commands.datasets,
            "elements": commands.elements,
            "demo": commands.demo,
        }[args.command]
    )
    try:
        return handler(args) or 0
    except XenonscaleError as exc:
        print(f"xenonscale: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: the system's words
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or str(exc) or type(exc).__name__
        print(
            f"xenonscale: error:{where} {one_line(reason)}: check the path and its permissions",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("xenonscale: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
