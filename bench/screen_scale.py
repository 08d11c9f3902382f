"""Scale: ten million enumerated compositions screened by three zoo models on 2 workers.

Claim checked (issue 17): 10,000,000 enumerated candidates screened by three
zoo models on 2 workers in minutes with flat worker memory; throughput beside
``ZooModel.predict`` in one process in the same run.

1. **Candidates.** An ``enumerate:compositions`` source
   (:class:`~xenonscale.chem.enumeration.CompositionSpace`): every reduced
   formula with ``--min-elements`` .. ``--max-elements`` (default 2..3)
   distinct elements from a set of elements and at most ``max_atoms`` atoms
   per formula unit, no charge filter. The source has no row limit, so the
   space is chosen to hold at least ``--rows`` rows and as few more as
   possible: the elements are the first ``k`` of :data:`POOL` (anions and
   common cations first) and ``max_atoms`` at most ``--max-atoms-cap`` (30);
   the smallest space with ``size >= --rows`` wins (ties: more elements).
   Default ``--rows 10,000,000``: 32 elements, ``max_atoms=25``, binaries and
   ternaries, **10,103,024 rows**. ``--elements`` / ``--max-atoms`` fix the
   space instead. The URL and the exact count are printed.
2. **Models.** Three zoo models trained here (timed, not part of the
   throughput): ``--train-rows`` (2,000) rows sampled (seed 0) from each of
   the mirror's ``matbench_expt_gap``, ``matbench_mp_gap`` and
   ``matbench_mp_e_form`` (``formula,target``), featurized with
   ``FeaturizerSpec.parse("composition", "classic")`` (340 features) into a
   store on the cluster, then ``train_and_register(..., hidden=[64])`` into a
   fresh zoo (``batch_size`` 256; a training set of ``256k + 1`` rows ends in
   a 1-row batch, which ``BatchNorm1d`` refuses in training: that model is
   retrained with ``batch_size`` 255, said and recorded). All three share
   that featurizer, and ``predict_to_store`` keys the worker's featurized
   batch by the card's featurizer, so each partition is featurized **once**
   for the three models (the script counts the distinct featurizers of the
   three cards).
3. **Engine.** ``LocalCluster(n_workers=2, threads_per_worker=1,
   processes=True, dashboard_address=None, memory_limit=--memory-limit)``,
   started with the embedded cluster's setting of ``xenonscale.cluster``
   (Dask's ``MALLOC_TRIM_THRESHOLD_`` unset). An untimed warm-up job (a small
   space, 8 tasks) loads imports and the models into each worker. Then
   ``predict_to_store(three models, enumerate: URL, OUT.parquet,
   partition_rows=--partition-rows)`` is timed; the workers make their own
   rows from the row numbers, featurize, predict and write one Parquet part
   each. Meanwhile a thread samples every ``--sample-seconds`` (2 s) each
   worker's RSS (``client.run``), this process's RSS and the rows done (done
   markers). Per worker: *before* (idle, warm), *first* (the peak until
   ``workers`` partitions are done), *median* and *max* after that, max/first
   ("flat" when ≤ ``--flat-tolerance``, 1.25) and the least-squares slope of
   RSS against rows done (MiB per million rows). Worker PIDs are compared
   before and after (a restarted worker would hide growth).
4. **Screen.** ``screen(OUT.parquet, ["<expt>:target=1:3", "<mp gap>:target=1:3",
   "<e_form>:target=:-0.5"], objectives=["<expt>:target:max",
   "<e_form>:target:min"], top=--top, zoo=zoo)`` in this process, timed (it
   reads all rows; each model's σ is its validation RMSE from the card).
5. **One process.** In this same run, on the first ``--one-process-rows``
   (200,000) formulas of the same space (``CompositionSpace.slice``), with
   ``torch.set_num_threads(--one-process-threads)`` (2): ``ZooModel.predict``
   of each of the three models (what a user does without the engine: each
   call featurizes), and, as a reference, the featurize-once path (the
   featurizer once per ``batch_rows`` chunk, ``predict_features`` ×3). One
   untimed warm-up, then ``--repeats`` rounds (3; ``--quick`` 1); medians.
   The ratio is engine rows/s (3 models, written to Parquet) ÷ one-process
   rows/s (3 models, in memory). Rows are ordered by element count, so these
   rows hold all the binaries of the space (98,704 of the full space, 22,610
   of the quick one) and then ternaries; the engine's rows are 99 % ternaries.

``--quick``: ``--rows 1,000,000`` (20 elements, ``max_atoms=19``, 1,008,710
rows), 10 epochs, 1 round; it runs end to end and prints an estimate of the
full run's duration (its fixed parts as measured, the engine and the screen
scaled by rows, training by epochs, the one-process part by rounds).

Run::

    .venv/bin/python bench/screen_scale.py            # 10.1M rows, JSON: results/screen_scale.json
    .venv/bin/python bench/screen_scale.py --quick    # 1.0M rows, results/screen_scale_quick.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import threading
import time
from math import comb
from pathlib import Path
from typing import Any

import psutil

# Keep the imports above light: Dask starts its workers with multiprocessing's
# "spawn", which re-imports this file in every worker process.
BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"
if not os.environ.get("XENONSCALE_DATA_DIR") and SHARED_DATA.is_dir():
    os.environ["XENONSCALE_DATA_DIR"] = str(SHARED_DATA)

#: Elements the spaces are made of, first ``k`` of them: anions, then common cations.
POOL = (
    "O", "N", "S", "F", "Li", "Na", "K", "Mg", "Ca", "Sr", "Ba", "Al", "Ga", "In", "Si",
    "Ge", "Sn", "Ti", "Zr", "V", "Nb", "Cr", "Mo", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "B", "P", "Se", "Cl", "Br", "I",
)  # fmt: skip
#: Zoo name → (mirror dataset, constraint, unit): the three screened properties.
MODELS = {
    "scale-expt-gap": ("matbench_expt_gap", "1:3", "eV"),
    "scale-mp-gap": ("matbench_mp_gap", "1:3", "eV"),
    "scale-mp-e-form": ("matbench_mp_e_form", ":-0.5", "eV/atom"),
}
OBJECTIVES = ("scale-expt-gap:target:max", "scale-mp-e-form:target:min")
#: Dask's nanny setting the embedded cluster of ``xenonscale.cluster`` unsets.
TRIM = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
WARMUP_TASKS = 8
MiB = 1 << 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="least rows of the space")
    parser.add_argument("--elements", default=None, help="use these elements (comma list)")
    parser.add_argument("--max-atoms", type=int, default=None, help="fix max_atoms")
    parser.add_argument("--min-elements", type=int, default=2, help="fewest elements (2)")
    parser.add_argument("--max-elements", type=int, default=3, help="most elements (3)")
    parser.add_argument("--max-atoms-cap", type=int, default=30, help="largest max_atoms tried")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument("--memory-limit", default="4GiB", help="per worker (4GiB)")
    parser.add_argument("--partition-rows", type=int, default=100_000, help="rows per task")
    parser.add_argument("--sample-seconds", type=float, default=2.0, help="RSS sampling period")
    parser.add_argument("--flat-tolerance", type=float, default=1.25, help="max/first for flat")
    parser.add_argument("--train-rows", type=int, default=2_000, help="training rows per model")
    parser.add_argument("--max-epochs", type=int, default=40, help="training epochs")
    parser.add_argument("--one-process-rows", type=int, default=200_000, help="rows in 1 process")
    parser.add_argument("--one-process-threads", type=int, default=2, help="torch threads there")
    parser.add_argument("--repeats", type=int, default=3, help="one-process rounds (median)")
    parser.add_argument("--top", type=int, default=1_000, help="candidates kept by screen")
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows, 10 epochs, 1 round")
    parser.add_argument(
        "--workdir", default=None, help="default bench/results/screen_scale[_quick]"
    )
    parser.add_argument("--keep-output", action="store_true", help="keep the Parquet predictions")
    parser.add_argument(
        "--json", default=None, help="default bench/results/screen_scale[_quick].json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = min(args.rows, 1_000_000)
        args.max_epochs = min(args.max_epochs, 10)
        args.repeats = 1
    if min(args.rows, args.workers, args.partition_rows, args.train_rows, args.repeats) < 1:
        parser.error("--rows, --workers, --partition-rows, --train-rows, --repeats: positive")
    suffix = "_quick" if args.quick else ""
    args.workdir = args.workdir or str(BENCH_DIR / "results" / f"screen_scale{suffix}")
    args.json = args.json or str(BENCH_DIR / "results" / f"screen_scale{suffix}.json")
    return args


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and the versions that matter here."""
    from xenonscale.versions import installed_versions

    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "node": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": installed_versions(
            "xenonscale",
            "torch",
            "numpy",
            "pandas",
            "pyarrow",
            "dask",
            "distributed",
            missing="unknown",
        ),
    }


