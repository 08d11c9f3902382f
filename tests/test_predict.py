"""``xenonscale predict``: zoo models over a store or a source, one Dask task per partition.

Tiny models (an MLP on the classic descriptors, an attention network on the
composition slots, a 2-member ensemble) are trained in seconds on 600 real
Matbench expt_gap formulas (three of them wrong, one with 17 elements) and
registered in a temporary zoo. Every prediction the Dask job writes is checked
against :meth:`ZooModel.predict` on the same rows' inputs in this process:
the independent reference (the model's own featurizer, one call).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import zarr
from click.testing import CliRunner

from xenonscale.cli.main import Root
from xenonscale.cli.predict import predict
from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError, StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store.layout import StoreLocation, open_store, read_errors, store_state
from xenonscale.store.similarity import build_index, open_index
from xenonscale.workflows import PredictionSummary, predict_to_store
from xenonscale.workflows.registration import train_and_register
from xenonscale.zoo import Zoo

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
ROWS = 600
CHUNK = 100
#: 17 elements: more than the 16 composition slots (the attention model cannot read it).
WIDE = "HLiBeBCNOFNaMgAlSiPSClKCa"
BAD = {5: "Xx2O3", 250: "Fe2O3)", 431: ""}
TRAIN = dict(max_epochs=2, batch_size=128, accelerator="cpu", progress=False, seed=0)
ATTENTION = {"elements": "magpie", "d_model": 16, "heads": 2, "layers": 1, "head_hidden": [16]}


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    with Client(cluster) as connected:
        yield connected
    cluster.close()


@pytest.fixture(scope="module")
def gap(tmp_path_factory, data_dir, client) -> tuple[str, pd.DataFrame]:
    """600 real expt_gap formulas, three wrong and one too wide for the slots; a store of them."""
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    frame = frame.sample(ROWS, random_state=0).reset_index(drop=True)
    for row, formula in BAD.items():
        frame.loc[row, "formula"] = formula
    frame.loc[77, "formula"] = WIDE
    folder = tmp_path_factory.mktemp("gap")
    frame.to_csv(folder / "gap.csv", index=False)
    store = str(folder / "gap.zarr")
    featurize_to_store(str(folder / "gap.csv"), store, SPEC, column="formula", client=client,
                       chunk_rows=CHUNK, progress=False)  # fmt: skip
    return store, frame


@pytest.fixture(scope="module")
def zoo(gap, tmp_path_factory, client, one_torch_thread):
    """gap-mlp@1, gap-attn@1 (composition slots) and gap-ens@1 (2 members, trained on Dask)."""
    store, _ = gap
    folder = tmp_path_factory.mktemp("zoo")
    opened = Zoo(folder / "zoo")
    train_and_register(store, "target", name="gap-mlp", zoo=opened, hidden=(16,),
                       output=folder / "mlp", **TRAIN)  # fmt: skip
    train_and_register(store, "target", name="gap-attn", zoo=opened, backbone="attention",
                       backbone_options=ATTENTION, output=folder / "attn", **TRAIN)  # fmt: skip
    train_and_register(store, "target", name="gap-ens", zoo=opened, ensemble=2, client=client,
                       hidden=(16,), output=folder / "ens", **TRAIN)  # fmt: skip
    yield opened
    opened.close()


def _inputs(store: str) -> list:
    """The store's input texts (what the reference predicts from)."""
    return [text or None for text in open_store(store)["input"].values.tolist()]


def _predictions(store: str, label: str) -> zarr.Group:
    return zarr.open_group(store, mode="r")[f"predictions/{label}"]


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    """NaN in the same rows, equal elsewhere within 1e-6 relative (float32 arithmetic).

    Relative to the predictions' scale: batches of other sizes take other float32 kernels
    (one ulp of a value near 1 is 1.2e-7), so a prediction near 0 may differ by that much.
    """
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    scale = float(np.nanmax(np.abs(want), initial=0.0)) or 1.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale)


