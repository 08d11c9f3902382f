"""The OPTIMADE test infrastructure: real structures, the reference server, the faulty proxy.

One reference server holds all 7,084 structures of the mirror (Matbench
phonons, Perov-5, Carbon-24) for the whole module; the proxy tests run in
front of it. Skipped without ``optimade`` (the ``test`` extra), a failure
under ``CI=true`` (the rule of the data mirror in ``conftest.py``).
"""

from __future__ import annotations

import http.client
import importlib.util
import itertools
import json
import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Structure

from conftest import under_ci
from xenonscale.datasets import fetch
from xenonscale.errors import ConfigError
from xenonscale.sources import open_source
from xenonscale.testing.optimade import (
    FaultProxy,
    OptimadeServer,
    OptimadeServerError,
    anonymous_symbols,
    optimade_entries,
)

HAS_OPTIMADE = all(importlib.util.find_spec(name) for name in ("optimade", "httpx", "uvicorn"))
NO_OPTIMADE = (
    "optimade[server,http-client] (the OPTIMADE reference server, httpx, uvicorn) is not "
    "installed: pip install -e '.[test]' (make install does)"
)

if HAS_OPTIMADE:
    import httpx

pytestmark = [
    pytest.mark.skipif(not HAS_OPTIMADE and not under_ci(), reason=NO_OPTIMADE),
    pytest.mark.usefixtures("optimade_required", "data_dir"),
]

COUNTS = {"phonons": 1265, "perov5": 3787, "carbon24": 2032}
FILES = {
    "phonons": ("matbench_phonons", {}),
    "perov5": ("perov5_val", {"id_column": "material_id"}),
    "carbon24": ("carbon24_val", {"id_column": "material_id"}),
}
BASE_TIME = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def optimade_required() -> None:
    if not HAS_OPTIMADE:  # only reached under CI=true (skipped otherwise)
        pytest.fail(f"CI=true: {NO_OPTIMADE}", pytrace=False)


@pytest.fixture(scope="module")
def entries(optimade_entries_all) -> list[dict]:
    return optimade_entries_all


@pytest.fixture(scope="module")
def server(optimade_server):
    return optimade_server


@pytest.fixture
def proxy(server):
    with FaultProxy(server.base_url) as running:
        yield running


def get(url: str, **params) -> dict:
    response = httpx.get(url, params=params, timeout=120)
    assert response.status_code == 200, response.text[:2000]
    return response.json()


def returned(server, filter: str) -> int:
    return get(server.url + "/structures", filter=filter, page_limit=1)["meta"]["data_returned"]


def source_records(data_dir, name: str) -> pd.DataFrame:
    registry_name, options = FILES[name]
    source = open_source(str(fetch(registry_name, data_dir=data_dir, download=False)), **options)
    _, partitions = source.plan(rows_per_partition=10_000)
    return pd.concat([source.read(partition) for partition in partitions], ignore_index=True)


def file_structure(data_dir, name: str, row: int) -> Structure:
    """Row ``row`` of a file as the file source reads it, parsed with pymatgen."""
    record = source_records(data_dir, name).iloc[row]
    if name == "phonons":
        return Structure.from_dict(record["input"])
    return Structure.from_str(record["cif"], fmt="cif")


def first_row(entries: list[dict], name: str) -> int:
    return next(i for i, entry in enumerate(entries) if entry["_exmpl_dataset"] == name)


# -- entries ---------------------------------------------------------------------------


def test_entries_cover_the_three_files_in_order(entries):
    assert len(entries) == sum(COUNTS.values()) == 7084
    datasets = [entry["_exmpl_dataset"] for entry in entries]
    expected = [name for name, count in COUNTS.items() for _ in range(count)]
    assert datasets == expected
    ids = [entry["id"] for entry in entries]
    assert len(set(ids)) == len(ids)
    times = [entry["last_modified"] for entry in entries]
    assert times[0] == BASE_TIME and all(t.tzinfo is not None for t in times)
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(times))
    assert all(entry["type"] == "structures" for entry in entries)
    fields = {name: set() for name in COUNTS}
    for entry in entries:
        fields[entry["_exmpl_dataset"]].update(k for k in entry if k.startswith("_exmpl_"))
    common = {"_exmpl_dataset", "_exmpl_source_id"}
    assert fields["phonons"] == common | {"_exmpl_last_phdos_peak"}
    perov = {"_exmpl_heat_all", "_exmpl_heat_ref", "_exmpl_dir_gap", "_exmpl_ind_gap"}
    assert fields["perov5"] == common | perov  # not the text `formula`, not pandas' index
    assert fields["carbon24"] == common | {"_exmpl_energy_per_atom"}


