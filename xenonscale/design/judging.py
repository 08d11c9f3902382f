"""Judges of designed molecules: models of other families, fitted on data the design never saw.

A design's own forward models always agree with its results: the chains
went where those models say the target is. An honest figure needs a second
opinion that shares neither the models' family nor their training rows.
:class:`IndependentJudges` fits two judges per property on held-out data:

* ``random_forest``: a random forest (scikit-learn's defaults: 100 fully grown
  trees, every feature considered at each split) on Morgan counts (radius 2,
  2,048 entries);
* ``gradient_boosting``: histogram gradient boosting on RDKit's 2D descriptors
  (:class:`~xenonscale.featurize.molecules.RDKitDescriptors`; NaN kept, the
  boosting handles it).

Both are tree ensembles, a family the design's likelihood does not use
(BayesianRidge and Tanimoto neighbours, :mod:`xenonscale.design.families`),
and they see different inputs. :meth:`IndependentJudges.verdict` gives each
judge's predicted means and whether they fall in every target range;
:meth:`IndependentJudges.scores` their R² and MAE on rows with known values
(how far to trust them). An unreadable molecule is a miss for every judge.

Examples
--------
>>> import pandas as pd
>>> from xenonscale.design.judging import IndependentJudges
>>> smiles = ["C" * n for n in range(1, 31)]
>>> data = pd.DataFrame({"n": [float(n) for n in range(1, 31)]})
>>> judges = IndependentJudges(["n=:10"], trees=20).fit(smiles, data)
>>> verdict = judges.verdict(["CCC", "C" * 25, "not a smiles"])
>>> verdict["in_target_random_forest"].tolist()
[True, False, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import pandas as pd

from xenonscale.design.targets import Target, parse_targets
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import featurize_safely
from xenonscale.featurize.molecules import ECFP, RDKitDescriptors

__all__ = ["JUDGES", "IndependentJudges"]

#: The judges, in report order.
JUDGES = ("random_forest", "gradient_boosting")


class IndependentJudges:
    """Random forest on Morgan counts and gradient boosting on RDKit descriptors, per property.

    Parameters
    ----------
    targets : list of str or Target
        ``"NAME=LOW:HIGH"`` texts; one pair of judges per name.
    trees : int, default 100
        Trees of the random forest.
    boosting_iterations : int, default 500
        Boosting iterations (trees) of the gradient-boosting judge, at a
        learning rate of 0.05. Fewer fit faster and judge a little worse: a
        quick look, not the figure a report quotes.
    seed : int, default 0
        Random state of both judges.
    """

    def __init__(
        self,
        targets: Sequence[str | Target],
        *,
        trees: int = 100,
        boosting_iterations: int = 500,
        seed: int = 0,
    ):
        for name, value in (("trees", trees), ("boosting_iterations", boosting_iterations)):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ConfigError(f"{name}={value!r}: give a whole number of 1 or more")
        self.targets = targets
        self.trees = trees
        self.boosting_iterations = boosting_iterations
        self.seed = seed

    def _inputs(self, smiles: Sequence[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        smiles = list(smiles)
        morgan = featurize_safely(ECFP(radius=2, n_bits=2048, counting=True), smiles)
        descriptors = featurize_safely(RDKitDescriptors(), smiles)
        values = np.asarray(descriptors.values, np.float64)
        values[~np.isfinite(values)] = np.nan
        ok = np.asarray(morgan.ok, bool) & np.asarray(descriptors.ok, bool)
        return {
            "random_forest": np.asarray(morgan.values, np.float32),
            "gradient_boosting": np.clip(values, -1e12, 1e12),
        }, ok

    def fit(self, smiles: Sequence[str], properties: pd.DataFrame) -> IndependentJudges:
        """Fit both judges of every target property on ``smiles`` and their values."""
        from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor

        targets = parse_targets(self.targets)
        if len(properties) != len(smiles):
            raise ConfigError(
                f"{len(smiles)} SMILES but {len(properties)} property rows: give one row per SMILES"
            )
        inputs, ok = self._inputs(smiles)
        self.targets_ = targets
        self.models_: dict[str, dict[str, object]] = {}
        for target in targets:
            if target.name not in properties.columns:
                raise ConfigError(
                    f"no column {target.name!r} for the judges; columns: {list(properties.columns)}"
                )
            y = pd.to_numeric(properties[target.name], errors="coerce").to_numpy(np.float64)
            rows = ok & np.isfinite(y)
            if rows.sum() < 10:
                raise ConfigError(
                    f"target {target.name!r}: {int(rows.sum())} usable rows; judges need 10 or more"
                )
            forest = RandomForestRegressor(
                n_estimators=self.trees, n_jobs=-1, random_state=self.seed
            )
            boosting = HistGradientBoostingRegressor(
                max_iter=self.boosting_iterations, learning_rate=0.05, random_state=self.seed
            )
            self.models_[target.name] = {
                "random_forest": forest.fit(inputs["random_forest"][rows], y[rows]),
                "gradient_boosting": boosting.fit(inputs["gradient_boosting"][rows], y[rows]),
            }
        return self

    def predict(self, smiles: Sequence[str]) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
        """``{judge: frame of predicted means per property}`` and the readable mask."""
        if not hasattr(self, "models_"):
            raise ConfigError("these judges are not fitted: call fit(smiles, properties) first")
        inputs, ok = self._inputs(smiles)
        out = {}
        for judge in JUDGES:
            frame = {}
            for name, models in self.models_.items():
                column = np.full(len(ok), np.nan)
                if ok.any():
                    column[ok] = models[judge].predict(inputs[judge][ok])
                frame[name] = column
            out[judge] = pd.DataFrame(frame)
        return out, ok

    def verdict(self, smiles: Sequence[str]) -> pd.DataFrame:
        """Per molecule: ``valid``, ``<property>_<judge>`` means, ``in_target_<judge>``."""
        predictions, ok = self.predict(smiles)
        frame = {"valid": ok}
        for judge, means in predictions.items():
            inside = ok.copy()
            for target in self.targets_:
                frame[f"{target.name}_{judge}"] = means[target.name].to_numpy()
                inside &= target.contains(means[target.name].to_numpy())
            frame[f"in_target_{judge}"] = inside
        return pd.DataFrame(frame)

    def scores(self, smiles: Sequence[str], properties: pd.DataFrame) -> dict[str, dict]:
        """``{judge: {property: {"r2", "mae", "rows"}}}`` on rows with known values."""
        predictions, ok = self.predict(smiles)
        report: dict[str, dict] = {}
        for judge, means in predictions.items():
            report[judge] = {}
            for target in self.targets_:
                y = pd.to_numeric(properties[target.name], errors="coerce").to_numpy(np.float64)
                rows = ok & np.isfinite(y)
                error = means[target.name].to_numpy()[rows] - y[rows]
                spread = float(((y[rows] - y[rows].mean()) ** 2).sum())
                report[judge][target.name] = {
                    "r2": float(1.0 - (error**2).sum() / spread) if spread > 0 else float("nan"),
                    "mae": float(np.abs(error).mean()),
                    "rows": int(rows.sum()),
                }
        return report
