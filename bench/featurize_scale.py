"""Scale benchmark: millions of compositions CSV → Zarr on an embedded 2-worker cluster.

What it does, for every ``N`` in ``--rows`` (default 1,000,000; add 10,000,000
with ``--rows 1000000,10000000``):

1. **Input.** A CSV ``formula,target`` of ``N`` rows, **resampled with
   replacement from the real OQMD formulas** of
   ``$XENONSCALE_DATA_DIR/compositions/oqmd_formation_enthalpy_train.csv``
   (239,190 rows; every output line is a verbatim line of that file). Rows are
   drawn in blocks of 1,000,000 with ``numpy.random.default_rng([seed, block])``
   and written block by block, so the whole ``N`` is never in memory, and the
   1M file is the first million rows of the 10M one. Files are cached under
   ``--workdir`` (default ``bench/results/``, git-ignored) and reused.
2. **Engine.** A fresh embedded ``LocalCluster`` (``--workers`` worker
   processes, one thread each, 127.0.0.1) per ``N``; then
   ``xenonscale.engine.featurize_to_store(csv, store, pooling spec)`` end to
   end: plan (a streaming scan on the client), store creation, read → featurize
   → write-region on the workers, error table and consolidated metadata. Wall
   time and rows/s cover that call (the cluster start is reported apart).
   XenonPy's seven poolings on the ``xenonpy58`` table: 406 features.
3. **Memory.** A thread polls every 0.2 s the RSS of this process (client +
   scheduler + nannies of the embedded cluster) and of every worker process
   (PIDs from ``client.run(os.getpid)``); the table shows the peak over the
   run, and the RSS before it. User/system CPU seconds and minor page faults
   of each process are recorded too, and the machine-wide CPU used by *other*
   processes during the run ("others": another job on a shared machine).
4. **Check.** The store is opened with plain ``xarray.open_zarr``: ``N``
   samples, ``ok`` count + error-table rows == ``N``, and ``--check-rows``
   rows (first, last, random) equal the in-memory featurizer bit for bit
   (float32 as stored), with the same ``input`` and ``target``.
5. **Peers.** After the engine runs: XenonPy 0.6.7 and matminer per
   composition on ``--peer-rows`` of the same formulas, in their own
   environment (one process, ``xenonscale.testing.peers``), timed there with
   ``bench/compositions.py``'s warm-up + interleaved rounds.
   The fair ratio is xenonscale end-to-end rows/s on ``W`` workers ÷ (peer
   compositions/s on one core × ``W``): the same cores on both sides. The raw
   ratio (÷ one core) is printed too. matminer's figure is its Magpie
   ``ElementProperty`` (132 features) against the engine's 406 pooling
   features, so that ratio understates xenonscale.

Run::

    .venv/bin/python bench/featurize_scale.py                          # 1M rows
    .venv/bin/python bench/featurize_scale.py --rows 1000000,10000000 \\
        --json bench/results/featurize_scale.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

if TYPE_CHECKING:
    from xenonscale.featurize.registry import FeaturizerSpec

# Keep the imports above light: Dask starts its workers with multiprocessing's
# "spawn", which re-imports this file (as __mp_main__) in every worker process,
# and anything imported here would count as worker memory.
BENCH_DIR = Path(__file__).resolve().parent
SOURCE_DATASET = "oqmd_formation_enthalpy_train"
BLOCK_ROWS = 1_000_000  # rows drawn (and written) per block; part of the file's identity
POLL_SECONDS = 0.2
MiB = 1 << 20
CHECKS = (  # all must hold for a run to pass
    "complete",
    "counts_add_up",
    "summary_matches",
    "features_bit_identical",
    "ok_equal",
    "inputs_equal",
    "targets_equal",
    "feature_labels_equal",
)


def peer_bench() -> Any:
    """``bench/compositions.py`` as a module (its import sets the XENONSCALE_DATA_DIR default)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    import compositions

    return compositions


