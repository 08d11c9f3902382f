"""OPTIMADE databases as a source, network manners, and incremental sync.

Everything runs against the optimade-python-tools reference server
(in-memory backend) on 127.0.0.1, loaded with the mirror's real structures
(Matbench phonons, Perov-5, Carbon-24: 7,084 crystals), behind a proxy that
logs every request and injects faults.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import Client, LocalCluster

from xenonscale.engine import featurize_to_store, sync_store
from xenonscale.errors import ConfigError, SourceUnavailableError, StoreError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.sources import open_source
from xenonscale.sources.http import HttpPolicy, get_json
from xenonscale.sources.optimade import OptimadeSource, to_structure_dict
from xenonscale.store.layout import open_store, read_errors

optimade = pytest.importorskip("optimade", reason="optimade[server] is a test dependency")
from xenonscale.testing.optimade import FaultProxy, OptimadeServer  # noqa: E402

pytestmark = [pytest.mark.usefixtures("data_dir"), pytest.mark.timeout(900)]

FAST = HttpPolicy(timeout=20, retries=4, backoff=0.05, max_backoff=0.2)
STRUCTURES = FeaturizerSpec.parse("structure", "composition,rdf")
CHEAP = FeaturizerSpec.parse("structure", "composition")
PHONONS = 'filter=_exmpl_dataset="phonons"'


@pytest.fixture(scope="module")
def entries(optimade_entries_all):
    return optimade_entries_all


@pytest.fixture(scope="module")
def server(optimade_server):
    return optimade_server


@pytest.fixture()
def proxy(server):
    with FaultProxy(server.base_url) as running:
        yield running


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as running:  # fmt: skip
        yield running


def _source(proxy, query=PHONONS, **options) -> OptimadeSource:
    options.setdefault("policy", FAST)
    return open_source(f"optimade:{proxy.url}/v1/structures?{query}", **options)


def _arrays(path, names=("features", "ok", "id")) -> dict:
    group = zarr.open_group(str(path), mode="r")
    return {name: group[name][:] for name in names}


def _same_features(ours: np.ndarray, theirs: np.ndarray) -> None:
    """Equal, but for float noise around zero: OPTIMADE carries Cartesian positions only, so
    fractional coordinates come back within 1 ulp, and a value that is round-off (|x| ~ 1e-10)
    may differ by ~1e-16. At most 1 value in 10,000 may do so, by at most 1e-15."""
    differ = ours != theirs
    assert differ.mean() < 1e-4, differ.mean()
    assert np.abs(ours[differ] - theirs[differ]).max(initial=0) <= 1e-15


# -- the source ---------------------------------------------------------------------------------


def test_entries_hold_real_structures_and_server_serves_them(server, entries):
    assert len(entries) == 1265 + 3787 + 2032 >= 2000
    doc = get_json(f"{server.url}/structures", {"page_limit": 1})
    assert doc["meta"]["data_available"] == len(entries)


def test_converter_agrees_with_the_optimade_adapter(entries):
    from optimade.adapters import Structure as Adapter
    from pymatgen.core import Structure

    for entry in entries[::350]:
        attributes = {k: v for k, v in entry.items() if k not in ("id", "type")}
        ours = Structure.from_dict(to_structure_dict(attributes))
        doc = {
            "id": entry["id"],
            "type": "structures",
            "attributes": json.loads(json.dumps(attributes, default=str)),
        }
        theirs = Adapter(doc).as_pymatgen
        assert [s.species_string for s in ours] == [s.species_string for s in theirs]
        np.testing.assert_allclose(ours.lattice.matrix, theirs.lattice.matrix, atol=1e-12)
        np.testing.assert_allclose(ours.cart_coords, theirs.cart_coords, atol=1e-9)


def test_unconvertible_entries_become_error_rows_with_their_reason():
    from xenonscale.featurize.base import RejectedInput, featurize_safely

    source = OptimadeSource("optimade:http://127.0.0.1:9/v1/structures")
    good = {"lattice_vectors": [[3, 0, 0], [0, 3, 0], [0, 0, 3]],
            "cartesian_site_positions": [[0, 0, 0]], "species_at_sites": ["Po"],
            "species": [{"name": "Po", "chemical_symbols": ["Po"], "concentration": [1.0]}],
            "dimension_types": [1, 1, 1], "last_modified": "2024-01-01T00:00:00"}  # fmt: skip
    flat = good | {"dimension_types": [1, 1, 0]}
    empty = {k: v for k, v in good.items() if k != "cartesian_site_positions"}
    unknown = good | {
        "species": [{"name": "Po", "chemical_symbols": ["X"], "concentration": [1.0]}]
    }
    frame = source._frame(
        [{"id": str(i), "attributes": a} for i, a in enumerate([good, flat, empty, unknown])],
        0,
        "exmpl",
    )
    assert frame["id"].tolist() == ["exmpl:0", "exmpl:1", "exmpl:2", "exmpl:3"]
    batch = featurize_safely(CHEAP.build(), frame["input"].tolist())
    assert batch.ok.tolist() == [True, False, False, False]
    reasons = [e.reason for e in batch.errors]
    assert "not periodic in 3-D" in reasons[0] and "exmpl:1" in reasons[0]
    assert "missing cartesian_site_positions" in reasons[1]
    assert "'X', not an element" in reasons[2]
    assert isinstance(frame["input"][1], RejectedInput)


def test_bad_urls_and_options_fail_in_one_line():
    with pytest.raises(ConfigError, match="page_offset"):
        OptimadeSource("optimade:http://h/v1/structures?page_offset=3")
    with pytest.raises(ConfigError, match="--kind 'composition'"):
        open_source("optimade:http://h/v1/structures", kind="composition")
    with pytest.raises(ConfigError, match="not an OPTIMADE field"):
        OptimadeSource("optimade:http://h", response_fields="Band Gap")
    with pytest.raises(ConfigError, match="column"):
        open_source("optimade:http://h", column="cif")
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        HttpPolicy(auth_env="sk-12345-secret")
    assert OptimadeSource("optimade:https://h.org/api?filter=x=1").endpoint == (
        "https://h.org/api/v1/structures"
    )
    assert OptimadeSource("optimade:https://h.org/v1.2").endpoint == "https://h.org/v1.2/structures"


def test_offset_and_cursor_plans_read_the_same_records(proxy):
    offset = _source(proxy, paging="offset", response_fields="_exmpl_last_phdos_peak")
    cursor = _source(proxy, paging="cursor", response_fields="_exmpl_last_phdos_peak")
    total, parts = offset.plan(300)
    total_c, parts_c = cursor.plan(300)
    assert total == total_c == 1265 and len(parts) == len(parts_c) == 5
    assert parts[1].locator["mode"] == "offset" and parts_c[1].locator["mode"] == "cursor"
    a, b = offset.read(parts[3]), cursor.read(parts_c[3])
    pd.testing.assert_frame_equal(a.drop(columns="input"), b.drop(columns="input"))
    assert a["id"].iloc[0] == "exmpl:phonons-900" and a["row"].iloc[0] == 900
    assert "last_phdos_peak" in a and a["last_phdos_peak"].dtype == np.float64
    assert _source(proxy).plan(300)[1][0].locator["mode"] == "offset"  # auto finds offsets


# -- identical to the files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def phonons_from_file(tmp_path_factory, data_dir, client):
    out = tmp_path_factory.mktemp("file") / "phonons.zarr"
    featurize_to_store(str(data_dir / "structures" / "matbench_phonons.json.gz"), str(out),
                       STRUCTURES, client=client, chunk_rows=300, progress=False)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def phonons_from_server(tmp_path_factory, server, client):
    out = tmp_path_factory.mktemp("optimade") / "phonons.zarr"
    with FaultProxy(server.base_url) as proxy:
        source = _source(proxy, response_fields="_exmpl_last_phdos_peak")
        featurize_to_store(source, str(out), STRUCTURES, client=client, chunk_rows=300,
                           progress=False)  # fmt: skip
    return out


def test_optimade_store_equals_the_file_store(phonons_from_file, phonons_from_server):
    """composition + RDF (sites, lattice) of 1,265 structures: features, ids, extras identical."""
    ours = _arrays(
        phonons_from_server, ("features", "ok", "id", "last_phdos_peak", "last_modified")
    )
    theirs = _arrays(phonons_from_file, ("features", "ok", "id", "last phdos peak"))
    assert ours["ok"].all() and theirs["ok"].all()
    assert ours["id"].tolist() == [f"exmpl:phonons-{i}" for i in theirs["id"]]
    _same_features(ours["features"], theirs["features"])
    np.testing.assert_array_equal(ours["last_phdos_peak"], theirs["last phdos peak"])
    assert ours["last_modified"][0] == "2024-01-01T00:00:00"
    attrs = dict(zarr.open_group(str(phonons_from_server), mode="r").attrs)
    assert attrs["source"]["filter"] == '_exmpl_dataset="phonons"'
    assert attrs["source"]["auth_env"] is None


def test_csv_structures_from_the_server_equal_the_csv(entries, client, tmp_path, data_dir):
    """Perov-5's CIF column (the first 300 rows) against the same records served."""
    frame = pd.read_csv(data_dir / "structures" / "perov5_val.csv.gz", nrows=300)
    csv = tmp_path / "perov5.csv"
    frame.to_csv(csv, index=False)
    perov5 = [e for e in entries if e["_exmpl_dataset"] == "perov5"][:300]
    with OptimadeServer(perov5, page_limit=50) as small, FaultProxy(small.base_url) as proxy:
        source = _source(proxy, "", response_fields="_exmpl_heat_all,_exmpl_ind_gap")
        featurize_to_store(source, str(tmp_path / "a.zarr"), STRUCTURES, client=client,
                           chunk_rows=100, progress=False)  # fmt: skip
    featurize_to_store(str(csv), str(tmp_path / "b.zarr"), STRUCTURES, column="cif",
                       client=client, chunk_rows=100, progress=False,
                       source_options={"id_column": "material_id"})  # fmt: skip
    a, b = open_store(str(tmp_path / "a.zarr")), open_store(str(tmp_path / "b.zarr"))
    assert a["id"].values.tolist() == [f"exmpl:perov5-{i}" for i in b["id"].values]
    assert a["ok"].values.all() and b["ok"].values.all()
    _same_features(a["features"].values, b["features"].values)
    np.testing.assert_array_equal(a["heat_all"].values, b["heat_all"].values)
    np.testing.assert_array_equal(a["ind_gap"].values, b["ind_gap"].values)


