"""Compact FeatureStores: ECFP-2048 bits as uint8 against the float32 store of the same rows.

The first ``--rows`` SMILES of the MOSES training set (default 100,000;
``--quick``: 10,000; ``molecules/moses_train.csv.gz``), copied to a CSV in
``--workdir`` (default ``bench/results/``, git-ignored), go through the
engine twice per round on one embedded cluster of ``--workers`` processes
(default 2): ``featurize_to_store(..., FeaturizerSpec.parse("molecule",
"ecfp"), feature_encoding=...)`` with ``auto`` (the featurizer declares
``bits``: ``uint8`` 0/1, bit-shuffled zstd) and with ``float32`` (what every
store was before), ``overwrite=True`` each time, in ``--repeats`` interleaved
rounds after a warm-up job. Reported:

* **store size**: bytes on disk (allocated blocks, and apparent bytes) of the
  whole store and of its ``features`` array, per row, and how many times below
  raw float32 (rows × 2,048 × 4 bytes) and below the float32 store;
* **featurize throughput**: rows/s of each encoding, median over the rounds
  (wall time of ``featurize_to_store``, the cluster already running), and the
  workers' CPU time per row (``time.process_time`` in each worker before and
  after the job: steadier than wall time on a shared machine);
* **one task in this process**: what a worker does per partition, without
  Dask: ``featurize_safely`` of ``--chunk-rows`` rows, then ``write_region``
  into a store of each encoding (encode, check, compress, write); median CPU
  µs per row (``process_time``) of ``--read-repeats`` interleaved rounds, for
  the whole task and for the write alone (steadier than the jobs' wall time
  on a shared machine);
* **read-back**: median seconds to read the whole ``features`` array into
  memory: the stored integers (``zarr``), the float32 view
  (``open_store(url, decode="float32")``, NaN on error rows), the float32
  store, and the rows a model trains on (``models.data.read_rows``, float32).

Checks: counts add up; the float32 view of the compact store equals the
float32 store bit for bit; ``--check-rows`` rows (first, last, random) equal
the in-process featurizer. The stores and the CSV are deleted unless ``--keep``.

Run::

    .venv/bin/python bench/compact_store.py --quick --json bench/results/compact_store_quick.json
    .venv/bin/python bench/compact_store.py --json bench/results/compact_store.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Keep module-level imports light: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"
if not os.environ.get("XENONSCALE_DATA_DIR") and SHARED_DATA.is_dir():
    os.environ["XENONSCALE_DATA_DIR"] = str(SHARED_DATA)

ENCODINGS = ("auto", "float32")
FEATURES = 2048
MIB = 1 << 20


def helpers(name: str) -> Any:
    """A sibling bench module (``compositions`` for ``machine``, ``featurize_scale`` for disk)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


