"""Can the composition data pipeline keep an attention model fed? Samples/s, side by side.

The attention backbone (:mod:`xenonscale.models.attention`) reads each row's
composition (``composition_element`` / ``composition_fraction``, 16 slots)
instead of the feature matrix. This bench measures, on the OQMD
formation-enthalpy training set (239,190 formulas; ``--rows N`` takes a
seeded sample of N rows; featurized with the ``slots`` composition featurizer
into ``--workdir`` first if missing; ``--store`` names any composition store
instead):

* **(a) training**: ``--epochs`` epochs of the attention model through
  Lightning (``train_model(backbone="attention")``) after one warm-up epoch,
  on ``--accelerator`` / ``--devices`` (default: this machine's CPU). Two
  figures: samples/s of the training steps alone (data loading included,
  validation excluded: the rate the model *consumes* samples) and of the
  whole epoch with validation. Model options are flags: ``--d-model`` 128,
  ``--layers`` 3, ``--heads`` 4, ``--elements`` mat2vec, ``--batch-size`` 512.
* **(b) data pipeline**: one epoch of
  ``StoreDataModule(inputs="composition").train_dataloader()``, batches of
  ``--batch-size``, from memory (``ArrayStream`` over the 32 slot columns:
  one fancy index per batch)
  and streaming from Zarr (``memory_budget=0``: chunks read, decompressed,
  shuffled in groups of 4 chunks); each the median of ``--repeats`` epochs.
* **(c) the ratio** data / training (training steps alone). The goal: ≥ 10×,
  so that the pipeline is never what a GPU waits for.

Both use the same rows: the store's, minus the 10 % validation split.

Run::

    .venv/bin/python bench/attention_throughput.py --rows 30000 --epochs 2   # quick, CPU
    .venv/bin/python bench/attention_throughput.py --json bench/results/attention_throughput.json
    # on a GPU machine (all of OQMD; N GPUs through DDP):
    .venv/bin/python bench/attention_throughput.py --accelerator gpu --devices N \\
        --json bench/results/attention_throughput_gpu.json

With ``--devices`` > 1 Lightning's DDP re-executes this script once per extra
device; those processes skip the featurizing, the data figures and the report.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

DATASET = "oqmd_formation_enthalpy_train"


def data_rate(data, repeats: int) -> float:
    """Median samples/s of ``repeats`` epochs of ``data.train_dataloader()``."""
    rates = []
    for _ in range(repeats):
        started, rows = time.perf_counter(), 0
        for x, _y in data.train_dataloader():
            rows += len(x)
        rates.append(rows / (time.perf_counter() - started))
    return statistics.median(rates)


def training_rates(store: str, args) -> dict:
    """Samples/s of the attention model's training steps, and of whole epochs (validation in)."""
    import lightning as L

    from xenonscale.models.training import train_model

    class Clock(L.Callback):
        """Per epoch: start, validation start, end (perf_counter seconds)."""

        def __init__(self):
            self.epochs: list[dict] = []

        def on_train_epoch_start(self, trainer, module):
            self.epochs.append({"start": time.perf_counter()})

        def on_validation_start(self, trainer, module):
            if not trainer.sanity_checking and self.epochs:
                self.epochs[-1]["validation"] = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.epochs[-1]["end"] = time.perf_counter()

    clock = Clock()
    options = {"elements": args.elements, "d_model": args.d_model, "layers": args.layers,
               "heads": args.heads}  # fmt: skip
    result = train_model(store, "target", name="attention-throughput",
                         output=Path(args.workdir) / "attention-throughput-model",
                         backbone="attention", backbone_options=options,
                         max_epochs=args.epochs + 1, batch_size=args.batch_size,
                         progress=False, accelerator=args.accelerator, devices=args.devices,
                         patience=1000, callbacks=[clock])  # fmt: skip
    timed = [e for e in clock.epochs[1:] if "end" in e]  # the first epoch warms up
    rows = result.data.counts["train"]
    steps = statistics.median(e.get("validation", e["end"]) - e["start"] for e in timed)
    whole = statistics.median(e["end"] - e["start"] for e in timed)
    return {
        "train_rows": rows,
        "epochs_timed": len(timed),
        "parameters": sum(p.numel() for p in result.model.parameters()),
        "training_samples_per_s": rows / steps,
        "training_with_validation_samples_per_s": rows / whole,
        "seconds_per_epoch": whole,
        "val_mae_last_epoch": result.history[-1].get("val_mae") if result.history else None,
    }