@pytest.fixture(scope="module")
def phonons_cheap(tmp_path_factory, server, client):
    """Composition features of the phonons query, fetched without faults: the reference."""
    out = tmp_path_factory.mktemp("cheap") / "phonons.zarr"
    with FaultProxy(server.base_url) as proxy:
        source = _source(proxy, response_fields="_exmpl_last_phdos_peak")
        featurize_to_store(source, str(out), CHEAP, client=client, chunk_rows=300, progress=False)
    return out


# -- network manners ----------------------------------------------------------------------------


def test_faults_lose_nothing(proxy, client, tmp_path, phonons_cheap):
    """429 + Retry-After, 500s, a connection dropped mid-page, a slow page: same store."""
    proxy.add_fault("status", status=429, retry_after=1, match="page_offset=0&", times=1)
    proxy.add_fault("status", status=500, match="page_offset=300", times=2)
    proxy.add_fault("drop", match="page_offset=700", times=1)
    proxy.add_fault("delay", seconds=1.5, match="page_offset=1000", times=1)
    source = _source(proxy, response_fields="_exmpl_last_phdos_peak")
    started = time.perf_counter()
    featurize_to_store(source, str(tmp_path / "s.zarr"), CHEAP, client=client, chunk_rows=300,
                       partition_rows=300, progress=False)  # fmt: skip
    assert proxy.faults_left() == 0
    faults = [r.fault for r in proxy.log if r.fault]
    assert sorted(faults) == ["delay", "drop", "status", "status", "status"]
    assert time.perf_counter() - started >= 1.0  # Retry-After: 1 was honoured
    ours, clean = _arrays(tmp_path / "s.zarr"), _arrays(phonons_cheap)
    for name in ours:
        np.testing.assert_array_equal(ours[name], clean[name])
    agents = {r.user_agent for r in proxy.log}
    assert len(agents) == 1 and agents.pop().startswith("xenonscale/")


