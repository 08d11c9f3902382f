"""Docstring examples of the package run as tests (``--doctest-modules``, see pyproject.toml).

The test fixtures live in ``tests/conftest.py``; this file only sets up the doctests:

- An example marked ``# doctest: +REQUIRES_DATA`` reads the real-data mirror
  (``$XENONSCALE_DATA_DIR`` with a ``compositions/`` folder): without the mirror
  its docstring is skipped, and under ``CI=true`` it fails instead (the rule of
  ``tests/conftest.py``'s ``data_dir``; keep the two in step).
- Every docstring runs in a fresh temporary working directory, which is also
  where ``tempfile.mkdtemp()`` puts its folders, with ``XENONSCALE_CACHE_DIR``
  in a temporary folder shared by the session: an example never writes into
  the checkout or the user's cache, and leaves nothing behind in /tmp (pytest
  prunes its own temporary folders).
- A module whose examples need an optional extra (``pip install xenonscale[...]``)
  is not collected when the extra is missing.
"""

from __future__ import annotations

import doctest
import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

REQUIRES_DATA = doctest.register_optionflag("REQUIRES_DATA")

# Modules whose examples import an optional extra: {path: the module it needs}.
OPTIONAL_EXTRAS = {
    "xenonscale/featurize/molecules/mordred.py": "mordred",
    "xenonscale/store/similarity.py": "faiss",
}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent missing; a module blocked with None
        return True


collect_ignore = [path for path, module in OPTIONAL_EXTRAS.items() if _missing(module)]


def _is_doctest(item: pytest.Item) -> bool:
    return getattr(item, "dtest", None) is not None


def _mirror_missing() -> str | None:
    """Why the real-data mirror is unusable, or None when it is there."""
    value = os.environ.get("XENONSCALE_DATA_DIR")
    if value and (Path(value).expanduser() / "compositions").is_dir():
        return None
    return (
        f"real-data mirror not found (XENONSCALE_DATA_DIR={value!r} has no compositions/): "
        "set XENONSCALE_DATA_DIR to ../shared/data (the Makefile and .ci/run do this "
        "when the folder exists)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if not _is_doctest(item):
        return
    if any(example.options.get(REQUIRES_DATA) for example in item.dtest.examples):
        reason = _mirror_missing()
        if reason is not None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true: {reason}", pytrace=False)
            pytest.skip(reason)


@pytest.fixture(autouse=True)
def _doctest_sandbox(request: pytest.FixtureRequest) -> None:
    """A doctest runs in a temporary folder, with the cache in the session's temporary folder."""
    if not _is_doctest(request.node):
        return
    monkeypatch = request.getfixturevalue("monkeypatch")
    factory = request.getfixturevalue("tmp_path_factory")
    folder = factory.mktemp("doctest")
    monkeypatch.chdir(folder)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))  # tempfile.mkdtemp() lands here too
    monkeypatch.setenv("XENONSCALE_CACHE_DIR", str(_session_cache(factory)))


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    """One temporary cache folder per session (element tables are built there once)."""
    path = factory.getbasetemp() / "doctest-cache"
    path.mkdir(exist_ok=True)
    return path
