"""Nearest training molecules by Tanimoto similarity: a forward model that knows its domain.

A molecule's fingerprint counts ``a`` and a training molecule's ``b`` have
the **MinMax (Tanimoto) similarity** ``sum(min(a, b)) / sum(max(a, b))``
(1 for the same counts, 0 for nothing in common; for 0/1 bits it is the
usual Tanimoto coefficient). :func:`minmax_similarity` computes it for whole
blocks at once: ``sum(min(a, b)) = sum_t [a >= t]·[b >= t]``, one matrix
product per count level ``t`` over the columns where the reference still
holds a count ``>= t`` (prepared once per reference by :class:`CountReference`);
``sum(max) = sum(a) + sum(b) - sum(min)``. Exact for any non-negative integer
counts.

:class:`TanimotoNeighbors` is a scikit-learn style regressor over such
fingerprints (an instance-based family, unlike the linear default and tree
ensembles): the prediction is the similarity-weighted mean of the ``k`` most
similar training molecules (weights ``similarity ** power``). It cannot
extrapolate: a molecule predicted low must resemble molecules that *are*
low. Its standard deviation is **calibrated against the distance to the
data**: on the training rows (each left out of its own neighbourhood) the
root mean squared error is measured in bins of the nearest neighbour's
similarity, made non-increasing in similarity by an isotonic fit (weighted
by the bins' rows) and interpolated, and
reaching the target's own standard deviation at similarity 0. A candidate
unlike every training molecule therefore gets the uncertainty of knowing
nothing, whatever its neighbours' mean says.

Examples
--------
>>> import numpy as np
>>> from xenonscale.design.neighbors import TanimotoNeighbors, minmax_similarity
>>> a = np.array([[2, 1, 0], [0, 0, 3]])
>>> minmax_similarity(a, np.array([[1, 1, 0]])).ravel().tolist()  # (1+1)/(2+1), 0/(3+2)
[0.6666666865348816, 0.0]
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 3, size=(60, 16))
>>> y = x[:, :4].sum(axis=1).astype(float)
>>> model = TanimotoNeighbors(k=5).fit(x, y)
>>> mean, std = model.predict(x[:3], return_std=True)
>>> bool(np.all(std > 0)), model.nearest_similarity(x[:3]).round(3).tolist()
(True, [1.0, 1.0, 1.0])
"""

from __future__ import annotations

import numpy as np

from xenonscale.errors import ConfigError

__all__ = [
    "CountReference",
    "TanimotoNeighbors",
    "as_count_matrix",
    "minmax_similarity",
    "nearest_similarity",
]

#: Rows of candidates compared with the training set per block (bounds memory:
#: block × training rows float32).
_BLOCK_ROWS = 512


def _as_counts(x) -> np.ndarray:
    values = np.asarray(x)
    if values.ndim != 2:
        raise ConfigError(f"fingerprints of shape {values.shape}: give a 2-D array (rows × bits)")
    if not np.isfinite(values).all() or (values < 0).any():
        raise ConfigError(
            "fingerprint counts must be finite and non-negative: the MinMax similarity is "
            "defined on counts or bits (e.g. ECFP counts, MACCS keys)"
        )
    rounded = np.rint(values)
    if not np.array_equal(rounded, values):
        raise ConfigError(
            "fingerprint values are not whole counts: the MinMax similarity needs count or bit "
            "fingerprints, not continuous descriptors"
        )
    return rounded.astype(np.int32)


def as_count_matrix(x) -> np.ndarray:
    """Validated fingerprint counts, stored compactly (``uint8``, ``uint16`` above 255).

    >>> as_count_matrix([[0, 3], [1, 0]]).dtype
    dtype('uint8')
    """
    counts = _as_counts(x)
    return counts.astype(np.uint16 if counts.max(initial=0) > 255 else np.uint8)


def nearest_similarity(x, reference) -> np.ndarray:
    """Each row's MinMax similarity to its most similar ``reference`` row.

    >>> nearest_similarity([[1, 1, 0]], [[1, 1, 1], [1, 1, 0]]).tolist()
    [1.0]
    """
    return CountReference(reference).nearest(x)


