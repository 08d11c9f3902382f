"""Shotgun transfer: score many zoo models on a small dataset in parallel, keep the best.

For a small target dataset (raw inputs + ``y``), every candidate source model
(each compatible zoo model — same input kind — or a given list) is scored in
its own Dask task. The task loads the model from the zoo *location* (a
string: workers open the zoo themselves, nothing large is shipped), computes
its frozen features (hidden activations of the last ``depth`` blocks) for all
rows once, and returns the K-fold cross-validated out-of-fold predictions of a
cheap learner on them (and, with ``finetune``, of fine-tuning the model with
that freeze mode in each fold). Sources are ranked by CV MAE (a regression)
or CV log-loss (a classification, below); the final predictor is refitted on
all rows from the best source (``top_k=1``) or is the average of the top
``k`` (``top_k>1``).

Classification: a target whose values are all 0 or 1 (``task=None``
infers it and says so on stderr; ``task="classification"`` asks for it) is
learned by the classifier counterpart of each learner, the out-of-fold
predictions are probabilities of class 1, and every source and the baseline
are ranked by the out-of-fold log-loss (lower is better; a proper score, so
calibrated probabilities win), with ROC-AUC, accuracy, F1 and the Brier
score reported beside it (:func:`~xenonscale.models.metrics.classification_metrics`).
Rows a featurizer cannot read get the training fold's rate of class 1.
Fine-tuning trains the new head with binary cross-entropy.

The baseline is the same learner, from scratch, on the project's own
descriptors (XenonPy ``classic`` on ``xenonpy58``), on the **same folds**
(``KFold(n_splits=cv, shuffle=True, random_state=seed)``, Matbench's protocol
with ``seed=18012019``).

Learners (``learner=``):

``ridge`` (default)
    ``StandardScaler`` → clip to ±10 σ → ``RidgeCV`` (α on a log grid by efficient
    leave-one-out). Closed form, deterministic, milliseconds for a few
    thousand rows: a linear probe measures how much of the target a source
    model's representation already holds, which is what ranking sources
    needs, and it cannot overfit a 200-row dataset the way boosted trees on
    512 features can. The baseline gets the same learner.
``krr``
    ``StandardScaler`` → clip to ±10 σ → RBF ``KernelRidge`` with α and γ chosen by an inner
    3-fold grid search: non-linear, still cheap below a few thousand rows.
``gbm``
    ``HistGradientBoostingRegressor`` (seeded): non-linear, slower.
``vote``
    The mean of ``gbm`` and a random forest (300 trees, leaves of 2 or more,
    seeded) fitted on the same rows: two tree families whose errors differ, so
    their average is usually better than either (scikit-learn's
    ``VotingRegressor``; ``VotingClassifier`` with soft voting for a 0/1
    target, the mean of the two probabilities). The slowest learner here.

Classifiers (:data:`CLASSIFIERS`, for a 0/1 target). A regressor's name
asks for its counterpart (:data:`COUNTERPARTS`: ``ridge`` → ``logistic``,
``krr`` → ``rf``, ``gbm`` → ``gbm``, ``vote`` → ``vote``), so one ``learner`` works for both
tasks; a classifier's name on a regression fails:

``logistic``
    ``StandardScaler`` → clip to ±10 σ → ``LogisticRegressionCV`` (L2, C on a
    log grid by an inner stratified 3-fold log-loss search, Newton–Cholesky
    solver): the linear probe,
    counterpart of ``ridge``.
``rf``
    ``RandomForestClassifier`` (300 trees, seeded): non-linear, cheap,
    counterpart of ``krr``.
``gbm``
    ``HistGradientBoostingClassifier`` (seeded), counterpart of the regressor.

What the learner sees of each source (``features=``, parts joined by ``+``):

``hidden`` (default)
    The frozen features: hidden activations of the last ``depth`` blocks.
``prediction``
    The source model's own prediction of its property (e.g. a DFT band gap).
``descriptors``
    The baseline's descriptors themselves. ``descriptors+prediction`` is
    transfer by feature augmentation: the learner starts from everything the
    baseline has and adds what the source model learned on big data, so the
    comparison with the baseline measures exactly the source's contribution.
    On Matbench expt_gap (all rows, ``gbm``), a source trained on Matbench
    mp_gap takes the CV MAE from 0.421 eV (descriptors alone) to about 0.37
    eV this way, while its hidden features alone reach only 0.44 eV.

Rows a featurizer cannot read get the training-fold mean as their prediction
(and are counted), so every source and the baseline are scored on exactly the
same rows.

Selection bias: the CV MAE of the chosen source is the minimum over many
candidates and therefore optimistic; an untouched test set (``test=``) gives
the honest number.

Examples
--------
>>> from xenonscale.transfer.selection import shotgun
>>> result = shotgun(formulas, gaps, zoo="zoo", cv=5, seed=18012019)  # doctest: +SKIP
>>> result.ranking[0]["name"], result.mae, result.baseline_mae  # doctest: +SKIP
('mp-gap@1', 0.41, 0.52)
>>> result.predictor.predict(["GaN"])  # doctest: +SKIP
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xenonscale.cluster import close_client, get_client, single_threaded
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import errors_frame, featurize_safely
from xenonscale.models.backbones import predict_array
from xenonscale.models.metrics import classification_metrics
from xenonscale.models.tasks import resolve_task
from xenonscale.transfer.frozen import hidden_activations
from xenonscale.zoo import Zoo
from xenonscale.zoo.card import featurizer_spec
from xenonscale.zoo.zoo import resolve_location

__all__ = [
    "BASELINE_SPEC",
    "CLASSIFIERS",
    "COUNTERPARTS",
    "FEATURE_PARTS",
    "LEARNERS",
    "LEARNER_NAMES",
    "Ensemble",
    "FeaturePredictor",
    "ShotgunResult",
    "baseline_descriptors",
    "compatible_sources",
    "cv_folds",
    "cv_scores",
    "learner_output",
    "make_learner",
    "parse_features",
    "shotgun",
    "source_features",
]

LEARNERS = ("ridge", "krr", "gbm", "vote")
#: Classifier learners, for a 0/1 target (see the module docstring).
CLASSIFIERS = ("logistic", "rf", "gbm", "vote")
#: Every learner name, regressors first.
LEARNER_NAMES = ("ridge", "krr", "gbm", "vote", "logistic", "rf")
#: The classifier a regressor's name stands for when the target is 0/1.
COUNTERPARTS = {"ridge": "logistic", "krr": "rf", "gbm": "gbm", "vote": "vote"}
#: Trees of the random forests (``rf`` and ``vote``'s forest) and boosting iterations.
FOREST_TREES = 300
BOOSTING_ITERATIONS = 300
#: What ranks sources: the out-of-fold score of each task (lower is better).
RANK_BY = {"regression": "cv_mae", "classification": "cv_log_loss"}
#: The parts a source contributes to the learner's features (see the module docstring).
FEATURE_PARTS = ("hidden", "prediction", "descriptors")
#: Bound on the learners' standardized features (as in PropertyModel's input scaling).
CLIP = 10.0
#: The baseline's descriptors: XenonPy ``classic`` pooling on the ``xenonpy58`` table.
BASELINE_SPEC = {
    "kind": "composition",
    "names": ["classic"],
    "elements": "xenonpy58",
    "on_error": "record",
}


def make_learner(name: str = "ridge", seed: int = 0, task: str = "regression"):
    """A fresh scikit-learn regressor, or classifier for ``task="classification"`` (docstring).

    >>> type(make_learner("gbm", task="classification")).__name__
    'HistGradientBoostingClassifier'
    >>> type(make_learner("krr", task="classification")).__name__  # its counterpart
    'RandomForestClassifier'
    >>> make_learner("rf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xenonscale.errors.ConfigError: learner='rf' is a classifier: for a regression use one of ...
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    # z-scores clipped to ±10, as PropertyModel's input scaling does: one compound with an
    # almost-constant descriptor far out (z ~ 1e5) would otherwise get an absurd prediction
    clip = FunctionTransformer(np.clip, kw_args={"a_min": -CLIP, "a_max": CLIP})
    if task == "classification":
        return _make_classifier(name, seed, clip)
    if name not in LEARNERS and name in CLASSIFIERS:
        raise ConfigError(
            f"learner={name!r} is a classifier: for a regression use one of {', '.join(LEARNERS)}"
        )
    if name == "ridge":
        from sklearn.linear_model import RidgeCV

        return make_pipeline(StandardScaler(), clip, RidgeCV(alphas=np.logspace(-3, 4, 15)))
    if name == "krr":
        from sklearn.kernel_ridge import KernelRidge
        from sklearn.model_selection import GridSearchCV, KFold

        grid = {"alpha": [1e-3, 1e-2, 1e-1, 1.0], "gamma": [1e-4, 1e-3, 1e-2]}
        search = GridSearchCV(
            KernelRidge(kernel="rbf"),
            grid,
            scoring="neg_mean_absolute_error",
            cv=KFold(3, shuffle=True, random_state=seed),
        )
        return make_pipeline(StandardScaler(), clip, search)
    if name in ("gbm", "vote"):
        from sklearn.ensemble import (
            HistGradientBoostingRegressor,
            RandomForestRegressor,
            VotingRegressor,
        )

        boosting = HistGradientBoostingRegressor(
            max_iter=BOOSTING_ITERATIONS, learning_rate=0.05, random_state=seed
        )
        if name == "gbm":
            return boosting
        forest = RandomForestRegressor(
            n_estimators=FOREST_TREES, min_samples_leaf=2, random_state=seed
        )
        return VotingRegressor([("gbm", boosting), ("rf", forest)])
    raise ConfigError(f"learner={name!r}: use one of {', '.join(LEARNERS)}")


def _make_classifier(name: str, seed: int, clip):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    name = COUNTERPARTS.get(name, name)
    if name == "logistic":
        import inspect

        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold

        # scikit-learn ≥ 1.8 warns unless the L2 penalty and the attribute layout are explicit
        modern = {"l1_ratios": (0.0,), "use_legacy_attributes": False}
        accepted = inspect.signature(LogisticRegressionCV).parameters
        search = LogisticRegressionCV(
            Cs=np.logspace(-3, 2, 6),
            cv=StratifiedKFold(3, shuffle=True, random_state=seed),
            scoring="neg_log_loss",
            # Newton–Cholesky: a few Newton steps on rows ≫ features; lbfgs needed thousands of
            # iterations on scaled descriptors (40 s vs 0.8 s on 3,900 expt_is_metal rows,
            # same C, probabilities within 1e-3 where lbfgs stopped short of the optimum)
            solver="newton-cholesky",
            max_iter=2000,
            **{k: v for k, v in modern.items() if k in accepted},
        )
        return make_pipeline(StandardScaler(), clip, search)
    if name in ("rf", "gbm", "vote"):
        from sklearn.ensemble import (
            HistGradientBoostingClassifier,
            RandomForestClassifier,
            VotingClassifier,
        )

        forest = RandomForestClassifier(
            n_estimators=FOREST_TREES, min_samples_leaf=2, random_state=seed
        )
        boosting = HistGradientBoostingClassifier(
            max_iter=BOOSTING_ITERATIONS, learning_rate=0.05, random_state=seed
        )
        if name != "vote":
            return forest if name == "rf" else boosting
        return VotingClassifier([("gbm", boosting), ("rf", forest)], voting="soft")
    raise ConfigError(f"learner={name!r}: use one of {', '.join(CLASSIFIERS)} for a 0/1 target")


def learner_output(learner, x: np.ndarray) -> np.ndarray:
    """A fitted learner's predictions ``float64[n]``: probabilities of class 1 for a classifier."""
    if hasattr(learner, "predict_proba"):
        classes = list(learner.classes_)
        return np.asarray(learner.predict_proba(x), np.float64)[:, classes.index(1.0)]
    return np.asarray(learner.predict(x), np.float64)


def _fit(name: str, seed: int, task: str, x: np.ndarray, y: np.ndarray):
    """A learner fitted on ``(x, y)``; a constant when a classifier's rows hold one class."""
    if task == "classification" and len(np.unique(y)) < 2:
        return _Constant(float(y.mean()) if len(y) else 0.5)
    return make_learner(name, seed, task).fit(x, y)


class _Constant:
    """The training rate of class 1 for every row (a fold with one class only)."""

    def __init__(self, value: float):
        self.value = value

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.value)


