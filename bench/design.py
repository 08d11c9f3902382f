"""Inverse design: n-gram training throughput on MOSES, proposals side by side with XenonPy 0.6.7.

Two parts (``--part ngram``, ``--part proposals`` or both, the default):

**ngram**: :func:`xenonscale.design.train_ngram` on the MOSES training set
(``molecules/moses_train.csv.gz``, 1,584,663 SMILES; ``--rows`` to limit)
straight from the gzipped CSV, on an embedded LocalCluster of 1 and then 2
worker processes (``--workers 1,2``): order ``--order`` (10), ``--augment``
re-orderings per SMILES (1). Reports SMILES/s (input SMILES, re-orderings not
counted), SMILES per CPU second of the workers (``process_time`` summed over
the worker processes: steadier than wall time on a shared machine), the
table's size, the time to save it (JSON + Parquet) and to load it back.
XenonPy's ``NGram.fit`` is timed in the proposals part on the same kind of
SMILES (it takes about a minute per thousand SMILES).

**proposals**: both n-grams trained on the same ``--train-rows`` (1,000)
PubChemQC SMILES of ``molecules/iqspr_pubchemqc.csv`` as given (xenonscale
with ``augment=0``, XenonPy's ``fit(smiles, train_order=order)``), same
order, same proposal settings (``del_range=(1, 10)``, ``reorder_prob=0``,
``max_len=1000``: XenonPy's defaults). Each tool then proposes one SMILES
per member of the same populations (``--populations``, default 25, the
XenonPy tutorial's, and 100; seeded draws from the rows after the training
rows). One warm-up call each, then ``--repeats`` interleaved rounds on the
same population; the bench reports proposals per second of this process's
CPU time (``process_time``: one core each, steadier than wall time on a
shared machine) and the wall rate, medians over the rounds, and the ratio
xenonscale / XenonPy. xenonscale keeps small caches per model (parsed
parents, and the draw table of each context it has grown from); they persist
across calls, as they do across the steps of an SMC run. The bench therefore
also times xenonscale **cold**: all caches emptied before every call.
Both tools check every proposal with RDKit and return the parent when they
fail; the bench reports the share of proposals that RDKit parses, the share
that differ from their parent, and xenonscale's raw validity (first
regrowth, no retry: ``propose(..., validate=False)``).

XenonPy's ``proposal`` is called one parent at a time (a parent that makes
XenonPy raise ``IndexError`` comes back unchanged, see :func:`xenonpy_propose`).
XenonPy 0.6.7 calls ``DataFrame.append``, which pandas 2 removed: the bench
restores it for XenonPy as the ``pd.concat`` it was (``Series`` rows go in as
one-row frames, as pandas 1 did). XenonPy's ``inverse`` package does not read
its element table, so no ``~/.xenonpy`` is needed.

Run::

    .venv/bin/python bench/design.py --part ngram --json bench/results/design_ngram.json
    .venv/bin/python bench/design.py --part proposals --json bench/results/design_proposals.json
    .venv/bin/python bench/design.py --part ngram --rows 100000 --workers 2   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Keep module-level imports light: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"
if not os.environ.get("XENONSCALE_DATA_DIR") and SHARED_DATA.is_dir():
    os.environ["XENONSCALE_DATA_DIR"] = str(SHARED_DATA)
MOSES = "molecules/moses_train.csv.gz"
XS, XS_COLD, PEER = "xenonscale", "xenonscale, cold caches", "XenonPy 0.6.7"
IQSPR = "molecules/iqspr_pubchemqc.csv"


def data_path(name: str) -> Path:
    root = os.environ.get("XENONSCALE_DATA_DIR")
    if not root or not (Path(root) / name).is_file():
        raise SystemExit(f"{name} not found: set XENONSCALE_DATA_DIR to the data mirror")
    return Path(root) / name


def helpers(name: str) -> Any:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------- ngram
def run_ngram(args: argparse.Namespace) -> list[dict[str, Any]]:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.design import NGram, train_ngram

    path = data_path(MOSES)
    runs = []
    for workers in args.workers:
        client = get_client(workers=workers, quiet=True)
        try:
            load = os.getloadavg()[0]
            cpu_before = sum(client.run(time.process_time).values())
            start = time.perf_counter()
            model = train_ngram(
                path,
                order=args.order,
                augment=args.augment,
                client=client,
                limit=args.rows,
                progress=not args.no_progress,
            )
            seconds = time.perf_counter() - start
            worker_cpu = sum(client.run(time.process_time).values()) - cpu_before
            load_after = os.getloadavg()[0]
        finally:
            close_client(client)
        p = model.provenance
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            folder = Path(tmp) / "moses.ngram"
            t = time.perf_counter()
            model.save(folder)
            save_s = time.perf_counter() - t
            size = folder_bytes(folder)
            del model
            gc.collect()
            t = time.perf_counter()
            loaded = NGram.load(folder)
            load_s = time.perf_counter() - t
        run = {
            "workers": workers,
            "smiles": p["smiles"],
            "bad": p["bad"],
            "sequences": p["sequences"],
            "tokens": p["tokens"],
            "partitions": p["partitions"],
            "seconds": seconds,
            "smiles_per_s": p["smiles"] / seconds,
            "worker_cpu_s": worker_cpu,
            "smiles_per_cpu_s": p["smiles"] / worker_cpu,
            "contexts": loaded.n_contexts,
            "entries": loaded.n_entries,
            "vocabulary": len(loaded.vocabulary),
            "save_s": save_s,
            "load_s": load_s,
            "disk_mib": size / 2**20,
            "load_average_before": load,
            "load_average_after": load_after,
        }
        runs.append(run)
        print(
            f"  {workers} worker(s): {run['smiles']:,} SMILES in {seconds:.0f} s = "
            f"{run['smiles_per_s']:,.0f} SMILES/s, {run['smiles_per_cpu_s']:,.0f} per worker "
            f"CPU second ({run['entries']:,} entries, "
            f"{run['disk_mib']:.0f} MiB, save {save_s:.1f} s, load {load_s:.1f} s)",
            flush=True,
        )
        del loaded
        gc.collect()
    return runs


# ------------------------------------------------------------------ proposals
def xenonpy_ngram_class() -> Any:
    """XenonPy 0.6.7's ``NGram``, with ``DataFrame.append`` (gone in pandas 2) restored."""
    import pandas as pd

    if not hasattr(pd.DataFrame, "append"):

        def append(self, other, ignore_index=False, **_):
            if isinstance(other, pd.Series):
                other = other.to_frame().T.infer_objects()
            elif isinstance(other, dict):
                other = pd.DataFrame([other])
            return pd.concat([self, other], ignore_index=ignore_index)

        pd.DataFrame.append = append
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from xenonpy.inverse.iqspr import NGram
    return NGram


