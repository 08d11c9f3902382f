"""Scale benchmark: a crystal-graph store of 150,000 structures through the engine.

Claim checked (issue 15): the graph store of 150,000 resampled real structures
builds through the engine with flat worker memory; rows/s is reported beside
RDF+OFM in the same run; a killed job resumes to an identical store.

1. **Input.** The real structures of ``$XENONSCALE_DATA_DIR/structures``:
   ``matbench_phonons.json.gz`` (1,265 pymatgen structure dicts),
   ``perov5_val.csv.gz`` (3,787 CIFs) and ``carbon24_val.csv.gz`` (2,032
   CIFs); each CIF is turned into a pymatgen dict once (cached under
   ``--workdir``). **The rows are resampled with replacement** (seeded,
   ``numpy.random.default_rng(seed)``) from these 7,084 structures into a
   JSON-lines file of ``--rows`` lines ``{"id": "ROW:DATASET:ID",
   "structure": {...}}``; the RDF+OFM and resume inputs are its first
   ``--descriptor-rows`` / ``--resume-rows`` lines.
2. **Graph store.** An embedded 2-worker cluster
   (``xenonscale.cluster.get_client``), then
   ``xenonscale.engine.featurize_to_store(jsonl, store, graph spec)``; wall
   time and rows/s cover that call (an untimed warm-up job per featurizer
   on ``workers × chunk_rows`` rows first loads the imports and tables). A
   thread polls every 0.2 s the RSS of each worker process (PIDs from
   ``client.run(os.getpid)``, as in ``bench/featurize_scale.py``) and the
   number of done markers. Per worker:
   *first* = its peak RSS until every worker has finished a partition (the
   first steady value), *median* and *max* over the rest of the run; the run is
   "flat" when max ≤ 1.25 × first (``--flat-tolerance``). Store bytes on disk
   per row are printed.
3. **RDF+OFM** (``rdf,ofm``, 1,224 features) on the first ``--descriptor-rows``
   rows on the same cluster, right after: rows/s beside the graph's, and the
   ratio.
4. **Kill and resume.** A graph store of the first ``--resume-rows`` rows is
   started in a subprocess (its own session: the client, scheduler and worker
   processes share one process group), killed with ``SIGKILL`` to the group
   once ``--kill-after`` done markers are in ``STORE/_xenonscale/done/``, then
   the same command is rerun to completion (it takes over the dead job's lock
   and skips the marked partitions). The result is compared with a store built
   in one go from the same file: ``features`` (bit for bit), ``ok``, ``id``
   and the error table must be identical.

Run (full size, ~12 min on 2 shared cores)::

    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python bench/graphs_scale.py \\
        --json bench/results/graphs_scale.json
    # smoke test (< 2 min)
    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python bench/graphs_scale.py \\
        --rows 3000 --descriptor-rows 300 --resume-rows 2000 --partition-rows 500 \\
        --chunk-rows 250 --resume-partition-rows 250
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# Keep the imports above light: Dask's "spawn" re-imports this file in every
# worker process (as __mp_main__), and anything imported here is worker memory.
BENCH_DIR = Path(__file__).resolve().parent
DATASETS = (("matbench_phonons", "structure"), ("perov5_val", "cif"), ("carbon24_val", "cif"))
POLL_SECONDS = 0.2
MiB = 1 << 20

# The job the kill/resume step runs in a subprocess (argv: source store workers chunk partition).
RESUME_JOB = """
import json, sys
from xenonscale.cluster import close_client, get_client
from xenonscale.engine import featurize_to_store
from xenonscale.featurize.registry import FeaturizerSpec
source, store, workers, chunk, partition = sys.argv[1:6]
client = get_client(workers=int(workers), quiet=True)
try:
    job = featurize_to_store(source, store, FeaturizerSpec.parse("structure", "graph"),
                             column="structure", client=client, chunk_rows=int(chunk),
                             partition_rows=int(partition), progress=False)
finally:
    close_client(client)
