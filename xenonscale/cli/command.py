"""The Click classes of every ``xenonscale`` command: help sections, library errors.

* :class:`Option` may name a help ``section`` (heading, text) of its own,
  e.g. the per-record limits of ``featurize``.
* :class:`Command` turns a :class:`~xenonscale.errors.XenonscaleError` raised
  while it runs into a :class:`LibraryError` whose message names flags, not
  Python parameters: the library says ``chunk_rows=0``, the user typed
  ``--chunk-rows`` (:func:`flag_names`, one mapping for every command).
* :class:`Group` makes its subcommands and subgroups of these classes.

Examples
--------
>>> import click
>>> @click.command(cls=Command)
... @click.option("--chunk-rows", type=int)
... def job(chunk_rows):
...     pass
>>> flag_names("chunk_rows=0: give 1 or more", job)
'--chunk-rows 0: give 1 or more'
"""

from __future__ import annotations

import re

import click

__all__ = ["Command", "Group", "LibraryError", "Option", "flag_names"]


class Option(click.Option):
    """A :class:`click.Option` listed under its own ``section=(heading, text)`` in ``--help``."""

    def __init__(self, *args, section: tuple[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.section = section


class LibraryError(click.ClickException):
    """A library error while a command ran, its message in the command's flag names."""

    exit_code = 2


def _flag(param: click.Parameter) -> str | None:
    if not isinstance(param, click.Option):
        return None
    longest = [opt for opt in param.opts if opt.startswith("--")]
    return longest[0] if longest else param.opts[0]


def flag_names(message: str, command: click.Command) -> str:
    """``message`` with ``name=`` of a Python parameter replaced by the option's flag.

    A command's option is named after the library parameter it fills (the
    ``train`` option ``--lr-schedule`` fills ``scheduler=``), so the mapping is
    read from the command itself.
    """
    flags = {param.name: _flag(param) for param in command.params}
    flags = {name: flag for name, flag in flags.items() if name and flag}
    if not flags:
        return message
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w.\-])({names})=")
    return pattern.sub(lambda m: f"{flags[m[1]]} ", message)


class Command(click.Command):
    """A command with help sections and library errors reported in its own flags."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[tuple[str, str] | None, list[tuple[str, str]]] = {None: []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or isinstance(param, click.Argument):
                continue
            sections.setdefault(getattr(param, "section", None), []).append(record)
        for section, records in sections.items():
            if not records:
                continue
            heading, text = section or ("Options", "")
            with formatter.section(heading):
                if text:
                    formatter.write_text(text)
                formatter.write_dl(records)

    def invoke(self, ctx: click.Context):
        from xenonscale.errors import XenonscaleError

        try:
            return super().invoke(ctx)
        except XenonscaleError as exc:
            raise LibraryError(flag_names(str(exc), self)) from exc


class Group(click.Group):
    """A group whose commands and subgroups are :class:`Command` and :class:`Group`."""

    command_class = Command
    group_class = type
