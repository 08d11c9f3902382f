"""Structure descriptors: xenonscale next to XenonPy 0.6.7 and matminer; then a scale run.

(a) **Per structure, one process per tool.** Real structures of four sources
    (Perov-5 and Carbon-24 CIF columns, Matbench phonons pymatgen dicts, the
    mirror's ``cifs/``), ``--per-source`` of each (seeded). Every tool
    featurizes the same structures, parsed beforehand (oxidation states
    removed: XenonPy's OFM calls ``Element("Na+")`` otherwise and fails). The
    peers run in their own environment (``.venv-peers``), one long-lived
    interpreter called through :class:`xenonscale.testing.peers.PeerEnvironment`
    (``xenonscale/testing/peer_worker.py``); the structures go there as
    pymatgen dicts and are rebuilt before the clock starts, and their seconds
    are measured in that process around their own call only:

    * XenonPy 0.6.7 ``RadialDistributionFunction`` and ``OrbitalFieldMatrix``,
      ``featurize(structure)`` in a loop (its per-item function: no pandas or
      joblib overhead). Its OFM runs with the configuration-text shim of
      ``tests/test_structures.py`` (pymatgen ≥ 2024 writes ``3d6``, XenonPy's
      expression expects ``3d<sup>6</sup>`` and would give zero vectors);
    * matminer ``RadialDistributionFunction`` and ``OrbitalFieldMatrix``,
      ``set_n_jobs(1)`` + ``featurize_many``;
    * xenonscale ``featurize_batch`` on the same objects, and the RDF + OFM
      union on the raw inputs (CIF text, dicts) with parsing inside the time.
      StructureProperties and the composition poolings are timed too (no peer).

    One untimed warm-up call per case, then ``--repeats`` interleaved rounds
    (``bench/compositions.py``'s ``measure``; a peer case is one peer call with
    ``repeats=1``, so ours and theirs alternate); medians. Parity is checked on
    the same structures: against XenonPy (RDF, OFM) and matminer's RDF (same
    definition) cell by cell; against matminer's OFM, whose one-hot vectors
    differ for 50 elements (it adds semicore shells) and whose 1/r is in 1/bohr,
    on the rows whose elements have the same vectors, after the unit factor.

(b) **Scale.** ``--scale-rows`` structures (default 150,000) **resampled with
    replacement** from the pool of all 7,096 real structures, written as JSON
    Lines of pymatgen dicts (``{"id", "source", "structure"}``; CIF rows are
    converted once with pymatgen) and cached under ``--workdir``
    (``bench/results/``, git-ignored). Then ``featurize_to_store`` on an
    embedded cluster of ``--workers`` processes (``get_client``), RSS of the
    client and the workers polled (``bench/featurize_scale.py``'s sampler), and
    ``--check-rows`` stored rows compared bit for bit with the in-memory
    featurizer. The same-cores ratio divides the engine's rows/s by XenonPy's
    RDF + OFM structures/s on one core × workers, XenonPy's time per structure
    weighted by each source's share of the pool.

Run::

    .venv/bin/python bench/structures.py --scale-rows 0               # (a) only, ~3 min
    .venv/bin/python bench/structures.py --json bench/results/structures.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

# Light imports only above: Dask's "spawn" re-imports this file in every worker.
BENCH_DIR = Path(__file__).resolve().parent
SOURCES = ("perov5_val", "carbon24_val", "matbench_phonons", "cifs")
MiB = 1 << 20
ANG_TO_BOHR = 1.8897543773133647  # matminer's OFM divides 1/r (Å) by this


def bench_module(name: str) -> Any:
    """``bench/<name>.py`` as a module (compositions.py sets the XENONSCALE_DATA_DIR default)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    return __import__(name)