def test_a_server_that_stays_down_names_the_missing_pages_and_a_rerun_resumes(
    proxy, client, tmp_path, phonons_cheap
):
    down = lambda path, query: int(query.get("page_offset", 0)) >= 600  # noqa: E731
    proxy.add_fault("status", status=503, match=down, times=10_000)
    source = _source(proxy, response_fields="_exmpl_last_phdos_peak")
    store = tmp_path / "s.zarr"
    with pytest.raises(SourceUnavailableError) as caught:
        featurize_to_store(source, str(store), CHEAP, client=client, chunk_rows=300,
                           partition_rows=300, progress=False)  # fmt: skip
    text = str(caught.value)
    assert "3 of 5 partitions could not be fetched" in text
    assert "records 600..899 (page_offset=600..800, page_limit=100)" in text
    assert "records 1200..1264" in text and "HTTP 503" in text
    proxy.clear_faults()
    proxy.clear_log()
    summary = featurize_to_store(source, str(store), CHEAP, client=client, chunk_rows=300,
                                 partition_rows=300, progress=False)  # fmt: skip
    assert summary.resumed_partitions == 2
    fetched = sorted(int(r.query["page_offset"]) for r in proxy.log if "page_offset" in r.query
                     and "lattice_vectors" in r.query.get("response_fields", ""))  # fmt: skip
    assert fetched[0] == 600  # the finished partitions were not fetched again
    ours, clean = _arrays(store), _arrays(phonons_cheap)
    for name in ours:
        np.testing.assert_array_equal(ours[name], clean[name])


