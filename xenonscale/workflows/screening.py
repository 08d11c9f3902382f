"""Screening: predictions → constraints → ranked candidates and a Pareto front.

:func:`screen` reads what :func:`~xenonscale.workflows.prediction.predict_to_store`
wrote (a Parquet folder, or a frame) and, for constraints ``PROP=LOW:HIGH``
(the syntax of ``design --target-range``; ``PROP`` is a prediction column
``model:target``, or a model or target name that names one column), gives
every candidate

* ``in_target``: every predicted mean inside its range;
* ``probability``: the chance that every property is inside its range,
  ``Π_k [Φ((high − μ_k)/σ_k) − Φ((low − μ_k)/σ_k)]`` with each candidate's
  own ``σ`` (an ensemble's ``<target>_std``) or, for a single network, the
  validation RMSE its card records (``std_source`` says which) — an
  uncertainty-aware ranking: a candidate predicted just inside a range with
  a wide spread ranks below one predicted well inside;
* ``rank`` by probability (ties by the predicted means' distance to the
  ranges' middles), and ``pareto``: the non-dominated candidates over
  ``objectives`` (``PROP:max`` / ``PROP:min``), among those in the target
  (or all, with ``front_of="all"``).

The result keeps the ``top`` candidates by rank (all with ``top=None``) plus
every front member, and the counts of the whole screened population.

Examples
--------
>>> import pandas as pd
>>> frame = pd.DataFrame({"row": [0, 1, 2, 3], "id": list("abcd"),
...     "m:gap": [1.5, 0.2, 1.9, 1.4], "m:gap_std": [0.1, 0.1, 0.4, 0.1],
...     "e:form": [-1.0, -2.0, -0.5, 0.3], "e:form_std": [0.05, 0.05, 0.05, 0.05]})
>>> result = screen(frame, ["gap=1:2", "form=:0"], objectives=["gap:max", "form:min"])
>>> result.frame[["id", "in_target", "rank", "pareto"]].head(2).values.tolist()
[['a', True, 1, True], ['c', True, 2, True]]
>>> result.counts["in_target"], result.counts["rows"]
(2, 4)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xenonscale.design.likelihood import log_probability_between, recorded_rmse
from xenonscale.design.targets import Target, parse_targets
from xenonscale.errors import ConfigError

__all__ = ["ScreenResult", "pareto_front", "read_predictions", "screen"]


@dataclass
class ScreenResult:
    """The kept candidates (``frame``), the constraints, objectives and counts."""

    frame: pd.DataFrame
    targets: list[Target]
    columns: dict[str, str]
    objectives: list[tuple[str, str]]
    counts: dict[str, int] = field(default_factory=dict)
    std_source: dict[str, str] = field(default_factory=dict)
    probability: np.ndarray | None = None  # of every screened row (for the histogram)
    population: pd.DataFrame | None = None  # a sample of the screened rows (for the plot)


def read_predictions(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """A ``predict`` Parquet folder (or file) and the models recorded in its metadata."""
    import pyarrow.parquet as pq

    dataset = pq.ParquetDataset(str(path))
    metadata = dataset.schema.metadata or {}
    recorded = json.loads(metadata.get(b"xenonscale", b"{}") or b"{}")
    return dataset.read().to_pandas(), recorded.get("models", {})


def _column(name: str, frame: pd.DataFrame) -> str:
    """The prediction column a constraint or objective names."""
    values = [c for c in frame.columns if ":" in str(c) and not str(c).endswith("_std")]
    if name in values:
        return name
    matches = [c for c in values if name in str(c).split(":", 1)]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"{name!r} names {'no' if not matches else 'several'} prediction column(s) "
        f"{matches or ''}: use one of {values}"
    )


def _recorded_rmse(column: str, models: dict, zoo) -> tuple[float, str]:
    label, target = column.split(":", 1)
    ref = (models.get(label) or {}).get("ref")
    if ref is None or zoo is None:
        raise ConfigError(
            f"{column!r} has no <target>_std and no zoo to read its model's validation RMSE "
            "from: pass zoo= (the CLI's --zoo), or predict with an ensemble"
        )
    card = zoo.show(ref)
    rmse, _ = recorded_rmse(card, target, len(card.get("targets") or [target]))
    return rmse, f"{ref} validation RMSE"


def pareto_front(values: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of ``values[n, k]`` (every column maximized).

    Two objectives: one sort (O(n log n)); more: candidates are filtered block
    by block against the running front. NaN rows are never on the front.

    >>> pareto_front(np.array([[1.0, 1.0], [2.0, 0.0], [0.5, 0.5], [0.0, 2.0]])).tolist()
    [True, True, False, True]
    """
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    usable = np.flatnonzero(np.isfinite(values).all(axis=1))
    if not len(usable):
        return mask
    v = values[usable]
    if v.shape[1] == 2:
        order = np.lexsort((-v[:, 1], -v[:, 0]))  # first objective descending, then second
        best = -np.inf
        for i in order:
            if v[i, 1] > best:
                mask[usable[i]] = True
                best = v[i, 1]
        return mask
    order = np.argsort(-v.sum(axis=1), kind="stable")
    front: list[int] = []
    for i in order:
        if front:
            f = v[front]
            if ((f >= v[i]).all(axis=1) & (f > v[i]).any(axis=1)).any():
                continue
        front.append(i)
    mask[usable[front]] = True
    return mask


