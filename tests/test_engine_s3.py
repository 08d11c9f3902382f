"""Sources and stores on ``s3://`` (fsspec/s3fs) against a local S3 API server.

The server is moto's server mode (:class:`moto.server.ThreadedMotoServer`) on
127.0.0.1, started and stopped by a fixture of this module. Credentials and
the endpoint travel in ``storage_options`` (they are pickled into the tasks),
because the workers of the session's embedded cluster (``dask_client``)
started before this module and do not see environment changes.

Data: real Matbench ``expt_gap`` formulas (4,604 rows) with three bad lines
injected, gzip-compressed, as ``in.csv.gz``; the reference is the same job on
the same bytes on the local disk.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xenonscale
from xenonscale.engine import featurize_to_store
from xenonscale.featurize.registry import FeaturizerSpec

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
JOB = dict(column="formula", chunk_rows=500, partition_rows=1000, progress=False)
# (position in the data lines, line): unknown element, broken bracket, empty cell
BAD_LINES = [(0, "Xx2O3,1.0"), (1500, "Fe2(SO4,2.0"), (4000, ",3.0")]
ROWS = 4_604 + len(BAD_LINES)
PARTITIONS = -(-ROWS // 1000)


@pytest.fixture
def s3(s3_bucket):
    """``(bucket URL, storage_options, s3fs filesystem)`` for a fresh bucket."""
    import s3fs

    bucket, options = s3_bucket
    return bucket, options, s3fs.S3FileSystem(**options, skip_instance_cache=True)


@pytest.fixture(scope="module")
def gap_gz(tmp_path_factory, data_dir) -> Path:
    """Real Matbench expt_gap formulas + BAD_LINES, gzip-compressed."""
    text = (data_dir / "compositions" / "matbench_expt_gap.csv").read_text()
    header, *lines = text.splitlines()
    assert header == "formula,target" and len(lines) == 4_604
    for position, line in BAD_LINES:
        lines.insert(position, line)
    path = tmp_path_factory.mktemp("s3data") / "in.csv.gz"
    path.write_bytes(gzip.compress((header + "\n" + "\n".join(lines) + "\n").encode(), mtime=0))
    return path


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, gap_gz, dask_client) -> str:
    """The reference: the same job with the source and the store on the local disk."""
    store = str(tmp_path_factory.mktemp("s3ref") / "local.zarr")
    job = featurize_to_store(str(gap_gz), store, SPEC, client=dask_client, **JOB)
    assert (job.rows, job.errors, job.partitions) == (ROWS, len(BAD_LINES), PARTITIONS)
    return store


def _fresh(fs):
    fs.invalidate_cache()  # other processes (workers, the CLI) wrote objects meanwhile
    return fs


def assert_same_arrays(got: xr.Dataset, want: xr.Dataset) -> None:
    """Same variables, dims, chunks; every array bit-identical (NaN payloads included)."""
    assert got.attrs["complete"] is True
    assert set(got.variables) == set(want.variables)
    assert {"features", "ok", "id", "input", "target"} <= set(got.variables)
    for key in ("rows", "featurizer", "element_tables", "featurized", "errors", "chunk_rows"):
        assert got.attrs[key] == want.attrs[key], key
    for name in got.variables:
        a, b = got[name], want[name]
        assert (a.dims, a.shape, a.dtype, a.chunks) == (b.dims, b.shape, b.dtype, b.chunks), name
        x, y = a.values, b.values
        if x.dtype.kind in "fiub":
            if x.tobytes() != y.tobytes():
                np.testing.assert_array_equal(x, y, err_msg=name)
                pytest.fail(f"{name}: equal values but different bits")
        else:
            np.testing.assert_array_equal(x, y, err_msg=name)


def _plain_xarray(url: str, options: dict) -> xr.Dataset:
    """Open with zarr + xarray only (no xenonscale)."""
    from zarr.storage import FsspecStore

    return xr.open_zarr(FsspecStore.from_url(url, storage_options=options, read_only=True))


@pytest.mark.timeout(120)
def test_s3_source_to_s3_store_equals_the_local_run_and_resumes(
    s3, gap_gz, local_store, dask_client
):
    bucket, options, fs = s3
    fs.put(str(gap_gz), f"{bucket}/in.csv.gz")
    source, store = f"{bucket}/in.csv.gz", f"{bucket}/out.zarr"
    job = featurize_to_store(
        source,
        store,
        SPEC,
        client=dask_client,
        storage_options=options,
        source_options={"storage_options": options},
        **JOB,
    )
    assert (job.rows, job.featurized + job.errors, job.errors) == (ROWS, ROWS, len(BAD_LINES))
    assert (job.partitions, job.resumed_partitions) == (PARTITIONS, 0)

    # the objects are in the bucket: a Zarr v3 group + the engine's bookkeeping
    objects = _fresh(fs).find(store.removeprefix("s3://"))
    names = {o.split("/out.zarr/", 1)[1] for o in objects}
    assert {"zarr.json", "features/zarr.json", "_xenonscale/manifest.json"} <= names
    assert sum(n.startswith("_xenonscale/done/") for n in names) == PARTITIONS
    assert "_xenonscale/lock.json" not in names  # released

    local = xenonscale.open_store(local_store)
    assert_same_arrays(xenonscale.open_store(store, storage_options=options), local)
    assert_same_arrays(_plain_xarray(store, options), local)
    errors = xenonscale.read_errors(store, storage_options=options)
    pd.testing.assert_frame_equal(errors, xenonscale.read_errors(local_store))
    assert errors["row"].tolist() == [position for position, _ in BAD_LINES]
    assert xenonscale.open_store(store, storage_options=options).attrs["source"]["url"] == source

    # the same job again: every region is already done, nothing is rewritten
    again = featurize_to_store(
        source,
        store,
        SPEC,
        client=dask_client,
        storage_options=options,
        source_options={"storage_options": options},
        **JOB,
    )
    assert (again.rows, again.partitions, again.resumed_partitions) == (
        ROWS,
        PARTITIONS,
        PARTITIONS,
    )
    assert not _fresh(fs).exists(f"{store}/_xenonscale/lock.json")
    assert_same_arrays(_plain_xarray(store, options), local)


@pytest.mark.timeout(120)
def test_local_source_to_s3_store(s3, gap_gz, local_store, dask_client):
    bucket, options, _ = s3
    store = f"{bucket}/from-local.zarr"
    job = featurize_to_store(
        str(gap_gz), store, SPEC, client=dask_client, storage_options=options, **JOB
    )
    assert (job.rows, job.errors, job.resumed_partitions) == (ROWS, len(BAD_LINES), 0)
    got = xenonscale.open_store(store, storage_options=options)
    want = xenonscale.open_store(local_store)
    assert_same_arrays(got, want)
    assert got.attrs["source_fingerprint"] == want.attrs["source_fingerprint"]
    pd.testing.assert_frame_equal(
        xenonscale.read_errors(store, storage_options=options),
        xenonscale.read_errors(local_store),
    )


@pytest.mark.timeout(120)
def test_cli_on_s3_with_storage_options_resumes(s3, gap_gz, local_store, dask_client):
    """``xenonscale featurize s3://... -o s3://... --storage-options JSON --scheduler ...``."""
    bucket, options, fs = s3
    fs.put(str(gap_gz), f"{bucket}/data/in.csv.gz")
    source, store = f"{bucket}/data/in.csv.gz", f"{bucket}/cli.zarr"
    command = [
        str(Path(sys.executable).parent / "xenonscale"), "featurize", source, "-o", store,
        "--column", "formula", "--featurizers", "classic", "--elements", "xenonpy58",
        "--scheduler", dask_client.scheduler.address, "--chunk-rows", "500",
        "--partition-rows", "1000", "--storage-options", json.dumps(options), "--no-progress",
    ]  # fmt: skip
    summary = re.compile(r"([\d,]+) rows → .* \((\d+) partitions, (\d+) already done\)")
    done = []
    for _ in range(2):
        result = subprocess.run(command, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0, result.stdout + result.stderr
        match = summary.search(result.stdout)
        assert match, result.stdout + result.stderr
        assert (match[1], int(match[2])) == (f"{ROWS:,}", PARTITIONS)
        done.append(int(match[3]))
    assert done == [0, PARTITIONS]  # the rerun resumed: every partition already done
    assert_same_arrays(_plain_xarray(store, options), xenonscale.open_store(local_store))
