"""Forward models of different families as one predictive: a weighted mixture with disagreement.

A design chain looks for molecules its forward model scores well, and a
single model is easiest to please where it is wrong: off the data, a linear
model extrapolates additively. :class:`FamilyEnsemble` combines regressors of
*different families* (by default the linear :class:`~sklearn.linear_model.BayesianRidge`
and the instance-based :class:`~xenonscale.design.neighbors.TanimotoNeighbors`)
into one Gaussian predictive per molecule:

* each member's out-of-fold error is measured once at ``fit`` (``cv`` folds,
  shuffled with ``seed``; leave-one-out predictions for a member that makes
  them while fitting, as :class:`~xenonscale.design.neighbors.TanimotoNeighbors`
  does); its weight is ``1 / MSE`` (normalized), so a family
  that cannot model a property (neighbours on an additive energy) barely
  counts for it, and both count where both are good;
* a member's standard deviation is its own (``predict(..., return_std=True)``
  when it has one) or its out-of-fold RMSE;
* the mixture's mean is ``sum_m w_m mean_m`` and its variance
  ``sum_m w_m (std_m² + mean_m²) − mean²``: the members' own variance plus
  their **disagreement**. Where the families agree the predictive is as sharp
  as they are; where one extrapolates and the other cannot follow, it widens,
  and the likelihood of a narrow target falls.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import BayesianRidge
>>> from xenonscale.design.families import FamilyEnsemble
>>> from xenonscale.design.neighbors import TanimotoNeighbors
>>> rng = np.random.default_rng(0)
>>> x = rng.integers(0, 3, size=(80, 12))
>>> y = x[:, :3].sum(axis=1) + rng.normal(0, 0.1, 80)
>>> model = FamilyEnsemble([BayesianRidge(), TanimotoNeighbors(k=5)], cv=4).fit(x, y)
>>> model.weights_[0] > 0.5  # the linear family fits a sum best
True
>>> mean, std = model.predict(x[:2], return_std=True)
>>> bool(np.all(std > 0))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xenonscale.design.gaussian_process import TanimotoGP
from xenonscale.design.neighbors import TanimotoNeighbors
from xenonscale.errors import ConfigError

__all__ = [
    "FamilyEnsemble",
    "consensus_members",
    "default_members",
    "gaussian_process_members",
    "has_native_std",
]


def default_members() -> list:
    """BayesianRidge (linear, its own std) and TanimotoNeighbors (k = 10, distance-calibrated)."""
    from sklearn.linear_model import BayesianRidge

    return [BayesianRidge(), TanimotoNeighbors()]


def gaussian_process_members() -> list:
    """BayesianRidge and a MinMax-kernel Gaussian process (:class:`~.gaussian_process.TanimotoGP`).

    >>> [type(m).__name__ for m in gaussian_process_members()]
    ['BayesianRidge', 'TanimotoGP']
    """
    from sklearn.linear_model import BayesianRidge

    return [BayesianRidge(), TanimotoGP()]


def consensus_members() -> list:
    """BayesianRidge, the MinMax-kernel Gaussian process and Tanimoto neighbours: three families.

    Meant for ``Likelihood(combine="consensus")``, where each must place a
    candidate in its range on its own (a linear model, a kernel model and a
    local average of measured neighbours are rarely wrong in the same way).

    >>> [type(m).__name__ for m in consensus_members()]
    ['BayesianRidge', 'TanimotoGP', 'TanimotoNeighbors']
    """
    from sklearn.linear_model import BayesianRidge

    return [BayesianRidge(), TanimotoGP(), TanimotoNeighbors()]


class FamilyEnsemble:
    """A weighted mixture of regressors of different families (see the module docstring).

    Parameters
    ----------
    members : list of regressors, optional
        Unfitted scikit-learn style regressors (cloned); default :func:`default_members`.
    cv : int, default 5
        Folds of the out-of-fold errors that set the weights.
    seed : int, default 0
        Shuffle of those folds.

    Attributes
    ----------
    members_ : list
        The fitted members (on all rows).
    weights_ : list of float
        Their weights (sum 1).
    cv_rmse_ : list of float
        Their out-of-fold RMSE.
    """

    def __init__(self, members: Sequence | None = None, cv: int = 5, seed: int = 0) -> None:
        self.members = members
        self.cv = cv
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict:
        return {"members": self.members, "cv": self.cv, "seed": self.seed}

    def set_params(self, **params) -> FamilyEnsemble:
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def fit(self, x, y) -> FamilyEnsemble:
        from sklearn.base import clone
        from sklearn.model_selection import KFold

        members = list(self.members) if self.members is not None else default_members()
        if not members:
            raise ConfigError("FamilyEnsemble(members=[]): give at least one regressor")
        x, y = np.asarray(x), np.asarray(y, np.float64).ravel()
        if len(x) < max(2, self.cv):
            raise ConfigError(f"{len(x)} rows: a FamilyEnsemble needs at least cv={self.cv} rows")
        self.members_ = [clone(member).fit(x, y) for member in members]
        folds = list(KFold(self.cv, shuffle=True, random_state=self.seed).split(x))
        squared_errors = []
        for member, fitted in zip(members, self.members_, strict=True):
            out_of_fold = getattr(fitted, "loo_predictions_", None)
            if out_of_fold is None:  # refit per fold (leave-one-out members need not)
                out_of_fold = np.empty_like(y)
                for train, test in folds:
                    model = clone(member).fit(x[train], y[train])
                    out_of_fold[test] = np.ravel(model.predict(x[test]))
            squared_errors.append(float(np.mean((np.ravel(out_of_fold) - y) ** 2)))
        self.cv_rmse_ = [float(np.sqrt(e)) for e in squared_errors]
        inverse = 1.0 / np.maximum(np.asarray(squared_errors), 1e-12)
        self.weights_ = [float(w) for w in inverse / inverse.sum()]
        self.native_std_ = [has_native_std(m, x[:1]) for m in self.members_]
        return self

    def predict(self, x, return_std: bool = False):
        """The mixture's mean (and its standard deviation with ``return_std``)."""
        mean, std = self.mix(*self.predict_members(x))
        return (mean, std) if return_std else mean

    def predict_members(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Each member's own mean and standard deviation: two ``float64[n, members]`` arrays.

        A member's standard deviation is its ``return_std`` when it has one,
        else its out-of-fold RMSE.
        """
        if not hasattr(self, "members_"):
            raise ConfigError("this FamilyEnsemble is not fitted: call fit(x, y) first")
        x = np.asarray(x)
        means = np.empty((len(x), len(self.members_)))
        stds = np.empty_like(means)
        for j, (member, native, rmse) in enumerate(
            zip(self.members_, self.native_std_, self.cv_rmse_, strict=True)
        ):
            if native:
                m, s = member.predict(x, return_std=True)
            else:
                m, s = member.predict(x), np.full(len(x), rmse)
            means[:, j], stds[:, j] = np.ravel(m), np.ravel(s)
        return means, stds

    def mix(self, means: np.ndarray, stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mixture's mean and standard deviation from :meth:`predict_members`' arrays."""
        weights = np.asarray(self.weights_)
        mean = means @ weights
        second = (stds**2 + means**2) @ weights
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def __repr__(self) -> str:
        names = [type(m).__name__ for m in (self.members or default_members())]
        return f"FamilyEnsemble({' + '.join(names)})"


def has_native_std(model, probe) -> bool:
    """Whether a fitted regressor's ``predict(probe, return_std=True)`` gives ``(mean, std)``.

    >>> from sklearn.linear_model import BayesianRidge, Ridge
    >>> x, y = np.eye(3), np.arange(3.0)
    >>> has_native_std(BayesianRidge().fit(x, y), x[:1]), has_native_std(Ridge().fit(x, y), x[:1])
    (True, False)
    """
    try:
        out = model.predict(probe, return_std=True)
    except TypeError:  # predict() takes no return_std
        return False
    return isinstance(out, tuple) and len(out) == 2
