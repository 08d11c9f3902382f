"""Molecule featurizers: xenonscale side by side with XenonPy 0.6.7 and a bare RDKit loop.

Two parts (``--part micro``, ``--part scale`` or both, the default; the scale
run goes first so that the peers' imports do not count as client memory):

**micro**: per-molecule cost of each registered molecule featurizer
(``ecfp``, ``fcfp``, ``maccs``, ``atompair``, ``torsion``, ``rdkitfp``,
``layered``, ``pattern``, ``rdkit`` descriptors), in one process, on the same
seeded random sample of real MOSES SMILES (``--rows``, default 2,000;
``--descriptor-rows`` for the slow descriptors), always **from SMILES
strings, parsing included**:

* **xenonscale**: ``featurizer.featurize_batch(smiles)`` → ``float32[n, d]``
  matrix, ``ok`` and per-row errors (what the engine calls);
* **XenonPy 0.6.7**: its class of the same name (``ECFP``, ...,
  ``DescriptorFeature``) with ``n_jobs=1, input_type='smiles'``,
  ``transform(smiles, return_type='array')``, RDKit's logs blocked (XenonPy
  calls RDKit's deprecated functions, which log a warning per molecule). It
  runs in the peer environment (``.venv-peers``), one long-lived interpreter
  called through :class:`xenonscale.testing.peers.PeerEnvironment`; its wall
  and CPU seconds are measured in that process around ``transform`` only (no
  transfer of SMILES or matrices is counted against it);
* **bare RDKit**: the plain loop
  ``for smi in smiles: mol = MolFromSmiles(smi); fp = gen.GetFingerprintAsNumPy(mol)``
  with the same RDKit call xenonscale makes (for MACCS/pattern/layered the
  bit-vector function, for descriptors ``Descriptors.CalcMolDescriptors``).
  It keeps nothing: no matrix, no error handling, so it is a floor.

One warm-up call of every case, then ``--repeats`` interleaved rounds (one
call of each case per round, garbage collected before each; XenonPy's is one
peer call with ``repeats=1``, so ours and theirs alternate); medians of wall
time (``perf_counter``) and of the timed process's CPU time (``process_time``,
steadier on a shared machine; XenonPy's is the peer process's). Goals: ≥ 2×
XenonPy and within 20 % of the bare loop. The bench also checks that
xenonscale's matrix equals XenonPy's output (of the warm-up call) on the
sample, bit for bit.

**scale**: the full MOSES training set (1,584,663 SMILES,
``molecules/moses_train.csv.gz``) through the engine:
``xenonscale.cluster.get_client(workers=2)`` + ``featurize_to_store(...,
FeaturizerSpec.parse("molecule", "ecfp"))`` into ``--workdir`` (default
``bench/results/``, git-ignored). Reports rows/s, peak RSS of the client and
of each worker (psutil, polled every 0.2 s, with
``bench/featurize_scale.py``'s sampler), CPU per row, store size on disk and
free disk. Checks: counts add up, the store is complete, ``--check-rows`` rows
(first, last, random) are bit-identical to the in-memory featurizer. The
store is deleted after the check unless ``--keep``.

Run::

    .venv/bin/python bench/molecules.py --part micro
    .venv/bin/python bench/molecules.py --part scale --json bench/results/molecules_scale.json
    .venv/bin/python bench/molecules.py --json bench/results/molecules.json     # both
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Keep module-level imports light: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
SHARED_DATA = BENCH_DIR.parent.parent / "shared" / "data"
if not os.environ.get("XENONSCALE_DATA_DIR") and SHARED_DATA.is_dir():
    os.environ["XENONSCALE_DATA_DIR"] = str(SHARED_DATA)

NAMES = ("ecfp", "fcfp", "maccs", "atompair", "torsion", "rdkitfp", "layered", "pattern", "rdkit")
XENONPY = {
    "ecfp": "ECFP",
    "fcfp": "FCFP",
    "maccs": "MACCS",
    "atompair": "AtomPairFP",
    "torsion": "TopologicalTorsionFP",
    "rdkitfp": "RDKitFP",
    "layered": "LayeredFP",
    "pattern": "PatternFP",
    "rdkit": "DescriptorFeature",
}
DATASET = "moses_train"
GIB = 1 << 30
MIB = 1 << 20


def helpers(name: str) -> Any:
    """A sibling bench module (``compositions`` for ``machine``, ``featurize_scale`` for RSS)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


