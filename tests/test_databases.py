"""The OPTIMADE provider registry (``xenonscale.sources.providers``) and ``xenonscale databases``.

Offline: the providers list and the curated table are shipped files; the
live path talks to a tiny OPTIMADE index meta-database served on 127.0.0.1
by an ``http.server`` thread here, and to a closed port on 127.0.0.1 for the
unreachable case. Nothing here touches the internet.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata, resources
from typing import ClassVar

import pytest
from click.testing import CliRunner

from xenonscale.cli.main import cli
from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources import providers

DATA = resources.files("xenonscale.sources").joinpath("data")
SNAPSHOT = json.loads(DATA.joinpath("optimade_providers.json").read_text("utf-8"))
CURATED = json.loads(DATA.joinpath("optimade_databases.json").read_text("utf-8"))["databases"]


def _package_providers() -> dict:
    try:
        path = resources.files("optimade").joinpath("server", "data", "providers.json")
        return json.loads(path.read_text("utf-8"))
    except (ModuleNotFoundError, OSError):
        pytest.skip("the optimade package (or its providers.json) is not installed")


# -- the shipped data ---------------------------------------------------------------------------


def test_the_snapshot_equals_the_package_list_on_the_fields_kept():
    package = _package_providers()
    kept = SNAPSHOT["fields"]
    assert kept == ["id", "name", "description", "base_url", "homepage"]
    expected = [
        {"id": entry["id"], **{k: entry["attributes"].get(k) for k in kept[1:]}}
        for entry in package["data"]
    ]
    assert SNAPSHOT["providers"] == expected
    assert SNAPSHOT["optimade_version"] == metadata.version("optimade")
    assert "providers.json" in SNAPSHOT["source"]


def test_the_package_list_is_preferred_and_the_snapshot_is_the_fallback(monkeypatch):
    _package_providers()
    assert providers.provider_list_origin().startswith("optimade ")
    with_package = providers.providers()
    monkeypatch.setattr(providers, "_package_list", lambda: None)  # as without the package
    providers._catalog.cache_clear()
    try:
        assert providers.provider_list_origin().startswith("shipped copy of the optimade")
        assert providers.providers() == with_package
        assert providers.resolve_base_url("mp") == "https://optimade.materialsproject.org"
    finally:
        monkeypatch.undo()
        providers._catalog.cache_clear()
    assert providers.provider_list_origin().startswith("optimade ")


@pytest.mark.parametrize("listing", ["package", "snapshot"])
def test_every_curated_database_belongs_to_a_listed_provider(listing):
    if listing == "package":
        prefixes = {entry["id"] for entry in _package_providers()["data"]}
    else:
        prefixes = {record["id"] for record in SNAPSHOT["providers"]}
    missing = sorted({row["provider"] for row in CURATED} - prefixes)
    assert missing == [], f"curated databases of providers not in the {listing} list: {missing}"


def test_curated_records_are_complete_and_each_provider_has_one_default():
    required = {"provider", "name", "default", "base_url", "description", "source", "checked"}
    defaults: dict[str, int] = {}
    seen = set()
    for row in CURATED:
        assert required <= set(row), row
        assert row["base_url"].startswith(("https://", "http://")), row
        assert not row["base_url"].endswith("/"), row
        assert providers.SEPARATOR not in row["name"] and "/" not in row["name"], row
        assert row["source"].strip() and "not reachable" in row["checked"], row
        assert (row["provider"], row["name"]) not in seen, row
        seen.add((row["provider"], row["name"]))
        defaults[row["provider"]] = defaults.get(row["provider"], 0) + bool(row["default"])
    assert set(defaults.values()) == {1}, defaults
    assert {"mp", "oqmd", "alexandria", "aflow", "jarvis", "cod", "nmd", "mpds", "odbx"} <= set(
        defaults
    )


def test_providers_carry_the_lists_facts_and_their_databases():
    every = providers.providers()
    assert [p.prefix for p in every] == sorted(p.prefix for p in every)
    mp = providers.provider("mp")
    assert mp.name == "The Materials Project"
    assert mp.homepage == "https://www.materialsproject.org"
    assert mp.index_url == "https://providers.optimade.org/index-metadbs/mp"
    assert mp.default == providers.Database(
        "main", "https://optimade.materialsproject.org", mp.default.description, True,
        mp.default.source, mp.default.checked,
    )  # fmt: skip
    alexandria = providers.provider("alexandria")
    assert alexandria.default.name == "pbe" and alexandria.databases[0] is alexandria.default
    assert {"pbe", "pbesol", "scan"} <= {db.name for db in alexandria.databases}
    assert providers.provider("aiida").databases == ()  # listed, no database known here
    assert providers.provider("aiida").default is None


# -- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "url"),
    [
        ("mp", "https://optimade.materialsproject.org"),
        ("MP", "https://optimade.materialsproject.org"),
        ("mp.main", "https://optimade.materialsproject.org"),
        ("oqmd", "https://oqmd.org/optimade"),
        ("alexandria", "https://alexandria.icams.rub.de/pbe"),
        ("alexandria.pbe", "https://alexandria.icams.rub.de/pbe"),
        ("alexandria.pbesol", "https://alexandria.icams.rub.de/pbesol"),
        ("alexandria.scan", "https://alexandria.icams.rub.de/scan"),
        ("aflow", "https://aflow.org/API/optimade"),
        ("jarvis", "https://jarvis.nist.gov/optimade/jarvisdft"),
        ("cod", "https://www.crystallography.net/cod/optimade"),
        ("nmd", "https://nomad-lab.eu/prod/v1/optimade"),
        ("mpds", "https://api.mpds.io"),
        ("odbx", "https://optimade.odbx.science"),
        (
            "https://optimade.example.org/v1/structures",
            "https://optimade.example.org/v1/structures",
        ),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_resolve_base_url(name, url):
    assert providers.resolve_base_url(name) == url


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("alexandira", ["'alexandira'", "did you mean alexandria", "xenonscale databases list"]),
        ("mpx", ["'mpx'", "did you mean mp", "xenonscale databases list"]),
        ("no-such-provider", ["'no-such-provider'", "xenonscale databases list", "https://"]),
        ("alexandria.pbee", ["'alexandria.pbee'", "alexandria.pbesol", "--live"]),
        ("alexandria/pbesol", ["'alexandria/pbesol'", "'alexandria.pbesol'"]),
        ("aiida", ["'aiida'", "xenonscale databases show aiida --live"]),
        ("ftp://example.org", ["'ftp://example.org'", "https://"]),
    ],
)
def test_unknown_names_are_one_line_with_the_value_and_the_fix(name, words):
    with pytest.raises(ConfigError) as caught:
        providers.resolve_base_url(name)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_an_unknown_prefix_suggests_close_prefixes():
    with pytest.raises(ConfigError, match=r"'oqdm' is not an OPTIMADE provider prefix.*oqmd"):
        providers.provider("oqdm")


# -- a local OPTIMADE index meta-database -------------------------------------------------------


class _Index(BaseHTTPRequestHandler):
    """``/v1/links`` of an index meta-database; ``/broken/v1/links`` answers 500."""

    links: ClassVar[dict] = {}
    agents: ClassVar[list] = []

    def do_GET(self):  # http.server's name
        type(self).agents.append(self.headers.get("User-Agent"))
        if self.path == "/v1/links":
            body, status = json.dumps(self.links).encode(), 200
        elif self.path == "/garbage/v1/links":
            body, status = b"<html>not json</html>", 200
        else:
            body, status = b'{"errors": [{"status": "500"}]}', 500
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


LINKS = {
    "meta": {"api_version": "1.0.0", "more_data_available": False},
    "data": [
        {
            "id": "local-main",
            "type": "links",
            "attributes": {
                "name": "local", "description": "A local test database",
                "base_url": "http://127.0.0.1:9/optimade", "homepage": None,
                "link_type": "child",
            },
        },
        {
            "id": "alexandria-pbesol",  # a curated URL (trailing slash): keeps its curated name
            "type": "links",
            "attributes": {
                "name": "alexandria", "description": "PBEsol",
                "base_url": {"href": "https://alexandria.icams.rub.de/pbesol/", "meta": {}},
                "homepage": None, "link_type": "child",
            },
        },
        {
            "id": "no-url", "type": "links",
            "attributes": {"name": "x", "description": "", "base_url": None,
                           "homepage": None, "link_type": "child"},
        },
        {
            "id": "optimade-providers", "type": "links",
            "attributes": {"name": "providers", "description": "",
                           "base_url": "https://providers.optimade.org", "homepage": None,
                           "link_type": "providers"},
        },
    ],
}  # fmt: skip


@pytest.fixture
def index(monkeypatch):
    """A local index meta-database: its base URL (http://127.0.0.1:PORT)."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    _Index.links, _Index.agents = LINKS, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Index)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def closed_port() -> str:
    """http://127.0.0.1:PORT where nothing listens (a port just released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _point(monkeypatch, prefix: str, index_url: str) -> None:
    """Make provider ``prefix``'s index meta-database ``index_url`` (restored after the test)."""
    catalog = providers._catalog()[0]
    monkeypatch.setitem(catalog, prefix, dataclasses.replace(catalog[prefix], index_url=index_url))


def test_live_databases_reads_the_child_links_of_the_index(index):
    found = providers.live_databases("alexandria", index_url=index)
    assert [(db.name, db.base_url) for db in found] == [
        ("local-main", "http://127.0.0.1:9/optimade"),
        ("pbesol", "https://alexandria.icams.rub.de/pbesol"),
    ]
    assert found[0].description == "A local test database"
    assert _Index.agents == [f"xenonscale/{__import__('xenonscale').__version__}"]


def test_live_databases_uses_the_providers_index(index, monkeypatch):
    _point(monkeypatch, "mp", index + "/")
    assert [db.name for db in providers.live_databases("mp")] == ["local-main", "alexandria-pbesol"]


@pytest.mark.parametrize(
    ("path", "words"),
    [("/broken", ["HTTP 500", "/broken/v1/links"]), ("/garbage", ["not answer an OPTIMADE links"])],
)
def test_live_databases_reports_a_bad_index_in_one_line(index, path, words):
    with pytest.raises(SourceError) as caught:
        providers.live_databases("mp", index_url=index + path)
    assert "\n" not in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_live_databases_reports_an_unreachable_index_in_one_line(closed_port):
    with pytest.raises(SourceError) as caught:
        providers.live_databases("mp", index_url=closed_port, timeout=2.0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{closed_port}/v1/links is unreachable" in message and "'mp'" in message


def test_live_databases_needs_an_index():
    with pytest.raises(SourceError, match="'aiida' lists no index meta-database"):
        providers.live_databases("aiida")


# -- the command line ---------------------------------------------------------------------------


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["databases", *args])


def test_databases_list():
    result = _invoke("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["prefix", "name"] and "databases" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:] if line.strip()}
    assert "https://optimade.materialsproject.org" in rows["mp"]
    assert rows["mp"].split()[-1] == "1"
    assert "https://alexandria.icams.rub.de/pbe " in rows["alexandria"]
    assert rows["alexandria"].split()[-1] == str(len(providers.provider("alexandria").databases))
    assert rows["aiida"].split()[-2:] == ["-", "0"]
    assert len([r for r in rows if r in {p.prefix for p in providers.providers()}]) == len(
        providers.providers()
    )
    assert result.stderr == ""


def test_databases_list_json():
    result = _invoke("list", "--json")
    assert result.exit_code == 0, result.output
    records = {r["prefix"]: r for r in json.loads(result.stdout)}
    assert set(records) == {p.prefix for p in providers.providers()}
    (main,) = records["mp"]["databases"]
    assert main["base_url"] == "https://optimade.materialsproject.org" and main["use"] == "mp"
    assert records["mp"]["live"] is False
    uses = [db["use"] for db in records["alexandria"]["databases"]]
    assert uses[:2] == ["alexandria", "alexandria.pbesol"]


def test_databases_show():
    result = _invoke("show", "mp")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("mp  The Materials Project\n")
    assert "https://providers.optimade.org/index-metadbs/mp" in out
    assert "main (default)" in out and "https://optimade.materialsproject.org" in out
    assert 'xenonscale featurize "optimade:mp?filter=elements HAS \\"Li\\"" -o li.zarr' in out
    assert "--kind structure" in out
    result = _invoke("show", "alexandria")
    assert result.exit_code == 0, result.output
    assert "pbesol" in result.stdout and '"optimade:alexandria.pbesol?filter=' in result.stdout


def test_databases_show_a_provider_without_databases():
    result = _invoke("show", "aiida")
    assert result.exit_code == 0, result.output
    assert "no database known" in result.stdout and "optimade:https://" in result.stdout


def test_databases_show_an_unknown_prefix_is_one_line_exit_2():
    result = _invoke("show", "materialsproject")
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "'materialsproject'" in line and "xenonscale databases list" in line


def test_databases_show_live(index, monkeypatch):
    _point(monkeypatch, "alexandria", index)
    result = _invoke("show", "alexandria", "--live")
    assert result.exit_code == 0, result.output
    assert "databases (live from its index)" in result.stdout
    assert "http://127.0.0.1:9/optimade" in result.stdout
    assert '"optimade:http://127.0.0.1:9/optimade?filter=' in result.stdout  # not curated: URL
    assert '"optimade:alexandria.pbesol?filter=' in result.stdout  # curated: its name
    assert "alexandria.icams.rub.de/pbe\n" not in result.stdout  # the live list, not the table
    assert result.stderr == ""
    result = _invoke("show", "alexandria", "--live", "--json")
    record = json.loads(result.stdout)
    assert record["live"] is True
    assert [db["name"] for db in record["databases"]] == ["local-main", "pbesol"]


def test_databases_show_live_falls_back_with_a_note(closed_port, monkeypatch):
    _point(monkeypatch, "mp", closed_port)
    result = _invoke("show", "mp", "--live")
    assert result.exit_code == 0, result.output
    assert "databases (shipped table)" in result.stdout
    assert "https://optimade.materialsproject.org" in result.stdout
    (note,) = result.stderr.splitlines()
    assert note.startswith("xenonscale databases: note: ")
    assert "unreachable" in note and "shipped table" in note


def test_databases_list_live(index, closed_port, monkeypatch):
    """One index answers, every other one is unreachable: the table mixes, one note."""
    for p in providers.providers():
        if p.index_url:
            _point(monkeypatch, p.prefix, index if p.prefix == "mp" else closed_port)
    result = _invoke("list", "--live", "--json")
    assert result.exit_code == 0, result.output
    records = {r["prefix"]: r for r in json.loads(result.stdout)}
    assert records["mp"]["live"] is True
    assert [db["name"] for db in records["mp"]["databases"]] == ["local-main", "alexandria-pbesol"]
    assert records["alexandria"]["live"] is False
    assert (
        records["alexandria"]["databases"][0]["base_url"] == "https://alexandria.icams.rub.de/pbe"
    )
    (note,) = result.stderr.splitlines()
    assert "could not be read" in note and "mp," not in note and "alexandria" in note
