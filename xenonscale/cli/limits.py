"""The per-record limit flags of ``xenonscale featurize`` (``--max-atoms``, ...).

Each flag sets one field of :class:`~xenonscale.limits.RecordLimits`; a flag
not given keeps the field's default. The flags are listed in their own
``per-record limits`` section of ``--help``.

Examples
--------
>>> record_limits_from({"max_atoms": 50, "record_seconds": 0}).max_atoms
50
>>> import math
>>> math.isinf(record_limits_from({"record_seconds": 0}).record_seconds)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields, replace

import click

from xenonscale.cli.command import Option

__all__ = ["LIMITS_SECTION", "LIMIT_FLAGS", "limit_options", "record_limits_from"]

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

#: Heading and text of the help section that lists the limit flags.
LIMITS_SECTION = (
    "per-record limits",
    "A record over a limit becomes an error row naming the flag to raise; the job goes on.",
)

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


class LimitValue(click.ParamType):
    """A number (whole for the count limits); the sign is checked by RecordLimits."""

    def __init__(self, whole: bool) -> None:
        self.whole = whole
        self.name = "integer" if whole else "number"

    def get_metavar(self, param, ctx=None) -> str:
        return "N" if self.whole else "X"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        kind, what = (int, "a whole number") if self.whole else (float, "a number")
        try:
            number = kind(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not {what}: give {what} > 0", param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number: give a number > 0", param, ctx)
        return number


def _shown(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def limit_options(command: Callable) -> Callable:
    """Add the limit flags (keyword arguments named like the RecordLimits fields)."""
    from xenonscale.limits import RecordLimits

    defaults = RecordLimits()
    kinds = {item.name: type(getattr(defaults, item.name)) for item in fields(RecordLimits)}
    for flag, name in reversed(LIMIT_FLAGS.items()):
        command = click.option(
            flag,
            name,
            cls=Option,
            section=LIMITS_SECTION,
            type=LimitValue(kinds[name] is int),
            default=None,
            help=f"{_LIMIT_HELP[name]} (default {_shown(getattr(defaults, name))})",
        )(command)
    return command


def record_limits_from(values: Mapping[str, object]):
    """The :class:`~xenonscale.limits.RecordLimits` the flags give (defaults for the rest).

    ``values`` maps field names to the flags' values (``None``: not given).
    ``--record-seconds 0`` means no limit, as in :meth:`RecordLimits.from_dict`;
    a bad value raises :class:`~xenonscale.errors.ConfigError` naming the flag.
    """
    from xenonscale.limits import RecordLimits

    given = {name: values[name] for name in LIMIT_FLAGS.values() if values.get(name) is not None}
    if given.get("record_seconds") == 0:
        given["record_seconds"] = math.inf
    return replace(RecordLimits(), **given)
