"""Is the data pipeline fast enough that a GPU would never starve? Samples/s, side by side.

Measures, on one real FeatureStore (default: the OQMD formation-enthalpy
training set, 239,190 formulas, XenonPy ``classic`` descriptors on
``xenonpy58`` → 290 float32 features, featurized into ``--workdir`` first if
missing):

* **data (memory)**: one epoch of ``StoreDataModule.train_dataloader()`` when
  the selected rows fit in memory (a ``TensorDataset``), batches of
  ``--batch-size``;
* **data (streaming)**: the same with ``memory_budget=0``: chunks read from
  Zarr (lz4), decompressed, shuffled in groups of 4 chunks;
* **training (CPU)**: ``--epochs`` epochs of the default MLP (512-256-128,
  batch norm, AdamW) through Lightning on this machine's CPU, validation
  included, after a warm-up epoch.

Each data figure is the median of ``--repeats`` epochs. The goal (issue 5):
data pipeline ≥ 10× the CPU training rate.

Run::

    .venv/bin/python bench/train_throughput.py
    .venv/bin/python bench/train_throughput.py --store my.zarr --target target --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _data_rate(data, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        started, rows = time.perf_counter(), 0
        for x, _y in data.train_dataloader():
            rows += len(x)
        rates.append(rows / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None, help="FeatureStore (default: OQMD train)")
    parser.add_argument("--target", default="target")
    parser.add_argument("--workdir", default="bench/results")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2, help="timed training epochs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from xenonscale.models.data import StoreDataModule

    store = args.store or _oqmd_store(Path(args.workdir))
    memory = StoreDataModule(store, args.target, batch_size=args.batch_size)
    stream = StoreDataModule(store, args.target, batch_size=args.batch_size, memory_budget=0)
    memory.setup(), stream.setup()
    rows = memory.counts["train"]
    data_memory = _data_rate(memory, args.repeats)
    data_stream = _data_rate(stream, args.repeats)
    training = _training_rate(store, args.target, args.batch_size, args.epochs)
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "store": store,
        "train_rows": rows,
        "features": memory.n_features,
        "batch_size": args.batch_size,
        "data_memory_samples_per_s": data_memory,
        "data_streaming_samples_per_s": data_stream,
        "training_cpu_samples_per_s": training,
        "ratio_memory": data_memory / training,
        "ratio_streaming": data_stream / training,
    }
    print(f"store {store}: {rows:,} training rows × {memory.n_features} features, "
          f"batch {args.batch_size}; {result['machine']}")  # fmt: skip
    print(f"{'data pipeline, in memory':34s} {data_memory:>12,.0f} samples/s  "
          f"{result['ratio_memory']:6.1f}× training")  # fmt: skip
    print(f"{'data pipeline, streaming from Zarr':34s} {data_stream:>12,.0f} samples/s  "
          f"{result['ratio_streaming']:6.1f}× training")  # fmt: skip
    print(f"{'training (MLP, CPU, Lightning)':34s} {training:>12,.0f} samples/s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


def _training_rate(store: str, target: str, batch_size: int, epochs: int) -> float:
    import lightning as L

    from xenonscale.models.training import train_model

    class Clock(L.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, module):
            self.times.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, module):
            self.times.append(time.perf_counter())

    clock = Clock()
    result = train_model(store, target, output="bench/results/throughput-model",
                         max_epochs=epochs + 1, batch_size=batch_size,
                         progress=False, accelerator="cpu", patience=100,
                         callbacks=[clock])  # fmt: skip
    spans = [clock.times[i + 1] - clock.times[i] for i in range(2, len(clock.times) - 1, 2)]
    return result.data.counts["train"] / statistics.median(spans)


def _oqmd_store(workdir: Path) -> str:
    from xenonscale import datasets
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    store = workdir / "oqmd_train_classic.zarr"
    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    featurize_to_store(str(datasets.fetch("oqmd_formation_enthalpy_train")), str(store), spec,
                       column="formula", progress=False)  # fmt: skip
    return str(store)


if __name__ == "__main__":
    main()