# ------------------------------------------------------------------------ pool
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_pool(workdir: Path) -> dict[str, list]:
    """Every real structure: ``source``, ``id``, ``raw`` input, ``line`` (its JSON Lines record)."""
    import pandas as pd

    from xenonscale import datasets
    from xenonscale.config import data_dir

    paths = {name: datasets.fetch(name) for name in SOURCES[:3]}
    cif_dir = data_dir() / "structures" / "cifs"
    cif_files = sorted(cif_dir.glob("*.cif"))
    raw: dict[str, list] = {"source": [], "id": [], "raw": []}
    for name in ("perov5_val", "carbon24_val"):
        frame = pd.read_csv(paths[name])
        raw["source"] += [name] * len(frame)
        raw["id"] += frame["material_id"].astype(str).tolist()
        raw["raw"] += frame["cif"].tolist()
    phonons = json.loads(gzip_text(paths["matbench_phonons"]))
    raw["source"] += ["matbench_phonons"] * len(phonons["data"])
    raw["id"] += [str(i) for i in phonons["index"]]
    raw["raw"] += [row[0] for row in phonons["data"]]
    raw["source"] += ["cifs"] * len(cif_files)
    raw["id"] += [p.stem for p in cif_files]
    raw["raw"] += [p.read_text() for p in cif_files]

    digest = hashlib.sha256(
        json.dumps(
            [_sha256(Path(p)) for p in paths.values()] + [_sha256(p) for p in cif_files]
        ).encode()
    ).hexdigest()
    cache = workdir / "structure_pool.jsonl"
    meta_path = workdir / "structure_pool.json"
    if cache.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == {
        "sha256": digest, "rows": len(raw["raw"])
    }:  # fmt: skip
        raw["line"] = cache.read_text().splitlines()
        return raw
    print(f"  converting {len(raw['raw']):,} real structures to pymatgen dicts (cached) ...")
    import warnings

    from pymatgen.core import Structure

    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for source, ident, item in zip(raw["source"], raw["id"], raw["raw"], strict=True):
            doc = item if isinstance(item, dict) else Structure.from_str(item, fmt="cif").as_dict()
            record = {"id": f"{source}/{ident}", "source": source, "structure": doc}
            lines.append(json.dumps(record, separators=(",", ":")))
    workdir.mkdir(parents=True, exist_ok=True)
    cache.write_text("\n".join(lines) + "\n")
    meta_path.write_text(json.dumps({"sha256": digest, "rows": len(lines)}))
    raw["line"] = lines
    return raw


def gzip_text(path: Path) -> str:
    import gzip

    return gzip.decompress(Path(path).read_bytes()).decode()


# ----------------------------------------------------------------- (a) per structure
def peer_case(peers: Any, call: str, cls: str, docs: list[dict], **extra: Any) -> Any:
    """A peer's featurizer on ``docs`` (pymatgen dicts), once, in the peer environment.

    Returns ``fn() → (DataFrame, wall s)``, the seconds measured by the peer
    process around its own call (``repeats=1``: one call per interleaved round).
    """
    import pandas as pd

    def call_once() -> tuple[Any, float]:
        answer = peers.call(call, cls=cls, structures=docs, repeats=1, **extra)
        frame = pd.DataFrame(np.asarray(answer["array"], dtype=float))
        return frame, answer["result"]["times"]["wall_s"][0]

    return call_once


def rel_diff(ours: np.ndarray, peer: np.ndarray) -> np.ndarray:
    """``|ours − peer| / (|peer| + 1e-9 · max|peer|)`` (the floor handles exact zeros)."""
    floor = 1e-9 * max(float(np.nanmax(np.abs(peer))) if peer.size else 0.0, 1e-300)
    return np.abs(ours - peer) / (np.abs(peer) + floor)