def minmax_similarity(a, b) -> np.ndarray:
    """``float32[len(a), len(b)]``: MinMax (Tanimoto) similarity of count fingerprints.

    Rows with no counts at all are similar to nothing (0).

    Examples
    --------
    >>> minmax_similarity(np.array([[1, 0, 1]]), np.array([[1, 1, 1], [0, 0, 0]])).tolist()
    [[0.6666666865348816, 0.0]]
    """
    return CountReference(b).similarity(a)


class CountReference:
    """A fixed set of count fingerprints prepared for many similarity queries.

    The thresholded matrices ``[b >= t]`` of every count level (over the
    columns that reach it) are built once per process, on first use, and are
    not pickled (a design ships its likelihood to every worker; each builds
    its own). :meth:`similarity` equals :func:`minmax_similarity` against the
    reference.

    Examples
    --------
    >>> reference = CountReference([[1, 1, 1], [0, 0, 0]])
    >>> reference.similarity([[1, 0, 1]]).tolist()
    [[0.6666666865348816, 0.0]]
    """

    def __init__(self, counts) -> None:
        self.counts = as_count_matrix(counts)
        self.totals = self.counts.sum(axis=1, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.counts)

    def __getstate__(self) -> dict:
        return {"counts": self.counts, "totals": self.totals}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _levels(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        levels = self.__dict__.get("_prepared")
        if levels is None:
            levels, level = [], 1
            peaks = self.counts.max(axis=0, initial=0)
            columns = np.flatnonzero(peaks >= 1)
            while columns.size:
                levels.append(
                    (level, columns, (self.counts[:, columns] >= level).T.astype(np.float32))
                )
                level += 1
                columns = columns[peaks[columns] >= level]
            self._prepared = levels
        return levels

    def similarity(self, x) -> np.ndarray:
        """``float32[len(x), len(self)]`` MinMax similarities."""
        x = _as_counts(x)
        if x.shape[1] != self.counts.shape[1]:
            raise ConfigError(
                f"fingerprints of {x.shape[1]} and {self.counts.shape[1]} bits: "
                "compare like with like"
            )
        shared = np.zeros((len(x), len(self.counts)), np.float32)
        top = int(x.max(initial=0))
        for level, columns, right in self._levels():
            if level > top:
                break
            shared += (x[:, columns] >= level).astype(np.float32) @ right
        union = x.sum(axis=1, dtype=np.float64)[:, None] + self.totals[None, :] - shared
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, shared / union, 0.0).astype(np.float32)

    def nearest(self, x) -> np.ndarray:
        """Each row's similarity to its most similar reference row."""
        x = _as_counts(x)
        out = [
            self.similarity(x[start : start + _BLOCK_ROWS]).max(axis=1, initial=0.0)
            for start in range(0, len(x), _BLOCK_ROWS)
        ]
        return np.concatenate(out) if out else np.zeros(0, np.float32)


