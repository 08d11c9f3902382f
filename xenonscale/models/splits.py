"""Reproducible train/validation/test splits of row indices.

Three methods, all deterministic for a given ``seed``:

``random``
    A seeded permutation; ``val_fraction`` and ``test_fraction`` of the rows.
``kfold``
    ``KFold(n_splits=folds, shuffle=True, random_state=seed)``: fold ``fold``
    is the validation set (Matbench's protocol with ``seed=18012019``).
``group``
    Whole groups (e.g. the same formula, the same id) go to one split, so a
    composition never sits on both sides; fractions count rows, approximately.

Examples
--------
>>> import numpy as np
>>> from xenonscale.models.splits import split_indices
>>> parts = split_indices(10, method="random", val_fraction=0.2, seed=0)
>>> sorted(len(v) for v in parts.values())
[0, 2, 8]
>>> g = split_indices(6, method="group", groups=["a", "a", "b", "b", "c", "c"], val_fraction=0.3)
>>> len(set(np.array(["a", "a", "b", "b", "c", "c"])[g["val"]]))
1
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError

__all__ = ["SPLIT_METHODS", "split_indices"]

SPLIT_METHODS = ("random", "kfold", "group")


def split_indices(
    n: int,
    *,
    method: str = "random",
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    folds: int = 5,
    fold: int = 0,
    groups: Sequence[object] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Positions ``0..n-1`` split into ``train``, ``val`` and ``test`` (sorted int64 arrays)."""
    if method not in SPLIT_METHODS:
        raise ConfigError(f"split {method!r} is unknown: use one of {', '.join(SPLIT_METHODS)}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction!r}, test_fraction={test_fraction!r}: each in [0, 1) "
            "and together below 1"
        )
    rng = np.random.default_rng(seed)
    if method == "kfold":
        from sklearn.model_selection import KFold

        if not 2 <= folds <= max(n, 2) or not 0 <= fold < folds:
            raise ConfigError(f"folds={folds!r}, fold={fold!r}: need 2 ≤ folds ≤ rows, 0 ≤ fold")
        train, val = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(range(n)))[
            fold
        ]
        return {"train": train.astype(np.int64), "val": val.astype(np.int64), "test": _empty()}
    if method == "random":
        order = rng.permutation(n)
        n_test, n_val = round(n * test_fraction), round(n * val_fraction)
        parts = {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        return {key: np.sort(value).astype(np.int64) for key, value in parts.items()}
    if groups is None or len(groups) != n:
        raise ConfigError("split='group' needs one group label per row (e.g. group_by='input')")
    codes, uniques = pd.factorize(pd.Series(list(groups), dtype=object), use_na_sentinel=False)
    sizes = np.bincount(codes, minlength=len(uniques))
    order = rng.permutation(len(uniques))
    starts = (np.cumsum(sizes[order]) - sizes[order]) / max(n, 1)  # share before each group
    where = np.empty(len(uniques), dtype=np.int8)  # 0 test, 1 val, 2 train
    where[order] = np.where(
        starts < test_fraction, 0, np.where(starts < test_fraction + val_fraction, 1, 2)
    )
    label = where[codes]
    return {
        "test": np.flatnonzero(label == 0),
        "val": np.flatnonzero(label == 1),
        "train": np.flatnonzero(label == 2),
    }


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)
