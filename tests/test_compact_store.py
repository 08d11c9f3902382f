"""Compact FeatureStores: 0/1 fingerprints as uint8 bits, count fingerprints as integers.

Real data throughout: 3,000 MOSES SMILES (four broken ones injected) and the
1,128 ESOL molecules, featurized by the engine on the session's two worker
processes. The independent reference is the featurizer run in this process;
a float32-encoded store of the same rows (``feature_encoding="float32"``, what
every store was before) is the baseline for sizes, training, similarity and sync.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr

from xenonscale.engine import featurize_to_store
from xenonscale.engine.sync import sync_store
from xenonscale.errors import ConfigError, StoreError
from xenonscale.featurize.base import combined_encoding, encoding_of, featurize_safely
from xenonscale.featurize.molecules import ECFP, REGISTERED
from xenonscale.featurize.registry import FeaturizerSpec, registered
from xenonscale.store import open_store, read_errors
from xenonscale.store.layout import BOOKKEEPING, StoreLocation
from xenonscale.store.writer import create_store, finalize_store, write_region

ECFP_SPEC = FeaturizerSpec.parse("molecule", "ecfp")
ROWS = 3000
#: Unclosed ring, pentavalent N, unknown element, unkekulizable ring: (position, SMILES).
BAD = [(0, "C1CC"), (777, "N(C)(C)(C)(C)C"), (1500, "Xx"), (ROWS + 3, "c1cccc1")]
CHUNK, PARTITION = 500, 1000
LOGS = "measured log solubility in mols per litre"


def _reference(spec: FeaturizerSpec, inputs: list):
    """The featurizer in this process, under the spec's limits: what a store must hold."""
    return featurize_safely(spec.build(), inputs, spec.limits)


def _data_bytes(store: str) -> int:
    """Bytes on disk of the store's Zarr data (everything but the engine's bookkeeping)."""
    total = 0
    for folder, dirs, files in os.walk(store):
        dirs[:] = [d for d in dirs if d != BOOKKEEPING]
        total += sum(os.path.getsize(Path(folder) / name) for name in files)
    return total


@pytest.fixture(scope="module")
def moses(tmp_path_factory, data_dir, dask_client):
    """3,004 MOSES rows as an ECFP bits store (default encoding) and a float32 store."""
    smiles = pd.read_csv(data_dir / "molecules" / "moses_train.csv.gz", nrows=ROWS).SMILES.tolist()
    for position, bad in BAD:
        smiles.insert(position, bad)
    folder = tmp_path_factory.mktemp("moses")
    pd.DataFrame({"smiles": smiles}).to_csv(folder / "moses.csv", index=False)
    stores = {}
    for encoding in ("auto", "float32"):
        stores[encoding] = str(folder / f"{encoding}.zarr")
        job = featurize_to_store(
            str(folder / "moses.csv"), stores[encoding], ECFP_SPEC, column="smiles",
            client=dask_client, chunk_rows=CHUNK, partition_rows=PARTITION, progress=False,
            feature_encoding=encoding,
        )  # fmt: skip
        assert (job.rows, job.errors) == (len(smiles), len(BAD))
    return folder, smiles, stores, _reference(ECFP_SPEC, smiles)


def test_an_ecfp_store_is_uint8_bits_identical_to_the_featurizer(moses):
    _, smiles, stores, want = moses
    ds = xr.open_zarr(stores["auto"])  # plain xarray reads it
    assert ds.features.dtype == np.uint8 and ds.features.shape == (len(smiles), 2048)
    assert (ds.attrs["feature_encoding"], ds.attrs["feature_dtype"]) == ("bits", "uint8")
    ok = ds.ok.values
    np.testing.assert_array_equal(ok, want.ok)
    assert np.flatnonzero(~ok).tolist() == [p for p, _ in BAD]
    stored = ds.features.values
    np.testing.assert_array_equal(stored[ok], want.values[ok].astype(np.uint8))
    np.testing.assert_array_equal(stored[ok].astype(np.float64), want.values[ok])  # 0/1 exactly
    assert not stored[~ok].any()  # error rows hold 0; ok says they have no features
    errors = read_errors(stores["auto"])
    assert errors["row"].tolist() == [e.row for e in want.errors]
    assert errors["error"].tolist() == [e.reason for e in want.errors]
    # the float32 view: NaN on error rows, bit for bit what the featurizer returns as float32
    dense = open_store(stores["auto"], decode="float32").features
    assert dense.dtype == np.float32
    expected = want.values.astype(np.float32)
    np.testing.assert_array_equal(dense.values.view(np.uint32), expected.view(np.uint32))
    # the float32-encoded store of the same rows: what every store used to be
    baseline = open_store(stores["float32"])
    assert baseline.features.dtype == np.float32 and baseline.attrs["feature_encoding"] == "float32"
    np.testing.assert_array_equal(
        baseline.features.values.view(np.uint32), expected.view(np.uint32)
    )
    assert open_store(stores["float32"], decode="float32").features.identical(baseline.features)
    with pytest.raises(ConfigError, match="decode='bits'"):
        open_store(stores["auto"], decode="bits")