# ---------------------------------------------------------------------------- space
def choose_space(args) -> tuple[tuple[str, ...], int]:
    """The elements and max_atoms: given, or the smallest space of at least ``--rows`` rows."""
    from xenonscale.chem.enumeration import CompositionSpace

    bounds = {"min_elements": args.min_elements, "max_elements": args.max_elements}
    if args.elements and args.max_atoms:
        return tuple(e.strip() for e in args.elements.split(",")), args.max_atoms
    pool = tuple(e.strip() for e in args.elements.split(",")) if args.elements else POOL
    best = None
    caps = [args.max_atoms] if args.max_atoms else range(2, args.max_atoms_cap + 1)
    for atoms in caps:  # the size of the first k elements is Σ_c C(k, c) × counts[c]
        counts = CompositionSpace(pool, atoms, **bounds).counts
        for k in [len(pool)] if args.elements else range(args.max_elements, len(pool) + 1):
            size = sum(comb(k, c) * n for c, n in counts.items())
            if size >= args.rows:
                if best is None or (size, -k) < (best[0], -best[1]):
                    best = (size, k, atoms)
                break
    if best is None:
        raise SystemExit(
            f"no space of {len(pool)} elements, max_atoms ≤ {max(caps)} holds "
            f"{args.rows:,} rows: raise --max-atoms-cap or --max-elements"
        )
    return pool[: best[1]], best[2]


