"""Crystal-graph training and inference throughput, and whether the data pipeline keeps up.

Claim checked (issue 15): training and inference throughput (structures/s)
of the ``cgcnn`` and ``megnet`` backbones, with the data pipeline's rate
≥ 10× the training rate, so that a GPU would not be starved.

On a ``graph`` store (default: Matbench phonons, 1,265 structures, featurized
with ``graph`` — cutoff 8 Å, 12 neighbours, 64 atom slots — into ``--workdir``
first if missing; ``--store`` names any graph store and ``--target`` its
target), the training split of ``StoreDataModule(store, target,
inputs="graph")`` (90 %):

* **(a) data pipeline**: one epoch of ``train_dataloader()``, batches of
  ``--batch-size`` crystals (in memory: one fancy index per batch), then the
  same with ``atom_budget=--atom-budget`` (a batch closes at that many atoms),
  then streaming from Zarr (``memory_budget=0``), and the in-memory epoch with
  ``pack_graphs`` on every batch (on the CPU: the model's input step). Each
  the median of ``--repeats`` epochs after a warm-up epoch.
* **(b) training**: ``GraphModel(graph_config(backbone, layout,
  elements="magpie"))`` straight in torch: forward, L1 loss on standardized
  targets, backward, Adam step, on real batches of ``--batch-size`` from the
  loader (moved to the device first); ``--warmup`` steps, then ``--repeats``
  rounds of ``--steps`` steps; the median round in structures/s (the device
  synchronized before each clock reading).
* **(c) inference**: ``model.eval()`` under ``torch.inference_mode()`` on
  batches of ``--predict-batch-size``; median of ``--repeats`` passes over the
  training rows.
* **ratio**: data pipeline (with ``pack_graphs``) ÷ training, per backbone;
  the goal is ≥ 10×.

Run::

    # CPU (this machine; ~1 min)
    XENONSCALE_DATA_DIR=../shared/data OMP_NUM_THREADS=1 .venv/bin/python \\
        bench/graphs_throughput.py --json bench/results/graphs_throughput.json
    # GPU (one CUDA device; the data pipeline stays on the CPU, as in training)
    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/graphs_throughput.py \\
        --accelerator gpu --steps 50 --json bench/results/graphs_throughput_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

BACKBONES = ("cgcnn", "megnet")


def phonons_store(workdir: Path, workers: int) -> str:
    """Matbench phonons featurized with ``graph`` (built once, reused)."""
    from xenonscale.cluster import close_client, get_client
    from xenonscale.datasets import fetch
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    store = workdir / "graphs_throughput_phonons.zarr"
    if (store / "errors").exists():
        return str(store)
    client = get_client(workers=workers, quiet=True)
    try:
        job = featurize_to_store(
            str(fetch("matbench_phonons")),
            str(store),
            FeaturizerSpec.parse("structure", "graph"),
            column="structure",
            client=client,
            partition_rows=256,
            overwrite=True,
            progress=False,
        )
    finally:
        close_client(client)
    print(f"featurized {store}: {job.rows} rows, {job.errors} errors, {job.seconds:.1f} s")
    return str(store)


def epoch_rate(data, repeats: int, pack=None) -> dict[str, float]:
    """Median structures/s (and batches) of ``repeats`` epochs after one warm-up epoch."""
    rates, batches = [], 0
    for round_ in range(repeats + 1):
        started, rows, batches = time.perf_counter(), 0, 0
        for x, _y in data.train_dataloader():
            if pack is not None:
                pack(x)
            rows += len(x)
            batches += 1
        if round_:  # the first epoch reads the store and warms up
            rates.append(rows / (time.perf_counter() - started))
    return {"structures_per_s": statistics.median(rates), "batches": batches}


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_rates(backbone: str, layout: dict, data, batches, device, args) -> dict[str, Any]:
    """Training steps and inference in structures/s (medians of rounds)."""
    import torch

    from xenonscale.models.graphs import GraphModel, graph_config

    torch.manual_seed(0)
    config = graph_config(
        backbone, layout, elements=args.elements, width=args.width, layers=args.layers
    )
    model = GraphModel(config).fit_scaling(y_mean=data.target_mean, y_std=data.target_std)
    model.to(device)
    mean = torch.as_tensor(data.target_mean, device=device)
    std = torch.as_tensor(data.target_std, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(model.forward_scaled(x), (y - mean) / std)
        loss.backward()
        optimizer.step()
        return loss

    model.train()
    for i in range(args.warmup):
        step(*batches[i % len(batches)])
    rates, cursor = [], args.warmup
    for _ in range(args.repeats):
        sync(device)
        started, rows = time.perf_counter(), 0
        for _ in range(args.steps):
            x, y = batches[cursor % len(batches)]
            step(x, y)
            rows += len(x)
            cursor += 1
        sync(device)
        rates.append(rows / (time.perf_counter() - started))

    x_all, _ = data.arrays("train")
    chunks = [
        torch.as_tensor(x_all[i : i + args.predict_batch_size]).to(device)
        for i in range(0, len(x_all), args.predict_batch_size)
    ]
    model.eval()
    inference = []
    with torch.inference_mode():
        model(chunks[0])  # warm-up
        for _ in range(args.repeats):
            sync(device)
            started = time.perf_counter()
            for x in chunks:
                model(x)
            sync(device)
            inference.append(len(x_all) / (time.perf_counter() - started))
    return {
        "backbone": backbone,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": {
            k: config[k] for k in ("elements", "width", "layers", "gaussians", "head_hidden")
        },
        "training_structures_per_s": statistics.median(rates),
        "training_rounds": rates,
        "inference_structures_per_s": statistics.median(inference),
        "inference_rounds": inference,
        "last_loss": float(step(*batches[0]).detach()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None, help="graph store (default: Matbench phonons)")
    parser.add_argument("--target", default="last phdos peak")
    parser.add_argument("--workdir", default="bench/results")
    parser.add_argument("--workers", type=int, default=2, help="engine workers for the store")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--atom-budget", type=int, default=256, help="atoms per batch")
    parser.add_argument("--predict-batch-size", type=int, default=512)
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--elements", default="magpie", help="element table of the embedding")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (median)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--device", default=None, help="torch device (default: cpu / cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from xenonscale.models.data import StoreDataModule
    from xenonscale.models.graphs import pack_graphs
    from xenonscale.models.training import graph_layout

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if args.accelerator == "gpu" else "cpu"))
    store = args.store or phonons_store(Path(args.workdir), args.workers)

    def module(**options):
        data = StoreDataModule(
            store, args.target, inputs="graph", batch_size=args.batch_size, **options
        )
        data.setup()
        return data

    memory = module()
    layout = graph_layout(memory.store_attrs.get("featurizer"), store)
    rows = memory.counts["train"]
    pipeline = {
        "memory": epoch_rate(memory, args.repeats),
        "atom_budget": epoch_rate(module(atom_budget=args.atom_budget), args.repeats),
        "streaming": epoch_rate(module(memory_budget=0), args.repeats),
        "memory_with_pack_graphs": epoch_rate(
            memory,
            args.repeats,
            pack=lambda x: pack_graphs(x, layout["atoms"], layout["neighbors"]),
        ),
    }
    batches = [(x.to(device), y.to(device)) for x, y in memory.train_dataloader()]
    models = [
        model_rates(name, layout, memory, batches, device, args)
        for name in args.backbones.split(",")
    ]
    feed = pipeline["memory_with_pack_graphs"]["structures_per_s"]
    for m in models:
        m["pipeline_over_training"] = feed / m["training_structures_per_s"]

    where = str(device)
    if device.type == "cuda":
        where += f" ({torch.cuda.get_device_name(device)})"
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "device": where,
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "store": store,
        "target": args.target,
        "layout": layout,
        "train_rows": rows,
        "counts": memory.counts,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "pipeline": pipeline,
        "models": models,
    }
    print(
        f"store {store}: {rows:,} training structures ({layout}), batch {args.batch_size}, "
        f"target {args.target!r}"
    )
    print(
        f"machine: {result['machine']}; device {where}; load average "
        f"{result['load_average'][0]:.1f}"
    )
    print(f"\n(a) data pipeline, one epoch (median of {args.repeats})      structures/s")
    labels = {
        "memory": "in memory",
        "atom_budget": f"in memory, atom_budget={args.atom_budget}",
        "streaming": "streaming from Zarr",
        "memory_with_pack_graphs": "in memory + pack_graphs (CPU)",
    }
    for key, label in labels.items():
        p = pipeline[key]
        print(f"    {label:<44}{p['structures_per_s']:>12,.0f}   ({p['batches']} batches)")
    header = (
        f"{'backbone':<10}{'parameters':>12}{'train str/s':>13}{'infer str/s':>13}"
        f"{'pipeline/train':>16}{'≥ 10×':>7}"
    )
    print(
        f"\n(b) training (batch {args.batch_size}, median of {args.repeats} × {args.steps} "
        f"steps) and (c) inference (batch {args.predict_batch_size}) on {where}"
    )
    print(header + "\n" + "-" * len(header))
    for m in models:
        ratio = m["pipeline_over_training"]
        print(
            f"{m['backbone']:<10}{m['parameters']:>12,}{m['training_structures_per_s']:>13,.0f}"
            f"{m['inference_structures_per_s']:>13,.0f}{ratio:>15,.1f}×"
            f"{'yes' if ratio >= 10 else 'NO':>7}"
        )
    print(
        "\nGPU: .venv/bin/python bench/graphs_throughput.py --accelerator gpu --steps 50 "
        "--json bench/results/graphs_throughput_gpu.json"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