def store_path(workdir: Path, rows: int | None, seed: int) -> Path:
    """Where :func:`oqmd_store` puts the store (all rows, or a seeded sample)."""
    name = "oqmd_train_slots" if rows is None else f"oqmd_train_slots_{rows}_seed{seed}"
    return workdir / f"{name}.zarr"


def oqmd_store(workdir: Path, rows: int | None, seed: int) -> str:
    """The OQMD training set (or a seeded sample of ``rows``) featurized with ``slots``."""
    import pandas as pd

    from xenonscale import datasets
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    source = str(datasets.fetch(DATASET))
    store = store_path(workdir, rows, seed)
    if rows is not None:
        frame = pd.read_csv(source)
        if rows > len(frame):
            raise SystemExit(f"--rows {rows}: the OQMD training file has {len(frame):,} rows")
        workdir.mkdir(parents=True, exist_ok=True)
        source = str(store.with_suffix(".csv"))
        frame.sample(rows, random_state=seed).to_csv(source, index=False)
    featurize_to_store(source, str(store), FeaturizerSpec.parse("composition", "slots"),
                       column="formula", progress=False)  # fmt: skip
    return str(store)


def _is_ddp_child() -> bool:
    """Lightning's DDP launcher re-runs the script with LOCAL_RANK set for ranks > 0."""
    return os.environ.get("LOCAL_RANK", "0") != "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None, help="composition store (default: OQMD train)")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="seeded sample of the OQMD training file (default: all rows)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --rows sample")
    parser.add_argument("--workdir", default="bench/results")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2, help="timed training epochs")
    parser.add_argument("--repeats", type=int, default=3, help="data-pipeline epochs (median)")
    parser.add_argument("--elements", default="mat2vec", help="element table of the embedding")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.rows is not None and args.rows < 100:
        parser.error(f"--rows {args.rows}: use at least 100 rows")

    import torch

    from xenonscale.models.data import StoreDataModule

    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    if _is_ddp_child():  # rank > 0 of DDP: train only
        training_rates(args.store or str(store_path(workdir, args.rows, args.seed)), args)
        return
    store = args.store or oqmd_store(workdir, args.rows, args.seed)
    memory = StoreDataModule(store, "target", batch_size=args.batch_size, inputs="composition")
    stream = StoreDataModule(store, "target", batch_size=args.batch_size, inputs="composition",
                             memory_budget=0)  # fmt: skip
    memory.setup(), stream.setup()
    data_memory = data_rate(memory, args.repeats)
    data_stream = data_rate(stream, args.repeats)
    training = training_rates(store, args)
    train = training["training_samples_per_s"]
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "store": store,
        "store_chunk_rows": memory.chunk_rows,
        "model": {
            "backbone": "attention",
            "elements": args.elements,
            "d_model": args.d_model,
            "layers": args.layers,
            "heads": args.heads,
        },
        "accelerator": args.accelerator,
        "devices": args.devices,
        "batch_size": args.batch_size,
        **training,
        "data_memory_samples_per_s": data_memory,
        "data_streaming_samples_per_s": data_stream,
        "ratio_memory": data_memory / train,
        "ratio_streaming": data_stream / train,
    }
    print(f"store {store}: {training['train_rows']:,} training rows (composition, 16 slots), "
          f"batch {args.batch_size}")  # fmt: skip
    print(f"machine: {result['machine']}; load average {result['load_average'][0]:.1f}")
    print(f"attention d_model {args.d_model}, {args.layers} layers, {args.heads} heads, "
          f"{args.elements} table, {training['parameters']:,} parameters; "
          f"{args.accelerator} × {args.devices}")  # fmt: skip
    print(f"{'(a) training steps (Lightning)':38s} {train:>12,.0f} samples/s")
    with_validation = training["training_with_validation_samples_per_s"]
    print(f"{'    with validation':38s} {with_validation:>12,.0f} samples/s  "
          f"({training['seconds_per_epoch']:.1f} s/epoch)")  # fmt: skip
    print(f"{'(b) data pipeline, in memory':38s} {data_memory:>12,.0f} samples/s")
    print(f"{'    data pipeline, streaming from Zarr':38s} {data_stream:>12,.0f} samples/s")
    worst = min(result["ratio_memory"], result["ratio_streaming"])
    print(f"(c) data / training: memory {result['ratio_memory']:,.1f}×, streaming "
          f"{result['ratio_streaming']:,.1f}× ({'meets' if worst >= 10 else 'misses'} "
          "the ≥ 10× goal)")  # fmt: skip
    print(
        "on a GPU machine: .venv/bin/python bench/attention_throughput.py --accelerator gpu "
        "--devices N --json bench/results/attention_throughput_gpu.json"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