def space_url(elements, max_atoms, args) -> str:
    return (
        f"enumerate:compositions?elements={','.join(elements)}&max_atoms={max_atoms}"
        f"&min_elements={args.min_elements}&max_elements={args.max_elements}"
    )


# ---------------------------------------------------------------------------- models
def train_models(args, client, work: Path) -> tuple[Any, dict[str, Any]]:
    """Three models on ``--train-rows`` samples of the mirror's sets, in a fresh zoo."""
    import pandas as pd

    from xenonscale.datasets import fetch
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows.registration import train_and_register
    from xenonscale.zoo import Zoo

    shutil.rmtree(work / "zoo", ignore_errors=True)
    shutil.rmtree(work / "train", ignore_errors=True)
    (work / "train").mkdir(parents=True)
    zoo = Zoo(work / "zoo")
    spec = FeaturizerSpec.parse("composition", "classic")
    out = {}
    for name, (dataset, _, unit) in MODELS.items():
        started = time.perf_counter()
        frame = pd.read_csv(fetch(dataset))
        sample = frame.sample(min(args.train_rows, len(frame)), random_state=0)
        csv, store = work / "train" / f"{name}.csv", work / "train" / f"{name}.zarr"
        sample[["formula", "target"]].to_csv(csv, index=False)
        featurize_to_store(
            str(csv), str(store), spec, column="formula", client=client, progress=False
        )
        featurized = time.perf_counter() - started
        options = {
            "max_epochs": args.max_epochs,
            "hidden": [64],
            "accelerator": "cpu",
            "progress": False,
            "output": work / "train" / name,
            "units": {"target": unit},
        }
        batch_size, retried = 256, None  # train_model's default batch size
        try:
            result = train_and_register(
                str(store), "target", name=name, zoo=zoo, batch_size=batch_size, **options
            )
        except ValueError as exc:  # a 1-row last batch under batch norm (docstring)
            if "more than 1 value per channel" not in str(exc):
                raise
            retried, batch_size = str(exc), batch_size - 1
            print(f"  {name}: {exc}; retried with batch_size={batch_size}", flush=True)
            result = train_and_register(
                str(store), "target", name=name, zoo=zoo, batch_size=batch_size, **options
            )
        seconds = time.perf_counter() - started
        metrics = {
            split: {
                k: v
                for k, v in (result.metrics.get(split) or {}).items()
                if k in ("mae", "rmse", "r2")
            }
            for split in ("val", "test")
        }
        out[name] = {
            "ref": result.ref,
            "dataset": dataset,
            "rows": len(sample),
            "unit": unit,
            "featurize_s": featurized,
            "train_s": seconds - featurized,
            "seconds": seconds,
            "epochs": len(result.history),
            "batch_size": batch_size,
            "retried_after": retried,
            "metrics": metrics,
        }
        val = metrics["val"]
        print(
            f"  {result.ref}: {len(sample):,} rows of {dataset}, {seconds:.1f} s "
            f"(featurize {featurized:.1f} s), val MAE {val.get('mae', float('nan')):.3f} "
            f"{unit}, RMSE {val.get('rmse', float('nan')):.3f}",
            flush=True,
        )
    return zoo, out