def moses_csv(rows: int, workdir: Path) -> Path:
    """The first ``rows`` MOSES SMILES as a CSV in ``workdir`` (a bench file, not the repo's)."""
    import pandas as pd

    from xenonscale import datasets

    frame = pd.read_csv(datasets.fetch("moses_train"), nrows=rows)  # the mirror, checksummed
    path = workdir / f"compact_store_moses_{len(frame)}.csv"
    frame.to_csv(path, index=False)
    return path


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds of ``call`` over ``repeats`` runs (garbage collected before each)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# ---------------------------------------------------------------------- featurize
def run_jobs(args: argparse.Namespace, csv: Path, stores: dict[str, Path]) -> dict[str, Any]:
    """Warm-up, then ``--repeats`` interleaved rounds of both encodings on one cluster."""
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    spec = FeaturizerSpec.parse("molecule", "ecfp")
    seconds: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    cpu: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    summaries = {}
    client = get_client(workers=args.workers, quiet=True)
    try:
        client.wait_for_workers(args.workers)

        def job(encoding: str):
            return featurize_to_store(
                str(csv),
                str(stores[encoding]),
                spec,
                column="SMILES",
                client=client,
                chunk_rows=args.chunk_rows,
                partition_rows=args.partition_rows,
                overwrite=True,
                progress=False,
                feature_encoding=encoding,
            )

        job("auto")  # warm-up: imports, RDKit, the workers' featurizer cache
        load_before = os.getloadavg()
        for round_ in range(args.repeats):
            order = ENCODINGS if round_ % 2 == 0 else ENCODINGS[::-1]
            for encoding in order:
                gc.collect()
                before = client.run(time.process_time)
                started = time.perf_counter()
                summaries[encoding] = job(encoding)
                seconds[encoding].append(time.perf_counter() - started)
                after = client.run(time.process_time)
                cpu[encoding].append(sum(after[w] - before[w] for w in after))
    finally:
        close_client(client)
    rows = summaries["auto"].rows
    out: dict[str, Any] = {"spec": spec.to_dict(), "loadavg_before": load_before,
                           "loadavg_after": os.getloadavg()}  # fmt: skip
    for encoding in ENCODINGS:
        summary = summaries[encoding]
        if summary.featurized + summary.errors != summary.rows:
            raise RuntimeError(f"{encoding}: counts do not add up: {summary}")
        out[encoding] = {
            "rows": summary.rows,
            "featurized": summary.featurized,
            "errors": summary.errors,
            "partitions": summary.partitions,
            "seconds": seconds[encoding],
            "median_seconds": statistics.median(seconds[encoding]),
            "median_rows_per_second": rows / statistics.median(seconds[encoding]),
            "worker_cpu_seconds": cpu[encoding],
            "median_worker_cpu_us_per_row": statistics.median(cpu[encoding]) / rows * 1e6,
        }
    out["throughput_auto_over_float32"] = (
        out["auto"]["median_rows_per_second"] / out["float32"]["median_rows_per_second"]
    )
    out["cpu_per_row_auto_over_float32"] = (
        out["auto"]["median_worker_cpu_us_per_row"] / out["float32"]["median_worker_cpu_us_per_row"]
    )
    return out


# ---------------------------------------------------------------------- sizes
def sizes(stores: dict[str, Path], rows: int) -> dict[str, Any]:
    disk_usage = helpers("featurize_scale").disk_usage
    raw = rows * FEATURES * 4
    out: dict[str, Any] = {"raw_float32_bytes": raw}
    for encoding, store in stores.items():
        allocated, apparent, files = disk_usage(store)
        f_allocated, f_apparent, _ = disk_usage(store / "features")
        out[encoding] = {
            "store_bytes_on_disk": allocated,
            "store_bytes_apparent": apparent,
            "store_files": files,
            "features_bytes_on_disk": f_allocated,
            "features_bytes_apparent": f_apparent,
            "store_bytes_per_row": allocated / rows,
            "features_bytes_per_row": f_allocated / rows,
            "store_times_below_raw_float32": raw / allocated,
            "features_times_below_raw_float32": raw / f_allocated,
        }
    out["float32_store_over_compact_store"] = (
        out["float32"]["store_bytes_on_disk"] / out["auto"]["store_bytes_on_disk"]
    )
    return out


