"""Where data and caches live: argument > environment > packaged default.

``XENONSCALE_DATA_DIR``
    A local mirror of public datasets, laid out like ``../shared/data``
    (``compositions/``, ``elements/``, ``molecules/``, ``structures/``).
``XENONSCALE_CACHE_DIR``
    Downloads and built tables (default: ``~/.cache/xenonscale``).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from xenonscale.config import cache_dir
>>> cache_dir(Path(tempfile.mkdtemp()) / "xs-cache").name  # created when missing
'xs-cache'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_DIR_ENV", "DATA_DIR_ENV", "cache_dir", "data_dir"]

DATA_DIR_ENV = "XENONSCALE_DATA_DIR"
CACHE_DIR_ENV = "XENONSCALE_CACHE_DIR"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """Return the local data mirror: ``explicit``, else ``$XENONSCALE_DATA_DIR``, else None."""
    value = explicit if explicit is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        return None
    return Path(value).expanduser()


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Return (and create) the cache directory: ``explicit``, env, or ``~/.cache/xenonscale``."""
    value = explicit if explicit is not None else os.environ.get(CACHE_DIR_ENV)
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "xenonscale"
    path.mkdir(parents=True, exist_ok=True)
    return path