def test_per_host_limit_holds_across_workers(proxy, client, tmp_path):
    proxy.add_fault("delay", seconds=0.3, match="lattice_vectors", times=100)
    policy = HttpPolicy(timeout=20, retries=2, backoff=0.05, per_host=1)
    source = _source(proxy, policy=policy)
    featurize_to_store(source, str(tmp_path / "s.zarr"), CHEAP, client=client, chunk_rows=100,
                       partition_rows=100, progress=False)  # fmt: skip
    spans = sorted((r.started, r.started + r.seconds) for r in proxy.log if r.fault == "delay")
    assert len(spans) >= 13
    overlap = max(sum(1 for a, b in spans if a < t < b) for t in [s + 0.15 for s, _ in spans])
    assert overlap == 1  # two worker processes, never two requests at once


def test_api_key_is_sent_but_never_stored(proxy, client, tmp_path, monkeypatch):
    monkeypatch.setenv("XS_TEST_KEY", "secret-value-123")
    source = _source(proxy, 'filter=id="phonons-1" OR id="phonons-2"', auth_env="XS_TEST_KEY")
    with Client(processes=False, n_workers=1, dashboard_address=None) as local:
        featurize_to_store(source, str(tmp_path / "s.zarr"), CHEAP, client=local, progress=False)
    assert {r.headers.get("x-api-key") for r in proxy.log} == {"secret-value-123"}
    stored = b"".join(p.read_bytes() for p in (tmp_path / "s.zarr").rglob("*") if p.is_file())
    assert b"secret-value-123" not in stored and b"XS_TEST_KEY" in stored
    monkeypatch.delenv("XS_TEST_KEY")
    with pytest.raises(ConfigError, match="XS_TEST_KEY"):
        source.plan(100)


def test_sigkilled_job_resumes_to_the_identical_store(proxy, tmp_path, phonons_cheap):
    proxy.add_fault("delay", seconds=0.6, match="lattice_vectors", times=10_000)
    url = f"optimade:{proxy.url}/v1/structures?{PHONONS}"
    store = tmp_path / "s.zarr"
    command = [sys.executable, "-m", "xenonscale.cli.main", "featurize", url, "-o", str(store),
               "--kind", "structure", "--featurizers", "composition", "--workers", "1",
               "--chunk-rows", "300", "--partition-rows", "300",
               "--response-fields", "_exmpl_last_phdos_peak",
               "--no-progress"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(command, env=env, start_new_session=True)
    done = store / "_xenonscale" / "done"
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline and len(list(done.glob("*.json")) if done.exists() else []) < 1
    ):
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)
    finished = len(list(done.glob("*.json")))
    assert 1 <= finished < 5
    proxy.clear_faults()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"{finished} already done" in rerun.stdout
    ours, clean = _arrays(store), _arrays(phonons_cheap)
    for name in ours:
        np.testing.assert_array_equal(ours[name], clean[name])


# -- incremental sync ---------------------------------------------------------------------------


