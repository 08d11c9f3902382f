"""Shared fixtures: the real-data mirror and the peer libraries (XenonPy, matminer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# -- The real-data mirror: skipped without it, a failure under CI=true ------------------
# (the root conftest.py applies the same rule to the doctests marked +REQUIRES_DATA)

DATA_DIR = (
    Path(os.environ.get("XENONSCALE_DATA_DIR", ""))
    if os.environ.get("XENONSCALE_DATA_DIR")
    else None
)
NO_DATA_REASON = (
    f"real-data mirror not found (XENONSCALE_DATA_DIR={os.environ.get('XENONSCALE_DATA_DIR')!r} "
    "has no compositions/): set XENONSCALE_DATA_DIR to ../shared/data "
    "(the Makefile and .ci/run do this when the folder exists)"
)


def has_data() -> bool:
    return DATA_DIR is not None and (DATA_DIR / "compositions").is_dir()


def under_ci() -> bool:
    """``CI=true`` (any case): the mirror is then required, so its absence fails tests."""
    return os.environ.get("CI", "").lower() == "true"


def require_data() -> Path:
    """The mirror; else skip the calling test, or fail it under ``CI=true``."""
    if not has_data():
        if under_ci():
            pytest.fail(f"CI=true: {NO_DATA_REASON}", pytrace=False)
        pytest.skip(NO_DATA_REASON)
    return DATA_DIR


# For a test or class that needs the mirror but not its path: the data_dir rule.
requires_data = pytest.mark.usefixtures("data_dir")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return require_data()


def _data_skip_fails_under_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Under ``CI=true`` without the mirror, a skip whose reason names XENONSCALE_DATA_DIR fails.

    Catches the modules and fixtures that check the mirror themselves
    (``pytest.skip(..., allow_module_level=True)`` and the like) instead of
    using ``data_dir``; an xfail is left alone.
    """
    if not report.skipped or hasattr(report, "wasxfail") or has_data() or not under_ci():
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if "XENONSCALE_DATA_DIR" in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true: {reason.removeprefix('Skipped: ')}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    report = yield
    _data_skip_fails_under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    _data_skip_fails_under_ci(report)
    return report


@pytest.fixture(scope="session")
def peers():
    """The peer environment (XenonPy 0.6.7, matminer; pandas < 3), one interpreter per session.

    Built by ``make test`` beside the core environment (``.venv-peers``); the
    parity tests call it through :class:`xenonscale.testing.peers.PeerEnvironment`.
    Under ``CI=true`` a missing peer environment fails the tests instead of skipping them.
    """
    from xenonscale.testing.peers import PeerEnvironment, PeerUnavailable

    try:
        environment = PeerEnvironment()
    except PeerUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield environment
    environment.close()


@pytest.fixture(scope="session")
def xenonpy58_csv(data_dir) -> str:
    """The mirror's XenonPy element table, which the peer worker gives XenonPy in its own format."""
    return str(data_dir / "elements" / "xenonpy58.csv")


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module: on a small shared machine, more spin and crawl."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dask_client():
    """A real embedded cluster: 2 worker processes on 127.0.0.1 (TCP)."""
    from xenonscale.cluster import close_client, get_client

    client = get_client(workers=2, quiet=True)
    yield client
    close_client(client)


# -- PostgreSQL: a throwaway server for catalog tests (zoo, tuning) ----------------------

POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def _postgres_bin() -> Path | None:
    """The folder holding initdb/pg_ctl (``$XENONSCALE_PG_BIN``, Debian layout, or PATH)."""
    import glob
    import shutil

    candidates = [os.environ.get("XENONSCALE_PG_BIN", "")]
    candidates += sorted(
        glob.glob(POSTGRES_BIN_GLOB),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    found = shutil.which("initdb")
    candidates.append(str(Path(found).parent) if found else "")
    for folder in filter(None, candidates):
        tools = [Path(folder) / tool for tool in ("initdb", "pg_ctl", "pg_isready", "createdb")]
        if all(tool.is_file() for tool in tools):
            return Path(folder)
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server on 127.0.0.1 (a free port) for the session; yields a SQLAlchemy URL.

    ``postgresql+psycopg://postgres@127.0.0.1:PORT/xenonscale_test`` (trust
    authentication, fsync off: a test server). initdb refuses root, so as
    root the server runs as the ``postgres`` user (``runuser``) in a temporary
    folder it owns. Every step is bounded in time; the server is stopped with
    ``pg_ctl stop -m immediate`` and the folder deleted at the end. Skipped
    when the PostgreSQL server binaries are not installed.
    """
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip(
            f"PostgreSQL server binaries (initdb, pg_ctl) not found in {POSTGRES_BIN_GLOB} or "
            "PATH: install postgresql (apt-get install postgresql) or set XENONSCALE_PG_BIN"
        )
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="xenonscale-pg-"))
    if os.geteuid() == 0:
        import pwd

        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        if not shutil.which("runuser"):
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip("running as root and `runuser` is missing (needed to run as postgres)")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = folder / "data", folder / "server.log"

    def run(*command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, str(bin_dir / command[0]), *command[1:]],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def fail(step: str, result: subprocess.CompletedProcess | None = None) -> None:
        details = (result.stdout + result.stderr) if result is not None else ""
        server_log = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(f"PostgreSQL test server: {step} failed\n{details}\n{server_log}")

    started = False
    try:
        result = run("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                     "--no-sync", timeout=120)  # fmt: skip
        if result.returncode:
            fail("initdb", result)
        for _attempt in range(3):  # the free port may be taken before the server binds it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=60"
            result = run("pg_ctl", "-D", str(data), "-l", str(log), "-o", options, "-w",
                         "-t", "60", "start", timeout=90)  # fmt: skip
            started = result.returncode == 0
            if started:
                break
        if not started:
            fail("pg_ctl start", result)
        deadline = time.monotonic() + 30
        while run("pg_isready", "-h", "127.0.0.1", "-p", str(port), timeout=10).returncode:
            if time.monotonic() > deadline:
                fail("pg_isready (not ready after 30 s)")
            time.sleep(0.2)
        result = run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                     "xenonscale_test", timeout=30)  # fmt: skip
        if result.returncode:
            fail("createdb", result)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/xenonscale_test"
    finally:
        if started:
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "-t", "30", "stop",
                timeout=60)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint():
    """A moto S3 API server on 127.0.0.1 (a free port) for the session; yields its URL."""
    import logging

    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    requests_log = logging.getLogger("werkzeug")  # one line per request otherwise
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        requests_log.setLevel(level)


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch) -> tuple[str, dict]:
    """A fresh bucket on the moto server: ``("s3://NAME", fsspec storage_options)``.

    The AWS variables point at the server too (for code that reads them), only
    for the test.
    """
    import uuid

    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    bucket = f"xenonscale-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    return f"s3://{bucket}", options


@pytest.fixture(scope="session")
def optimade_entries_all(data_dir) -> list[dict]:
    """The mirror's 7,084 structures as OPTIMADE entries (built once per session: ~15 s)."""
    from xenonscale.testing.optimade import optimade_entries

    return optimade_entries(data_dir=data_dir)


@pytest.fixture(scope="session")
def optimade_server(optimade_entries_all):
    """One reference OPTIMADE server with every entry, shared by the OPTIMADE test files."""
    from xenonscale.testing.optimade import OptimadeServer

    with OptimadeServer(optimade_entries_all, page_limit_max=1000) as running:
        yield running
