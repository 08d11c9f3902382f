"""``make demo``: the main job of the day, end to end on real data.

Today: featurize every Materials Project band-gap composition of Matbench
(``matbench_mp_gap``, 106,113 formulas) with XenonPy's descriptors
on an embedded Dask cluster into a chunked Zarr FeatureStore, then read the
store back like any xarray user and summarize it (throughput, errors, the
descriptors that track the target best, a descriptor heatmap); then train a
source model on the store with Lightning (an MLP on XenonPy's ``classic``
descriptors), register it in a zoo under ``OUTPUT/zoo`` with its learning
curve and parity plot, and predict raw formulas from the zoo; transfer that
band-gap model to a small real dataset of the same property measured (1,000
experimental band gaps, 3-fold shotgun with a same-fold from-scratch baseline, test
MAE of both and a parity plot); and design molecules with iQSPR
(n-gram + Bayesian ridge likelihood + SMC, 4 chains on the cluster) toward
XenonPy's tutorial target, with the property-space and hit-rate plots.

Examples
--------
>>> from xenonscale.demo import run_demo
>>> summary = run_demo(rows=2000, output_dir="demo-output")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xenonscale import datasets
from xenonscale.cluster import close_client, get_client
from xenonscale.design import Likelihood, design, train_ngram
from xenonscale.engine import featurize_to_store
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store import open_store, read_errors
from xenonscale.transfer import shotgun
from xenonscale.viz import descriptor_heatmap
from xenonscale.viz.design import property_space_figure, trajectory_figure
from xenonscale.viz.training import training_figures
from xenonscale.viz.transfer import parity_figure
from xenonscale.workflows.registration import train_and_register
from xenonscale.zoo import Zoo

__all__ = ["run_demo"]

DATASET = "matbench_mp_gap"
#: The source model's name in the demo zoo: a band-gap model, the relevant source for
#: the experimental band gaps the transfer step learns.
SOURCE = "mp-gap"


def run_demo(
    *,
    output_dir: str | Path = "demo-output",
    rows: int | None = None,
    workers: int = 2,
    epochs: int = 15,
    progress: bool = True,
) -> dict[str, object]:
    """Featurize Matbench ``mp_gap``, train and register a model, transfer, design; a summary."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    info = datasets.info(DATASET)
    source = datasets.fetch(DATASET)
    if rows is not None:  # a smaller real subset, for quick looks and tests
        subset = output / f"{DATASET}_first{rows}.csv"
        datasets.load(DATASET).iloc[:rows].to_csv(subset, index=False)
        source = subset
    store = output / f"{DATASET}.zarr"
    print(f"dataset   {DATASET}: {info.description} ({source})")

    spec = FeaturizerSpec.parse("composition", "all", elements="xenonpy58")
    # one cluster for every step (featurize, transfer, design): workers start once
    client = get_client(workers=workers, quiet=not progress)
    try:
        return _pipeline(client, source, store, spec, info, output, workers, epochs, progress)
    finally:
        close_client(client)


def _pipeline(client, source, store, spec, info, output, workers, epochs, progress) -> dict:
    job = featurize_to_store(
        str(source),
        str(store),
        spec,
        column=info.input_column,
        client=client,
        overwrite=True,
        progress=progress,
    )
    print(
        f"featurize {job.featurized:,} ok + {job.errors:,} errors = {job.rows:,} rows in "
        f"{job.seconds:.1f} s ({job.rows_per_second:,.0f} rows/s end to end, {workers} workers)"
    )

    ds = open_store(str(store))
    print(f"store     {store}  (xarray.open_zarr works too)")
    shape, chunk = tuple(ds.features.shape), ds.features.chunks[0][0]
    print(f"          features{shape} float32, chunks of {chunk} rows")
    errors = read_errors(str(store))
    if len(errors):
        print(f"errors    {len(errors)}, e.g. row {errors.row.iloc[0]}: {errors.error.iloc[0]}")

    sample = _sample(ds, info.target_column)
    target = sample.pop(info.target_column).to_numpy()
    print("target    DFT band gap (eV): " + _describe(target))
    top = _top_correlations(sample, target)
    print("top descriptors by |Spearman ρ| with the target (20,000-row sample):")
    for label, rho in top:
        print(f"  {label:40s} ρ = {rho:+.3f}")
    summary = {
        "rows": job.rows,
        "featurized": job.featurized,
        "errors": job.errors,
        "seconds": round(job.seconds, 2),
        "store": str(store),
        "top_descriptors": top,
    }
    heatmap = _heatmap(sample, target, output)
    summary["heatmap"] = str(heatmap)
    print(f"plot      {heatmap}")
    summary["model"] = _train(store, output, epochs, progress)
    summary["transfer"] = _transfer(output, client)
    summary["design"] = _design(output, client)
    return summary


def _train(store: Path, output: Path, epochs: int, progress: bool) -> dict[str, object]:
    """Train the source model on the classic descriptors of the store, register, predict."""
    zoo = Zoo(str(output / "zoo"))
    result = train_and_register(
        str(store), "target", name=SOURCE, zoo=zoo, figures=training_figures, promote=True,
        output=output / "model", max_epochs=epochs, units={"target": "eV"}, progress=progress,
        accelerator="cpu",
    )  # fmt: skip
    val = result.metrics["val"]
    print(
        f"train     {result.ref}: {result.card['training']['epochs']} epochs in "
        f"{result.card['training']['seconds']:.0f} s; validation MAE {val['mae']:.3f} eV, "
        f"R² {val['r2']:.3f} ({val['n']:,} rows)"
    )
    for path in result.files.values():
        print(f"plot      {path}")
    formulas = ["Fe2O3", "NaCl", "LiFePO4", "GaN", "Xx2"]
    model = zoo.load(SOURCE)
    predicted = model.predict(formulas)["target"].to_numpy()
    shown = ", ".join(f"{f} {v:+.2f}" for f, v in zip(formulas, predicted, strict=True))
    print(f"predict   band gaps (eV) from the zoo: {shown} ({len(model.errors_)} error: "
          f"{model.errors_['error'].iloc[0] if len(model.errors_) else '-'})")  # fmt: skip
    return {"ref": result.ref, "val": val, "files": {k: str(v) for k, v in result.files.items()}}


