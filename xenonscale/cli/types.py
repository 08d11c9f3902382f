"""Click parameter types of values shared by the ``xenonscale`` commands.

Each type checks its value while the command line is parsed, before any data
is read or any Dask cluster starts, and fails with one line that names the
value and the fix (``main`` prints it as ``xenonscale CMD: error: argument
--flag: ...``, exit status 2). Lists of choices that the library defines are
read from it lazily (:class:`Choice`), so ``import xenonscale.cli`` stays
light and the library stays the one place that knows them. The types of
what commands read (inputs, datasets, zoo references) are in
:mod:`xenonscale.cli.inputs`.

Examples
--------
>>> POSITIVE_INT.convert("10000", None, None)
10000
>>> max_workers() >= 4
True
>>> STORAGE_OPTIONS.convert('{"anon": true}', None, None)
{'anon': True}
>>> CommaList().convert("a, b,,c", None, None)
('a', 'b', 'c')
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from importlib import import_module

import click

__all__ = [
    "DEVICES",
    "INT_LIST",
    "MAX_WORKERS",
    "POSITIVE_INT",
    "STORAGE_OPTIONS",
    "WORKERS",
    "Choice",
    "CommaList",
    "Devices",
    "IntList",
    "TargetRange",
    "library_names",
    "max_workers",
]

#: Upper bound of ``--workers`` whatever the machine (each worker is a process).
MAX_WORKERS = 512


def max_workers() -> int:
    """The most worker processes an embedded cluster may start: 4 per core, at most 512."""
    return max(1, min(MAX_WORKERS, 4 * (os.cpu_count() or 1)))


def _whole(type_: click.ParamType, value, param, ctx, what: str, example: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        type_.fail(f"{value!r} is not a whole number: give {what}, e.g. {example}", param, ctx)


class PositiveInt(click.ParamType):
    """A whole number ≥ 1 (rows, epochs, counts)."""

    name = "integer"

    def get_metavar(self, param, ctx=None) -> str:
        return "N"

    def convert(self, value, param, ctx) -> int:
        number = _whole(self, value, param, ctx, "a positive whole number", "10000")
        if number < 1:
            self.fail(f"{number} is not positive: give 1 or more, e.g. 10000", param, ctx)
        return number


class Workers(click.ParamType):
    """Worker processes of an embedded cluster: 1 .. :func:`max_workers`."""

    name = "workers"

    def get_metavar(self, param, ctx=None) -> str:
        return "N"

    def convert(self, value, param, ctx) -> int:
        number = _whole(self, value, param, ctx, "a number of worker processes", "2")
        if number < 1:
            self.fail(f"{number} workers: use 1 or more, e.g. 2", param, ctx)
        cap = max_workers()
        if number > cap:
            self.fail(
                f"{number} workers is more than this machine can run ({os.cpu_count() or 1} "
                f"cores): use at most {cap}, or --scheduler to use a bigger Dask cluster",
                param,
                ctx,
            )
        return number


class StorageOptions(click.ParamType):
    """fsspec options: a JSON object → dict."""

    name = "json"

    def get_metavar(self, param, ctx=None) -> str:
        return "JSON"

    def convert(self, value, param, ctx) -> dict | None:
        if isinstance(value, dict):
            return value
        if value is None or not str(value).strip():
            return None
        try:
            options = json.loads(value)
        except ValueError as exc:
            self.fail(
                f"{value!r} is not valid JSON ({exc}): give a JSON object, "
                "e.g. '{\"anon\": true}'",
                param,
                ctx,
            )
        if not isinstance(options, dict):
            self.fail(
                f"{value!r} is a JSON {type(options).__name__}, not an object: "
                "give a JSON object, e.g. '{\"anon\": true}'",
                param,
                ctx,
            )
        return options


class Choice(click.Choice):
    """A :class:`click.Choice` whose choices may be read on first use; its error names them all.

    ``source`` is ``"module:ATTRIBUTE"`` (the keys of a dict, or a sequence),
    a callable returning the names, or the names themselves (a list or tuple).
    Names written out here because their module is slow to import (torch)
    give that module as ``library="module:ATTRIBUTE"``: ``--help`` stays fast
    and ``tests/test_cli_flags.py`` checks that the two lists are equal.
    """

    def __init__(
        self,
        source: str | Callable[[], Iterable[str]] | Sequence[str],
        *,
        case_sensitive: bool = True,
        library: str | None = None,
    ) -> None:
        self._source = source
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive
        self.library = (
            library if library is not None else (source if isinstance(source, str) else None)
        )

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._choices is None:
            if isinstance(self._source, list | tuple):
                names = self._source
            elif callable(self._source):
                names = self._source()
            else:
                names = library_names(self._source)
            self._choices = tuple(names)
        return self._choices

    def get_invalid_choice_message(self, value, ctx) -> str:
        return f"{value!r} is not a choice: use one of {', '.join(self.choices)}"


def library_names(where: str) -> tuple[str, ...]:
    """The names at ``"module:ATTRIBUTE"`` (a dict's keys, or a sequence)."""
    module, _, attribute = where.partition(":")
    return tuple(getattr(import_module(module), attribute))


class CommaList(click.ParamType):
    """``"a,b"`` → ``("a", "b")``; with ``choices``, every item must be one of them."""

    name = "list"

    def __init__(self, choices: Choice | None = None, *, joiner: str = ",") -> None:
        self.item_choice = choices
        self.joiner = joiner

    def get_metavar(self, param, ctx=None) -> str:
        if self.item_choice is None:
            return f"A{self.joiner}B"
        return f"[{'|'.join(self.item_choice.choices)}]{self.joiner}..."

    def convert(self, value, param, ctx) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = tuple(part.strip() for part in str(value).split(self.joiner) if part.strip())
        if not items:
            self.fail(f"{value!r} is empty: give at least one name", param, ctx)
        if self.item_choice is not None:
            unknown = [item for item in items if item not in self.item_choice.choices]
            if unknown:
                self.fail(
                    f"{value!r}: {unknown[0]!r} is not a choice: use "
                    f"{self.joiner.join(self.item_choice.choices[:2])} or other items of "
                    f"{', '.join(self.item_choice.choices)} joined with {self.joiner!r}",
                    param,
                    ctx,
                )
        return items

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        if self.item_choice is None:
            return []
        head, sep, last = incomplete.rpartition(self.joiner)
        prefix = head + sep
        return [
            CompletionItem(prefix + choice)
            for choice in self.item_choice.choices
            if choice.startswith(last)
        ]


class IntList(click.ParamType):
    """``"512,256,128"`` → ``[512, 256, 128]`` (positive widths)."""

    name = "integers"

    def get_metavar(self, param, ctx=None) -> str:
        return "N,N,..."

    def convert(self, value, param, ctx) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            values = [int(part) for part in str(value).split(",") if part.strip()]
        except ValueError:
            self.fail(f"{value!r}: give comma-separated whole numbers, e.g. 512,256", param, ctx)
        if not values or min(values) < 1:
            self.fail(f"{value!r}: give positive whole numbers, e.g. 512,256", param, ctx)
        return values


class Devices(click.ParamType):
    """A number of devices (≥ 1) or ``auto``."""

    name = "devices"

    def get_metavar(self, param, ctx=None) -> str:
        return "N|auto"

    def convert(self, value, param, ctx) -> int | str:
        if isinstance(value, int) or value == "auto":
            return value
        number = _whole(self, value, param, ctx, "a number of devices or 'auto'", "1")
        if number < 1:
            self.fail(f"{number} devices: give at least 1, or 'auto'", param, ctx)
        return number


class TargetRange(click.ParamType):
    """``PROP=LOW:HIGH`` (either end optional), checked as the design library parses it."""

    name = "range"

    def get_metavar(self, param, ctx=None) -> str:
        return "PROP=LOW:HIGH"

    def convert(self, value, param, ctx) -> str:
        from xenonscale.design import parse_targets
        from xenonscale.errors import XenonscaleError

        try:
            parse_targets([value])
        except XenonscaleError as exc:
            self.fail(str(exc), param, ctx)
        return value


POSITIVE_INT = PositiveInt()
WORKERS = Workers()
STORAGE_OPTIONS = StorageOptions()
INT_LIST = IntList()
DEVICES = Devices()