# ------------------------------------------------------------------ input data
class Pool:
    """The real OQMD records: raw CSV lines (verbatim bytes) plus parsed formula/target."""

    def __init__(self, path: Path) -> None:
        import pandas as pd

        raw = path.read_bytes()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        header, _, body = raw.partition(b"\n")
        self.header = header.rstrip(b"\r") + b"\n"
        lines = body.splitlines()
        self.lines = np.asarray([line + b"\n" for line in lines if line.strip()], dtype=object)
        fields = [line.decode().rstrip("\r\n").split(",") for line in self.lines]
        self.formulas = np.asarray([f[0] for f in fields], dtype=object)
        targets = pd.Series([f[1] for f in fields])
        self.targets = pd.to_numeric(targets, errors="coerce").to_numpy()
        self.path = path
        del raw, body, lines, fields

    def __len__(self) -> int:
        return len(self.lines)

    def block_indices(self, seed: int, block: int, rows: int) -> np.ndarray:
        """Pool indices of rows ``block * BLOCK_ROWS ...`` (the first ``rows`` of that block)."""
        rng = np.random.default_rng([seed, block])
        return rng.integers(0, len(self), size=BLOCK_ROWS)[:rows]

    def rows(self, seed: int, row_numbers: Sequence[int]) -> np.ndarray:
        """Pool indices of the given global row numbers of a resampled file."""
        out = np.empty(len(row_numbers), dtype=np.int64)
        by_block: dict[int, list[int]] = {}
        for i, r in enumerate(row_numbers):
            by_block.setdefault(int(r) // BLOCK_ROWS, []).append(i)
        for block, positions in by_block.items():
            idx = self.block_indices(seed, block, BLOCK_ROWS)
            for i in positions:
                out[i] = idx[int(row_numbers[i]) % BLOCK_ROWS]
        return out


def resampled_csv(pool: Pool, rows: int, seed: int, workdir: Path) -> Path:
    """Write (or reuse) ``rows`` resampled OQMD records, one block at a time."""
    path = workdir / f"oqmd_resampled_{rows}_seed{seed}.csv"
    meta_path = path.with_suffix(".json")
    meta = {
        "source": str(pool.path),
        "source_sha256": pool.sha256,
        "rows": rows,
        "seed": seed,
        "block_rows": BLOCK_ROWS,
    }
    if path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(meta_path.read_text())
            if {k: old.get(k) for k in meta} == meta and old.get("bytes") == path.stat().st_size:
                print(f"  reusing {path} ({rows:,} rows, {path.stat().st_size / MiB:,.0f} MiB)")
                return path
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    start = time.perf_counter()
    with open(tmp, "wb") as out:
        out.write(pool.header)
        for block in range(-(-rows // BLOCK_ROWS)):
            n = min(BLOCK_ROWS, rows - block * BLOCK_ROWS)
            out.write(b"".join(pool.lines[pool.block_indices(seed, block, n)].tolist()))
    tmp.replace(path)
    meta["bytes"] = path.stat().st_size
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(
        f"  wrote {path} ({rows:,} rows, {meta['bytes'] / MiB:,.0f} MiB) "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return path


# ---------------------------------------------------------------- memory / CPU
class Sampler:
    """Poll RSS of this process and of the worker processes every ``POLL_SECONDS``."""

    def __init__(self, workers: dict[str, int]) -> None:
        self.procs = {"client": psutil.Process()}
        self.procs.update({f"worker {addr}": psutil.Process(pid) for addr, pid in workers.items()})
        self.baseline = self._rss()
        self.peak = dict(self.baseline)
        self.cpu0 = self._cpu()
        self.system0 = psutil.cpu_times()
        self.wall0 = time.perf_counter()
        self.cpu: dict[str, tuple[float, float, int]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")

    def _rss(self) -> dict[str, int]:
        out = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                out[name] = proc.memory_info().rss
        return out

    def _cpu(self) -> dict[str, tuple[float, float, int]]:
        """(user s, system s, minor page faults) of every process."""
        out = {}
        for name, proc in self.procs.items():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[name] = (t.user, t.system, minor_faults(proc.pid))
        return out

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._sample()

    def _sample(self) -> None:
        for name, rss in self._rss().items():
            self.peak[name] = max(self.peak.get(name, 0), rss)
        self.cpu.update(self._cpu())  # the last reading before a worker could exit
        self.samples += 1

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.system1 = psutil.cpu_times()
        self.wall1 = time.perf_counter()

    def machine_cpu(self) -> dict[str, float]:
        """Machine-wide busy CPU seconds over the run, and the share not used by this job.

        ``other_*`` is busy CPU of every other process (another job on a shared
        machine), so a slow run can be told apart from a slow engine.
        """
        delta = {
            k: getattr(self.system1, k) - getattr(self.system0, k) for k in self.system0._fields
        }
        idle = ("idle", "iowait", "guest", "guest_nice")  # guest time is counted in user
        busy = sum(v for k, v in delta.items() if k not in idle)
        ours = sum(c["user"] + c["system"] for c in self.cpu_used().values())
        capacity = (self.wall1 - self.wall0) * (psutil.cpu_count() or 1)
        return {
            "busy_seconds": busy,
            "job_seconds": ours,
            "other_seconds": max(0.0, busy - ours),
            "other_share": max(0.0, busy - ours) / capacity if capacity else 0.0,
            "steal_seconds": delta.get("steal", 0.0),
            "idle_share": delta.get("idle", 0.0) / capacity if capacity else 0.0,
        }

    def cpu_used(self) -> dict[str, dict[str, float]]:
        """CPU seconds (user, system) and minor page faults of each process over the run."""
        out = {}
        for name, before in self.cpu0.items():
            after = self.cpu.get(name, before)
            user, system, faults = (a - b for a, b in zip(after, before, strict=True))
            out[name] = {"user": user, "system": system, "minor_faults": faults}
        return out


def minor_faults(pid: int) -> int:
    """Minor page faults of ``pid`` so far (Linux ``/proc/PID/stat``; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


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


# ---------------------------------------------------------------------- engine
def run_engine(
    args: argparse.Namespace, spec: FeaturizerSpec, csv: Path, rows: int, workdir: Path
) -> dict[str, Any]:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store

    store = workdir / f"featurize_scale_{rows}.zarr"
    gc.collect()
    load_before = os.getloadavg()
    started = time.perf_counter()
    client = get_client(workers=args.workers)
    cluster_seconds = time.perf_counter() - started
    try:
        client.wait_for_workers(args.workers)
        pids = client.run(os.getpid)
        with Sampler(pids) as sampler:
            t0 = time.perf_counter()
            summary = featurize_to_store(
                str(csv),
                str(store),
                spec,
                column="formula",
                client=client,
                chunk_rows=args.chunk_rows,
                partition_rows=args.partition_rows,
                overwrite=True,
                progress=not args.no_progress,
            )
            seconds = time.perf_counter() - t0
        pids_after = client.run(os.getpid)
    finally:
        close_client(client)
    load_after = os.getloadavg()
    allocated, apparent, files = disk_usage(store)
    workers = {k: v for k, v in sampler.peak.items() if k.startswith("worker")}
    result = {
        "rows": rows,
        "csv": str(csv),
        "csv_bytes": csv.stat().st_size,
        "store": str(store),
        "seconds": seconds,
        "rows_per_second": rows / seconds,
        "engine_seconds": summary.seconds,
        "engine_rows_per_second": summary.rows_per_second,
        "summary": {
            "rows": summary.rows,
            "featurized": summary.featurized,
            "errors": summary.errors,
            "features": summary.features,
            "partitions": summary.partitions,
            "resumed_partitions": summary.resumed_partitions,
        },
        "cluster_start_seconds": cluster_seconds,
        "workers": args.workers,
        "worker_pids": pids,
        "worker_restarted": sorted(pids.values()) != sorted(pids_after.values()),
        "rss_before": sampler.baseline,
        "rss_peak": sampler.peak,
        "client_peak_rss": sampler.peak["client"],
        "max_worker_peak_rss": max(workers.values()),
        "cpu": sampler.cpu_used(),
        "machine_cpu": sampler.machine_cpu(),
        "rss_samples": sampler.samples,
        "store_bytes_on_disk": allocated,
        "store_bytes_apparent": apparent,
        "store_files": files,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    worker_cpu = [v for k, v in result["cpu"].items() if k.startswith("worker")]
    result["worker_cpu_us_per_row"] = sum(c["user"] + c["system"] for c in worker_cpu) / rows * 1e6
    result["worker_system_us_per_row"] = sum(c["system"] for c in worker_cpu) / rows * 1e6
    result["worker_minor_faults_per_row"] = sum(c["minor_faults"] for c in worker_cpu) / rows
    client_cpu = result["cpu"]["client"]
    result["client_cpu_us_per_row"] = (client_cpu["user"] + client_cpu["system"]) / rows * 1e6
    return result


def verify_store(
    pool: Pool, seed: int, spec: FeaturizerSpec, result: dict[str, Any], check_rows: int
) -> dict[str, Any]:
    """Open with plain ``xarray.open_zarr``; check counts, and rows against the featurizer."""
    import warnings

    import xarray as xr

    import xenonscale

    rows = result["rows"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = xr.open_zarr(result["store"])
    errors = xenonscale.read_errors(result["store"])
    ok_count = int(ds["ok"].sum().compute())
    rng = np.random.default_rng([seed, rows, 1])
    picks = sorted({0, rows - 1, *rng.integers(0, rows, size=max(0, check_rows - 2)).tolist()})
    idx = pool.rows(seed, picks)
    formulas = pool.formulas[idx].tolist()
    featurizer = spec.build()
    expected = featurizer.featurize_batch(formulas)
    stored = ds["features"].isel(sample=picks).values
    ours = expected.values.astype(np.float32)
    check = {
        "samples": int(ds.sizes["sample"]),
        "features": int(ds.sizes["feature"]),
        "complete": bool(ds.attrs.get("complete")),
        "ok_count": ok_count,
        "error_rows": len(errors),
        "counts_add_up": ok_count + len(errors) == rows == int(ds.sizes["sample"]),
        "summary_matches": (result["summary"]["featurized"], result["summary"]["errors"])
        == (ok_count, len(errors)),
        "checked_rows": len(picks),
        "features_bit_identical": bool(
            stored.dtype == np.float32
            and np.array_equal(stored.view(np.uint32), ours.view(np.uint32))
        ),
        "ok_equal": bool(np.array_equal(ds["ok"].isel(sample=picks).values, expected.ok)),
        "inputs_equal": ds["input"].isel(sample=picks).values.tolist() == formulas,
        "targets_equal": bool(
            np.array_equal(
                ds["target"].isel(sample=picks).values, pool.targets[idx], equal_nan=True
            )
        ),
        "feature_labels_equal": ds["feature"].values.tolist() == list(featurizer.labels),
    }
    check["passed"] = check["samples"] == rows and all(check[k] for k in CHECKS)
    return check


# ----------------------------------------------------------------------- peers
def run_peers(args: argparse.Namespace, pool: Pool) -> dict[str, Any]:
    """XenonPy and matminer per composition (one process, their own environment).

    They run on the first ``--peer-rows`` rows in the peer environment
    (``xenonscale.testing.peers``), timed there around their own call.
    """
    from xenonscale.featurize import Compositions, ElementStatistics
    from xenonscale.testing.peers import PeerEnvironment

    helpers = peer_bench()
    sample = pool.formulas[pool.block_indices(args.seed, 0, args.peer_rows)].tolist()
    big = pool.formulas[pool.block_indices(args.seed, 0, args.inmemory_rows)].tolist()
    peers = PeerEnvironment()
    pooling = Compositions(elements="xenonpy58", featurizers="pooling")
    stats = ElementStatistics()
    Case = helpers.Case
    n = len(sample)
    cases = [
        Case("XenonPy 0.6.7", "from strings (pymatgen+XenonPy)", n, 406,
             lambda: helpers.run_xenonpy(peers, sample, parse=True), self_timed=True),
        Case("matminer ElementProperty", "from strings (pymatgen+matminer)", n, 132,
             lambda: helpers.run_matminer(peers, sample, prebuilt=False), self_timed=True),
        Case("xenonscale Compositions", "in memory, from strings", n, 406,
             lambda: pooling.featurize_batch(sample)),
        Case("xenonscale Compositions", "in memory, from strings", len(big), 406,
             lambda: pooling.featurize_batch(big)),
        Case("xenonscale ElementStatistics", "in memory, from strings", n, 132,
             lambda: stats.featurize_batch(sample)),
    ]  # fmt: skip
    print(
        f"\npeers: {n} of the same resampled OQMD formulas, one process; "
        f"1 warm-up + {args.peer_repeats} interleaved rounds ..."
    )
    load_before = os.getloadavg()
    try:
        timings, outputs = helpers.measure(cases, args.peer_repeats)
    finally:
        peers.close()
    parity = [
        helpers.compare("XenonPy", outputs[2].values, pooling.labels, outputs[0], sample),
        helpers.compare("matminer", outputs[4].values, stats.labels, outputs[1], sample),
    ]
    return {
        "rows": n,
        "timings": [t.as_dict() for t in timings],
        "parity": [
            {
                k: getattr(p, k)
                for k in (
                    "peer",
                    "rows",
                    "columns",
                    "cells_compared",
                    "max_rel_diff",
                    "cells_over_rtol",
                    "peer_inf_ours_finite",
                    "ours_nan_peer_finite",
                )
            }
            for p in parity
        ],
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def ratios(runs: list[dict[str, Any]], peers: dict[str, Any], workers: int) -> list[dict]:
    out = []
    for run in runs:
        for t in peers["timings"]:
            if not t["tool"].startswith(("XenonPy", "matminer")):
                continue
            per_core = t["per_second"]
            out.append(
                {
                    "rows": run["rows"],
                    "peer": t["tool"],
                    "peer_per_second_one_core": per_core,
                    "xenonscale_rows_per_second": run["rows_per_second"],
                    "same_cores": run["rows_per_second"] / (per_core * workers),
                    "raw": run["rows_per_second"] / per_core,
                }
            )
    return out


# ---------------------------------------------------------------------- report
def gib(n: float) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def mib(n: float) -> str:
    return f"{n / MiB:,.0f} MiB"


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"\n{results['date']}  {m['cpu']}  (nproc {m['cpu_count']}, affinity {m['affinity']}), "
        f"{gib(results['memory_total'])} RAM, Python {m['python']}"
    )
    print("  ".join(f"{k} {v}" for k, v in m["versions"].items()))
    s = results["settings"]
    print(
        f"spec: {results['spec']}  workers {s['workers']} × 1 thread, chunk_rows "
        f"{s['chunk_rows']:,}, partition_rows {s['partition_rows']:,}"
    )
    print("input: real OQMD formulas (oqmd_formation_enthalpy_train) resampled with replacement")
    header = (
        f"{'N':>12}{'seconds':>10}{'rows/s':>11}{'client RSS':>13}{'(before)':>10}"
        f"{'worker peak RSS':>17}{'(before)':>10}{'store on disk':>15}{'worker CPU µs/row':>19}"
        f"{'others':>8}{'load avg':>16}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results["runs"]:
        before = [v for k, v in r["rss_before"].items() if k.startswith("worker")]
        print(
            f"{r['rows']:>12,}{r['seconds']:>10.1f}{r['rows_per_second']:>11,.0f}"
            f"{mib(r['client_peak_rss']):>13}{mib(r['rss_before']['client']):>10}"
            f"{mib(r['max_worker_peak_rss']):>17}{mib(max(before)):>10}"
            f"{gib(r['store_bytes_on_disk']):>15}{r['worker_cpu_us_per_row']:>19.1f}"
            f"{r['machine_cpu']['other_share']:>8.0%}"
            f"{'/'.join(f'{x:.1f}' for x in r['loadavg_after']):>16}"
        )
    for r in results["runs"]:
        peaks = ", ".join(f"{k} {mib(v)}" for k, v in r["rss_peak"].items())
        cpu = ", ".join(
            f"{k} {v['user']:.1f} s user + {v['system']:.1f} s sys" for k, v in r["cpu"].items()
        )
        c = r["check"]
        print(
            f"\nN={r['rows']:,}: {r['summary']['featurized']:,} featurized + "
            f"{r['summary']['errors']:,} errors, {r['summary']['partitions']} partitions; "
            f"cluster start {r['cluster_start_seconds']:.1f} s (not in the time); "
            f"{r['rss_samples']} RSS samples"
        )
        print(f"  peak RSS: {peaks}")
        print(f"  CPU over the run: {cpu}")
        print(
            f"  workers: {r['worker_cpu_us_per_row']:.1f} µs CPU/row of which "
            f"{r['worker_system_us_per_row']:.1f} µs system, "
            f"{r['worker_minor_faults_per_row']:.2f} minor page faults/row; client "
            f"{r['client_cpu_us_per_row']:.1f} µs CPU/row"
        )
        mc = r["machine_cpu"]
        print(
            f"  load average before {'/'.join(f'{x:.2f}' for x in r['loadavg_before'])}, "
            f"after {'/'.join(f'{x:.2f}' for x in r['loadavg_after'])}; other processes used "
            f"{mc['other_seconds']:.1f} CPU s ({mc['other_share']:.0%} of the machine) during "
            f"the run, idle {mc['idle_share']:.0%}, steal {mc['steal_seconds']:.1f} s"
        )
        print(
            f"  check ({'PASSED' if c['passed'] else 'FAILED'}): xarray.open_zarr → "
            f"{c['samples']:,} × {c['features']}; ok {c['ok_count']:,} + errors "
            f"{c['error_rows']:,} == N: {c['counts_add_up']}; {c['checked_rows']} rows "
            f"bit-identical to the in-memory featurizer: {c['features_bit_identical']}, "
            f"input/target equal: {c['inputs_equal']}/{c['targets_equal']}"
        )
        if r["worker_restarted"]:
            print("  WARNING: a worker process was restarted during the run")
    peers = results.get("peers")
    if not peers:
        return
    print(f"\nper composition, one process, {peers['rows']} formulas (median of rounds):")
    for t in peers["timings"]:
        print(
            f"  {t['tool']:<29}{t['what']:<36}{t['rows']:>7} rows {t['median_us']:>10.1f} µs"
            f"{t['per_second']:>12,.0f}/s"
        )
    for p in peers["parity"]:
        print(
            f"  parity vs {p['peer']}: {p['cells_compared']:,} cells, max rel diff "
            f"{p['max_rel_diff']:.2g}, {p['cells_over_rtol']} over 1e-6 "
            f"({p['peer_inf_ours_finite']} cells inf in the peer, finite here)"
        )
    w = results["settings"]["workers"]
    print(f"\nend-to-end ratio: xenonscale rows/s on {w} workers ÷ peer compositions/s")
    for q in results["ratios"]:
        print(
            f"  N={q['rows']:>12,}  vs {q['peer']:<26}: {q['same_cores']:>7,.0f}× on the same "
            f"{w} cores (peer × {w})   raw {q['raw']:>7,.0f}× (peer on 1 core)"
        )


# ------------------------------------------------------------------------ main
def set_dask_config(key: str, value: str) -> None:
    """``dask.config.set(key=yaml(value))`` after ``distributed`` has loaded its defaults."""
    import dask
    import distributed  # noqa: F401  (its defaults would be merged back on a later import)
    import yaml

    dask.config.set({key: yaml.safe_load(value)})
    print(f"dask config: {key} = {dask.config.get(key)!r}")


def parse_rows(text: str) -> list[int]:
    try:
        rows = [int(float(x)) for x in text.replace("_", "").split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rows {text!r}: use e.g. 1000000,10000000") from None
    if not rows or min(rows) < 1:
        raise argparse.ArgumentTypeError(f"--rows {text!r}: positive row counts")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=parse_rows, default=[1_000_000], help="comma list (default 1000000)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="Zarr chunk rows")
    parser.add_argument("--partition-rows", type=int, default=50_000, help="rows per task")
    parser.add_argument("--seed", type=int, default=0, help="resampling seed")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"), help="CSVs and stores")
    parser.add_argument("--check-rows", type=int, default=64, help="rows compared bit for bit")
    parser.add_argument("--peer-rows", type=int, default=400, help="rows for XenonPy/matminer")
    parser.add_argument("--peer-repeats", type=int, default=3, help="timed rounds for the peers")
    parser.add_argument(
        "--inmemory-rows", type=int, default=50_000, help="rows for the in-memory reference"
    )
    parser.add_argument("--no-peers", action="store_true", help="skip XenonPy/matminer")
    parser.add_argument("--keep-stores", action="store_true", help="keep the Zarr stores")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--dask-config",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="set a Dask config value before the cluster starts (repeatable), e.g. "
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_=null",
    )
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if min(args.workers, args.chunk_rows, args.partition_rows, args.peer_rows) < 1:
        parser.error("--workers, --chunk-rows, --partition-rows and --peer-rows must be positive")
    args.peer_rows = min(args.peer_rows, BLOCK_ROWS)
    args.inmemory_rows = min(args.inmemory_rows, BLOCK_ROWS)

    for item in args.dask_config:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--dask-config {item!r}: use KEY=VALUE")
        set_dask_config(key, value)

    workdir = Path(args.workdir)
    helpers = peer_bench()  # before xenonscale: it sets the XENONSCALE_DATA_DIR default
    from xenonscale import datasets
    from xenonscale.featurize.registry import FeaturizerSpec

    spec = FeaturizerSpec.parse("composition", "pooling", elements="xenonpy58")
    source = datasets.fetch(SOURCE_DATASET)
    pool = Pool(source)
    print(
        f"input: {len(pool):,} real OQMD formulas ({source}), RESAMPLED WITH REPLACEMENT "
        f"(seed {args.seed}) to {', '.join(f'{n:,}' for n in args.rows)} rows"
    )
    csvs = {rows: resampled_csv(pool, rows, args.seed, workdir) for rows in args.rows}
    gc.collect()

    # Every engine run first, then the checks and the peers: their imports (xarray,
    # pymatgen, XenonPy, matminer) would otherwise count as client memory of later runs.
    runs = []
    for rows in args.rows:
        print(
            f"\nfeaturize {rows:,} rows: {csvs[rows].name} → Zarr, {args.workers} workers "
            f"(load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())})"
        )
        result = run_engine(args, spec, csvs[rows], rows, workdir)
        print(f"  {result['seconds']:.1f} s, {result['rows_per_second']:,.0f} rows/s end to end")
        runs.append(result)
    for result in runs:
        print(f"checking the {result['rows']:,}-row store ...")
        result["check"] = verify_store(pool, args.seed, spec, result, args.check_rows)
        if not args.keep_stores:
            shutil.rmtree(result["store"], ignore_errors=True)

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": helpers.machine(),
        "memory_total": psutil.virtual_memory().total,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "spec": spec.to_dict(),
        "input": {
            "source": str(source),
            "source_sha256": pool.sha256,
            "source_rows": len(pool),
            "resampled_with_replacement": True,
            "seed": args.seed,
            "block_rows": BLOCK_ROWS,
        },
        "runs": runs,
    }
    if not args.no_peers:
        results["peers"] = run_peers(args, pool)
        results["ratios"] = ratios(runs, results["peers"], args.workers)
    report(results)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")
    return 0 if all(r["check"]["passed"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
