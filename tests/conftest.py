"""Shared fixtures: the real-data mirror and the peer libraries (XenonPy, matminer)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

DATA_DIR = (
    Path(os.environ.get("XENONSCALE_DATA_DIR", ""))
    if os.environ.get("XENONSCALE_DATA_DIR")
    else None
)
NO_DATA_REASON = (
    "real-data mirror not found: set XENONSCALE_DATA_DIR to ../shared/data "
    "(the Makefile and .ci/run do this when the folder exists)"
)


def has_data() -> bool:
    return DATA_DIR is not None and (DATA_DIR / "compositions").is_dir()


requires_data = pytest.mark.skipif(not has_data(), reason=NO_DATA_REASON)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not has_data():
        pytest.skip(NO_DATA_REASON)
    return DATA_DIR


@pytest.fixture(scope="session")
def xenonpy_compositions(tmp_path_factory, data_dir):
    """XenonPy 0.6.7's ``Compositions`` class, with its element table in a private HOME.

    XenonPy reads ``~/.xenonpy/dataset/elements_completed.pd.xz`` (a pandas
    pickle, XenonPy's own format) and fixes its config root from ``Path.home()``
    at import time, so HOME points at a temporary folder only while importing.
    """
    home = tmp_path_factory.mktemp("xenonpy-home")
    dataset = home / ".xenonpy" / "dataset"
    dataset.mkdir(parents=True)
    table = pd.read_csv(data_dir / "elements" / "xenonpy58.csv", index_col=0)
    table.to_pickle(dataset / "elements_completed.pd.xz")
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from xenonpy.descriptor import Compositions
    except ImportError as exc:  # pragma: no cover - installed by make test
        pytest.skip(f"XenonPy not importable ({exc}); run `make test` to install it")
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home
    return Compositions


@pytest.fixture(scope="session")
def dask_client():
    """A real embedded cluster: 2 worker processes on 127.0.0.1 (TCP)."""
    from xenonscale.cluster import close_client, get_client

    client = get_client(workers=2, quiet=True)
    yield client
    close_client(client)