def per_structure(args: argparse.Namespace, pool: dict[str, list], peers: Any) -> dict[str, Any]:
    import warnings

    from pymatgen.core import Structure

    from xenonscale import datasets
    from xenonscale.featurize import Compositions
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.featurize.structures import (
        OrbitalFieldMatrix,
        RadialDistributionFunction,
        StructureComposition,
        StructureProperties,
    )
    from xenonscale.featurize.structures.ofm import valence_table
    from xenonscale.featurize.structures.parse import clear_parse_cache

    helpers = bench_module("compositions")
    Case = helpers.Case
    elements_csv = str(datasets.fetch("xenonpy58"))  # XenonPy's element table (peer side)
    vectors = peers.call("matminer_ofm_vectors")  # matminer's one-hot vectors, Z = 1…94
    z = np.asarray(vectors["result"]["z"])
    same_vector = np.zeros(119, dtype=bool)
    same_vector[z] = (vectors["array"] == valence_table()[z]).all(axis=1)
    rdf, ofm = RadialDistributionFunction(), OrbitalFieldMatrix()
    union = FeaturizerSpec.parse("structure", "rdf,ofm").build()
    props = StructureProperties()
    comp = StructureComposition(Compositions(elements="xenonpy58", featurizers="classic"))

    def ours(featurizer, inputs):
        def call():
            clear_parse_cache()  # time the parse too (the cache would skip it on repeats)
            return featurizer.featurize_batch(inputs)

        return call

    def xenonpy(cls, docs):
        return peer_case(peers, "xenonpy_structures", cls, docs, elements_csv=elements_csv)

    def matminer(cls, docs):
        return peer_case(peers, "matminer_structures", cls, docs, ignore_errors=True)

    rng = np.random.default_rng(args.seed)
    sources = np.asarray(pool["source"])
    results: dict[str, Any] = {"sources": {}}
    for source in SOURCES:
        members = np.flatnonzero(sources == source)
        pick = np.sort(rng.choice(members, size=min(args.per_source, len(members)), replace=False))
        raw = [pool["raw"][i] for i in pick.tolist()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = [
                Structure.from_dict(x) if isinstance(x, dict) else Structure.from_str(x, fmt="cif")
                for x in raw
            ]
        for s in structures:
            s.remove_oxidation_states()
        docs = [json.loads(s.to_json()) for s in structures]  # what the peers rebuild
        n = len(structures)
        sites = int(sum(len(s) for s in structures))
        cases = [
            Case("XenonPy 0.6.7", "RDF", n, 200, xenonpy("RDF", docs), self_timed=True),
            Case("XenonPy 0.6.7", "OFM", n, 1024, xenonpy("OFM", docs), self_timed=True),
            Case("matminer", "RDF", n, 200, matminer("RDF", docs), self_timed=True),
            Case("matminer", "OFM", n, 1024, matminer("OFM", docs), self_timed=True),
            Case("xenonscale", "RDF", n, 200, ours(rdf, structures)),
            Case("xenonscale", "OFM", n, 1024, ours(ofm, structures)),
            Case("xenonscale", "RDF+OFM from raw (parse in)", n, 1224, ours(union, raw)),
            Case("xenonscale", "StructureProperties", n, 12, ours(props, structures)),
            Case("xenonscale", "composition (classic)", n, 290, ours(comp, structures)),
        ]
        print(f"  {source}: {n} structures, {sites} sites; 1 warm-up + {args.repeats} rounds ...")
        timings, outputs = helpers.measure(cases, args.repeats)
        z_ok = np.array([same_vector[[sp.Z for sp in s.species]].all() for s in structures])
        parity = {
            "XenonPy RDF": float(rel_diff(outputs[4].values, outputs[0].to_numpy()).max()),
            "XenonPy OFM": float(rel_diff(outputs[5].values, outputs[1].to_numpy()).max()),
            "matminer RDF": float(rel_diff(outputs[4].values, outputs[2].to_numpy()).max()),
            "matminer OFM (rows with the same vectors, ÷ bohr)": (
                float(
                    rel_diff(
                        outputs[5].values[z_ok] / ANG_TO_BOHR, outputs[3].to_numpy()[z_ok]
                    ).max()
                )
                if z_ok.any()
                else None
            ),
            "matminer OFM rows compared": int(z_ok.sum()),
            "raw-input union vs objects (RDF+OFM)": float(
                rel_diff(outputs[6].values, np.hstack([outputs[4].values, outputs[5].values])).max()
            ),
        }
        results["sources"][source] = {
            "structures": n,
            "sites": sites,
            "pool_rows": len(members),
            "timings": [t.as_dict() for t in timings],
            "parity": parity,
        }
    return results


def summarize(per: dict[str, Any]) -> dict[str, Any]:
    """Totals over sources (sum of median seconds) and ratios; pool-weighted XenonPy time."""
    totals: dict[tuple[str, str], float] = {}
    n_total = 0
    weighted: dict[tuple[str, str], float] = {}
    pool_total = sum(v["pool_rows"] for v in per["sources"].values())
    for v in per["sources"].values():
        n_total += v["structures"]
        for t in v["timings"]:
            key = (t["tool"], t["what"])
            median_s = t["median_us"] * t["rows"] / 1e6
            totals[key] = totals.get(key, 0.0) + median_s
            share = v["pool_rows"] / pool_total
            weighted[key] = weighted.get(key, 0.0) + share * t["median_us"]
    us = {f"{k[0]} {k[1]}": s / n_total * 1e6 for k, s in totals.items()}
    pool_us = {f"{k[0]} {k[1]}": w for k, w in weighted.items()}

    def ratio(a: str, b: str) -> float:
        return us[a] / us[b]

    return {
        "structures": n_total,
        "us_per_structure": us,
        "pool_weighted_us": pool_us,
        "ratios": {
            "XenonPy RDF / xenonscale RDF": ratio("XenonPy 0.6.7 RDF", "xenonscale RDF"),
            "XenonPy OFM / xenonscale OFM": ratio("XenonPy 0.6.7 OFM", "xenonscale OFM"),
            "matminer RDF / xenonscale RDF": ratio("matminer RDF", "xenonscale RDF"),
            "matminer OFM / xenonscale OFM": ratio("matminer OFM", "xenonscale OFM"),
            "XenonPy RDF+OFM / xenonscale RDF+OFM from raw": (
                us["XenonPy 0.6.7 RDF"] + us["XenonPy 0.6.7 OFM"]
            )
            / us["xenonscale RDF+OFM from raw (parse in)"],
        },
    }


# ------------------------------------------------------------------------ (b) scale
def resampled_jsonl(pool: dict[str, list], rows: int, seed: int, workdir: Path) -> Path:
    """``rows`` pool records drawn with replacement (seeded), as JSON Lines; cached."""
    path = workdir / f"structures_resampled_{rows}_seed{seed}.jsonl"
    meta_path = path.with_suffix(".json")
    digest = hashlib.sha256("\n".join(pool["line"]).encode()).hexdigest()
    meta = {"rows": rows, "seed": seed, "pool_sha256": digest}
    if path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError, OSError):
            old = json.loads(meta_path.read_text())
            if {k: old.get(k) for k in meta} == meta and old.get("bytes") == path.stat().st_size:
                print(f"  reusing {path} ({rows:,} rows, {path.stat().st_size / MiB:,.0f} MiB)")
                return path
    index = np.random.default_rng([seed, rows]).integers(0, len(pool["line"]), size=rows)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as out:
        for first in range(0, rows, 10_000):
            out.write("\n".join(pool["line"][i] for i in index[first : first + 10_000].tolist()))
            out.write("\n")
    tmp.replace(path)
    meta["bytes"] = path.stat().st_size
    meta["sources"] = {
        s: int(c)
        for s, c in zip(
            *np.unique(np.asarray(pool["source"])[index], return_counts=True), strict=True
        )
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    print(f"  wrote {path} ({rows:,} rows, {meta['bytes'] / MiB:,.0f} MiB)")
    return path


def scale_run(args: argparse.Namespace, path: Path, workdir: Path) -> dict[str, Any]:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    sampler_module = bench_module("featurize_scale")
    spec = FeaturizerSpec.parse("structure", args.featurizers)
    store = workdir / f"structures_scale_{args.scale_rows}.zarr"
    started = time.perf_counter()
    client = get_client(workers=args.workers)
    cluster_seconds = time.perf_counter() - started
    try:
        client.wait_for_workers(args.workers)
        pids = client.run(os.getpid)
        with sampler_module.Sampler(pids) as sampler:
            t0 = time.perf_counter()
            summary = featurize_to_store(
                str(path), str(store), spec, column="structure", client=client,
                chunk_rows=args.chunk_rows, partition_rows=args.partition_rows,
                overwrite=True, progress=not args.no_progress,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
    finally:
        close_client(client)
    workers = {k: v for k, v in sampler.peak.items() if k.startswith("worker")}
    allocated, _, files = sampler_module.disk_usage(store)
    result = {
        "rows": args.scale_rows,
        "source": str(path),
        "source_bytes": path.stat().st_size,
        "spec": spec.to_dict(),
        "features": summary.features,
        "seconds": seconds,
        "rows_per_second": args.scale_rows / seconds,
        "summary": {
            "featurized": summary.featurized,
            "errors": summary.errors,
            "partitions": summary.partitions,
        },
        "cluster_start_seconds": cluster_seconds,
        "client_peak_rss": sampler.peak["client"],
        "client_rss_before": sampler.baseline["client"],
        "max_worker_peak_rss": max(workers.values()),
        "rss_peak": sampler.peak,
        "cpu": sampler.cpu_used(),
        "machine_cpu": sampler.machine_cpu(),
        "store": str(store),
        "store_bytes_on_disk": allocated,
        "store_files": files,
    }
    worker_cpu = [v for k, v in result["cpu"].items() if k.startswith("worker")]
    result["worker_cpu_ms_per_row"] = (
        sum(c["user"] + c["system"] for c in worker_cpu) / args.scale_rows * 1e3
    )
    result["check"] = check_store(result, spec, args.check_rows, args.seed)
    if not args.keep_store:
        shutil.rmtree(store, ignore_errors=True)
    return result


def check_store(result: dict[str, Any], spec: Any, check_rows: int, seed: int) -> dict[str, Any]:
    import warnings

    import xarray as xr

    import xenonscale

    rows = result["rows"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ds = xr.open_zarr(result["store"])
    errors = xenonscale.read_errors(result["store"])
    ok_count = int(ds["ok"].sum().compute())
    rng = np.random.default_rng([seed, rows, 1])
    picks = sorted({0, rows - 1, *rng.integers(0, rows, size=max(0, check_rows - 2)).tolist()})
    inputs = ds["input"].isel(sample=picks).values.tolist()
    expected = spec.build().featurize_batch(inputs)
    stored = ds["features"].isel(sample=picks).values
    ours = expected.values.astype(np.float32)
    check = {
        "samples": int(ds.sizes["sample"]),
        "ok_count": ok_count,
        "error_rows": len(errors),
        "counts_add_up": ok_count + len(errors) == rows == int(ds.sizes["sample"]),
        "checked_rows": len(picks),
        "features_bit_identical": bool(
            np.array_equal(stored.view(np.uint32), ours.view(np.uint32))
        ),
        "ok_equal": bool(np.array_equal(ds["ok"].isel(sample=picks).values, expected.ok)),
        "labels_equal": ds["feature"].values.tolist() == list(spec.build().labels),
    }
    check["passed"] = all(
        check[k] for k in ("counts_add_up", "features_bit_identical", "ok_equal", "labels_equal")
    )
    return check


# ---------------------------------------------------------------------- report
def report(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"\n{results['date']}  {m['cpu']} (nproc {m['cpu_count']}), Python {m['python']}")
    print("  ".join(f"{k} {v}" for k, v in m["versions"].items()))
    if "peer_versions" in m:
        peers = "  ".join(f"{k} {v}" for k, v in m["peer_versions"].items())
        print(f"peer environment (XenonPy and matminer timed there): {peers}")
    per = results.get("per_structure")
    if per:
        print("\n(a) per structure, one process per tool, median of rounds (µs per structure):")
        for source, v in per["sources"].items():
            print(f"  {source}: {v['structures']} structures, {v['sites']} sites")
            for t in v["timings"]:
                print(
                    f"    {t['tool']:<14}{t['what']:<30}{t['median_us']:>12,.0f} µs"
                    f"  (min {t['min_us']:,.0f})  failed {t['failed_rows']}"
                )
            p = v["parity"]
            print("    parity (max rel diff): " + ", ".join(
                f"{k} {val:.2g}" if isinstance(val, float) else f"{k} {val}"
                for k, val in p.items()
            ))  # fmt: skip
        s = results["summary"]
        print(f"  all {s['structures']} structures (sum of per-source medians):")
        for name, value in s["us_per_structure"].items():
            print(f"    {name:<50}{value:>12,.0f} µs/structure")
        for name, value in s["ratios"].items():
            print(f"    {name:<50}{value:>10.1f}×")
    scale = results.get("scale")
    if scale:
        c = scale["check"]
        print(
            f"\n(b) scale: {scale['rows']:,} structures RESAMPLED WITH REPLACEMENT from the "
            f"real pool, JSON Lines ({scale['source_bytes'] / MiB:,.0f} MiB) → Zarr, "
            f"{results['settings']['workers']} workers, featurizers {scale['spec']['names']}"
        )
        print(
            f"  {scale['seconds']:.1f} s, {scale['rows_per_second']:,.0f} rows/s; "
            f"{scale['summary']['featurized']:,} featurized + "
            f"{scale['summary']['errors']:,} errors; "
            f"client peak RSS {scale['client_peak_rss'] / MiB:,.0f} MiB "
            f"(before {scale['client_rss_before'] / MiB:,.0f}), max worker peak RSS "
            f"{scale['max_worker_peak_rss'] / MiB:,.0f} MiB; worker CPU "
            f"{scale['worker_cpu_ms_per_row']:.2f} ms/row; store "
            f"{scale['store_bytes_on_disk'] / (1 << 30):.2f} GiB; other processes used "
            f"{scale['machine_cpu']['other_share']:.0%} of the machine"
        )
        print(
            f"  check {'PASSED' if c['passed'] else 'FAILED'}: counts add up {c['counts_add_up']}, "
            f"{c['checked_rows']} rows bit-identical {c['features_bit_identical']}"
        )
        if "ratio_same_cores" in scale:
            print(
                f"  vs XenonPy RDF+OFM ({scale['xenonpy_us_pool_weighted']:,.0f} µs/structure "
                f"on one core, pool-weighted): {scale['ratio_same_cores']:.1f}× on the same "
                f"cores, {scale['ratio_raw']:.1f}× raw"
            )


# ------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, default=10, help="structures per source (a)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (a)")
    parser.add_argument("--scale-rows", type=int, default=150_000, help="0 skips (b)")
    parser.add_argument("--featurizers", default="rdf,ofm", help="engine spec for (b)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-rows", type=int, default=1_000)
    parser.add_argument("--partition-rows", type=int, default=5_000)
    parser.add_argument("--check-rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(BENCH_DIR / "results"))
    parser.add_argument("--no-peers", action="store_true", help="skip (a)")
    parser.add_argument("--keep-store", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if min(args.per_source, args.repeats, args.workers, args.chunk_rows) < 1:
        parser.error("--per-source, --repeats, --workers and --chunk-rows must be positive")

    helpers = bench_module("compositions")  # sets the XENONSCALE_DATA_DIR default
    workdir = Path(args.workdir)
    pool = load_pool(workdir)
    counts = {s: pool["source"].count(s) for s in SOURCES}
    print(f"pool: {len(pool['raw']):,} real structures {counts}")
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": None,  # filled in at the end (with the peers' versions when they ran)
        "memory_total": psutil.virtual_memory().total,
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "pool": counts,
    }
    # The scale run first, before the peers' interpreter starts beside the client.
    if args.scale_rows > 0:
        path = resampled_jsonl(pool, args.scale_rows, args.seed, workdir)
        gc.collect()
        print(f"\nscale: {args.scale_rows:,} rows, {args.workers} workers ...")
        results["scale"] = scale_run(args, path, workdir)
    if args.no_peers:
        results["machine"] = helpers.machine()
    else:
        from xenonscale.testing.peers import PeerEnvironment

        print("\nper structure (one process per tool; the peers in their own environment):")
        with PeerEnvironment() as peers:
            results["per_structure"] = per_structure(args, pool, peers)
            results["machine"] = helpers.machine(peers=peers)
        results["summary"] = summarize(results["per_structure"])
        scale = results.get("scale")
        if scale and scale["spec"]["names"] == ["rdf", "ofm"]:
            w = results["summary"]["pool_weighted_us"]
            xpy = w["XenonPy 0.6.7 RDF"] + w["XenonPy 0.6.7 OFM"]
            scale["xenonpy_us_pool_weighted"] = xpy
            scale["ratio_raw"] = scale["rows_per_second"] * xpy / 1e6
            scale["ratio_same_cores"] = scale["ratio_raw"] / args.workers
    report(results)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"\nwrote {out}")
    return 0 if not results.get("scale") or results["scale"]["check"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
