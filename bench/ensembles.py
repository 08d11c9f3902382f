"""Deep-ensemble calibration on a held-out split: ±2σ coverage, ensemble MAE vs members' MAE.

Matbench ``expt_gap`` (4,604 experimental band gaps, eV) featurized with
``classic`` descriptors (``xenonpy58`` table) into a temporary store; one
random split (``--seed``): 70 % training, 10 % validation (early stopping,
best weights and the noise std), 20 % **test, never seen in training**. An
ensemble of ``--members`` MLPs is trained by
:func:`xenonscale.workflows.ensembles.train_ensemble` (members as parallel
Dask tasks on ``--workers`` local worker processes, all on the same split,
seeds ``seed..seed+N-1``). Printed per split (val, test): the members' MAE,
their mean, the ensemble's MAE, the fraction of targets inside ±2σ with σ the
members' spread alone and with the total std ``sqrt(σ² + noise²)`` (noise
estimated on val: the design likelihood's std), and the mean σ. A
calibrated Gaussian puts 95.4 % inside ±2σ.

Run::

    .venv/bin/python bench/ensembles.py                       # 5 members, ~minutes on 2 cores
    .venv/bin/python bench/ensembles.py --members 3 --max-epochs 20 --json bench/results/e.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="matbench_expt_gap.csv")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-epochs", type=int, default=60)
    parser.add_argument("--hidden", default="256,128,64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    from xenonscale.cluster import close_client, get_client
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows.ensembles import GAUSSIAN_2SIGMA, train_ensemble

    data = Path(os.environ.get("XENONSCALE_DATA_DIR", "../shared/data"))
    source = data / "compositions" / args.dataset
    folder = Path(tempfile.mkdtemp(prefix="bench-ensembles-"))
    spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
    client = get_client(workers=args.workers, quiet=True)
    try:
        started = time.perf_counter()
        store = str(folder / "store.zarr")
        featurize_to_store(str(source), store, spec, column="formula", client=client,
                           chunk_rows=1000, progress=False)  # fmt: skip
        featurized = time.perf_counter() - started
        started = time.perf_counter()
        result = train_ensemble(
            store, "target", members=args.members, client=client, name="bench-ensemble",
            output=folder / "ensemble", seed=args.seed,
            hidden=[int(w) for w in args.hidden.split(",")], max_epochs=args.max_epochs,
            patience=10, batch_size=128, accelerator="cpu", progress=False,
            data_options={"val_fraction": 0.1, "test_fraction": 0.2},
        )  # fmt: skip
        trained = time.perf_counter() - started
    finally:
        close_client(client)
    card = result.card
    report = {"dataset": args.dataset, "members": args.members, "seed": args.seed,
              "counts": {k: card["split"]["counts"][k] for k in ("train", "val", "test")},
              "featurize_seconds": round(featurized, 1), "train_seconds": round(trained, 1),
              "noise_std": card["ensemble"]["noise_std"]["target"], "splits": {}}  # fmt: skip
    print(f"{args.dataset}: {report['counts']}, {args.members} members, hidden {args.hidden}, "
          f"featurized {featurized:.0f} s, trained {trained:.0f} s")  # fmt: skip
    print(f"noise std (val): {report['noise_std']:.4f}; Gaussian ±2σ: {GAUSSIAN_2SIGMA:.3f}")
    for split in ("val", "test"):
        ours = card["metrics"][split]
        members = [m[split]["mae"] for m in card["ensemble"]["members"]]
        row = {
            "member_mae": members,
            "members_mean_mae": card["ensemble"]["member_mean"][split]["mae"],
            "ensemble_mae": ours["mae"],
            "within_2sigma": ours["within_2sigma"],
            "within_2sigma_total": ours["within_2sigma_total"],
            "mean_std": ours["mean_std"],
        }
        report["splits"][split] = row
        print(f"{split:>4}: members' MAE {', '.join(f'{m:.4f}' for m in members)} "
              f"(mean {row['members_mean_mae']:.4f}); ensemble MAE {row['ensemble_mae']:.4f}; "
              f"inside ±2σ {row['within_2sigma']:.3f} (spread), "
              f"{row['within_2sigma_total']:.3f} (spread + noise); "
              f"mean σ {row['mean_std']:.4f}")  # fmt: skip
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