# ---------------------------------------------------------------------- one task
def one_task(csv: Path, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """CPU µs per row of a worker's featurize + write of one region, per encoding."""
    import pandas as pd

    from xenonscale.featurize.base import featurize_safely
    from xenonscale.featurize.molecules import ECFP
    from xenonscale.store.layout import StoreLocation
    from xenonscale.store.writer import create_store, write_region

    smiles = pd.read_csv(csv, nrows=args.chunk_rows).SMILES.tolist()
    featurizer = ECFP()
    featurize_safely(featurizer, smiles[:100])  # warm-up
    frame = pd.DataFrame({"id": [str(i) for i in range(len(smiles))], "input": smiles})
    task: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    write: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    locations = {}
    for encoding in ENCODINGS:
        locations[encoding] = StoreLocation(str(workdir / f"compact_store_write_{encoding}.zarr"))
        create_store(locations[encoding], rows=len(smiles), labels=featurizer.labels, extras={},
                     chunk_rows=len(smiles), attrs={},
                     feature_encoding="bits" if encoding == "auto" else "float32")  # fmt: skip
    try:
        for round_ in range(args.read_repeats):
            for encoding in ENCODINGS if round_ % 2 == 0 else ENCODINGS[::-1]:
                gc.collect()
                started = time.process_time()
                batch = featurize_safely(featurizer, smiles)
                featurized = time.process_time()
                write_region(locations[encoding], 0, frame, batch.values, batch.ok, {})
                done = time.process_time()
                task[encoding].append(done - started)
                write[encoding].append(done - featurized)
    finally:
        for location in locations.values():
            shutil.rmtree(location.root, ignore_errors=True)
    out = {}
    for encoding in ENCODINGS:
        out[f"{encoding}_task_cpu_us_per_row"] = (
            statistics.median(task[encoding]) / len(smiles) * 1e6
        )
        out[f"{encoding}_write_cpu_us_per_row"] = (
            statistics.median(write[encoding]) / len(smiles) * 1e6
        )
    out["task_cpu_auto_over_float32"] = (
        out["auto_task_cpu_us_per_row"] / out["float32_task_cpu_us_per_row"]
    )
    return out


# ---------------------------------------------------------------------- read-back
def read_back(stores: dict[str, Path], repeats: int) -> dict[str, float]:
    import zarr

    from xenonscale.models.data import read_rows
    from xenonscale.store import open_store

    compact, dense = str(stores["auto"]), str(stores["float32"])
    groups = {e: zarr.open_group(str(s), mode="r") for e, s in stores.items()}
    rows = np.arange(groups["auto"]["features"].shape[0])
    cases = {
        "compact_uint8_zarr": lambda: groups["auto"]["features"][:],
        "compact_float32_view": lambda: open_store(compact, decode="float32").features.values,
        "float32_store_zarr": lambda: groups["float32"]["features"][:],
        "float32_store_xarray": lambda: open_store(dense).features.values,
        "compact_read_rows_float32": lambda: read_rows(groups["auto"]["features"], rows),
        "float32_store_read_rows": lambda: read_rows(groups["float32"]["features"], rows),
    }
    for call in cases.values():
        call()  # warm-up (page cache, imports)
    return {name: median_seconds(call, repeats) for name, call in cases.items()}


# ---------------------------------------------------------------------- check
def check(stores: dict[str, Path], csv: Path, args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from xenonscale.featurize.base import featurize_safely
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.store import open_store

    compact = open_store(str(stores["auto"]))
    view = open_store(str(stores["auto"]), decode="float32").features.values
    dense = open_store(str(stores["float32"])).features.values
    rows = view.shape[0]
    smiles = pd.read_csv(csv).SMILES
    rng = np.random.default_rng(args.seed)
    picks = sorted({0, rows - 1, *rng.integers(0, rows, max(0, args.check_rows - 2)).tolist()})
    spec = FeaturizerSpec.parse("molecule", "ecfp")
    want = featurize_safely(spec.build(), smiles.iloc[picks].tolist(), spec.limits)
    want32 = want.values.astype(np.float32)
    result = {
        "compact_dtype": str(compact.features.dtype),
        "feature_encoding": compact.attrs.get("feature_encoding"),
        "view_equals_float32_store": bool(
            np.array_equal(view.view(np.uint32), dense.view(np.uint32))
        ),
        "checked_rows": len(picks),
        "rows_equal_the_featurizer": bool(
            np.array_equal(view[picks].view(np.uint32), want32.view(np.uint32))
        ),
        "error_rows_hold_zero": bool(
            not np.asarray(compact.features.values)[~compact.ok.values].any()
        ),
    }
    result["passed"] = all(
        [result["compact_dtype"] == "uint8", result["feature_encoding"] == "bits",
         result["view_equals_float32_store"], result["rows_equal_the_featurizer"],
         result["error_rows_hold_zero"]]
    )  # fmt: skip
    return result


def report(results: dict[str, Any]) -> None:
    jobs, size, reads = results["featurize"], results["sizes"], results["read_back"]
    rows = jobs["auto"]["rows"]
    print(
        f"\n{rows:,} MOSES SMILES → ECFP-2048 on {results['settings']['workers']} workers "
        f"({jobs['auto']['errors']} error rows); medians of {results['settings']['repeats']} rounds"
    )
    header = f"{'encoding':<10}{'dtype':>8}{'B/row':>8}{'features B/row':>16}{'× raw f32':>11}"
    header += f"{'rows/s':>9}{'CPU µs/row':>12}"
    print(header + "\n" + "-" * len(header))
    for encoding in ENCODINGS:
        s, j = size[encoding], jobs[encoding]
        dtype = results["check"]["compact_dtype"] if encoding == "auto" else "float32"
        print(
            f"{encoding:<10}{dtype:>8}{s['store_bytes_per_row']:>8.1f}"
            f"{s['features_bytes_per_row']:>16.1f}{s['store_times_below_raw_float32']:>10.1f}x"
            f"{j['median_rows_per_second']:>9,.0f}{j['median_worker_cpu_us_per_row']:>12.0f}"
        )
    print(
        f"compact store {size['float32_store_over_compact_store']:.1f}x below the float32 store; "
        f"throughput auto/float32 {jobs['throughput_auto_over_float32']:.3f} (wall), "
        f"{1 / jobs['cpu_per_row_auto_over_float32']:.3f} (worker CPU)"
    )
    print("one task in this process (median CPU µs/row): " + ", ".join(
        f"{name} {value:.3g}" for name, value in results["one_task"].items()))  # fmt: skip
    print("read the whole features array (median s): " + ", ".join(
        f"{name} {seconds:.3f}" for name, seconds in reads.items()))  # fmt: skip
    print(f"check: {results['check']}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="MOSES SMILES (first rows)")
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 2,500-row chunks")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--read-repeats", type=int, default=5, help="read-back repeats")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="Zarr chunk rows")
    parser.add_argument("--partition-rows", type=int, default=None, help="rows/task (a chunk)")
    parser.add_argument("--check-rows", type=int, default=64, help="rows compared")
    parser.add_argument("--seed", type=int, default=0, help="check-row seed")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"), help="stores and CSV")
    parser.add_argument("--keep", action="store_true", help="keep the stores and the CSV")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.chunk_rows = 10_000, 2_500
    args.partition_rows = args.partition_rows or args.chunk_rows  # every worker gets tasks
    if min(args.rows, args.workers, args.repeats, args.read_repeats, args.chunk_rows) < 1:
        parser.error("--rows, --workers, --repeats, --read-repeats, --chunk-rows: positive")

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    csv = moses_csv(args.rows, workdir)
    stores = {e: workdir / f"compact_store_{e}_{args.rows}.zarr" for e in ENCODINGS}
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }
    try:
        print(f"featurize: {args.rows:,} rows × {len(ENCODINGS)} encodings × {args.repeats} ...")
        results["featurize"] = run_jobs(args, csv, stores)
        results["sizes"] = sizes(stores, results["featurize"]["auto"]["rows"])
        results["one_task"] = one_task(csv, args, workdir)
        results["read_back"] = read_back(stores, args.read_repeats)
        results["check"] = check(stores, csv, args)
    finally:
        if not args.keep:
            for path in stores.values():
                shutil.rmtree(path, ignore_errors=True)
            csv.unlink(missing_ok=True)
    common = helpers("compositions")
    results["machine"] = common.machine(extra=("rdkit", "dask", "zarr", "numcodecs"))
    report(results)
    common.write_results(results, args.json)
    return 0 if results["check"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
