"""Every command of the Click group: one meaning per flag, working help, one-line errors.

* A flag (``--scheduler``, ``-o/--output``, ...) has the same help text and
  the same type in every command that takes it; ``--scheduler`` is the Dask
  scheduler address everywhere.
* ``--help`` works for every command and subcommand.
* A bad JSON value, a bad choice and a bad path are one line on stderr that
  names the value and the fix, exit status 2, no traceback: through the
  console script (a subprocess) once each, through ``CliRunner`` for every
  command that takes such a value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict

import click
import pytest
from click.testing import CliRunner

from xenonscale.cli.inputs import ExistingPath, Input
from xenonscale.cli.main import cli, main
from xenonscale.cli.types import CommaList, StorageOptions

EXE = os.path.join(os.path.dirname(sys.executable), "xenonscale")
FIXES = {"json": "give a JSON object", "choice": "use one of", "path": "give an existing"}


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()):
    """``(path, command)`` of every command and subgroup, depth first."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands())
LEAVES = [(path, c) for path, c in COMMANDS if not isinstance(c, click.Group)]


def _ids(items) -> list[str]:
    return [" ".join(path) for path, _ in items]


def _type_key(param: click.Parameter) -> tuple:
    """What makes two options' values the same kind of value."""
    kind = type(param.type)
    key: tuple = (kind.__module__, kind.__name__, param.multiple, getattr(param, "is_flag", False))
    if isinstance(param.type, click.Choice):
        key += (tuple(param.type.choices),)
    if isinstance(param.type, CommaList):
        choices = param.type.item_choice
        key += (param.type.joiner, tuple(choices.choices) if choices else None)
    return key


def _options():
    """flag → [(command path, option)] over every command."""
    flags = defaultdict(list)
    for path, command in LEAVES:
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in (*param.opts, *param.secondary_opts):
                    flags[flag].append((path, param))
    return flags


def test_every_command_is_found():
    names = {" ".join(path) for path, _ in COMMANDS}
    for expected in ("featurize", "datasets list", "elements show", "train", "tune", "retrain",
                     "zoo build", "zoo export", "transfer", "ngram train", "design", "demo",
                     "completion", "sync", "databases list", "enumerate compositions",
                     "predict", "screen", "index", "similar"):  # fmt: skip
        assert expected in names


def test_a_flag_means_one_thing_in_every_command():
    for flag, uses in _options().items():
        helps = {param.help for _, param in uses}
        assert len(helps) == 1, f"{flag} has {len(helps)} help texts: {sorted(helps)}"
        types = {_type_key(param) for _, param in uses}
        assert len(types) == 1, f"{flag} has {len(types)} types: {types}"
        spellings = {(tuple(p.opts), tuple(p.secondary_opts)) for _, p in uses}
        assert len(spellings) == 1, f"{flag} is spelled {spellings}"


def test_scheduler_is_the_dask_address_everywhere():
    uses = _options()["--scheduler"]
    assert {" ".join(path) for path, _ in uses} >= {"featurize", "tune", "transfer", "design",
                                                    "ngram train"}  # fmt: skip
    for _, param in uses:
        assert "Dask scheduler address" in param.help and param.type is click.STRING
    for flag, uses in _options().items():  # train's learning-rate schedule has its own flag
        for _, param in uses:
            if "learning-rate" in (param.help or "") or "scheduler address" in (param.help or ""):
                assert flag in ("--lr-schedule", "--scheduler"), flag
    (use,) = _options()["--lr-schedule"]
    assert use[0] == ("train",) and "learning-rate" in use[1].help
    for old in ("--rows", "--epochs", "--smiles-column", "--workdir", "--data"):
        assert old not in _options(), f"{old} is gone (see the table in the README)"


def test_every_writing_command_takes_output():
    for path, command in LEAVES:
        flags = {flag for p in command.params if isinstance(p, click.Option) for flag in p.opts}
        if " ".join(path) in ("featurize", "train", "tune", "transfer", "design", "demo",
                              "zoo build", "zoo export", "ngram train",
                              "enumerate compositions", "screen"):  # fmt: skip
            assert {"-o", "--output"} <= flags, path


def test_choices_are_the_librarys():
    """Choices written out in the CLI (for a fast --help) equal the library's lists."""
    from xenonscale.cli.types import Choice, library_names

    checked = set()
    for _, command in LEAVES:
        for param in command.params:
            for kind in (param.type, getattr(param.type, "item_choice", None)):
                if isinstance(kind, Choice) and kind.library:
                    assert kind.choices == library_names(kind.library), kind.library
                    checked.add(kind.library)
    assert len(checked) >= 10


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=_ids(COMMANDS))
def test_help_works(path, command):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: xenonscale {' '.join(path)} ")


def test_help_and_version_through_main(capsys):
    assert main(["--help"]) == 0
    assert "featurize" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("xenonscale ")


# -- bad values: one line, exit 2, no traceback ---------------------------------------------


