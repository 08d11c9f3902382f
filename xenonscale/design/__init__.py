"""Inverse molecular design (iQSPR): extended SMILES, n-gram proposals, likelihoods,
sequential Monte Carlo, and an ensemble of chains on Dask.

Examples
--------
>>> import xenonscale.design as design
>>> isinstance(design.__all__, list)
True
"""

from xenonscale.design.ensemble import ChainStatus, DesignResult, design
from xenonscale.design.families import FamilyEnsemble
from xenonscale.design.gaussian_process import TanimotoGP
from xenonscale.design.judging import IndependentJudges
from xenonscale.design.likelihood import Likelihood, default_featurizer, log_probability_between
from xenonscale.design.metrics import canonical_smiles, population_metrics
from xenonscale.design.neighbors import TanimotoNeighbors
from xenonscale.design.ngram import NGram
from xenonscale.design.ngram_training import train_ngram
from xenonscale.design.smc import DEFAULT_BETAS, SMC, ChainState, annealing_schedule
from xenonscale.design.targets import Target, parse_target, parse_targets
from xenonscale.design.tokens import extend, to_smiles, tokenize

__all__: list[str] = [
    "DEFAULT_BETAS",
    "SMC",
    "ChainState",
    "ChainStatus",
    "DesignResult",
    "FamilyEnsemble",
    "IndependentJudges",
    "Likelihood",
    "NGram",
    "TanimotoGP",
    "TanimotoNeighbors",
    "Target",
    "annealing_schedule",
    "canonical_smiles",
    "default_featurizer",
    "design",
    "extend",
    "log_probability_between",
    "parse_target",
    "parse_targets",
    "population_metrics",
    "to_smiles",
    "tokenize",
    "train_ngram",
]
