"""Argument types and checks shared by the ``xenonscale`` subcommands.

Every check here runs while the command line is parsed or before any Dask
cluster starts, and fails with one line that names the value and the fix:
argparse types raise :class:`argparse.ArgumentTypeError` (the parser prints
``xenonscale: error: argument --flag: ...`` and exits 2), the rest raise
:class:`~xenonscale.errors.ConfigError` (``main`` prints it and exits 2).

Examples
--------
>>> positive_int("10000")
10000
>>> max_workers() >= 4
True
>>> parse_storage_options('{"anon": true}')
{'anon': True}
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from dataclasses import fields, replace

from xenonscale.errors import ConfigError

__all__ = [
    "LIMIT_FLAGS",
    "MAX_WORKERS",
    "add_limit_arguments",
    "check_model_ref",
    "max_workers",
    "model_ref",
    "parse_storage_options",
    "positive_int",
    "read_frame",
    "record_limits_from",
    "workers",
    "workers_or_zero",
]

#: Upper bound of ``--workers`` whatever the machine (each worker is a process).
MAX_WORKERS = 512
#: Largest version number a catalog can hold (SQLite/PostgreSQL BIGINT).
_MAX_VERSION = 2**63 - 1


def _int(text: str, what: str, example: str) -> int:
    try:
        return int(text.strip())
    except (ValueError, AttributeError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number: give {what}, e.g. {example}"
        ) from None


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (rows, batch sizes)."""
    value = _int(text, "a positive whole number", "10000")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive: give 1 or more, e.g. 10000")
    return value


def max_workers() -> int:
    """The most worker processes an embedded cluster may start: 4 per core, at most 512."""
    return max(1, min(MAX_WORKERS, 4 * (os.cpu_count() or 1)))


def _workers(text: str, lowest: int) -> int:
    value = _int(text, "a number of worker processes", "2")
    if value < lowest:
        hint = "0 (this process) or more" if lowest == 0 else "1 or more"
        raise argparse.ArgumentTypeError(f"{value} workers: use {hint}, e.g. 2")
    cap = max_workers()
    if value > cap:
        raise argparse.ArgumentTypeError(
            f"{value} workers is more than this machine can run ({os.cpu_count() or 1} cores): "
            f"use at most {cap}, or --scheduler to use a bigger Dask cluster"
        )
    return value


def workers(text: str) -> int:
    """argparse type of ``--workers``: 1 .. :func:`max_workers` embedded worker processes."""
    return _workers(text, 1)


def workers_or_zero(text: str) -> int:
    """``--workers`` where 0 means "in this process" (``ngram train``)."""
    return _workers(text, 0)


def parse_storage_options(text: str | None, flag: str = "--storage-options") -> dict | None:
    """``--storage-options`` JSON → a dict (``None`` when not given); ConfigError otherwise."""
    if text is None or not str(text).strip():
        return None
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{flag} {text!r} is not valid JSON ({exc}): give a JSON object, "
            "e.g. '{\"anon\": true}'"
        ) from None
    if not isinstance(options, dict):
        raise ConfigError(
            f"{flag} {text!r} is a JSON {type(options).__name__}, not an object: "
            "give a JSON object, e.g. '{\"anon\": true}'"
        )
    return options


def check_model_ref(text: str) -> str:
    """``NAME`` or ``NAME@VERSION`` checked as the zoo parses it, plus a version bound.

    The version must be ASCII digits no larger than a catalog can hold.
    Raises :class:`ConfigError` naming the reference.
    """
    from xenonscale.zoo.refs import check_name, parse_ref

    name, sep, version = str(text).partition("@")
    if sep:
        check_name(name)
        number = int(version) if version.isascii() and version.isdigit() else 0
        if number < 1:
            raise ConfigError(
                f"model reference {text!r}: the version must be a positive integer, e.g. '{name}@1'"
            )
        if number > _MAX_VERSION:
            raise ConfigError(
                f"model reference {text!r}: version {number} is too large (a catalog holds "
                f"at most {_MAX_VERSION}): give a registered version, e.g. '{name}@1' "
                f"(`xenonscale zoo list {name}` lists them)"
            )
    parse_ref(text)
    return text


