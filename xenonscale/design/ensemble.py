"""Many independent SMC chains on Dask, streamed into one Parquet file.

:func:`design` runs ``chains`` chains of :class:`~xenonscale.design.smc.SMC`,
each with its own generator (``numpy.random.SeedSequence(seed).spawn``) and
optionally its own targets or start set, spread over the workers of a Dask
cluster (:func:`xenonscale.cluster.get_client`: an explicit scheduler, else
an embedded LocalCluster of ``workers`` processes).

**Tasks.** The forward models and the language model are scattered once
(``client.scatter(..., hash=False)``: unique keys; broadcasting the same
content-hashed keys on every call stalled worker-to-worker transfers in this
project before). Each chain then runs as a *sequence of one-step tasks*: the
client submits step ``s + 1`` of a chain when step ``s`` comes back, with the
chain's small state (at most ``samples`` SMILES, their log-likelihoods and
the generator). One task per step costs a few milliseconds of scheduling and
a few kilobytes of transfer, against tens of milliseconds of featurizing and
proposing, and buys what one task per chain cannot:

* every step's rows reach the client as soon as it is done, so the output
  streams and the progress bar (chains × steps) moves per step;
* a failing step fails only its chain: its rows so far are kept, its error is
  reported and no further step is submitted, while the other chains go on;
* chains move between workers between steps, so a slow worker delays no one.

**Output.** One Parquet file (pyarrow ``ParquetWriter``; a row group per
``row_group_rows`` rows, so memory stays bounded) with one row per molecule
and step: ``smiles``, ``canonical_smiles``, ``chain``, ``step``, ``beta``,
``valid``, ``log_likelihood``, ``<property>_mean``, ``<property>_std``,
``in_target``. The writer is closed on any exit, so even an interrupted run
leaves a readable file. Next to it, ``<output stem>.json`` summarizes the run:
per-chain status (``done`` / ``failed`` with the error and the step it failed
at), rows, wall time, and the figures of the final populations of the
finished chains (:func:`~xenonscale.design.metrics.population_metrics`:
validity, uniqueness, novelty against ``reference``, in-target fraction),
pooled and per chain.

Examples
--------
A toy run: chain lengths as the property, a trigram model of ten molecules,
two short chains on an in-process cluster (threads):

>>> import tempfile
>>> from pathlib import Path
>>> import pandas as pd
>>> from distributed import Client
>>> from xenonscale.design import Likelihood, design, train_ngram
>>> smiles = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC", "CCO", "CCCO", "CCN", "CCCN"]
>>> frame = pd.DataFrame({"n": [1.0, 2, 3, 4, 5, 6, 2, 3, 2, 3]})
>>> likelihood = Likelihood(["n=3.5:"]).fit(smiles, frame)
>>> ngram = train_ngram(smiles, order=3, client=False)
>>> output = Path(tempfile.mkdtemp()) / "out.parquet"
>>> with Client(processes=False, n_workers=1, dashboard_address=None) as client:
...     result = design(likelihood, ngram, output, chains=2, samples=5, steps=3,
...                     reference=smiles, client=client, progress=False, seed=0)
>>> result.metrics["validity"], [c.status for c in result.chains]
(1.0, ['done', 'done'])
>>> sorted(path.name for path in output.parent.iterdir())
['out.json', 'out.parquet']
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xenonscale.cluster import close_client, get_client, single_threaded
from xenonscale.design.metrics import canonical_smiles, population_metrics
from xenonscale.design.smc import SMC
from xenonscale.design.targets import Target, parse_targets
from xenonscale.errors import ConfigError

__all__ = ["ChainStatus", "DesignResult", "design", "output_schema"]


@dataclass
class ChainStatus:
    """One chain's outcome: ``status`` is ``"done"`` or ``"failed"`` (with ``error``)."""

    chain: int
    status: str
    steps: int
    rows: int
    targets: list[str]
    error: str | None = None
    failed_step: int | None = None
    metrics: dict = field(default_factory=dict)