def test_the_bits_store_is_over_50x_below_raw_float32(moses):
    _, smiles, stores, _ = moses
    raw = len(smiles) * 2048 * 4
    compact, baseline = _data_bytes(stores["auto"]), _data_bytes(stores["float32"])
    features = _data_bytes(f"{stores['auto']}/features")
    assert raw / compact >= 50, f"{compact / len(smiles):.0f} B/row: {raw / compact:.1f}x"
    assert raw / features >= 80, f"features {features / len(smiles):.0f} B/row"
    assert baseline / compact >= 4  # and far below the float32 store of the same rows


def test_an_encoding_is_part_of_the_job_identity(moses, dask_client):
    folder, _, stores, want = moses
    source = str(folder / "moses.csv")
    options = dict(column="smiles", client=dask_client, chunk_rows=CHUNK,
                   partition_rows=PARTITION, progress=False)  # fmt: skip
    again = featurize_to_store(source, stores["auto"], ECFP_SPEC, **options)
    assert again.resumed_partitions == again.partitions == 4
    # a float32 job interrupted after 3 of its 4 partitions
    interrupted = StoreLocation(stores["float32"])
    interrupted.fs.rm(interrupted.path(BOOKKEEPING, "done", "000002.json"))
    before = open_store(stores["float32"]).features.values
    with pytest.raises(StoreError, match=r"float32 features.*--feature-encoding float32"):
        featurize_to_store(source, stores["float32"], ECFP_SPEC, **options)
    with pytest.raises(StoreError, match=r"begun with bits features.*--feature-encoding auto"):
        featurize_to_store(source, stores["auto"], ECFP_SPEC, feature_encoding="float32", **options)
    resumed = featurize_to_store(
        source, stores["float32"], ECFP_SPEC, feature_encoding="float32", **options
    )
    assert (resumed.resumed_partitions, resumed.featurized) == (3, int(want.ok.sum()))
    after = open_store(stores["float32"]).features
    assert after.dtype == np.float32
    np.testing.assert_array_equal(after.values.view(np.uint32), before.view(np.uint32))
    with pytest.raises(ConfigError, match="--feature-encoding 'bits'"):
        featurize_to_store(source, stores["auto"], ECFP_SPEC, feature_encoding="bits", **options)