# ---------------------------------------------------------------------------- memory
def worker_rss() -> int:
    """Runs on a worker (``client.run``): its resident set size in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


class Sampler:
    """Every ``seconds``: each worker's RSS (``client.run``), this process's RSS, rows done."""

    def __init__(self, client, done: Path, seconds: float) -> None:
        self.client, self.done, self.seconds = client, done, seconds
        self.names = {addr: f"worker {i}" for i, addr in enumerate(sorted(client.run(os.getpid)))}
        self.me = psutil.Process()
        self.rows: dict[str, int] = {}
        self.samples: list[dict[str, Any]] = []
        self.phase = "predict"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="rss-sampler")

    def rows_done(self) -> int:
        with contextlib.suppress(OSError):
            for path in self.done.glob("*.json"):
                if path.name not in self.rows:
                    with contextlib.suppress(ValueError, OSError, KeyError):
                        self.rows[path.name] = int(json.loads(path.read_text())["rows"])
        return sum(self.rows.values())

    def sample(self) -> None:
        try:
            rss = {self.names.get(a, a): v for a, v in self.client.run(worker_rss).items()}
        except Exception as exc:  # a lost worker: a finding, not a crash
            rss = {"error": repr(exc)}
        self.samples.append(
            {
                "seconds": round(time.perf_counter() - self.t0, 2),
                "phase": self.phase,
                "rows_done": self.rows_done(),
                "client": self.me.memory_info().rss,
                "workers": rss,
            }
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds):
            self.sample()

    def __enter__(self) -> Sampler:
        self.t0 = time.perf_counter()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def summary(self, workers: int, partition_rows: int, tolerance: float) -> dict[str, Any]:
        import numpy as np

        samples = [s for s in self.samples if s["phase"] == "predict"]
        settled = next(
            (i for i, s in enumerate(samples) if s["rows_done"] >= workers * partition_rows), None
        )
        per_worker = {}
        for name in self.names.values():
            series = [(i, s["rows_done"], s["workers"].get(name)) for i, s in enumerate(samples)]
            series = [(i, r, v) for i, r, v in series if isinstance(v, int)]
            values = [v for _, _, v in series]
            out: dict[str, Any] = {"before": values[0], "max_all": max(values)}
            head = [v for i, _, v in series if settled is not None and i <= settled]
            rest = [(r, v) for i, r, v in series if settled is not None and i > settled]
            if head and rest:
                first, late = max(head), [v for _, v in rest]
                out |= {
                    "first": first,
                    "median": statistics.median(late),
                    "max": max(late),
                    "max_over_first": max(late) / first,
                }
                if len(rest) >= 3 and len({r for r, _ in rest}) >= 2:
                    r, v = np.array(rest, dtype=float).T
                    out["slope_mib_per_million_rows"] = float(np.polyfit(r / 1e6, v / MiB, 1)[0])
            per_worker[name] = out
        ratios = [w["max_over_first"] for w in per_worker.values() if "max_over_first" in w]
        return {
            "samples": len(samples),
            "sample_seconds": self.seconds,
            "settled_at_seconds": None if settled is None else samples[settled]["seconds"],
            "workers": per_worker,
            "max_over_first": max(ratios) if ratios else None,
            "flat": (max(ratios) <= tolerance) if ratios else None,
            "client_max_predict": max(s["client"] for s in samples),
            "client_max_screen": max(
                (s["client"] for s in self.samples if s["phase"] == "screen"), default=None
            ),
        }


def cpu_seconds(procs) -> float:
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system
    return total


def busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


# ---------------------------------------------------------------------------- one process
def one_process(args, zoo, space) -> tuple[dict[str, list[float]], int]:
    """``ZooModel.predict`` ×3 and featurize-once + ``predict_features`` ×3, in this process."""
    import gc

    import numpy as np
    import torch

    from xenonscale.featurize.base import featurize_safely

    torch.set_num_threads(args.one_process_threads)
    rows = min(args.one_process_rows, space.size)
    formulas = space.slice(0, rows)[1]
    models = [zoo.load(name) for name in MODELS]

    def zoo_predict() -> None:
        for model in models:
            frame = model.predict(formulas)
            assert len(frame) == rows

    def featurize_once() -> None:
        step = models[0].batch_rows
        for start in range(0, rows, step):
            batch = featurize_safely(models[0].featurizer, formulas[start : start + step])
            ok = np.asarray(batch.ok, dtype=bool)
            x = np.asarray(batch.values, dtype=np.float32)[ok]
            for model in models:
                model.predict_features(x)

    methods = {
        "one process: ZooModel.predict ×3": zoo_predict,
        "one process: featurize once + predict_features ×3": featurize_once,
    }
    for model in models:  # warm-up: imports, tables, first torch calls
        model.predict(formulas[:2_000])
    times: dict[str, list[float]] = {}
    for round_ in range(args.repeats):
        for name, method in methods.items():
            gc.collect()
            started = time.perf_counter()
            method()
            seconds = time.perf_counter() - started
            times.setdefault(name, []).append(seconds)
            print(
                f"  round {round_ + 1}: {name}: {seconds:.2f} s ({rows / seconds:,.0f} rows/s)",
                flush=True,
            )
    return times, rows


# ---------------------------------------------------------------------------- report
def mib(value) -> str:
    return "-" if value is None else f"{value / MiB:,.0f}"


def estimate(results: dict[str, Any], args) -> dict[str, Any]:
    """The full run's duration from this one: fixed parts as measured, the rest scaled."""
    full = parse_args(["--workdir", args.workdir, "--json", args.json])
    full_elements, full_atoms = choose_space(full)
    from xenonscale.chem.enumeration import CompositionSpace

    full_rows = CompositionSpace(
        full_elements, full_atoms, min_elements=full.min_elements, max_elements=full.max_elements
    ).size
    s = results["seconds"]
    scale = full_rows / results["space"]["rows"]
    parts = {
        "setup (space, cluster, warm-up)": s["space"] + s["cluster"] + s["warmup"],
        "training (× epochs)": s["training"] * full.max_epochs / args.max_epochs,
        "engine predict (× rows)": s["predict"] * scale,
        "screen (× rows)": s["screen"] * scale,
        "one process (× rounds)": s["one_process"] * full.repeats / args.repeats,
    }
    return {
        "full_rows": full_rows,
        "rows_scale": scale,
        "parts_s": parts,
        "total_s": sum(parts.values()) + s.get("other", 0.0),
    }