def _changed(entries: list[dict]) -> tuple[list[dict], dict]:
    """The server's content a month later: 20 removed, 50 modified, 100 added."""
    base, extra = entries[:600], entries[600:700]
    removed = {e["id"] for e in base[10:30]}
    modified = {}
    later = pd.Timestamp("2024-03-01T00:00:00", tz="UTC").to_pydatetime()
    out = []
    for k, entry in enumerate(base):
        if entry["id"] in removed:
            continue
        if 100 <= k < 150:  # a relaxed structure: the lattice grows by 1 %, the target moves
            entry = entry | {
                "lattice_vectors": (np.asarray(entry["lattice_vectors"]) * 1.01).tolist(),
                "cartesian_site_positions": (
                    np.asarray(entry["cartesian_site_positions"]) * 1.01
                ).tolist(),
                "last_modified": later,
                "_exmpl_last_phdos_peak": entry["_exmpl_last_phdos_peak"] + 1.0,
            }
            modified[entry["id"]] = entry
        out.append(entry)
    for k, entry in enumerate(extra):
        out.append(entry | {"last_modified": later + pd.Timedelta(seconds=k).to_pytimedelta()})
    return out, {"removed": removed, "modified": set(modified), "added": {e["id"] for e in extra}}


def test_sync_fetches_only_what_changed_and_equals_a_fresh_store(entries, client, tmp_path):
    """100 added, 50 modified, 20 removed → 150 records fetched; store = fresh + 20 flagged;
    retrain then retrains the model trained on it."""
    from xenonscale.workflows.registration import train_and_register
    from xenonscale.workflows.retraining import retrain
    from xenonscale.zoo import Zoo

    phonons = [e for e in entries if e["_exmpl_dataset"] == "phonons"]
    before, after = phonons[:600], None
    after, truth = _changed(phonons)
    store, fresh = tmp_path / "synced.zarr", tmp_path / "fresh.zarr"
    zoo = Zoo(str(tmp_path / "zoo"))
    spec = FeaturizerSpec.parse("structure", "composition,rdf")
    with OptimadeServer(before, page_limit=50) as old, FaultProxy(old.base_url) as proxy:
        url = f"optimade:{proxy.url}/v1/structures?{PHONONS}"
        source = open_source(url, response_fields="_exmpl_last_phdos_peak", policy=FAST)
        featurize_to_store(source, str(store), spec, client=client, chunk_rows=200, progress=False)
        train_and_register(str(store), "last_phdos_peak", name="peak", zoo=zoo, max_epochs=3,
                           hidden=[16], progress=False, output=tmp_path / "model")  # fmt: skip
        with OptimadeServer(after, page_limit=50) as new:
            proxy.upstream = new.base_url
            delta = lambda path, q: (  # noqa: E731 - the changed records' pages fail at first
                "last_modified >" in q.get("filter", "") and "lattice_vectors" in str(q)
            )
            proxy.add_fault("status", status=503, match=delta, times=1_000)
            with pytest.raises(SourceUnavailableError, match="could not be fetched"):
                sync_store(url, str(store), client=client, progress=False,
                           source_options={"policy": FAST})  # fmt: skip
            assert not open_store(str(store)).attrs.get("sync_history")  # nothing half-applied
            proxy.clear_faults()
            proxy.clear_log()
            summary = sync_store(url, str(store), client=client, progress=False,
                                 source_options={"policy": FAST})  # fmt: skip
            full = [r for r in proxy.log if "lattice_vectors" in r.query.get("response_fields", "")]
            served = [i for r in full for i in r.ids]
            featurize_to_store(
                open_source(url, response_fields="_exmpl_last_phdos_peak", policy=FAST),
                str(fresh), spec, client=client, chunk_rows=200, progress=False,
            )  # fmt: skip
            again = sync_store(url, str(store), client=client, progress=False,
                               source_options={"policy": FAST})  # fmt: skip
    assert (summary.new, summary.modified, summary.withdrawn) == (100, 50, 20)
    assert sorted(served) == sorted(truth["added"] | truth["modified"])  # only those, once each
    assert summary.rows == 700 and summary.fetched == 150
    assert not again.changed and again.fetched == 0

    synced = open_store(str(store))
    clean = open_store(str(fresh))
    withdrawn = synced["withdrawn"].values
    ids = synced["id"].values
    assert {i.split(":", 1)[1] for i in ids[withdrawn]} == truth["removed"]
    keep = np.flatnonzero(~withdrawn)
    order = {i: k for k, i in enumerate(clean["id"].values)}
    rows = np.array([order[i] for i in ids[keep]])
    assert len(rows) == clean.sizes["sample"] == 680
    for name in ("features", "ok", "input", "last_phdos_peak", "last_modified"):
        np.testing.assert_array_equal(synced[name].values[keep], clean[name].values[rows])
    before_rows = synced.isel(sample=withdrawn)  # the withdrawn rows keep their features
    assert before_rows["ok"].values.all()
    attrs = synced.attrs
    assert attrs["rows"] == 700 and attrs["featurized"] + attrs["errors"] == 700
    assert [h["new"] for h in attrs["sync_history"]] == [100, 0]
    assert len(read_errors(str(store))) == attrs["errors"]

    report = retrain(zoo=zoo, max_epochs=3, progress=False)
    assert report[0]["name"] == "peak" and report[0]["reason"] == "store changed"
    assert report[0]["action"] in ("promoted", "kept")
    assert retrain(zoo=zoo, max_epochs=3, progress=False)[0]["action"] == "up to date"


