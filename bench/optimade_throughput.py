"""OPTIMADE throughput: the xenonscale engine against optimade-python-tools' own client.

What it measures, on one reference server in one run:

1. **Server.** The 7,084 real structures of ``$XENONSCALE_DATA_DIR/structures``
   (Matbench phonons 1,265, Perov-5 3,787, Carbon-24 2,032) as OPTIMADE
   entries (:func:`xenonscale.testing.optimade.optimade_entries`;
   ``--limit-per-file N`` keeps the first ``N`` of each file), served by the
   optimade-python-tools reference server (FastAPI + uvicorn, in-memory
   mongomock backend) in a subprocess on 127.0.0.1
   (:class:`~xenonscale.testing.optimade.OptimadeServer`, ``page_limit`` 100,
   ``page_limit_max`` 1000). Every method runs the same query (``--filter``,
   default ``nsites>=1``: every entry) with the same fields: the structure
   fields the xenonscale source asks for plus ``_exmpl_last_phdos_peak``.
2. **xenonscale engine, 1 and 2 workers.** ``featurize_to_store(source,
   store, FeaturizerSpec.parse("structure", FEATURIZERS), client=...)`` on an
   embedded ``LocalCluster(processes=True, threads_per_worker=1,
   dashboard_address=None)`` of 1 and of 2 workers (both clusters stay up for
   the whole run). Workers fetch their own pages (``page_offset`` paging,
   ``page_limit`` 100, at most ``--per-host`` requests in flight across the
   cluster), turn each entry into a pymatgen structure dict, featurize and
   write Zarr; a fresh store in a temporary folder each time. The default
   featurizer, ``composition`` (the structure's composition features), is
   cheap, so the figure is dominated by fetching and converting the records;
   ``--featurizers`` takes any structure spec (``composition,rdf,ofm``).
   Chunks and tasks: ``--chunk-rows`` rows (default: 500, shrunk to a
   multiple of the page size that gives ≥ 4 tasks per worker).
3. **xenonscale fetch, 1 process.** The same source in this process,
   ``source.plan(chunk_rows)`` then ``source.read(p)`` for every partition in
   turn: fetching and conversion to structure dicts, no featurization, no Dask.
4. **The peer: optimade-python-tools' ``OptimadeClient``** (``silent=True``,
   ``max_results_per_provider=0``: no cap):

   * ``get_one("structures", filter, base_url, response_fields=...,
     page_limit=100)`` with ``use_async=False`` (``requests``): the client's
     public call that takes a page size, the same 100 as xenonscale;
   * ``get(filter, response_fields=...)`` (async ``httpx``), the call its
     documentation shows. It sends no ``page_limit``, so it gets the server's
     default page: 20 records with optimade 1.5.0 whatever the configuration
     says (the bench asks the server and prints it). This costs 5× the
     requests; ``--methods`` can leave it out.

   Records are counted in what the client returns; the bench checks that every
   method returned the server's ``meta.data_returned`` records and that the
   ids the peer returned are the ids the xenonscale source read.

Each method gets one untimed warm-up on a small query (``--warmup-filter``,
ANDed with the filter: imports, worker tables, connection pools). Then come
``--repeats`` rounds, each running every method once (interleaved, so the
drift of a shared machine is spread over all of them). Reported: records,
median seconds, records/s (records ÷ median seconds), the ratio to the peer
at the same page size and to ``get()``, and the CPU seconds the server process
used per wall second (``psutil``): near 1.0 means the single-process server is
the limit.

On the test server every request costs ~0.9 s of server CPU at 7,084 entries
(mongomock copies the collection on each query), so the full default run is
long: about 30 min on 2 cores (3 rounds; ``get()`` alone ~5 min a round).

Run::

    # full (7,084 records, 3 rounds, all methods: ~30 min on 2 cores)
    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        bench/optimade_throughput.py
    # what bench/README.md shows (1 round without get(): ~5.5 min)
    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        bench/optimade_throughput.py --repeats 1 --methods engine1,engine2,fetch,peer
    # smoke test: 1 round, 300 structures of each file
    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        bench/optimade_throughput.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

# Keep the imports above light: Dask starts its workers with multiprocessing's
# "spawn", which re-imports this file (as __mp_main__) in every worker process.
BENCH_DIR = Path(__file__).resolve().parent
FIELD = "_exmpl_last_phdos_peak"
PAGE_LIMIT = 100
PAGE_LIMIT_MAX = 1000
METHODS = ("engine1", "engine2", "fetch", "peer", "peer_get")
LABELS = {
    "engine1": "xenonscale engine, 1 worker",
    "engine2": "xenonscale engine, 2 workers",
    "fetch": "xenonscale fetch, 1 process",
    "peer": "OptimadeClient.get_one, page_limit=100",
    "peer_get": "OptimadeClient.get()",
}


def machine() -> dict[str, Any]:
    """CPU model, cores, Python, platform and the versions that matter here."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for dist in (
        "xenonscale",
        "optimade",
        "mongomock",
        "fastapi",
        "uvicorn",
        "httpx",
        "requests",
        "dask",
        "distributed",
        "zarr",
        "pymatgen",
        "numpy",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "node": platform.node(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


@dataclass
class Timing:
    """One timed call: what it returned and what it cost."""

    records: int
    seconds: float
    server_cpu: float  # CPU seconds of the server process during the call
    extra: dict[str, Any] = field(default_factory=dict)


class ServerClock:
    """CPU seconds (user + system) of the server process and its children."""

    def __init__(self, server) -> None:
        import psutil

        process = getattr(server, "_process", None)
        self.process = psutil.Process(process.pid) if process is not None else None

    def cpu(self) -> float:
        if self.process is None:
            return float("nan")
        times = self.process.cpu_times()
        return times.user + times.system + times.children_user + times.children_system


def timed(clock: ServerClock, call: Callable[[], tuple[int, dict[str, Any]]]) -> Timing:
    import gc

    gc.collect()
    cpu = clock.cpu()
    started = time.perf_counter()
    records, extra = call()
    seconds = time.perf_counter() - started
    return Timing(records, seconds, clock.cpu() - cpu, extra)


# ----------------------------------------------------------------------- the methods
def xenonscale_url(server_url: str, query_filter: str) -> str:
    url = f"optimade:{server_url}/structures"
    return f"{url}?filter={query_filter}" if query_filter else url


def planned_requests(records: int, chunk_rows: int, page: int = PAGE_LIMIT) -> int:
    """HTTP requests of a xenonscale job, from its plan: the ids-only probe and the
    ``page_offset=1`` check, then ``ceil(rows / page)`` pages per partition."""
    pages = sum(-(-min(chunk_rows, records - s) // page) for s in range(0, records, chunk_rows))
    return 2 + pages


def engine_call(client, url: str, spec, policy, chunk_rows: int, workdir: Path):
    from xenonscale.engine import featurize_to_store
    from xenonscale.sources import open_source

    def call() -> tuple[int, dict[str, Any]]:
        folder = Path(tempfile.mkdtemp(prefix="optimade-throughput-", dir=workdir))
        try:
            source = open_source(url, response_fields=FIELD, policy=policy)
            job = featurize_to_store(
                source,
                str(folder / "store.zarr"),
                spec,
                client=client,
                chunk_rows=chunk_rows,
                partition_rows=chunk_rows,
                progress=False,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return job.rows, {
            "featurized": job.featurized,
            "errors": job.errors,
            "features": job.features,
            "partitions": job.partitions,
            "job_seconds": job.seconds,
            "requests": planned_requests(job.rows, chunk_rows),
        }

    return call


def fetch_call(url: str, policy, chunk_rows: int, keep_ids: list | None = None):
    from xenonscale.sources import open_source

    def call() -> tuple[int, dict[str, Any]]:
        source = open_source(url, response_fields=FIELD, policy=policy)
        total, partitions = source.plan(chunk_rows)
        records, rejected = 0, 0
        for partition in partitions:
            frame = source.read(partition)
            records += len(frame)
            rejected += int(frame["input"].map(lambda x: not isinstance(x, dict)).sum())
            if keep_ids is not None:
                keep_ids.extend(frame["id"])
        pages = sum(-(-p.rows // int(p.locator.get("page", PAGE_LIMIT))) for p in partitions)
        return records, {
            "planned": total,
            "partitions": len(partitions),
            "rejected": rejected,
            "requests": 2 + pages,
        }

    return call


def peer_call(
    base_url: str,
    query_filter: str,
    fields: list[str],
    *,
    default_page: bool,
    keep_ids: list | None = None,
):
    from optimade.client import OptimadeClient

    def call() -> tuple[int, dict[str, Any]]:
        requests: list[str] = []

        def count(url: str, _results: dict) -> None:
            requests.append(url)

        if default_page:  # the documented call: async httpx, the server's default page size
            client = OptimadeClient(
                base_urls=[base_url],
                max_results_per_provider=0,
                silent=True,
                http_timeout=300,
                callbacks=[count],
            )
            answer = client.get(query_filter, response_fields=fields)
            result = answer["structures"][query_filter][base_url]
            data, errors = result["data"], result["errors"]
        else:  # the call that takes a page size: requests, page_limit=100
            client = OptimadeClient(
                base_urls=[base_url],
                max_results_per_provider=0,
                silent=True,
                http_timeout=300,
                use_async=False,
                callbacks=[count],
            )
            result = client.get_one(
                "structures", query_filter, base_url, response_fields=fields, page_limit=PAGE_LIMIT
            )[base_url]
            data, errors = result.data, result.errors
        if errors:
            raise RuntimeError(f"OptimadeClient reported errors: {errors[:3]}")
        if keep_ids is not None:
            keep_ids.extend(entry["id"] for entry in data)
        return len(data), {"requests": len(requests)}

    return call


# ----------------------------------------------------------------------------- report
def summarize(rounds: dict[str, list[Timing]]) -> dict[str, dict[str, Any]]:
    rows = {}
    for method, timings in rounds.items():
        seconds = [t.seconds for t in timings]
        median = statistics.median(seconds)
        records = timings[0].records
        rows[method] = {
            "label": LABELS[method],
            "records": records,
            "records_all_rounds": [t.records for t in timings],
            "seconds": seconds,
            "seconds_median": median,
            "seconds_min": min(seconds),
            "records_per_s": records / median,
            "server_cpu_per_wall_s": statistics.median(t.server_cpu / t.seconds for t in timings),
            "requests": timings[-1].extra.get("requests"),
            "server_cpu_s_per_request": statistics.median(
                t.server_cpu / t.extra["requests"] for t in timings if t.extra.get("requests")
            )
            if timings[-1].extra.get("requests")
            else None,
            "extra": timings[-1].extra,
        }
    for reference, key in (("peer", "ratio_vs_peer_page100"), ("peer_get", "ratio_vs_peer_get")):
        if reference in rows:
            for row in rows.values():
                row[key] = row["records_per_s"] / rows[reference]["records_per_s"]
    return rows


def print_table(results: dict[str, Any]) -> None:
    rows = results["rows"]
    m = results["machine"]
    before, after = results["load_average_before"][0], results["load_average_after"][0]
    print(
        f"\nmachine: {m['cpu']} ({m['cpu_count']} cores, affinity {m['affinity']}), "
        f"Python {m['python']}, optimade {m['versions'].get('optimade')}; load average "
        f"before {before:.2f}, after {after:.2f}"
    )
    print(
        f"query: {results['query_filter'] or '(no filter)'} → {results['data_returned']} records; "
        f"featurizers {results['featurizers']!r}; chunk_rows {results['chunk_rows']}; "
        f"page_limit {PAGE_LIMIT} (server default page without page_limit: "
        f"{results['server_default_page']}); {results['repeats']} round(s), medians"
    )
    header = (
        f"{'method':<42} {'records':>8} {'requests':>8} {'s (median)':>11} {'records/s':>10} "
        f"{'÷ peer p100':>11} {'÷ get()':>8} {'server CPU/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in rows.values():
        ratio = row.get("ratio_vs_peer_page100")
        ratio_get = row.get("ratio_vs_peer_get")
        print(
            f"{row['label']:<42} {row['records']:>8,} {row['requests'] or '-':>8} "
            f"{row['seconds_median']:>11.2f} "
            f"{row['records_per_s']:>10,.0f} "
            f"{(f'{ratio:.2f}×' if ratio is not None else '-'):>11} "
            f"{(f'{ratio_get:.2f}×' if ratio_get is not None else '-'):>8} "
            f"{row['server_cpu_per_wall_s']:>12.2f}"
        )
    for check, ok in results["checks"].items():
        print(f"check {check}: {'ok' if ok else 'FAILED'}")


# ------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 300 structures per file")
    parser.add_argument(
        "--limit-per-file",
        type=int,
        default=None,
        help="first N structures of each file (default all: 7,084 in all)",
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3)")
    parser.add_argument(
        "--filter",
        default="nsites>=1",
        help="OPTIMADE filter of the query ('' for none; default: every entry)",
    )
    parser.add_argument(
        "--warmup-filter",
        default="nsites<=2",
        help="ANDed with --filter for the untimed warm-up ('' for no warm-up)",
    )
    parser.add_argument(
        "--featurizers", default="composition", help="structure featurizers of the engine runs"
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="chunk and task rows of the engine (default 500, fewer for ≥ 4 tasks per worker)",
    )
    parser.add_argument(
        "--per-host",
        type=int,
        default=4,
        help="HttpPolicy(per_host=...): requests in flight per host",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)}",
    )
    parser.add_argument("--data-dir", default=None, help="default $XENONSCALE_DATA_DIR")
    parser.add_argument("--workdir", default=None, help="temporary stores (default: $TMPDIR)")
    parser.add_argument(
        "--json",
        default=None,
        help="default bench/results/optimade_throughput.json (_quick.json with --quick)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = args.repeats or 1
        args.limit_per_file = args.limit_per_file or 300
    args.repeats = args.repeats or 3
    if args.json is None:
        name = "optimade_throughput_quick.json" if args.quick else "optimade_throughput.json"
        args.json = str(BENCH_DIR / "results" / name)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        parser.error(f"--methods {args.methods!r}: choose from {', '.join(METHODS)}")
    args.methods = [m for m in METHODS if m in methods]
    return args


def chunk_size(args: argparse.Namespace, records: int) -> int:
    """``--chunk-rows``, else 500 shrunk (whole pages) to ≥ 4 tasks per worker."""
    if args.chunk_rows:
        return args.chunk_rows
    workers = 2 if "engine2" in args.methods else 1
    fit = records // (4 * workers) // PAGE_LIMIT * PAGE_LIMIT
    return max(PAGE_LIMIT, min(500, fit))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import logging
    import warnings

    from distributed import Client, LocalCluster

    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.sources.http import HttpPolicy, get_json
    from xenonscale.sources.optimade import STRUCTURE_FIELDS
    from xenonscale.testing.optimade import OptimadeServer, optimade_entries

    logging.getLogger("distributed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="Port .* is already in use")  # the scheduler's
    spec = FeaturizerSpec.parse("structure", args.featurizers)
    policy = HttpPolicy(timeout=300, per_host=args.per_host)
    fields = [*STRUCTURE_FIELDS, FIELD]
    workdir = Path(args.workdir or tempfile.gettempdir())

    started = time.perf_counter()
    entries = optimade_entries(data_dir=args.data_dir, limit=args.limit_per_file)
    print(
        f"{len(entries):,} OPTIMADE entries built in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "bench": "optimade_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "entries": len(entries),
        "query_filter": args.filter,
        "featurizers": args.featurizers,
        "fields": fields,
        "per_host": args.per_host,
        "page_limit": PAGE_LIMIT,
        "repeats": args.repeats,
        "load_average_before": load_before,
    }
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        server = stack.enter_context(
            OptimadeServer(entries, page_limit=PAGE_LIMIT, page_limit_max=PAGE_LIMIT_MAX)
        )
        print(f"server {server.base_url} up in {time.perf_counter() - started:.1f} s", flush=True)
        clock = ServerClock(server)
        params = {"page_limit": 1, **({"filter": args.filter} if args.filter else {})}
        returned = get_json(server.url + "/structures", params)["meta"]["data_returned"]
        default_page = len(get_json(server.url + "/structures")["data"])
        chunk_rows = chunk_size(args, returned)
        results.update(
            data_returned=returned, server_default_page=default_page, chunk_rows=chunk_rows
        )
        clients = {}
        for method, workers in (("engine1", 1), ("engine2", 2)):
            if method in args.methods:
                cluster = stack.enter_context(
                    LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                    )
                )
                clients[method] = stack.enter_context(Client(cluster))

        def calls(query_filter: str, ids: dict[str, list] | None = None) -> dict[str, Callable]:
            url = xenonscale_url(server.url, query_filter)
            table = {}
            for method in args.methods:
                if method in clients:
                    table[method] = engine_call(
                        clients[method], url, spec, policy, chunk_rows, workdir
                    )
                elif method == "fetch":
                    table[method] = fetch_call(
                        url, policy, chunk_rows, None if ids is None else ids["fetch"]
                    )
                else:
                    table[method] = peer_call(
                        server.base_url,
                        query_filter,
                        fields,
                        default_page=method == "peer_get",
                        keep_ids=None if ids is None else ids[method],
                    )
            return table

        if args.warmup_filter:
            small = (
                f"({args.filter}) AND ({args.warmup_filter})" if args.filter else args.warmup_filter
            )
            for method, call in calls(small).items():
                timing = timed(clock, call)
                print(
                    f"warm-up {LABELS[method]}: {timing.records} records, {timing.seconds:.2f} s",
                    flush=True,
                )

        ids: dict[str, list] = {method: [] for method in ("fetch", "peer", "peer_get")}
        rounds: dict[str, list[Timing]] = {method: [] for method in args.methods}
        for round_ in range(args.repeats):
            table = calls(args.filter, ids if round_ == 0 else None)
            for method, call in table.items():
                timing = timed(clock, call)
                rounds[method].append(timing)
                print(
                    f"round {round_ + 1}/{args.repeats} {LABELS[method]}: {timing.records:,} "
                    f"records, {timing.seconds:.2f} s, {timing.records / timing.seconds:,.0f} "
                    f"records/s, server CPU {timing.server_cpu / timing.seconds:.2f} s/s, "
                    f"{timing.extra.get('requests')} requests",
                    flush=True,
                )

    results["load_average_after"] = os.getloadavg()
    results["rows"] = summarize(rounds)
    if "peer_get" in results["rows"]:
        results["rows"]["peer_get"]["label"] += f" (page {default_page})"
    counts = {t.records for timings in rounds.values() for t in timings}
    checks = {"every method returned data_returned records": counts == {returned}}
    engine_extra = [t.extra for m in ("engine1", "engine2") for t in rounds.get(m, [])]
    if engine_extra:
        checks["engine: no error rows"] = all(e["errors"] == 0 for e in engine_extra)
    fetched = {i.partition(":")[2] for i in ids["fetch"]}
    for method in ("peer", "peer_get"):
        if ids["fetch"] and ids[method]:
            checks[f"{method}: same ids as the xenonscale source"] = fetched == set(ids[method])
    results["checks"] = checks
    print_table(results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"results written to {args.json}")
    if not all(checks.values()):
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