def test_entry_ids_are_the_file_sources_ids(entries, data_dir):
    for name in COUNTS:
        records = source_records(data_dir, name)
        mine = [entry for entry in entries if entry["_exmpl_dataset"] == name]
        assert [entry["_exmpl_source_id"] for entry in mine] == records["id"].tolist()
        assert [entry["id"] for entry in mine] == [f"{name}-{i}" for i in records["id"]]
        target = {"phonons": "last phdos peak", "perov5": "heat_all", "carbon24": "energy_per_atom"}
        key = "_exmpl_" + target[name].replace(" ", "_")
        np.testing.assert_array_equal([e[key] for e in mine], records[target[name]].to_numpy())


def test_file_ids_clash_across_the_files_unless_qualified(data_dir):
    # Matbench's index (0, 1, ...) and Perov-5's material_id share values ('82' in the first 90)
    with pytest.raises(ConfigError, match="qualify_ids"):
        optimade_entries(["phonons", "perov5"], data_dir=data_dir, limit=90, qualify_ids=False)
    plain = optimade_entries(["perov5"], data_dir=data_dir, limit=3, qualify_ids=False)
    assert [entry["id"] for entry in plain] == source_records(data_dir, "perov5")["id"][:3].tolist()


def test_bad_arguments_are_refused(data_dir):
    with pytest.raises(ConfigError, match="names"):
        optimade_entries(["phonons", "mp"], data_dir=data_dir)
    with pytest.raises(ConfigError, match="provider"):
        optimade_entries(["phonons"], data_dir=data_dir, provider="Bad-Prefix")
    with pytest.raises(ConfigError, match="limit"):
        optimade_entries(["phonons"], data_dir=data_dir, limit=-1)


@pytest.mark.parametrize(("name", "row"), [("phonons", 7), ("perov5", 1234), ("carbon24", 2031)])
def test_lattice_and_positions_are_the_files_structure(entries, data_dir, name, row):
    entry = entries[first_row(entries, name) + row]
    structure = file_structure(data_dir, name, row)
    np.testing.assert_allclose(
        entry["lattice_vectors"], structure.lattice.matrix, rtol=0, atol=1e-9
    )
    positions = entry["cartesian_site_positions"]
    np.testing.assert_allclose(positions, structure.cart_coords, rtol=0, atol=1e-9)
    assert entry["species_at_sites"] == [site.specie.symbol for site in structure]
    assert entry["nsites"] == len(structure) == len(positions)
    assert entry["chemical_formula_reduced"] == "".join(
        f"{el}{int(n) if n != 1 else ''}"
        for el, n in sorted(
            structure.composition.reduced_composition.items(), key=lambda x: str(x[0])
        )
    )


def test_anonymous_symbols_follow_the_specification():
    from optimade.models.utils import ANONYMOUS_ELEMENTS

    assert tuple(anonymous_symbols(len(ANONYMOUS_ELEMENTS))) == ANONYMOUS_ELEMENTS


# -- the reference server --------------------------------------------------------------


def test_server_serves_every_entry(server, entries):
    assert server.url == server.base_url + "/v1"
    page = get(server.url + "/structures")
    assert page["meta"]["data_returned"] == page["meta"]["data_available"] == len(entries)
    # optimade 1.5.0's own default page size (20) wins over the configured page_limit (100)
    assert len(page["data"]) in {20, server.page_limit}
    assert len(get(server.url + "/structures", page_limit=1000)["data"]) == 1000
    too_many = httpx.get(server.url + "/structures", params={"page_limit": 1001}, timeout=60)
    assert too_many.status_code == 403 and "1000" in too_many.text  # page_limit_max
    assert page["links"]["next"].startswith(server.url + "/structures?")
    info = get(server.url + "/info/structures")["data"]["properties"]
    assert info["_exmpl_dataset"]["type"] == info["_exmpl_source_id"]["type"] == "string"
    assert info["_exmpl_last_phdos_peak"]["type"] == info["_exmpl_heat_all"]["type"] == "float"
    for name, count in COUNTS.items():
        assert returned(server, f'_exmpl_dataset="{name}"') == count