# ---------------------------------------------------------------------- micro
def bare_call(name: str) -> Callable[[Any], Any]:
    """The RDKit call xenonscale makes per molecule for ``name`` (XenonPy's defaults)."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors, rdMolDescriptors
    from rdkit.Chem import rdFingerprintGenerator as fpgen

    generators = {
        "ecfp": lambda: fpgen.GetMorganGenerator(radius=3, fpSize=2048),
        "fcfp": lambda: fpgen.GetMorganGenerator(
            radius=3, fpSize=2048, atomInvariantsGenerator=fpgen.GetMorganFeatureAtomInvGen()
        ),
        "atompair": lambda: fpgen.GetAtomPairGenerator(fpSize=2048),
        "torsion": lambda: fpgen.GetTopologicalTorsionGenerator(fpSize=2048),
        "rdkitfp": lambda: fpgen.GetRDKitFPGenerator(fpSize=2048),
    }
    if name in generators:
        return generators[name]().GetFingerprintAsNumPy
    return {
        "maccs": rdMolDescriptors.GetMACCSKeysFingerprint,
        "layered": lambda mol: Chem.LayeredFingerprint(mol, fpSize=2048),
        "pattern": lambda mol: Chem.PatternFingerprint(mol, fpSize=2048),
        "rdkit": Descriptors.CalcMolDescriptors,
    }[name]


def bare_loop(smiles: Sequence[str], call: Callable[[Any], Any]) -> None:
    from rdkit.Chem import MolFromSmiles

    for smi in smiles:
        mol = MolFromSmiles(smi)
        fp = call(mol)  # noqa: F841  (the baseline keeps nothing)


@dataclass
class Peer:
    """A case timed in the peer process: ``fn(values)`` → ``(output, wall s, cpu s)``.

    ``values`` false: the output is not wanted (a timed round), none comes back.
    """

    fn: Callable[[bool], tuple[Any, float, float]]


def run_xenonpy(
    peers: Any, cls: str, smiles: Sequence[str], elements_csv: str, values: bool
) -> tuple[np.ndarray | None, float, float]:
    """XenonPy's ``cls(n_jobs=1, input_type="smiles", on_errors="raise").transform(smiles,
    return_type="array")`` in the peer environment, once; the peer's wall and CPU seconds."""
    answer = peers.call(
        "xenonpy_molecules_array",
        cls=cls,
        smiles=list(smiles),
        input_type="smiles",
        on_errors="raise",
        elements_csv=elements_csv,
        values=values,
        repeats=1,
    )
    times = answer["result"]["times"]
    return answer.get("array"), times["wall_s"][0], times["cpu_s"][0]


def measure(cases: dict[str, Callable[[], Any] | Peer], repeats: int) -> tuple[dict, dict]:
    """Warm-up, then ``repeats`` interleaved rounds; ``{case: [(wall s, cpu s), ...]}``.

    A :class:`Peer` case reports the seconds its own process measured around
    the peer's call; the others are timed here. The outputs are the warm-up's.
    """
    outputs = {key: fn.fn(True)[0] if isinstance(fn, Peer) else fn() for key, fn in cases.items()}
    seconds: dict[str, list[tuple[float, float]]] = {key: [] for key in cases}
    for _ in range(repeats):
        for key, fn in cases.items():
            gc.collect()
            if isinstance(fn, Peer):
                _, wall, cpu = fn.fn(False)
            else:
                wall, cpu = time.perf_counter(), time.process_time()
                fn()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            seconds[key].append((wall, cpu))
    return seconds, outputs