def test_sync_of_a_new_file_dump(client, tmp_path, data_dir):
    """A new dump of a file: content hashes find 30 changed, 25 new and 15 gone rows."""
    spec = FeaturizerSpec.parse("structure", "composition")
    frame = pd.read_csv(data_dir / "structures" / "carbon24_val.csv.gz", nrows=400)
    old, new = frame.iloc[:300].copy(), frame.copy()
    new = new.drop(index=range(50, 65))  # 15 withdrawn
    new = new.drop(index=range(325, 400))  # 25 new rows (300..324) remain
    new.loc[100:129, "energy_per_atom"] += 0.25  # 30 changed
    old.to_csv(tmp_path / "v1.csv", index=False)
    new.sample(frac=1.0, random_state=1).to_csv(tmp_path / "v2.csv", index=False)  # reordered
    new.to_csv(tmp_path / "fresh.csv", index=False)
    options = {"id_column": "material_id"}
    store = str(tmp_path / "s.zarr")
    featurize_to_store(str(tmp_path / "v1.csv"), store, spec, column="cif", client=client,
                       chunk_rows=64, progress=False, source_options=options)  # fmt: skip
    summary = sync_store(str(tmp_path / "v2.csv"), store, client=client, progress=False)
    assert (summary.new, summary.modified, summary.withdrawn, summary.fetched) == (25, 30, 15, 55)
    assert summary.mode == "content"
    featurize_to_store(str(tmp_path / "fresh.csv"), str(tmp_path / "f.zarr"), spec, column="cif",
                       client=client, chunk_rows=64, progress=False,
                       source_options=options)  # fmt: skip
    synced, clean = open_store(store), open_store(str(tmp_path / "f.zarr"))
    keep = np.flatnonzero(~synced["withdrawn"].values)
    order = {i: k for k, i in enumerate(clean["id"].values)}
    rows = np.array([order[i] for i in synced["id"].values[keep]])
    for name in ("features", "ok", "energy_per_atom"):
        np.testing.assert_array_equal(synced[name].values[keep], clean[name].values[rows])
    from click.testing import CliRunner

    from xenonscale.cli.main import cli

    again = CliRunner().invoke(
        cli, ["sync", str(tmp_path / "v2.csv"), store, "--workers", "1", "--no-progress", "--json"]
    )
    assert again.exit_code == 0, again.output
    record = json.loads(again.output.strip().splitlines()[-1])
    assert record["changed"] is False and record["fetched"] == 0 and record["rows"] == 325
    with pytest.raises(StoreError, match="kept up to date by `xenonscale sync`"):
        featurize_to_store(str(tmp_path / "v1.csv"), store, spec, column="cif", client=client,
                           chunk_rows=64, progress=False, source_options=options)  # fmt: skip


def test_sync_refuses_what_it_cannot_do(tmp_path, client):
    with pytest.raises(StoreError, match="featurize it first"):
        sync_store(str(tmp_path / "x.csv"), str(tmp_path / "none.zarr"), client=client)
    (tmp_path / "v.csv").write_text("formula,target\nNaCl,1\nNaCl,2\n")
    store = str(tmp_path / "s.zarr")
    spec = FeaturizerSpec.parse("composition", "classic")
    featurize_to_store(str(tmp_path / "v.csv"), store, spec, client=client, progress=False,
                       source_options={"id_column": "formula"})  # fmt: skip
    with pytest.raises(StoreError, match="duplicate ids"):
        sync_store(str(tmp_path / "v.csv"), store, client=client, progress=False)
    with pytest.raises(ConfigError, match="--kind 'composition'"):
        sync_store("optimade:http://127.0.0.1:9/v1/structures", store, client=client,
                   progress=False)  # fmt: skip