def test_round_trip_through_the_server_and_the_optimade_adapter(server, entries, data_dir):
    from optimade.adapters import Structure as OptimadeStructure

    for name, row in [("phonons", 0), ("phonons", 1000), ("perov5", 17), ("carbon24", 500)]:
        entry = entries[first_row(entries, name) + row]
        page = get(server.url + "/structures", filter=f'id="{entry["id"]}"')
        assert [doc["id"] for doc in page["data"]] == [entry["id"]]
        served = OptimadeStructure(page["data"][0]).as_pymatgen
        original = file_structure(data_dir, name, row)
        assert [s.specie.symbol for s in served] == [s.specie.symbol for s in original]
        np.testing.assert_allclose(served.lattice.matrix, original.lattice.matrix, atol=1e-8)
        np.testing.assert_allclose(served.frac_coords, original.frac_coords, rtol=0, atol=1e-8)
        direct = OptimadeStructure({"id": entry["id"], "type": "structures", "attributes": {
            k: v for k, v in entry.items() if k not in ("id", "type")}}).as_pymatgen  # fmt: skip
        np.testing.assert_allclose(direct.cart_coords, original.cart_coords, rtol=0, atol=1e-9)


def test_last_modified_is_a_date_on_the_server(server, entries):
    cut = BASE_TIME + timedelta(minutes=30)
    later = sum(entry["last_modified"] > cut for entry in entries)
    assert later == len(entries) - 1801
    assert returned(server, 'last_modified > "2024-01-01T00:30:00Z"') == later
    assert returned(server, 'last_modified <= "2024-01-01T00:30:00Z"') == 1801
    window = 'last_modified >= "2024-01-01T00:10:00Z" AND last_modified < "2024-01-01T00:20:00Z"'
    assert returned(server, window) == 600


def test_provider_fields_filter_and_response_fields(server, entries):
    assert returned(server, '_exmpl_dataset="phonons"') == 1265
    hot = sum(1 for e in entries if (e.get("_exmpl_last_phdos_peak") or 0) > 500)
    assert returned(server, "_exmpl_last_phdos_peak > 500") == hot
    page = get(server.url + "/structures", response_fields="id,last_modified", page_limit=3)
    assert [doc["id"] for doc in page["data"]] == [entry["id"] for entry in entries[:3]]
    assert [set(doc["attributes"]) for doc in page["data"]] == [{"last_modified"}] * 3
    assert page["data"][1]["attributes"]["last_modified"].startswith("2024-01-01T00:00:01")
    first = get(server.url + "/structures", page_limit=1)["data"][0]["attributes"]
    assert first["_exmpl_last_phdos_peak"] == entries[0]["_exmpl_last_phdos_peak"]  # exact
    assert first["_exmpl_heat_all"] is None  # a field of other entries: null here


@pytest.mark.parametrize("sort", [None, "id"])
def test_page_offset_paging_is_stable(server, sort):
    def read_all() -> list[str]:
        ids, offset = [], 0
        while True:
            params = {"filter": '_exmpl_dataset="perov5"', "response_fields": "id"}
            params |= {"page_limit": 1000, "page_offset": offset} | ({"sort": sort} if sort else {})
            page = get(server.url + "/structures", **params)
            ids += [doc["id"] for doc in page["data"]]
            offset += len(page["data"])
            if not page["meta"]["more_data_available"]:
                return ids

    first, second = read_all(), read_all()
    assert first == second
    assert len(first) == len(set(first)) == 3787
    if sort:
        assert first == sorted(first)


def test_a_server_that_fails_to_start_says_why_and_stops():
    bad = [{"id": "x1", "type": "references", "last_modified": BASE_TIME}]
    server = OptimadeServer(bad, timeout=60)
    with pytest.raises(OptimadeServerError, match=r"(?s)serves 0 entries, not 1.*its output"):
        server.start()
    with pytest.raises(OSError):  # stopped: nothing listens on its port any more
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


# -- the proxy -------------------------------------------------------------------------


def without_time(document: dict) -> dict:
    document["meta"].pop("time_stamp", None)
    return document


def test_proxy_passes_pages_through_with_its_own_links(server, proxy):
    query = "/v1/structures?page_limit=5&filter=_exmpl_dataset%3D%22carbon24%22"
    upstream = httpx.get(server.base_url + query, timeout=60)
    through = httpx.get(proxy.url + query, timeout=60)
    assert through.status_code == upstream.status_code == 200
    assert through.headers["content-type"] == upstream.headers["content-type"]
    assert server.base_url in upstream.text and server.base_url not in through.text
    rewritten = json.loads(upstream.text.replace(server.base_url, proxy.url))
    assert without_time(through.json()) == without_time(rewritten)
    next_page = httpx.get(through.json()["links"]["next"], timeout=60)
    assert next_page.json()["meta"]["query"]["representation"].endswith("page_offset=5")
    [first, second] = proxy.log
    assert first.path == "/v1/structures" and first.status == 200 and first.fault is None
    assert first.query == {"page_limit": "5", "filter": '_exmpl_dataset="carbon24"'}
    assert first.records == 5 and first.ids == tuple(d["id"] for d in through.json()["data"])
    assert second.ids == tuple(d["id"] for d in next_page.json()["data"])
    assert set(first.ids).isdisjoint(second.ids)
    proxy.clear_log()
    assert proxy.log == []


