"""The issue-6 acceptance run: shotgun transfer from zoo models to Matbench expt_gap.

Sources are trained here, only on *other* shared data — Matbench mp_gap
(DFT band gaps), Matbench mp_e_form and OQMD formation enthalpies (train
file), and Matbench glass (glass-forming ability, 0/1) — never on expt_gap
(nor on expt_is_metal, which comes from the same experimental compilation).
Each source is a small MLP on XenonPy ``classic`` descriptors (``xenonpy58``)
fitted on ``--source-rows`` rows with a few epochs of AdamW: variants differ
in dataset, widths and seed, so ``--sources`` (default 24) models land in a
scratch zoo.

Protocol: Matbench's outer 5-fold ``KFold(shuffle=True,
random_state=18012019)`` over all 4,604 expt_gap rows. For each outer fold
and each learning-curve size n (200, 500, 1000), n rows are drawn (seeded)
from the fold's training part; shotgun transfer selects sources by inner
5-fold CV on those n rows only; the final predictor and the baseline (the
same learner on ``classic``/``xenonpy58``) are refitted on the n rows and
scored on the untouched outer test fold. Then the wall time of one shotgun
call (n=1000, all sources) on an embedded cluster of 1 and of 2 workers.

Run::

    .venv/bin/python bench/transfer_expt_gap.py --json bench/results/transfer_expt_gap.json
    .venv/bin/python bench/transfer_expt_gap.py --folds 1 --sizes 200,500   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 18012019
DATASETS = {  # variant prefix: (file, target transform)
    "mp-gap": "matbench_mp_gap.csv",
    "mp-eform": "matbench_mp_e_form.csv",
    "oqmd-hf": "oqmd_formation_enthalpy_train.csv",
    "glass": "matbench_glass.csv",
}
WIDTHS = ([64, 32], [128, 64], [128, 64, 32], [256, 128], [96, 48], [64, 64])


def _train(x: np.ndarray, y: np.ndarray, hidden: list[int], seed: int, epochs: int):
    import torch

    from xenonscale.models import PropertyModel

    torch.manual_seed(seed)
    model = PropertyModel(
        {"in_features": x.shape[1], "out_features": 1, "hidden": hidden, "dropout": 0.0}
    )
    mean, std = y.mean(), y.std() or 1.0
    model.fit_scaling(np.nanmean(x, 0), np.nanstd(x, 0), [mean], [std])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-5)
    xt = torch.from_numpy(x)
    yt = torch.from_numpy(((y - mean) / std).astype(np.float32))[:, None]
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(epochs):
        for batch in np.array_split(rng.permutation(len(x)), max(1, len(x) // 256)):
            optimizer.zero_grad()
            torch.nn.functional.l1_loss(model.forward_scaled(xt[batch]), yt[batch]).backward()
            optimizer.step()
    return model.eval()


def build_sources(
    zoo_dir: str, data: Path, n_sources: int, rows: int, epochs: int, hidden=None
) -> list[str]:
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.zoo import Zoo, featurizer_fields

    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    featurizer, fields = spec.build(), featurizer_fields(spec)
    features = {}
    for prefix, file in DATASETS.items():
        frame = pd.read_csv(data / "compositions" / file)
        frame = frame.sample(min(rows, len(frame)), random_state=0)
        batch = featurizer.featurize_batch(frame["formula"].tolist())
        y = pd.to_numeric(frame["target"], errors="coerce").to_numpy(np.float32)
        ok = np.asarray(batch.ok) & np.isfinite(y)
        features[prefix] = (np.asarray(batch.values, np.float32)[ok], y[ok])
    names = []
    with Zoo(zoo_dir) as zoo:
        for i in range(n_sources):
            prefix = list(DATASETS)[i % len(DATASETS)]
            widths = hidden or WIDTHS[(i // len(DATASETS)) % len(WIDTHS)]
            name = f"{prefix}-{i:02d}"
            x, y = features[prefix]
            model = _train(x, y, widths, seed=i, epochs=epochs)
            zoo.register(
                name,
                model,
                fields | {"targets": ["target"], "notes": f"bench source on {DATASETS[prefix]}"},
            )
            names.append(name)
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mirror folder ($XENONSCALE_DATA_DIR)")
    parser.add_argument("--sources", type=int, default=24)
    parser.add_argument("--source-rows", type=int, default=20_000)
    parser.add_argument("--source-epochs", type=int, default=5)
    parser.add_argument(
        "--source-hidden", default=None, help="widths of every source, e.g. 256,128,64"
    )
    parser.add_argument("--sizes", default="200,500,1000")
    parser.add_argument("--folds", type=int, default=5, help="outer folds to run (of 5)")
    parser.add_argument("--learner", default="ridge")
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--features", default="hidden", help="e.g. descriptors+prediction")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1 vs 2 workers run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import os

    import torch
    from sklearn.model_selection import KFold

    from xenonscale.cluster import close_client, get_client
    from xenonscale.transfer.selection import shotgun

    torch.set_num_threads(1)
    data = Path(args.data or os.environ.get("XENONSCALE_DATA_DIR", "../shared/data"))
    work = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    zoo_dir = str(work / "zoo")
    started = time.perf_counter()
    hidden = [int(w) for w in args.source_hidden.split(",")] if args.source_hidden else None
    names = build_sources(zoo_dir, data, args.sources, args.source_rows, args.source_epochs, hidden)
    build_seconds = time.perf_counter() - started
    print(f"{len(names)} sources trained in {build_seconds:.1f} s")

    gap = pd.read_csv(data / "compositions" / "matbench_expt_gap.csv")
    formulas, y = gap["formula"].to_numpy(object), gap["target"].to_numpy(np.float64)
    outer = list(KFold(5, shuffle=True, random_state=SEED).split(formulas))[: args.folds]
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    client = get_client(workers=2, quiet=True)
    try:
        for fold, (train, test) in enumerate(outer):
            for n in sizes:
                pick = np.random.default_rng([SEED, fold, n]).choice(train, n, replace=False)
                t0 = time.perf_counter()
                result = shotgun(
                    formulas[pick],
                    y[pick],
                    zoo=zoo_dir,
                    cv=5,
                    seed=SEED,
                    learner=args.learner,
                    features=args.features,
                    top_k=args.top_k,
                    allow_baseline=False,  # measure transfer itself against the baseline
                    client=client,
                )
                fallback = float(y[pick].mean())
                pred = result.predictor.predict(formulas[test])
                base = result.baseline.predict(formulas[test])
                pred, base = (np.where(np.isfinite(p), p, fallback) for p in (pred, base))
                row = {
                    "fold": fold,
                    "n": n,
                    "method": result.method,
                    "cv_mae": result.mae,
                    "baseline_cv_mae": result.baseline_mae,
                    "test_mae": float(np.abs(pred - y[test]).mean()),
                    "baseline_test_mae": float(np.abs(base - y[test]).mean()),
                    "best_sources": [r["name"] for r in result.ranking[:3]],
                    "seconds": round(time.perf_counter() - t0, 2),
                }
                rows.append(row)
                print(json.dumps(row))
    finally:
        close_client(client)
    curve = []
    for n in sizes:
        mine = [r for r in rows if r["n"] == n]
        curve.append(
            {
                "n": n,
                "folds": len(mine),
                **{
                    k: float(np.mean([r[k] for r in mine]))
                    for k in ("test_mae", "baseline_test_mae", "cv_mae", "baseline_cv_mae")
                },
            }
        )
    scaling = []
    if not args.no_scaling:
        train, _ = outer[0]
        pick = np.random.default_rng([SEED, 0, 1000]).choice(train, min(1000, len(train)), False)
        for workers in (1, 2):
            client = get_client(workers=workers, quiet=True)
            try:
                client.run(lambda: __import__("torch").set_num_threads(1))
                shotgun(
                    formulas[pick[:50]],
                    y[pick[:50]],
                    zoo=zoo_dir,
                    cv=2,
                    seed=SEED,
                    sources=names[:workers],
                    client=client,
                )  # warm-up: imports on workers
                t0 = time.perf_counter()
                shotgun(
                    formulas[pick],
                    y[pick],
                    zoo=zoo_dir,
                    cv=5,
                    seed=SEED,
                    learner=args.learner,
                    client=client,
                )
                scaling.append(
                    {
                        "workers": workers,
                        "sources": len(names),
                        "seconds": round(time.perf_counter() - t0, 2),
                    }
                )
                print(json.dumps(scaling[-1]))
            finally:
                close_client(client)
    report = {
        "protocol": "outer Matbench KFold(5, shuffle=True, random_state=18012019); n rows "
        "drawn from each outer training fold; inner 5-fold CV on them for selection; "
        "test = the outer test fold",
        "sources": len(names),
        "source_rows": args.source_rows,
        "source_epochs": args.source_epochs,
        "source_hidden": hidden,
        "source_build_seconds": round(build_seconds, 1),
        "learner": args.learner,
        "features": args.features,
        "top_k": args.top_k,
        "rows": rows,
        "curve": curve,
        "scaling": scaling,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    for point in curve:
        print(
            f"n={point['n']}: test MAE transfer {point['test_mae']:.3f} eV, "
            f"baseline {point['baseline_test_mae']:.3f} eV ({point['folds']} folds)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
