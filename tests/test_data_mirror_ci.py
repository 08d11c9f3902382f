"""Under ``CI=true`` a missing data mirror fails the tests that need it; elsewhere it skips them.

Each case runs a small pytest session in a subprocess, in a temporary folder
holding a copy of ``tests/conftest.py`` and test files that need the mirror
the three ways the suite does: the ``data_dir`` fixture, the ``requires_data``
mark, and a module that checks ``XENONSCALE_DATA_DIR`` itself and skips.
``XENONSCALE_DATA_DIR`` points at an empty folder (no ``compositions/``).
(Under CI the last one is a collection error, which in a real run stops the
session right there, with that one message.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")

NEEDS_DATA = """
from conftest import requires_data


def test_fixture(data_dir):
    assert (data_dir / "compositions").is_dir()


@requires_data
def test_mark():
    pass


def test_no_data_needed():
    pass
"""

OWN_CHECK = """
import os
from pathlib import Path

import pytest

ENV = os.environ.get("XENONSCALE_DATA_DIR")
if not ENV or not (Path(ENV) / "compositions").is_dir():
    pytest.skip(
        f"real-data mirror not available (XENONSCALE_DATA_DIR={ENV!r})", allow_module_level=True
    )


def test_module_level_check():
    pass
"""


@pytest.fixture(scope="module")
def session_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ci-session")
    shutil.copy(CONFTEST, folder / "conftest.py")
    (folder / "pytest.ini").write_text("[pytest]\n")  # not the project's configuration
    (folder / "test_needs_data.py").write_text(NEEDS_DATA)
    (folder / "test_own_check.py").write_text(OWN_CHECK)
    (folder / "empty-mirror").mkdir()
    return folder


def run_session(folder: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["XENONSCALE_DATA_DIR"] = str(folder / "empty-mirror")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider"),
            # every failure shown: a collection error would otherwise stop the session there
            *("--continue-on-collection-errors", str(folder)),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_missing_mirror_fails_under_ci(session_folder):
    result = run_session(session_folder, "True")  # any case
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    # data_dir and requires_data fail at setup, the module's own check at collection
    assert "1 passed, 3 errors" in out, out
    for test in ("test_fixture", "test_mark"):
        assert f"ERROR test_needs_data.py::{test} - Failed: CI=true: real-data mirror" in out, out
    assert "ERROR test_own_check.py - CI=true: real-data mirror not available" in out, out


@pytest.mark.parametrize("ci", [None, "false"])
def test_missing_mirror_skips_elsewhere(session_folder, ci):
    result = run_session(session_folder, ci)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 passed, 3 skipped" in out, out
    assert "real-data mirror not found" in out and "CI=true" not in out, out
