"""Inorganic inverse design, judged by models of another family on the other half of the data.

The issue-17 acceptance run of ``xenonscale design --kind composition``:
target **band gap 1.0–2.0 eV and negative formation energy**
(``gap=1.0:2.0``, ``e_form=:0``), source data Matbench ``mp_gap`` (106,113
rows) and ``mp_e_form`` (132,752 rows) from the shared mirror.

Protocol:

1. **Split.** Every row's formula is reduced
   (:func:`xenonscale.design.compositions.canonical_formulas`, the design's
   own key: gcd-reduced whole amounts in pymatgen's element order) and hashed
   (BLAKE2b, 8 bytes): even hashes go to half **A** (the design's side), odd
   ones to half **B** (the judges' side). A reduced formula is therefore on
   one side only, in both tasks, and so are all its polymorphs.
2. **Forward models** (the design's likelihood), half A only: per task, the
   rows (reduced formulas) are written to a CSV, featurized with XenonPy's
   ``classic`` descriptors on ``xenonpy58`` (290 features) by
   :func:`xenonscale.engine.featurize_to_store` on the Dask cluster, and a zoo
   MLP (256-128, batch 512, lr 2e-3, MAE loss, early stopping with patience
   8, at most ``--mlp-epochs`` epochs and ``--mlp-minutes`` of wall time per
   model; 10 % of the formulas held out by a *group* split on the reduced
   formula; every row kept: the default outlier rule would drop mp_gap's
   wide-gap insulators, whose median and spread are set by the metals at 0
   eV) is trained and registered with
   :func:`xenonscale.workflows.train_and_register`. The likelihood uses each
   model's recorded validation RMSE as its predictive standard deviation.
3. **Judges** of another family, half B only: scikit-learn
   ``HistGradientBoostingRegressor`` (``--judge rf``: a random forest) on the
   132 Magpie statistics (:class:`xenonscale.featurize.compositions.ElementStatistics`,
   the ``magpie`` featurizer), fitted on 90 % of B; the other 10 % of B (by
   formula hash) scores them. The design's MLPs are scored on that same slice
   (they never saw B), so the two families are compared on the same rows.
4. **Design.** :class:`~xenonscale.design.compositions.CompositionProposal`
   over the ``--top-elements`` elements most frequent in half A (by distinct
   reduced formulas holding them, both tasks together) or ``--elements``,
   ``--max-atoms`` 10, charge-balanced; start populations drawn from half A's
   formulas inside that space; :func:`xenonscale.design.design` runs
   ``--chains`` × ``--samples`` × ``--steps`` (default annealing schedule)
   on ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``.
5. **Baselines**, judged the same way: (a) a **random walk**: the same
   chains, start populations and moves with every β = 0 (uniform weights,
   every move accepted), so only the likelihood differs; (b) **uniform**
   draws from the space (reduced formulas over the elements with at most
   ``--max-atoms`` atoms and at least the proposal's ``min_elements``, via
   :class:`xenonscale.chem.enumeration.CompositionSpace`, kept when
   charge-balanced), over the whole space and over formulas of at most 4
   elements.
6. **Figures** per population (the start populations = step 0, the final
   ones = the last step, pooled over chains): valid (parses and pymatgen's
   ``Composition(f).oxi_state_guesses(max_sites=-1)`` finds a neutral
   assignment), unique (distinct valid / valid), novel (distinct valid
   reduced formulas in neither file, A ∪ B / distinct valid), the share in the
   target by the **judges** (invalid = miss) and by the design's own MLPs.

Run::

    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/design_compositions.py --quick
    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/design_compositions.py

Outputs go under ``--workdir`` (default ``bench/results/design_compositions[_quick]/``,
git-ignored: stores, zoo, design Parquet + JSON); the figures go to ``--json``
(default ``bench/results/design_compositions[_quick].json``). Trained models
in the workdir's zoo are reused (``--retrain`` to train again); reduced
formulas are cached in ``bench/results/design_compositions_reduced.parquet``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TASKS = {"gap": "matbench_mp_gap", "e_form": "matbench_mp_e_form"}
UNITS = {"gap": "eV", "e_form": "eV/atom"}
TARGETS = ["gap=1.0:2.0", "e_form=:0"]
_SYMBOL = re.compile(r"([A-Z][a-z]?)(\d*)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="10,000 MLP rows, 8 epochs, 20,000 judge rows, 2×20×10"
    )
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="chains and baselines")
    parser.add_argument("--top-elements", type=int, default=30)
    parser.add_argument("--elements", default=None, help="A,B,... instead of --top-elements")
    parser.add_argument("--max-atoms", type=int, default=10)
    parser.add_argument("--mlp-rows", type=int, default=None, help="subsample half A (rows)")
    parser.add_argument("--mlp-epochs", type=int, default=100, help="early stopping decides")
    parser.add_argument("--mlp-minutes", type=float, default=4.0, help="cap per model")
    parser.add_argument("--judge-rows", type=int, default=None, help="subsample half B (rows)")
    parser.add_argument("--judge", choices=["hgb", "rf"], default="hgb")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--retrain", action="store_true", help="ignore models in the zoo")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    if args.quick:
        args.chains, args.samples, args.steps = min(args.chains, 2), 20, 10
        args.mlp_rows = args.mlp_rows or 10_000
        args.mlp_epochs = min(args.mlp_epochs, 8)
        args.judge_rows = args.judge_rows or 20_000
    args.workdir = args.workdir or str(HERE / "results" / f"design_compositions{suffix}")
    args.json = args.json or str(HERE / "results" / f"design_compositions{suffix}.json")
    return args


def machine() -> dict[str, Any]:
    """CPU model, cores, load, Python and the versions that matter here."""
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
        "python": platform.python_version(),
        "load_average_before": os.getloadavg(),
        "versions": installed_versions(
            "xenonscale", "torch", "scikit-learn", "pymatgen", "numpy", "dask", "distributed",
            missing="unknown",
        ),
    }  # fmt: skip


def data_dir() -> Path:
    """The data mirror: ``$XENONSCALE_DATA_DIR``, else ``../shared/data`` beside the project."""
    given = os.environ.get("XENONSCALE_DATA_DIR")
    root = Path(given) if given else HERE.parent.parent / "shared" / "data"
    os.environ.setdefault("XENONSCALE_DATA_DIR", str(root))  # workers read element tables
    return root


def formula_hash(formula: str) -> int:
    """A stable 64-bit hash of a reduced formula (independent of Python's hash seed)."""
    return int.from_bytes(hashlib.blake2b(formula.encode(), digest_size=8).digest(), "little")


def reduced_formulas(strings: list[str], cache: Path, client) -> dict[str, str | None]:
    """``{formula text: reduced formula}``, computed on the workers and cached on disk."""
    from xenonscale.design.compositions import canonical_formulas

    known: dict[str, str | None] = {}
    if cache.exists():
        frame = pd.read_parquet(cache)
        known = dict(zip(frame["text"], frame["reduced"], strict=True))
        probe = list(known)[:: max(1, len(known) // 500)]  # written by another version?
        if canonical_formulas(probe) != [known[t] for t in probe]:
            known = {}
    missing = sorted(set(strings) - set(known))
    if missing:
        chunks = [missing[i : i + 5_000] for i in range(0, len(missing), 5_000)]
        results = client.gather(client.map(canonical_formulas, chunks, pure=False))
        for chunk, out in zip(chunks, results, strict=True):
            known.update(zip(chunk, out, strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"text": list(known), "reduced": list(known.values())}).to_parquet(cache)
    return {s: known[s] for s in strings}


def load_tasks(root: Path, cache: Path, client) -> tuple[dict[str, pd.DataFrame], dict]:
    """Both tasks' rows with ``reduced``, ``hash``, ``side`` (A/B) and ``holdout`` (10 % of B)."""
    frames = {p: pd.read_csv(root / "compositions" / f"{d}.csv") for p, d in TASKS.items()}
    texts = sorted({str(f) for frame in frames.values() for f in frame["formula"]})
    mapping = reduced_formulas(texts, cache, client)
    counts = {}
    for prop, frame in frames.items():
        frame["reduced"] = frame["formula"].astype(str).map(mapping)
        unreadable = int(frame["reduced"].isna().sum())
        frame = frame[frame["reduced"].notna()].reset_index(drop=True)
        hashes = np.array([formula_hash(f) for f in frame["reduced"]], dtype=np.uint64)
        frame["side"] = np.where(hashes % np.uint64(2) == 0, "A", "B")
        frame["holdout"] = (frame["side"] == "B") & ((hashes // np.uint64(2)) % np.uint64(10) == 0)
        frames[prop] = frame
        counts[prop] = {
            "rows": len(frame) + unreadable,
            "unreadable": unreadable,
            "rows_A": int((frame["side"] == "A").sum()),
            "rows_B": int((frame["side"] == "B").sum()),
            "rows_B_holdout": int(frame["holdout"].sum()),
            "formulas_A": int(frame.loc[frame["side"] == "A", "reduced"].nunique()),
            "formulas_B": int(frame.loc[frame["side"] == "B", "reduced"].nunique()),
        }
    return frames, counts


def amounts_of(formula: str) -> dict[str, int]:
    """``{element: amount}`` of a reduced formula as pymatgen writes it; the elements are
    exact, the amounts only without brackets (``Al2Cu2PH(CF)2``): pymatgen counts atoms."""
    return {e: int(n or 1) for e, n in _SYMBOL.findall(formula)}


def atoms_of(formula: str) -> int:
    """Atoms in a formula (pymatgen; brackets expanded)."""
    from pymatgen.core import Composition

    return round(Composition(formula).num_atoms)


def choose_elements(frames: dict[str, pd.DataFrame], top: int) -> tuple[list[str], dict]:
    """The ``top`` elements in most distinct half-A reduced formulas (both tasks)."""
    formulas = set()
    for frame in frames.values():
        formulas.update(frame.loc[frame["side"] == "A", "reduced"])
    counts = Counter(e for f in formulas for e in amounts_of(f))
    chosen = [e for e, _ in counts.most_common(top)]
    return chosen, {e: counts[e] for e in chosen}


def start_pool(frames: dict[str, pd.DataFrame], proposal) -> list[str]:
    """Half A's distinct reduced formulas inside the proposal's space (sorted)."""
    elements, limit = set(proposal.elements), proposal.max_atoms
    candidates = set()
    for frame in frames.values():
        candidates.update(frame.loc[frame["side"] == "A", "reduced"])
    cheap = [
        f for f in candidates
        if set(a := amounts_of(f)) <= elements and sum(a.values()) <= limit
    ]  # fmt: skip
    return sorted(f for f in cheap if proposal.allowed(f))


def train_forward(prop: str, frame: pd.DataFrame, args, work: Path, zoo, client) -> dict:
    """The half-A zoo MLP of ``prop`` (reused from the zoo unless ``--retrain``)."""
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows import train_and_register

    name = f"mp-{prop.replace('_', '-')}-half-a"  # zoo names are lowercase
    info: dict[str, Any] = {"name": name}
    if not args.retrain and name in set(zoo.list()["name"]):
        info["reused"] = True
    else:
        rows = frame[frame["side"] == "A"][["reduced", "target"]]
        if args.mlp_rows and len(rows) > args.mlp_rows:
            rows = rows.sample(args.mlp_rows, random_state=0)
        csv, store = work / f"{prop}_A.csv", work / f"{prop}_A.zarr"
        rows.rename(columns={"reduced": "formula"}).to_csv(csv, index=False)
        shutil.rmtree(store, ignore_errors=True)
        spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
        tick = time.perf_counter()
        featurize_to_store(str(csv), str(store), spec, column="formula", client=client,
                           progress=False)  # fmt: skip
        info["featurize_seconds"] = round(time.perf_counter() - tick, 1)
        tick = time.perf_counter()
        train_and_register(
            str(store), "target", name=name, zoo=zoo, units={"target": UNITS[prop]},
            hidden=[256, 128], batch_size=512, lr=2e-3, max_epochs=args.mlp_epochs,
            max_minutes=args.mlp_minutes, patience=8, accelerator="cpu", seed=0,
            data_options={"split": "group", "outliers": "keep"}, output=str(work / "models" / name),
            progress=not args.no_progress,
        )  # fmt: skip
        info["train_wall_seconds"] = round(time.perf_counter() - tick, 1)
        info["reused"] = False
    card = zoo.show(zoo.latest(name))
    info.update(
        ref=str(zoo.latest(name)),
        rows=card["split"]["counts"],
        epochs=card["training"]["epochs"],
        best_epoch=card["training"]["best_epoch"],
        training_seconds=card["training"]["seconds"],
        val_mae=card["metrics"]["val"]["mae"],
        val_rmse=card["metrics"]["val"]["rmse"],
    )
    return info


def magpie(formulas: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Magpie statistics (132) and which rows parsed."""
    from xenonscale.featurize.registry import FeaturizerSpec

    batch = FeaturizerSpec.parse("composition", "magpie").build().featurize_batch(list(formulas))
    return np.asarray(batch.values, dtype=np.float64), np.asarray(batch.ok, dtype=bool)


def train_judge(prop: str, frame: pd.DataFrame, args):
    """The half-B judge of ``prop`` (90 % of B) and its metrics on the 10 % holdout."""
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from threadpoolctl import threadpool_limits

    from xenonscale.models.metrics import regression_metrics

    train = frame[(frame["side"] == "B") & ~frame["holdout"]]
    test = frame[frame["holdout"]]
    if args.judge_rows and len(train) > args.judge_rows:
        train = train.sample(args.judge_rows, random_state=0)
    x, ok = magpie(train["reduced"].tolist())
    if args.judge == "rf":
        model = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, max_features=0.33,
                                      n_jobs=1, random_state=0)  # fmt: skip
    else:
        model = HistGradientBoostingRegressor(max_iter=1000, learning_rate=0.1,
                                              max_leaf_nodes=63, random_state=0)  # fmt: skip
    tick = time.perf_counter()
    with threadpool_limits(1):  # OpenMP threads on a shared machine stalled fits 40× here
        model.fit(x[ok], train["target"].to_numpy(np.float64)[ok])
    seconds = time.perf_counter() - tick
    xt, okt = magpie(test["reduced"].tolist())
    y = test["target"].to_numpy(np.float64)[okt]
    with threadpool_limits(1):
        metrics = regression_metrics(y, model.predict(xt[okt]))
    return (
        model,
        {
            "model": type(model).__name__,
            "train_rows": int(ok.sum()),
            "fit_seconds": round(seconds, 1),
            "holdout": {k: metrics[k] for k in ("mae", "rmse", "r2", "n")},
            "iterations": getattr(model, "n_iter_", None),
        },
        test[okt],
    )


def judge(formulas: list[str], judges: dict) -> pd.DataFrame:
    """The judges' predictions and in-target verdict (NaN / miss where a formula fails)."""
    from threadpoolctl import threadpool_limits

    from xenonscale.design import parse_targets

    out = pd.DataFrame(index=range(len(formulas)))
    x, ok = magpie(formulas) if formulas else (np.zeros((0, 132)), np.zeros(0, bool))
    inside = ok.copy()
    for target in parse_targets(TARGETS):
        values = np.full(len(formulas), np.nan)
        if ok.any():
            with threadpool_limits(1):
                values[ok] = judges[target.name].predict(x[ok])
        out[target.name] = values
        inside &= target.contains(values)
    out["in_target"] = inside
    return out


def charge_balanced(formulas: list[str]) -> np.ndarray:
    """pymatgen finds a neutral oxidation-state assignment (unparsable: False)."""
    from pymatgen.core import Composition

    out = []
    for formula in formulas:
        try:
            out.append(bool(Composition(formula).oxi_state_guesses(max_sites=-1)))
        except Exception:  # pymatgen raises many types for bad formulas
            out.append(False)
    return np.asarray(out, dtype=bool)


def population(formulas: list[str], design_in_target, judges: dict, known: set[str]) -> dict:
    """Validity, uniqueness, novelty and both in-target shares of one pooled population."""
    from xenonscale.design.compositions import canonical_formulas, valid_formulas

    formulas = [str(f) for f in formulas]
    keys = canonical_formulas(formulas)
    valid = valid_formulas(formulas) & charge_balanced(formulas)
    valid &= np.array([k is not None for k in keys])
    unique = {k for k, v in zip(keys, valid, strict=True) if v}
    novel = unique - known
    verdict = judge(formulas, judges)
    n = len(formulas)
    atoms = [atoms_of(k) for k in keys if k]
    return {
        "n": n,
        "valid": float(valid.mean()) if n else None,
        "unique": len(unique) / int(valid.sum()) if valid.any() else None,
        "novel": len(novel) / len(unique) if unique else None,
        "n_valid": int(valid.sum()),
        "n_unique": len(unique),
        "n_novel": len(novel),
        "in_target_judges": float(verdict["in_target"].mean()) if n else None,
        "in_target_design_models": (
            float(np.mean(design_in_target)) if design_in_target is not None and n else None
        ),
        "judged_gap_median": float(np.nanmedian(verdict["gap"])) if n else None,
        "judged_e_form_median": float(np.nanmedian(verdict["e_form"])) if n else None,
        "judged_gap_in_range": float(((verdict["gap"] > 1) & (verdict["gap"] < 2)).mean()),
        "judged_e_form_negative": float((verdict["e_form"] < 0).mean()),
        "elements_median": float(np.median([len(amounts_of(k)) for k in keys if k])),
        "atoms_median": float(np.median(atoms)) if atoms else None,
    }


def uniform_draws(proposal, n: int, max_elements: int | None, seed: int) -> tuple[list, dict]:
    """``n`` formulas drawn uniformly from the space (kept when charge-balanced)."""
    from xenonscale.chem.enumeration import CompositionSpace

    space = CompositionSpace(proposal.elements, proposal.max_atoms,
                             min_elements=getattr(proposal, "min_elements", 1),
                             max_elements=max_elements)  # fmt: skip
    rng = np.random.default_rng(seed)
    kept, drawn = [], 0
    while len(kept) < n and drawn < 1000 * n:
        row = int(rng.integers(0, space.size))
        drawn += 1
        formula = space.slice(row, row + 1)[1][0]
        if proposal.allowed(formula):
            kept.append(formula)
    return kept, {"space_size": space.size, "drawn": drawn, "kept": len(kept)}


def labelled_share(formulas: list[str], labels: pd.DataFrame) -> dict:
    """Share in the target by the DFT labels (median over polymorphs) of labelled formulas."""
    from xenonscale.design import parse_targets

    rows = labels.reindex(formulas).dropna()
    inside = np.ones(len(rows), dtype=bool)
    for target in parse_targets(TARGETS):
        inside &= target.contains(rows[target.name].to_numpy())
    return {"n_labelled": len(rows), "in_target_dft": float(inside.mean()) if len(rows) else None}


def final_rows(frame: pd.DataFrame, result) -> pd.DataFrame:
    done = [c.chain for c in result.chains if c.status == "done"]
    last = frame.groupby("chain")["step"].transform("max")
    return frame[(frame["step"] == last) & frame["chain"].isin(done)].reset_index(drop=True)


def trajectory(frame: pd.DataFrame, judges: dict) -> list[dict]:
    """Per step, pooled over chains: in-target share by the judges and by the design's MLPs."""
    verdict = judge(frame["smiles"].tolist(), judges)
    steps = frame["step"].to_numpy()
    return [
        {
            "step": int(s),
            "n": int((steps == s).sum()),
            "judges": float(verdict["in_target"][steps == s].mean()),
            "design_models": float(frame["in_target"][steps == s].mean()),
        }
        for s in np.unique(steps)
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    root = data_dir()
    import logging
    import warnings

    from distributed import Client, LocalCluster

    from xenonscale.design import Likelihood, design
    from xenonscale.design.compositions import CompositionProposal
    from xenonscale.zoo import Zoo

    logging.getLogger("distributed").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Port .* is already in use")
    started = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "bench": "design_compositions",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "no_progress")},
        "targets": TARGETS,
        "seconds": {},
    }
    seconds = report["seconds"]

    def lap(name: str, tick: float) -> float:
        seconds[name] = round(time.perf_counter() - tick, 1)
        print(f"{name}: {seconds[name]} s", flush=True)
        return time.perf_counter()

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None)  # fmt: skip
    with cluster, Client(cluster) as client, Zoo(str(work / "zoo")) as zoo:
        tick = time.perf_counter()
        cache = HERE / "results" / "design_compositions_reduced.parquet"
        frames, report["data"] = load_tasks(root, cache, client)
        tick = lap("reduce_and_split", tick)

        elements, element_counts = (
            ([e.strip() for e in args.elements.split(",") if e.strip()], None)
            if args.elements
            else choose_elements(frames, args.top_elements)
        )
        proposal = CompositionProposal(elements, max_atoms=args.max_atoms, charge_balanced=True)
        pool = start_pool(frames, proposal)
        report["space"] = {
            "elements": proposal.elements,
            "element_formula_counts_A": element_counts,
            "max_atoms": proposal.max_atoms,
            "charge_balanced": True,
            "start_pool_formulas_A": len(pool),
        }
        print(f"{len(elements)} elements {','.join(elements)}; start pool {len(pool)} formulas")
        tick = lap("space_and_start_pool", tick)

        forward = {}
        for prop, frame in frames.items():
            forward[prop] = train_forward(prop, frame, args, work, zoo, client)
            print(f"forward {prop}: {forward[prop]}", flush=True)
        report["forward_models"] = forward
        tick = lap("forward_models", tick)

        judges, report["judges"], holdouts = {}, {}, {}
        for prop, frame in frames.items():
            judges[prop], report["judges"][prop], holdouts[prop] = train_judge(prop, frame, args)
            model = zoo.load(forward[prop]["ref"])
            test = holdouts[prop]
            predicted = model.predict(test["reduced"].tolist())["target"].to_numpy()
            error = predicted - test["target"].to_numpy(np.float64)
            report["judges"][prop]["design_mlp_on_same_holdout"] = {
                "mae": float(np.nanmean(np.abs(error))),
                "rmse": float(np.sqrt(np.nanmean(error**2))),
            }
            print(f"judge {prop}: {report['judges'][prop]}", flush=True)
        tick = lap("judges", tick)

        likelihood = Likelihood(
            TARGETS, models={p: zoo.load(forward[p]["ref"]) for p in TASKS}, kind="composition"
        ).fit([], pd.DataFrame(index=range(0)))
        report["likelihood_std"] = likelihood.std_source_
        runs = {}
        for label, betas in (("design", None), ("random_walk", np.zeros(args.steps))):
            result = design(
                likelihood, proposal, work / f"{label}.parquet", chains=args.chains,
                samples=args.samples, steps=None if betas is not None else args.steps,
                betas=betas, seed=args.seed, start=pool, client=client,
                progress=not args.no_progress,
            )  # fmt: skip
            runs[label] = result
            report[f"{label}_run"] = {
                "seconds": round(result.seconds, 1),
                "rows": result.rows,
                "chains_done": sum(c.status == "done" for c in result.chains),
                "errors": [c.error for c in result.chains if c.status != "done"],
            }
            tick = lap(label, tick)

    known = set()
    for frame in frames.values():
        known.update(frame["reduced"])
    sizes = Counter(len(amounts_of(f)) for f in known)
    report["data_formulas_by_element_count"] = {int(k): sizes[k] for k in sorted(sizes)}
    labels = pd.concat(
        [frame.groupby("reduced")["target"].median().rename(prop) for prop, frame in
         frames.items()], axis=1,
    )  # fmt: skip
    frame = runs["design"].frame()
    start = frame[frame["step"] == 0].reset_index(drop=True)
    final = final_rows(frame, runs["design"])
    walk = final_rows(runs["random_walk"].frame(), runs["random_walk"])
    n = len(final)
    populations = {
        "start (step 0, half A formulas)": population(
            start["smiles"].tolist(), start["in_target"], judges, known
        )
        | labelled_share(start["canonical_smiles"].tolist(), labels),
        "design, final": population(final["smiles"].tolist(), final["in_target"], judges, known),
        "random walk (β = 0), final": population(
            walk["smiles"].tolist(), walk["in_target"], judges, known
        ),
    }
    for label, max_elements in (("uniform over the space", None), ("uniform, ≤ 4 elements", 4)):
        drawn, info = uniform_draws(proposal, n, max_elements, args.seed)
        mine = likelihood.evaluate(drawn)["in_target"] if drawn else None
        populations[label] = population(drawn, mine, judges, known) | {"draws": info}
    pool_labels = labelled_share(pool, labels)
    report["start_pool_in_target_dft"] = pool_labels
    report["populations"] = populations
    report["design_final_per_chain"] = {
        int(c): population(g["smiles"].tolist(), g["in_target"], judges, known)["in_target_judges"]
        for c, g in final.groupby("chain")
    }
    report["trajectory"] = trajectory(frame, judges)
    report["design_summary_metrics"] = runs["design"].summary["metrics"]
    agree = judge(final["smiles"].tolist(), judges)["in_target"].to_numpy()
    mine = final["in_target"].to_numpy(bool)
    report["final_agreement"] = {
        "both_in": int((agree & mine).sum()),
        "design_only": int((mine & ~agree).sum()),
        "judges_only": int((agree & ~mine).sum()),
        "neither": int((~agree & ~mine).sum()),
    }
    lap("judging", tick)
    seconds["total"] = round(time.perf_counter() - started, 1)
    report["load_average_after"] = os.getloadavg()

    print()
    print(f"targets {' and '.join(TARGETS)}; {len(elements)} elements, ≤ {args.max_atoms} "
          f"atoms, charge-balanced; {args.chains} chains × {args.samples} samples × "
          f"{args.steps} steps")  # fmt: skip
    for prop in TASKS:
        j, f = report["judges"][prop], forward[prop]
        print(f"{prop}: design MLP val MAE {f['val_mae']:.3f} (on B holdout "
              f"{j['design_mlp_on_same_holdout']['mae']:.3f}); judge {j['model']} B holdout "
              f"MAE {j['holdout']['mae']:.3f} ({j['holdout']['n']} rows)")  # fmt: skip
    head = f"{'population':<34} {'n':>5} {'valid':>7} {'unique':>7} {'novel':>7} " \
           f"{'judges':>7} {'design':>7}"  # fmt: skip
    print(head)

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}%"

    for label, p in populations.items():
        print(f"{label:<34} {p['n']:>5} {pct(p['valid']):>7} {pct(p['unique']):>7} "
              f"{pct(p['novel']):>7} {pct(p['in_target_judges']):>7} "
              f"{pct(p['in_target_design_models']):>7}")  # fmt: skip
    print(f"total {seconds['total']} s → {args.json}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return report


if __name__ == "__main__":
    main()