def test_count_fingerprints_round_trip_exactly(moses, tmp_path):
    _, smiles, _, _ = moses
    featurizer = ECFP(counting=True)
    assert encoding_of(featurizer) == "counts"
    inputs = smiles[:1200]  # holds the broken row 777
    counts = featurize_safely(featurizer, inputs)
    assert counts.values[counts.ok].max() > 1  # real counts, not bits
    location = StoreLocation(str(tmp_path / "counts.zarr"))
    create_store(location, rows=len(inputs), labels=featurizer.labels, extras={}, chunk_rows=400,
                 attrs={}, feature_encoding="counts")  # fmt: skip
    frame = pd.DataFrame({"id": [str(i) for i in range(len(inputs))], "input": inputs})
    for start in (0, 400, 800):
        rows = slice(start, start + 400)
        write_region(location, start, frame.iloc[rows], counts.values[rows], counts.ok[rows], {})
    finalize_store(location, pd.DataFrame(columns=["row", "input", "error"]), {})
    ds = open_store(location.url)
    assert ds.features.dtype == np.uint16 and ds.attrs["feature_encoding"] == "counts"
    stored = ds.features.values
    np.testing.assert_array_equal(stored[counts.ok].astype(np.float64), counts.values[counts.ok])
    assert np.flatnonzero(~counts.ok).tolist() == [0, 777] and not stored[[0, 777]].any()
    dense = open_store(location.url, decode="float32").features.values
    np.testing.assert_array_equal(dense, counts.values.astype(np.float32))

    # a value the store cannot hold fails loudly and writes nothing (never clipped)
    chain = featurize_safely(featurizer, ["C" * 300])  # a 300-carbon chain: 298 CH2 in one bit
    high = int(np.argmax(chain.values[0]))
    value = chain.values[0, high].item()
    assert value > 255
    narrow = StoreLocation(str(tmp_path / "narrow.zarr"))
    create_store(narrow, rows=1, labels=featurizer.labels, extras={}, chunk_rows=1, attrs={},
                 feature_encoding="counts", feature_max=255)  # fmt: skip
    one = pd.DataFrame({"id": ["0"], "input": ["C" * 300]})
    message = rf"row 0, feature 'ecfp6_c:{high}': {value!r} does not fit this counts store \(uint8"
    with pytest.raises(StoreError, match=message):
        write_region(narrow, 0, one, chain.values, chain.ok, {})
    assert not xr.open_zarr(narrow.url, consolidated=False).features.values.any()
    bits = StoreLocation(str(tmp_path / "bits.zarr"))
    create_store(bits, rows=1, labels=featurizer.labels, extras={}, chunk_rows=1, attrs={},
                 feature_encoding="bits")  # fmt: skip
    with pytest.raises(StoreError, match="does not fit this bits store"):
        write_region(bits, 0, one, chain.values, chain.ok, {})


def test_featurizers_declare_what_their_values_are(data_dir):
    molecules = pd.read_csv(data_dir / "molecules" / "esol.csv", nrows=40).smiles.tolist()
    for name, cls in REGISTERED.items():
        featurizer = FeaturizerSpec.parse("molecule", name).build()
        want = "float32" if name in ("rdkit", "mordred") else "bits"
        assert encoding_of(featurizer) == want, name
        if want == "bits":  # the declaration holds on real molecules
            values = featurizer.featurize_batch(molecules).values
            assert set(np.unique(values).tolist()) == {0.0, 1.0}, name
        if "counting" in featurizer.get_params():
            counting = cls(counting=True)
            values = counting.featurize_batch(molecules).values
            assert encoding_of(counting) == "counts", name
            assert (values >= 0).all() and (values == np.round(values)).all(), name
    for name in registered("composition")["composition"]:  # real values: fractions, statistics
        want = "bits" if name == "presence" else "float32"
        assert encoding_of(FeaturizerSpec.parse("composition", name).build()) == want, name
    presence = FeaturizerSpec.parse("composition", "presence", elements="xenonpy58").build()
    formulas = ["Fe2O3", "NaCl", "Li0.5CoO2", "Xx"]
    batch = presence.featurize_batch(formulas)
    assert batch.ok.tolist() == [True, True, True, False]
    held = [{"Fe", "O"}, {"Na", "Cl"}, {"Li", "Co", "O"}]  # by hand
    for row, elements in enumerate(held):
        labels = np.array(presence.labels)[batch.values[row] == 1]
        on = {label.removeprefix("has:") for label in labels}
        assert on == elements and set(np.unique(batch.values[row])) == {0.0, 1.0}
    # a union: all bits → bits; bits and counts → counts; any float32 part → float32
    assert FeaturizerSpec.parse("molecule", "ecfp,maccs,pattern").build().feature_encoding == "bits"
    assert FeaturizerSpec.parse("molecule", "ecfp,rdkit").build().feature_encoding == "float32"
    assert combined_encoding([ECFP(), ECFP(counting=True)]) == ("counts", None)