def run_micro(args: argparse.Namespace, peers: Any) -> dict[str, Any]:
    from xenonscale import datasets
    from xenonscale.featurize.registry import FeaturizerSpec

    frame = datasets.load(DATASET)
    rows = max(args.rows, args.descriptor_rows)
    drawn = frame["SMILES"].sample(n=rows, random_state=args.seed).tolist()
    elements_csv = str(datasets.fetch("xenonpy58"))  # XenonPy's element table (peer side)
    results = []
    for name in args.featurizers:
        smiles = drawn[: args.descriptor_rows if name == "rdkit" else args.rows]
        ours = FeaturizerSpec.parse("molecule", name).build()
        call = bare_call(name)
        cases = {
            "xenonscale": lambda ours=ours, smiles=smiles: ours.featurize_batch(smiles),
            "XenonPy 0.6.7": Peer(
                lambda values, cls=XENONPY[name], smiles=smiles: run_xenonpy(
                    peers, cls, smiles, elements_csv, values
                )
            ),
            "bare RDKit loop": lambda call=call, smiles=smiles: bare_loop(smiles, call),
        }
        load = os.getloadavg()[0]
        seconds, outputs = measure(cases, args.repeats)
        batch, theirs = outputs["xenonscale"], outputs["XenonPy 0.6.7"]
        number = np.isfinite(theirs) & (theirs != -666)  # XenonPy's marker of a failed descriptor
        entry = {
            "name": name,
            "class": type(ours).__name__,
            "features": len(ours.labels),
            "rows": len(smiles),
            "failed_rows": int((~batch.ok).sum()),
            "identical_to_xenonpy": bool(np.array_equal(batch.values[number], theirs[number])),
            "xenonpy_cells_not_numbers": int((~number).sum()),
            "loadavg_1min": load,
            "tools": {},
        }
        for tool, runs in seconds.items():
            wall = np.array([w for w, _ in runs]) / len(smiles) * 1e6
            cpu = np.array([c for _, c in runs]) / len(smiles) * 1e6
            entry["tools"][tool] = {
                "median_us": float(np.median(wall)),
                "min_us": float(wall.min()),
                "median_cpu_us": float(np.median(cpu)),
                "per_second": float(1e6 / np.median(wall)),
                "wall_us": wall.tolist(),
                "cpu_us": cpu.tolist(),
            }
        tools = entry["tools"]
        ours_t, xpy_t, bare_t = (
            tools[k] for k in ("xenonscale", "XenonPy 0.6.7", "bare RDKit loop")
        )
        for key in ("median_us", "median_cpu_us"):
            entry[f"xenonpy_over_ours_{key}"] = xpy_t[key] / ours_t[key]
            entry[f"ours_over_bare_{key}"] = ours_t[key] / bare_t[key]
        results.append(entry)
        print(
            f"  {name:9s} {len(smiles):5d} rows: xenonscale {tools['xenonscale']['median_us']:8.1f}"
            f" µs, XenonPy {tools['XenonPy 0.6.7']['median_us']:8.1f} µs, bare "
            f"{tools['bare RDKit loop']['median_us']:8.1f} µs  (wall medians; identical: "
            f"{entry['identical_to_xenonpy']})"
        )
    return {
        "sample": {"dataset": DATASET, "rows": rows, "seed": args.seed},
        "xenonpy_timing": "peer process (.venv-peers), around transform only, repeats=1 per round",
        "results": results,
    }


