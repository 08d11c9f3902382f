"""Matbench's composition tasks in one table, beside the leaderboard (issue 14 acceptance).

One run does everything the table needs, from the shared mirror:

1. **The source.** An ``attention`` network (``mat2vec`` element table) is
   trained on Matbench ``mp_gap`` — 106,113 DFT band gaps, a different dataset
   from every task below — for ``--source-minutes`` of wall time and
   registered as ``mp-gap-att`` in a scratch zoo (reused when it is there).
   Equivalent commands::

       xenonscale featurize dataset:matbench_mp_gap -o W/mp_gap.zarr \\
           --featurizers classic --elements xenonpy58
       xenonscale train W/mp_gap.zarr --target target --model attention \\
           --elements mat2vec --name mp-gap-att --zoo W/zoo --units eV \\
           --max-minutes 25 --max-epochs 300 --batch-size 512 --patience 20

2. **The tasks**, each with Matbench's protocol (``xenonscale benchmark``;
   outer folds, every choice inside the training fold, the test fold
   predicted once) and Matbench's random forest on Magpie features on the
   same folds in the same run (``--baseline``):

   * ``expt_gap``, ``expt_is_metal``, ``glass``: the source fine-tuned on
     each training fold, nothing frozen (``--fine-tune none``; learning rate
     5e-4, patience 20 on 10 % of the fold — chosen before the run, never
     tuned on a test fold);
   * ``steels_yield`` (312 alloys; a band-gap source has nothing to give):
     the MLP on XenonPy descriptors from scratch.

3. **The table**: our mean ± std over the 5 folds, the same-fold forest, and
   the published leaderboard best, MODNet and CrabNet
   (:mod:`xenonscale.workflows.leaderboard`).

Run (about 25 min for the source and 30-40 min for the tasks on 2 cores)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/matbench_compositions.py \\
        --json bench/results/matbench_compositions.json
    .venv/bin/python bench/matbench_compositions.py --tasks expt_gap --outer-folds 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

SOURCE = "mp-gap-att"
TASKS = ("expt_gap", "expt_is_metal", "glass", "steels_yield")
FINE_TUNED = {"expt_gap", "expt_is_metal", "glass"}


def ensure_source(work: Path, minutes: float) -> str:
    """The band-gap source's zoo reference, training it first when the zoo lacks it."""
    from xenonscale import datasets
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows import train_and_register
    from xenonscale.zoo import Zoo

    zoo = Zoo(str(work / "zoo"))
    if SOURCE in zoo.list()["name"].tolist():
        return str(zoo.latest(SOURCE))
    store = str(work / "mp_gap.zarr")
    client = get_client(workers=2, quiet=True)
    try:
        spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
        source = str(datasets.fetch("matbench_mp_gap"))
        featurize_to_store(source, store, spec, column="formula", client=client,
                           progress=False)  # fmt: skip
    finally:
        close_client(client)
    result = train_and_register(
        store, "target", name=SOURCE, zoo=zoo, units={"target": "eV"},
        backbone="attention", backbone_options={"elements": "mat2vec"},
        max_minutes=minutes, max_epochs=300, batch_size=512, patience=20,
        output=str(work / "models" / SOURCE), progress=False,
    )  # fmt: skip
    return str(result.ref)


def run_task(task: str, source: str, work: Path, args) -> dict:
    """Matbench ``task`` with this bench's method for it; the record."""
    from xenonscale.workflows.matbench import run_benchmark

    options = {"baseline": True, "max_epochs": args.max_epochs, "workers": args.workers,
               "progress": False, "folds": args.outer_folds}  # fmt: skip
    if task in FINE_TUNED:
        options.update(transfer_from=[source], zoo=str(work / "zoo"), fine_tune="none")
    else:
        options.update(model="mlp")
    result = run_benchmark(f"matbench_{task}", output=str(work / task), **options)
    print(result.table(), flush=True)
    return result.record


def table(records: dict[str, dict]) -> str:
    """One Markdown table: ours, the same-fold forest, the published best, MODNet, CrabNet."""
    from xenonscale.workflows.leaderboard import published

    def cell(mean, std, digits=4):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = [
        "| task | metric | xenonscale (method) | RF-Magpie, same folds | best (published) "
        "| MODNet | CrabNet |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, record in records.items():
        metric = record["metric"]
        ours = record["summary"][metric]
        forest = record.get("baseline", {}).get("summary", {}).get(metric)
        roles = ("best", "modnet", "crabnet")
        best, modnet, crabnet = (published(record["task"], role) for role in roles)
        lines.append(
            f"| {task} | {metric} | **{cell(ours['mean'], ours['std'])}** "
            f"({record['model']['label']}) "
            f"| {cell(forest['mean'], forest['std']) if forest else '—'} "
            f"| {cell(best.mean, best.std)} ({best.algorithm}) "
            f"| {cell(modnet.mean, modnet.std) if modnet else '—'} "
            f"| {cell(crabnet.mean, crabnet.std) if crabnet else '—'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="bench/results/matbench")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--source-minutes", type=float, default=25.0)
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--outer-folds", default=None, help="e.g. 0,1 for a partial run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        parser.error(f"--tasks {','.join(unknown)}: choose among {','.join(TASKS)}")
    if args.outer_folds:
        args.outer_folds = [int(f) for f in args.outer_folds.split(",")]

    work = Path(args.workdir)
    started = time.perf_counter()
    source = ensure_source(work, args.source_minutes) if set(tasks) & FINE_TUNED else None
    source_minutes = (time.perf_counter() - started) / 60
    records = {task: run_task(task, source, work, args) for task in tasks}
    text = table(records)
    print(text)
    report = {
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "source": source,
        "source_minutes": round(source_minutes, 1),
        "table": text,
        "tasks": {
            task: {
                "summary": record["summary"],
                "baseline": record.get("baseline", {}).get("summary"),
                "model": record["model"],
                "seconds": record.get("seconds"),
            }
            for task, record in records.items()
        },
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
