"""The two environments: the core on today's releases, the peers apart, both recorded in locks.

``make test`` builds ``.venv`` (xenonscale and the newest releases of its
dependencies) and ``.venv-peers`` (XenonPy 0.6.7 and matminer, which pins
``pandas<3``). ``make lock`` records both in ``requirements/*.lock``;
``make test LOCKED=1`` installs exactly those.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"


def _lock(name: str) -> dict[str, str]:
    """``{canonical name: version}`` of a ``pip freeze`` file."""
    pins = {}
    for line in (REQUIREMENTS / name).read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            pins[_canonical(match[1])] = match[2]
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _core_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_the_core_environment_runs_pandas_3_without_the_peers():
    assert Version(version("pandas")).major >= 3, "the core environment must not be held back"
    assert Version(version("numpy")).major >= 2
    assert Version(version("zarr")).major >= 3
    for peer in ("matminer", "xenonpy"):
        assert importlib.util.find_spec(peer) is None, f"{peer} belongs in .venv-peers"


def test_the_core_lock_satisfies_pyproject_and_records_pandas_3():
    pins = _lock("core.lock")
    for requirement in _core_requirements():
        name = _canonical(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but not in core.lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"core.lock pins {name}=={pins[name]}, outside pyproject's {requirement}"
        )
    assert Version(pins["pandas"]).major >= 3
    assert "matminer" not in pins and "xenonpy" not in pins


def test_the_peers_lock_keeps_their_old_pins():
    pins = _lock("peers.lock")
    assert pins["xenonpy"] == "0.6.7"
    assert "matminer" in pins
    assert Version(pins["pandas"]).major < 3  # matminer's pin: the reason for two environments
    assert "xenonscale" not in pins


def test_the_peer_environment_answers_with_the_locked_versions(peers):
    found = peers.call("versions")["result"]
    pins = _lock("peers.lock")
    assert found["xenonpy"] == "0.6.7"
    assert Version(found["pandas"]).major < 3
    for name in ("matminer", "pymatgen", "rdkit"):
        assert found[name] is not None, f"{name} missing from the peer environment"
    if found["matminer"] != pins["matminer"]:  # pragma: no cover - a newer matminer arrived
        pytest.skip(f"peer matminer {found['matminer']} != lock {pins['matminer']}: `make lock`")


def test_a_failing_peer_call_says_what_failed(peers):
    from xenonscale.testing.peers import PeerCallError

    with pytest.raises(PeerCallError, match="KeyError"):
        peers.call("no_such_call")
    assert peers.call("versions")["result"]["python"].startswith("3.")  # still serving
