"""The MinMax-kernel Gaussian process of the design likelihood (issue 17, item 5).

References are independent: the textbook posterior written with dense
``numpy.linalg.solve`` on a brute-force MinMax kernel, SciPy's multivariate
normal density for the marginal likelihood, and refits without each row for
the closed-form leave-one-out predictions.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

from xenonscale.config import data_dir
from xenonscale.design.families import FamilyEnsemble
from xenonscale.design.gaussian_process import TanimotoGP
from xenonscale.errors import ConfigError
from xenonscale.featurize.molecules import ECFP


@pytest.fixture(scope="module")
def gap_data():
    path = data_dir() / "molecules" / "iqspr_pubchemqc.csv"
    if not path.is_file():
        pytest.skip(f"data mirror not found: {path} (set XENONSCALE_DATA_DIR)")
    frame = pd.read_csv(path).sample(900, random_state=5).reset_index(drop=True)
    x = ECFP(radius=2, n_bits=1024, counting=True).transform(frame["SMILES"]).to_numpy()
    ok = np.isfinite(x).all(axis=1)
    return x[ok].astype(int), frame["HOMO-LUMO gap"].to_numpy(float)[ok]


def _brute_minmax(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    low = np.minimum(a[:, None, :], b[None, :, :]).sum(-1)
    high = np.maximum(a[:, None, :], b[None, :, :]).sum(-1)
    return np.where(high > 0, low / np.where(high > 0, high, 1), 0.0)


def test_posterior_equals_the_textbook_formulas(gap_data):
    x, y = gap_data
    train, test = slice(0, 150), slice(700, 760)
    model = TanimotoGP(noise=0.05).fit(x[train], y[train])
    kernel = _brute_minmax(x[train], x[train]) + 0.05 * np.eye(150)
    cross = _brute_minmax(x[test], x[train])
    m = y[train].mean()
    variance = (y[train] - m) @ np.linalg.solve(kernel, y[train] - m) / 150
    mean = m + cross @ np.linalg.solve(kernel, y[train] - m)
    explained = np.einsum("ij,ji->i", cross, np.linalg.solve(kernel, cross.T))
    std = np.sqrt(variance * (1.05 - explained))
    got_mean, got_std = model.predict(x[test], return_std=True)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_std, std, rtol=1e-3, atol=1e-4)
    assert model.signal_variance_ == pytest.approx(variance, rel=1e-6)
    density = multivariate_normal(np.full(150, m), variance * kernel).logpdf(y[train])
    assert model.log_marginal_likelihood_[0.05] == pytest.approx(density, rel=1e-6)


def test_noise_is_chosen_by_marginal_likelihood_and_loo_is_exact(gap_data):
    x, y = gap_data
    x, y = x[:60], y[:60]
    model = TanimotoGP().fit(x, y)
    scores = model.log_marginal_likelihood_
    assert model.noise_ == max(scores, key=scores.get) and len(scores) == 5
    for row in (0, 17, 59):  # a refit without the row, same λ, predicts it as the closed form
        keep = np.arange(60) != row
        refit = TanimotoGP(noise=model.noise_).fit(x[keep], y[keep])
        # the closed form keeps the full-data mean and s²; the mean shift is O(1/n)
        kernel = _brute_minmax(x[keep], x[keep]) + model.noise_ * np.eye(59)
        brute = model.y_mean_ + _brute_minmax(x[row : row + 1], x[keep]) @ np.linalg.solve(
            kernel, y[keep] - model.y_mean_
        )
        assert model.loo_predictions_[row] == pytest.approx(float(brute[0]), rel=1e-6)
        assert abs(refit.predict(x[row : row + 1])[0] - brute[0]) < 0.1


def test_held_out_error_beats_the_linear_family_and_is_calibrated(gap_data):
    from sklearn.linear_model import BayesianRidge

    x, y = gap_data
    model = TanimotoGP().fit(x[:600], y[:600])
    mean, std = model.predict(x[600:], return_std=True)
    ridge = BayesianRidge().fit(x[:600], y[:600]).predict(x[600:])
    gp_mae, ridge_mae = np.abs(mean - y[600:]).mean(), np.abs(ridge - y[600:]).mean()
    assert gp_mae < ridge_mae
    z = (y[600:] - mean) / std
    assert 0.7 < z.std() < 1.4
    # far from the data: the prior mean and the prior's width
    far_mean, far_std = model.predict(np.zeros((1, x.shape[1]), int), return_std=True)
    assert far_mean[0] == pytest.approx(model.y_mean_)
    assert far_std[0] == pytest.approx(np.sqrt(model.signal_variance_ * (1 + model.noise_)))


def test_pickled_model_rebuilds_its_factor_and_predicts_the_same(gap_data):
    x, y = gap_data
    model = TanimotoGP(noise=0.03).fit(x[:200], y[:200])
    text = pickle.dumps(model)
    assert len(text) < 200 * x.shape[1] + 50_000  # counts and weights, not the n² factor
    copy = pickle.loads(text)
    for a, b in zip(
        copy.predict(x[200:230], return_std=True),
        model.predict(x[200:230], return_std=True),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_family_mixture_weighs_the_process_by_its_leave_one_out_error(gap_data):
    from sklearn.linear_model import BayesianRidge

    x, y = gap_data
    ensemble = FamilyEnsemble([BayesianRidge(), TanimotoGP()], cv=3).fit(x[:300], y[:300])
    process = ensemble.members_[1]
    rmse = float(np.sqrt(np.mean((process.loo_predictions_ - y[:300]) ** 2)))
    assert ensemble.cv_rmse_[1] == pytest.approx(rmse)


def test_bad_arguments_fail_fast():
    x = np.array([[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ConfigError, match="noise"):
        TanimotoGP(noise=0).fit(x, [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="max_rows"):
        TanimotoGP(max_rows=2).fit(x, [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="finite"):
        TanimotoGP().fit(x, [1.0, np.nan, 3.0])
    with pytest.raises(ConfigError, match="not fitted"):
        TanimotoGP().predict(x)
    with pytest.raises(ConfigError, match="non-negative"):
        TanimotoGP().fit(-x, [1.0, 2.0, 3.0])
