"""How the ``xenonscale`` command reports a failure: one line on stderr, no traceback.

* A usage error (bad flag value, bad choice, missing argument, unknown
  command) is ``xenonscale CMD: error: argument --flag: ... (see xenonscale
  CMD --help)``, exit status 2.
* A library error (:class:`~xenonscale.errors.XenonscaleError`, with Python
  parameter names mapped to flags by :class:`~xenonscale.cli.command.Command`)
  is ``xenonscale: error: ...``, exit status 2.
* An :class:`OSError` (a path that cannot be read or written) names the path
  in the system's words, exit status 2.

Examples
--------
>>> one_line("first\\nsecond")
'first second'
"""

from __future__ import annotations

import click

__all__ = ["MAX_MESSAGE", "one_line", "os_error_line", "usage_line"]

#: Longest error line printed (a message quoting a huge value is cut).
MAX_MESSAGE = 2000


def one_line(text: object) -> str:
    """``text`` on one line (newlines become spaces), at most ``MAX_MESSAGE`` characters."""
    line = " ".join(str(text).splitlines()).strip()
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _hint(param: click.Parameter | None, fallback: str | None = None) -> str:
    if isinstance(param, click.Option):
        return "/".join(param.opts)
    if param is not None and param.name:
        return param.name
    return fallback or "value"


def usage_line(exc: click.UsageError) -> str:
    """The one line of a Click usage error (the argparse form users of the old CLI knew)."""
    prog = exc.ctx.command_path if exc.ctx is not None else "xenonscale"
    if isinstance(exc, click.MissingParameter):
        text = f"the following arguments are required: {_hint(exc.param, exc.param_hint)}"
    elif isinstance(exc, click.BadParameter):
        hint = exc.param_hint if exc.param is None else _hint(exc.param)
        message = exc.message
        for flag in str(hint or "").split("/"):  # "--x 'v': ..." from the library: once
            if flag.startswith("--") and message.startswith(f"{flag} "):
                message = message[len(flag) + 1 :]
        text = f"argument {hint}: {message}" if hint else message
    else:
        text = exc.format_message()
    return f"{prog}: error: {one_line(text)} (see {prog} --help)"


def os_error_line(exc: OSError) -> str:
    """The one line of an :class:`OSError`: the path, the system's reason, the fix."""
    where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"xenonscale: error:{where} {one_line(reason)}: check the path and its permissions"
