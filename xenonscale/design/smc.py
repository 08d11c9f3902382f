"""Sequential Monte Carlo with annealing: iQSPR's search of chemical space, one chain.

A chain holds a population of distinct SMILES. Step 0 is the start set,
evaluated. Step ``s = 1 … T`` with annealing exponent ``β_s``:

1. weights ``w_i ∝ exp(β_s · ll_i)`` over the current population (normalized
   by log-sum-exp, so no underflow however low the log-likelihoods);
2. ``samples`` parents drawn by systematic resampling (one uniform draw,
   ``samples`` evenly spaced pointers: the same expectation as multinomial
   resampling with less variance, so fewer good molecules are lost by chance);
3. one proposal per parent from the language model
   (``proposal.propose(parents, rng)``), evaluated in one featurizer batch;
   a child is then accepted with probability
   ``min(1, exp(β_s (ll_child − ll_parent)))``, otherwise its parent stays:
   a Metropolis move that treats the regrowth as leaving the language
   model's distribution unchanged, so that the likelihood ratio alone
   decides. It keeps a parent deep in the target from being replaced by a
   child that falls out (on the iQSPR tutorial task it raises the final
   in-target fraction from 47–65 % to 84–90 %, ``bench/README.md``).
   ``metropolis=False`` lets every child replace its parent: XenonPy's step;
4. **deduplication** by RDKit canonical SMILES (a proposal with a
   ``canonical`` function brings its own key: reduced formulas for
   :class:`~xenonscale.design.compositions.CompositionProposal`; unreadable
   children by their text): the first copy of each molecule is kept; every duplicate slot is
   refilled by drawing a new parent (multinomial, same weights) and moving
   it again (steps 3), up to ``retries`` rounds; duplicates left after that
   are dropped, so a step's population may be smaller than ``samples`` (the
   next step resamples it back to ``samples`` parents);
5. the new population is recorded.

Small ``β`` early flattens the weights (exploration); ``β = 1`` at the end is
the posterior ``p(s | y ∈ target) ∝ p(y ∈ target | s) p(s)``. The default
schedule, :data:`DEFAULT_BETAS`, is the one of XenonPy's iQSPR tutorial (50
steps). :func:`annealing_schedule` gives it for another number of steps by
linear interpolation of the same shape (the run still ends on the ``β = 1``
plateau), or takes any user list.

A step's record has one row per molecule: ``smiles``, ``canonical_smiles``
(None when unreadable), ``step``, ``beta`` (0 for the start set),
``valid``, ``log_likelihood``, ``<property>_mean``, ``<property>_std`` and
``in_target`` (see :meth:`Likelihood.evaluate`).

Randomness comes only from the chain's :class:`numpy.random.Generator`
(handed to the proposal as well), so a seed fixes the whole chain.

Examples
--------
>>> import pandas as pd
>>> from xenonscale.design.likelihood import Likelihood
>>> from xenonscale.design.smc import SMC
>>> class Grow:  # a toy proposal: add a carbon
...     def propose(self, smiles, rng):
...         return [s + "C" for s in smiles]
>>> data = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
>>> likelihood = Likelihood(["n=3.5:"]).fit(["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC"], data)
>>> frame = SMC(likelihood, Grow(), samples=2, betas=[1.0, 1.0]).run(["C", "CC"], seed=0)
>>> frame.groupby("step")["smiles"].agg(list).tolist()
[['C', 'CC'], ['CC', 'CCC'], ['CCC', 'CCCC']]
>>> frame.groupby("step")["in_target"].mean().tolist()
[0.0, 0.0, 0.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from xenonscale.design.metrics import canonical_smiles
from xenonscale.design.targets import Target
from xenonscale.errors import ConfigError, DesignError

__all__ = ["DEFAULT_BETAS", "SMC", "ChainState", "annealing_schedule", "systematic_resample"]

#: XenonPy's iQSPR tutorial schedule: 50 values rising from 0.01 to a plateau at 1.
DEFAULT_BETAS = np.hstack(
    [np.linspace(0.01, 0.2, 20), np.linspace(0.21, 0.4, 10), np.linspace(0.4, 1, 10), np.ones(10)]
)


def annealing_schedule(
    steps: int | None = None, betas: Sequence[float] | None = None
) -> np.ndarray:
    """The ``β`` of each step: ``betas`` as given, else :data:`DEFAULT_BETAS` at ``steps`` points.

    With ``steps`` other than 50 the default shape is interpolated linearly
    at ``steps`` evenly spaced positions (first 0.01, last 1; the plateau
    at 1 keeps its share of the run only for ``steps`` ≳ 10).

    Examples
    --------
    >>> annealing_schedule().shape
    (50,)
    >>> annealing_schedule(5).round(3).tolist()
    [0.01, 0.132, 0.305, 0.85, 1.0]
    """
    if betas is not None:
        values = np.asarray(betas, dtype=np.float64)
        if (
            values.ndim != 1
            or not len(values)
            or not np.isfinite(values).all()
            or (values < 0).any()
        ):
            raise ConfigError(
                f"betas={betas!r}: give a non-empty list of finite, non-negative numbers"
            )
        if steps is not None and steps != len(values):
            raise ConfigError(f"steps={steps!r} but {len(values)} betas: give one or the other")
        return values
    if steps is None:
        return DEFAULT_BETAS.copy()
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 1:
        raise ConfigError(f"steps={steps!r}: use a positive number of SMC steps, e.g. 50")
    base = np.linspace(0.0, 1.0, len(DEFAULT_BETAS))
    return np.interp(np.linspace(0.0, 1.0, int(steps)), base, DEFAULT_BETAS)


def systematic_resample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn with probability ``weights`` (normalized), systematically.

    Examples
    --------
    >>> systematic_resample(np.array([0.5, 0.5, 0.0]), 4, np.random.default_rng(0)).tolist()
    [0, 0, 1, 1]
    """
    edges = np.cumsum(weights, dtype=np.float64)
    edges /= edges[-1]
    pointers = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(edges, pointers, side="right"), len(weights) - 1)