def test_store_predictions_equal_the_zoo_models(gap, zoo, client):
    """(a) the MLP on the store's features, (b) attention on its composition slots: one job."""
    store, frame = gap
    summary = predict_to_store(["gap-mlp", "gap-attn"], store, zoo=zoo, client=client,
                               partition_rows=200, progress=False)  # fmt: skip
    assert isinstance(summary, PredictionSummary)
    assert summary.models == ["gap-mlp@1", "gap-attn@1"]
    assert (summary.partitions, summary.resumed_partitions) == (3, 0)
    # the attention network cannot read the 17-element row; both fail the 3 wrong formulas
    assert (summary.rows, summary.predicted, summary.errors) == (ROWS, ROWS - 4, 4)
    assert summary.per_model == {"gap-mlp": ROWS - 3, "gap-attn": ROWS - 4}
    assert summary.output == f"{store}/predictions"
    inputs = _inputs(store)
    ok = open_store(store)["ok"].values
    assert np.flatnonzero(~ok).tolist() == sorted(BAD)
    reasons = dict(zip(*read_errors(store)[["row", "error"]].to_numpy().T.tolist(), strict=True))
    for label in ("gap-mlp", "gap-attn"):
        group = _predictions(store, label)
        model = zoo.load(label)
        want = model.predict(inputs)["target"].to_numpy()
        got = group["target"][:]
        assert got.dtype == np.float32 and got.shape == (ROWS,)
        _assert_same(got, want)
        errors = group["error"][:]
        assert [errors[row] for row in sorted(BAD)] == [reasons[row] for row in sorted(BAD)]
        assert group.attrs["model"] == f"{label}@1" and group.attrs["complete"] is True
        assert len(group.attrs["card_sha256"]) == 64 and group.attrs["created"]
        assert group["target"].chunks == (CHUNK,) and "target_std" not in group
    mlp, attn = _predictions(store, "gap-mlp"), _predictions(store, "gap-attn")
    assert np.isnan(mlp["target"][:]).sum() == 3 and np.isfinite(mlp["target"][77])
    assert np.isnan(attn["target"][77]) and "16 composition slots" in str(attn["error"][77])
    assert attn.attrs["reads"] == "composition" and mlp.attrs["reads"] == "features"
    # the store stays a store: recognized, readable, and its features untouched
    assert store_state(StoreLocation(store)) == "store"
    assert open_store(store)["features"].shape[0] == ROWS
    assert len(frame) == ROWS


def test_source_to_parquet_equals_the_zoo_models(gap, zoo, client, tmp_path):
    """(c) a CSV with bad rows, featurized on the workers by each model's featurizer."""
    _, frame = gap
    formulas = [*frame["formula"].head(120).tolist(), "Xx2", "NaCl", "Fe2O3((", WIDE, "Na" * 4]
    csv = tmp_path / "new.csv"
    pd.DataFrame({"formula": formulas}).to_csv(csv, index=False)
    out = tmp_path / "new.parquet"
    summary = predict_to_store("gap-mlp,gap-attn", str(csv), str(out), zoo=zoo, client=client,
                               partition_rows=40, progress=False)  # fmt: skip
    table = pd.read_parquet(out)
    n = len(formulas)
    assert table.columns.tolist() == ["row", "id", "gap-mlp:target", "gap-attn:target", "error"]
    assert table["row"].tolist() == list(range(n)) and summary.partitions == 4
    assert summary.rows == n == summary.predicted + summary.errors
    assert (table["error"] == "").sum() == summary.predicted
    assert table["gap-mlp:target"].dtype == np.float32
    for label in ("gap-mlp", "gap-attn"):
        model = zoo.load(label)
        want = model.predict(formulas)
        _assert_same(table[f"{label}:target"].to_numpy(), want["target"].to_numpy())
        for error in model.errors_.to_dict("records"):
            assert error["error"] in table.loc[error["row"], "error"]
    failed = table.loc[table["error"] != "", "row"].tolist()
    assert failed == [5, 77, 120, 122, 123]  # 77 and 123: 17 elements, 5 and 120: Xx
    assert table.loc[120, "error"] == "unknown element 'Xx'"  # both models, one reason
    assert table.loc[123, "error"].startswith("gap-attn: has 17 elements")
    assert np.isfinite(table.loc[123, "gap-mlp:target"])
    schema = pq.read_schema(out / "part-000000.parquet")
    assert json.loads(schema.metadata[b"xenonscale"])["models"]["gap-mlp"]["ref"] == "gap-mlp@1"


