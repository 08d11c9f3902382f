"""Distributed prediction throughput: ``predict_to_store`` on 1 and 2 workers vs one process.

What it measures, on the same rows:

* **Data.** ``--rows`` real formulas (default 200,000; ``--quick``: 20,000)
  sampled (seed 0) from the mirror's OQMD formation-enthalpy training set,
  written to a CSV, and featurized once (untimed) into a store with the
  classic composition descriptors (XenonPy 58-element table, 290 features,
  ``--chunk-rows`` 10,000) on the 2-worker cluster.
* **Model.** An MLP of the ``train`` default size (512, 256, 128) on those
  290 features with seeded, untrained weights (inference costs the same
  trained or not), registered in a temporary zoo.
* **source → Parquet.** ``predict_to_store(model, CSV, OUT.parquet)``: the
  workers read the CSV partition by partition, featurize with the model's own
  featurizer, predict and write one part file each, against
  ``ZooModel.predict(formulas)`` in this process (the same featurizing and
  inference, one call, nothing written).
* **store → store.** ``predict_to_store(model, STORE)``: the workers read the
  store's features chunk by chunk, predict and write ``predictions/``,
  against reading the store's features in this process (``zarr``, whole
  arrays) and ``ZooModel.predict_features`` on the ok rows.

The clusters are ``LocalCluster(processes=True, threads_per_worker=1,
dashboard_address=None)`` of 1 and 2 workers, started once (not timed); each
Dask method gets one untimed warm-up on 2,000 rows (imports, the model loaded
into each worker's cache). Then ``--repeats`` rounds (default 3, ``--quick``
1) run every method once, interleaved; each Dask run writes a fresh output.
``--quick`` also makes tasks of 5,000 rows (chunks of 2,500), so that both
workers get work; the default tasks hold up to 50,000 rows.
Reported: median seconds, rows/s, and the ratio to the one-process figure of
the same path. Each worker uses one torch/BLAS thread (``single_threaded``);
the one-process reference uses this process's torch threads (printed), so on
a machine of N cores it may use all N.

Run::

    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/predict_throughput.py \\
        --json bench/results/predict_throughput.json
    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/predict_throughput.py --quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

DATASET = "oqmd_formation_enthalpy_train"
WARMUP_ROWS = 2_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="formulas (default 200,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (default 3)")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="store chunk rows")
    parser.add_argument("--partition-rows", type=int, default=None,
                        help="rows per task (default: predict_to_store's)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 round")
    parser.add_argument("--workdir", default=None, help="folder for the data (default: a temp)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:  # tasks of 5,000 rows, so that 2 workers get 4 each
        args.rows, args.repeats = min(args.rows, 20_000), 1
        args.chunk_rows = min(args.chunk_rows, 2_500)
        args.partition_rows = args.partition_rows or 5_000
    return args


def machine() -> dict[str, Any]:
    """CPU model, cores, Python and the versions that matter here."""
    from xenonscale.versions import installed_versions

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": installed_versions(
            "xenonscale", "torch", "numpy", "zarr", "pyarrow", "dask", "distributed",
            missing="unknown",
        ),
    }  # fmt: skip


def prepare(args, folder: Path, client) -> tuple[str, str, str, list[str], Any]:
    """The CSV (all rows and a warm-up head), the store, the formulas and the zoo."""
    import pandas as pd
    import torch

    from xenonscale.datasets import fetch
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.models import PropertyModel
    from xenonscale.zoo import Zoo, featurizer_fields

    frame = pd.read_csv(fetch(DATASET))
    frame = frame.sample(min(args.rows, len(frame)), random_state=0).reset_index(drop=True)
    csv, warmup = folder / "formulas.csv", folder / "warmup.csv"
    frame[["formula"]].to_csv(csv, index=False)
    frame[["formula"]].head(WARMUP_ROWS).to_csv(warmup, index=False)
    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    store = str(folder / "formulas.zarr")
    if not Path(store).exists():
        started = time.perf_counter()
        featurize_to_store(str(csv), store, spec, column="formula", client=client,
                           chunk_rows=args.chunk_rows, progress=False)  # fmt: skip
        print(f"store featurized in {time.perf_counter() - started:.1f} s", flush=True)
    fields = featurizer_fields(spec)
    torch.manual_seed(0)
    model = PropertyModel.from_config(
        {"in_features": len(fields["feature_labels"]), "out_features": 1,
         "hidden": [512, 256, 128]}
    )  # fmt: skip
    zoo = Zoo(folder / "zoo")
    zoo.register("bench-mlp", model, {**fields, "targets": ["target"]})
    return str(csv), str(warmup), store, frame["formula"].tolist(), zoo


def clear_store_predictions(store: str) -> None:
    """Remove what a store-output run wrote, so that the next one does all the work."""
    import zarr

    group = zarr.open_group(store, mode="r+", use_consolidated=False)
    if "predictions" in group:
        del group["predictions"]
    shutil.rmtree(Path(store) / "_xenonscale" / "predict", ignore_errors=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import logging
    import warnings

    import numpy as np
    import torch
    import zarr
    from distributed import Client, LocalCluster

    from xenonscale.workflows.prediction import predict_to_store

    logging.getLogger("distributed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    results: dict[str, Any] = {
        "bench": "predict_throughput",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "torch_threads_one_process": torch.get_num_threads(),
        "load_average_before": os.getloadavg(),
    }
    own_workdir = args.workdir is None
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="xenonscale-predict-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        clients = {}
        for workers in (1, 2):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None)  # fmt: skip
            stack.enter_context(cluster)
            clients[workers] = stack.enter_context(Client(cluster))
        csv, warmup, store, formulas, zoo = prepare(args, folder, clients[2])
        stack.callback(zoo.close)
        rows = len(formulas)
        results["rows"] = rows
        model = zoo.load("bench-mlp")

        def one_process_source() -> None:
            frame = model.predict(formulas)
            assert len(frame) == rows

        def one_process_store() -> None:
            group = zarr.open_group(store, mode="r")
            ok = np.asarray(group["ok"][:], dtype=bool)
            model.predict_features(np.asarray(group["features"][:], dtype=np.float32)[ok])

        def dask_source(workers: int, path: str = csv, partition_rows=None) -> None:
            out = folder / f"out-{workers}.parquet"
            shutil.rmtree(out, ignore_errors=True)
            summary = predict_to_store(
                "bench-mlp",
                path,
                str(out),
                zoo=zoo,
                client=clients[workers],
                progress=False,
                partition_rows=partition_rows or args.partition_rows,
            )
            assert path != csv or summary.rows == rows

        def dask_store(workers: int) -> None:
            clear_store_predictions(store)
            summary = predict_to_store("bench-mlp", store, zoo=zoo, client=clients[workers],
                                       progress=False,
                                       partition_rows=args.partition_rows)  # fmt: skip
            assert summary.rows == rows and summary.resumed_partitions == 0

        methods = {
            "source: one process (ZooModel.predict)": one_process_source,
            "source: 1 worker": lambda: dask_source(1),
            "source: 2 workers": lambda: dask_source(2),
            "store: one process (read + predict_features)": one_process_store,
            "store: 1 worker": lambda: dask_store(1),
            "store: 2 workers": lambda: dask_store(2),
        }
        for workers in (1, 2):  # imports and the model cache of every worker (8 small tasks)
            dask_source(workers, warmup, partition_rows=WARMUP_ROWS // 8)
        model.predict(formulas[:WARMUP_ROWS])
        for round_ in range(args.repeats):
            for name, method in methods.items():
                started = time.perf_counter()
                method()
                seconds = time.perf_counter() - started
                times.setdefault(name, []).append(seconds)
                print(f"round {round_ + 1}: {name}: {seconds:.2f} s", flush=True)
    if own_workdir:
        shutil.rmtree(folder, ignore_errors=True)
    table = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        table[name] = {"seconds": runs, "median_s": median, "rows_per_s": rows / median}
    for path in ("source", "store"):
        base = next(v for k, v in table.items() if k.startswith(f"{path}: one process"))
        for name, entry in table.items():
            if name.startswith(path):
                entry["ratio_to_one_process"] = entry["rows_per_s"] / base["rows_per_s"]
    results["methods"] = table
    print(f"\n{rows:,} formulas, median of {args.repeats} round(s); one process: "
          f"{results['torch_threads_one_process']} torch thread(s)")  # fmt: skip
    print(f"{'method':<48} {'median s':>9} {'rows/s':>11} {'× 1 process':>12}")
    for name, entry in table.items():
        print(f"{name:<48} {entry['median_s']:>9.2f} {entry['rows_per_s']:>11,.0f} "
              f"{entry['ratio_to_one_process']:>12.2f}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