@dataclass
class DesignResult:
    """What :func:`design` produced (see the module docstring)."""

    path: Path
    summary_path: Path
    chains: list[ChainStatus]
    seconds: float
    rows: int
    metrics: dict
    summary: dict

    @property
    def failed(self) -> list[ChainStatus]:
        """The chains that failed."""
        return [c for c in self.chains if c.status != "done"]

    def frame(self) -> pd.DataFrame:
        """The whole output table."""
        return pd.read_parquet(self.path)


def output_schema(properties: Sequence[str]):
    """The pyarrow schema of :func:`design`'s Parquet output for these properties.

    Examples
    --------
    >>> output_schema(["E"]).names[-3:]
    ['E_mean', 'E_std', 'in_target']
    """
    import pyarrow as pa

    fields = [
        ("smiles", pa.string()),
        ("canonical_smiles", pa.string()),
        ("chain", pa.int32()),
        ("step", pa.int32()),
        ("beta", pa.float64()),
        ("valid", pa.bool_()),
        ("log_likelihood", pa.float64()),
    ]
    for name in properties:
        fields += [(f"{name}_mean", pa.float64()), (f"{name}_std", pa.float64())]
    fields.append(("in_target", pa.bool_()))
    return pa.schema(fields)


def design(
    likelihood: Any,
    proposal: Any,
    output: str | Path,
    *,
    chains: int = 4,
    samples: int = 25,
    steps: int | None = None,
    betas: Sequence[float] | None = None,
    seed: int = 0,
    start: Sequence[str] | Sequence[Sequence[str]] | None = None,
    reference: Sequence[str] | None = None,
    chain_targets: Sequence[Sequence[str | Target]] | None = None,
    retries: int = 5,
    metropolis: bool = True,
    client=None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    row_group_rows: int = 20_000,
) -> DesignResult:
    """Run ``chains`` SMC chains on Dask; stream every step to ``output`` (Parquet).

    Parameters
    ----------
    likelihood : Likelihood
        Fitted forward models and targets (picklable: it is shipped to the workers).
    proposal : object
        The language model: ``propose(smiles, rng) -> list[str]`` (an :class:`NGram`).
    output : path
        The Parquet file (replaced if present); the summary goes to ``<stem>.json``.
    chains, samples, steps, betas, retries, metropolis
        Number of chains; the :class:`~xenonscale.design.smc.SMC` settings.
    seed : int
        Root of the chains' seeds (``SeedSequence(seed).spawn(chains)``).
    start : list of str, or one list per chain, optional
        Start set(s); default: ``samples`` random molecules of ``reference``
        per chain (drawn with the chain's generator).
    reference : list of str, optional
        Known molecules (the training data): the default start pool and the
        set novelty is measured against (novelty is None without it).
    chain_targets : one list of targets per chain, optional
        Per-chain target ranges (names must be the likelihood's properties).
    client, workers, scheduler
        A Dask client, else one from :func:`xenonscale.cluster.get_client`
        (closed at the end).
    progress : bool
        Show a tqdm bar over chains × (steps + 1) populations.

    Returns
    -------
    DesignResult
        ``path``, per-chain :class:`ChainStatus`, wall ``seconds``, ``rows``
        and the pooled ``metrics`` of the finished chains' final populations.

    Raises
    ------
    ConfigError
        Bad arguments (checked before anything runs). A chain that fails while
        running does not raise: it is reported in the result and the summary.

    Notes
    -----
    Rows are written in the order steps come back (chains interleave): sort
    by ``chain`` and ``step`` to read one chain.

    Examples
    --------
    With the objects of the module's example, eight chains on an embedded
    cluster of two worker processes (not run by the tests: it starts processes):

    >>> result = design(likelihood, ngram, "run.parquet", chains=8, samples=25,
    ...                 reference=smiles, workers=2, seed=0)  # doctest: +SKIP
    >>> result.metrics["validity"], result.failed  # doctest: +SKIP
    (1.0, [])
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    if isinstance(chains, bool) or not isinstance(chains, int | np.integer) or chains < 1:
        raise ConfigError(f"chains={chains!r}: use a positive number of chains, e.g. 8")
    chains = int(chains)
    sampler = SMC(
        likelihood, proposal, samples=samples, steps=steps, betas=betas, retries=retries,
        metropolis=metropolis,
    )  # fmt: skip
    n_steps = len(sampler.betas_)
    properties = list(getattr(likelihood, "properties_", None) or [])
    if not properties:
        raise ConfigError("the likelihood is not fitted: call likelihood.fit(smiles, properties)")
    targets = _chain_targets(likelihood, chain_targets, chains, properties)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(chains)]
    starts = _start_sets(start, reference, chains, samples, rngs)
    config = {
        "samples": samples,
        "betas": sampler.betas_.tolist(),
        "retries": retries,
        "metropolis": bool(metropolis),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    summary_path = output.with_suffix(".json")

    statuses = [
        ChainStatus(
            chain=c, status="running", steps=0, rows=0, targets=[str(t) for t in targets[c]]
        )
        for c in range(chains)
    ]
    finals: dict[int, pd.DataFrame] = {}
    own = client is None
    client = client or get_client(scheduler, workers=workers, quiet=True)
    call = uuid.uuid4().hex[:12]  # unique keys: Dask would reuse a finished task's result
    writer = _ParquetStream(output, output_schema(properties), row_group_rows)
    bar = tqdm(total=chains * (n_steps + 1), unit="step", desc="design", disable=not progress)
    pending: dict[str, tuple[int, int]] = {}
    try:
        from distributed import as_completed

        shared_likelihood, shared_proposal = client.scatter([likelihood, proposal], hash=False)
        futures = []
        for c in range(chains):
            key = f"design-{call}-chain{c}-step0"
            pending[key] = (c, 0)
            futures.append(
                client.submit(
                    _start_task, shared_likelihood, shared_proposal, config, targets[c],
                    starts[c], rngs[c], key=key, pure=False,
                )
            )  # fmt: skip
        queue = as_completed(futures)
        for future in queue:
            chain, step = pending.pop(future.key)
            status = statuses[chain]
            if future.status != "finished":
                status.status = "failed"
                status.error = _failure(future)
                status.failed_step = step
                bar.update(n_steps + 1 - step)
                continue
            state, frame = future.result()
            future.release()
            frame.insert(2, "chain", np.full(len(frame), chain, dtype=np.int32))
            writer.write(frame)
            status.rows += len(frame)
            status.steps = step
            bar.update(1)
            if step < n_steps:
                key = f"design-{call}-chain{chain}-step{step + 1}"
                pending[key] = (chain, step + 1)
                queue.add(
                    client.submit(
                        _step_task, shared_likelihood, shared_proposal, config, targets[chain],
                        state, key=key, pure=False,
                    )
                )  # fmt: skip
            else:
                status.status = "done"
                finals[chain] = frame
    finally:
        bar.close()
        writer.close()
        if own:
            close_client(client)
    seconds = time.perf_counter() - started
    canonical = getattr(proposal, "canonical", canonical_smiles)
    known = set(canonical(list(reference))) if reference is not None else None
    for c, frame in finals.items():
        statuses[c].metrics = _metrics(frame, known)
    pooled = _metrics(pd.concat(finals.values()), known) if finals else {}
    result = DesignResult(
        path=output,
        summary_path=summary_path,
        chains=statuses,
        seconds=seconds,
        rows=writer.rows,
        metrics=pooled,
        summary={},
    )
    result.summary = {
        "output": output.name,
        "rows": writer.rows,
        "seconds": round(seconds, 2),
        "chains": chains,
        "chains_done": len(finals),
        "chains_failed": chains - len(finals),
        "samples": samples,
        "steps": n_steps,
        "betas": sampler.betas_.round(6).tolist(),
        "seed": seed,
        "metropolis": bool(metropolis),
        "properties": properties,
        "forward_models": dict(getattr(likelihood, "std_source_", {}) or {}),
        "training_rows": dict(getattr(likelihood, "n_train_", {}) or {}),
        "metrics": pooled,
        "metrics_note": "final population of every finished chain; validity = valid / rows, "
        "uniqueness = distinct valid / valid, novelty = distinct valid not in the reference / "
        "distinct valid (canonical SMILES), in_target = rows predicted inside every target "
        "range / rows",
        "chain_status": [asdict(s) for s in statuses],
    }
    summary_path.write_text(json.dumps(_plain(result.summary), indent=1, allow_nan=False))
    return result


def _metrics(frame: pd.DataFrame, known: set | None) -> dict:
    metrics = population_metrics(
        frame["smiles"].tolist(),
        reference=known or set(),
        in_target=frame["in_target"].to_numpy(bool),
        canonical=[c if isinstance(c, str) else None for c in frame["canonical_smiles"]],
        reference_is_canonical=True,
    )
    if known is None:
        metrics["novelty"] = None
        metrics["n_novel"] = None
    return metrics


def _chain_targets(likelihood, chain_targets, chains: int, properties: list[str]) -> list:
    default = list(likelihood.targets_)
    if chain_targets is None:
        return [default] * chains
    if isinstance(chain_targets, str) or len(chain_targets) != chains:
        raise ConfigError(
            f"chain_targets has {len(chain_targets)} entries for {chains} chains: give one "
            "list of targets per chain"
        )
    out = []
    for entry in chain_targets:
        given = {t.name: t for t in parse_targets(entry)}
        unknown = sorted(set(given) - set(properties))
        if unknown:
            raise ConfigError(
                f"chain targets {unknown} have no forward model; fitted: {properties}"
            )
        out.append([given.get(t.name, t) for t in default])
    return out


def _start_sets(start, reference, chains: int, samples: int, rngs) -> list[list[str]]:
    if start is None:
        if reference is None:
            raise ConfigError(
                "no start set: pass start=[SMILES, ...] or reference=training SMILES to draw from"
            )
        pool = [s for s in reference if isinstance(s, str) and s.strip()]
        if not pool:
            raise ConfigError("reference holds no SMILES to draw start sets from")
        picks = [rng.choice(len(pool), min(samples, len(pool)), replace=False) for rng in rngs]
        return [[pool[i] for i in pick] for pick in picks]
    if isinstance(start, str):
        raise ConfigError(f"start={start!r} is one string: pass a list of SMILES")
    start = list(start)
    if start and all(isinstance(s, str) for s in start):
        return [list(start)] * chains
    if len(start) != chains or not all(isinstance(s, Sequence) for s in start):
        raise ConfigError(
            f"start has {len(start)} entries: give one list of SMILES (shared) or one list "
            f"per chain ({chains})"
        )
    return [list(s) for s in start]


def _failure(future) -> str:
    """A failed (or cancelled) future's error as ``"Type: message"``."""
    if future.status == "cancelled":
        return "cancelled (a worker died or the task was cancelled)"
    error = future.exception()
    return f"{type(error).__name__}: {error}"