def model_ref(text: str) -> str:
    """argparse type of a zoo ``REF`` (see :func:`check_model_ref`)."""
    try:
        return check_model_ref(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def read_frame(path: str, flag: str):
    """A whole CSV (or ``.parquet``) file as a DataFrame; unreadable files → ConfigError.

    For the small tables of ``transfer`` and ``design`` (featurize streams its
    input through :mod:`xenonscale.sources` instead).
    """
    import pandas as pd

    if not os.path.isfile(path):
        raise ConfigError(f"{flag} {path!r} does not exist or is not a file: give a CSV file")
    try:
        if path.lower().endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"{flag} {path!r} cannot be read as a table ({type(exc).__name__}: {reason}): "
            "give a UTF-8 CSV with a header row"
        ) from None
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:300]
        raise ConfigError(f"{flag} {path!r} cannot be read ({reason}): check the file") from None


# -- per-record limits ----------------------------------------------------------------------


def _limit_fields() -> dict[str, type]:
    from xenonscale.limits import RecordLimits

    return {item.name: type(getattr(RecordLimits(), item.name)) for item in fields(RecordLimits)}


#: ``--flag`` → RecordLimits field.
LIMIT_FLAGS = {
    "--max-input-chars": "max_input_chars",
    "--max-amount": "max_amount",
    "--max-formula-atoms": "max_formula_atoms",
    "--max-atoms": "max_atoms",
    "--min-volume-per-atom": "min_volume_per_atom",
    "--max-neighbors": "max_neighbors",
    "--max-smiles-chars": "max_smiles_chars",
    "--max-molecule-atoms": "max_molecule_atoms",
    "--record-seconds": "record_seconds",
}

_LIMIT_HELP = {
    "max_input_chars": "characters of one input text (formula, CIF, SMILES, ...)",
    "max_amount": "largest amount of one element in a formula",
    "max_formula_atoms": "largest total amount of a formula unit",
    "max_atoms": "sites of one structure",
    "min_volume_per_atom": "smallest cell volume per site (Å³)",
    "max_neighbors": "neighbour-search budget of one structure (pairs or images)",
    "max_smiles_chars": "characters of one SMILES",
    "max_molecule_atoms": "atoms of one molecule",
    "record_seconds": "wall time of one record in seconds (0: no limit)",
}


def _limit_type(flag: str, kind: type) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = kind(text.strip())
        except (ValueError, AttributeError):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}: give {what} > 0") from None
        if isinstance(value, float) and math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: give a number > 0")
        return value

    convert.__name__ = flag.lstrip("-").replace("-", "_")
    return convert


def _shown(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``per-record limits`` argument group (defaults: :class:`RecordLimits`)."""
    from xenonscale.limits import RecordLimits

    group = parser.add_argument_group(
        "per-record limits",
        "A record over a limit becomes an error row naming the flag to raise; the job goes on.",
    )
    kinds = _limit_fields()
    defaults = RecordLimits()
    for flag, name in LIMIT_FLAGS.items():
        default = getattr(defaults, name)
        group.add_argument(
            flag,
            dest=name,
            type=_limit_type(flag, kinds[name]),
            default=None,
            metavar="N" if kinds[name] is int else "X",
            help=f"{_LIMIT_HELP[name]} (default {_shown(default)})",
        )


def record_limits_from(args: argparse.Namespace):
    """The :class:`~xenonscale.limits.RecordLimits` the flags give (defaults for the rest).

    ``--record-seconds 0`` means no limit, as in :meth:`RecordLimits.from_dict`;
    a bad value raises :class:`ConfigError` naming the flag.
    """
    from xenonscale.limits import RecordLimits

    given = {
        name: getattr(args, name)
        for name in LIMIT_FLAGS.values()
        if getattr(args, name, None) is not None
    }
    if given.get("record_seconds") == 0:
        given["record_seconds"] = math.inf
    return replace(RecordLimits(), **given)
