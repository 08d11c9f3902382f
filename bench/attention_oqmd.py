"""Attention vs MLP on OQMD formation enthalpies, scored on the held-out validation file.

The issue-14 acceptance run. It featurizes the shared OQMD train and
validation files (CrabNet's split: 239,190 + 51,255 formulas) once with
XenonPy's ``classic`` descriptors on ``xenonpy58`` (290 features; the store
also keeps each row's composition as element slots) on an embedded 2-worker
cluster, then trains in the same run:

* the default **MLP** on the pooled features (as ``bench/train_oqmd.py``), and
* the **attention** model on the compositions (``--elements`` embedding table),

both on the train file with a 10 % random validation split for early
stopping, and scores their best weights on the validation *file* — formulas
neither model saw. Rows with ``|target| > 5 eV/atom`` are excluded from the
headline score (as CrabNet's OQMD figure does; they are counted and the
score with them is printed too). Each model's learning curve (validation MAE
per epoch) is drawn side by side, and when training stopped on the time
budget rather than converging, a power law ``a + b·epoch^-c`` fitted to the
curve's second half projects the score at ``--project-epochs``.

Run (CPU here; ``--accelerator gpu`` on a GPU machine)::

    .venv/bin/python bench/attention_oqmd.py --minutes 80 --max-epochs 1000
    .venv/bin/python bench/attention_oqmd.py --accelerator gpu --max-epochs 300 \\
        --batch-size 1024 --minutes 120 --json bench/results/attention_oqmd_gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

EXCLUDE_ABOVE = 5.0  # eV/atom


def project(history: list[dict], epochs: int) -> float | None:
    """Validation MAE at ``epochs`` from ``a + b·e^-c`` fitted to the curve's second half."""
    from scipy.optimize import curve_fit

    points = [(r["epoch"] + 1, r["val_mae"]) for r in history if "val_mae" in r]
    if len(points) < 8:
        return None
    e, mae = (np.asarray(v, dtype=np.float64) for v in zip(*points[len(points) // 2 :],
                                                             strict=True))  # fmt: skip
    mae = np.minimum.accumulate(mae)  # the best so far: what early stopping keeps
    try:
        params, _ = curve_fit(lambda x, a, b, c: a + b * x ** (-c), e, mae,
                              p0=(mae[-1] * 0.8, mae[0], 0.5), maxfev=20_000)  # fmt: skip
    except RuntimeError:
        return None
    a, b, c = params
    return float(a + b * epochs ** (-c))


def score(model, group, inputs: str) -> dict:
    """Held-out metrics of ``model`` on a store, with and without ``|y| > 5``."""
    from xenonscale.models.backbones import predict_array
    from xenonscale.models.data import read_inputs
    from xenonscale.models.metrics import regression_metrics

    y = np.asarray(group["target"][:], dtype=np.float64)
    ok = np.asarray(group["ok"][:], dtype=bool) & np.isfinite(y)
    if inputs == "composition":
        ok &= np.asarray(group["composition_element"][:, 0]) > 0
    rows = np.flatnonzero(ok)
    predicted = predict_array(model, read_inputs(group, rows, inputs))[:, 0]
    inside = np.abs(y[rows]) <= EXCLUDE_ABOVE
    return {
        "rows": len(rows),
        "excluded_above_5": int((~inside).sum()),
        "mae": regression_metrics(y[rows][inside], predicted[inside])["mae"],
        "mae_all_rows": regression_metrics(y[rows], predicted)["mae"],
        "rmse": regression_metrics(y[rows][inside], predicted[inside])["rmse"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="bench/results")
    parser.add_argument("--models", default="mlp,attention")
    parser.add_argument(
        "--minutes",
        type=float,
        default=40.0,
        help="wall-time budget of the attention model's training",
    )
    parser.add_argument(
        "--mlp-minutes", type=float, default=12.0, help="wall-time budget of the MLP's training"
    )
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--lr", type=float, default=None, help="default: 2e-3 for the MLP, 1e-3 for attention"
    )
    parser.add_argument(
        "--scheduler",
        default="cosine",
        choices=["cosine", "plateau"],
        help="cosine anneals to 0 as the time budget (or --max-epochs) ends",
    )
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--elements", default="mat2vec")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--project-epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import zarr

    from xenonscale import datasets
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.models.training import train_model
    from xenonscale.store.layout import StoreLocation

    work = Path(args.workdir)
    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    stores = {}
    client = get_client(workers=2, quiet=True)
    try:
        for part in ("train", "val"):
            stores[part] = str(work / f"oqmd_{part}_classic_slots.zarr")
            source = str(datasets.fetch(f"oqmd_formation_enthalpy_{part}"))
            featurize_to_store(source, stores[part], spec, column="formula", client=client,
                               progress=False)  # fmt: skip
    finally:
        close_client(client)
    val = zarr.open_group(StoreLocation(stores["val"]).zarr_store(), mode="r")

    report = {
        "machine": f"{platform.node()}, {platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/attention_oqmd.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "excluded": f"|target| > {EXCLUDE_ABOVE} eV/atom (counted per model)",
        "models": {},
    }
    for backbone in args.models.split(","):
        options = {}
        if backbone == "attention":
            options = {"elements": args.elements, "d_model": args.d_model,
                       "layers": args.layers, "heads": args.heads}  # fmt: skip
        started = time.perf_counter()
        result = train_model(
            stores["train"], "target", output=work / f"oqmd-{backbone}",
            backbone=backbone, backbone_options=options or None,
            max_epochs=args.max_epochs,
            max_minutes=args.mlp_minutes if backbone == "mlp" else args.minutes,
            batch_size=args.batch_size, seed=args.seed, progress=False,
            accelerator=args.accelerator, patience=args.patience, scheduler=args.scheduler,
            dropout=args.dropout,
            lr=args.lr or (2e-3 if backbone == "mlp" else 1e-3),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        held_out = score(result.model, val, result.data.inputs)
        epochs = len(result.history)
        train_rows = result.data.counts["train"]
        report["models"][backbone] = {
            "options": options,
            "epochs": epochs,
            "seconds": round(seconds, 1),
            "train_samples_per_s": round(train_rows * epochs / seconds, 1),
            "best_val_split_mae": result.card["training"]["best_val_mae"],
            "held_out": held_out,
            f"projected_mae_at_{args.project_epochs}_epochs": project(result.history,
                                                                     args.project_epochs),
            "history": [{k: r[k] for k in ("epoch", "val_mae", "train_loss", "lr") if k in r}
                        for r in result.history],
        }  # fmt: skip
        print(f"{backbone:9s} {epochs:3d} epochs in {seconds / 60:5.1f} min: held-out MAE "
              f"{held_out['mae']:.4f} eV/atom ({held_out['excluded_above_5']} rows > 5 "
              f"excluded; {held_out['mae_all_rows']:.4f} with them)", flush=True)  # fmt: skip
    _plot(report, work / "attention_oqmd_learning_curves.png")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "history"}
                      for k, v in report["models"].items()}, indent=1))  # fmt: skip


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, model in report["models"].items():
        history = model["history"]
        ax.plot([r["epoch"] + 1 for r in history], [r["val_mae"] for r in history],
                label=f"{name}: held-out {model['held_out']['mae']:.4f}")  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAE (eV/atom)")
    ax.set_yscale("log")
    ax.set_title("OQMD formation enthalpy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot {path}")


if __name__ == "__main__":
    main()