@pytest.fixture(scope="module")
def esol(tmp_path_factory, data_dir, dask_client):
    """ESOL (1,128 molecules, log solubility) as an ECFP bits store and a float32 store."""
    frame = pd.read_csv(data_dir / "molecules" / "esol.csv")[["Compound ID", "smiles", LOGS]]
    folder = tmp_path_factory.mktemp("esol")
    frame.to_csv(folder / "esol.csv", index=False)
    stores = {}
    for encoding in ("auto", "float32"):
        stores[encoding] = str(folder / f"{encoding}.zarr")
        featurize_to_store(
            str(folder / "esol.csv"), stores[encoding], ECFP_SPEC, column="smiles",
            client=dask_client, chunk_rows=200, progress=False, feature_encoding=encoding,
            source_options={"id_column": "Compound ID"},
        )  # fmt: skip
    return folder, frame, stores


def test_a_model_trains_the_same_from_the_compact_store(esol, tmp_path, one_torch_thread):
    from xenonscale.models.data import StoreDataModule
    from xenonscale.models.training import train_model

    _, _, stores = esol
    assert open_store(stores["auto"]).features.dtype == np.uint8
    options = dict(hidden=(32,), max_epochs=2, batch_size=128, accelerator="cpu",
                   progress=False, seed=0)  # fmt: skip
    results = {e: train_model(s, LOGS, output=tmp_path / e, **options) for e, s in stores.items()}
    compact, baseline = results["auto"], results["float32"]
    assert compact.metrics == baseline.metrics
    assert np.isfinite(compact.metrics["val"]["mae"]) and len(compact.history) == 2
    for name in ("train", "val"):
        np.testing.assert_array_equal(compact.data.arrays(name)[0], baseline.data.arrays(name)[0])
    # streamed chunk by chunk from the compact store: the same validation rows and values
    streamed = StoreDataModule(stores["auto"], LOGS, batch_size=100, memory_budget=0, seed=0)
    streamed.setup("fit")
    assert not streamed.in_memory
    x = np.concatenate([batch[0].numpy() for batch in streamed.val_dataloader()])
    np.testing.assert_array_equal(x, baseline.data.arrays("val")[0])
    np.testing.assert_array_equal(streamed.feature_mean, baseline.data.feature_mean)


def test_similarity_and_predictions_read_the_compact_store(esol, tmp_path, dask_client):
    from xenonscale.store.similarity import build_index, open_index
    from xenonscale.workflows import predict_to_store
    from xenonscale.workflows.registration import train_and_register
    from xenonscale.zoo import Zoo

    _, frame, stores = esol
    found = {}
    for encoding, store in stores.items():
        build_index(store, progress=False)
        found[encoding] = open_index(store).search_rows([0, 5, 900], k=4)
    np.testing.assert_array_equal(found["auto"][1], found["float32"][1])
    np.testing.assert_array_equal(found["auto"][0], found["float32"][0])

    with Zoo(tmp_path / "zoo") as zoo:
        train_and_register(stores["auto"], LOGS, name="esol", zoo=zoo, hidden=(16,),
                           max_epochs=1, accelerator="cpu", progress=False,
                           output=tmp_path / "esol")  # fmt: skip
        summary = predict_to_store("esol", stores["auto"], zoo=zoo, client=dask_client,
                                   progress=False)  # fmt: skip
        assert (summary.rows, summary.predicted) == (len(frame), len(frame))
        got = zarr.open_group(stores["auto"], mode="r")["predictions/esol"][LOGS][:]
        want = zoo.load("esol").predict(frame.smiles.tolist())[LOGS].to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_sync_keeps_a_bits_store_compact_and_exact(esol, tmp_path, dask_client):
    _, frame, _ = esol
    first = frame.iloc[:300]
    first.to_csv(tmp_path / "v1.csv", index=False)
    store = str(tmp_path / "synced.zarr")
    featurize_to_store(str(tmp_path / "v1.csv"), store, ECFP_SPEC, column="smiles",
                       client=dask_client, chunk_rows=100, progress=False,
                       source_options={"id_column": "Compound ID"})  # fmt: skip
    second = first.copy()
    second.loc[7, "smiles"] = frame.smiles.iloc[700]  # a changed record
    second.loc[150, "smiles"] = "C1CC"  # changed into a broken one
    second = pd.concat([second.drop(index=200), frame.iloc[[1000]]])  # one gone, one new
    second.to_csv(tmp_path / "v2.csv", index=False)
    summary = sync_store(str(tmp_path / "v2.csv"), store, client=dask_client, progress=False)
    assert (summary.new, summary.modified, summary.withdrawn) == (1, 2, 1)
    ds = open_store(store)
    assert ds.features.dtype == np.uint8 and ds.attrs["feature_encoding"] == "bits"
    inputs = [*second.smiles.iloc[:200], first.smiles.iloc[200], *second.smiles.iloc[200:]]
    assert ds.input.values.tolist() == inputs
    want = _reference(ECFP_SPEC, inputs)
    np.testing.assert_array_equal(ds.ok.values, want.ok)
    dense = open_store(store, decode="float32").features.values
    np.testing.assert_array_equal(dense, want.values.astype(np.float32))
    assert np.flatnonzero(ds.withdrawn.values).tolist() == [200]
    assert read_errors(store)["row"].tolist() == [150]


