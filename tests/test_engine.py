"""The engine end to end on a real cluster: nothing lost, bit-identical, resumable, guarded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xenonscale
from xenonscale.engine import featurize_to_store
from xenonscale.engine.bookkeeping import JobLock
from xenonscale.errors import StoreError, StoreLockedError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store.layout import StoreLocation

SPEC = FeaturizerSpec.parse("composition", "classic,magpie", elements="xenonpy58")

# (line to inject, why it must fail)
BAD_LINES = [
    ("Xx2O3,1.0", "unknown element"),
    ("Fe2(SO4,2.0", "never closed"),
    (",3.0", "empty"),
    ("\ufffd\ufffdFe2O3,4.0", "unexpected character"),
    ("NaCl)", "without an opening"),  # truncated line: no target field
]


@pytest.fixture(scope="module")
def dirty_csv(tmp_path_factory, data_dir):
    """Real Matbench formulas with bad lines injected at known positions."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    lines = [f"{f},{t!r}" for f, t in zip(frame.formula, frame.target, strict=True)]
    positions = [0, 999, 2500, 2501, len(lines) + 4]
    for pos, (line, _) in zip(positions, BAD_LINES, strict=True):
        lines.insert(pos, line)
    path = tmp_path_factory.mktemp("dirty") / "expt_gap_dirty.csv"
    body = "formula,target\n" + "\n".join(lines) + "\n"
    path.write_bytes(body.encode().replace("\ufffd\ufffd".encode(), b"\xff\xfe"))
    return path, positions, lines


def _expected(lines):
    """The in-memory featurizer on the same rows, as the reference."""
    formulas = [line.rsplit(",", 1)[0] if line.count(",") else line for line in lines]
    return SPEC.build().featurize_batch(formulas)


def test_nothing_lost_and_bit_identical(tmp_path, dask_client, dirty_csv):
    path, positions, lines = dirty_csv
    store = tmp_path / "gap.zarr"
    job = featurize_to_store(
        str(path),
        str(store),
        SPEC,
        column="formula",
        client=dask_client,
        chunk_rows=500,
        partition_rows=1000,
        progress=False,
    )
    assert job.rows == len(lines)
    assert job.featurized + job.errors == job.rows
    assert job.errors == len(BAD_LINES)

    errors = xenonscale.read_errors(str(store))
    assert errors["row"].tolist() == sorted(positions)
    for row, (_, why) in zip(positions, BAD_LINES, strict=True):
        assert why in errors.set_index("row").loc[row, "error"]

    ds = xr.open_zarr(store)  # plain xarray, no xenonscale
    assert ds.features.dtype == np.float32
    assert ds.features.shape == (len(lines), len(SPEC.build().labels))
    assert list(ds.feature.values) == SPEC.build().labels
    assert ds.features.chunks[0][0] == 500
    reference = _expected(lines)
    np.testing.assert_array_equal(ds.ok.values, reference.ok)
    np.testing.assert_array_equal(ds.features.values, reference.values.astype(np.float32))
    assert ds.ok.values.sum() == job.featurized
    good = ds.ok.values
    np.testing.assert_allclose(
        ds.target.values[good],
        [float(line.rsplit(",", 1)[1]) for line, g in zip(lines, good, strict=True) if g],
    )
    assert ds.attrs["complete"] is True
    assert ds.attrs["element_table"] == "xenonpy58, magpie_imputed"
    assert ds.attrs["featurizer"]["names"] == ["classic", "magpie"]


def test_rerun_resumes_and_spec_change_is_refused(tmp_path, dask_client, data_dir):
    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    store = str(tmp_path / "steels.zarr")
    kwargs = dict(
        column="formula", client=dask_client, chunk_rows=50, partition_rows=100, progress=False
    )
    first = featurize_to_store(source, store, SPEC, **kwargs)
    before = xr.open_zarr(store).features.values
    # lose two finished regions (as after a crash), then rerun the same job
    location = StoreLocation(store)
    for index in (1, 2):
        location.fs.rm(location.path("_xenonscale", "done", f"{index:06d}.json"))
    import zarr

    zarr.open_group(store, mode="r+")["features"][100:300] = np.nan
    second = featurize_to_store(source, store, SPEC, **kwargs)
    assert second.resumed_partitions == first.partitions - 2
    np.testing.assert_array_equal(xr.open_zarr(store).features.values, before)

    other = FeaturizerSpec.parse("composition", "pooling", elements="xenonpy58")
    with pytest.raises(StoreError, match=r"different spec.*--overwrite"):
        featurize_to_store(source, store, other, **kwargs)
    third = featurize_to_store(source, store, other, overwrite=True, **kwargs)
    assert third.resumed_partitions == 0
    assert xr.open_zarr(store).features.shape == (312, 406)