def _start_task(likelihood, proposal, config, targets, smiles, rng):
    """Dask task: a chain's step 0 (its start set, evaluated)."""
    with single_threaded():
        return SMC(likelihood, proposal, targets=targets, **config).start(smiles, rng)


def _step_task(likelihood, proposal, config, targets, state):
    """Dask task: one SMC step of a chain."""
    with single_threaded():
        return SMC(likelihood, proposal, targets=targets, **config).step(state)


class _ParquetStream:
    """Frames appended to one Parquet file, a row group per ``rows`` buffered rows."""

    def __init__(self, path: Path, schema, rows: int) -> None:
        import pyarrow.parquet as pq

        self.schema, self.limit, self.rows = schema, max(1, int(rows)), 0
        self.buffer: list[pd.DataFrame] = []
        self.buffered = 0
        self.writer = pq.ParquetWriter(str(path), schema, compression="zstd")

    def write(self, frame: pd.DataFrame) -> None:
        self.buffer.append(frame)
        self.buffered += len(frame)
        self.rows += len(frame)
        if self.buffered >= self.limit:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            frame = pd.concat(self.buffer, ignore_index=True)[self.schema.names]
            self.writer.write_table(pa.Table.from_pandas(frame, self.schema, preserve_index=False))
        self.buffer, self.buffered = [], 0

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.writer.close()


def _plain(value):
    """JSON-ready: NaN → None, numpy scalars → Python."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