# ---------------------------------------------------------------------- scale
def run_scale(args: argparse.Namespace) -> dict[str, Any]:
    from xenonscale import datasets
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    scale = helpers("featurize_scale")
    spec = FeaturizerSpec.parse("molecule", args.scale_featurizers)
    source = datasets.fetch(DATASET)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    store = workdir / f"molecules_{DATASET}_{args.scale_featurizers.replace(',', '_')}.zarr"
    free_before = shutil.disk_usage(workdir).free
    gc.collect()
    load_before = os.getloadavg()
    started = time.perf_counter()
    client = get_client(workers=args.workers)
    cluster_seconds = time.perf_counter() - started
    try:
        client.wait_for_workers(args.workers)
        pids = client.run(os.getpid)
        with scale.Sampler(pids) as sampler:
            t0 = time.perf_counter()
            summary = featurize_to_store(
                str(source),
                str(store),
                spec,
                column="SMILES",
                client=client,
                chunk_rows=args.chunk_rows,
                partition_rows=args.partition_rows,
                overwrite=True,
                progress=not args.no_progress,
            )
            seconds = time.perf_counter() - t0
    finally:
        close_client(client)
    allocated, apparent, files = scale.disk_usage(store)
    workers = {k: v for k, v in sampler.peak.items() if k.startswith("worker")}
    worker_cpu = [v for k, v in sampler.cpu_used().items() if k.startswith("worker")]
    result = {
        "source": str(source),
        "spec": spec.to_dict(),
        "store": str(store),
        "rows": summary.rows,
        "featurized": summary.featurized,
        "errors": summary.errors,
        "features": len(spec.build().labels),
        "partitions": summary.partitions,
        "seconds": seconds,
        "rows_per_second": summary.rows / seconds,
        "cluster_start_seconds": cluster_seconds,
        "workers": args.workers,
        "chunk_rows": args.chunk_rows,
        "partition_rows": args.partition_rows,
        "rss_before": sampler.baseline,
        "rss_peak": sampler.peak,
        "client_peak_rss": sampler.peak["client"],
        "max_worker_peak_rss": max(workers.values()),
        "worker_cpu_us_per_row": sum(c["user"] + c["system"] for c in worker_cpu)
        / summary.rows
        * 1e6,
        "machine_cpu": sampler.machine_cpu(),
        "store_bytes_on_disk": allocated,
        "store_bytes_apparent": apparent,
        "store_files": files,
        "uncompressed_feature_bytes": summary.rows * len(spec.build().labels) * 4,
        "disk_free_before": free_before,
        "disk_free_after": shutil.disk_usage(workdir).free,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    result["check"] = check_store(result, spec, args)
    if not args.keep:
        shutil.rmtree(store, ignore_errors=True)
        result["store_deleted"] = True
    return result


def check_store(result: dict[str, Any], spec: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Counts add up; ``--check-rows`` rows equal the in-memory featurizer bit for bit."""
    import pandas as pd
    import xarray as xr

    import xenonscale

    ds = xr.open_zarr(result["store"])
    errors = xenonscale.read_errors(result["store"])
    rows = result["rows"]
    ok_count = int(ds["ok"].sum().compute())
    smiles = pd.read_csv(result["source"], usecols=["SMILES"]).SMILES
    rng = np.random.default_rng(args.seed)
    picks = sorted({0, rows - 1, *rng.integers(0, rows, max(0, args.check_rows - 2)).tolist()})
    expected = spec.build().featurize_batch(smiles.iloc[picks].tolist())
    stored = ds["features"].isel(sample=picks).values
    check = {
        "samples": int(ds.sizes["sample"]),
        "complete": bool(ds.attrs.get("complete")),
        "counts_add_up": ok_count + len(errors) == rows == len(smiles),
        "checked_rows": len(picks),
        "features_bit_identical": bool(
            stored.dtype == np.float32
            and np.array_equal(
                stored.view(np.uint32), expected.values.astype(np.float32).view(np.uint32)
            )
        ),
        "inputs_equal": ds["input"].isel(sample=picks).values.tolist()
        == smiles.iloc[picks].tolist(),
    }
    check["passed"] = all(v for k, v in check.items() if k not in ("samples", "checked_rows"))
    return check


# --------------------------------------------------------------------- report
def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\n{results['date']}  {m['cpu']} ({m['cpu_count']} CPUs), Python {m['python']}")
    print("  ".join(f"{k} {v}" for k, v in m["versions"].items()))
    if "peer_versions" in m:
        peers = "  ".join(f"{k} {v}" for k, v in m["peer_versions"].items())
        print(f"peer environment (XenonPy timed there): {peers}")
    if "micro" in results:
        header = (
            f"{'featurizer':<10}{'rows':>6}{'xenonscale µs':>15}{'XenonPy µs':>12}{'bare µs':>10}"
            f"{'XenonPy/ours':>14}{'ours/bare':>11}{'(CPU)':>8}{'same bits':>11}"
        )
        print("\nper molecule, from SMILES, medians of wall time (CPU-time ratio in brackets)")
        print(header + "\n" + "-" * len(header))
        for r in results["micro"]["results"]:
            ours, xpy, bare = (
                r["tools"][k] for k in ("xenonscale", "XenonPy 0.6.7", "bare RDKit loop")
            )
            print(
                f"{r['name']:<10}{r['rows']:>6}{ours['median_us']:>15.1f}"
                f"{xpy['median_us']:>12.1f}{bare['median_us']:>10.1f}"
                f"{r['xenonpy_over_ours_median_us']:>13.2f}x"
                f"{r['ours_over_bare_median_us']:>11.2f}"
                f"{r['ours_over_bare_median_cpu_us']:>8.2f}{r['identical_to_xenonpy']!s:>11}"
            )
    if "scale" in results:
        s = results["scale"]
        print(
            f"\nscale: {s['rows']:,} MOSES SMILES → {s['features']} features on {s['workers']} "
            f"workers: {s['seconds']:.1f} s, {s['rows_per_second']:,.0f} rows/s; "
            f"{s['featurized']:,} featurized + {s['errors']:,} errors"
        )
        peaks = ", ".join(f"{k} {v / MIB:,.0f} MiB" for k, v in s["rss_peak"].items())
        print(f"  peak RSS: {peaks}")
        print(
            f"  store: {s['store_bytes_on_disk'] / GIB:.2f} GiB on disk ({s['store_files']} files; "
            f"{s['uncompressed_feature_bytes'] / GIB:.1f} GiB of float32 uncompressed); "
            f"worker CPU {s['worker_cpu_us_per_row']:.0f} µs/row; others used "
            f"{s['machine_cpu']['other_share']:.0%} of the machine; check: {s['check']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("micro", "scale", "all"), default="all")
    parser.add_argument("--rows", type=int, default=2000, help="SMILES per fingerprint timing")
    parser.add_argument("--descriptor-rows", type=int, default=300, help="rows for descriptors")
    parser.add_argument("--repeats", type=int, default=5, help="timed interleaved rounds")
    parser.add_argument("--seed", type=int, default=0, help="sample seed")
    parser.add_argument(
        "--featurizers", default=",".join(NAMES), help=f"micro: comma list of {', '.join(NAMES)}"
    )
    parser.add_argument("--scale-featurizers", default="ecfp", help="scale: registered names")
    parser.add_argument("--workers", type=int, default=2, help="scale: worker processes")
    parser.add_argument("--chunk-rows", type=int, default=10_000, help="scale: Zarr chunk rows")
    parser.add_argument("--partition-rows", type=int, default=50_000, help="scale: rows/task")
    parser.add_argument("--check-rows", type=int, default=64, help="scale: rows compared")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"), help="scale: stores")
    parser.add_argument("--keep", action="store_true", help="scale: keep the store")
    parser.add_argument("--no-progress", action="store_true", help="scale: no progress bar")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    args.featurizers = [n.strip() for n in args.featurizers.split(",") if n.strip()]
    unknown = sorted(set(args.featurizers) - set(NAMES))
    if unknown:
        parser.error(f"--featurizers: unknown {unknown}; choose from {', '.join(NAMES)}")
    if min(args.rows, args.descriptor_rows, args.repeats, args.workers) < 1:
        parser.error("--rows, --descriptor-rows, --repeats and --workers must be positive")

    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }
    common = helpers("compositions")
    with contextlib.ExitStack() as stack:
        if args.part in ("scale", "all"):
            print(f"scale: {DATASET} through the engine on {args.workers} workers ...")
            results["scale"] = run_scale(args)
        peers = None
        if args.part in ("micro", "all"):
            from xenonscale.testing.peers import PeerEnvironment

            peers = stack.enter_context(PeerEnvironment())  # XenonPy's own interpreter
            print(f"micro: {args.repeats} interleaved rounds after a warm-up ...")
            results["micro"] = run_micro(args, peers)
        results["machine"] = common.machine(extra=("rdkit", "dask", "zarr"), peers=peers)
    report(results)
    common.write_results(results, args.json)
    failed = "scale" in results and not results["scale"]["check"]["passed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