def _assert_one_line(exit_code: int, stderr: str, value: str, fix: str) -> None:
    assert exit_code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert repr(value) in lines[0] and fix in lines[0], lines[0]


def _positionals_before(command, param) -> list[str]:
    """A plain word for every positional argument before ``param`` (so ``param`` gets the value)."""
    words = []
    for other in command.params:
        if other is param:
            break
        if isinstance(other, click.Argument):
            words.append("placeholder")
    return words


def _bad_values():
    """(argv, value, fix) for every option or argument taking JSON, a choice or a path."""
    cases = []
    for path, command in LEAVES:
        for param in command.params:
            flag = param.opts[-1] if isinstance(param, click.Option) else None
            if isinstance(param.type, StorageOptions):
                cases.append(([*path, flag, "{bad"], "{bad", FIXES["json"]))
            elif isinstance(param.type, click.Choice):
                value = "no-such-choice"
                argv = [*path, flag, value] if flag else [*path, value]
                cases.append((argv, value, FIXES["choice"]))
            elif isinstance(param.type, Input | ExistingPath):
                value = "/no/such/path.csv"
                before = _positionals_before(command, param)  # e.g. predict's model list
                argv = [*path, flag, value] if flag else [*path, *before, value]
                cases.append((argv, value, FIXES["path"]))
    return cases


BAD = _bad_values()


def test_bad_values_cover_every_kind():
    fixes = {fix for _, _, fix in BAD}
    assert fixes == set(FIXES.values())
    assert len(BAD) > 20


@pytest.mark.parametrize(("argv", "value", "fix"), BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_values_are_one_line_with_the_fix(argv, value, fix):
    result = CliRunner().invoke(cli, argv)
    assert result.stdout == ""
    _assert_one_line(result.exit_code, result.stderr, value, fix)


@pytest.mark.parametrize(
    ("argv", "value", "fix"),
    [
        (["featurize", "x.csv", "-o", "x.zarr", "--storage-options", "[1,2"], "[1,2",
         FIXES["json"]),
        (["train", "s.zarr", "--target", "t", "--name", "n", "--lr-schedule", "cyclic"], "cyclic",
         FIXES["choice"]),
        (["transfer", "/no/such/small.csv", "-o", "r.json"], "/no/such/small.csv",
         FIXES["path"]),
    ],
    ids=["json", "choice", "path"],
)  # fmt: skip
def test_bad_values_through_the_console_script(argv, value, fix, tmp_path):
    result = subprocess.run(
        [EXE, *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert result.stdout == ""
    _assert_one_line(result.returncode, result.stderr, value, fix)
    assert result.stderr.startswith(f"xenonscale {argv[0]}: error: argument ")


def test_library_errors_name_flags_not_parameters():
    """``chunk_rows=`` in a library message is ``--chunk-rows`` on the command line."""
    from xenonscale.cli.command import flag_names

    featurize = cli.commands["featurize"]
    assert flag_names("chunk_rows=0: give 1 or more", featurize) == "--chunk-rows 0: give 1 or more"
    assert flag_names("storage_options={} and x.chunk_rows=1", featurize) == (
        "--storage-options {} and x.chunk_rows=1"
    )
    train = cli.commands["train"]  # the Python name is the library's
    assert flag_names("scheduler='x': use plateau, cosine or none", train).startswith(
        "--lr-schedule 'x'"
    )
    demo = cli.commands["demo"]
    assert flag_names("rows=0 and epochs=0", demo) == "--limit 0 and --max-epochs 0"


def test_a_library_error_is_one_line_in_flag_names(tmp_path, monkeypatch):
    import xenonscale.demo
    from xenonscale.errors import ConfigError

    def fail(**kwargs):
        raise ConfigError(f"rows={kwargs['rows']!r}: too few for the demo")

    monkeypatch.setattr(xenonscale.demo, "run_demo", fail)
    result = CliRunner().invoke(cli, ["demo", "--limit", "3", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "xenonscale: error: --limit 3: too few for the demo\n"


def test_completion_scripts():
    for shell in ("bash", "zsh", "fish"):
        result = CliRunner().invoke(cli, ["completion", shell])
        assert result.exit_code == 0 and "_XENONSCALE_COMPLETE" in result.output
    env = {**os.environ, "_XENONSCALE_COMPLETE": "bash_source"}
    script = subprocess.run([EXE], capture_output=True, text=True, env=env, timeout=60,
                            check=False)  # fmt: skip
    assert script.returncode == 0 and "_xenonscale_completion" in script.stdout
    env = {**os.environ, "_XENONSCALE_COMPLETE": "bash_complete",
           "COMP_WORDS": "xenonscale featurize x --kind mol", "COMP_CWORD": "4"}  # fmt: skip
    done = subprocess.run([EXE], capture_output=True, text=True, env=env, timeout=60,
                          check=False)  # fmt: skip
    assert done.stdout.split() == ["plain,molecule"]