def report(results: dict[str, Any]) -> None:
    m, sp = results["machine"], results["space"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, {m['memory'] / (1 << 30):.1f} GiB, "
        f"Python {m['python']}; load average before {results['load_before'][0]:.2f}, "
        f"after {results['load_after'][0]:.2f}"
    )
    print(
        f"space: {sp['url']}\n  {sp['rows']:,} rows: every reduced formula with "
        f"{sp['min_elements']}-{sp['max_elements']} of these {len(sp['elements'])} elements "
        f"and at most {sp['max_atoms']} atoms per formula unit, no charge filter; "
        f"first {sp['first']}, last {sp['last']}"
    )
    print(
        f"models: {', '.join(results['models'])}; distinct featurizers of their cards: "
        f"{results['featurizers']['distinct']} (predict_to_store featurizes each partition "
        f"once per distinct featurizer)"
    )
    rows_width = max(len(f"{r['rows']:,}") for r in results["methods"].values())
    print(
        f"\n{'method':<52} {'rows':>{rows_width}} {'seconds':>9} {'rows/s':>10} {'× 1 process':>12}"
    )
    for name, r in results["methods"].items():
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}"
        print(
            f"{name:<52} {r['rows']:>{rows_width},} {r['median_s']:>9.2f} "
            f"{r['rows_per_s']:>10,.0f} {ratio:>12}"
        )
    e = results["engine"]
    print(
        f"(× 1 process: ÷ ZooModel.predict ×3 rows/s; engine: {e['partitions']} tasks of "
        f"{results['settings']['partition_rows']:,} rows, {e['predicted']:,} predicted, "
        f"{e['errors']:,} errors, Parquet {e['parquet_bytes'] / MiB:,.0f} MiB; CPU: ours "
        f"{e['cpu_ours_s']:.0f} s, other processes {e['cpu_others_s']:.0f} s of "
        f"{e['cpu_capacity_s']:.0f} s)"
    )
    mem = results["memory"]
    print(
        f"\nworker RSS (MiB), {mem['samples']} samples every {mem['sample_seconds']} s; first = "
        f"peak until {results['settings']['workers']} partitions were done "
        f"({mem['settled_at_seconds']} s)"
    )
    print(
        f"{'worker':<10}{'before':>8}{'first':>8}{'median':>8}{'max':>8}{'max/first':>11}"
        f"{'MiB per M rows':>16}"
    )
    for name, w in mem["workers"].items():
        ratio = w.get("max_over_first")
        slope = w.get("slope_mib_per_million_rows")
        print(
            f"{name:<10}{mib(w['before']):>8}{mib(w.get('first')):>8}{mib(w.get('median')):>8}"
            f"{mib(w.get('max')):>8}{'-' if ratio is None else f'{ratio:.2f}':>11}"
            f"{'-' if slope is None else f'{slope:+.1f}':>16}"
        )
    flat = {True: "yes", False: "NO", None: "-"}[mem["flat"]]
    print(
        f"flat (max/first ≤ {results['settings']['flat_tolerance']}): {flat}; same worker PIDs "
        f"before and after: {results['engine']['same_workers']}; client peak RSS "
        f"{mib(mem['client_max_predict'])} MiB (predict), {mib(mem['client_max_screen'])} MiB "
        f"(screen)"
    )
    sc = results["screen"]
    print(f"\nscreen: {sc['counts']}; σ from {sc['std_source']}")
    for row in sc["top"][:5]:
        print(
            f"  #{row['rank']} {row['id']}: "
            + ", ".join(
                f"{k.split(':')[0]} {v:.2f}" for k, v in row.items() if k.endswith(":target")
            )
            + f", p {row['probability']:.3f}"
        )
    s = results["seconds"]
    print(
        f"\nwall: {s['total']:.0f} s (training {s['training']:.0f} s, engine {s['predict']:.1f} s, "
        f"screen {s['screen']:.1f} s, one process {s['one_process']:.0f} s)"
    )
    if "estimate_full" in results:
        est = results["estimate_full"]
        print(
            f"estimated full run ({est['full_rows']:,} rows, defaults): "
            f"~{est['total_s'] / 60:.1f} min, of which engine "
            f"~{est['parts_s']['engine predict (× rows)'] / 60:.1f} min "
            "(from this run's rates; the machine's other load changes it)"
        )


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import logging
    import warnings

    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    total_started = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    results: dict[str, Any] = {
        "bench": "screen_scale",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "load_before": os.getloadavg(),
    }

    started = time.perf_counter()
    from xenonscale.chem.enumeration import CompositionSpace

    elements, max_atoms = choose_space(args)
    space = CompositionSpace(
        elements, max_atoms, min_elements=args.min_elements, max_elements=args.max_elements
    )
    url = space_url(elements, max_atoms, args)
    results["space"] = {
        "url": url,
        "rows": space.size,
        "elements": list(space.elements),
        "max_atoms": max_atoms,
        "min_elements": args.min_elements,
        "max_elements": args.max_elements,
        "per_element_count": {c: comb(len(elements), c) * n for c, n in space.counts.items()},
        "first": space.slice(0, 1)[1][0],
        "last": space.slice(space.size - 1, space.size)[1][0],
        "enumeration": "CompositionSpace: every reduced formula (integer amounts, gcd 1) over "
        "the elements with min..max distinct elements and at most max_atoms atoms per formula "
        "unit, no charge filter; rows ordered by element count, element set, atoms, amounts",
    }
    seconds["space"] = time.perf_counter() - started
    print(
        f"space: {url}\n  {space!r}; rows by element count {results['space']['per_element_count']}",
        flush=True,
    )

    import dask
    from distributed import Client, LocalCluster

    from xenonscale.workflows.prediction import predict_to_store
    from xenonscale.workflows.screening import screen

    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        with dask.config.set(TRIM):
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=args.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    memory_limit=args.memory_limit,
                    host="127.0.0.1",
                )
            )
        client = stack.enter_context(Client(cluster))
        client.wait_for_workers(args.workers)
        seconds["cluster"] = time.perf_counter() - started

        print(
            f"training {len(MODELS)} models ({args.train_rows:,} rows each, "
            f"{args.max_epochs} epochs, hidden [64]) ...",
            flush=True,
        )
        started = time.perf_counter()
        zoo, trained = train_models(args, client, work)
        stack.callback(zoo.close)
        seconds["training"] = time.perf_counter() - started
        results["models"] = trained
        keys = {
            json.dumps(zoo.show(t["ref"]).get("featurizer"), sort_keys=True)
            for t in trained.values()
        }
        results["featurizers"] = {"distinct": len(keys), "cards": sorted(keys)}
        refs = [t["ref"] for t in trained.values()]

        started = time.perf_counter()  # warm-up: imports and the three models in each worker
        small = CompositionSpace(
            elements, 4, min_elements=args.min_elements, max_elements=args.max_elements
        )
        warm = work / "warmup.parquet"
        shutil.rmtree(warm, ignore_errors=True)
        predict_to_store(
            refs,
            space_url(elements, 4, args),
            str(warm),
            zoo=zoo,
            client=client,
            partition_rows=max(1, -(-small.size // WARMUP_TASKS)),
            progress=False,
        )
        shutil.rmtree(warm, ignore_errors=True)
        seconds["warmup"] = time.perf_counter() - started

        out = work / "predictions.parquet"
        shutil.rmtree(out, ignore_errors=True)
        pids = client.run(os.getpid)
        ours = [psutil.Process(), *psutil.Process().children(recursive=True)]
        cpu0, busy0 = cpu_seconds(ours), busy_seconds()
        print(
            f"engine: predict_to_store of {len(refs)} models over {space.size:,} rows on "
            f"{args.workers} workers (load average {os.getloadavg()[0]:.2f}) ...",
            flush=True,
        )
        with Sampler(client, out / "_xenonscale" / "done", args.sample_seconds) as sampler:
            started = time.perf_counter()
            summary = predict_to_store(
                refs,
                url,
                str(out),
                zoo=zoo,
                client=client,
                partition_rows=args.partition_rows,
                progress=False,
            )
            seconds["predict"] = time.perf_counter() - started
            wall = time.perf_counter() - started
            cpu1, busy1 = cpu_seconds(ours), busy_seconds()
            print(
                f"  {seconds['predict']:.1f} s, {summary.rows / seconds['predict']:,.0f} rows/s, "
                f"{summary.errors:,} errors",
                flush=True,
            )
            sampler.phase = "screen"
            print("screen ...", flush=True)
            started = time.perf_counter()
            targets = [f"{name}:target={bounds}" for name, (_, bounds, _) in MODELS.items()]
            screened = screen(str(out), targets, objectives=list(OBJECTIVES), top=args.top, zoo=zoo)
            seconds["screen"] = time.perf_counter() - started
            print(f"  {seconds['screen']:.1f} s, {screened.counts}", flush=True)
        same = client.run(os.getpid) == pids
        parquet = sum(p.stat().st_size for p in out.glob("part-*.parquet"))
        results["engine"] = {
            "rows": summary.rows,
            "predicted": summary.predicted,
            "errors": summary.errors,
            "partitions": summary.partitions,
            "summary_seconds": summary.seconds,
            "parquet_bytes": parquet,
            "same_workers": same,
            "cpu_ours_s": cpu1 - cpu0,
            "cpu_others_s": max(0.0, (busy1 - busy0) - (cpu1 - cpu0)),
            "cpu_capacity_s": wall * (psutil.cpu_count() or 1),
        }
        assert summary.rows == space.size, (summary.rows, space.size)
        results["memory"] = sampler.summary(args.workers, args.partition_rows, args.flat_tolerance)
        results["timeline"] = sampler.samples
        top = screened.frame.head(20)
        results["screen"] = {
            "targets": targets,
            "objectives": list(OBJECTIVES),
            "counts": screened.counts,
            "std_source": screened.std_source,
            "top": json.loads(
                top.drop(columns=["error"], errors="ignore").to_json(orient="records")
            ),
        }
        del screened, top
        if not args.keep_output:
            shutil.rmtree(out, ignore_errors=True)

        print(
            f"one process: {args.one_process_rows:,} formulas (first rows of the space), "
            f"{args.one_process_threads} torch threads ...",
            flush=True,
        )
        started = time.perf_counter()
        times, one_rows = one_process(args, zoo, space)
        seconds["one_process"] = time.perf_counter() - started

    methods: dict[str, dict[str, Any]] = {
        f"engine: predict_to_store ×3, {args.workers} workers": {
            "rows": summary.rows,
            "seconds": [seconds["predict"]],
        },
    }
    for name, runs in times.items():
        methods[name] = {"rows": one_rows, "seconds": runs}
    methods["screen (read Parquet, rank, Pareto), 1 process"] = {
        "rows": summary.rows,
        "seconds": [seconds["screen"]],
    }
    for entry in methods.values():
        entry["median_s"] = statistics.median(entry["seconds"])
        entry["rows_per_s"] = entry["rows"] / entry["median_s"]
    base = methods["one process: ZooModel.predict ×3"]["rows_per_s"]
    for name, entry in methods.items():
        entry["ratio"] = None if name.startswith("screen") else entry["rows_per_s"] / base
    results["methods"] = methods
    results["engine_over_one_process"] = methods[next(iter(methods))]["ratio"]
    results["load_after"] = os.getloadavg()
    seconds["total"] = time.perf_counter() - total_started
    seconds["other"] = seconds["total"] - sum(
        seconds[k]
        for k in ("space", "cluster", "training", "warmup", "predict", "screen", "one_process")
    )
    results["seconds"] = seconds
    if args.quick:
        results["estimate_full"] = estimate(results, args)
    report(results)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\nwrote {path}")
    return results


if __name__ == "__main__":
    main()