def test_a_second_job_on_the_same_store_is_refused(tmp_path, dask_client, data_dir):
    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    store = str(tmp_path / "busy.zarr")
    with (
        JobLock(StoreLocation(store)),  # a live job (this process) holds the store
        pytest.raises(StoreLockedError, match="another featurize job"),
    ):
        featurize_to_store(
            source, store, SPEC, column="formula", client=dask_client, progress=False
        )
    job = featurize_to_store(
        source, store, SPEC, column="formula", client=dask_client, progress=False
    )
    assert job.rows == 312


def test_empty_source_gives_an_empty_complete_store(tmp_path, dask_client):
    path = tmp_path / "empty.csv"
    path.write_text("formula,target\n")
    store = str(tmp_path / "empty.zarr")
    job = featurize_to_store(
        str(path), store, SPEC, column="formula", client=dask_client, progress=False
    )
    assert (job.rows, job.featurized, job.errors) == (0, 0, 0)
    assert xenonscale.open_store(store).features.shape[0] == 0
    assert len(xenonscale.read_errors(store)) == 0


def test_compression_choices_give_the_same_values(tmp_path, dask_client, data_dir):
    import zarr

    from xenonscale.errors import ConfigError

    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    kwargs = dict(column="formula", client=dask_client, chunk_rows=100, progress=False)
    values, codecs = {}, {}
    for compression in ("lz4", "zstd", "none"):
        store = str(tmp_path / f"{compression}.zarr")
        featurize_to_store(source, store, SPEC, compression=compression, **kwargs)
        values[compression] = xr.open_zarr(store).features.values
        assert xr.open_zarr(store).attrs["compression"] == compression
        codecs[compression] = zarr.open_group(store, mode="r")["features"].compressors
    assert values["lz4"].tobytes() == values["zstd"].tobytes() == values["none"].tobytes()
    assert codecs["lz4"][0].cname.value == "lz4" and codecs["zstd"][0].cname.value == "zstd"
    assert codecs["none"] == ()
    with pytest.raises(ConfigError, match=r"'brotli'.*lz4, zstd, none"):
        featurize_to_store(source, str(tmp_path / "x.zarr"), SPEC, compression="brotli", **kwargs)


def test_a_store_whose_creation_was_interrupted_is_rebuilt(tmp_path, dask_client, data_dir):
    """A crash after the Zarr group exists but before the manifest: the rerun starts over."""
    import zarr

    source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
    store = str(tmp_path / "half.zarr")
    kwargs = dict(column="formula", client=dask_client, progress=False)
    reference = featurize_to_store(source, str(tmp_path / "ref.zarr"), SPEC, **kwargs)
    featurize_to_store(source, store, SPEC, **kwargs)
    location = StoreLocation(store)
    location.fs.rm(location.path("_xenonscale"), recursive=True)  # no manifest, no markers
    zarr.open_group(store, mode="r+").attrs["complete"] = False
    job = featurize_to_store(source, store, SPEC, **kwargs)
    assert (job.rows, job.resumed_partitions) == (reference.rows, 0)
    np.testing.assert_array_equal(
        xr.open_zarr(store).features.values, xr.open_zarr(str(tmp_path / "ref.zarr")).features
    )
    # a Zarr group that xenonscale did not write is never replaced silently
    foreign = str(tmp_path / "foreign.zarr")
    zarr.open_group(foreign, mode="w").attrs["title"] = "someone else's data"
    with pytest.raises(StoreError, match=r"not a xenonscale feature store"):
        featurize_to_store(source, foreign, SPEC, **kwargs)
    # ... not even with overwrite=True: it replaces only stores xenonscale wrote
    with pytest.raises(StoreError, match=r"--overwrite replaces only xenonscale stores"):
        featurize_to_store(source, foreign, SPEC, overwrite=True, **kwargs)
    assert zarr.open_group(foreign, mode="r").attrs["title"] == "someone else's data"


def test_embedded_workers_run_without_dasks_malloc_trim_threshold(dask_client):
    """Dask's MALLOC_TRIM_THRESHOLD_=65536 costs page faults per row: not set on our workers."""
    import os

    seen = set(dask_client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_")).values())
    assert seen == {os.environ.get("MALLOC_TRIM_THRESHOLD_")}