def cv_scores(oof: np.ndarray, y: np.ndarray, task: str = "regression") -> dict[str, float]:
    """Out-of-fold scores: ``cv_mae``, or ``cv_log_loss``, ``cv_roc_auc``, ... for a classifier.

    >>> cv_scores(np.array([0.2, 0.9]), np.array([0.0, 1.0]), "classification")["cv_roc_auc"]
    1.0
    """
    if task == "classification":
        metrics = classification_metrics(y, oof)
        return {f"cv_{k}": float(v) for k, v in metrics.items() if k not in ("positives", "n")}
    return {"cv_mae": float(np.abs(oof - y).mean())}


def cv_folds(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``KFold(n_splits=k, shuffle=True, random_state=seed)`` train/validation positions."""
    from sklearn.model_selection import KFold

    if not 2 <= k <= n:
        raise ConfigError(f"cv={k!r}: use 2 ≤ folds ≤ rows ({n})")
    return [
        (a.astype(np.int64), b.astype(np.int64))
        for a, b in KFold(n_splits=k, shuffle=True, random_state=seed).split(np.arange(n))
    ]


def _oof(
    x: np.ndarray, ok: np.ndarray, y: np.ndarray, folds, learner: str, seed: int,
    task: str = "regression",
) -> np.ndarray:  # fmt: skip
    """Out-of-fold predictions; unreadable rows get the training-fold mean (rate of class 1)."""
    out = np.empty(len(y))
    for train, val in folds:
        fit = train[ok[train]]
        model = _fit(learner, seed, task, x[fit], y[fit])
        out[val] = y[train].mean()
        readable = val[ok[val]]
        if len(readable):
            out[readable] = learner_output(model, x[readable])
    return out


def parse_features(features: str) -> tuple[str, ...]:
    """``"descriptors+prediction"`` → ``("descriptors", "prediction")``, checked."""
    parts = tuple(p.strip() for p in str(features).split("+") if p.strip())
    bad = [p for p in parts if p not in FEATURE_PARTS]
    if not parts or bad or len(set(parts)) != len(parts):
        raise ConfigError(
            f"features={features!r}: join distinct parts of {', '.join(FEATURE_PARTS)} "
            "with '+', e.g. 'hidden' or 'descriptors+prediction'"
        )
    return parts


def baseline_descriptors(inputs: Sequence[object]) -> tuple[np.ndarray, np.ndarray, list]:
    """``(float32 values, ok, errors)`` of the baseline descriptors (:data:`BASELINE_SPEC`)."""

    batch = featurize_safely(featurizer_spec(BASELINE_SPEC).build(), list(inputs))
    values = np.nan_to_num(np.asarray(batch.values, np.float32))
    return values, np.asarray(batch.ok, bool), list(batch.errors)


def source_features(
    source, inputs: Sequence[object], depth: int, parts: Sequence[str] = ("hidden",)
) -> tuple[np.ndarray, np.ndarray, list]:
    """The learner's features of ``inputs`` from one zoo model: ``parts`` side by side.

    A row is ok when the source's featurizer (and, with ``descriptors``, the
    baseline's) could read it.
    """
    # lazy: finetune imports Lightning, kept off the frozen featurizer's import path
    from xenonscale.transfer.finetune import featurize_for

    x, ok, errors = featurize_for(source, inputs)
    x = np.nan_to_num(x)
    blocks = []
    for part in parts:
        if part == "hidden":
            blocks.append(hidden_activations(source.model, x, _blocks(source, depth)))
        elif part == "prediction":
            blocks.append(
                np.asarray(predict_array(source.model, x), np.float32).reshape(len(x), -1)
            )
        else:
            values, readable, more = baseline_descriptors(inputs)
            blocks.append(values)
            ok = ok & readable
            errors = errors + [e for e in more if e not in errors]
    return np.hstack(blocks), ok, errors


def _score_source(
    catalog: str,
    artifacts: str,
    ref: str,
    inputs: list,
    y: np.ndarray,
    folds,
    learner: str,
    depth: int,
    finetune: str | None,
    seed: int,
    finetune_options: dict,
    parts: Sequence[str] = ("hidden",),
    task: str = "regression",
) -> dict:
    """One Dask task: load ``ref`` from the zoo location, CV-score its frozen features."""
    # lazy: finetune imports Lightning, kept off the frozen featurizer's import path
    from xenonscale.transfer.finetune import featurize_for, fine_tune

    started = time.perf_counter()
    with single_threaded(), Zoo(catalog, artifacts=artifacts) as zoo:
        source = zoo.load(ref)
        features, ok, _ = source_features(source, inputs, depth, parts)
        oof = _oof(features, ok, y, folds, learner, seed, task)
        key = RANK_BY[task]
        row = {
            "name": str(source.ref),
            "method": f"{_method_prefix(parts)}+{learner}",
            "depth": depth,
            **cv_scores(oof, y, task),
            "oof": oof,
            "unreadable": int((~ok).sum()),
        }
        row[f"frozen_{key}"] = row[key]
        if finetune:
            x, ok, _ = featurize_for(source, inputs)
            tuned = np.empty(len(y))
            for train, val in folds:
                model = fine_tune(
                    source,
                    [inputs[i] for i in train],
                    y[train],
                    freeze=finetune,
                    seed=seed,
                    features=(x[train], ok[train]),
                    task=task,
                    **finetune_options,
                )
                tuned[val] = y[train].mean()
                readable = val[ok[val]]
                if len(readable):
                    tuned[readable] = model.predict_features(x[readable])[:, 0]
            tuned_scores = cv_scores(tuned, y, task)
            row[f"finetune_{key}"] = tuned_scores[key]
            if tuned_scores[key] < row[key]:
                row |= {"method": f"finetune[{finetune}]", **tuned_scores, "oof": tuned}
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def _score_baseline(
    inputs: list, y: np.ndarray, folds, learner: str, seed: int, task: str = "regression"
) -> dict:
    """One Dask task: the same learner on the baseline descriptors, same folds."""
    started = time.perf_counter()
    with single_threaded():
        x, ok, _ = baseline_descriptors(inputs)
        oof = _oof(x, ok, y, folds, learner, seed, task)
    return {
        "name": "baseline",
        "method": f"classic/xenonpy58+{learner}",
        **cv_scores(oof, y, task),
        "oof": oof,
        "unreadable": int((~ok).sum()),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _method_prefix(parts: Sequence[str]) -> str:
    """``frozen`` for hidden features alone (the historical name), else the parts."""
    return "frozen" if tuple(parts) == ("hidden",) else "+".join(parts)


def _blocks(source, depth: int) -> list[int]:
    n = len(source.model.hidden_widths)
    depth = min(int(depth), n)
    return list(range(n - depth, n))


def compatible_sources(zoo, kind: str = "composition") -> list[str]:
    """Names (production, else latest version) of zoo models whose featurizer takes ``kind``."""
    listing = zoo.list()
    names = sorted(set(listing["name"])) if len(listing) else []
    out = []
    for name in names:
        featurizer = zoo.show(name).get("featurizer")
        if isinstance(featurizer, dict) and featurizer.get("kind") == kind:
            out.append(name)
    return out


class FeaturePredictor:
    """A scikit-learn learner on frozen features (or, with no source, on the baseline descriptors).

    Not registrable in the zoo: the zoo stores PropertyModels as safetensors,
    and a fitted scikit-learn model could only be stored by pickling it.
    """

    def __init__(self, source, learner, depth: int, fallback: float, name: str, parts=("hidden",)):
        self.source, self.learner, self.depth = source, learner, depth
        self.parts = tuple(parts)
        self.fallback_ = float(fallback)
        self.name = name
        self.errors_ = errors_frame([])

    def __repr__(self) -> str:
        return f"FeaturePredictor({self.name!r})"

    def features(self, inputs: Sequence[object]) -> tuple[np.ndarray, np.ndarray, list]:
        if self.source is None:
            return baseline_descriptors(inputs)
        return source_features(self.source, inputs, self.depth, self.parts)

    def predict(self, inputs: Sequence[object]) -> np.ndarray:
        """``float64[n]`` (probabilities of class 1 for a classifier); NaN for unreadable rows
        (listed in ``errors_``)."""
        x, ok, errors = self.features(inputs)
        out = np.full(len(ok), np.nan)
        if ok.any():
            out[ok] = learner_output(self.learner, x[ok])
        self.errors_ = errors_frame(errors)
        return out


class Ensemble:
    """The average of several predictors (each with ``predict`` → ``float64[n]``; for a
    classification, the mean probability of class 1)."""

    def __init__(self, members: Sequence[object]):
        self.members = list(members)
        self.fallback_ = float(np.mean([m.fallback_ for m in self.members]))

    @property
    def name(self) -> str:
        return "ensemble(" + ", ".join(m.name for m in self.members) + ")"

    def predict(self, inputs: Sequence[object]) -> np.ndarray:
        inputs = list(inputs)
        stacked = np.stack([np.ravel(m.predict(inputs)) for m in self.members])
        return stacked.mean(axis=0)  # NaN where any member could not read the input


@dataclass
class ShotgunResult:
    """What :func:`shotgun` found: the ranking, CV scores, the final predictors and folds.

    ``metric`` names what ranked the candidates (``mae`` or ``log_loss``),
    ``score`` and ``baseline_score`` are its CV values for the chosen method
    and the baseline; ``scores`` / ``baseline_scores`` hold every CV metric
    (:func:`cv_scores`). ``mae`` and ``baseline_mae`` are the CV MAEs of a
    regression (NaN for a classification, whose ``oof`` are probabilities).
    """

    ranking: list[dict]
    mae: float
    baseline_mae: float
    method: str
    predictor: object
    baseline: FeaturePredictor
    folds: list[tuple[np.ndarray, np.ndarray]]
    oof: np.ndarray
    baseline_oof: np.ndarray
    y: np.ndarray
    seconds: float
    details: dict = field(default_factory=dict)
    task: str = "regression"
    metric: str = "mae"
    score: float = float("nan")
    baseline_score: float = float("nan")
    scores: dict = field(default_factory=dict)
    baseline_scores: dict = field(default_factory=dict)


def zoo_location(zoo) -> tuple[str, str]:
    """``(catalog URL, artifacts URL)`` of an open :class:`Zoo` or a location (picklable)."""
    if isinstance(zoo, Zoo):
        return zoo.catalog.url, zoo.artifacts.root

    return resolve_location(zoo)


def shotgun(
    inputs: Sequence[object],
    y,
    *,
    zoo=None,
    sources: Sequence[str] | None = None,
    kind: str = "composition",
    cv: int = 5,
    seed: int = 0,
    learner: str = "ridge",
    depth: int = 1,
    features: str = "hidden",
    top_k: int = 1,
    task: str | None = None,
    finetune: str | None = None,
    finetune_options: dict | None = None,
    allow_baseline: bool = True,
    client=None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> ShotgunResult:
    """Score sources in parallel on Dask, rank them, build the final predictor (module docstring).

    Parameters
    ----------
    inputs, y
        Raw inputs (formulas) and one finite target per input.
    task
        ``"regression"``, ``"classification"`` (a 0/1 target) or ``None``:
        a classification when ``y`` holds only 0 and 1 (said on stderr).
    zoo
        A :class:`~xenonscale.zoo.Zoo` or its location. Workers open it from
        its location, so it must be reachable from them (a shared folder, or
        PostgreSQL + S3 on a cluster); a ``Zoo`` with non-default
        ``storage_options`` cannot be reopened there.
    sources
        Zoo references; default: :func:`compatible_sources` for ``kind``.
    cv, seed
        ``KFold(cv, shuffle=True, random_state=seed)`` for every candidate and the baseline.
    learner, depth
        The cheap learner (``ridge``, ``krr``, ``gbm``, ``vote``; for a
        classification their counterparts or ``logistic``, ``rf``) and how many hidden blocks
        (from the last) give the frozen features.
    features
        What each source gives the learner: ``+``-joined parts of
        ``hidden``, ``prediction``, ``descriptors`` (module docstring).
    top_k
        1: the best source alone; k > 1: the average of the best k.
    finetune
        ``None``, or a freeze mode (``all``, ``last``, ``none``): also score
        fine-tuning in each fold and keep whichever is better per source.
    allow_baseline
        When the from-scratch baseline's CV score (MAE or log-loss) beats the
        best transfer's, the final predictor is the baseline
        (``method="baseline"``, ``score`` its CV score; the sources are still
        ranked). ``False``: always a transfer.
    client, workers, scheduler
        A Dask client, else one from :func:`xenonscale.cluster.get_client`.
    """

    started = time.perf_counter()
    if learner not in LEARNER_NAMES:
        raise ConfigError(f"learner={learner!r}: use one of {', '.join(LEARNER_NAMES)}")
    parts = parse_features(features)
    inputs = list(inputs)
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(inputs) != len(y):
        raise ConfigError(f"{len(inputs)} inputs but {len(y)} targets: give one per input")
    if not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y))[:5].tolist()
        raise ConfigError(f"targets at rows {bad} are not finite: drop those rows first")
    task = resolve_task(task, y[:, None], ["target"])
    if task == "classification":
        learner = COUNTERPARTS.get(learner, learner)
    make_learner(learner, seed, task)  # a classifier on a regression fails here, before any work
    key = RANK_BY[task]
    if top_k < 1:
        raise ConfigError(f"top_k={top_k!r}: use 1 (best source) or more (ensemble)")
    catalog, artifacts = zoo_location(zoo)
    with Zoo(catalog, artifacts=artifacts) as opened:
        refs = list(sources) if sources else compatible_sources(opened, kind)
    if not refs:
        raise ConfigError(
            f"no source models of kind {kind!r} in the zoo {catalog!r}: "
            "train some (xenonscale zoo build --preset mp) or pass sources"
        )
    folds = cv_folds(len(y), cv, seed)
    call = uuid.uuid4().hex  # unique task keys: Dask would reuse a finished task's result
    own = client is None
    client = client or get_client(scheduler, workers=workers, quiet=True)
    try:
        # One scattered copy per call (hash=False: unique keys). Broadcasting the same
        # content-hashed keys on every call stalled worker-to-worker transfers under
        # distributed 2026.7 (a second call with equal inputs never finished).
        shared_inputs, shared_y = client.scatter([inputs, y], hash=False)
        futures = [
            client.submit(
                _score_source,
                catalog,
                artifacts,
                ref,
                shared_inputs,
                shared_y,
                folds,
                learner,
                depth,
                finetune,
                seed,
                dict(finetune_options or {}),
                parts,
                task,
                key=f"transfer-score-{ref}-{call}-{i}",
                pure=False,
            )
            for i, ref in enumerate(refs)
        ]
        futures.append(
            client.submit(
                _score_baseline,
                shared_inputs,
                shared_y,
                folds,
                learner,
                seed,
                task,
                key=f"transfer-baseline-{call}",
                pure=False,
            )
        )
        rows = client.gather(futures)
    finally:
        if own:
            close_client(client)
    baseline_row = rows.pop()
    ranking = sorted(rows, key=lambda r: (r[key], r["name"]))
    top = ranking[: min(top_k, len(ranking))]
    oof = np.mean([r["oof"] for r in top], axis=0)
    members = [
        _final(
            r,
            inputs,
            y,
            zoo if isinstance(zoo, Zoo) else (catalog, artifacts),
            learner,
            depth,
            finetune_options,
            seed,
            parts,
            task,
        )
        for r in top
    ]
    predictor = members[0] if len(members) == 1 else Ensemble(members)
    baseline = _fit_feature_predictor(None, inputs, y, learner, depth, seed, "baseline", task=task)
    method = (
        top[0]["method"] + ":" + top[0]["name"]
        if len(top) == 1
        else ("ensemble of " + ", ".join(f"{r['method']}:{r['name']}" for r in top))
    )
    transfer_scores = cv_scores(oof, y, task)
    if allow_baseline and baseline_row[key] < transfer_scores[key]:
        predictor, method, oof = baseline, "baseline", np.asarray(baseline_row["oof"])
    scores = cv_scores(oof, y, task)
    baseline_scores = {k: v for k, v in baseline_row.items() if k.startswith("cv_")}
    regression = task == "regression"
    return ShotgunResult(
        ranking=[{k: v for k, v in r.items() if k != "oof"} for r in ranking],
        mae=scores["cv_mae"] if regression else float("nan"),
        baseline_mae=baseline_row["cv_mae"] if regression else float("nan"),
        method=method,
        predictor=predictor,
        baseline=baseline,
        folds=folds,
        oof=oof,
        baseline_oof=baseline_row["oof"],
        y=y,
        seconds=time.perf_counter() - started,
        details={
            "baseline": {k: v for k, v in baseline_row.items() if k != "oof"},
            "learner": learner,
            "depth": depth,
            "features": "+".join(parts),
            "top_k": len(top),
            "cv": cv,
            "seed": seed,
            "finetune": finetune,
            "task": task,
            f"transfer_{key[len('cv_') :]}": transfer_scores[key],
            "transfer_scores": transfer_scores,
            "transfer_method": top[0]["method"] if len(top) == 1 else "ensemble",
        },
        task=task,
        metric=key[len("cv_") :],
        score=scores[key],
        baseline_score=baseline_row[key],
        scores=scores,
        baseline_scores=baseline_scores,
    )


def _fit_feature_predictor(
    source, inputs, y, learner, depth, seed, name, parts=("hidden",), task="regression"
) -> FeaturePredictor:
    predictor = FeaturePredictor(source, None, depth, float(y.mean()), name, parts)
    x, ok, _ = predictor.features(inputs)
    predictor.learner = _fit(learner, seed, task, x[ok], y[ok])
    return predictor


def _final(
    row: dict, inputs, y, zoo, learner, depth, finetune_options, seed, parts, task="regression"
):
    """Refit the chosen method of one ranked source on all rows."""
    # lazy: finetune imports Lightning, kept off the frozen featurizer's import path
    from xenonscale.transfer.finetune import fine_tune

    if isinstance(zoo, Zoo):
        source = zoo.load(row["name"])
    else:
        with Zoo(zoo[0], artifacts=zoo[1]) as opened:
            source = opened.load(row["name"])
    if row["method"].startswith("finetune["):
        freeze = row["method"][len("finetune[") : -1]
        return fine_tune(
            source, inputs, y, freeze=freeze, seed=seed, task=task, **dict(finetune_options or {})
        )
    return _fit_feature_predictor(
        source, inputs, y, learner, depth, seed, f"{row['method']}:{row['name']}", parts, task
    )
