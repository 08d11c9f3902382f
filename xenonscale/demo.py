"""``make demo``: the main job of the day, end to end on real data.

Today: featurize every Materials Project formation-energy composition of
Matbench (``matbench_mp_e_form``, 132,752 formulas) with XenonPy's descriptors,
write the feature table, and summarize it (throughput, errors, the descriptors
that track the target best, a descriptor heatmap). Later capabilities (Dask
engine, models, transfer, design) extend this same command.

Examples
--------
>>> from xenonscale.demo import run_demo
>>> summary = run_demo(rows=2000, output_dir="demo-output")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from xenonscale import datasets
from xenonscale.featurize import Compositions, errors_frame
from xenonscale.featurize.batches import featurize_in_batches

__all__ = ["run_demo"]

DATASET = "matbench_mp_e_form"


def run_demo(
    *, output_dir: str | Path = "demo-output", rows: int | None = None, progress: bool = True
) -> dict[str, object]:
    """Featurize Matbench ``mp_e_form`` and print a summary; returns the summary dict."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    info = datasets.info(DATASET)
    frame = datasets.load(DATASET)
    if rows is not None:
        frame = frame.iloc[:rows]
    formulas = frame[info.input_column].tolist()
    target = frame[info.target_column].to_numpy()
    print(f"dataset   {DATASET}: {len(frame):,} compositions ({info.description})")

    featurizer = Compositions(elements="xenonpy58", featurizers="all")
    print(f"features  {featurizer.table!r}, featurizers 'all' → {len(featurizer.labels)} columns")
    started = time.perf_counter()
    result = featurize_in_batches(featurizer, formulas, progress=progress)
    seconds = time.perf_counter() - started

    features = pd.DataFrame(result.values, columns=featurizer.labels, dtype=np.float32)
    table = pd.concat([frame.reset_index(drop=True), features], axis=1)
    table.insert(len(frame.columns), "ok", result.ok)
    table_path = output / f"{DATASET}_features.parquet"
    table.to_parquet(table_path, index=False)
    errors = errors_frame(result.errors)
    errors.to_csv(output / f"{DATASET}_errors.csv", index=False)

    top = _top_correlations(features[result.ok], target[result.ok])
    summary = {
        "rows": len(frame),
        "featurized": int(result.ok.sum()),
        "errors": len(errors),
        "features": len(featurizer.labels),
        "seconds": round(seconds, 3),
        "rows_per_second": round(len(frame) / max(seconds, 1e-9)),
        "table": str(table_path),
        "top_descriptors": top,
    }
    print(
        f"featurize {summary['featurized']:,} ok + {summary['errors']:,} errors = "
        f"{summary['rows']:,} rows in {seconds:.2f} s "
        f"({summary['rows_per_second']:,} compositions/s, {1e6 * seconds / max(len(frame), 1):.1f}"
        " µs each)"
    )
    print(f"table     {table_path} ({table_path.stat().st_size / 2**20:.1f} MiB)")
    print("target    formation energy (eV/atom): " + _describe(target))
    print("top descriptors by |Spearman ρ| with the target:")
    for label, rho in top:
        print(f"  {label:40s} ρ = {rho:+.3f}")
    heatmap = _heatmap(features[result.ok], target[result.ok], output)
    if heatmap:
        summary["heatmap"] = str(heatmap)
        print(f"plot      {heatmap}")
    return summary


def _describe(values: np.ndarray) -> str:
    q = np.nanpercentile(values, [0, 25, 50, 75, 100])
    return "min {:.2f}, q25 {:.2f}, median {:.2f}, q75 {:.2f}, max {:.2f}".format(*q)


def _top_correlations(
    features: pd.DataFrame, target: np.ndarray, k: int = 8, sample: int = 20_000
) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    take = rng.choice(len(features), size=min(sample, len(features)), replace=False)
    ranks = features.iloc[take].rank()
    target_rank = pd.Series(target[take]).rank().to_numpy()
    with np.errstate(all="ignore"):
        rho = ranks.apply(lambda col: np.corrcoef(col.to_numpy(), target_rank)[0, 1])
    rho = rho.dropna()
    best = rho.abs().sort_values(ascending=False).index[:k]
    return [(label, float(rho[label])) for label in best]


def _heatmap(features: pd.DataFrame, target: np.ndarray, output: Path) -> Path | None:
    try:
        from xenonscale.viz import descriptor_heatmap
    except ImportError:  # the viz module arrives with plotting support
        return None
    columns = [c for c in features.columns if c.split(":")[0] in ("ave", "var", "max", "min")]
    figure = descriptor_heatmap(
        features[columns], target, max_rows=1500, title="mp_e_form: descriptors sorted by target"
    )
    path = output / f"{DATASET}_heatmap.png"
    figure = getattr(figure, "figure", figure)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path