def screen(
    predictions: pd.DataFrame | str | Path,
    targets: Sequence[str | Target],
    *,
    objectives: Sequence[str] = (),
    top: int | None = 100,
    zoo=None,
    front_of: str = "in_target",
    models: dict | None = None,
) -> ScreenResult:
    """Screen predicted candidates (see the module docstring)."""
    if isinstance(predictions, str | Path):
        frame, recorded = read_predictions(predictions)
        models = models or recorded
    else:
        frame = predictions.reset_index(drop=True)
    models = models or {}
    if top is not None and top < 1:
        raise ConfigError(f"--top {top!r}: keep at least 1 candidate, or leave it out for all")
    if front_of not in ("in_target", "all"):
        raise ConfigError(f"front_of={front_of!r}: use 'in_target' or 'all'")
    targets = parse_targets(list(targets))
    columns = {t.name: _column(t.name, frame) for t in targets}
    n = len(frame)
    log_p = np.zeros(n)
    inside = np.ones(n, dtype=bool)
    std_source = {}
    for t in targets:
        column = columns[t.name]
        mean = frame[column].to_numpy(np.float64)
        if f"{column}_std" in frame:
            std = np.maximum(frame[f"{column}_std"].to_numpy(np.float64), 1e-9)
            std_source[column] = "ensemble std"
        else:
            rmse, std_source[column] = _recorded_rmse(column, models, zoo)
            std = np.full(n, rmse)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            log_p += log_probability_between(mean, std, t.low, t.high)
        inside &= t.contains(mean)
    probability = np.where(np.isfinite(log_p), np.exp(log_p), 0.0)
    middle = np.zeros(n)
    for t in targets:
        mean = frame[columns[t.name]].to_numpy(np.float64)
        low, high = t.low, t.high
        centre = (low + high) / 2 if np.isfinite(low) and np.isfinite(high) else None
        if centre is not None:
            middle += np.abs(mean - centre) / max(high - low, 1e-12)
    order = np.lexsort((np.nan_to_num(middle, nan=np.inf), -probability))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    parsed = [_objective(text, frame) for text in objectives]
    front = np.zeros(n, dtype=bool)
    if parsed:
        values = np.stack(
            [frame[c].to_numpy(np.float64) * (1 if d == "max" else -1) for c, d in parsed], axis=1
        )
        pool = inside if front_of == "in_target" else np.ones(n, dtype=bool)
        front[pool] = pareto_front(values[pool])
    out = frame.assign(probability=probability, in_target=inside, rank=rank, pareto=front)
    keep = (rank <= (top or n)) | front
    kept = out[keep].sort_values("rank").reset_index(drop=True)
    sample = out.sample(n=min(n, 20_000), random_state=0) if n else out
    counts = {"rows": n, "in_target": int(inside.sum()), "kept": len(kept),
              "pareto": int(front.sum()), "predicted": int(np.isfinite(log_p).sum())}  # fmt: skip
    return ScreenResult(kept, targets, columns, parsed, counts, std_source, probability, sample)


def _objective(text: str, frame: pd.DataFrame) -> tuple[str, str]:
    name, sep, direction = str(text).rpartition(":")
    if not sep or direction not in ("max", "min"):
        raise ConfigError(f"--pareto {text!r}: write PROP:max or PROP:min, e.g. 'gap:max'")
    return _column(name, frame), direction
