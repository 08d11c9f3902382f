"""``xenonscale completion SHELL``: print the shell completion script.

Click's own mechanism underneath: the script calls ``xenonscale`` with
``_XENONSCALE_COMPLETE=bash_complete`` (zsh, fish) set, and
``_XENONSCALE_COMPLETE=bash_source xenonscale`` prints the same script.

Examples
--------
::

    eval "$(xenonscale completion bash)"            # in ~/.bashrc
    xenonscale completion zsh > ~/.zfunc/_xenonscale
    xenonscale completion fish > ~/.config/fish/completions/xenonscale.fish
"""

from __future__ import annotations

import click

from xenonscale.cli.command import Command
from xenonscale.cli.types import Choice

__all__ = ["COMPLETE_VAR", "completion"]

#: The environment variable Click's completion reads (``_{PROG}_COMPLETE``).
COMPLETE_VAR = "_XENONSCALE_COMPLETE"


@click.command(cls=Command)
@click.argument("shell", type=Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the completion script of SHELL (bash, zsh or fish)."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    cls = get_completion_class(shell)
    script = cls(root.command, {}, root.info_name or "xenonscale", COMPLETE_VAR).source()
    click.echo(script)
    return 0
