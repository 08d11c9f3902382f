"""Inverse design acceptance: XenonPy's iQSPR tutorial task, judged by models that never saw it.

The task (issue 7): molecules of ``iqspr_pubchemqc.csv`` (13,336 PubChemQC
molecules with ``E`` in kJ/mol and the ``HOMO-LUMO gap`` in eV) with
``E`` in (0, 200) and a gap below 3 eV; 0.6 % of the data lies there.

Protocol:

1. the rows are split in two halves A and B by a seeded permutation
   (``--split-seed``);
2. **design** sees half A only: the n-gram is trained on A's SMILES
   (:func:`xenonscale.design.train_ngram`, ``--order``), the forward models
   of each ``--variants`` likelihood (:data:`VARIANTS`; the design default
   ``consensus``: Bayesian ridge, a Tanimoto-kernel Gaussian process and
   Tanimoto neighbours on ECFP counts + MACCS, each of which must agree) are
   fitted on A, and :func:`xenonscale.design.design` runs ``--chains`` chains
   of ``--samples`` molecules over ``--steps`` steps (the tutorial's
   annealing schedule) on an embedded cluster of ``--workers`` processes,
   each chain starting from the molecules of A the likelihood rates highest
   (``consensus``, as ``xenonscale design --start best``) or from random ones
   (the other variants);
3. **evaluation** of the final populations (last step of every finished
   chain, pooled): validity (RDKit reads it), uniqueness (distinct valid /
   valid), novelty (distinct valid molecules absent from *all* the data, A
   and B, by canonical SMILES), and the in-target fraction according to
   forward models fitted on half **B** (never seen by the design; invalid
   molecules count as misses), next to the fraction by the design's own
   half-A models and by the same likelihood fitted on half B (a judge of the
   design's own family). Wall time of the design run (n-gram training and model
   fitting reported apart).

Run::

    XENONSCALE_DATA_DIR=../shared/data .venv/bin/python bench/design_iqspr.py
    .venv/bin/python bench/design_iqspr.py --chains 2 --steps 10   # a quick look
    .venv/bin/python bench/design_iqspr.py --json bench/results/design_iqspr.json

Outputs go to ``--workdir`` (default ``bench/results/design_iqspr/``,
git-ignored): the design Parquet + JSON and the two plots.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TARGETS = ["E=0:200", "HOMO-LUMO gap=:3"]
HERE = Path(__file__).resolve().parent


def _data_path(given: str | None) -> Path:
    if given:
        return Path(given)
    root = os.environ.get("XENONSCALE_DATA_DIR") or str(HERE.parent.parent / "shared" / "data")
    return Path(root) / "molecules" / "iqspr_pubchemqc.csv"


def _arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="iqspr_pubchemqc.csv (default: data mirror)")
    parser.add_argument("--samples", type=int, default=25)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--order", type=int, default=10, help="n-gram order")
    parser.add_argument("--seed", type=int, default=0, help="chains and n-gram seed")
    parser.add_argument("--split-seed", type=int, default=0, help="A/B split seed")
    parser.add_argument(
        "--reorder-prob",
        type=float,
        default=None,
        help="n-gram re-ordering chance (default: its own)",
    )
    parser.add_argument(
        "--del-range", type=int, nargs=2, default=None, help="n-gram deleted tokens (low high)"
    )
    parser.add_argument(
        "--metropolis",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Metropolis acceptance of proposals (default; --no-metropolis: XenonPy's step)",
    )
    parser.add_argument(
        "--variants",
        default="consensus,families+domain",
        help=f"likelihoods to compare, comma-separated, of {', '.join(VARIANTS)} (default: "
        "the design default 'consensus' and the earlier default 'families+domain')",
    )
    parser.add_argument("--workdir", default=str(HERE / "results" / "design_iqspr"))
    parser.add_argument("--json", default=None, help="write the figures here too")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


#: The likelihoods compared (``--variants``): forward models and applicability domain.
VARIANTS = {
    # the issue-7 default: one linear family, no domain
    "bayesian-ridge": {"models": "bayesian-ridge", "domain": None},
    # two families (linear + Tanimoto neighbours) mixed with their disagreement
    "families": {"models": "families", "domain": None},
    # the same, kept near the data: nearest-neighbour similarity 0.4 at least (soft)
    "families+domain": {"models": "families", "domain": 0.4},
    # closer still: 0.6
    "families+domain0.6": {"models": "families", "domain": 0.6},
    # linear + a Gaussian process on the MinMax kernel (its own, distance-aware std)
    "ridge+gp": {"models": "ridge+gp", "domain": None},
    # the same with the soft domain at 0.4
    "ridge+gp+domain": {"models": "ridge+gp", "domain": 0.4},
    # the Gaussian process alone (no linear member to extrapolate)
    "gp": {"models": "gp", "domain": None},
    # Tanimoto neighbours and the Gaussian process, mixed
    "knn+gp": {"models": "knn+gp", "domain": None},
    # the design default: ridge, GP and neighbours must each agree, chains start from the
    # molecules of half A the likelihood rates highest
    "consensus": {"models": "consensus", "domain": None, "start": "best"},
    # the same likelihood, chains started from random molecules of half A
    "consensus+random-start": {"models": "consensus", "domain": None},
}


def _likelihood(variant: str, half_a: pd.DataFrame, names: list[str]):
    from sklearn.linear_model import BayesianRidge

    from xenonscale.design import Likelihood
    from xenonscale.design.families import FamilyEnsemble, consensus_members
    from xenonscale.design.gaussian_process import TanimotoGP
    from xenonscale.design.neighbors import TanimotoNeighbors

    setting = VARIANTS[variant]
    combine = "mixture"
    if setting["models"] == "families":
        models = {name: FamilyEnsemble() for name in names}
    elif setting["models"] == "ridge+gp":
        models = {name: FamilyEnsemble([BayesianRidge(), TanimotoGP()]) for name in names}
    elif setting["models"] == "consensus":
        models = {name: FamilyEnsemble(consensus_members()) for name in names}
        combine = "consensus"
    elif setting["models"] == "gp":
        models = {name: TanimotoGP() for name in names}
    elif setting["models"] == "knn+gp":
        models = {name: FamilyEnsemble([TanimotoNeighbors(), TanimotoGP()]) for name in names}
    else:
        models = {name: BayesianRidge() for name in names}
    return Likelihood(TARGETS, models=models, domain=setting["domain"], combine=combine).fit(
        half_a["SMILES"].tolist(), half_a[names]
    )


def main(argv=None) -> dict:
    from xenonscale.cluster import close_client, get_client
    from xenonscale.design import design, parse_targets, train_ngram
    from xenonscale.design.judging import JUDGES, IndependentJudges
    from xenonscale.design.metrics import canonical_smiles
    from xenonscale.viz.design import property_space_figure, trajectory_figure

    args = _arguments(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants {unknown}: choose from {', '.join(VARIANTS)}")
    data = pd.read_csv(_data_path(args.data))
    names = ["E", "HOMO-LUMO gap"]
    order = np.random.default_rng(args.split_seed).permutation(len(data))
    half_a = data.iloc[order[: len(data) // 2]].reset_index(drop=True)
    half_b = data.iloc[order[len(data) // 2 :]].reset_index(drop=True)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    settings = {}
    if args.reorder_prob is not None:
        settings["reorder_prob"] = args.reorder_prob
    if args.del_range is not None:
        settings["del_range"] = tuple(args.del_range)

    tick = time.perf_counter()
    judges = IndependentJudges(TARGETS, seed=args.split_seed).fit(
        half_b["SMILES"].tolist(), half_b[names]
    )
    judge_seconds = time.perf_counter() - tick
    judge_scores = judges.scores(half_a["SMILES"].tolist(), half_a[names])
    known = set(canonical_smiles(data["SMILES"].tolist()))
    in_target_data = np.logical_and.reduce(
        [t.contains(data[t.name]) for t in parse_targets(TARGETS)]
    )
    truth_a = np.logical_and.reduce([t.contains(half_a[t.name]) for t in parse_targets(TARGETS)])
    verdict_a = judges.verdict(half_a["SMILES"].tolist())
    report = {
        "task": "iqspr_pubchemqc, targets " + " and ".join(TARGETS),
        "data_rows": len(data),
        "data_in_target": float(in_target_data.mean()),
        "settings": {
            "samples": args.samples,
            "steps": args.steps,
            "chains": args.chains,
            "workers": args.workers,
            "order": args.order,
            "seed": args.seed,
            "split_seed": args.split_seed,
            "metropolis": args.metropolis,
        },
        "judges": {
            "fit_seconds": round(judge_seconds, 1),
            "held_out_scores_on_half_a": judge_scores,
            # how the judges see real molecules: half A's true in-target rows
            "half_a_in_target_true": int(truth_a.sum()),
            "half_a_true_in_target_judged_in_target": {
                judge: float(verdict_a[f"in_target_{judge}"].to_numpy()[truth_a].mean())
                for judge in JUDGES
            },
            "half_a_judged_in_target": {
                judge: float(verdict_a[f"in_target_{judge}"].mean()) for judge in JUDGES
            },
        },
        "variants": {},
    }
    client = get_client(workers=args.workers, quiet=True)
    try:
        tick = time.perf_counter()
        ngram = train_ngram(
            half_a["SMILES"].tolist(), order=args.order, client=client, seed=args.seed,
            progress=progress, **settings,
        )  # fmt: skip
        report["ngram_training_seconds"] = round(time.perf_counter() - tick, 1)
        report["settings"]["ngram"] = {
            "del_range": [int(v) for v in np.atleast_1d(ngram.del_range)],
            "reorder_prob": ngram.reorder_prob,
        }
        for variant in variants:
            tick = time.perf_counter()
            likelihood = _likelihood(variant, half_a, names)
            fit_seconds = time.perf_counter() - tick
            start = None  # random molecules of half A
            if VARIANTS[variant].get("start") == "best":
                start = likelihood.most_likely(
                    half_a["SMILES"].tolist(), args.chains * args.samples
                )
            result = design(
                likelihood,
                ngram,
                workdir / f"design_{variant}.parquet",
                chains=args.chains,
                samples=args.samples,
                steps=args.steps,
                seed=args.seed,
                metropolis=args.metropolis,
                start=start,
                reference=half_a["SMILES"].tolist(),
                client=client,
                progress=progress,
            )
            frame = result.frame()
            # the same likelihood fitted on half B: a judge of the design's own family
            same_family = _likelihood(variant, half_b, names)
            report["variants"][variant] = _judge_variant(
                frame, result, likelihood, judges, known, fit_seconds, same_family
            )
            report["variants"][variant]["setting"] = VARIANTS[variant]
            property_space_figure(
                frame, TARGETS, reference=half_a[names], title=f"iQSPR ({variant}, half A models)"
            ).savefig(workdir / f"property_space_{variant}.png", dpi=110)
            trajectory_figure(frame, title=f"{variant}: " + " and ".join(TARGETS)).savefig(
                workdir / f"trajectory_{variant}.png", dpi=110
            )
    finally:
        close_client(client)
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return report


def _judge_variant(frame, result, likelihood, judges, known, fit_seconds, same_family) -> dict:
    from xenonscale.design import population_metrics
    from xenonscale.design.judging import JUDGES

    done = [c.chain for c in result.chains if c.status == "done"]
    last = frame.groupby("chain")["step"].transform("max")
    final = frame[(frame["step"] == last) & frame["chain"].isin(done)].reset_index(drop=True)
    start = frame[frame["step"] == 0].reset_index(drop=True)
    verdict = judges.verdict(final["smiles"].tolist())
    start_verdict = judges.verdict(start["smiles"].tolist())
    figures = population_metrics(
        final["smiles"].tolist(), reference=known, reference_is_canonical=True
    )
    out = {
        "forward_models": likelihood.std_source_,
        "chains_done": len(done),
        "chain_errors": [c.error for c in result.chains if c.status != "done"],
        "final_molecules": len(final),
        "validity": figures["validity"],
        "uniqueness": figures["uniqueness"],
        "novelty_vs_all_data": figures["novelty"],
        "in_target_by_design_models": float(final["in_target"].mean()),
        "start_in_target_by_design_models": float(start["in_target"].mean()),
        "design_seconds": round(result.seconds, 1),
        "forward_model_fit_seconds": round(fit_seconds, 1),
    }
    for judge in JUDGES:
        out[f"in_target_by_{judge}"] = float(verdict[f"in_target_{judge}"].mean())
        out[f"start_in_target_by_{judge}"] = float(start_verdict[f"in_target_{judge}"].mean())
    # a chain settles on one family of molecules: the judges' share per chain shows the spread
    out["per_chain_in_target_by_random_forest"] = [
        round(float(v), 3)
        for v in verdict["in_target_random_forest"].groupby(final["chain"].to_numpy()).mean()
    ]
    out["in_target_by_same_family_on_half_b"] = float(
        same_family.evaluate(final["smiles"].tolist())["in_target"].mean()
    )
    out["in_target_by_both_judges"] = float(
        np.logical_and.reduce([verdict[f"in_target_{j}"] for j in JUDGES]).mean()
    )
    if "domain_similarity" in final:
        out["final_domain_similarity_median"] = float(final["domain_similarity"].median())
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
