"""DScribe descriptors: the engine's ``dscribe:`` featurizers next to DScribe's own ``create``.

(a) **Engine against DScribe, same structures, same cores.** All 1,265 Matbench
    phonons structures (``matbench_phonons.json.gz``, pymatgen dicts), two
    descriptors:

    * ``dscribe:SOAP(species='Z<=83', compression='crossover')`` (the set holds
      64 elements, all with Z ≤ 83; ``crossover`` keeps same-element pairs:
      83 × 40 = 3,320 features instead of 221,112);
    * ``dscribe:SineMatrix`` (defaults: ``n_atoms_max=100``, eigenspectrum).

    The engine runs ``featurize_to_store`` from the split-JSON file itself into a
    temporary store on an embedded cluster of ``--workers`` worker processes
    (``get_client``; the cluster's start is not timed), ``--partition-rows``
    rows per task: reading, parsing, DScribe and the Zarr writes are inside its
    time. DScribe runs ``create(list_of_atoms, n_jobs=--workers)`` (joblib
    processes; each starts with :func:`worker_setup`, which applies the
    DScribe/ASE ``System`` fix of ``xenonscale.featurize.dscribe.compat``: the
    fix is per process, and without it DScribe's own workers fail on the sine
    matrix under ASE ≥ 3.26) on ``ase.Atoms`` built beforehand with pymatgen's
    ``AseAtomsAdaptor``; that conversion is timed once on its own and reported
    beside it. Both use the same DScribe constructor call. One untimed warm-up
    per case (DScribe's import on the workers, joblib's pool), then
    ``--repeats`` rounds, the cases interleaved; medians. The stored rows are
    compared with DScribe's (float32 store: within 1e-6 relative).

(b) **Every descriptor, in process.** The cost per record of each descriptor's
    default spec on 88 phonons crystals made of 12 elements (``species`` those
    12) and on ``--molecules`` QM9 molecules (``species='qm9'``):
    ``featurize_batch`` serially, parsing included for crystals (the parse cache
    is cleared before every call), the 3-D embedding (RDKit ETKDG + MMFF)
    timed on its own for molecules. These are the figures of
    ``docs/featurizers_dscribe.md``.

The machine is usually shared: the bench records the load average and the
busy CPU seconds of other processes during (a) (``other_share``).

Run::

    .venv/bin/python bench/dscribe_speed.py --quick      # ~2 min
    .venv/bin/python bench/dscribe_speed.py              # --repeats 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import gzip
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# Light imports only above: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
ENGINE_SPECS = {
    "SOAP": "dscribe:SOAP(species='Z<=83', compression='crossover')",
    "SineMatrix": "dscribe:SineMatrix",
}
TABLE_CRYSTALS = ["Li", "N", "O", "F", "P", "S", "Cl", "K", "Se", "Rb", "Te", "Cs"]
TABLE_STRUCTURE_SPECS = {
    "SOAP": "SOAP",
    "ACSF": "ACSF",
    "MBTR k=1": "MBTR(k=1)",
    "MBTR k=2": "MBTR",
    "MBTR k=3": "MBTR(k=3)",
    "SineMatrix": "SineMatrix",
    "EwaldSumMatrix": "EwaldSumMatrix",
    "ValleOganov distance": "ValleOganov",
    "ValleOganov angle": "ValleOganov(function='angle')",
}
TABLE_MOLECULE_SPECS = {
    "SOAP": "SOAP",
    "ACSF": "ACSF",
    "MBTR k=2": "MBTR",
    "MBTR k=3": "MBTR(k=3)",
    "CoulombMatrix": "CoulombMatrix",
}
SPECIES_FREE = ("SineMatrix", "EwaldSumMatrix", "CoulombMatrix")


def bench_module(name: str) -> Any:
    """``bench/<name>.py`` as a module (compositions.py sets the XENONSCALE_DATA_DIR default)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


def worker_setup() -> None:
    """joblib worker initializer: DScribe with the ``System`` fix, its FutureWarning quiet."""
    warnings.simplefilter("ignore", FutureWarning)
    from xenonscale.featurize.dscribe.compat import load_dscribe

    load_dscribe()


def with_species(text: str, species: object) -> str:
    """``NAME`` / ``NAME(k=v)`` with ``species=`` added (not for the matrices)."""
    if text.split("(")[0] in SPECIES_FREE:
        return text
    if "(" not in text:
        return f"{text}(species={species!r})"
    return text.replace("(", f"(species={species!r}, ", 1)


