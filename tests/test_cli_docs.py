"""The command lines written outside the code use flags the commands have.

README, docs, bench notes, notebooks and the Helm chart's Job/CronJob
arguments all spell ``xenonscale`` command lines; after a flag is renamed,
this test names every line that still uses the old one.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest

from xenonscale.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "bench" / "README.md",
    ROOT / "helm" / "README.md",
    ROOT / "deploy" / "README.md",
]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TEMPLATES = sorted((ROOT / "helm" / "xenonscale" / "templates").glob("*"))


def _resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words name and the words after it."""
    command: click.Command = cli
    rest = list(words)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    return command, rest


def _flags(command: click.Command) -> set[str]:
    flags = {"-h", "--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            flags.update(param.opts, param.secondary_opts)
    return flags


def _unknown(words: list[str]) -> list[str]:
    command, rest = _resolve(words)
    known = _flags(command)
    return [w.split("=", 1)[0] for w in rest
            if w.startswith("-") and len(w) > 1 and w.split("=", 1)[0] not in known
            and not w[1:2].isdigit()]  # fmt: skip


def _command_lines(text: str) -> list[str]:
    """``xenonscale CMD ...`` lines of shell blocks (continuations joined), ``!xenonscale``
    lines of notebook cells and inline code spans."""
    lines, block, shell = [], None, False
    for line in text.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence and block is None:
            block, shell = [], fence[1] in ("", "sh", "bash", "console", "shell")
        elif fence:
            if shell:
                joined = re.sub(r"\\\n\s*", " ", "\n".join(block))
                lines += re.findall(r"(?m)^\s*(?:\$\s*)?(xenonscale\s+[a-z][^#\n]*)", joined)
            block = None
        elif block is not None:
            block.append(line)
        elif line.lstrip().startswith("!xenonscale "):
            lines.append(line.lstrip()[1:])
    spans = re.findall(
        r"`(xenonscale\s+[a-z][^`]*)`", text
    )  # prose too: `xenonscale feature store`
    return lines + [span for span in spans if span.split()[1] in cli.commands]


def _commands(line: str) -> list[list[str]]:
    """Words of each command a doc line holds (``zoo list | show X`` is two)."""
    try:
        words = shlex.split(line.replace("…", "").replace("...", ""))
    except ValueError:  # an unbalanced quote in prose
        return []
    commands, current = [], []
    for word in words:
        if word == "|":
            commands.append(current)
            group = _resolve(current[1:])[0]
            parent = current[: 1 + len(current[1:]) - len(_resolve(current[1:])[1])]
            current = parent[:-1] if not isinstance(group, click.Group) else parent
            continue
        current.append(word)
    commands.append(current)
    return [c[1:] for c in commands if c and c[0] == "xenonscale" and len(c) > 1]


def _doc_lines():
    for path in DOCS:
        for line in _command_lines(path.read_text()):
            yield path.relative_to(ROOT), line
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            for line in _command_lines("".join(cell["source"])):
                yield path.relative_to(ROOT), line


DOC_LINES = list(_doc_lines())


def test_the_docs_have_command_lines():
    assert len(DOC_LINES) > 20
    assert any("design" in line for _, line in DOC_LINES)


@pytest.mark.parametrize(("path", "line"), DOC_LINES, ids=[f"{p}: {s[:60]}" for p, s in DOC_LINES])
def test_doc_command_lines_use_existing_flags(path, line):
    for words in _commands(line):
        command, _ = _resolve(words)
        assert command is not cli, f"{path}: {line!r} names no command"
        assert _unknown(words) == [], f"{path}: {line!r}"


def test_helm_job_arguments_use_existing_flags():
    found = {}
    for template in TEMPLATES:
        text = template.read_text()
        for command in re.findall(r'\$args := list "([a-z]+)"', text):
            flags = re.findall(r'"(--[a-z][a-z-]*)"', text)
            found[command] = flags
            assert _unknown([command, *flags]) == [], template.name
    assert set(found) == {"featurize", "tune", "retrain"}
