"""Tests of xenonscale.datasets against the real-data mirror (``$XENONSCALE_DATA_DIR``).

Downloads are exercised against a local HTTP server on 127.0.0.1 serving copies
of mirror files, and offline behaviour against a closed local port: no test
touches the network or ``~/.cache``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import os
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest

from xenonscale import datasets
from xenonscale.datasets import files, registry
from xenonscale.errors import (
    ChecksumError,
    ConfigError,
    DatasetError,
    DatasetUnavailableError,
    XenonscaleError,
)

_ENV = os.environ.get("XENONSCALE_DATA_DIR")
MIRROR = Path(_ENV).expanduser().resolve() if _ENV else None
if MIRROR is None or not MIRROR.is_dir():
    pytest.skip(
        f"real-data mirror not available (XENONSCALE_DATA_DIR={_ENV!r}); set it to "
        "../shared/data, as `make test` does",
        allow_module_level=True,
    )

CLOSED_PORT_URL = "http://127.0.0.1:9/nothing"  # discard port: nothing listens there
MATBENCH_ROWS = {
    "matbench_expt_gap": 4604,
    "matbench_expt_is_metal": 4921,
    "matbench_glass": 5680,
    "matbench_steels_yield": 312,
    "matbench_mp_e_form": 132752,
    "matbench_mp_gap": 106113,
}
LARGE = {"moses_train"}  # 1.58 M rows: a couple of seconds


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Mirror from the environment, cache in tmp, local requests never proxied."""
    monkeypatch.setenv("XENONSCALE_DATA_DIR", str(MIRROR))
    monkeypatch.setenv("XENONSCALE_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


def _with_url(monkeypatch, name: str, url: str | None) -> registry.Dataset:
    """Swap dataset ``name`` for a copy with another URL (undone after the test)."""
    changed = dataclasses.replace(registry.get(name), url=url)
    monkeypatch.setitem(registry._DATASETS, name, changed)
    return changed


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class LocalServer:
    """A real HTTP server on 127.0.0.1 serving ``root`` from a thread."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self.running = False


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    local = LocalServer(root)
    local.root = root
    yield local
    local.stop()


# -- the registry ----------------------------------------------------------------


def test_every_mirror_file_is_registered_and_every_entry_is_in_the_mirror():
    on_disk = {
        p.relative_to(MIRROR).as_posix()
        for p in MIRROR.rglob("*")
        if p.is_file() and p.name != "README.md" and "cifs" not in p.parts
    }
    registered = {datasets.info(n).path for n in datasets.names()}
    assert registered == on_disk
    for name in datasets.names():
        assert Path(datasets.info(name).path).name.startswith(name)


def test_registry_has_the_sets_the_issue_asks_for():
    wanted = {"matbench_mp_e_form", "oqmd_formation_enthalpy_train", "xenonpy58", "magpie"}
    wanted |= {"qm9", "iqspr_pubchemqc", "moses_train", "perov5_val", "matbench_phonons"}
    assert wanted <= set(datasets.names())
    assert datasets.names(kind="elements") == [
        "jarvis",
        "magpie",
        "mat2vec",
        "oliynyk",
        "xenonpy58",
    ]
    derived = [n for n in datasets.names() if datasets.info(n).url is None]
    assert derived == ["iqspr_pubchemqc", "qm9"]
    for name in derived:
        assert "derived" in datasets.info(name).origin


def test_unknown_name_suggests_close_matches():
    with pytest.raises(DatasetError, match="matbench_expt_gap") as info:
        datasets.load("matbench_exp_gap")
    assert "xenonscale.datasets.names()" in str(info.value)
    assert isinstance(info.value, XenonscaleError)
    with pytest.raises(ConfigError, match="kind"):
        datasets.names(kind="crystal")


def test_bad_entries_and_duplicates_are_rejected(monkeypatch):
    esol = datasets.info("esol")
    with pytest.raises(ConfigError, match="sha256"):
        dataclasses.replace(esol, sha256="abc")
    with pytest.raises(ConfigError, match="reader"):
        dataclasses.replace(esol, reader="xlsx")
    with pytest.raises(ConfigError, match="overwrite=True"):
        datasets.register(esol)
    monkeypatch.setattr(registry, "_DATASETS", dict(registry._DATASETS))
    mine = datasets.register(dataclasses.replace(esol, name="my_esol"))
    assert datasets.load("my_esol").shape == (mine.rows, 10)


# -- the mirror ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in datasets.names()],
)
def test_registered_dataset_verifies_and_loads(name):
    dataset = datasets.info(name)
    path = datasets.fetch(name)
    assert path == MIRROR / dataset.path
    frame = datasets.load(name)
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == dataset.rows
    columns = set(frame.columns)
    assert dataset.input_column is None or dataset.input_column in columns
    assert set(dataset.target_columns) <= columns


@pytest.mark.parametrize(("name", "rows"), sorted(MATBENCH_ROWS.items()))
def test_matbench_composition_sets(name, rows):
    frame = datasets.load(name)
    assert frame.shape == (rows, 2)
    assert frame.columns.tolist() == ["formula", "target"]
    assert pd.api.types.is_numeric_dtype(frame["target"])
    assert frame["formula"].notna().all()


def test_oqmd_train_keeps_its_real_outliers():
    frame = datasets.load("oqmd_formation_enthalpy_train")
    assert frame.shape == (239190, 2)
    assert frame["target"].min() < -190  # the README's -198.7 outlier, kept as is
    val = datasets.load("oqmd_formation_enthalpy_val")
    assert len(val) == 51255 and val["target"].max() > 40  # and its 43.5


def test_special_readers():
    smi = datasets.load("nci_first_5k")
    assert smi.columns.tolist() == ["smiles", "name"]
    assert smi.iloc[0].tolist() == ["CC1=CC(=O)C=CC1=O", "1"]

    phonons = datasets.load("matbench_phonons")
    assert phonons.columns.tolist() == ["structure", "last phdos peak"]
    assert "lattice" in phonons["structure"].iloc[0]

    dcdft = datasets.load("ase_dcdft")
    assert dcdft.index.name == "id" and dcdft.index[0] == 1
    assert dcdft.loc[1, "name"] == "H" and len(dcdft.loc[1, "numbers"]) == 4

    quasi = datasets.load("xenonpy_quasicrystal")
    assert quasi.index.name == "id" and quasi.index[0] == "mp-1077980"
    assert set(quasi["label"]) == {"OTHERS", "QC", "AC"}

    assert datasets.load("qm9", nrows=10).shape == (10, 20)
    with pytest.raises(ConfigError, match="read options"):
        datasets.load("ase_dcdft", nrows=3)
    with pytest.raises(DatasetError, match="cannot read dataset 'esol'"):
        datasets.load("esol", usecols=["no such column"])


def test_gzip_and_plain_copies_share_one_hash(tmp_path):
    plain = tmp_path / "perov5_val.csv"
    with gzip.open(MIRROR / "structures/perov5_val.csv.gz", "rb") as src:
        plain.write_bytes(src.read())
    expected = datasets.info("perov5_val").sha256
    assert datasets.content_sha256(plain) == expected
    assert datasets.content_sha256(MIRROR / "structures/perov5_val.csv.gz") == expected


# -- checksums -------------------------------------------------------------------


def test_checksum_mismatch_is_detected(tmp_path):
    mirror = tmp_path / "mirror"
    target = mirror / "molecules" / "esol.csv"
    target.parent.mkdir(parents=True)
    data = bytearray((MIRROR / "molecules/esol.csv").read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(ChecksumError) as info:
        datasets.fetch("esol", data_dir=mirror)
    message = str(info.value)
    assert str(target) in message
    assert datasets.info("esol").sha256 in message
    assert files.content_sha256(target) in message
    assert datasets.fetch("esol", data_dir=mirror, verify=False) == target


def test_truncated_gzip_is_a_checksum_error(tmp_path):
    target = tmp_path / "mirror" / "structures" / "perov5_val.csv.gz"
    target.parent.mkdir(parents=True)
    target.write_bytes((MIRROR / "structures/perov5_val.csv.gz").read_bytes()[:5000])
    with pytest.raises(ChecksumError, match="perov5_val"):
        datasets.fetch("perov5_val", data_dir=tmp_path / "mirror")


def test_hashes_are_memoised_by_path_size_and_mtime(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    target = mirror / "compositions" / "matbench_steels_yield.csv"
    target.parent.mkdir(parents=True)
    shutil.copy(MIRROR / "compositions/matbench_steels_yield.csv", target)
    calls = []
    real = files.content_sha256

    def counting(path):
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(files, "content_sha256", counting)
    for _ in range(3):
        datasets.fetch("matbench_steels_yield", data_dir=mirror)
    assert calls == [target]
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    datasets.fetch("matbench_steels_yield", data_dir=mirror)
    assert len(calls) == 2


# -- offline, derived files, downloads --------------------------------------------


def test_offline_without_mirror_names_dataset_url_and_variable(tmp_path, monkeypatch):
    _with_url(monkeypatch, "esol", CLOSED_PORT_URL)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailableError) as info:
        datasets.fetch("esol", data_dir=empty, cache_dir=tmp_path / "c")
    message = str(info.value)
    for part in ("'esol'", CLOSED_PORT_URL, "XENONSCALE_DATA_DIR", "molecules/esol.csv"):
        assert part in message
    assert not list((tmp_path / "c").rglob("esol*"))


def test_unset_mirror_and_no_download(tmp_path, monkeypatch):
    monkeypatch.delenv("XENONSCALE_DATA_DIR")
    with pytest.raises(DatasetUnavailableError, match="download=False") as info:
        datasets.load("matbench_glass", download=False)
    assert datasets.info("matbench_glass").url in str(info.value)


def test_derived_file_without_mirror_says_there_is_no_url(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        datasets.fetch("qm9", data_dir=tmp_path)
    message = str(info.value)
    assert "'qm9'" in message and "no public download URL" in message
    assert "XENONSCALE_DATA_DIR" in message and "qm9pack" in message


def test_download_goes_to_cache_and_second_call_needs_no_server(server, tmp_path, monkeypatch):
    shutil.copy(MIRROR / "molecules/esol.csv", server.root / "delaney-processed.csv")
    _with_url(monkeypatch, "esol", f"{server.url}/delaney-processed.csv")
    empty, cache = tmp_path / "empty", tmp_path / "c"
    empty.mkdir()
    path = datasets.fetch("esol", data_dir=empty, cache_dir=cache)
    assert path == cache / "datasets" / "molecules" / "esol.csv"
    assert path.read_bytes() == (MIRROR / "molecules/esol.csv").read_bytes()
    server.stop()
    assert datasets.fetch("esol", data_dir=empty, cache_dir=cache) == path
    assert len(datasets.load("esol", data_dir=empty, cache_dir=cache)) == 1128
    assert not list(cache.glob(".download-*"))


def test_plain_download_is_gzipped_for_a_gz_path(server, tmp_path, monkeypatch):
    with gzip.open(MIRROR / "structures/carbon24_val.csv.gz", "rb") as src:
        (server.root / "val.csv").write_bytes(src.read())
    _with_url(monkeypatch, "carbon24_val", f"{server.url}/val.csv")
    path = datasets.fetch("carbon24_val", data_dir=tmp_path / "none", cache_dir=tmp_path / "c")
    assert path.name == "carbon24_val.csv.gz"
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    frame = datasets.load("carbon24_val", data_dir=tmp_path / "none", cache_dir=tmp_path / "c")
    assert frame.shape == (2032, 2 + 1)


def test_download_with_wrong_content_is_rejected_and_not_cached(server, tmp_path, monkeypatch):
    (server.root / "esol.csv").write_text("smiles\nCCO\n")
    _with_url(monkeypatch, "esol", f"{server.url}/esol.csv")
    with pytest.raises(ChecksumError, match="expected"):
        datasets.fetch("esol", data_dir=tmp_path / "none", cache_dir=tmp_path / "c")
    assert not (tmp_path / "c" / "datasets" / "molecules" / "esol.csv").exists()
    missing = _with_url(monkeypatch, "esol", f"{server.url}/missing.csv")
    with pytest.raises(DatasetUnavailableError, match="404"):
        datasets.fetch("esol", data_dir=tmp_path / "none", cache_dir=tmp_path / "c")
    assert missing.url is not None
