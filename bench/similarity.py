"""Exact similarity search over a FeatureStore: build time and query throughput vs numpy.

The issue-17 (part 3) measurement. It featurizes the first ``--rows``
formulas of the shared OQMD training file (real formulas, 239,190 in the
file) with ``Counting`` (103 element counts) through the engine on an
embedded in-process cluster, then in the same run:

* ``build_index`` (two streaming passes over the store, faiss ``IndexFlatL2``
  on z-scores, files written) and ``open_index`` (files read, sha256 checked);
* a batch of ``--queries`` store rows, k = ``--k``: xenonscale's
  ``SimilarityIndex.search`` (faiss candidates + float64 re-ranking), faiss's
  own ``search`` on the same vectors, and brute force in numpy on the same
  float32 matrix (``|x|² + |q|² - 2 q·x`` by BLAS in blocks of 65,536 rows,
  ``argpartition`` per block, merged): queries per second and the ratios;
* single-query latency (median of ``--single`` queries, one vector a call);
* agreement: the share of queries whose k neighbour distances match those of
  the rows brute force picked (recomputed in float64) within 1e-4.

With ``--tiled-rows`` (default 1,000,000; 0 skips it) the same is repeated on
a synthetic-size store: the real store's rows tiled (copied) to that many rows
and written with the store writer, so every formula appears several times
(distance-0 ties; throughput is what it measures). ``--quick`` runs 100,000
rows, 200 queries and no tiled store.

Run::

    .venv/bin/python bench/similarity.py
    .venv/bin/python bench/similarity.py --quick --json bench/results/similarity.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OQMD = "compositions/oqmd_formation_enthalpy_train.csv"


def data_dir() -> Path:
    here = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("XENONSCALE_DATA_DIR", here.parent / "shared" / "data"))


def featurize(rows: int, folder: Path) -> tuple[str, float]:
    from distributed import Client

    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec

    frame = pd.read_csv(data_dir() / OQMD, nrows=rows)
    frame.to_csv(folder / "oqmd.csv", index=False)
    store = str(folder / "oqmd.zarr")
    started = time.perf_counter()
    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as c:
        featurize_to_store(
            str(folder / "oqmd.csv"),
            store,
            FeaturizerSpec.parse("composition", "Counting"),
            column="formula",
            client=c,
            progress=False,
        )
    return store, time.perf_counter() - started


def tile(store: str, rows: int, folder: Path) -> tuple[str, float]:
    """A synthetic-size store: ``store``'s rows copied until there are ``rows``."""
    import zarr

    from xenonscale.store.layout import StoreLocation
    from xenonscale.store.writer import create_store, finalize_store, write_region

    source = zarr.open_group(store, mode="r")
    features = np.asarray(source["features"][:])
    ok = np.asarray(source["ok"][:])
    inputs = np.asarray(source["input"][:], dtype=object)
    attrs = dict(source.attrs) | {"source": f"{store} tiled to {rows:,} rows", "rows": rows}
    attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    labels = [str(x) for x in source["feature"][:]]
    started = time.perf_counter()
    location = StoreLocation(str(folder / "tiled.zarr"))
    chunk = int(source["features"].chunks[0])
    create_store(location, rows=rows, labels=labels, extras={}, chunk_rows=chunk, attrs=attrs)
    n = len(features)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        take = np.arange(start, stop) % n
        frame = pd.DataFrame({"id": [f"t{i}" for i in range(start, stop)], "input": inputs[take]})
        write_region(location, start, frame, features[take], ok[take], extras={})
    finalize_store(location, pd.DataFrame({"row": [], "input": [], "error": []}), {})
    return location.url, time.perf_counter() - started


def brute_force(z: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536):
    """Exact k nearest rows by numpy: BLAS distances per block of rows, argpartition, merge."""
    norms = np.einsum("ij,ij->i", z, z)
    q_norms = np.einsum("ij,ij->i", queries, queries)[:, None]
    best_d = np.full((len(queries), k), np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(z), block):
        stop = min(start + block, len(z))
        d = q_norms + norms[None, start:stop] - 2.0 * (queries @ z[start:stop].T)
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if stop - start > k else None
        cand_d = np.take_along_axis(d, part, 1) if part is not None else d
        cand_i = (part if part is not None else np.arange(stop - start)[None, :]) + start
        all_d = np.concatenate([best_d, cand_d], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(cand_i, cand_d.shape)], axis=1)
        keep = np.argpartition(all_d, k - 1, axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, keep, 1)
        best_i = np.take_along_axis(all_i, keep, 1)
    order = np.argsort(best_d, axis=1)
    d = np.sqrt(np.maximum(np.take_along_axis(best_d, order, 1), 0))
    return d, np.take_along_axis(best_i, order, 1)


