"""matminer through xenonscale's engine next to matminer's own ``featurize_many(n_jobs=2)``.

(a) **Same structures, same cores, same run.** The 1,265 real structures of
    Matbench phonons (pymatgen dicts) are featurized by one matminer
    featurizer (default ``XRDPowderPattern(two_theta_range=(0, 127),
    pattern_length=128)``, ~30 ms a structure, 128 features):

    * **engine**: ``featurize_to_store`` of a JSON Lines file with the spec
      ``matminer:<SPEC>`` on an embedded cluster of ``--workers`` worker
      processes (``get_client``), ``--partition-rows`` rows a task, each
      worker's sidecar (matminer's own interpreter, :mod:`xenonscale.featurize.matminer`)
      started by an untimed warm-up job; timed from the call to the finished
      store (reading, JSON to and from the sidecar, writing Zarr included);
    * **matminer**: ``featurize_many(structures, ignore_errors=True)`` with
      ``set_n_jobs(--workers)`` (its multiprocessing pool) in the peers'
      environment (``.venv-peers``), timed there around that call only
      (structures rebuilt from dicts before the clock starts).

    ``--repeats`` interleaved rounds (one of each per round), medians; the
    ratio is matminer's median over the engine's (above 1: the engine is
    faster). The stored features are compared with matminer's (float32, bit
    for bit on the rows both featurized). The first engine job, sidecars
    starting, is reported as the cold time.

(b) **Cost per record** of the featurizers the tests check against matminer
    (``tests/test_matminer_adapter.py``): the adapter's ``featurize_batch`` in
    this process on ``--cost-rows`` structures (formulas for ElementProperty)
    after a warm-up: wall ms per record (parse, JSON both ways and matminer),
    and CPU ms (this process and its sidecar), which a busy machine inflates less.
    These are the figures of ``docs/featurizers_matminer.md``.

Run (``--quick``: 200 structures, one round, 20 per cost)::

    XENONSCALE_PEERS_PYTHON=.venv-peers/bin/python .venv/bin/python bench/matminer_speed.py --quick
    .venv/bin/python bench/matminer_speed.py --json bench/results/matminer_speed.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Light imports only above: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
XRD = "XRDPowderPattern(two_theta_range=(0, 127), pattern_length=128)"
COSTS = {
    "SiteStatsFingerprint.from_preset('CrystalNNFingerprint_ops')": "structure",
    "GlobalSymmetryFeatures(desired_features=['spacegroup_num', 'crystal_system_int', "
    "'is_centrosymmetric', 'n_symmetry_ops'])": "structure",
    XRD: "structure",
    "EwaldEnergy(); oxidation=guess": "structure",
    "DensityFeatures()": "structure",
    "ElementProperty.from_preset('deml')": "composition",
}


def bench_module(name: str) -> Any:
    """``bench/<name>.py`` as a module (compositions.py sets the XENONSCALE_DATA_DIR default)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


def register(client: Any = None) -> None:
    """The ``matminer:`` family here and on the workers (before the entry point is installed)."""
    from xenonscale.featurize.matminer import matminer_family
    from xenonscale.featurize.registry import register_family

    register_family("matminer", matminer_family)
    if client is not None:
        client.run(register_family, "matminer", matminer_family)


def load_phonons(rows: int) -> list[dict]:
    from xenonscale.config import data_dir

    path = data_dir() / "structures" / "matbench_phonons.json.gz"
    table = json.loads(gzip.decompress(path.read_bytes()))
    column = table["columns"].index("structure")
    return [row[column] for row in table["data"]][:rows]


def matminer_reference(spec_text: str) -> dict[str, Any]:
    """The peer worker's ``matminer_structures`` arguments for a ``matminer:`` spec."""
    import ast

    from xenonscale.featurize.matminer import parse_matminer_spec

    spec = parse_matminer_spec(spec_text)
    call: dict[str, Any] = {"cls": spec.name, "remove_oxidation_states": False}
    args = [ast.literal_eval(a) for a in spec.args]
    if spec.preset:
        call["preset"] = args.pop(0)
    if args:
        raise SystemExit(f"{spec_text!r}: give keyword arguments only (the peer call takes those)")
    call["kwargs"] = {k: ast.literal_eval(v) for k, v in spec.kwargs.items()}
    if spec.oxidation != "keep":
        call |= {"remove_oxidation_states": True, "oxidation_guesses": spec.oxidation == "guess"}
    return call