print("SUMMARY " + json.dumps({"rows": job.rows, "featurized": job.featurized,
      "errors": job.errors, "partitions": job.partitions,
      "resumed_partitions": job.resumed_partitions, "seconds": job.seconds}), flush=True)
"""


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "node": platform.node(),
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def disk_usage(path: Path) -> tuple[int, int, int]:
    """(bytes allocated on disk, apparent bytes, files) under ``path``."""
    allocated = apparent = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            st = os.stat(os.path.join(root, name))
            allocated += st.st_blocks * 512
            apparent += st.st_size
            files += 1
    return allocated, apparent, files


def done_count(store: Path) -> int:
    try:
        return sum(name.endswith(".json") for name in os.listdir(store / "_xenonscale" / "done"))
    except OSError:
        return 0


# ------------------------------------------------------------------ input data
class Pool:
    """The real structures: one compact JSON text per unique structure, with its origin."""

    def __init__(self, workdir: Path) -> None:
        from xenonscale.datasets import fetch

        paths = [Path(fetch(name)) for name, _ in DATASETS]
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.read_bytes())
        self.sha256 = digest.hexdigest()
        cache = workdir / f"graphs_pool_{self.sha256[:12]}.jsonl"
        if not cache.exists():
            workdir.mkdir(parents=True, exist_ok=True)
            started = time.perf_counter()
            tmp = cache.with_name(cache.name + ".tmp")
            with open(tmp, "w") as out:
                for (name, column), path in zip(DATASETS, paths, strict=True):
                    for ident, structure in self._read(name, column, path):
                        out.write(
                            json.dumps(
                                {"id": f"{name}:{ident}", "structure": structure},
                                separators=(",", ":"),
                            )
                            + "\n"
                        )
            tmp.replace(cache)
            print(f"  pool: converted to {cache} in {time.perf_counter() - started:.1f} s")
        self.ids, self.texts, self.origin = [], [], []
        with open(cache) as handle:
            for line in handle:
                doc = json.loads(line)
                self.ids.append(doc["id"])
                self.origin.append(doc["id"].split(":", 1)[0])
                self.texts.append(json.dumps(doc["structure"], separators=(",", ":")))
        self.counts = {name: self.origin.count(name) for name, _ in DATASETS}
        self.paths = [str(p) for p in paths]

    @staticmethod
    def _read(name: str, column: str, path: Path):
        import pandas as pd

        if column == "structure":  # pandas orient='split', structure dicts
            frame = pd.read_json(path, orient="split")
            yield from enumerate(frame[column])
            return
        from pymatgen.core import Structure

        warnings.filterwarnings("ignore", "Issues encountered while parsing CIF")
        frame = pd.read_csv(path)
        ids = frame.get("material_id", frame.index)
        seen: dict[str, dict] = {}
        for ident, cif in zip(ids, frame[column], strict=True):
            if cif not in seen:  # once per unique structure
                seen[cif] = Structure.from_str(cif, fmt="cif").as_dict()
            yield ident, seen[cif]

    def __len__(self) -> int:
        return len(self.texts)


def resampled_jsonl(pool: Pool, rows: int, seed: int, workdir: Path) -> tuple[Path, np.ndarray]:
    """``rows`` structures drawn with replacement (seeded), one JSON line each (cached)."""
    index = np.random.default_rng(seed).integers(0, len(pool), size=rows)
    path = workdir / f"graphs_resampled_{rows}_seed{seed}.jsonl"
    meta_path = path.with_suffix(".json")
    meta = {"pool_sha256": pool.sha256, "rows": rows, "seed": seed}
    if path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(meta_path.read_text())
            if {k: old.get(k) for k in meta} == meta and old.get("bytes") == path.stat().st_size:
                print(f"  reusing {path} ({rows:,} rows, {path.stat().st_size / MiB:,.0f} MiB)")
                return path, index
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as out:
        for row, i in enumerate(index.tolist()):
            out.write(f'{{"id":"{row}:{pool.ids[i]}","structure":{pool.texts[i]}}}\n')
    tmp.replace(path)
    meta["bytes"] = path.stat().st_size
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  wrote {path} ({rows:,} rows, {meta['bytes'] / MiB:,.0f} MiB)")
    return path, index


def head(path: Path, rows: int) -> Path:
    """The first ``rows`` lines of ``path`` as their own file."""
    out = path.with_name(f"{path.stem}_head{rows}.jsonl")
    with open(path) as src, open(out, "w") as dst:
        for i, line in enumerate(src):
            if i == rows:
                break
            dst.write(line)
    return out


# ---------------------------------------------------------------------- memory
class Timeline:
    """Every ``POLL_SECONDS``: seconds, done markers, RSS of each worker and of this process."""

    def __init__(self, workers: dict[str, int], store: Path) -> None:
        self.procs = {addr: psutil.Process(pid) for addr, pid in workers.items()}
        self.me = psutil.Process()
        self.store = store
        self.samples: list[tuple[float, int, dict[str, int], int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-timeline")

    def _sample(self) -> None:
        rss = {}
        for addr, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                rss[addr] = proc.memory_info().rss
        t = time.perf_counter() - self.t0
        self.samples.append((t, done_count(self.store), rss, self.me.memory_info().rss))

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._sample()

    def __enter__(self) -> Timeline:
        self.t0 = time.perf_counter()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self, tolerance: float) -> dict[str, Any]:
        """first (peak until every worker finished a partition), median and max after it."""
        workers = len(self.procs)
        settled = next((i for i, s in enumerate(self.samples) if s[1] >= workers), None)
        per_worker = {}
        for n, addr in enumerate(self.procs):
            series = [s[2].get(addr, 0) for s in self.samples]
            out = {"before": series[0], "max": max(series), "median_all": statistics.median(series)}
            if settled is not None and settled + 1 < len(series):
                first, rest = max(series[: settled + 1]), series[settled + 1 :]
                out |= {
                    "first": first,
                    "median": statistics.median(rest),
                    "max_after": max(rest),
                    "max_over_first": max(rest) / first,
                }
            per_worker[f"worker {n}"] = out
        ratios = [w["max_over_first"] for w in per_worker.values() if "max_over_first" in w]
        points = np.linspace(0, len(self.samples) - 1, min(10, len(self.samples))).astype(int)
        return {
            "samples": len(self.samples),
            "settled_at_seconds": None if settled is None else self.samples[settled][0],
            "workers": per_worker,
            "client_max": max(s[3] for s in self.samples),
            "flat": (max(ratios) <= tolerance) if ratios else None,
            "max_over_first": max(ratios) if ratios else None,
            "timeline": [
                {
                    "seconds": round(self.samples[i][0], 1),
                    "done": self.samples[i][1],
                    "worker_rss": list(self.samples[i][2].values()),
                }
                for i in points
            ],
        }


# ---------------------------------------------------------------------- engine
def run_job(
    client,
    source: Path,
    store: Path,
    names: str,
    rows: int,
    chunk: int,
    partition: int | None,
    tolerance: float,
) -> dict[str, Any]:
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    spec = FeaturizerSpec.parse("structure", names)
    shutil.rmtree(store, ignore_errors=True)
    pids = client.run(os.getpid)
    load_before = os.getloadavg()
    with Timeline(pids, store) as timeline:
        started = time.perf_counter()
        job = featurize_to_store(
            str(source),
            str(store),
            spec,
            column="structure",
            client=client,
            chunk_rows=chunk,
            partition_rows=partition,
            progress=False,
        )
        seconds = time.perf_counter() - started
    allocated, apparent, files = disk_usage(store)
    return {
        "featurizers": names,
        "rows": rows,
        "source": str(source),
        "store": str(store),
        "seconds": seconds,
        "rows_per_second": rows / seconds if rows else None,
        "summary": {
            k: getattr(job, k)
            for k in (
                "rows",
                "featurized",
                "errors",
                "features",
                "partitions",
                "resumed_partitions",
            )
        },
        "memory": timeline.summary(tolerance),
        "worker_restarted": sorted(pids.values()) != sorted(client.run(os.getpid).values()),
        "store_bytes_on_disk": allocated,
        "store_bytes_apparent": apparent,
        "store_files": files,
        "bytes_per_row": allocated / rows if rows else None,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def resume_job(args: argparse.Namespace, source: Path, store: Path) -> dict[str, Any]:
    """Start the job in a subprocess, SIGKILL its process group after some markers, rerun."""
    command = [
        sys.executable,
        "-c",
        RESUME_JOB,
        str(source),
        str(store),
        str(args.workers),
        str(args.chunk_rows),
        str(args.resume_partition_rows),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    shutil.rmtree(store, ignore_errors=True)
    log = store.with_suffix(".log")
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        killed = False
        while proc.poll() is None:
            if done_count(store) >= args.kill_after:
                os.killpg(proc.pid, signal.SIGKILL)
                killed = True
                break
            time.sleep(0.05)
        proc.wait()
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):  # anything of that group still alive
            os.killpg(proc.pid, signal.SIGKILL)
    killed_after = time.perf_counter() - started
    markers_at_kill = done_count(store)
    lock_left = (store / "_xenonscale" / "lock.json").exists()
    started = time.perf_counter()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    rerun_seconds = time.perf_counter() - started
    summary = None
    for line in rerun.stdout.splitlines():
        if line.startswith("SUMMARY "):
            summary = json.loads(line[len("SUMMARY ") :])
    if summary is None:
        print(rerun.stdout[-3000:], rerun.stderr[-3000:], sep="\n")
    return {
        "killed": killed,
        "first_exit_code": proc.returncode,
        "seconds_until_kill": killed_after,
        "markers_at_kill": markers_at_kill,
        "lock_left_by_killed_job": lock_left,
        "rerun_exit_code": rerun.returncode,
        "rerun_seconds": rerun_seconds,
        "rerun_summary": summary,
        "log": str(log),
    }


def compare_stores(a: Path, b: Path) -> dict[str, Any]:
    import xarray as xr

    from xenonscale.store import read_errors

    x, y = xr.open_zarr(str(a)), xr.open_zarr(str(b))
    fa, fb = x.features.values, y.features.values
    out = {
        "shape": list(fa.shape),
        "features": bool(
            fa.shape == fb.shape and np.array_equal(fa.view(np.uint32), fb.view(np.uint32))
        ),
        "features_array_equal": bool(np.array_equal(fa, fb, equal_nan=True)),
        "ok": bool(np.array_equal(x.ok.values, y.ok.values)),
        "id": bool(np.array_equal(x.id.values, y.id.values)),
        "errors": bool(read_errors(str(a)).equals(read_errors(str(b)))),
    }
    out["identical"] = all(out[k] for k in ("features", "ok", "id", "errors"))
    return out


# ---------------------------------------------------------------------- report
def mib(n: float | None) -> str:
    return "-" if n is None else f"{n / MiB:,.0f} MiB"


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"\n{results['date']}  {m['node']}: {m['cpu']}, {m['cpu_count']} cores "
        f"(affinity {m['affinity']}), {m['memory'] / (1 << 30):.1f} GiB, Python {m['python']}"
    )
    s = results["settings"]
    print(
        f"input: {results['input']['pool']} real structures {results['input']['counts']}, "
        f"RESAMPLED WITH REPLACEMENT (seed {s['seed']}); {s['workers']} workers × 1 thread, "
        f"chunk_rows {s['chunk_rows']}, partition_rows {s['partition_rows'] or 'engine default'}"
    )
    header = (
        f"{'featurizers':<10}{'rows':>9}{'features':>9}{'errors':>8}{'tasks':>6}"
        f"{'seconds':>9}{'rows/s':>9}{'ratio':>7}{'bytes/row':>11}{'RSS first':>11}"
        f"{'median':>9}{'max':>9}{'flat':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    graph_rate = results["runs"][0]["rows_per_second"]
    for r in results["runs"]:
        mem, su = r["memory"], r["summary"]
        firsts = [w.get("first") for w in mem["workers"].values()]
        medians = [w.get("median") for w in mem["workers"].values()]
        first = max((v for v in firsts if v), default=None)
        median = max((v for v in medians if v), default=None)
        peak = max(w["max"] for w in mem["workers"].values())
        flat = "-" if mem["flat"] is None else ("yes" if mem["flat"] else "NO")
        print(
            f"{r['featurizers']:<10}{r['rows']:>9,}{su['features']:>9,}{su['errors']:>8,}"
            f"{su['partitions']:>6}{r['seconds']:>9.1f}{r['rows_per_second']:>9,.0f}"
            f"{graph_rate / r['rows_per_second']:>6.1f}×{r['bytes_per_row']:>11,.0f}"
            f"{mib(first):>11}{mib(median):>9}{mib(peak):>9}{flat:>6}"
        )
    print(
        "(ratio: graph rows/s ÷ this run's rows/s; RSS per worker, the largest shown: first = "
        "peak until every worker finished a partition, median/max after it)"
    )
    for r in results["runs"]:
        mem = r["memory"]
        print(
            f"\n{r['featurizers']}: {mem['samples']} RSS samples, settled after "
            f"{mem['settled_at_seconds'] or 0:.1f} s; max/first "
            f"{mem['max_over_first'] or 0:.2f}; client "
            f"max {mib(mem['client_max'])}; load avg {r['loadavg_before'][0]:.1f} → "
            f"{r['loadavg_after'][0]:.1f}; worker restarted: {r['worker_restarted']}"
        )
        for name, w in mem["workers"].items():
            print(
                f"  {name}: before {mib(w['before'])}, first {mib(w.get('first'))}, median "
                f"{mib(w.get('median'))}, max {mib(w['max'])}"
            )
        print(
            "  timeline (s, done markers, worker RSS MiB): "
            + "; ".join(
                f"{p['seconds']:.0f} {p['done']} "
                + "/".join(f"{v / MiB:.0f}" for v in p["worker_rss"])
                for p in mem["timeline"]
            )
        )
    k = results["resume"]
    c = k["comparison"]
    rs = k["rerun_summary"] or {}
    print(
        f"\nkill/resume on {s['resume_rows']:,} rows ({rs.get('partitions')} partitions of "
        f"{s['resume_partition_rows']}): SIGKILL to the job's process group after "
        f"{k['seconds_until_kill']:.1f} s with {k['markers_at_kill']} done markers "
        f"(killed: {k['killed']}, lock left: {k['lock_left_by_killed_job']}); rerun "
        f"{k['rerun_seconds']:.1f} s, exit {k['rerun_exit_code']}, resumed "
        f"{rs.get('resumed_partitions')} partitions"
    )
    print(
        f"  vs the store built in one go: features bit-identical {c['features']}, "
        f"np.array_equal(equal_nan) {c['features_array_equal']}, ok {c['ok']}, id {c['id']}, "
        f"error table {c['errors']} → {'IDENTICAL' if c['identical'] else 'DIFFERENT'}"
    )
    print(
        f"\nverdict: graph store flat memory: {results['runs'][0]['memory']['flat']}; "
        f"resume identical: {c['identical']}; graph {graph_rate:,.0f} rows/s vs RDF+OFM "
        f"{results['runs'][1]['rows_per_second']:,.0f} rows/s"
    )


# ------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=150_000, help="graph store rows")
    parser.add_argument("--descriptor-rows", type=int, default=10_000, help="RDF+OFM rows")
    parser.add_argument("--resume-rows", type=int, default=20_000, help="kill/resume rows")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--chunk-rows", type=int, default=1_000, help="Zarr chunk rows")
    parser.add_argument(
        "--partition-rows",
        type=int,
        default=5_000,
        help="rows per task (0: the engine's default sizing)",
    )
    parser.add_argument(
        "--resume-partition-rows",
        type=int,
        default=1_000,
        help="rows per task of the kill/resume job",
    )
    parser.add_argument("--kill-after", type=int, default=3, help="done markers before SIGKILL")
    parser.add_argument("--flat-tolerance", type=float, default=1.25, help="max/first for flat")
    parser.add_argument("--seed", type=int, default=0, help="resampling seed")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"), help="inputs and stores")
    parser.add_argument("--keep-stores", action="store_true", help="keep the Zarr stores")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if (
        min(
            args.rows,
            args.descriptor_rows,
            args.resume_rows,
            args.workers,
            args.chunk_rows,
            args.resume_partition_rows,
            args.kill_after,
        )
        < 1
    ):
        parser.error("row counts, --workers, --chunk-rows and --kill-after must be positive")
    args.descriptor_rows = min(args.descriptor_rows, args.rows)
    args.resume_rows = min(args.resume_rows, args.rows)
    partition = args.partition_rows or None
    work = Path(args.workdir)

    print("input: real structures resampled with replacement")
    pool = Pool(work)
    source, index = resampled_jsonl(pool, args.rows, args.seed, work)
    descriptors_source = head(source, args.descriptor_rows)
    resume_source = head(source, args.resume_rows)
    drawn = {name: int(sum(pool.origin[i] == name for i in index.tolist())) for name in pool.counts}

    from xenonscale.cluster import close_client, get_client

    runs = []
    client = get_client(workers=args.workers, quiet=True)
    try:
        client.wait_for_workers(args.workers)
        warm = head(source, min(args.rows, args.workers * args.chunk_rows))
        for names in ("graph", "rdf,ofm"):  # imports and tables loaded before any clock runs
            run_job(
                client,
                warm,
                work / "graphs_scale_warmup.zarr",
                names,
                0,
                args.chunk_rows,
                args.chunk_rows,
                args.flat_tolerance,
            )
        shutil.rmtree(work / "graphs_scale_warmup.zarr", ignore_errors=True)
        for names, src, rows, label in (
            ("graph", source, args.rows, "graphs_scale"),
            ("rdf,ofm", descriptors_source, args.descriptor_rows, "graphs_scale_rdf_ofm"),
        ):
            print(
                f"\nfeaturize {rows:,} rows with {names} (load average "
                f"{os.getloadavg()[0]:.1f}) ..."
            )
            if names == "graph":
                part = partition
            else:  # at least two tasks per worker, so both cores stay busy
                part = max(args.chunk_rows, -(-rows // (2 * args.workers)))
                part = min(part, partition or part)
            run = run_job(
                client,
                src,
                work / f"{label}_{rows}.zarr",
                names,
                rows,
                args.chunk_rows,
                part,
                args.flat_tolerance,
            )
            print(
                f"  {run['seconds']:.1f} s, {run['rows_per_second']:,.0f} rows/s, "
                f"{run['summary']['errors']} errors"
            )
            runs.append(run)
        print(f"\nkill/resume: {args.resume_rows:,} rows in a subprocess ...")
        resumed = work / f"graphs_scale_resumed_{args.resume_rows}.zarr"
        resume = resume_job(args, resume_source, resumed)
        print("  reference store in one go ...")
        reference = run_job(
            client,
            resume_source,
            work / f"graphs_scale_once_{args.resume_rows}.zarr",
            "graph",
            args.resume_rows,
            args.chunk_rows,
            args.resume_partition_rows,
            args.flat_tolerance,
        )
    finally:
        close_client(client)
    resume["comparison"] = (
        compare_stores(resumed, Path(reference["store"]))
        if resume["rerun_summary"]
        else {
            k: False
            for k in ("features", "features_array_equal", "ok", "id", "errors", "identical")
        }
    )
    resume["reference_seconds"] = reference["seconds"]

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "input": {
            "datasets": pool.paths,
            "pool": len(pool),
            "counts": pool.counts,
            "drawn": drawn,
            "resampled_with_replacement": True,
            "seed": args.seed,
            "source": str(source),
            "source_bytes": source.stat().st_size,
        },
        "runs": runs,
        "graph_over_rdf_ofm": runs[0]["rows_per_second"] / runs[1]["rows_per_second"],
        "resume": resume,
    }
    report(results)
    if not args.keep_stores:
        for path in [r["store"] for r in runs] + [str(resumed), reference["store"]]:
            shutil.rmtree(path, ignore_errors=True)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")
    ok = resume["comparison"]["identical"] and runs[0]["memory"]["flat"] is not False
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
