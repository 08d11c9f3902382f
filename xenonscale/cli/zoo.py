"""``xenonscale zoo``: list, show, export, import, remove and promote zoo models.

Examples
--------
::

    xenonscale zoo list
    xenonscale zoo show steels-yield@2 --zoo ./my-zoo
    xenonscale zoo promote steels-yield@2
    xenonscale zoo export steels-yield steels-yield.zip
    xenonscale zoo import steels-yield.zip --name steels-yield-copy
    xenonscale zoo remove steels-yield@1
    xenonscale zoo list --zoo postgresql+psycopg://zoo@db/zoo --artifacts s3://models/zoo \\
        --storage-options '{"anon": false}'

``add_parser(sub)`` adds the command and sets ``handler=run`` on its namespace.
"""

from __future__ import annotations

import argparse
import json

from xenonscale.cli.args import model_ref, parse_storage_options, workers
from xenonscale.errors import ConfigError

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``zoo`` command (and its actions) to an argparse ``subparsers`` object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--zoo",
        default=None,
        metavar="LOCATION",
        help="zoo folder or catalog URL (default: $XENONSCALE_ZOO, else ~/.xenonscale/zoo)",
    )
    common.add_argument(
        "--artifacts", default=None, metavar="URL", help="artifacts folder or s3:// URL"
    )
    common.add_argument(
        "--storage-options",
        default=None,
        metavar="JSON",
        help="fsspec options for the artifacts as JSON, e.g. '{\"anon\": true}'",
    )
    zoo = subparsers.add_parser(
        "zoo",
        help="the model zoo: list, show, export, import, remove, promote",
        description="A versioned registry of trained property models (safetensors + JSON "
        "cards; SQLite or PostgreSQL catalog). REF is NAME@VERSION, or NAME for the "
        "production version (else the latest).",
    )
    actions = zoo.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="versions, stages, metrics")
    listing.add_argument("name", nargs="?", default=None, help="only this model name")
    listing.add_argument("--json", action="store_true", help="print JSON records")
    show = actions.add_parser("show", parents=[common], help="print a model card (JSON)")
    show.add_argument("ref", type=model_ref, help="NAME@VERSION or NAME")
    export = actions.add_parser("export", parents=[common], help="write a .zip or .tar.gz")
    export.add_argument("ref", type=model_ref, help="NAME@VERSION or NAME")
    export.add_argument("path", help="archive path ending in .zip or .tar.gz")
    imports = actions.add_parser("import", parents=[common], help="register an archive")
    imports.add_argument("path", help="a .zip or .tar.gz written by `xenonscale zoo export`")
    imports.add_argument("--name", default=None, help="register under this name")
    remove = actions.add_parser("remove", parents=[common], help="delete a version")
    remove.add_argument("ref", type=model_ref, help="NAME@VERSION")
    remove.add_argument("--force", action="store_true", help="also a production version")
    promote = actions.add_parser("promote", parents=[common], help="make a version production")
    promote.add_argument("ref", type=model_ref, help="NAME@VERSION")
    build = actions.add_parser(
        "build", parents=[common], help="train the source-model library from public datasets"
    )
    build.add_argument("--preset", required=True, help="mp | oqmd | qm9 | all")
    build.add_argument("--only", default=None, help="comma list of model names")
    build.add_argument("--workdir", default="zoo-build", help="stores and training output")
    build.add_argument("--max-epochs", type=int, default=60)
    build.add_argument("--rows", type=int, default=None, help="first rows of each dataset")
    build.add_argument("--workers", type=workers, default=None, help="embedded cluster workers")
    build.add_argument("--no-progress", action="store_true")
    zoo.set_defaults(handler=run)
    return zoo


def run(args: argparse.Namespace) -> int:
    """Handle ``xenonscale zoo ACTION``; returns the exit status."""
    from xenonscale.zoo import Zoo

    options = _storage_options(args.storage_options)
    with Zoo(args.zoo, artifacts=args.artifacts, storage_options=options) as zoo:
        if args.action == "list":
            frame = zoo.list(args.name)
            if args.json:
                print(frame.to_json(orient="records", indent=1))
            elif frame.empty:
                print("no models in the zoo" + (f" named {args.name!r}" if args.name else ""))
            else:
                print(frame.to_string(index=False))
        elif args.action == "show":
            print(json.dumps(zoo.show(args.ref), indent=1))
        elif args.action == "export":
            print(f"{args.ref} → {zoo.export(args.ref, args.path)}")
        elif args.action == "import":
            ref = zoo.import_(args.path, args.name)
            print(f"{args.path} → {ref} (imported from {zoo.show(ref)['imported_from']})")
        elif args.action == "remove":
            zoo.remove(args.ref, force=args.force)
            print(f"removed {args.ref}")
        elif args.action == "build":
            from xenonscale.zoo.presets import build_preset

            only = [n.strip() for n in args.only.split(",")] if args.only else None
            report = build_preset(
                args.preset, zoo=zoo, workdir=args.workdir, max_epochs=args.max_epochs,
                rows=args.rows, only=only, workers=args.workers, progress=not args.no_progress,
            )  # fmt: skip
            for row in report:
                mae = row["val"].get("mae") if isinstance(row["val"], dict) else None
                print(f"{row['model']} (production)  val MAE {mae:.4g}  store {row['store']}")
        elif args.action == "promote":
            previous = zoo.production(args.ref.partition("@")[0])
            ref = zoo.promote(args.ref)
            moved = f" ({previous} archived)" if previous and previous != ref else ""
            print(f"{ref} is production{moved}")
        else:  # pragma: no cover - argparse restricts the choices
            raise ConfigError(f"unknown zoo action {args.action!r}")
    return 0


def _storage_options(text: str | None) -> dict | None:
    return parse_storage_options(text)
