"""``xenonscale design``: iQSPR inverse design, many SMC chains on Dask, with plots.

Examples
--------
::

    xenonscale design iqspr_pubchemqc.csv --column SMILES \\
        --target-range "E=0:200" --target-range "HOMO-LUMO gap=:3" \\
        --samples 25 --steps 50 --chains 8 --workers 2 --seed 0 -o design/run.parquet
    xenonscale design data.csv --column smiles --target-range "gap=:3" \\
        --ngram moses.ngram --scheduler tcp://10.0.0.5:8786 -o run.parquet --no-plots

Writes ``OUT.parquet`` (every step of every chain), ``OUT.json`` (summary:
chain status, figures of the final populations, settings) and, unless
``--no-plots``, ``OUT_property_space.png`` and ``OUT_trajectory.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from xenonscale.cli import options
from xenonscale.cli.command import Command
from xenonscale.cli.inputs import ExistingPath
from xenonscale.cli.types import POSITIVE_INT, Choice
from xenonscale.errors import ConfigError

__all__ = ["design"]

#: ``--fingerprint-models`` choices (molecules); the first is the default.
FINGERPRINT_MODELS = ["consensus", "families", "gaussian-process", "bayesian-ridge"]


def _read(path: str, text: str, smiles_column: str, columns: list[str]):
    from xenonscale.cli.tables import read_frame

    frame = read_frame(path, "DATA")
    missing = [c for c in [smiles_column, *columns] if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"DATA {text!r} has no column(s) {missing}; it has {list(frame.columns)} "
            "(--column names the SMILES, --target-range names property columns)"
        )
    frame = frame[frame[smiles_column].notna()].reset_index(drop=True)
    frame[smiles_column] = frame[smiles_column].astype(str)
    return frame


@click.command(cls=Command)
@options.input_argument("data")
@options.column()
@options.kind(default="molecule", show_default=True)
@click.option(
    "--forward-model",
    "zoo_models",
    multiple=True,
    metavar="PROP=REF",
    help="a zoo model as the forward model of a target property (its own uncertainty when "
    "it is an ensemble, else its validation RMSE), e.g. 'gap=mp-gap@2'; repeat per property",
)
@click.option(
    "--fingerprint-models",
    type=Choice(FINGERPRINT_MODELS),
    default="consensus",
    show_default=True,
    help="--kind molecule, properties without --forward-model: 'consensus' asks Bayesian "
    "ridge, a Tanimoto-kernel Gaussian process (up to 20,000 rows of DATA; more: without it) "
    "and Tanimoto neighbours each to put a candidate in range; 'families' mixes ridge and "
    "neighbours with their disagreement in the std; 'gaussian-process' mixes ridge and the "
    "Gaussian process; 'bayesian-ridge' alone",
)
@click.option(
    "--start",
    type=Choice(["best", "random"]),
    default=None,
    help="where chains start: 'best' (default for molecules), the chains × samples molecules "
    "of DATA the likelihood rates highest, each chain drawing its own; 'random' (default for "
    "compositions), random ones of DATA (compositions: inside the candidate space)",
)
@click.option(
    "--min-similarity",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="--kind molecule: an applicability domain, a soft penalty below this Tanimoto "
    "similarity to the nearest molecule of DATA (0 < S < 1), e.g. 0.4; default none",
)
@click.option(
    "--no-domain",
    is_flag=True,
    help="--kind molecule: no applicability-domain penalty (the default; overrides "
    "--min-similarity)",
)
@click.option(
    "--candidate-elements",
    "elements",
    default=None,
    metavar="A,B,...",
    help="--kind composition: the elements candidates may hold (default: those of DATA)",
)
@options.atoms("max_atoms", default=20, show_default=True)
@options.charge_balanced()
@options.target_range("targets", required=True)
@click.option(
    "--ngram",
    type=ExistingPath("n-gram model folder"),
    default=None,
    help="n-gram model folder (xenonscale ngram train); default: train one on DATA",
)
@options.order(default=10, show_default=True)
@click.option("--save-ngram", default=None, metavar="PATH", help="keep the trained n-gram here")
@click.option(
    "--samples",
    type=POSITIVE_INT,
    default=25,
    show_default=True,
    help="population size of each chain",
)
@click.option(
    "--steps",
    type=POSITIVE_INT,
    default=None,
    help="SMC steps (default 50: XenonPy's tutorial schedule; others interpolate it)",
)
@click.option(
    "--chains", type=POSITIVE_INT, default=4, show_default=True, help="independent chains"
)
@options.workers()
@options.scheduler()
@options.seed(default=0, show_default=True)
@click.option(
    "--metropolis/--no-metropolis",
    default=True,
    show_default=True,
    help="accept a proposal with probability min(1, L(child)^β / L(parent)^β), else "
    "keep the parent; --no-metropolis: every proposal replaces its parent (XenonPy)",
)
@click.option("--no-plots", is_flag=True, help="skip the PNG plots")
@options.no_progress()
@options.output(required=True)
@options.zoo_options
def design(
    data,
    column,
    kind,
    zoo_models,
    fingerprint_models,
    start,
    min_similarity,
    no_domain,
    elements,
    max_atoms,
    charge_balanced,
    targets,
    ngram,
    order,
    save_ngram,
    samples,
    steps,
    chains,
    workers,
    scheduler,
    seed,
    metropolis,
    no_plots,
    no_progress,
    output,
    zoo,
    artifacts,
    storage_options,
) -> int:
    """Inverse design (iQSPR): SMC chains on Dask toward property targets.

    Fits forward models per target property on DATA (for molecules, on ECFP
    counts + MACCS: Bayesian ridge, a Tanimoto-kernel Gaussian process and
    Tanimoto neighbours, each of which must put a candidate in range; for
    compositions, BayesianRidge on XenonPy's pooled element descriptors), or
    uses the zoo models given with --forward-model. Molecule chains start from
    the molecules of DATA the models rate highest (--start). Molecules move
    by an n-gram SMILES model trained on DATA (or --ngram); compositions by
    element substitutions, additions, removals and amount changes within
    --candidate-elements and --atoms (--charge-balanced keeps them neutral). Runs
    --chains annealed SMC chains of --samples candidates over --steps steps on
    Dask. DATA is a CSV or Parquet table of SMILES or formulas and properties,
    or dataset:NAME. -o is the Parquet file of every step of every chain;
    X.json beside it summarizes. Exit status 1 when a chain failed.
    """
    from xenonscale.cluster import close_client, get_client
    from xenonscale.design import Likelihood, NGram, parse_targets, train_ngram
    from xenonscale.design import design as run_design

    out = Path(output)
    if out.suffix != ".parquet":
        raise ConfigError(f"-o {output!r}: the output is a Parquet file, e.g. run.parquet")
    if column is None and data.dataset is None:
        what = "SMILES" if kind == "molecule" else "formula"
        raise ConfigError(f"--column: name the {what} column of DATA {data.text!r}")
    if kind not in ("molecule", "composition"):
        raise ConfigError(f"--kind {kind!r}: design makes molecules or compositions")
    if kind == "molecule" and (elements or charge_balanced):
        raise ConfigError(
            "--candidate-elements and --charge-balanced apply to --kind composition only"
        )
    if kind == "composition" and (ngram or save_ngram):
        raise ConfigError("--ngram and --save-ngram apply to --kind molecule only")
    if kind == "composition" and min_similarity is not None:
        raise ConfigError("--min-similarity applies to --kind molecule only")
    targets = parse_targets(list(targets))
    names = [t.name for t in targets]
    models = _zoo_forward_models(zoo_models, names, zoo, artifacts, storage_options)
    path, column = data.resolve(column)
    frame = _read(path, data.text, column, [n for n in names if n not in models])
    smiles = frame[column].tolist()
    start = start or ("best" if kind == "molecule" else "random")
    families = {}  # fingerprint models of the properties without a zoo model (checked now)
    if kind == "molecule" and fingerprint_models != "bayesian-ridge":
        families = {n: _family(fingerprint_models, len(frame)) for n in names if n not in models}
    combine = "consensus" if kind == "molecule" and fingerprint_models == "consensus" else "mixture"
    progress = not no_progress
    started = time.perf_counter()
    client = get_client(scheduler, workers=workers, quiet=not progress)
    try:
        if kind == "composition":
            model = _composition_proposal(smiles, elements, max_atoms, charge_balanced)
            ngram_info = {
                "moves": "composition",
                "elements": model.elements,
                "max_atoms": model.max_atoms,
                "charge_balanced": charge_balanced,
            }
        elif ngram:
            model = NGram.load(ngram)
            ngram_info = {"path": ngram}
        else:
            tick = time.perf_counter()
            model = train_ngram(smiles, order=order, client=client, seed=seed, progress=progress)
            ngram_info = {
                "trained_on": data.text,
                "order": order,
                "seconds": round(time.perf_counter() - tick, 2),
            }
            if save_ngram:
                model.save(save_ngram)
                ngram_info["path"] = save_ngram
        tick = time.perf_counter()
        fitted = families | dict(models)
        domain = None if (kind != "molecule" or no_domain) else min_similarity
        likelihood = Likelihood(
            targets, models=fitted, kind=kind, domain=domain, combine=combine
        ).fit(smiles, frame.reindex(columns=names))
        fit_seconds = time.perf_counter() - tick
        pool = None  # chains draw from DATA (reference) at random
        if kind == "composition":  # chains start from DATA's formulas inside the space
            pool = [f for f in dict.fromkeys(model.canonical(smiles)) if f and model.allowed(f)]
            if not pool:
                raise ConfigError(
                    f"no formula of DATA {data.text!r} lies inside --candidate-elements/--atoms"
                    f"{'/--charge-balanced' if charge_balanced else ''}: widen them"
                )
        if start == "best":
            pool = likelihood.most_likely(pool or smiles, chains * samples)
        result = run_design(
            likelihood,
            model,
            out,
            start=pool,
            chains=chains,
            samples=samples,
            steps=steps,
            seed=seed,
            metropolis=metropolis,
            reference=smiles,
            client=client,
            progress=progress,
        )
    finally:
        close_client(client)
    summary = {
        **result.summary,
        "data": data.text,
        "kind": kind,
        "smiles_column": column,
        "zoo_models": {name: str(model.ref) for name, model in models.items()},
        "fingerprint_models": fingerprint_models if kind == "molecule" else None,
        "families": {n: [type(m).__name__ for m in f.members] for n, f in families.items()},
        "combine": combine,
        "start": start,
        "min_similarity": likelihood.domain,
        "targets": [str(t) for t in targets],
        "invalid_training_smiles": likelihood.n_invalid_smiles_,
        "forward_model_fit_seconds": round(fit_seconds, 2),
        "ngram": ngram_info,
        "total_seconds": round(time.perf_counter() - started, 2),
        "plots": {},
    }
    if not no_plots:
        summary["plots"] = _plots(result, targets, frame.reindex(columns=names), out)
    result.summary_path.write_text(json.dumps(summary, indent=1, allow_nan=False, default=str))
    m = result.metrics
    if m:
        noun = "molecules" if kind == "molecule" else "compositions"
        click.echo(
            f"final populations: {m['n']} {noun}, valid {m['validity']:.1%}, unique "
            f"{m['uniqueness']:.1%}, novel {m['novelty']:.1%}, in target {m['in_target']:.1%}"
        )
    click.echo(
        f"{result.rows} rows in {result.seconds:.1f} s → {out}; summary {result.summary_path}"
    )
    for status in result.failed:
        click.echo(
            f"chain {status.chain} failed at step {status.failed_step}: {status.error}", err=True
        )
    return 1 if result.failed else 0


def _family(choice: str, rows: int):
    """The FamilyEnsemble of a --fingerprint-models choice; without the Gaussian process
    (consensus: said on stderr) or refused (gaussian-process) when DATA is too big for it."""
    from xenonscale.design import FamilyEnsemble, TanimotoGP
    from xenonscale.design.families import consensus_members, gaussian_process_members

    if choice == "families":
        return FamilyEnsemble()
    limit = TanimotoGP().max_rows
    if choice == "consensus":
        members = consensus_members()
        if rows > limit:
            click.echo(
                f"DATA has {rows:,} rows, the Gaussian process takes at most {limit:,}: "
                "the consensus is Bayesian ridge and Tanimoto neighbours",
                err=True,
            )
            members = [m for m in members if not isinstance(m, TanimotoGP)]
        return FamilyEnsemble(members)
    if rows > limit:
        raise ConfigError(
            f"--fingerprint-models gaussian-process: DATA has {rows:,} rows, the Gaussian "
            f"process takes at most {limit:,}; use --fingerprint-models families"
        )
    return FamilyEnsemble(gaussian_process_members())


def _zoo_forward_models(given, names, zoo, artifacts, storage_options) -> dict:
    """``PROP=REF`` → ``{prop: ZooModel}`` for the Likelihood; each PROP must be a target."""
    if not given:
        return {}
    pairs = {}
    for text in given:
        prop, sep, ref = str(text).partition("=")
        if not sep or not prop or not ref:
            raise ConfigError(f"--forward-model {text!r}: write PROP=REF, e.g. 'gap=mp-gap@2'")
        if prop not in names:
            raise ConfigError(
                f"--forward-model {text!r}: {prop!r} is no --target-range; targets: {names}"
            )
        pairs[prop] = ref
    opened = options.open_zoo(zoo, artifacts, storage_options)
    return {prop: opened.load(ref) for prop, ref in pairs.items()}


def _composition_proposal(formulas, elements, max_atoms, charge_balanced):
    from xenonscale.design.compositions import CompositionProposal, canonical_formulas

    if elements:
        chosen = [e.strip() for e in elements.split(",") if e.strip()]
    else:
        from pymatgen.core import Composition

        seen = dict.fromkeys(
            str(el) for f in canonical_formulas(formulas) if f for el in Composition(f).elements
        )
        chosen = sorted(seen)
    return CompositionProposal(chosen, max_atoms=max_atoms, charge_balanced=charge_balanced)


def _plots(result, targets, reference, output: Path) -> dict[str, str]:
    from xenonscale.viz.design import property_space_figure, trajectory_figure

    frame = result.frame()
    if not len(frame):
        return {}
    stem = output.with_suffix("")
    plots = {}
    title = ", ".join(str(t) for t in targets)
    path = Path(f"{stem}_property_space.png")
    property_space_figure(frame, targets, reference=reference, title=title).savefig(path, dpi=110)
    plots["property_space"] = path.name
    path = Path(f"{stem}_trajectory.png")
    trajectory_figure(frame, title=title).savefig(path, dpi=110)
    plots["trajectory"] = path.name
    return plots
