"""The peer libraries (XenonPy 0.6.7, matminer) in their own environment, called from ours.

matminer pins ``pandas<3`` and XenonPy 0.6.7 predates today's numpy and
pymatgen; the core environment takes the newest releases. So the peers live
in a second virtual environment (``.venv-peers``, built by ``make test`` from
``requirements/peers.in``) and the parity tests and benchmarks call them
through :class:`PeerEnvironment`: one long-lived interpreter of that
environment running :mod:`xenonscale.testing.peer_worker`, one JSON line per
call, tables back as Parquet and arrays as ``.npy`` (no pickle either way).

The interpreter is ``$XENONSCALE_PEERS_PYTHON`` (the Makefile exports it),
else ``.venv-peers/bin/python`` under the current folder.

Examples
--------
>>> from xenonscale.testing.peers import PeerEnvironment, PeerUnavailable
>>> try:
...     with PeerEnvironment() as peers:
...         found = peers.call("versions")["result"]
... except PeerUnavailable:
...     found = {"python": "3"}
>>> found["python"].startswith("3")
True
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xenonscale.errors import XenonscaleError

__all__ = ["PeerCallError", "PeerEnvironment", "PeerUnavailable", "peer_python"]

WORKER = Path(__file__).with_name("peer_worker.py")
ENV_VARIABLE = "XENONSCALE_PEERS_PYTHON"
DEFAULT_VENV = Path(".venv-peers")


class PeerUnavailable(XenonscaleError):
    """The peer environment is not built (run ``make test`` or ``make peers``)."""


class PeerCallError(XenonscaleError):
    """A peer library raised; the message carries its exception and traceback."""


def peer_python() -> Path:
    """The peer environment's interpreter; :class:`PeerUnavailable` names the fix if missing."""
    configured = os.environ.get(ENV_VARIABLE)
    python = Path(configured) if configured else DEFAULT_VENV / "bin" / "python"
    if not python.is_file():
        raise PeerUnavailable(
            f"no peer environment at {str(python)!r}: run `make peers` (or `make test`), "
            f"or set {ENV_VARIABLE} to the Python of an environment with XenonPy and matminer"
        )
    return python


class PeerEnvironment:
    """A long-lived peer interpreter; :meth:`call` runs one function of the peer worker.

    Parameters
    ----------
    python : path, optional
        The peer interpreter (default :func:`peer_python`).
    timeout : float
        Seconds one call may take before the peer is killed and the call fails.
    """

    def __init__(self, python: str | Path | None = None, *, timeout: float = 900.0):
        self.python = Path(python) if python is not None else peer_python()
        self.timeout = timeout
        self._folder = tempfile.TemporaryDirectory(prefix="xenonscale-peers-")
        self._count = 0
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)  # nothing of the core environment leaks in
        env.setdefault("OMP_NUM_THREADS", "1")
        self._process = subprocess.Popen(
            [str(self.python), "-u", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # the peers' prints and tracebacks go to our stderr
            text=True,
            env=env,
        )

    def __enter__(self) -> PeerEnvironment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, name: str, **args: Any) -> dict[str, Any]:
        """Run ``name(args)`` in the peer; its JSON ``result`` plus ``frame``/``array`` if any."""
        if self._process.poll() is not None:
            raise PeerCallError(f"the peer interpreter exited (code {self._process.returncode})")
        self._count += 1
        out = Path(self._folder.name) / str(self._count)
        request = {"call": name, "args": args, "out": str(out)}
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = _read_line(self._process, self.timeout)
        answer = json.loads(line)
        if not answer["ok"]:
            raise PeerCallError(f"{name}: {answer['error']}\n{answer['traceback']}")
        found: dict[str, Any] = {"result": answer["result"]}
        if "frame" in answer:
            found["frame"] = pd.read_parquet(answer["frame"])
            os.unlink(answer["frame"])  # read whole: a long session keeps no exchange files
        if "array" in answer:
            found["array"] = np.load(answer["array"], allow_pickle=False)
            os.unlink(answer["array"])
        return found

    def close(self) -> None:
        """Stop the peer interpreter and remove the exchange folder."""
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._folder.cleanup()


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    """One answer line, or :class:`PeerCallError` when the peer dies or runs past ``timeout``."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            process.kill()
            raise PeerCallError(f"the peer gave no answer within {timeout:g} s (killed)")
    line = process.stdout.readline()
    if not line:
        code = process.wait()
        raise PeerCallError(f"the peer interpreter exited (code {code}); see stderr above")
    return line


if __name__ == "__main__":  # pragma: no cover - a quick check: python -m xenonscale.testing.peers
    with PeerEnvironment() as peers:
        json.dump(peers.call("versions")["result"], sys.stdout, indent=1)
        print()