def _transfer(output: Path, client, rows: int = 1000) -> dict[str, object]:
    """Shotgun transfer from the zoo to a small real dataset (experimental band gaps)."""
    gap = datasets.load("matbench_expt_gap").sample(frac=1.0, random_state=18012019)
    train, test = gap.iloc[:rows], gap.iloc[rows:]
    result = shotgun(
        train["formula"].tolist(), train["target"].to_numpy(), zoo=str(output / "zoo"),
        cv=3, seed=18012019, learner="gbm", features="descriptors+prediction",
        allow_baseline=False, client=client,
    )  # fmt: skip
    truth = test["target"].to_numpy()
    fallback = float(train["target"].mean())
    pred, base = (
        np.nan_to_num(np.asarray(p.predict(test["formula"].tolist()), float), nan=fallback)
        for p in (result.predictor, result.baseline)
    )
    mae, base_mae = float(np.abs(pred - truth).mean()), float(np.abs(base - truth).mean())
    print(
        f"transfer  experimental band gaps, {rows:,} training rows: {result.method}; "
        f"test MAE {mae:.3f} eV vs from scratch {base_mae:.3f} eV ({len(test):,} test rows)"
    )
    path = output / "transfer_parity.png"
    parity_figure(truth, pred, base, label="band gap (eV)", title="test").savefig(path, dpi=110)
    print(f"plot      {path}")
    return {"method": result.method, "test_mae": mae, "baseline_test_mae": base_mae,
            "plot": str(path)}  # fmt: skip


def _design(output: Path, client, fit_rows: int = 3000) -> dict[str, object]:
    """iQSPR: molecules with ``E`` in (0, 200) kJ/mol and a HOMO-LUMO gap below 3 eV."""
    targets = ["E=0:200", "HOMO-LUMO gap=:3"]
    data = datasets.load("iqspr_pubchemqc")
    smiles = data["SMILES"].tolist()
    fit = data.sample(min(fit_rows, len(data)), random_state=0)
    ngram = train_ngram(smiles, order=10, client=client, progress=False)
    likelihood = Likelihood(targets).fit(fit["SMILES"].tolist(), fit[["E", "HOMO-LUMO gap"]])
    result = design(
        likelihood, ngram, output / "design.parquet", chains=4, samples=16, steps=20,
        seed=0, reference=smiles, client=client, progress=False,
    )  # fmt: skip
    frame, metrics = result.frame(), result.metrics
    start = frame[frame["step"] == 0]["in_target"].mean()
    print(
        f"design    iQSPR, {' and '.join(targets)}: 4 chains × 16 molecules × 20 steps in "
        f"{result.seconds:.0f} s; final: {metrics['validity']:.0%} valid, "
        f"{metrics['uniqueness']:.0%} unique, {metrics['novelty']:.0%} novel, "
        f"{metrics['in_target']:.0%} in target (start {start:.0%})"
    )
    plots = {
        "property_space": output / "design_property_space.png",
        "trajectory": output / "design_trajectory.png",
    }
    property_space_figure(frame, targets, reference=fit[["E", "HOMO-LUMO gap"]]).savefig(
        plots["property_space"], dpi=110
    )
    trajectory_figure(frame, title=" and ".join(targets)).savefig(plots["trajectory"], dpi=110)
    for path in plots.values():
        print(f"plot      {path}")
    print(f"molecules {result.path}")
    return {"metrics": metrics, "seconds": result.seconds, "path": str(result.path),
            "plots": {k: str(v) for k, v in plots.items()}}  # fmt: skip


def _sample(ds, target: str, size: int = 20_000) -> pd.DataFrame:
    """A random sample of ok rows as a DataFrame (features + target), read from the store."""
    ok = ds.ok.values
    rows = np.flatnonzero(ok)
    take = np.sort(np.random.default_rng(0).choice(rows, size=min(size, len(rows)), replace=False))
    features = ds.features.isel(sample=take).values.astype(np.float64)
    frame = pd.DataFrame(features, columns=ds.feature.values.tolist())
    frame[target] = ds[target].isel(sample=take).values
    return frame


def _describe(values: np.ndarray) -> str:
    q = np.nanpercentile(values, [0, 25, 50, 75, 100])
    return "min {:.2f}, q25 {:.2f}, median {:.2f}, q75 {:.2f}, max {:.2f}".format(*q)


def _top_correlations(
    features: pd.DataFrame, target: np.ndarray, k: int = 8
) -> list[tuple[str, float]]:
    ranks = features.rank()
    target_rank = pd.Series(target).rank().to_numpy()
    with np.errstate(all="ignore"):
        rho = ranks.apply(lambda col: np.corrcoef(col.to_numpy(), target_rank)[0, 1])
    rho = rho.dropna()
    best = rho.abs().sort_values(ascending=False).index[:k]
    return [(label, float(rho[label])) for label in best]


def _heatmap(features: pd.DataFrame, target: np.ndarray, output: Path) -> Path:
    columns = [c for c in features.columns if c.split(":")[0] in ("ave", "var", "max", "min")]
    figure = descriptor_heatmap(
        features[columns], target, max_rows=1500, title="mp_gap: descriptors sorted by band gap"
    )
    path = output / f"{DATASET}_heatmap.png"
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path
