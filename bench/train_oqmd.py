"""The issue-5 acceptance run: an OQMD formation-enthalpy source model from composition alone.

Featurizes the shared OQMD train and validation files (CrabNet's split:
239,190 + 51,255 formulas) with XenonPy's ``classic`` descriptors on the
``xenonpy58`` table (290 features) on an embedded 2-worker cluster, trains
the default MLP (512-256-128, batch norm, AdamW, MAE loss, plateau schedule,
early stopping) on the train file with a 10 % random validation split and
the outlier rule (targets beyond 10 robust σ dropped: counted), then scores
the best weights on the held-out validation *file* — rows the model never
saw, outliers included and excluded. Prints and optionally writes JSON.

Run::

    .venv/bin/python bench/train_oqmd.py                 # ~60 epochs, about 10 min on 2 cores
    .venv/bin/python bench/train_oqmd.py --max-epochs 120 --json bench/results/oqmd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="bench/results")
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from xenonscale import datasets
    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.models.data import read_rows
    from xenonscale.models.metrics import regression_metrics
    from xenonscale.models.training import predict_array, train_model
    from xenonscale.store.layout import StoreLocation

    work = Path(args.workdir)
    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    stores = {}
    client = get_client(workers=2, quiet=True)
    try:
        for part in ("train", "val"):
            stores[part] = str(work / f"oqmd_{part}_classic.zarr")
            source = str(datasets.fetch(f"oqmd_formation_enthalpy_{part}"))
            featurize_to_store(source, stores[part], spec, column="formula", client=client,
                               progress=False)  # fmt: skip
    finally:
        close_client(client)
    started = time.perf_counter()
    result = train_model(stores["train"], "target", output=work / "oqmd-model",
                         max_epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed, progress=False, accelerator="cpu",
                         patience=15)  # fmt: skip
    seconds = time.perf_counter() - started

    import zarr

    group = zarr.open_group(StoreLocation(stores["val"]).zarr_store(), mode="r")
    y = np.asarray(group["target"][:], dtype=np.float64)
    rows = np.flatnonzero(np.asarray(group["ok"][:]) & np.isfinite(y))
    pred = predict_array(result.model, read_rows(group["features"], rows))[:, 0]
    low, high = (float(b[0]) for b in result.data.bounds)
    inside = (y[rows] >= low) & (y[rows] <= high)
    held_out = regression_metrics(y[rows][inside], pred[inside])
    held_out_all = regression_metrics(y[rows], pred)
    report = {
        "machine": f"{platform.node()}, {platform.machine()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "epochs": result.card["training"]["epochs"],
        "best_epoch": result.card["training"]["best_epoch"],
        "train_seconds": round(seconds, 1),
        "counts": result.card["split"]["counts"],
        "validation_split": result.metrics["val"],
        "val_file": held_out,
        "val_file_outliers_excluded": int((~inside).sum()),
        "val_file_with_outliers": held_out_all,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
