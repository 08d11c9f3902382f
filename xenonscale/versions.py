"""Installed package versions, for provenance (stores, model cards, cache keys).

Examples
--------
>>> from xenonscale.versions import installed_versions
>>> sorted(installed_versions("numpy", "no-such-package"))
['numpy']
>>> installed_versions("no-such-package", missing="unknown")
{'no-such-package': 'unknown'}
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["installed_versions"]


def installed_versions(*packages: str, missing: str | None = None) -> dict[str, str]:
    """``{package: version}``; a package that is not installed is left out, or ``missing``."""
    out = {}
    for package in packages:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            if missing is not None:
                out[package] = missing
    return out