def test_ensemble_std_equals_the_zoo_model(gap, zoo, client):
    """(d) an ensemble gets <target>_std by default; single networks refuse return_std=True."""
    store, _ = gap
    summary = predict_to_store("gap-ens", store, zoo=zoo, client=client, progress=False)
    assert summary.predicted == ROWS - 3 and summary.partitions == 1
    group = _predictions(store, "gap-ens")
    want = zoo.load("gap-ens").predict(_inputs(store), return_std=True)
    _assert_same(group["target"][:], want["target"].to_numpy())
    _assert_same(group["target_std"][:], want["target_std"].to_numpy())
    assert (group["target_std"][:][np.isfinite(group["target_std"][:])] > 0).all()
    with pytest.raises(ConfigError, match="gap-mlp@1 is one network") as caught:
        predict_to_store("gap-mlp", store, zoo=zoo, client=client, return_std=True,
                         progress=False)  # fmt: skip
    assert "\n" not in str(caught.value)


def test_a_featurizer_mismatch_is_one_line_and_refeaturize_fixes_it(gap, zoo, client, tmp_path):
    """(e) a store of other descriptors: refused naming both and --refeaturize; then it works."""
    _, frame = gap
    csv = tmp_path / "counting.csv"
    frame.head(150).to_csv(csv, index=False)
    other = str(tmp_path / "counting.zarr")
    featurize_to_store(str(csv), other, FeaturizerSpec.parse("composition", "Counting"),
                       column="formula", client=client, chunk_rows=50, progress=False)  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        predict_to_store("gap-mlp", other, zoo=zoo, client=client, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "--refeaturize" in message
    assert "composition:classic (elements xenonpy58)" in message
    assert "composition:Counting" in message
    assert not zarr.open_group(other, mode="r").__contains__("predictions")
    summary = predict_to_store(["gap-mlp", "gap-attn"], other, zoo=zoo, client=client,
                               refeaturize=True, progress=False)  # fmt: skip
    assert summary.rows == 150 and summary.errors == 2  # row 5: Xx2O3, row 77: 17 elements
    inputs = _inputs(other)
    for label, reads in (("gap-mlp", "featurize"), ("gap-attn", "composition")):
        group = _predictions(other, label)
        assert group.attrs["reads"] == reads  # the slots are the attention model's own inputs
        _assert_same(group["target"][:], zoo.load(label).predict(inputs)["target"].to_numpy())


def test_resume_recomputes_only_what_is_missing(gap, zoo, client, tmp_path):
    """(f) a lost partition (marker and output) is the only one recomputed, identically."""
    store, frame = gap
    csv = tmp_path / "resume.csv"
    frame.head(300).to_csv(csv, index=False)
    out = tmp_path / "resume.parquet"
    first = predict_to_store("gap-mlp", str(csv), str(out), zoo=zoo, client=client,
                             partition_rows=100, progress=False)  # fmt: skip
    before = pd.read_parquet(out)
    (out / "_xenonscale" / "done" / "000001.json").unlink()
    (out / "part-000001.parquet").unlink()
    again = predict_to_store("gap-mlp", str(csv), str(out), zoo=zoo, client=client,
                             partition_rows=100, progress=False)  # fmt: skip
    assert (first.resumed_partitions, again.resumed_partitions, again.partitions) == (0, 2, 3)
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    done = predict_to_store("gap-mlp", str(csv), str(out), zoo=zoo, client=None,
                            partition_rows=100, progress=False)  # fmt: skip
    assert done.resumed_partitions == 3  # nothing left: no cluster was started
    with pytest.raises(StoreError, match="another job"):
        predict_to_store("gap-attn", str(csv), str(out), zoo=zoo, client=client,
                         partition_rows=100, progress=False)  # fmt: skip
    # into a store: one region lost and its marker gone
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    predict_to_store("gap-mlp", copy, zoo=zoo, client=client, partition_rows=200,
                     progress=False)  # fmt: skip
    group = zarr.open_group(copy, mode="r+", use_consolidated=False)
    want = group["predictions/gap-mlp/target"][:]
    group["predictions/gap-mlp/target"][200:400] = 0.0
    job = group["predictions/gap-mlp"].attrs["job"]  # the older job that wrote gap-mlp is gone
    assert sorted(p.name for p in (Path(copy) / "_xenonscale" / "predict").iterdir()) == sorted(
        [job, group["predictions/gap-ens"].attrs["job"]]
    )
    (Path(copy) / "_xenonscale" / "predict" / job / "done" / "000001.json").unlink()
    again = predict_to_store("gap-mlp", copy, zoo=zoo, client=client, partition_rows=200,
                             progress=False)  # fmt: skip
    assert again.resumed_partitions == 2
    np.testing.assert_array_equal(_predictions(copy, "gap-mlp")["target"][:], want)


def test_outputs_and_models_are_checked_before_any_work(gap, zoo, tmp_path):
    """One line each, nothing written; two versions of one name get name@version columns."""
    store, frame = gap
    csv = tmp_path / "few.csv"
    frame.head(10).to_csv(csv, index=False)
    cases = [
        (dict(input=str(csv)), ConfigError, "-o is required"),
        (dict(input=store, output=str(tmp_path / "x.csv")), ConfigError, "ending in .parquet"),
        (dict(input=store, output=f"{store}/p.parquet"), ConfigError, "inside the store"),
        (dict(input=store, models="gap-mlp,gap-mlp@1"), ConfigError, "given twice"),
    ]
    foreign = tmp_path / "foreign.parquet"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases.append((dict(input=str(csv), output=str(foreign)), StoreError, "not predictions"))
    for given, error, words in cases:
        given = {"models": "gap-mlp", **given}
        with pytest.raises(error, match=words) as caught:
            predict_to_store(given.pop("models"), given.pop("input"), zoo=zoo, client=None,
                             progress=False, **given)  # fmt: skip
        assert "\n" not in str(caught.value)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_two_versions_of_one_model_side_by_side(gap, zoo, client, tmp_path):
    _, frame = gap
    model = zoo.load("gap-mlp")
    for _ in range(2):
        zoo.register("gap-twin", model.model, model.card)
    csv = tmp_path / "few.csv"
    frame.head(30).to_csv(csv, index=False)
    out = tmp_path / "twins.parquet"
    summary = predict_to_store(["gap-twin@1", "gap-twin@2"], str(csv), str(out), zoo=zoo,
                               client=client, progress=False)  # fmt: skip
    table = pd.read_parquet(out)
    assert summary.models == ["gap-twin@1", "gap-twin@2"]
    assert table.columns.tolist()[2:4] == ["gap-twin@1:target", "gap-twin@2:target"]
    np.testing.assert_array_equal(table["gap-twin@1:target"], table["gap-twin@2:target"])


def test_a_graph_model_reads_the_graph_rows(data_dir, zoo, client, tmp_path, one_torch_thread):
    """A CGCNN on a graph store of real structures (phonons): the store's rows, as written."""
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as handle:
        phonons = pd.read_json(handle, orient="split").head(90)
    source = tmp_path / "phonons.jsonl"
    with source.open("w") as handle:
        for index, row in phonons.iterrows():
            doc = {"id": f"ph-{index}", "structure": row["structure"],
                   "target": row["last phdos peak"]}  # fmt: skip
            handle.write(json.dumps(doc) + "\n")
    store = str(tmp_path / "graph.zarr")
    spec = FeaturizerSpec.parse("structure", "graph:cutoff=5/neighbors=6/atoms=24")
    featurize_to_store(str(source), store, spec, column="structure", client=client,
                       chunk_rows=30, progress=False)  # fmt: skip
    train_and_register(store, "target", name="ph-cgcnn", zoo=zoo, backbone="cgcnn",
                       backbone_options={"width": 8, "layers": 1, "elements": "magpie"},
                       output=tmp_path / "cgcnn", **TRAIN)  # fmt: skip
    summary = predict_to_store("ph-cgcnn", store, zoo=zoo, client=client, partition_rows=30,
                               progress=False)  # fmt: skip
    assert summary.partitions == 3 and summary.rows == 90
    group = _predictions(store, "ph-cgcnn")
    assert group.attrs["reads"] == "graph"
    want = zoo.load("ph-cgcnn").predict(_inputs(store))["target"].to_numpy()
    assert summary.predicted == int(np.isfinite(want).sum()) > 0
    _assert_same(group["target"][:], want)


def _cli() -> click.Group:
    """A group of the predict command alone, run like ``xenonscale`` (one-line errors)."""

    @click.group("xenonscale", cls=Root)
    def group() -> None:
        pass

    group.add_command(predict)
    return group


def test_cli(gap, zoo, client, tmp_path):
    """(g) the command prints one summary line; a bad model is one line, exit 2."""
    store, _ = gap
    zoo_folder = str(Path(zoo.artifacts.root).parent)
    common = ["--zoo", zoo_folder, "--scheduler", client.scheduler.address, "--no-progress"]
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(predict, ["gap-mlp", store, "-o", str(out), *common])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith(f"{ROWS:,} rows → {ROWS - 3:,} predicted + 3 errors by gap-mlp@1")
    assert line.endswith(str(out)) and len(pd.read_parquet(out)) == ROWS
    for models, fix in (("Bad Model!", "is not valid"), ("no-such-model", "no-such-model")):
        result = CliRunner().invoke(_cli(), ["predict", models, store, *common])
        assert result.exit_code == 2, result.output
        (error,) = result.stderr.strip().splitlines()
        assert error.startswith("xenonscale") and fix in error, error
    result = CliRunner().invoke(_cli(), ["predict", "gap-mlp", store, "--column", "x", *common])
    assert result.exit_code == 2 and "--column" in result.stderr


@pytest.fixture(scope="module")
def gap_index(gap):
    """The similarity index of the MLP's training store (what --domain reads)."""
    store, _ = gap
    build_index(store, progress=False)
    return open_index(store)


def test_domain_distance_of_the_training_rows_is_zero(gap, gap_index, zoo, client):
    """(a) --domain on the training store itself: its own rows are in the index."""
    store, _ = gap
    summary = predict_to_store("gap-mlp", store, zoo=zoo, client=client, domain=True,
                               partition_rows=200, progress=False)  # fmt: skip
    group = _predictions(store, "gap-mlp")
    distance = group["domain_distance"][:]
    ok = open_store(store)["ok"].values
    assert distance.dtype == np.float32 and distance.shape == (ROWS,)
    assert np.isnan(distance[~ok]).all() and np.abs(distance[ok]).max() <= 1e-6
    record = group.attrs["domain"]
    assert record["reference"] == gap_index.reference and record["metric"] == "l2"
    assert record["rows"] == int(ok.sum()) == len(gap_index)
    assert summary.domain == {"gap-mlp": record} and set(record["reference"]) >= {"0.99"}
    _assert_same(group["target"][:], zoo.load("gap-mlp").predict(_inputs(store))["target"])


def test_domain_distance_equals_brute_force(gap, gap_index, zoo, client, data_dir, tmp_path):
    """(b) other formulas from a CSV: nearest Euclidean distance in standardized units."""
    store, frame = gap
    everything = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    others = everything.loc[~everything["formula"].isin(frame["formula"]), "formula"]
    formulas = [*others.head(60).tolist(), "Xx2", frame.loc[0, "formula"]]
    csv = tmp_path / "others.csv"
    pd.DataFrame({"formula": formulas}).to_csv(csv, index=False)
    out = tmp_path / "others.parquet"
    summary = predict_to_store("gap-mlp,gap-ens", str(csv), str(out), zoo=zoo, client=client,
                               domain=True, partition_rows=25, progress=False)  # fmt: skip
    table = pd.read_parquet(out)
    assert table["gap-mlp:domain_distance"].dtype == np.float32
    means, stds = gap_index.means, gap_index.stds

    def standardized(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        return (np.where(np.isfinite(values), values, means) - means) / stds

    group = zarr.open_group(store, mode="r")
    ok = np.asarray(group["ok"][:], dtype=bool)
    training = standardized(group["features"][:][ok])
    batch = gap_index.featurize(formulas)  # the store's featurizer: the model's
    queries = standardized(np.asarray(batch.values, np.float32)[batch.ok])  # as stored
    want = np.sqrt(((queries[:, None, :] - training[None]) ** 2).sum(axis=2)).min(axis=1)
    for label in ("gap-mlp", "gap-ens"):
        got = table[f"{label}:domain_distance"].to_numpy(np.float64)
        assert np.isnan(got[~batch.ok]).all() and table.loc[~batch.ok, "error"].ne("").all()
        np.testing.assert_allclose(got[batch.ok], want, rtol=1e-5, atol=1e-6)
    assert want[-1] == 0.0 and want.max() > 0
    schema = pq.read_schema(out / "part-000000.parquet")
    models = json.loads(schema.metadata[b"xenonscale"])["models"]
    assert models["gap-ens"]["domain"]["reference"] == gap_index.reference
    assert summary.domain["gap-mlp"]["store"] == models["gap-mlp"]["domain"]["store"]


def test_domain_needs_an_index_and_feature_inputs(gap, gap_index, zoo, client, tmp_path):
    """A missing index names `xenonscale index STORE`; composition models are refused."""
    store, _ = gap
    folder = Path(store) / "_xenonscale" / "index"
    aside = tmp_path / "index"
    folder.rename(aside)
    try:
        with pytest.raises(StoreError) as caught:
            predict_to_store("gap-mlp", store, zoo=zoo, client=client, domain=True,
                             progress=False)  # fmt: skip
    finally:
        aside.rename(folder)
    message = str(caught.value)
    assert "\n" not in message and "xenonscale index" in message and "gap.zarr" in message
    assert "gap-mlp@1" in message
    with pytest.raises(ConfigError, match="not supported") as caught:
        predict_to_store("gap-attn", store, zoo=zoo, client=client, domain=True,
                         progress=False)  # fmt: skip
    assert "\n" not in str(caught.value) and "--domain" in str(caught.value)


def test_cli_domain(gap, gap_index, zoo, client, tmp_path):
    """``--domain``: the distance column and a line with the training rows' scale."""
    store, _ = gap
    zoo_folder = str(Path(zoo.artifacts.root).parent)
    out = tmp_path / "cli-domain.parquet"
    result = CliRunner().invoke(
        _cli(),
        ["predict", "gap-mlp", store, "-o", str(out), "--domain", "--zoo", zoo_folder,
         "--scheduler", client.scheduler.address, "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary, scale = result.stdout.strip().splitlines()
    assert summary.startswith(f"{ROWS:,} rows")
    assert scale.startswith("gap-mlp:domain_distance") and "99 %" in scale
    table = pd.read_parquet(out)
    assert np.nanmax(np.abs(table["gap-mlp:domain_distance"].to_numpy())) <= 1e-6
