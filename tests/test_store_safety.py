"""`-o` never deletes what is not ours; clashing column names; resume by resolved path.

A folder with a user's files (and the input itself) is refused as an output
and left byte-identical, through the library and the command line (`-o DIR`,
`-o .`), before any cluster starts; `--overwrite` replaces only a store
xenonscale wrote, and then only that store's own entries.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xenonscale
from xenonscale.cli.main import main
from xenonscale.engine import check_output, featurize_to_store
from xenonscale.errors import StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store.layout import StoreLocation, clear_store, store_state

SPEC = FeaturizerSpec.parse("composition", "classic")


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def user_folder(tmp_path, data_dir) -> Path:
    """A user's project folder: notes, a results file, and the input CSV itself."""
    folder = tmp_path / "project"
    (folder / "results").mkdir(parents=True)
    (folder / "notes.txt").write_text("three weeks of work\n")
    (folder / "results" / "fit.json").write_text('{"mae": 0.3}\n')
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").head(50)
    frame.to_csv(folder / "input.csv", index=False)
    return folder


def test_the_engine_refuses_a_folder_that_is_not_a_store(user_folder, dask_client):
    before = _snapshot(user_folder)
    for overwrite in (False, True):
        with pytest.raises(StoreError, match=r"refusing to write into .*not a xenonscale"):
            featurize_to_store(
                str(user_folder / "input.csv"),
                str(user_folder),
                SPEC,
                column="formula",
                client=dask_client,
                overwrite=overwrite,
                progress=False,
            )
    assert _snapshot(user_folder) == before


@pytest.mark.parametrize("where", ["DIR", "."])
def test_the_cli_refuses_dir_and_dot_before_any_cluster(user_folder, monkeypatch, capsys, where):
    import xenonscale.cluster

    started = []
    monkeypatch.setattr(xenonscale.cluster, "get_client", lambda *a, **k: started.append(1))
    monkeypatch.chdir(user_folder)
    before = _snapshot(user_folder)
    output = str(user_folder) if where == "DIR" else "."
    for extra in ([], ["--overwrite"]):
        code = main(["featurize", "input.csv", "-o", output, "--column", "formula", *extra])
        err = capsys.readouterr().err.strip()
        assert code == 2
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "not a xenonscale feature store" in err and "nothing was changed" in err
    assert started == []
    assert _snapshot(user_folder) == before


def test_overwrite_replaces_a_store_and_only_its_own_entries(tmp_path, data_dir, dask_client):
    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    store = tmp_path / "s.zarr"
    kwargs = dict(column="formula", client=dask_client, progress=False)
    featurize_to_store(source, str(store), SPEC, **kwargs)
    assert store_state(StoreLocation(str(store))) == "store"
    other = FeaturizerSpec.parse("composition", "Counting")
    job = featurize_to_store(source, str(store), other, overwrite=True, **kwargs)
    assert job.features == len(other.build().labels)
    # a user's file dropped into a store makes it foreign: never overwritten, never cleared
    (store / "mine.txt").write_text("keep me")
    with pytest.raises(StoreError, match="not a xenonscale feature store"):
        featurize_to_store(source, str(store), SPEC, overwrite=True, **kwargs)
    with pytest.raises(StoreError, match="refusing to remove"):
        clear_store(StoreLocation(str(store)))
    assert (store / "mine.txt").read_text() == "keep me"


def test_outputs_that_are_files_or_under_files_are_refused(tmp_path):
    a_file = tmp_path / "table.csv"
    a_file.write_text("x\n1\n")
    with pytest.raises(StoreError, match="is an existing file"):
        check_output(str(a_file))
    with pytest.raises(StoreError, match=r"table\.csv' is a file, not a folder"):
        check_output(str(a_file / "sub" / "out.zarr"))
    assert a_file.read_text() == "x\n1\n"
    assert check_output(str(tmp_path / "new.zarr")) == "absent"
    (tmp_path / "empty").mkdir()
    assert check_output(str(tmp_path / "empty")) == "empty"


def test_a_read_only_folder_gives_one_clear_line(tmp_path, data_dir, capsys):
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes through permission bits: mount a read-only tmpfs
        made = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
            capture_output=True,
        )
        if made.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {made.stderr.decode().strip()}")
    else:
        folder.chmod(0o500)
    try:
        source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
        code = main(["featurize", source, "-o", str(folder / "s.zarr"), "--column", "formula"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert err[0].startswith("xenonscale: error: cannot create the store folder")
        assert "not writable (read-only file system or permissions)" in err[0]
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(folder)], check=False)


def test_clashing_source_columns_are_renamed_with_a_prefix(tmp_path, data_dir, dask_client):
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").head(40)
    rng = np.random.default_rng(0)
    clash = {name: rng.normal(size=len(frame)) for name in ("ok", "errors", "features", "sample")}
    source = tmp_path / "clash.csv"
    frame.assign(**clash, **{"a/b": "x", "_hidden": 1.5}).to_csv(source, index=False)
    store = str(tmp_path / "clash.zarr")
    with pytest.warns(UserWarning, match="renamed"):
        job = featurize_to_store(
            str(source), store, SPEC, column="formula", client=dask_client, progress=False
        )
    assert job.rows == 40
    ds = xenonscale.open_store(store)
    for name, values in clash.items():
        np.testing.assert_allclose(ds[f"source_{name}"].values, values)
    assert ds["ok"].dtype == bool and ds.ok.values.all()
    assert (ds["source_a_b"].values == "x").all()
    assert (ds["source__hidden"].values == 1.5).all()
    assert ds.attrs["renamed_columns"]["errors"] == "source_errors"
    assert len(xenonscale.read_errors(store)) == 0  # the error table is the store's own
    assert "a" not in ds.variables


def test_the_same_file_named_three_ways_resumes(tmp_path, data_dir, dask_client, monkeypatch):
    (tmp_path / "csv").mkdir()
    target = tmp_path / "csv" / "x.csv"
    target.write_bytes((data_dir / "compositions" / "matbench_steels_yield.csv").read_bytes())
    store = str(tmp_path / "x.zarr")
    kwargs = dict(column="formula", client=dask_client, progress=False, partition_rows=100)
    monkeypatch.chdir(tmp_path)
    first = featurize_to_store("csv/x.csv", store, SPEC, chunk_rows=100, **kwargs)
    again = featurize_to_store("./csv/x.csv", store, SPEC, chunk_rows=100, **kwargs)
    monkeypatch.chdir(tmp_path / "csv")
    third = featurize_to_store(str(target), store, SPEC, chunk_rows=100, **kwargs)
    assert first.resumed_partitions == 0
    assert again.resumed_partitions == third.resumed_partitions == first.partitions
    assert xr.open_zarr(store).attrs["source"]["url"] == str(target.resolve())


def test_a_full_disk_gives_one_clear_line_and_the_rerun_resumes(tmp_path, data_dir, capsys):
    import subprocess

    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        source = str(data_dir / "compositions" / "matbench_expt_gap.csv")
        args = ["featurize", source, "-o", str(mount / "s.zarr"), "--column", "formula"]
        code = main([*args, "--workers", "1", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert "No space left on device" in err[-1] and "rerun the same command" in err[-1]
        assert err[-1].startswith("xenonscale: error: cannot write rows")
    finally:
        subprocess.run(["umount", str(mount)], check=False)
