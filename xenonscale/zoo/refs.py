"""Model names and references: ``name`` or ``name@version``.

A name is lowercase ASCII (``[a-z0-9][a-z0-9._-]*``, at most 100 characters),
so it is safe as a folder name on every file system and object store. A
version is a positive integer assigned by the catalog (1, 2, ...).

Examples
--------
>>> from xenonscale.zoo.refs import ModelRef, parse_ref
>>> parse_ref("band-gap@3")
('band-gap', 3)
>>> parse_ref("band-gap")
('band-gap', None)
>>> str(ModelRef("band-gap", 3))
'band-gap@3'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xenonscale.errors import ConfigError

__all__ = ["ModelRef", "check_name", "parse_ref"]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
#: Largest version a catalog can hold (SQLite INTEGER / PostgreSQL BIGINT).
MAX_VERSION = 2**63 - 1


def check_name(name: object) -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`ConfigError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"model name {name!r} is not valid: use lowercase letters, digits, '.', '_' "
            "or '-', starting with a letter or digit (at most 100 characters), e.g. 'band-gap'"
        )
    return name


def parse_ref(ref: object) -> tuple[str, int | None]:
    """Split ``"name@3"`` into ``("name", 3)`` and ``"name"`` into ``("name", None)``.

    A :class:`ModelRef` is accepted too. Raises :class:`ConfigError` for a bad
    name or a version that is not a positive integer.
    """
    if isinstance(ref, ModelRef):
        return ref.name, ref.version
    if not isinstance(ref, str):
        raise ConfigError(f"model reference {ref!r}: give 'name' or 'name@VERSION'")
    name, sep, version = ref.partition("@")
    check_name(name)
    if not sep:
        return name, None
    # isascii: "²".isdigit() is True; the bound: catalogs hold versions as BIGINT.
    if not (version.isascii() and version.isdigit()) or not 1 <= int(version) <= MAX_VERSION:
        raise ConfigError(
            f"model reference {ref[:120]!r}: the version must be a positive integer "
            f"(at most {MAX_VERSION}), e.g. '{name}@1'"
        )
    return name, int(version)


@dataclass(frozen=True, order=True)
class ModelRef:
    """One registered model version; ``str(ref)`` is ``"name@version"``."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        """From ``"name@version"`` (the version is required here)."""
        name, version = parse_ref(ref)
        if version is None:
            raise ConfigError(f"model reference {ref!r} has no version: give '{name}@VERSION'")
        return cls(name, version)