def test_status_faults(proxy):
    proxy.add_fault("status", status=429, retry_after=3, match="page_limit=2")
    proxy.add_fault("status", status=500, times=2)
    assert proxy.faults_left() == 3
    url = proxy.url + "/v1/structures"
    limited = httpx.get(url, params={"page_limit": 2}, timeout=60)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert limited.json()["errors"][0]["status"] == "429"
    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(url + "?page_limit=2", timeout=60)
    assert failed.value.code == 500 and "Retry-After" not in failed.value.headers
    assert httpx.get(url, timeout=60).status_code == 500
    assert httpx.get(url, params={"page_limit": 2}, timeout=60).status_code == 200
    assert proxy.faults_left() == 0
    assert [(r.status, r.fault, r.records) for r in proxy.log] == [
        (429, "status", 0), (500, "status", 0), (500, "status", 0), (200, None, 2)]  # fmt: skip


def test_a_dropped_connection_is_an_incomplete_body(proxy):
    proxy.add_fault("drop", times=2, match=lambda path, query: query.get("page_offset") == "7")
    url = proxy.url + "/v1/structures?page_limit=3&page_offset=7"
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, timeout=60)
    with pytest.raises(http.client.IncompleteRead) as cut:
        urllib.request.urlopen(url, timeout=60).read()
    assert len(cut.value.partial) > 0 and cut.value.expected > 0  # about half of the page
    whole = httpx.get(url, timeout=60)
    assert whole.status_code == 200 and len(whole.json()["data"]) == 3
    assert [(r.status, r.fault, r.ids) for r in proxy.log][:2] == [(200, "drop", ())] * 2
    assert proxy.log[2].ids == tuple(d["id"] for d in whole.json()["data"])


def test_a_delayed_page_is_slow_and_whole(proxy):
    proxy.add_fault("delay", seconds=1.5)
    start = time.monotonic()
    page = httpx.get(proxy.url + "/v1/structures?page_limit=4", timeout=60)
    assert time.monotonic() - start >= 1.5
    assert page.status_code == 200 and len(page.json()["data"]) == 4
    [record] = proxy.log
    assert record.fault == "delay" and record.seconds >= 1.5 and record.records == 4


def test_a_server_that_stays_down(proxy):
    proxy.down = True
    proxy.add_fault("status", status=502)  # waits while the server is down
    for _ in range(3):
        assert httpx.get(proxy.url + "/v1/info", timeout=10).status_code == 503
    assert proxy.faults_left() == 1
    proxy.down = False
    assert httpx.get(proxy.url + "/v1/info", timeout=10).status_code == 502
    assert httpx.get(proxy.url + "/v1/info", timeout=10).status_code == 200
    assert [(r.status, r.fault) for r in proxy.log] == [(503, "down")] * 3 + [
        (502, "status"), (200, None)]  # fmt: skip


def test_faults_are_checked(proxy):
    with pytest.raises(ConfigError):
        proxy.add_fault("teapot")
    with pytest.raises(ConfigError):
        proxy.add_fault("delay")
    with pytest.raises(ConfigError):
        proxy.add_fault("status", times=0)
    assert proxy.faults_left() == 0


def test_the_upstream_can_be_switched_behind_the_same_port(server, entries, proxy):
    url = proxy.url
    with OptimadeServer(entries[-10:]) as other:
        proxy.upstream = other.base_url
        page = httpx.get(url + "/v1/structures?page_limit=4", timeout=60).json()
        assert page["meta"]["data_returned"] == 10
        assert [doc["id"] for doc in page["data"]] == [entry["id"] for entry in entries[-10:-6]]
        assert page["links"]["next"].startswith(url + "/v1/structures?")
    gone = httpx.get(url + "/v1/structures", timeout=60)  # the new backend stopped
    assert gone.status_code == 502
    proxy.upstream = server.base_url
    assert httpx.get(url + "/v1/structures", timeout=60).json()["meta"]["data_returned"] == 7084
    assert proxy.url == url