def quiet(fn, *args):
    """Call ``fn`` with RDKit logs, warnings and tqdm's stderr silenced."""
    from rdkit import rdBase

    with (
        rdBase.BlockLogs(),
        warnings.catch_warnings(),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        return fn(*args)


def xenonpy_propose(model, population: Sequence[str]) -> list[str]:
    """XenonPy's ``proposal``, one parent at a time: a parent that raises gives itself back.

    XenonPy 0.6.7 raises ``IndexError`` (not its ``ProposalError``) for a parent
    with more open rings than any training SMILES had, which would abort the
    whole population; the bench treats it as XenonPy treats its own errors.
    """
    out = []
    for smiles in population:
        try:
            out.extend(model.proposal([smiles]))
        except (IndexError, KeyError, ValueError):
            out.append(smiles)
    return out


def cold() -> None:
    """Empty xenonscale's caches (parsed parents, context lookups) before a timed call."""
    from xenonscale.design import ngram, scalar

    ngram._extended.cache_clear()
    scalar._CACHES.clear()


def valid_share(smiles: Sequence[str]) -> float:
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        return float(np.mean([Chem.MolFromSmiles(s) is not None for s in smiles]))


def run_proposals(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from xenonscale.design import train_ngram

    frame = pd.read_csv(data_path(IQSPR))
    smiles = frame["SMILES"].tolist()
    train = smiles[: args.train_rows]
    rest = smiles[args.train_rows :]
    draw = np.random.default_rng(args.seed)

    t = time.perf_counter()
    ours = train_ngram(train, order=args.order, augment=0, client=False, progress=False)
    ours_fit = time.perf_counter() - t
    ours.del_range, ours.reorder_prob, ours.max_len = (1, 10), 0.0, 1000
    XNGram = xenonpy_ngram_class()
    theirs = XNGram(del_range=(1, 10), reorder_prob=0, max_len=1000)
    print(f"  training XenonPy's NGram on {len(train):,} SMILES (minutes) ...", flush=True)
    t = time.perf_counter()
    quiet(lambda: theirs.fit(train, train_order=args.order))
    theirs_fit = time.perf_counter() - t
    print(
        f"  fit: xenonscale {len(train) / ours_fit:,.0f} SMILES/s, "
        f"XenonPy {len(train) / theirs_fit:,.1f} SMILES/s",
        flush=True,
    )
    result: dict[str, Any] = {
        "train_rows": len(train),
        "order": args.order,
        "fit_smiles_per_s": {
            "xenonscale": len(train) / ours_fit,
            "XenonPy 0.6.7": len(train) / theirs_fit,
        },
        "populations": [],
    }
    rng = np.random.default_rng(args.seed)
    np.random.seed(args.seed)  # noqa: NPY002 (XenonPy draws from numpy's global generator)
    for size in args.populations:
        population = [rest[i] for i in draw.choice(len(rest), size=size, replace=False)]
        populations = [population] * (args.repeats + 1)  # the warm-up, then the rounds

        def ours_warm(population):
            return quiet(ours.propose, population, rng)

        def ours_cold(population):
            cold()
            return quiet(ours.propose, population, rng)

        def peer(population):
            return quiet(xenonpy_propose, theirs, population)

        cases = {XS: ours_warm, XS_COLD: ours_cold, PEER: peer}
        outputs = {name: fn(populations[0]) for name, fn in cases.items()}  # warm-up
        # Both models are long-lived: keep the collector from walking XenonPy's thousands of
        # pandas tables whenever xenonscale's small lists trigger a full collection.
        gc.collect()
        gc.freeze()
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        produced: dict[str, list[str]] = {name: [] for name in cases}
        load = os.getloadavg()[0]
        for population in populations[1:]:
            for name, fn in cases.items():
                gc.collect()
                wall, cpu = time.perf_counter(), time.process_time()
                out = fn(population)
                seconds[name].append((time.perf_counter() - wall, time.process_time() - cpu))
                produced[name].extend(out)
        parents = [s for population in populations[1:] for s in population]
        raw = quiet(lambda p=parents: ours.propose(p, np.random.default_rng(1), validate=False))
        entry: dict[str, Any] = {"population": size, "load_average": load, "tools": {}}
        for name in cases:
            cpu = statistics.median(c for _, c in seconds[name])
            wall = statistics.median(w for w, _ in seconds[name])
            out = produced[name]
            entry["tools"][name] = {
                "per_s_cpu": size / cpu,
                "per_s_wall": size / wall,
                "cpu_s": [c for _, c in seconds[name]],
                "valid": valid_share(out),
                "changed": float(np.mean([a != b for a, b in zip(parents, out, strict=True)])),
                "example": [populations[0][0], outputs[name][0]],
            }
        entry["xenonscale_raw_valid"] = valid_share(raw)
        tools = entry["tools"]
        for name, key in ((XS, "ratio"), (XS_COLD, "ratio_cold")):
            entry[key] = tools[name]["per_s_cpu"] / tools[PEER]["per_s_cpu"]
            entry[key + "_wall"] = tools[name]["per_s_wall"] / tools[PEER]["per_s_wall"]
        result["populations"].append(entry)
        print(
            f"  population {size}: xenonscale {tools[XS]['per_s_cpu']:,.0f}/s "
            f"(cold caches {tools[XS_COLD]['per_s_cpu']:,.0f}/s), XenonPy "
            f"{tools[PEER]['per_s_cpu']:,.1f}/s (CPU) -> {entry['ratio']:.0f}x "
            f"({entry['ratio_cold']:.0f}x cold)", flush=True
        )  # fmt: skip
    return result


# --------------------------------------------------------------------- report
def report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(f"\nmachine: {machine['cpu']} ({machine['cpu_count']} cores)")
    if "ngram" in results:
        print("\nn-gram training on MOSES (order {order}, augment {augment}):".format(
            **results["settings"]))  # fmt: skip
        print("| workers | SMILES | seconds | SMILES/s | SMILES per worker CPU s | entries | "
              "disk MiB | load s |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results["ngram"]:
            print(f"| {r['workers']} | {r['smiles']:,} | {r['seconds']:.0f} | "
                  f"{r['smiles_per_s']:,.0f} | {r['smiles_per_cpu_s']:,.0f} | {r['entries']:,} | "
                  f"{r['disk_mib']:.0f} | {r['load_s']:.1f} |")  # fmt: skip
    if "proposals" in results:
        p = results["proposals"]
        print(f"\nproposals (order {p['order']}, trained on {p['train_rows']:,} SMILES):")
        print(
            "| population | xenonscale /s | cold caches /s | XenonPy /s | ratio (cold) | "
            "wall ratio | valid xs / XenonPy | raw valid xs | changed xs / XenonPy |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for e in p["populations"]:
            a, c, b = (e["tools"][name] for name in (XS, XS_COLD, PEER))
            print(
                f"| {e['population']} | {a['per_s_cpu']:,.0f} | {c['per_s_cpu']:,.0f} | "
                f"{b['per_s_cpu']:,.1f} | {e['ratio']:.0f}x ({e['ratio_cold']:.0f}x) | "
                f"{e['ratio_wall']:.0f}x | {a['valid']:.1%} / {b['valid']:.1%} | "
                f"{e['xenonscale_raw_valid']:.1%} | {a['changed']:.0%} / {b['changed']:.0%} |"
            )
        fit = p["fit_smiles_per_s"]
        print(
            f"\nfit on {p['train_rows']:,} SMILES: xenonscale {fit['xenonscale']:,.0f} "
            f"SMILES/s, XenonPy {fit['XenonPy 0.6.7']:,.1f} SMILES/s (one core each)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("ngram", "proposals", "all"), default="all")
    parser.add_argument("--rows", type=int, default=None, help="ngram: MOSES rows (default all)")
    parser.add_argument("--workers", default="1,2", help="ngram: comma list of worker counts")
    parser.add_argument("--order", type=int, default=10, help="n-gram order (both parts)")
    parser.add_argument("--augment", type=int, default=1, help="ngram: re-orderings per SMILES")
    parser.add_argument("--train-rows", type=int, default=1000, help="proposals: training SMILES")
    parser.add_argument("--populations", default="25,100", help="proposals: population sizes")
    parser.add_argument("--repeats", type=int, default=5, help="proposals: timed rounds")
    parser.add_argument("--seed", type=int, default=0, help="proposals: sample and rng seed")
    parser.add_argument("--workdir", default=None, help="ngram: folder for the saved model")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    args.populations = [int(n) for n in args.populations.split(",") if n.strip()]
    if min([*args.workers, *args.populations, args.repeats, args.train_rows, args.order]) < 1:
        parser.error("--workers, --populations, --repeats, --train-rows, --order: positive")
    args.workdir = args.workdir or tempfile.gettempdir()

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }
    if args.part in ("ngram", "all"):
        print(f"ngram: MOSES, order {args.order}, augment {args.augment}, workers {args.workers}")
        results["ngram"] = run_ngram(args)
    if args.part in ("proposals", "all"):
        print(f"proposals: populations {args.populations}, {args.repeats} rounds after a warm-up")
        results["proposals"] = run_proposals(args)
    common = helpers("compositions")
    results["machine"] = common.machine(extra=("rdkit", "xenonpy", "dask", "pyarrow"))
    report(results)
    common.write_results(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