class CpuShare:
    """Busy CPU seconds of the machine, of this process tree, and of everything else."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.system0, self.ours0, self.wall0 = psutil.cpu_times(), self._ours(), time.perf_counter()
        self.load0 = os.getloadavg()

    def _ours(self) -> float:
        total = 0.0
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> dict[str, float]:
        system1, ours1, wall1 = psutil.cpu_times(), self._ours(), time.perf_counter()
        idle = ("idle", "iowait", "guest", "guest_nice")
        busy = sum(
            getattr(system1, k) - getattr(self.system0, k)
            for k in self.system0._fields
            if k not in idle
        )
        ours = max(0.0, ours1 - self.ours0)
        capacity = (wall1 - self.wall0) * (psutil.cpu_count() or 1)
        return {
            "wall_s": wall1 - self.wall0,
            "busy_cpu_s": busy,
            "ours_cpu_s": ours,
            "other_cpu_s": max(0.0, busy - ours),
            "other_share": max(0.0, busy - ours) / capacity if capacity else 0.0,
            "loadavg_before": list(self.load0),
            "loadavg_after": list(os.getloadavg()),
        }


# ------------------------------------------------------------------------ (a)
def engine_vs_dscribe(args: argparse.Namespace, source: Path, docs: list[dict]) -> dict:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.dscribe.compat import load_dscribe
    from xenonscale.featurize.registry import FeaturizerSpec

    start = time.perf_counter()
    atoms = [AseAtomsAdaptor.get_atoms(Structure.from_dict(doc)) for doc in docs]
    convert_s = time.perf_counter() - start
    descriptors = load_dscribe()
    workdir = Path(tempfile.mkdtemp(prefix="dscribe_speed_", dir=args.workdir))
    started = time.perf_counter()
    client = get_client(workers=args.workers, quiet=True)
    cluster_start_s = time.perf_counter() - started
    out: dict[str, Any] = {
        "rows": len(docs),
        "workers": args.workers,
        "partition_rows": args.partition_rows,
        "cluster_start_s": cluster_start_s,
        "ase_conversion_us_per_record": convert_s / len(docs) * 1e6,
        "cases": {},
    }
    try:
        cases = {}
        for name, text in ENGINE_SPECS.items():
            spec = FeaturizerSpec.parse("structure", text)
            featurizer = spec.build()
            found, params = featurizer._setup()
            obj = getattr(descriptors, found.name)(**found.constructor(params, True))

            def engine(spec=spec, name=name) -> float:
                store = workdir / f"{name}.zarr"
                begin = time.perf_counter()
                job = featurize_to_store(
                    str(source), str(store), spec, column="structure", client=client,
                    chunk_rows=args.partition_rows, partition_rows=args.partition_rows,
                    overwrite=True, progress=False,
                )  # fmt: skip
                seconds = time.perf_counter() - begin
                assert job.rows == len(docs), job
                return seconds

            def direct(obj=obj, found=found, params=params) -> float:
                import joblib

                begin = time.perf_counter()
                with (
                    warnings.catch_warnings(),
                    joblib.parallel_config(backend="loky", initializer=worker_setup),
                ):
                    warnings.simplefilter("ignore", FutureWarning)
                    obj.create(atoms, n_jobs=args.workers, **found.create_arguments(params))
                return time.perf_counter() - begin

            cases[name] = (engine, direct, obj, found, params, len(featurizer.labels), text)
            print(f"  warm-up {name} ...", flush=True)
            engine()
            direct()
        times: dict[str, dict[str, list[float]]] = {n: {"engine": [], "dscribe": []} for n in cases}
        share = CpuShare()
        for round_ in range(args.repeats):
            for name, (engine, direct, *_rest) in cases.items():
                gc.collect()
                times[name]["engine"].append(engine())
                gc.collect()
                times[name]["dscribe"].append(direct())
            print(f"  round {round_ + 1}/{args.repeats} done", flush=True)
        out["cpu"] = share.stop()
        import xarray as xr

        for name, (_, _, obj, found, params, width, text) in cases.items():
            engine_s = statistics.median(times[name]["engine"])
            dscribe_s = statistics.median(times[name]["dscribe"])
            ds = xr.open_zarr(workdir / f"{name}.zarr")
            stored = ds.features.values
            ok = ds.ok.values
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                reference = np.asarray(
                    obj.create(atoms, n_jobs=1, **found.create_arguments(params))
                )
            reference = reference.reshape(len(atoms), -1).astype(np.float32)
            floor = 1e-6 * float(np.abs(reference).max())
            rel = np.abs(stored[ok] - reference[ok]) / (np.abs(reference[ok]) + floor)
            out["cases"][name] = {
                "spec": text,
                "features": width,
                "engine_s": times[name]["engine"],
                "dscribe_s": times[name]["dscribe"],
                "engine_us_per_record": engine_s / len(docs) * 1e6,
                "dscribe_us_per_record": dscribe_s / len(docs) * 1e6,
                "dscribe_with_conversion_us_per_record": (dscribe_s + convert_s) / len(docs) * 1e6,
                "ratio_engine_over_dscribe": engine_s / dscribe_s,
                "ratio_engine_over_dscribe_with_conversion": engine_s / (dscribe_s + convert_s),
                "stored_ok": int(ok.sum()),
                "max_rel_diff_store_vs_dscribe": float(rel.max()) if rel.size else 0.0,
            }
    finally:
        close_client(client)
        shutil.rmtree(workdir, ignore_errors=True)
    return out


# ------------------------------------------------------------------------ (b)
def per_descriptor(args: argparse.Namespace, docs: list[dict], smiles: list[str]) -> dict:
    from xenonscale.featurize.dscribe.atoms import molecule_atoms
    from xenonscale.featurize.dscribe.compat import load_dscribe
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.featurize.structures.parse import clear_parse_cache, parse_structures

    load_dscribe()
    crystals = [d for d in docs if _elements(d) <= set(TABLE_CRYSTALS)]
    rows: list[dict[str, Any]] = []

    def measure(label: str, kind: str, text: str, inputs: list, clear: bool) -> None:
        featurizer = FeaturizerSpec.parse(kind, "dscribe:" + text).build()
        featurizer.featurize_batch(inputs)  # warm-up
        seconds = []
        for _ in range(args.table_repeats):
            if clear:
                clear_parse_cache()
            gc.collect()
            begin = time.perf_counter()
            batch = featurizer.featurize_batch(inputs)
            seconds.append(time.perf_counter() - begin)
        median = statistics.median(seconds)
        rows.append({
            "descriptor": label, "kind": kind, "spec": "dscribe:" + text,
            "records": len(inputs), "ok": int(batch.ok.sum()),
            "features": len(featurizer.labels),
            "ms_per_record": median / len(inputs) * 1e3,
            "seconds": seconds,
        })  # fmt: skip
        print(f"  {kind:9} {label:22} {rows[-1]['ms_per_record']:8.2f} ms/record", flush=True)

    for _ in range(2):  # parsing alone (pymatgen dicts → arrays), for reference
        clear_parse_cache()
        begin = time.perf_counter()
        parse_structures(crystals)
        parse_s = time.perf_counter() - begin
    for label, text in TABLE_STRUCTURE_SPECS.items():
        measure(label, "structure", with_species(text, TABLE_CRYSTALS), crystals, clear=True)
    begin = time.perf_counter()
    embedded = molecule_atoms(smiles)
    embed_s = time.perf_counter() - begin
    atoms = [a for a in embedded.atoms if a is not None]
    for label, text in TABLE_MOLECULE_SPECS.items():
        measure(label, "molecule", with_species(text, "qm9"), atoms, clear=False)
    return {
        "crystals": len(crystals),
        "crystal_species": TABLE_CRYSTALS,
        "crystal_sites_median": float(np.median([len(d["sites"]) for d in crystals])),
        "parse_ms_per_crystal": parse_s / len(crystals) * 1e3,
        "molecules": len(smiles),
        "molecules_embedded": len(atoms),
        "molecule_atoms_median": float(np.median([len(a) for a in atoms])),
        "embed_ms_per_molecule": embed_s / len(smiles) * 1e3,
        "rows": rows,
    }


def _elements(doc: dict) -> set[str]:
    return {sp["element"] for site in doc["sites"] for sp in site["species"]}


# ------------------------------------------------------------------------ report
def report(results: dict) -> None:
    m = results["machine"]
    print(f"\nmachine: {m['cpu']} ({m['cpu_count']} CPUs), Python {m['python']}, {m['platform']}")
    a = results.get("engine")
    if a:
        cpu = a["cpu"]
        print(
            f"\n(a) {a['rows']:,} Matbench phonons structures, {a['workers']} workers / n_jobs, "
            f"{results['settings']['repeats']} rounds (medians); ase conversion for DScribe "
            f"{a['ase_conversion_us_per_record']:.0f} µs/record (outside its time)"
        )
        print(
            f"{'case':11}{'features':>9}{'engine µs/rec':>15}{'DScribe µs/rec':>16}"
            f"{'engine/DScribe':>16}{'(+conversion)':>15}{'max rel diff':>14}"
        )
        for name, c in a["cases"].items():
            print(
                f"{name:11}{c['features']:>9,}{c['engine_us_per_record']:>15,.0f}"
                f"{c['dscribe_us_per_record']:>16,.0f}{c['ratio_engine_over_dscribe']:>16.2f}"
                f"{c['ratio_engine_over_dscribe_with_conversion']:>15.2f}"
                f"{c['max_rel_diff_store_vs_dscribe']:>14.1e}"
            )
        print(
            f"CPU sharing during (a): other processes used {cpu['other_cpu_s']:.0f} CPU s "
            f"({cpu['other_share']:.0%} of the machine); load average "
            f"{'/'.join(f'{x:.1f}' for x in cpu['loadavg_before'])} → "
            f"{'/'.join(f'{x:.1f}' for x in cpu['loadavg_after'])}"
        )
    b = results.get("table")
    if b:
        print(
            f"\n(b) in process, serial: {b['crystals']} crystals of {len(b['crystal_species'])} "
            f"elements (median {b['crystal_sites_median']:.0f} sites; parsing "
            f"{b['parse_ms_per_crystal']:.2f} ms each, included), {b['molecules']} QM9 molecules "
            f"(median {b['molecule_atoms_median']:.0f} atoms; embedding "
            f"{b['embed_ms_per_molecule']:.1f} ms each, not included)"
        )
        for row in b["rows"]:
            print(
                f"  {row['kind']:9} {row['descriptor']:22} {row['features']:>9,} features "
                f"{row['ms_per_record']:>9.2f} ms/record  ({row['ok']}/{row['records']} ok)"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of (a)")
    parser.add_argument("--table-repeats", type=int, default=3, help="timed calls per row of (b)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-rows", type=int, default=128)
    parser.add_argument("--molecules", type=int, default=100, help="QM9 molecules in (b)")
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds, 1 call per row, 40 molecules"
    )
    parser.add_argument("--no-engine", action="store_true", help="skip (a)")
    parser.add_argument("--no-table", action="store_true", help="skip (b)")
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"))
    parser.add_argument(
        "--json", default=None, help="default bench/results/dscribe_speed[_quick].json"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.table_repeats, args.molecules = 2, 1, 40
    if min(args.repeats, args.table_repeats, args.workers, args.partition_rows, args.molecules) < 1:
        parser.error("--repeats, --table-repeats, --workers, --partition-rows, --molecules: >= 1")

    helpers = bench_module("compositions")  # sets the XENONSCALE_DATA_DIR default
    from xenonscale.config import data_dir

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    source = data_dir() / "structures" / "matbench_phonons.json.gz"
    table = json.loads(gzip.decompress(source.read_bytes()))
    docs = [row[0] for row in table["data"]]
    import pandas as pd

    qm9 = pd.read_csv(data_dir() / "molecules" / "qm9.csv.gz", nrows=args.molecules)
    smiles = qm9[next(c for c in qm9.columns if c.lower() == "smiles")].tolist()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": helpers.machine(extra=("dscribe", "ase", "rdkit", "dask", "zarr")),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "engine_specs": ENGINE_SPECS,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen's CIF/POSCAR notes, DScribe's FutureWarning
        if not args.no_engine:
            print(f"(a) engine vs DScribe on {len(docs):,} structures ...", flush=True)
            results["engine"] = engine_vs_dscribe(args, source, docs)
        if not args.no_table:
            print("(b) every descriptor, in process ...", flush=True)
            results["table"] = per_descriptor(args, docs, smiles)
    report(results)
    name = "dscribe_speed_quick.json" if args.quick else "dscribe_speed.json"
    out = Path(args.json) if args.json else BENCH_DIR / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