class TanimotoNeighbors:
    """k nearest training molecules by MinMax similarity; std calibrated on the distance.

    Parameters
    ----------
    k : int, default 10
        Neighbours averaged.
    power : float, default 3.0
        Weights are ``similarity ** power`` (the closest neighbours count most).
    bins : int, default 10
        Quantile bins of nearest-neighbour similarity for the error calibration.

    Attributes
    ----------
    calibration_ : tuple of arrays
        ``(similarity, rmse)`` knots of the calibrated standard deviation.
    loo_rmse_ : float
        Leave-one-out RMSE on the training rows.
    loo_predictions_ : array
        Each training row predicted from its neighbours without itself (a
        :class:`~xenonscale.design.families.FamilyEnsemble` uses them as the
        out-of-fold predictions instead of refitting).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.integers(0, 2, size=(40, 12))
    >>> model = TanimotoNeighbors(k=3).fit(x, x[:, 0] * 1.0)
    >>> model.predict(x[:2]).shape
    (2,)
    """

    def __init__(self, k: int = 10, power: float = 3.0, bins: int = 10) -> None:
        self.k = k
        self.power = power
        self.bins = bins

    def get_params(self, deep: bool = True) -> dict:
        return {"k": self.k, "power": self.power, "bins": self.bins}

    def set_params(self, **params) -> TanimotoNeighbors:
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(self, x, y) -> TanimotoNeighbors:
        if not (isinstance(self.k, int) and self.k >= 1):
            raise ConfigError(f"k={self.k!r}: give a positive number of neighbours, e.g. 10")
        counts = _as_counts(x)
        target = np.asarray(y, np.float64).ravel()
        if len(target) != len(counts) or len(counts) <= self.k:
            raise ConfigError(
                f"{len(counts)} fingerprints and {len(target)} targets: give one target per row "
                f"and more rows than k={self.k}"
            )
        self.x_ = as_count_matrix(counts)
        self.reference_ = CountReference(self.x_)
        self.y_ = target
        self.y_mean_, self.y_std_ = float(target.mean()), float(target.std())
        mean, nearest = self._neighbours(counts, leave_out_self=True)
        self.loo_predictions_ = mean
        squared = (mean - target) ** 2
        self.loo_rmse_ = float(np.sqrt(squared.mean()))
        self.calibration_ = self._calibrate(nearest, squared)
        return self

    def _calibrate(self, nearest: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        edges = np.unique(np.quantile(nearest, np.linspace(0.0, 1.0, self.bins + 1)))
        knots, rmse = [], []
        bin_of = np.clip(np.searchsorted(edges, nearest, side="right") - 1, 0, len(edges) - 2)
        for b in range(max(len(edges) - 1, 1)):
            rows = bin_of == b
            if rows.sum() >= 5:
                knots.append(float(nearest[rows].mean()))
                rmse.append(float(np.sqrt(squared[rows].mean())))
        if not knots:
            knots, rmse = [float(nearest.mean())], [float(np.sqrt(squared.mean()))]
        knots, rmse = np.asarray(knots), np.asarray(rmse)
        if len(knots) > 1:  # never smaller at lower similarity: a decreasing isotonic fit
            from sklearn.isotonic import IsotonicRegression

            counts = np.bincount(bin_of, minlength=len(edges) - 1)
            weights = counts[counts >= 5].astype(np.float64)
            rmse = IsotonicRegression(increasing=False).fit(knots, rmse, sample_weight=weights)
            rmse = rmse.predict(knots)
        floor = max(self.y_std_, float(rmse[0]))
        return np.concatenate([[0.0], knots]), np.concatenate([[floor], rmse])

    def _neighbours(self, x: np.ndarray, leave_out_self: bool = False):
        means, nearest = [], []
        k = min(self.k, len(self.y_) - int(leave_out_self))
        for start in range(0, len(x), _BLOCK_ROWS):
            similarity = self.reference_.similarity(x[start : start + _BLOCK_ROWS])
            if leave_out_self:
                rows = np.arange(len(similarity))
                similarity[rows, start + rows] = -1.0
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
            close = np.clip(np.take_along_axis(similarity, top, axis=1), 0.0, 1.0)
            weights = close.astype(np.float64) ** self.power + 1e-9
            means.append((weights * self.y_[top]).sum(axis=1) / weights.sum(axis=1))
            nearest.append(close.max(axis=1))
        if not means:
            return np.zeros(0), np.zeros(0, np.float32)
        return np.concatenate(means), np.concatenate(nearest)

    def nearest_similarity(self, x) -> np.ndarray:
        """Similarity of each row to its most similar training molecule (the domain measure)."""
        self._check_fitted()
        return self._neighbours(_as_counts(x))[1]

    def predict(self, x, return_std: bool = False):
        """Similarity-weighted neighbour means (and the calibrated std with ``return_std``)."""
        self._check_fitted()
        mean, nearest = self._neighbours(_as_counts(x))
        if not return_std:
            return mean
        knots, rmse = self.calibration_
        return mean, np.interp(nearest, knots, rmse)

    def _check_fitted(self) -> None:
        if not hasattr(self, "x_"):
            raise ConfigError("this TanimotoNeighbors is not fitted: call fit(x, y) first")

    def __repr__(self) -> str:
        return f"TanimotoNeighbors(k={self.k}, power={self.power})"