def _normalized(log_weights: np.ndarray) -> np.ndarray:
    top = np.max(log_weights)
    w = np.exp(log_weights - top)
    return w / w.sum()


@dataclass
class ChainState:
    """Where a chain stands: its population's record, the generator, the step.

    ``record`` holds the population's rows as recorded at ``step`` (see the
    module docstring); :attr:`population` and :attr:`log_likelihood` read it.
    """

    record: pd.DataFrame
    rng: np.random.Generator
    step: int = 0

    @property
    def population(self) -> list[str]:
        """The population's SMILES."""
        return self.record["smiles"].tolist()

    @property
    def log_likelihood(self) -> np.ndarray:
        """The population's log-likelihoods."""
        return self.record["log_likelihood"].to_numpy(np.float64)


class SMC:
    """An annealed SMC chain (see the module docstring).

    Parameters
    ----------
    likelihood : Likelihood
        Fitted; anything with ``evaluate(smiles, targets) -> DataFrame`` as
        :meth:`~xenonscale.design.likelihood.Likelihood.evaluate`.
    proposal : object
        Anything with ``propose(smiles, rng) -> list[str]`` (one child per
        parent), such as :class:`~xenonscale.design.NGram`.
    samples : int, default 25
        Population size.
    steps, betas
        The annealing schedule (:func:`annealing_schedule`).
    targets : list of str or Target, optional
        Target ranges for this chain instead of the likelihood's own.
    retries : int, default 5
        Rounds of re-proposal for duplicate children.
    metropolis : bool, default True
        Accept each child with probability ``min(1, exp(β (ll_child −
        ll_parent)))``, else keep its parent (see the module docstring).
        False: every child replaces its parent, as in XenonPy.

    Raises
    ------
    DesignError
        From :meth:`step` when the proposal returns the wrong number of children.

    Examples
    --------
    >>> class Same:
    ...     def propose(self, smiles, rng):
    ...         return list(smiles)
    >>> SMC(None, Same(), samples=4, steps=10).betas_.shape
    (10,)
    """

    def __init__(
        self,
        likelihood: Any,
        proposal: Any,
        *,
        samples: int = 25,
        steps: int | None = None,
        betas: Sequence[float] | None = None,
        targets: Sequence[str | Target] | None = None,
        retries: int = 5,
        metropolis: bool = True,
    ) -> None:
        self.likelihood = likelihood
        self.proposal = proposal
        self.samples = samples
        self.steps = steps
        self.betas = betas
        self.targets = targets
        self.retries = retries
        self.metropolis = metropolis
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
            raise ConfigError(f"samples={samples!r}: use a positive population size, e.g. 25")
        if not callable(getattr(proposal, "propose", None)):
            raise ConfigError(
                f"proposal {proposal!r} has no propose(smiles, rng) method: pass an NGram "
                "(xenonscale.design.train_ngram) or an object with one"
            )
        self.betas_ = annealing_schedule(steps, betas)
        # the deduplication key: canonical SMILES, or the proposal's own (reduced formulas)
        self.canonical = getattr(proposal, "canonical", canonical_smiles)

    # -- one chain, step by step ----------------------------------------------
    def start(self, smiles: Sequence[str], seed: Any = None) -> tuple[ChainState, pd.DataFrame]:
        """Step 0: the start set (distinct molecules; ``samples`` drawn if it has more).

        ``seed``: an int, a :class:`numpy.random.SeedSequence` or a Generator.
        """
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if isinstance(smiles, str):
            raise ConfigError(f"start set {smiles!r} is one string: pass a list of SMILES")
        pool = _distinct(list(smiles), self.canonical)
        if not pool:
            raise ConfigError("the start set is empty: give at least one SMILES")
        if len(pool) > self.samples:
            pool = [pool[i] for i in np.sort(rng.choice(len(pool), self.samples, replace=False))]
        frame = self._evaluate(pool, step=0, beta=0.0)
        return ChainState(frame, rng, 0), frame

    def step(self, state: ChainState) -> tuple[ChainState, pd.DataFrame]:
        """One SMC step from ``state`` (resample, propose, deduplicate, evaluate).

        ``state`` is not modified except for its generator, which advances.
        """
        index = state.step + 1
        if index > len(self.betas_):
            raise ConfigError(f"the chain has done all {len(self.betas_)} steps of its schedule")
        beta = float(self.betas_[index - 1])
        rng = state.rng
        weights = _normalized(beta * state.log_likelihood)
        candidates = self._move(state.record, systematic_resample(weights, self.samples, rng),
                                index, beta, rng)  # fmt: skip
        slot_rows = np.arange(len(candidates))  # the candidate row each slot holds
        for _ in range(int(self.retries)):
            slots = _duplicate_slots(_keys(candidates, slot_rows))
            if not slots:
                break
            redraw = rng.choice(len(weights), size=len(slots), p=weights)
            fresh = self._move(state.record, redraw, index, beta, rng)
            slot_rows[slots] = len(candidates) + np.arange(len(fresh))
            candidates = pd.concat([candidates, fresh], ignore_index=True)
        duplicates = set(_duplicate_slots(_keys(candidates, slot_rows)))
        keep = [row for slot, row in enumerate(slot_rows) if slot not in duplicates]
        frame = candidates.iloc[keep].reset_index(drop=True)
        return ChainState(frame, rng, index), frame

    def run(self, smiles: Sequence[str], seed: Any = None) -> pd.DataFrame:
        """The whole chain in this process: every step's record, concatenated."""
        state, frame = self.start(smiles, seed)
        frames = [frame]
        while state.step < len(self.betas_):
            state, frame = self.step(state)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    # -- helpers ---------------------------------------------------------------
    def _propose(self, parents: list[str], rng: np.random.Generator) -> list[str]:
        children = list(self.proposal.propose(parents, rng))
        if len(children) != len(parents):
            raise DesignError(
                f"{type(self.proposal).__name__}.propose returned {len(children)} SMILES for "
                f"{len(parents)} parents: it must return one proposal per input"
            )
        return [str(child) for child in children]

    def _move(
        self, record: pd.DataFrame, parents: np.ndarray, step: int, beta: float, rng
    ) -> pd.DataFrame:
        """Children of ``record``'s rows ``parents``, evaluated (Metropolis: or the parent)."""
        children = self._propose(record["smiles"].iloc[parents].tolist(), rng)
        frame = self._evaluate(children, step=step, beta=beta)
        if self.metropolis:
            old = record["log_likelihood"].to_numpy(np.float64)[parents]
            new = frame["log_likelihood"].to_numpy(np.float64)
            stay = ~(np.log(rng.random(len(children))) < beta * (new - old))
            if stay.any():
                kept = record.iloc[parents[stay]]
                for column in frame.columns:
                    if column not in ("step", "beta"):
                        frame.loc[stay, column] = kept[column].to_numpy()
        return frame

    def _evaluate(self, population: list[str], *, step: int, beta: float) -> pd.DataFrame:
        scored = self.likelihood.evaluate(population, self.targets)
        head = pd.DataFrame(
            {
                "smiles": population,
                "canonical_smiles": self.canonical(population),
                "step": np.full(len(population), step, dtype=np.int32),
                "beta": np.full(len(population), beta, dtype=np.float64),
            }
        )
        return pd.concat([head, scored.reset_index(drop=True)], axis=1)


def _keys(frame: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """Deduplication keys of ``frame``'s ``rows``: canonical SMILES, or ``"?" + text``."""
    canonical = frame["canonical_smiles"].to_numpy(object)[rows]
    text = frame["smiles"].to_numpy(object)[rows]
    return [c if isinstance(c, str) else "?" + t for c, t in zip(canonical, text, strict=True)]


def _duplicate_slots(keys: list[str]) -> list[int]:
    seen: set[str] = set()
    slots = []
    for i, key in enumerate(keys):
        if key in seen:
            slots.append(i)
        seen.add(key)
    return slots


def _distinct(smiles: list[str], canonical=canonical_smiles) -> list[str]:
    texts = [str(s) for s in smiles]
    keys = [c if c is not None else "?" + t for c, t in zip(canonical(texts), texts, strict=True)]
    seen: set[str] = set()
    out = []
    for text, key in zip(texts, keys, strict=True):
        if key not in seen:
            seen.add(key)
            out.append(text)
    return out
