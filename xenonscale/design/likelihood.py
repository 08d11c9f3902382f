"""The likelihood of hitting a target: forward models with a Gaussian predictive, per property.

For a molecule ``s`` and targets ``low_k < y_k < high_k``, iQSPR's
log-likelihood is ``sum_k log P(low_k < y_k < high_k | s)`` with ``y_k ~
N(mean_k(s), std_k(s)²)`` from a forward model of property ``k``.

Forward models (``models={property: model}``; a property without one gets the default):

* **default**: scikit-learn ``BayesianRidge()`` on the fingerprint of
  :func:`default_featurizer`: hashed **ECFP counts** (Morgan radius 2, 2,048
  entries) next to the 166 **MACCS** keys. XenonPy's iQSPR tutorial used ECFP
  bits (radius 3) + MACCS; on ``iqspr_pubchemqc`` (half for fitting, half
  held out) counts at radius 2 give a held-out MAE of 2.1 kJ/mol for ``E``
  (bits: 19.3) and 0.45 eV for the HOMO-LUMO gap (bits: 0.47), with
  calibrated standard deviations (z-scores of std 1.0–1.1);
* any scikit-learn regressor (cloned, then fitted here on the same
  fingerprint): its ``predict(X, return_std=True)`` gives the standard
  deviation when it has one (``BayesianRidge``, ``ARDRegression``,
  ``GaussianProcessRegressor``, a ``Pipeline`` ending in one); otherwise the
  standard deviation is one constant per property, the RMSE of
  ``cv``-fold cross-validated residuals on the training rows;
* a zoo model (:class:`~xenonscale.zoo.ZooModel`, already trained, not
  refitted): predicts from the raw SMILES with its own featurizer. A deep
  ensemble (``xenonscale train --ensemble N``) gives each candidate its own
  standard deviation: ``sqrt(σ² + noise²)``, σ the spread of its members'
  predictions for that candidate and ``noise`` the card's
  ``ensemble.noise_std`` (the validation error the spread does not explain:
  the members share the data's noise, so σ alone is too narrow; on the
  validation rows the mean of this variance equals the ensemble's MSE; see
  :mod:`xenonscale.workflows.ensembles`). Any other zoo model has one
  standard deviation for every candidate: the validation RMSE recorded in
  its card (``metrics.val.rmse``, or ``metrics.val.<property>.rmse`` for
  several targets). The property is the model's target of that name, or its
  only target.

Families in agreement: with ``combine="consensus"``, a property whose
forward model is a :class:`~xenonscale.design.families.FamilyEnsemble`
gets one term per family, ``sum_m log P(low < y_m < high)`` with each
family's own Gaussian, instead of one term for their mixture: a candidate
scores well only where *every* family puts it in range, so a chain cannot
climb one family's extrapolation while the others disagree, and
``in_target`` asks every family's mean to be in range. On the iQSPR task
(``bench/design_iqspr.py``) a linear model, a Gaussian process and
neighbours in consensus, with chains started from the most likely training
molecules (:meth:`Likelihood.most_likely`), put the designs where judges of
another family agree far more often than their mixture does.

Numerics: each term is computed from ``scipy.special.log_ndtr`` (one tail
for an open range; a log-difference of the tail where the interval lies for
a closed one), so it stays finite far in the tails. Standard deviations are
at least ``min_std``. A molecule RDKit cannot read, or one a model cannot
predict, gets ``invalid_log_likelihood`` (default ``-1000``); the sum of a
readable one is clipped at 0.9 times that (``-900``), so that a readable
molecule, however far from the target, always ranks above an unreadable one
(the sampler's weights and Metropolis test rely on it): never NaN, never
``-inf``, never an exception.

Examples
--------
>>> import pandas as pd
>>> from xenonscale.design.likelihood import Likelihood
>>> data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
>>> smiles = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC"]
>>> likelihood = Likelihood(["x=3.5:"]).fit(smiles, data)
>>> ll = likelihood.log_likelihood(["CCCCC", "C", "not a smiles"])
>>> bool(ll[0] > -0.01), float(ll[1]), float(ll[2])  # CCCCC, C (clipped), unreadable
(True, -900.0, -1000.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from xenonscale.chem.formula import parse_compositions
from xenonscale.design.families import has_native_std
from xenonscale.design.neighbors import CountReference
from xenonscale.design.targets import Target, parse_targets
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import featurize_safely
from xenonscale.featurize.compositions import Compositions
from xenonscale.featurize.molecules import ECFP, MACCS
from xenonscale.featurize.molecules.parse import parse_molecules
from xenonscale.featurize.registry import FeatureUnion

__all__ = [
    "COMBINE",
    "KINDS",
    "Likelihood",
    "default_featurizer",
    "log_probability_between",
    "recorded_rmse",
]

#: What a design's candidates are.
KINDS = ("molecule", "composition")

#: How the families of a FamilyEnsemble forward model count (``Likelihood(combine=...)``).
COMBINE = ("mixture", "consensus")

#: Split metrics searched in a zoo model's card for its validation RMSE, in order.
_ZOO_SPLITS = ("val", "validation", "test", "cv")


def default_featurizer(kind: str = "molecule"):
    """The default forward models' input: ECFP counts (radius 2, 2,048) + MACCS keys for
    molecules, XenonPy's 290 classic pooled element descriptors for compositions.

    Examples
    --------
    >>> len(default_featurizer().labels)
    2215
    """
    if kind == "composition":
        return Compositions(featurizers="classic")
    return FeatureUnion([ECFP(radius=2, n_bits=2048, counting=True), MACCS()])


def log_probability_between(mean, std, low: float, high: float) -> np.ndarray:
    """``log P(low < y < high)`` for ``y ~ N(mean, std²)``, elementwise and tail-stable.

    Examples
    --------
    >>> from scipy.stats import norm
    >>> value = log_probability_between(0.0, 1.0, 1.0, 2.0)
    >>> bool(np.isclose(value, np.log(norm.cdf(2) - norm.cdf(1))))
    True
    >>> float(log_probability_between(0.0, 1.0, 40.0, 41.0)) > -np.inf
    True
    """
    from scipy.special import log_ndtr

    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    z_low, z_high = (low - mean) / std, (high - mean) / std
    if np.isinf(low):
        return log_ndtr(z_high)
    if np.isinf(high):
        return log_ndtr(-z_low)
    # P = Φ(z_high) − Φ(z_low) = Φ(−z_low) − Φ(−z_high): take the form whose two terms
    # are small (the tail the interval lies in), so the difference keeps its digits.
    upper = z_low > 0
    big = np.where(upper, log_ndtr(-z_low), log_ndtr(z_high))
    small = np.where(upper, log_ndtr(-z_high), log_ndtr(z_low))
    return big + _log1mexp(small - big)


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """``log(1 − exp(x))`` for ``x ≤ 0`` (``-inf`` at 0), accurate at both ends."""
    x = np.minimum(x, 0.0)
    with np.errstate(divide="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


class Likelihood:
    """Forward models for the target properties and the log-likelihood of hitting the targets.

    Parameters
    ----------
    targets : list of str or Target
        ``"NAME=LOW:HIGH"`` texts (see :mod:`xenonscale.design.targets`); one
        forward model per name.
    models : dict, optional
        ``{name: model}``: a scikit-learn regressor (cloned and fitted on the
        fingerprint) or a trained zoo model; others get ``BayesianRidge()``.
    featurizer : BatchTransformer, optional
        Input of the scikit-learn models; default :func:`default_featurizer`.
    cv : int, default 5
        Folds for the residual standard deviation of regressors without ``return_std``.
    seed : int, default 0
        Shuffle of those folds.
    invalid_log_likelihood : float, default -1000.0
        Log-likelihood of an unreadable molecule (negative); readable ones are
        clipped at ``0.9 * invalid_log_likelihood``.
    min_std : float, default 1e-6
        Lower bound of a predicted standard deviation.
    kind : str, default "molecule"
        What the candidates are: ``molecule`` (SMILES; default featurizer
        :func:`default_featurizer`) or ``composition`` (formulas; XenonPy's
        classic pooled descriptors, validity = the formula parses).
    domain : float, optional
        The applicability domain as a minimum MinMax (Tanimoto) similarity of
        a candidate's fingerprint to its most similar training molecule
        (molecules only; count or bit fingerprints). A candidate below it
        loses ``log Φ((similarity − domain) / domain_width)`` (about −3.8 one
        width below, −10 two widths below: smooth, finite), so chains stay
        where the forward models were fitted. ``evaluate`` reports the
        similarity as ``domain_similarity``.
    domain_width : float, default 0.05
        The softness of that boundary.
    combine : str, default "mixture"
        How the families of a :class:`~xenonscale.design.families.FamilyEnsemble`
        forward model count: ``mixture`` (one Gaussian, their disagreement in
        its std) or ``consensus`` (each family's own probability of the range,
        multiplied: every family must agree; see the module docstring).
        Other forward models are one family and count once either way.

    Attributes
    ----------
    properties_ : list of str
        Property names, in target order.
    models_ : dict
        Fitted forward models per property.
    n_train_ : dict
        Training rows used per property.
    n_invalid_smiles_ : int
        Training SMILES skipped because RDKit could not read them.
    std_source_ : dict
        Where each property's standard deviation comes from.

    Thread-safety: a fitted instance is read-only in :meth:`predict` and
    :meth:`log_likelihood` (safe to share); it pickles, so Dask can ship it.

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    >>> smiles = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC"]
    >>> likelihood = Likelihood(["x=:2"], models={"x": Ridge()}, cv=3).fit(smiles, data)
    >>> means, stds = likelihood.predict(["CC"])
    >>> likelihood.std_source_["x"]
    '3-fold CV residual RMSE'
    """

    def __init__(
        self,
        targets: Sequence[str | Target],
        *,
        models: Mapping[str, Any] | None = None,
        featurizer=None,
        cv: int = 5,
        seed: int = 0,
        invalid_log_likelihood: float = -1000.0,
        min_std: float = 1e-6,
        kind: str = "molecule",
        domain: float | None = None,
        domain_width: float = 0.05,
        combine: str = "mixture",
    ) -> None:
        if combine not in COMBINE:
            raise ConfigError(f"combine={combine!r}: use one of {', '.join(COMBINE)}")
        if kind not in KINDS:
            raise ConfigError(f"kind={kind!r}: design candidates are one of {', '.join(KINDS)}")
        if domain is not None and kind != "molecule":
            raise ConfigError(
                f"domain={domain!r} for kind={kind!r}: the Tanimoto domain applies to molecules; "
                "leave domain unset"
            )
        if domain is not None and not (0.0 < float(domain) < 1.0 and float(domain_width) > 0):
            raise ConfigError(
                f"domain={domain!r}, domain_width={domain_width!r}: give a similarity in (0, 1), "
                "e.g. 0.35, and a positive width, e.g. 0.05"
            )
        self.kind = kind
        self.combine = combine
        self.domain = domain
        self.domain_width = domain_width
        self.targets = targets
        self.models = models
        self.featurizer = featurizer
        self.cv = cv
        self.seed = seed
        self.invalid_log_likelihood = invalid_log_likelihood
        self.min_std = min_std

    # -- fitting ---------------------------------------------------------------
    @property
    def targets_(self) -> list[Target]:
        """The targets as :class:`Target` objects."""
        return parse_targets(self.targets)

    def fit(self, smiles: Sequence[str], properties: pd.DataFrame) -> Likelihood:
        """Fit the forward models of every target property on ``smiles`` and their values.

        ``properties`` holds one column per target name (row ``i`` belongs to
        ``smiles[i]``; non-numeric values count as missing); rows missing a
        property are left out of that property's model only. Zoo models are
        used as they are (no column needed).

        Raises
        ------
        ConfigError
            A missing column, lengths that differ, or fewer usable rows than
            ``max(2, cv)`` for a property.
        """
        from sklearn.base import clone

        targets = self.targets_
        smiles = list(smiles)
        if len(properties) != len(smiles):
            raise ConfigError(
                f"{len(smiles)} SMILES but {len(properties)} property rows: give one row per SMILES"
            )
        given = dict(self.models or {})
        unknown = sorted(set(given) - {t.name for t in targets})
        if unknown:
            raise ConfigError(f"models for {unknown} have no target; targets: {self._names()}")
        self.properties_ = [t.name for t in targets]
        self.models_, self.n_train_, self.std_source_ = {}, {}, {}
        self.featurizer_ = (
            self.featurizer if self.featurizer is not None else default_featurizer(self.kind)
        )
        x = ok = None
        for name in self.properties_:
            model = given.get(name)
            if _is_zoo_model(model):
                self.models_[name] = _ZooForward(model, name)
                self.n_train_[name] = 0
                self.std_source_[name] = self.models_[name].source
                continue
            if name not in properties.columns:
                raise ConfigError(
                    f"no column {name!r} for target {name!r}; columns: {list(properties.columns)}"
                )
            if x is None:
                batch = featurize_safely(self.featurizer_, list(smiles))
                x, ok = np.asarray(batch.values), np.asarray(batch.ok, bool)
                self.n_invalid_smiles_ = int((~ok).sum())
            y = pd.to_numeric(properties[name], errors="coerce").to_numpy(np.float64)
            rows = ok & np.isfinite(y)
            if rows.sum() < max(2, self.cv):
                raise ConfigError(
                    f"target {name!r}: only {int(rows.sum())} rows with a readable SMILES and a "
                    f"value; give at least {max(2, self.cv)}"
                )
            estimator = clone(model) if model is not None else self._default_estimator()
            forward = _SklearnForward(estimator, self.cv, self.seed).fit(x[rows], y[rows])
            self.models_[name] = forward
            self.n_train_[name] = int(rows.sum())
            self.std_source_[name] = forward.source
        if x is None:
            self.n_invalid_smiles_ = 0
        if getattr(self, "domain", None) is not None:
            if x is None:
                batch = featurize_safely(self.featurizer_, list(smiles))
                x, ok = np.asarray(batch.values), np.asarray(batch.ok, bool)
            self.domain_reference_ = CountReference(x[ok])
        return self

    def _default_estimator(self):
        """BayesianRidge; on standardized inputs for compositions (pooled descriptors span
        orders of magnitude, fingerprint counts do not)."""
        from sklearn.linear_model import BayesianRidge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if getattr(self, "kind", "molecule") == "composition":
            return make_pipeline(StandardScaler(), BayesianRidge())
        return BayesianRidge()

    # -- prediction ------------------------------------------------------------
    def predict(self, smiles: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Predictive means and standard deviations, one column per property.

        Rows that cannot be read or predicted are NaN in both frames.
        """
        _, means, stds, _, _ = self._predict(list(smiles))
        return (
            pd.DataFrame(means, columns=self.properties_),
            pd.DataFrame(stds, columns=self.properties_),
        )

    def log_likelihood(
        self, smiles: Sequence[str], targets: Sequence[str | Target] | None = None
    ) -> np.ndarray:
        """``float64[n]``: log P(every property in its range); see the module docstring.

        ``targets`` replaces the fitted targets' ranges for this call (the
        names must be fitted properties).
        """
        return self.evaluate(smiles, targets)["log_likelihood"].to_numpy()

    def evaluate(
        self, smiles: Sequence[str], targets: Sequence[str | Target] | None = None
    ) -> pd.DataFrame:
        """Everything the sampler records, for a whole population in one featurizer batch.

        Returns a frame with ``valid`` (RDKit read it), ``log_likelihood``,
        ``<property>_mean``, ``<property>_std`` per property (for a family
        ensemble, its mixture's) and ``in_target`` (valid and every predicted
        mean inside its range; under ``combine="consensus"``, every family's).

        Examples
        --------
        >>> data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
        >>> smiles = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC"]
        >>> frame = Likelihood(["x=:3"]).fit(smiles, data).evaluate(["C", "C1"])
        >>> list(frame.columns)
        ['valid', 'log_likelihood', 'x_mean', 'x_std', 'in_target']
        >>> frame["valid"].tolist(), frame["in_target"].tolist()
        ([True, False], [True, False])
        """
        targets = self._check_targets(targets)
        smiles = list(smiles)
        valid, means, stds, features, members = self._predict(smiles)
        floor = float(self.invalid_log_likelihood)
        if not (np.isfinite(floor) and floor < 0):
            raise ConfigError(
                f"invalid_log_likelihood={self.invalid_log_likelihood!r}: use a finite negative "
                "number, e.g. -1000"
            )
        ll = np.zeros(len(smiles))
        inside = valid.copy()
        for k, name in enumerate(self.properties_):
            target = targets[name]
            # one column per family under consensus, else the property's one predictive
            mean, std = members.get(name, (means[:, k : k + 1], stds[:, k : k + 1]))
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                terms = log_probability_between(mean, std, target.low, target.high)
            ll += terms.sum(axis=1)
            inside &= target.contains(mean).all(axis=1)
        usable = valid & np.isfinite(means).all(axis=1) & np.isfinite(stds).all(axis=1)
        similarity = None
        if getattr(self, "domain", None) is not None:
            similarity = self._domain_similarity(smiles, valid, features)
            with np.errstate(invalid="ignore", divide="ignore"):
                ll += log_ndtr((similarity - float(self.domain)) / float(self.domain_width))
        ll = np.where(usable & ~np.isnan(ll), np.maximum(ll, 0.9 * floor), floor)
        frame = {"valid": valid, "log_likelihood": ll}
        if similarity is not None:
            frame["domain_similarity"] = similarity
        for k, name in enumerate(self.properties_):
            frame[f"{name}_mean"] = means[:, k]
            frame[f"{name}_std"] = stds[:, k]
        frame["in_target"] = inside & usable
        return pd.DataFrame(frame)

    def _predict(self, smiles: list[str]):
        """``(valid, means, stds, features, members)``; ``features`` is ``(x, ok)`` of the
        featurizer batch when a scikit-learn model needed one, else None (zoo models
        only); ``members`` maps a property to its families' ``(means, stds)``, each
        ``[n, families]``, under ``combine="consensus"`` (else it is empty)."""
        self._check_fitted()
        if isinstance(smiles, str):
            raise ConfigError(f"got one string {smiles!r}: pass a list of SMILES")
        n, p = len(smiles), len(self.properties_)
        means, stds = np.full((n, p), np.nan), np.full((n, p), np.nan)
        consensus = getattr(self, "combine", "mixture") == "consensus"
        members = {}
        x = valid = None
        for k, name in enumerate(self.properties_):
            forward = self.models_[name]
            if isinstance(forward, _ZooForward):
                means[:, k], stds[:, k] = forward.predict(smiles)
                continue
            if x is None:  # one featurizer batch for every scikit-learn model
                batch = featurize_safely(self.featurizer_, list(smiles))
                x, valid = np.asarray(batch.values), np.asarray(batch.ok, bool)
            if consensus and forward.families > 1:
                family_means = np.full((n, forward.families), np.nan)
                family_stds = np.full((n, forward.families), np.nan)
                if valid.any():
                    family_means[valid], family_stds[valid] = forward.predict_families(x[valid])
                    means[valid, k], stds[valid, k] = forward.estimator.mix(
                        family_means[valid], family_stds[valid]
                    )
                members[name] = (family_means, np.maximum(family_stds, float(self.min_std)))
            elif valid.any():
                means[valid, k], stds[valid, k] = forward.predict(x[valid])
        if valid is None:
            if getattr(self, "kind", "molecule") == "composition":
                valid = np.asarray(parse_compositions(smiles).ok, bool)
            else:
                valid = np.asarray(parse_molecules(smiles).ok, bool)
        stds = np.maximum(stds, float(self.min_std))
        return valid, means, stds, (None if x is None else (x, valid)), members

    def most_likely(self, smiles: Sequence[str], n: int, *, batch: int = 2048) -> list[str]:
        """The ``n`` candidates of ``smiles`` with the highest log-likelihood, best first.

        A design's natural start set: chains that begin among the known
        molecules (or formulas) the forward models rate highest need not
        first find their way there (``xenonscale design --start best``).
        Unreadable entries rank last; duplicates are kept as given. ``batch``
        rows are scored at a time.

        Examples
        --------
        >>> data = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
        >>> smiles = ["C", "CC", "CCC", "CCCC", "CCCCC", "CCCCCC"]
        >>> Likelihood(["x=5:"]).fit(smiles, data).most_likely(smiles, 2)
        ['CCCCCC', 'CCCCC']
        """
        for name, value in (("n", n), ("batch", batch)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ConfigError(f"{name}={value!r}: give a whole number, 1 or more")
        smiles = list(smiles)
        scores = np.concatenate(
            [self.log_likelihood(smiles[i : i + batch]) for i in range(0, len(smiles), batch)]
            or [np.empty(0)]
        )
        order = np.argsort(-scores, kind="stable")[:n]
        return [smiles[i] for i in order]

    def _domain_similarity(self, smiles: list[str], valid: np.ndarray, features) -> np.ndarray:
        """Each candidate's similarity to its most similar training molecule (NaN: unreadable);
        ``features`` is the prediction's featurizer batch, reused when there is one."""
        out = np.full(len(smiles), np.nan)
        if features is None:  # zoo models only: featurize for the domain alone
            batch = featurize_safely(self.featurizer_, list(smiles))
            features = (np.asarray(batch.values), np.asarray(batch.ok, bool))
        x, ok = features
        readable = ok & valid
        if readable.any():
            out[readable] = self.domain_reference_.nearest(x[readable])
        return out

    def _check_targets(self, targets) -> dict[str, Target]:
        self._check_fitted()
        chosen = {t.name: t for t in self.targets_}
        if targets is not None:
            override = parse_targets(targets)
            unknown = [t.name for t in override if t.name not in chosen]
            if unknown:
                raise ConfigError(
                    f"targets {unknown} have no forward model; fitted properties: {self._names()}"
                )
            chosen.update({t.name: t for t in override})
        return chosen

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise ConfigError("this Likelihood is not fitted: call fit(smiles, properties) first")

    def _names(self) -> list[str]:
        return [t.name for t in self.targets_]

    def __repr__(self) -> str:
        return f"Likelihood(targets={[str(t) for t in self.targets_]})"


def _is_zoo_model(model: object) -> bool:
    return model is not None and hasattr(model, "card") and hasattr(model, "predict_features")


class _SklearnForward:
    """A scikit-learn regressor on fingerprints, with ``return_std`` or a CV residual std."""

    def __init__(self, estimator, cv: int, seed: int) -> None:
        self.estimator, self.cv, self.seed = estimator, cv, seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> _SklearnForward:
        self.estimator.fit(x, y)
        self.native_std_ = has_native_std(self.estimator, x[:1])
        self.std_ = None
        if not self.native_std_:
            from sklearn.base import clone
            from sklearn.model_selection import KFold, cross_val_predict

            folds = KFold(self.cv, shuffle=True, random_state=self.seed)
            oof = cross_val_predict(clone(self.estimator), x, y, cv=folds)
            self.std_ = float(np.sqrt(np.mean((oof - y) ** 2)))
        return self

    @property
    def source(self) -> str:
        name = type(self.estimator).__name__
        return f"{name} return_std" if self.native_std_ else f"{self.cv}-fold CV residual RMSE"

    @property
    def families(self) -> int:
        """How many families the estimator mixes (a FamilyEnsemble's members, else 1)."""
        return len(getattr(self.estimator, "members_", None) or [None])

    def predict_families(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each family's mean and std, ``[n, families]`` (a FamilyEnsemble's members)."""
        return self.estimator.predict_members(x)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.native_std_:
            mean, std = self.estimator.predict(x, return_std=True)
        else:
            mean = self.estimator.predict(x)
            std = np.full(len(x), self.std_)
        return np.ravel(mean).astype(np.float64), np.ravel(std).astype(np.float64)


class _ZooForward:
    """A zoo model's column for one property; std per candidate (ensemble) or recorded RMSE."""

    def __init__(self, model, name: str) -> None:
        targets = list(model.targets)
        if name in targets:
            self.column = name
        elif len(targets) == 1:
            self.column = targets[0]
        else:
            raise ConfigError(
                f"zoo model {model.ref} predicts {targets}, none named {name!r}: pick the model "
                "of that property or name the target after one of its outputs"
            )
        self.model = model
        self.own_std = bool(getattr(model, "has_uncertainty", False))
        if self.own_std:
            noise = (model.card.get("ensemble") or {}).get("noise_std") or {}
            self.std_ = float(noise.get(self.column) or 0.0)
            self.source = f"zoo {model.ref} ensemble std + val noise std {self.std_:.3g}"
        else:
            self.std_, split = recorded_rmse(model.card, self.column, len(targets))
            self.source = f"zoo {model.ref} {split} RMSE"

    def predict(self, smiles: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if self.own_std:
            frame = self.model.predict(smiles, return_std=True)
            mean = frame[self.column].to_numpy(np.float64)
            spread = frame[f"{self.column}_std"].to_numpy(np.float64)
            return mean, np.sqrt(spread**2 + self.std_**2)
        mean = self.model.predict(smiles)[self.column].to_numpy(np.float64)
        return mean, np.where(np.isfinite(mean), self.std_, np.nan)


def recorded_rmse(card: Mapping, column: str, n_targets: int) -> tuple[float, str]:
    """A zoo card's validation RMSE of ``column`` and the split it came from."""
    metrics = card.get("metrics") or {}
    for split in _ZOO_SPLITS:
        block = metrics.get(split)
        if isinstance(block, Mapping) and n_targets > 1:
            block = block.get(column)
        value = block.get("rmse") if isinstance(block, Mapping) else None
        if isinstance(value, int | float) and np.isfinite(value) and value > 0:
            return float(value), split
    raise ConfigError(
        f"zoo model {card.get('name')}@{card.get('version')} records no validation RMSE "
        f"(metrics.val.rmse) for {column!r}: the likelihood needs one as the predictive std; "
        "retrain it with xenonscale train, or use a scikit-learn model for this target"
    )
