"""Similarity search and applicability domain over a FeatureStore (issue #17, part 3).

The store: the first 100,000 formulas of OQMD's formation-enthalpy training file
(the mirror's ``compositions/oqmd_formation_enthalpy_train.csv``, 239,190 real
rows: none repeated or invented), featurized with ``Counting`` (103 element
counts) through the engine once per module. Answers are checked against brute
force in numpy: float64 distances from each query to every row of the same
standardized float32 matrix, equal distances allowed in any order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from click.testing import CliRunner
from distributed import Client

faiss = pytest.importorskip("faiss", reason="faiss-cpu missing: pip install 'xenonscale[index]'")

from xenonscale.cli.similarity import index as index_command  # noqa: E402
from xenonscale.cli.similarity import similar  # noqa: E402
from xenonscale.engine import featurize_to_store, sync_store  # noqa: E402
from xenonscale.errors import ConfigError, StoreError  # noqa: E402
from xenonscale.featurize.registry import FeaturizerSpec  # noqa: E402
from xenonscale.store.layout import STORE_TITLE, WITHDRAWN, StoreLocation, store_state  # noqa: E402
from xenonscale.store.similarity import build_index, open_index  # noqa: E402
from xenonscale.store.writer import create_store, finalize_store, write_region  # noqa: E402

ROWS = 100_000
SPEC = FeaturizerSpec.parse("composition", "Counting")
OQMD = "compositions/oqmd_formation_enthalpy_train.csv"
QUERIES = 50
K = 10
TOL = 1e-6


@pytest.fixture(scope="module")
def client():
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        yield c


@pytest.fixture(scope="module")
def oqmd(tmp_path_factory, data_dir, client):
    """The 100,000-row store with its l2 index (built once)."""
    folder = tmp_path_factory.mktemp("oqmd")
    frame = pd.read_csv(data_dir / OQMD, nrows=ROWS)
    assert len(frame) == ROWS and frame["formula"].is_unique
    frame.to_csv(folder / "oqmd.csv", index=False)
    store = str(folder / "oqmd.zarr")
    summary = featurize_to_store(
        str(folder / "oqmd.csv"), store, SPEC, column="formula", client=client, progress=False
    )
    assert summary.rows == ROWS
    build_index(store, progress=False)
    return store


@pytest.fixture(scope="module")
def values(oqmd):
    group = zarr.open_group(oqmd, mode="r")
    return np.asarray(group["features"][:], dtype=np.float64), np.asarray(group["ok"][:], bool)


@pytest.fixture(scope="module")
def queries(values):
    _, ok = values
    return np.random.default_rng(17).choice(np.flatnonzero(ok), QUERIES, replace=False)


def _brute_matrix(features: np.ndarray, ok: np.ndarray, metric: str) -> np.ndarray:
    """What the index should hold, by numpy: NaN → column mean, z-scores (numpy's mean and
    population std of the ok rows; constant columns std 1), unit rows for cosine."""
    mean = np.nanmean(features[ok], axis=0)
    std = np.nanstd(features[ok], axis=0)
    constant = np.nanmin(features[ok], axis=0) == np.nanmax(features[ok], axis=0)
    std = np.where(constant, 1.0, std)
    z = (np.where(np.isnan(features), mean, features) - mean) / std
    if metric == "cosine":
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
    z = z.astype(np.float32).astype(np.float64)
    z[~ok] = np.nan
    return z


def _brute_distances(z: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    d = np.sqrt(((z - query) ** 2).sum(axis=1)) if metric == "l2" else 1.0 - z @ query
    return np.where(np.isnan(d), np.inf, d)


def _assert_k_nearest(everything: np.ndarray, distances: np.ndarray, rows: np.ndarray) -> None:
    """``rows`` are k nearest by brute force: the k smallest distances, each row at its
    reported distance, and every row strictly nearer than the k-th among them."""
    k = len(rows)
    ranked = np.sort(everything)
    np.testing.assert_allclose(distances, ranked[:k], rtol=0, atol=TOL)
    np.testing.assert_allclose(everything[rows], distances, rtol=0, atol=TOL)
    assert len(set(rows.tolist())) == k
    assert set(np.flatnonzero(everything < ranked[k - 1] - TOL)) <= set(rows.tolist())


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_k_nearest_neighbours_match_brute_force(oqmd, values, queries, metric, tmp_path):
    store = oqmd
    if metric == "cosine":  # its own copy: the l2 index stays for the other tests
        store = str(tmp_path / "cosine.zarr")
        shutil.copytree(oqmd, store)
        build_index(store, metric="cosine", progress=False)
    index = open_index(store)
    features, ok = values
    assert len(index) == ok.sum() == ROWS
    z = _brute_matrix(features, ok, metric)
    by_row = index.search_rows(queries, K, exclude_self=False)
    by_vector = index.search(features[queries], K)
    without_self = index.search_rows(queries, K)
    for i, query in enumerate(queries):
        everything = _brute_distances(z, z[query], metric)
        _assert_k_nearest(everything, by_row[0][i], by_row[1][i])
        np.testing.assert_array_equal(by_vector[1][i], by_row[1][i])
        everything[query] = np.inf
        _assert_k_nearest(everything, without_self[0][i], without_self[1][i])
        assert query not in without_self[1][i]
    if metric == "l2":
        np.testing.assert_allclose(index.transform(features[queries]), z[queries], atol=0)
        near = index.distance_to_training(features[queries], k=3)
        np.testing.assert_allclose(near, by_row[0][:, :3].mean(axis=1), atol=TOL)
        assert (index.distance_to_training(features[queries]) == 0).all()  # indexed rows
        assert set(index.reference) == {"sample", "0.5", "0.9", "0.95", "0.99", "1.0"}
        assert 0 < index.reference["0.5"] <= index.reference["0.99"] <= index.reference["1.0"]


def test_standardization_uses_numpys_mean_and_std(oqmd, values):
    features, ok = values
    index = open_index(oqmd)
    mean = np.nanmean(features[ok], axis=0)
    std = np.nanstd(features[ok], axis=0)
    constant = features[ok].min(axis=0) == features[ok].max(axis=0)
    assert 0 < constant.sum() < len(constant)  # elements absent from these formulas
    np.testing.assert_allclose(index.means, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(index.stds[~constant], std[~constant], rtol=1e-12)
    assert (index.stds[constant] == 1).all()


def _hand_store(path: str) -> np.ndarray:
    """Six rows × four features: NaN in ok rows, a constant column, an all-NaN column, a
    failed row (4) and a withdrawn one (5)."""
    nan = np.nan
    features = np.array(
        [[1, nan, 5, nan], [2, 4, nan, nan], [3, 6, 5, nan], [nan, nan, 5, nan],
         [nan, nan, nan, nan], [4, 8, 5, nan]]
    )  # fmt: skip
    ok = np.array([True, True, True, True, False, True])
    location = StoreLocation(path)
    attrs = {"title": STORE_TITLE, "featurizer": SPEC.to_dict(), "created": "2026-01-01"}
    create_store(location, rows=6, labels=list("abcd"), extras={}, chunk_rows=4, attrs=attrs)
    frame = pd.DataFrame({"id": list("uvwxyz"), "input": ["r0", "r1", "r2", "r3", "r4", "r5"]})
    write_region(location, 0, frame.iloc[:4], features[:4], ok[:4], extras={})
    write_region(location, 4, frame.iloc[4:], features[4:], ok[4:], extras={})
    group = zarr.open_group(location.zarr_store(), mode="r+")
    withdrawn = group.create_array(WITHDRAWN, shape=(6,), chunks=(4,), dtype="bool")
    withdrawn[:] = [False] * 5 + [True]
    errors = pd.DataFrame({"row": [4], "input": ["r4"], "error": ["test: failed"]})
    finalize_store(location, errors, {})
    return features


def test_nan_becomes_the_column_mean_and_failed_or_withdrawn_rows_are_left_out(tmp_path):
    store = str(tmp_path / "hand.zarr")
    features = _hand_store(store)
    info = build_index(store, progress=False)
    assert (info.rows, info.skipped) == (4, 2)
    index = open_index(store)
    np.testing.assert_array_equal(index.rows, [0, 1, 2, 3])
    np.testing.assert_allclose(index.means, [2, 5, 5, 0])
    np.testing.assert_allclose(index.stds, [np.std([1, 2, 3]), 1, 1, 1])
    filled = np.where(np.isnan(features), [[2, 5, 5, 0]], features)
    z = (filled - [2, 5, 5, 0]) / index.stds
    np.testing.assert_allclose(index.transform(features[:4]), z[:4], rtol=1e-6)
    distances, rows = index.search(features[:4], k=4)
    for i in range(4):
        everything = np.sqrt(((z[:4] - z[i]) ** 2).sum(axis=1))
        _assert_k_nearest(everything, distances[i], rows[i])
    distances, rows = index.search(np.full((1, 4), np.nan), k=1)  # all means: row 3 exactly
    assert rows.tolist() == [[3]] and distances[0, 0] == 0
    _, rows = index.search_rows([5], k=4)  # a withdrawn row may ask; it is never an answer
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3]
    with pytest.raises(StoreError, match=r"row 4 .* failed featurization"):
        index.search_rows([4], k=1)


def test_a_missing_or_stale_index_is_refused(tmp_path, data_dir, client):
    frame = pd.read_csv(data_dir / OQMD, nrows=2_100)
    frame.iloc[:2_000].to_csv(tmp_path / "v1.csv", index=False)
    store = str(tmp_path / "small.zarr")
    featurize_to_store(
        str(tmp_path / "v1.csv"), store, SPEC, column="formula", client=client, progress=False
    )
    with pytest.raises(StoreError, match="has no similarity index: run `xenonscale index"):
        open_index(store)
    build_index(store, progress=False)
    assert len(open_index(store)) == 2_000
    assert store_state(StoreLocation(store)) == "store"  # index/ is the store's own
    changed = frame.copy()
    changed.loc[7, "formula"] = "NaCl"
    changed.to_csv(tmp_path / "v2.csv", index=False)  # one record changed, 100 new
    summary = sync_store(str(tmp_path / "v2.csv"), store, client=client, progress=False)
    assert (summary.new, summary.modified) == (100, 1)
    with pytest.raises(StoreError, match=r"is stale: .* run `xenonscale index .*` again"):
        open_index(store)
    result = CliRunner().invoke(similar, [store, "row:7"])
    assert result.exit_code == 2 and "is stale" in result.output
    build_index(store, progress=False)
    index = open_index(store)
    assert len(index) == 2_100
    batch = index.featurize(["NaCl"])
    assert index.search(batch.values, 1)[1].tolist() == [[7]]
    flat = tmp_path / "small.zarr" / "_xenonscale" / "index" / "flat.faiss"
    data = bytearray(flat.read_bytes())
    data[-1] ^= 0xFF
    flat.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"does not match index\.json"):
        open_index(store)
    (flat.parent / "rows.npy").unlink()
    with pytest.raises(StoreError, match=r"lacks .*rows\.npy .* run `xenonscale index"):
        open_index(store)


def test_the_index_files_are_not_pickle(oqmd, values):
    folder = StoreLocation(oqmd).path("_xenonscale", "index")
    names = sorted(p.name for p in Path(folder).iterdir())
    assert names == ["flat.faiss", "index.json", "rows.npy"]
    rows = np.load(Path(folder) / "rows.npy", allow_pickle=False)
    np.testing.assert_array_equal(rows, np.flatnonzero(values[1]))
    meta = json.loads((Path(folder) / "index.json").read_text())
    assert meta["metric"] == "l2" and meta["standardize"] is True and meta["features"] == 103
    assert (Path(folder) / "flat.faiss").read_bytes()[:4] == b"IxF2"  # faiss's own fourcc
    assert faiss.read_index(str(Path(folder) / "flat.faiss")).ntotal == ROWS


def test_bad_arguments_are_one_line_errors(oqmd, tmp_path):
    index = open_index(oqmd)
    with pytest.raises(ConfigError, match=r"k=0: ask for 1 or more"):
        index.search(np.zeros((1, 103)), 0)
    with pytest.raises(ConfigError, match=r"shape \(2, 5\) .* give \[n, 103\]"):
        index.search(np.zeros((2, 5)), 1)
    with pytest.raises(ConfigError, match=r"row 100000 is not in store"):
        index.search_rows([ROWS], 1)
    with pytest.raises(ConfigError, match="metric='cos' is unknown: use one of l2, cosine"):
        build_index(oqmd, metric="cos", progress=False)
    with pytest.raises(StoreError, match="no feature store at"):
        build_index(str(tmp_path / "nothing.zarr"), progress=False)


def test_the_commands(oqmd, data_dir):
    runner = CliRunner()
    result = runner.invoke(index_command, [oqmd, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "100,000 rows × 103 features indexed, l2, standardized" in result.output
    assert "MiB on disk" in result.output
    index = open_index(oqmd)

    def answer(*args) -> pd.DataFrame:
        result = runner.invoke(similar, [oqmd, *args, "--json"])
        assert result.exit_code == 0, result.output
        return pd.DataFrame(json.loads(result.output))

    by_row = answer("row:123", "-k", "5")
    distances, rows = index.search_rows([123], 5)
    assert by_row["row"].tolist() == rows[0].tolist() and by_row["rank"].tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(by_row["distance"], distances[0])
    assert by_row["id"].tolist() == index.records(rows[0])["id"].tolist()
    by_id = answer(f"id:{index.records([123])['id'][0]}", "-k", "5")
    pd.testing.assert_frame_equal(by_id, by_row)
    with_self = answer("row:123", "-k", "1", "--include-self")
    assert with_self["row"].tolist() == [123] and with_self["distance"][0] == 0
    formula = pd.read_csv(data_dir / OQMD, nrows=11)["formula"][10]
    raw = answer(formula, "-k", "3")  # a formula of the store: its own row at distance 0
    assert raw["distance"][0] == 0 and 10 in raw["row"][raw["distance"] == 0].tolist()
    assert raw.set_index("row")["input"][10] == formula == "Ga1Hg2Li1"
    fe2o3 = answer("Fe2O3", "-k", "4")
    distances, rows = index.search(index.featurize(["Fe2O3"]).values, 4)
    assert fe2o3["row"].tolist() == rows[0].tolist()
    table = runner.invoke(similar, [oqmd, "Fe2O3", "-k", "2"])
    assert table.exit_code == 0 and "rank" in table.output and "distance" in table.output
    bad = runner.invoke(similar, [oqmd, "Xx2"])
    assert bad.exit_code == 2 and "cannot be featurized" in bad.output
    assert "unknown element 'Xx'" in bad.output
    missing = runner.invoke(similar, [oqmd, "id:no-such-id"])
    assert missing.exit_code == 2 and "has id 'no-such-id'" in missing.output
    zero = runner.invoke(similar, [oqmd, "row:1", "-k", "0"])
    assert zero.exit_code == 2


def test_an_index_on_s3(s3_bucket, data_dir, client, tmp_path):
    bucket, storage = s3_bucket
    pd.read_csv(data_dir / OQMD, nrows=500).to_csv(tmp_path / "f.csv", index=False)
    stores = {"s3": f"{bucket}/f.zarr", "local": str(tmp_path / "f.zarr")}
    for where, store in stores.items():
        options = storage if where == "s3" else None
        featurize_to_store(
            str(tmp_path / "f.csv"), store, SPEC, column="formula", client=client,
            progress=False, storage_options=options,
        )  # fmt: skip
        build_index(store, metric="cosine", storage_options=options, progress=False)
    location = StoreLocation(stores["s3"], storage)
    names = sorted(
        p.rsplit("/", 1)[-1] for p in location.fs.ls(location.path("_xenonscale", "index"))
    )
    assert names == ["flat.faiss", "index.json", "rows.npy"]
    assert store_state(location) == "store"
    remote = open_index(stores["s3"], storage_options=storage)
    local = open_index(stores["local"])
    answers = remote.search_rows(np.arange(20), 5), local.search_rows(np.arange(20), 5)
    for a, b in zip(*answers, strict=True):
        np.testing.assert_array_equal(a, b)