def timed(call, repeats: int = 3) -> tuple[float, object]:
    best, result = np.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


def measure(store: str, queries: int, k: int, single: int, seed: int) -> dict:
    import zarr

    from xenonscale.store.similarity import build_index, open_index

    info = build_index(store, progress=False)
    open_seconds, index = timed(lambda: open_index(store), repeats=1)
    group = zarr.open_group(store, mode="r")
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(index.rows, queries, replace=False))
    raw = np.asarray(group["features"].get_orthogonal_selection((picked, slice(None))))
    vectors = index.transform(raw)
    z = index.index.reconstruct_n(0, len(index))  # the same float32 matrix, for numpy
    ours_s, (ours_d, _) = timed(lambda: index.search(raw, k))
    faiss_s, _ = timed(lambda: index.index.search(vectors, k))
    numpy_s, (_, numpy_i) = timed(lambda: brute_force(z, vectors, k))
    # numpy's float32 |x|² + |q|² - 2qx loses digits near 0: its rows, exact distances
    exact = np.sqrt(((z[numpy_i].astype(np.float64) - vectors[:, None, :]) ** 2).sum(axis=2))
    agree = float(np.mean(np.abs(ours_d - np.sort(exact, axis=1)).max(axis=1) < 1e-4))
    latency = {"xenonscale": [], "faiss": [], "numpy": []}
    for i in range(min(single, queries)):
        for name, call in (
            ("xenonscale", lambda i=i: index.search(raw[i : i + 1], k)),
            ("faiss", lambda i=i: index.index.search(vectors[i : i + 1], k)),
            ("numpy", lambda i=i: brute_force(z, vectors[i : i + 1], k)),
        ):
            started = time.perf_counter()
            call()
            latency[name].append(time.perf_counter() - started)
    medians = {name: float(np.median(v)) * 1e3 for name, v in latency.items()}
    return {
        "rows_indexed": info.rows,
        "features": info.features,
        "build_seconds": info.seconds,
        "index_mib": info.bytes / 2**20,
        "open_seconds": open_seconds,
        "queries": queries,
        "k": k,
        "qps": {
            "xenonscale": queries / ours_s,
            "faiss": queries / faiss_s,
            "numpy": queries / numpy_s,
        },
        "single_ms_median": medians,
        "agreement_with_numpy": agree,
    }


def report(name: str, result: dict) -> None:
    qps, ms = result["qps"], result["single_ms_median"]
    print(
        f"\n{name}: {result['rows_indexed']:,} rows × {result['features']} features\n"
        f"  build_index {result['build_seconds']:.2f} s ({result['index_mib']:.1f} MiB), "
        f"open_index {result['open_seconds']:.2f} s\n"
        f"  batch of {result['queries']:,}, k={result['k']}: xenonscale {qps['xenonscale']:,.0f} "
        f"q/s, faiss alone {qps['faiss']:,.0f} q/s, numpy brute force {qps['numpy']:,.0f} q/s "
        f"→ xenonscale/numpy {qps['xenonscale'] / qps['numpy']:.2f}×, "
        f"faiss/numpy {qps['faiss'] / qps['numpy']:.2f}×\n"
        f"  single query (median): xenonscale {ms['xenonscale']:.2f} ms, faiss "
        f"{ms['faiss']:.2f} ms, numpy {ms['numpy']:.2f} ms → numpy/xenonscale "
        f"{ms['numpy'] / ms['xenonscale']:.2f}×\n"
        f"  neighbour distances equal to numpy's (1e-4): {result['agreement_with_numpy']:.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tiled-rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.tiled_rows, args.queries, args.single = 100_000, 0, 200, 50
    import faiss

    out = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "faiss": faiss.__version__,
            "faiss_threads": faiss.omp_get_max_threads(),
            "load_average": os.getloadavg(),
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store, seconds = featurize(args.rows, folder)
        print(f"featurized {args.rows:,} OQMD formulas (Counting) in {seconds:.1f} s")
        out["real"] = measure(store, args.queries, args.k, args.single, args.seed)
        report(f"OQMD store ({args.rows:,} real formulas)", out["real"])
        if args.tiled_rows:
            tiled, seconds = tile(store, args.tiled_rows, folder)
            print(f"\nwrote the tiled store ({args.tiled_rows:,} rows, copies) in {seconds:.1f} s")
            out["tiled"] = measure(tiled, args.queries, args.k, args.single, args.seed)
            report(f"tiled store ({args.tiled_rows:,} rows: the real rows copied)", out["tiled"])
    print(f"\nload average at the end: {os.getloadavg()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
