"""Click types of what the ``xenonscale`` commands read: inputs, datasets, models.

* :class:`Input`: every input argument takes a path, glob or URL, or
  ``dataset:NAME`` from the registry (:class:`InputSource` resolves it).
* :class:`DatasetName`, :class:`ExistingPath`, :class:`ModelRef` and
  :class:`FeaturizerNames` check a name against what exists, while the
  command line is parsed.

Examples
--------
>>> INPUT.convert("dataset:matbench_expt_gap", None, None).dataset
'matbench_expt_gap'
>>> check_model_ref("oqmd-hf@2")
'oqmd-hf@2'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import click

from xenonscale.cli.types import Choice, CommaList

__all__ = [
    "INPUT",
    "MODEL_REF",
    "DatasetName",
    "ExistingPath",
    "FeaturizerNames",
    "Input",
    "InputSource",
    "ModelRef",
    "check_model_ref",
]

#: Largest version number a catalog can hold (SQLite/PostgreSQL BIGINT).
_MAX_VERSION = 2**63 - 1


def check_model_ref(text: str) -> str:
    """``NAME`` or ``NAME@VERSION`` checked as the zoo parses it, plus a version bound.

    The version must be ASCII digits no larger than a catalog can hold.
    Raises :class:`~xenonscale.errors.ConfigError` naming the reference.
    """
    from xenonscale.errors import ConfigError
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


class ModelRef(click.ParamType):
    """A zoo reference ``NAME`` or ``NAME@VERSION`` (see :func:`check_model_ref`)."""

    name = "ref"

    def get_metavar(self, param, ctx=None) -> str | None:
        return None if isinstance(param, click.Argument) else "NAME[@VERSION]"

    def convert(self, value, param, ctx) -> str:
        from xenonscale.errors import XenonscaleError

        try:
            return check_model_ref(value)
        except XenonscaleError as exc:
            self.fail(str(exc), param, ctx)


class FeaturizerNames(click.ParamType):
    """``--featurizers``: registered names of the ``--kind`` (``classic,magpie``), or a
    family ``PREFIX:ARG`` such as ``frozen:NAME@V`` (zoo references checked here)."""

    name = "featurizers"

    def get_metavar(self, param, ctx=None) -> str:
        return "NAME,..."

    def convert(self, value, param, ctx) -> tuple[str, ...]:
        from xenonscale.errors import XenonscaleError
        from xenonscale.featurize.registry import FeaturizerSpec, split_names

        if isinstance(value, tuple):
            return value
        kind = (ctx.params.get("kind") if ctx is not None else None) or "composition"
        # commas inside a family's brackets belong to it: dscribe:SOAP(r_cut=5, n_max=4)
        names = tuple(split_names(value)) if isinstance(value, str) else tuple(value)
        try:
            FeaturizerSpec.parse(kind, names)
            for name in names:  # frozen:NAME[@V][+NAME2...]: zoo references
                if name.startswith("frozen:"):
                    for ref in name.split(":", 1)[1].split("+"):
                        check_model_ref(ref.strip())
        except XenonscaleError as exc:
            self.fail(str(exc), param, ctx)
        return names

    def shell_complete(self, ctx, param, incomplete):
        from xenonscale.featurize.registry import registered

        kind = ctx.params.get("kind") or "composition"
        names = registered(kind).get(kind, [])
        return CommaList(Choice(lambda: names)).shell_complete(ctx, param, incomplete)


class DatasetName(click.ParamType):
    """A name in the dataset registry (``xenonscale datasets list``)."""

    name = "dataset"

    def get_metavar(self, param, ctx=None) -> str | None:
        return None if isinstance(param, click.Argument) else "NAME"

    def convert(self, value, param, ctx) -> str:
        from xenonscale import datasets
        from xenonscale.errors import XenonscaleError

        try:
            datasets.info(value)
        except XenonscaleError as exc:
            self.fail(str(exc), param, ctx)
        return value

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        from xenonscale import datasets

        return [CompletionItem(n) for n in datasets.names() if n.startswith(incomplete)]


_REMOTE = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://", "memory://")


@dataclass(frozen=True)
class InputSource:
    """An input argument: a path, glob or URL, or ``dataset:NAME`` from the registry."""

    text: str
    dataset: str | None = None

    def resolve(self, column: str | None = None) -> tuple[str, str | None]:
        """``(url, column)``: a dataset is fetched (mirror, cache or download) and its
        input column is the default of ``column``."""
        if self.dataset is None:
            return self.text, column
        from xenonscale import datasets

        path = str(datasets.fetch(self.dataset))
        return path, column or datasets.info(self.dataset).input_column

    def __str__(self) -> str:
        return self.text


class Input(click.ParamType):
    """``dataset:NAME`` (checked in the registry) or a path, glob or URL (a plain local
    path must exist)."""

    name = "input"

    def get_metavar(self, param, ctx=None) -> str | None:
        return None if isinstance(param, click.Argument) else "INPUT"

    def convert(self, value, param, ctx) -> InputSource:
        if isinstance(value, InputSource):
            return value
        text = str(value)
        if text.startswith("dataset:"):
            name = text.split(":", 1)[1]
            DatasetName().convert(name, param, ctx)
            return InputSource(text, name)
        if text.startswith(("optimade:", "enumerate:")):  # a query or a space, checked when opened
            return InputSource(text)
        local = text.removeprefix("ase:")  # ase:PATH: an extxyz file or an ASE database
        local = local[len("file://") :] if local.startswith("file://") else local
        remote = "://" in local or local.startswith(_REMOTE)
        pattern = any(ch in local for ch in "*?[")
        if not remote and not pattern and not os.path.exists(local):
            self.fail(
                f"{text!r} does not exist: give an existing file, folder, glob, "
                "an s3:// URL or dataset:NAME",
                param,
                ctx,
            )
        return InputSource(text)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        if incomplete.startswith("dataset:"):
            from xenonscale import datasets

            return [
                CompletionItem(f"dataset:{n}")
                for n in datasets.names()
                if f"dataset:{n}".startswith(incomplete)
            ]
        return [CompletionItem(incomplete, type="file")]


class ExistingPath(click.ParamType):
    """A local file or folder that must exist (a model folder, an archive)."""

    name = "path"

    def __init__(self, what: str = "file or folder") -> None:
        self.what = what

    def get_metavar(self, param, ctx=None) -> str | None:
        return None if isinstance(param, click.Argument) else "PATH"

    def convert(self, value, param, ctx) -> str:
        if not os.path.exists(value):
            self.fail(f"{value!r} does not exist: give an existing {self.what}", param, ctx)
        return str(value)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem

        return [CompletionItem(incomplete, type="file")]


MODEL_REF = ModelRef()
INPUT = Input()