def side_by_side(args: argparse.Namespace, docs: list[dict], peers: Any) -> dict[str, Any]:
    import xarray as xr

    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / f"matminer_phonons_{len(docs)}.jsonl"
    source.write_text(
        "".join(json.dumps({"id": k, "structure": d}) + "\n" for k, d in enumerate(docs))
    )
    warm = workdir / "matminer_phonons_warm.jsonl"
    warm.write_text("".join(source.read_text().splitlines(keepends=True)[: 2 * args.workers]))
    store = workdir / "matminer_speed.zarr"
    spec = FeaturizerSpec.parse("structure", f"matminer:{args.spec}")
    reference = matminer_reference(args.spec)
    engine_s: list[float] = []
    matminer_s: list[float] = []
    client = get_client(workers=args.workers, quiet=True)
    try:
        register(client)
        client.wait_for_workers(args.workers)
        options = dict(column="structure", client=client, overwrite=True, progress=False)
        t0 = time.perf_counter()  # cold: the warm-up job (a task a row) starts the sidecars
        featurize_to_store(
            str(warm),
            str(workdir / "matminer_warm.zarr"),
            spec,
            chunk_rows=1,
            partition_rows=1,
            **options,
        )
        cold = time.perf_counter() - t0
        peers.call(  # matminer's warm-up: its lazily read data, its pool
            "matminer_structures",
            structures=docs[: 2 * args.workers],
            n_jobs=args.workers,
            repeats=1,
            **reference,
        )
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            summary = featurize_to_store(
                str(source),
                str(store),
                spec,
                chunk_rows=args.partition_rows,
                partition_rows=args.partition_rows,
                **options,
            )
            engine_s.append(time.perf_counter() - t0)
            answer = peers.call(
                "matminer_structures",
                structures=docs,
                n_jobs=args.workers,
                repeats=1,
                ignore_errors=True,
                **reference,
            )
            matminer_s.append(answer["result"]["times"]["wall_s"][0])
    finally:
        close_client(client)
    stored = xr.open_zarr(store)
    ok = stored["ok"].values
    theirs = answer["array"].astype(np.float32)
    ours = stored["features"].values
    both = ok & ~np.isnan(theirs).all(axis=1)
    return {
        "spec": f"matminer:{args.spec}",
        "structures": len(docs),
        "features": summary.features,
        "workers": args.workers,
        "partition_rows": args.partition_rows,
        "engine_cold_warmup_s": cold,
        "engine_s": engine_s,
        "matminer_s": matminer_s,
        "engine_median_s": statistics.median(engine_s),
        "matminer_median_s": statistics.median(matminer_s),
        "ratio": statistics.median(matminer_s) / statistics.median(engine_s),
        "featurized": summary.featurized,
        "errors": summary.errors,
        "matminer_nan_rows": int(np.isnan(theirs).all(axis=1).sum()),
        "equal_rows": int(both.sum()),
        "bit_identical": bool(
            np.array_equal(ours[both].view(np.uint32), theirs[both].view(np.uint32))
        ),
        "labels_equal": stored["feature"].values.tolist() == answer["result"]["labels"],
    }


def costs(args: argparse.Namespace, docs: list[dict]) -> list[dict[str, Any]]:
    import pandas as pd

    from xenonscale.config import data_dir
    from xenonscale.featurize.matminer import matminer_family

    formulas = pd.read_csv(data_dir() / "compositions" / "matbench_expt_gap.csv")["formula"]
    out = []
    for spec, kind in COSTS.items():
        featurizer = matminer_family(spec, kind=kind)
        rows = docs[:: max(1, len(docs) // args.cost_rows)][: args.cost_rows]
        if kind == "composition":
            rows = formulas.iloc[:: max(1, len(formulas) // (10 * args.cost_rows))].tolist()
        featurizer.featurize_batch(rows[:2])  # warm-up (sidecar started above)
        t0, cpu0 = time.perf_counter(), cpu_seconds()
        batch = featurizer.featurize_batch(rows)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        out.append(
            {
                "spec": spec,
                "features": len(featurizer.labels),
                "records": len(rows),
                "ok": int(batch.ok.sum()),
                "ms_per_record": 1e3 * seconds / len(rows),
                "cpu_ms_per_record": 1e3 * cpu / len(rows),
            }
        )
    return out


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its children (the sidecars) so far."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += sum(child.cpu_times()[:2])
    return total


def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\n{results['date']}  {m['cpu']} (nproc {m['cpu_count']}), load {results['load']}")
    print("peers: " + "  ".join(f"{k} {v}" for k, v in m.get("peer_versions", {}).items()))
    a = results["side_by_side"]
    print(
        f"\n(a) {a['structures']} Matbench phonons structures, {a['spec']} ({a['features']} "
        f"features), {a['workers']} workers, {len(a['engine_s'])} rounds, medians:"
    )
    print(
        f"  {'engine (featurize_to_store → Zarr)':<41}{a['engine_median_s']:8.2f} s   "
        f"(cold, sidecars starting: warm-up job {a['engine_cold_warmup_s']:.1f} s)"
    )
    what = f"matminer (featurize_many, n_jobs={a['workers']})"
    print(f"  {what:<41}{a['matminer_median_s']:8.2f} s")
    print(
        f"  ratio matminer / engine: {a['ratio']:.2f}×  "
        f"({a['featurized']} featurized + {a['errors']} errors; matminer NaN rows "
        f"{a['matminer_nan_rows']}; {a['equal_rows']} rows bit-identical "
        f"{a['bit_identical']}, labels equal {a['labels_equal']})"
    )
    print("\n(b) cost per record through the adapter (warm sidecar): wall ms, CPU ms (this")
    print("    process and its sidecar), features, rows ok:")
    for c in results["costs"]:
        print(
            f"  {c['ms_per_record']:7.1f} {c['cpu_ms_per_record']:7.1f}  {c['features']:4d}  "
            f"{c['ok']}/{c['records']}  matminer:{c['spec']}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=XRD, help="matminer: spec of (a), after the prefix")
    parser.add_argument("--rows", type=int, default=1265, help="structures of (a)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=100)
    parser.add_argument("--cost-rows", type=int, default=40, help="structures per cost (b)")
    parser.add_argument("--quick", action="store_true", help="200 structures, 1 round, 20 each")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results" / "matminer_speed"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.cost_rows, args.partition_rows = 200, 1, 20, 50
    helpers = bench_module("compositions")  # sets the XENONSCALE_DATA_DIR default
    from xenonscale.testing.peers import PeerEnvironment

    register()
    docs = load_phonons(args.rows)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
    }
    with PeerEnvironment() as peers:
        results["side_by_side"] = side_by_side(args, docs, peers)
        results["machine"] = helpers.machine(peers=peers)
    results["costs"] = costs(args, load_phonons(1265))
    report(results)
    helpers.write_results(results, args.json)
    a = results["side_by_side"]
    return 0 if a["bit_identical"] and a["labels_equal"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