def test_cli_featurize_can_keep_float32(esol, tmp_path, dask_client, capsys):
    from xenonscale.cli.main import main

    _, frame, _ = esol
    small = tmp_path / "esol_100.csv"
    frame.iloc[:100].to_csv(small, index=False)
    common = ["featurize", str(small), "--kind", "molecule", "--column", "smiles",
              "--featurizers", "maccs", "--scheduler", dask_client.scheduler.address,
              "--no-progress"]  # fmt: skip
    for flag, dtype in (("auto", np.uint8), ("float32", np.float32)):
        store = str(tmp_path / f"{flag}.zarr")
        assert main([*common, "-o", store, "--feature-encoding", flag]) == 0
        assert open_store(store).features.dtype == dtype
    capsys.readouterr()
    want = _reference(FeaturizerSpec.parse("molecule", "maccs"), frame.smiles.iloc[:100].tolist())
    for flag in ("auto", "float32"):
        got = open_store(str(tmp_path / f"{flag}.zarr"), decode="float32").features.values
        np.testing.assert_array_equal(got, want.values.astype(np.float32))


def test_cli_count_fingerprints_and_element_presence_are_compact(
    esol, tmp_path, dask_client, data_dir, capsys
):
    """``ecfp_counts`` from the CLI is a uint16 store; ``presence`` a uint8 one; both exact."""
    from xenonscale.cli.main import main

    _, frame, _ = esol
    small = tmp_path / "esol_100.csv"
    frame.iloc[:100].to_csv(small, index=False)
    store = str(tmp_path / "counts.zarr")
    assert main(["featurize", str(small), "--kind", "molecule", "--column", "smiles",
                 "--featurizers", "ecfp_counts", "--scheduler", dask_client.scheduler.address,
                 "--no-progress", "-o", store]) == 0  # fmt: skip
    ds = open_store(store)
    assert ds.features.dtype == np.uint16 and ds.attrs["feature_encoding"] == "counts"
    want = featurize_safely(ECFP(counting=True), frame.smiles.iloc[:100].tolist())
    assert want.values[want.ok].max() > 1
    np.testing.assert_array_equal(
        open_store(store, decode="float32").features.values, want.values.astype(np.float32)
    )
    gaps = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").iloc[:300]
    formulas = tmp_path / "formulas.csv"
    gaps.to_csv(formulas, index=False)
    store = str(tmp_path / "presence.zarr")
    assert main(["featurize", str(formulas), "--kind", "composition", "--column", "formula",
                 "--featurizers", "presence", "--scheduler", dask_client.scheduler.address,
                 "--no-progress", "-o", store]) == 0  # fmt: skip
    capsys.readouterr()
    ds = open_store(store)
    assert ds.features.dtype == np.uint8 and ds.attrs["feature_encoding"] == "bits"
    from pymatgen.core import Composition

    labels = [str(x) for x in ds.feature.values]
    for row in range(0, 300, 37):  # by hand: pymatgen's reading of the formula
        on = {labels[k].removeprefix("has:") for k in np.flatnonzero(ds.features.values[row])}
        assert on == {el.symbol for el in Composition(gaps.formula.iloc[row]).elements}
