"""Inverse design: targets, likelihood, SMC sampler, ensemble on Dask, CLI and plots."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from xenonscale.design import (
    DEFAULT_BETAS,
    SMC,
    Likelihood,
    Target,
    annealing_schedule,
    design,
    log_probability_between,
    parse_target,
    parse_targets,
    population_metrics,
)
from xenonscale.errors import ConfigError, DesignError

TARGETS = ["E=0:200", "HOMO-LUMO gap=:3"]


# -- proposals for the sampler tests (the n-gram is tested in its own module) ------------------


class Grow:
    """Appends a random fragment, or drops the last character (may give invalid SMILES)."""

    fragments = ("C", "CC", "O", "N", "C(C)", "C(=O)O", "c1ccccc1")

    def propose(self, smiles, rng):
        out = []
        for s in smiles:
            if rng.random() < 0.3 and len(s) > 2:
                out.append(s[:-1])
            else:
                out.append(s + self.fragments[rng.integers(len(self.fragments))])
        return out


class NoBromine(Grow):
    """Grow, except that it refuses parents with bromine (a chain that will fail)."""

    def propose(self, smiles, rng):
        if any("Br" in s for s in smiles):
            raise ValueError("this proposal cannot handle bromine")
        return super().propose(smiles, rng)


class Constant:
    def propose(self, smiles, rng):
        return ["CCO" for _ in smiles]


class Broken:
    def propose(self, smiles, rng):
        return ["C1CC" for _ in smiles]


class Short:
    def propose(self, smiles, rng):
        return list(smiles)[1:]


@pytest.fixture(scope="module", autouse=True)
def _module_setup():
    """Dask workers cannot import this test module: pickle its classes by value.

    BLAS runs one thread here: on a small shared machine, BayesianRidge's
    multi-threaded matrix products run 5-10x slower than one thread.
    """
    import cloudpickle
    from threadpoolctl import threadpool_limits

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with threadpool_limits(1):
        yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def iqspr(data_dir) -> pd.DataFrame:
    """2,000 seeded rows of the iQSPR tutorial data."""
    frame = pd.read_csv(data_dir / "molecules" / "iqspr_pubchemqc.csv")
    return frame.sample(2000, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(iqspr) -> Likelihood:
    """Default forward models (BayesianRidge on ECFP counts + MACCS) on 1,500 rows."""
    train = iqspr.iloc[:1500]
    return Likelihood(TARGETS).fit(train["SMILES"].tolist(), train[["E", "HOMO-LUMO gap"]])


@pytest.fixture(scope="module")
def big_e(iqspr) -> Likelihood:
    """A forward model of E only, aiming at large molecules (E > 300)."""
    return Likelihood(["E=300:"]).fit(iqspr["SMILES"].tolist(), iqspr[["E"]])


@pytest.fixture(scope="module")
def small(iqspr) -> list[str]:
    """Small molecules (E < 120): start sets far from E > 300."""
    return iqspr.loc[iqspr["E"] < 120, "SMILES"].tolist()


# -- targets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "low", "high"),
    [
        ("E=0:200", "E", 0.0, 200.0),
        ("HOMO-LUMO gap=:3", "HOMO-LUMO gap", -math.inf, 3.0),
        ("x=1.5:", "x", 1.5, math.inf),
        (" dipole (D) = -1e-1 : 2.5 ", "dipole (D)", -0.1, 2.5),
        ("a=b=1:2", "a=b", 1.0, 2.0),
    ],
)
def test_targets_parse_with_open_ends(text, name, low, high):
    target = parse_target(text)
    assert (target.name, target.low, target.high) == (name, low, high)
    assert parse_target(str(target)) == target


@pytest.mark.parametrize("text", ["E", "E=", "E=1", "=1:2", "E=abc:1", "E=5:1", "E=3:3", "E=:"])
def test_bad_targets_name_the_text(text):
    with pytest.raises(ConfigError) as info:
        parse_target(text)
    assert repr(text) in str(info.value)


def test_target_contains_and_duplicates():
    target = Target("E", 0.0, 200.0)
    assert target.contains([-1, 0, 1, 199, 200, np.nan]).tolist() == [
        False, False, True, True, False, False,
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="more than once"):
        parse_targets(["E=0:1", "E=2:3"])
    with pytest.raises(ConfigError, match="no target"):
        parse_targets([])


# -- likelihood --------------------------------------------------------------------------------


def test_log_probability_matches_high_precision_and_stays_finite_in_the_tails():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 60

    def exact(m, s, low, high):
        # Φ(b) − Φ(a) = (erfc(−b/√2) − erfc(−a/√2)) / 2 = (erfc(a/√2) − erfc(b/√2)) / 2:
        # the form of the tail the interval lies in keeps every digit
        a = mpmath.mpf(low - m) / s if np.isfinite(low) else -mpmath.inf
        b = mpmath.mpf(high - m) / s if np.isfinite(high) else mpmath.inf
        root = mpmath.sqrt(2)
        if a > 0:
            p = (mpmath.erfc(a / root) - mpmath.erfc(b / root)) / 2
        else:
            p = (mpmath.erfc(-b / root) - mpmath.erfc(-a / root)) / 2
        return float(mpmath.log(p))

    rng = np.random.default_rng(0)
    mean, std = rng.normal(0, 3, 100), rng.uniform(0.1, 3, 100)
    bounds = [(-1.0, 2.0), (-np.inf, 0.5), (1.0, np.inf), (4.0, 6.0), (-6.0, -4.0), (30.0, 31.0)]
    for low, high in bounds:
        got = log_probability_between(mean, std, low, high)
        expected = [exact(m, s, low, high) for m, s in zip(mean, std, strict=True)]
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    # scipy.stats.norm agrees where the plain difference of CDFs keeps its digits
    with np.errstate(divide="ignore"):
        plain = np.log(norm.cdf(2.0, mean, std) - norm.cdf(-1.0, mean, std))
    fine = plain > -20
    ours = log_probability_between(mean, std, -1.0, 2.0)
    np.testing.assert_allclose(ours[fine], plain[fine], rtol=1e-9, atol=1e-12)
    # 40 to 60 standard deviations out: the plain difference is 0, ours is finite
    assert np.isclose(log_probability_between(0.0, 1.0, -np.inf, -60.0), norm.logcdf(-60.0))
    assert np.isclose(log_probability_between(0.0, 1.0, 40.0, 41.0), exact(0, 1, 40.0, 41.0))


def test_log_likelihood_is_the_sum_of_gaussian_interval_logs(fitted, iqspr):
    smiles = iqspr["SMILES"].iloc[1500:1520].tolist()
    means, stds = fitted.predict(smiles)
    expected = np.zeros(len(smiles))
    for target in fitted.targets_:
        m, s = means[target.name].to_numpy(), stds[target.name].to_numpy()
        with np.errstate(divide="ignore"):
            expected += np.log(norm.cdf(target.high, m, s) - norm.cdf(target.low, m, s))
    got = fitted.log_likelihood(smiles)
    usable = expected > -700  # where the plain formula has digits left
    np.testing.assert_allclose(got[usable], expected[usable], rtol=1e-8)
    assert (stds.to_numpy() > 0).all()
    # per-call targets replace the fitted ranges
    wide = fitted.log_likelihood(smiles, ["E=-1e9:1e9", "HOMO-LUMO gap=-1e9:1e9"])
    np.testing.assert_allclose(wide, 0.0, atol=1e-9)
    with pytest.raises(ConfigError, match="no forward model"):
        fitted.log_likelihood(smiles, ["dipole=0:1"])


def test_invalid_smiles_get_a_low_finite_log_likelihood(fitted):
    smiles = ["CCO", "C1CC", "", "not a molecule", "N(C)(C)(C)(C)C", "c1ccccc1"]
    frame = fitted.evaluate(smiles)
    ll = frame["log_likelihood"].to_numpy()
    assert np.isfinite(ll).all()
    assert frame["valid"].tolist() == [True, False, False, False, False, True]
    assert (ll[~frame["valid"].to_numpy()] == -1000.0).all()
    assert (ll[frame["valid"].to_numpy()] >= -900.0).all()  # readable ranks above unreadable
    far = fitted.log_likelihood(["CCO"], ["E=1e6:", "HOMO-LUMO gap=:3"])
    assert far.tolist() == [-900.0]
    assert not frame.loc[~frame["valid"], "in_target"].any()
    assert frame.loc[~frame["valid"], "E_mean"].isna().all()


def test_bayesian_ridge_beats_the_mean_on_held_out_rows(fitted, iqspr):
    held = iqspr.iloc[1500:]
    means, stds = fitted.predict(held["SMILES"].tolist())
    train = iqspr.iloc[:1500]
    for name in ("E", "HOMO-LUMO gap"):
        y, ok = held[name].to_numpy(), means[name].notna().to_numpy()
        mae = np.abs(means[name].to_numpy()[ok] - y[ok]).mean()
        baseline = np.abs(train[name].mean() - y[ok]).mean()
        assert mae < 0.75 * baseline, (name, mae, baseline)
        z = (y[ok] - means[name].to_numpy()[ok]) / stds[name].to_numpy()[ok]
        assert 0.5 < z.std() < 2.0  # roughly calibrated
    assert fitted.std_source_ == {
        "E": "BayesianRidge return_std",
        "HOMO-LUMO gap": "BayesianRidge return_std",
    }
    assert fitted.n_train_ == {"E": 1500, "HOMO-LUMO gap": 1500}


def test_regressor_without_std_uses_cv_residuals_and_missing_values_are_dropped(iqspr):
    from sklearn.linear_model import Ridge

    train = iqspr.iloc[:300].copy()
    train.loc[:9, "E"] = np.nan  # missing E only: the gap model keeps these rows
    smiles = train["SMILES"].tolist()
    smiles[10] = "C1CC"  # unreadable: skipped, counted
    likelihood = Likelihood(TARGETS, models={"E": Ridge(alpha=10.0)}, cv=3)
    likelihood.fit(smiles, train[["E", "HOMO-LUMO gap"]])
    assert likelihood.n_train_ == {"E": 289, "HOMO-LUMO gap": 299}
    assert likelihood.n_invalid_smiles_ == 1
    assert likelihood.std_source_["E"] == "3-fold CV residual RMSE"
    _, stds = likelihood.predict(["CCO", "CCCO"])
    assert stds["E"].nunique() == 1 and stds["E"].iloc[0] > 0


def test_a_real_zoo_model_is_a_forward_model(iqspr, tmp_path):
    """A PropertyModel trained on MACCS keys, registered and loaded from a real zoo."""
    import torch

    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.models import PropertyModel
    from xenonscale.zoo import Zoo, featurizer_fields

    spec = FeaturizerSpec.parse("molecule", "maccs")
    rows = iqspr.iloc[:600]
    x = np.asarray(spec.build().featurize_batch(rows["SMILES"].tolist()).values, np.float32)
    y = rows["HOMO-LUMO gap"].to_numpy(np.float32)
    torch.manual_seed(0)
    model = PropertyModel({"in_features": x.shape[1], "out_features": 1, "hidden": [16],
                           "dropout": 0.0})  # fmt: skip
    model.fit_scaling(x.mean(0), x.std(0), y.mean(keepdims=True), y.std(keepdims=True))
    with Zoo(tmp_path / "zoo") as zoo:
        card = featurizer_fields(spec) | {"targets": ["gap"], "metrics": {"val": {"rmse": 0.8}}}
        zoo.register("gap-maccs", model.eval(), card)
        zoo.register("gap-no-metrics", model, card | {"metrics": {}})
        loaded = zoo.load("gap-maccs")
        card_less = zoo.load("gap-no-metrics")
    likelihood = Likelihood(["HOMO-LUMO gap=:3"], models={"HOMO-LUMO gap": loaded})
    likelihood.fit(rows["SMILES"].tolist(), rows[["HOMO-LUMO gap"]])
    smiles = ["c1ccccc1O", "CCO", "C1CC"]
    frame = likelihood.evaluate(smiles)
    direct = loaded.predict(smiles)["gap"].to_numpy()
    np.testing.assert_allclose(frame["HOMO-LUMO gap_mean"][:2], direct[:2], rtol=1e-6)
    assert frame["HOMO-LUMO gap_std"].tolist()[:2] == [0.8, 0.8]
    assert likelihood.std_source_["HOMO-LUMO gap"] == "zoo gap-maccs@1 val RMSE"
    expected = norm.logcdf(3.0, direct[0], 0.8)
    assert np.isclose(frame["log_likelihood"].iloc[0], expected)
    assert frame["valid"].tolist() == [True, True, False]
    assert frame["log_likelihood"].iloc[2] == -1000.0
    with pytest.raises(ConfigError, match="RMSE"):
        Likelihood(["gap=:1"], models={"gap": card_less}).fit(["C"], pd.DataFrame(index=[0]))


def test_bad_likelihood_arguments():
    with pytest.raises(ConfigError, match="not fitted"):
        Likelihood(TARGETS).log_likelihood(["C"])
    with pytest.raises(ConfigError, match="no column 'E'"):
        Likelihood(["E=0:1"]).fit(["C", "CC"], pd.DataFrame({"x": [1.0, 2.0]}))
    with pytest.raises(ConfigError, match="have no target"):
        Likelihood(["E=0:1"], models={"F": None}).fit(["C"], pd.DataFrame({"E": [1.0]}))


# -- sampler -----------------------------------------------------------------------------------


def test_annealing_schedule():
    assert len(DEFAULT_BETAS) == 50 and DEFAULT_BETAS[0] == 0.01 and DEFAULT_BETAS[-1] == 1.0
    np.testing.assert_array_equal(annealing_schedule(), DEFAULT_BETAS)
    np.testing.assert_allclose(annealing_schedule(50), DEFAULT_BETAS)
    short = annealing_schedule(8)
    assert len(short) == 8 and short[0] == 0.01 and short[-1] == 1.0
    assert (np.diff(short) >= 0).all()
    assert annealing_schedule(betas=[0.1, 0.5]).tolist() == [0.1, 0.5]
    for bad in ({"steps": 0}, {"betas": []}, {"betas": [0.1, np.nan]}, {"betas": [-1.0]}):
        with pytest.raises(ConfigError):
            annealing_schedule(**bad)


def test_sampler_moves_the_population_toward_the_target(big_e, small):
    frame = SMC(big_e, Grow(), samples=12, steps=12).run(small[:12], seed=3)
    hits = frame.groupby("step")["in_target"].mean()
    assert hits.iloc[0] == 0.0
    assert hits.iloc[-1] > 0.5
    assert frame["step"].max() == 12 and set(frame["beta"].iloc[-12:]) == {1.0}
    for _, population in frame.groupby("step"):
        keys = population["canonical_smiles"].fillna("?" + population["smiles"])
        assert keys.is_unique  # deduplicated
        assert len(population) <= 12
    assert np.isfinite(frame["log_likelihood"]).all()


def test_sampler_is_deterministic_with_a_seed(big_e, small):
    sampler = SMC(big_e, Grow(), samples=8, steps=5)
    first = sampler.run(small[:30], seed=11)
    again = sampler.run(small[:30], seed=11)
    other = sampler.run(small[:30], seed=12)
    pd.testing.assert_frame_equal(first, again)
    assert first["smiles"].tolist() != other["smiles"].tolist()


def test_duplicates_shrink_the_population_and_bad_proposals_raise(big_e):
    sampler = SMC(big_e, Constant(), samples=6, steps=2, metropolis=False)
    frame = sampler.run(["C", "CC", "CCC"], seed=0)
    assert frame.groupby("step").size().tolist() == [3, 1, 1]
    with pytest.raises(DesignError, match="one proposal per input"):
        SMC(big_e, Short(), samples=4, steps=2).run(["C", "CC"], seed=0)
    with pytest.raises(ConfigError, match="propose"):
        SMC(big_e, object())
    with pytest.raises(ConfigError, match="samples"):
        SMC(big_e, Grow(), samples=0)


def test_metropolis_keeps_parents_that_are_better_than_their_children(big_e, small):
    start = small[:6]
    kept = SMC(big_e, Broken(), samples=6, betas=[1.0, 1.0]).run(start, seed=0)
    assert kept["valid"].all()  # every invalid child rejected: the parents stay
    assert set(kept.loc[kept["step"] == 2, "smiles"]) <= set(start)
    plain = SMC(big_e, Broken(), samples=6, betas=[1.0], metropolis=False).run(start, seed=0)
    assert plain.loc[plain["step"] == 1, "smiles"].tolist() == ["C1CC"]
    # at β = 0 every child is accepted, whatever its likelihood
    free = SMC(big_e, Broken(), samples=6, betas=[0.0]).run(start, seed=0)
    assert free.loc[free["step"] == 1, "smiles"].tolist() == ["C1CC"]


def test_population_metrics():
    m = population_metrics(
        ["CCO", "OCC", "C1CC", "CCN", "c1ccccc1"], reference=["CCO"], in_target=[1, 1, 0, 0, 1]
    )
    assert (m["n"], m["n_valid"], m["n_unique"], m["n_novel"]) == (5, 4, 3, 2)
    assert (m["validity"], m["in_target"]) == (0.8, 0.6)
    assert math.isnan(population_metrics([])["validity"])


# -- ensemble on Dask --------------------------------------------------------------------------


def test_ensemble_reports_a_failing_chain_and_the_others_finish(
    tmp_path, dask_client, big_e, small
):
    starts = [small[:8], ["CCBr", "CCCBr", "CC(Br)C"], small[8:16]]
    targets = [["E=300:"], ["E=300:"], ["E=0:100"]]
    out = tmp_path / "run.parquet"
    result = design(
        big_e, NoBromine(), out, chains=3, samples=8, steps=6, start=starts,
        reference=small, chain_targets=targets, client=dask_client, progress=False, seed=5,
    )  # fmt: skip
    assert [c.status for c in result.chains] == ["done", "failed", "done"]
    failed = result.chains[1]
    assert failed.failed_step == 1 and "bromine" in failed.error
    assert failed.rows == 3  # its start population, written before it failed
    frame = result.frame()
    assert list(frame.columns) == [
        "smiles", "canonical_smiles", "chain", "step", "beta", "valid", "log_likelihood",
        "E_mean", "E_std", "in_target",
    ]  # fmt: skip
    assert len(frame) == result.rows == sum(c.rows for c in result.chains)
    assert frame.groupby("chain").size().to_dict() == {c.chain: c.rows for c in result.chains}
    assert frame.loc[frame["chain"] != 1, "step"].max() == 6
    # per-chain targets: chain 2 aims below 100
    two = frame[frame["chain"] == 2]
    inside = two["valid"] & (two["E_mean"] > 0) & (two["E_mean"] < 100)
    assert (two["in_target"] == inside).all()
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["chains_failed"] == 1 and summary["rows"] == len(frame)
    assert summary["chain_status"][1]["error"] == failed.error
    assert summary["chain_status"][2]["targets"] == ["E=0:100"]
    assert summary["metrics"]["n"] == len(frame[(frame["step"] == 6) & (frame["chain"] != 1)])
    assert 0 <= result.metrics["novelty"] <= 1


def test_ensemble_is_deterministic_and_draws_start_sets(tmp_path, dask_client, big_e, small):
    settings = {"chains": 2, "samples": 6, "steps": 3, "reference": small, "seed": 7}
    runs = [
        design(
            big_e,
            Grow(),
            tmp_path / f"run{i}.parquet",
            client=dask_client,
            progress=False,
            **settings,
        )
        for i in range(2)
    ]
    a, b = (r.frame().sort_values(["chain", "step", "smiles"]).reset_index(drop=True) for r in runs)
    pd.testing.assert_frame_equal(a, b)
    starts = a[a["step"] == 0].groupby("chain")["smiles"].agg(set)
    assert starts[0] != starts[1] and starts[0] <= set(small)
    with pytest.raises(ConfigError, match="start"):
        design(big_e, Grow(), tmp_path / "x.parquet", client=dask_client, progress=False)
    with pytest.raises(ConfigError, match="chain_targets"):
        design(
            big_e, Grow(), tmp_path / "x.parquet", chains=2, reference=small,
            chain_targets=[["E=0:1"]], client=dask_client, progress=False,
        )  # fmt: skip


# -- CLI and plots -----------------------------------------------------------------------------


def test_cli_design_end_to_end_with_plots(tmp_path, dask_client, iqspr, capsys):
    from xenonscale.cli.main import main

    data = tmp_path / "data.csv"
    iqspr.iloc[:300].to_csv(data, index=False)
    out = tmp_path / "out" / "run.parquet"
    argv = [
        "design", str(data), "--column", "SMILES",
        "--target-range", "E=0:200", "--target-range", "HOMO-LUMO gap=:3",
        "--samples", "6", "--steps", "3", "--chains", "2", "--order", "4", "--seed", "1",
        "--scheduler", dask_client.scheduler.address, "--no-progress", "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "final populations" in printed
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["chains_done"] == 2 and summary["targets"] == TARGETS
    assert summary["ngram"]["order"] == 4
    for name in summary["plots"].values():
        assert (out.parent / name).stat().st_size > 10_000
    assert sorted(summary["plots"]) == ["property_space", "trajectory"]
    frame = pd.read_parquet(out)
    assert {"E_mean", "HOMO-LUMO gap_std", "in_target"} <= set(frame.columns)
    assert frame["step"].max() == 3
    # the defaults: ridge, GP and neighbours in consensus; chains start from the best of DATA
    assert summary["fingerprint_models"] == "consensus" and summary["combine"] == "consensus"
    assert summary["families"]["E"] == ["BayesianRidge", "TanimotoGP", "TanimotoNeighbors"]
    assert summary["start"] == "best" and summary["min_similarity"] is None
    from xenonscale.design.families import FamilyEnsemble, consensus_members

    names = ["E", "HOMO-LUMO gap"]
    again = Likelihood(
        TARGETS, models={n: FamilyEnsemble(consensus_members()) for n in names}, combine="consensus"
    ).fit(iqspr["SMILES"].iloc[:300].tolist(), iqspr[names].iloc[:300])
    best = set(again.most_likely(iqspr["SMILES"].iloc[:300].tolist(), 2 * 6))
    first = frame[frame["step"] == 0]
    assert set(first["smiles"]) <= best and len(first) == 2 * 6


def test_cli_designs_polymers_with_their_two_ends(tmp_path, dask_client, data_dir):
    """Polymer repeat units (``*`` ends) through the whole design command."""
    from rdkit import Chem

    from xenonscale.cli.main import main

    polymers = pd.read_csv(data_dir / "molecules" / "polymer_genome_500.csv")
    # about half the rows are written without their ends; design from those with two
    polymers = polymers[polymers["smiles"].str.count(r"\*") == 2]
    assert len(polymers) > 200
    data = tmp_path / "polymers.csv"
    polymers[["smiles", "bandgap"]].to_csv(data, index=False)
    out = tmp_path / "poly.parquet"
    argv = [
        "design", str(data), "--column", "smiles", "--target-range", "bandgap=6:",
        "--samples", "8", "--steps", "4", "--chains", "2", "--order", "6", "--seed", "2",
        "--scheduler", dask_client.scheduler.address, "--no-progress", "--no-plots",
        "--fingerprint-models", "gaussian-process", "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["fingerprint_models"] == "gaussian-process"
    assert summary["forward_models"] == {"bandgap": "FamilyEnsemble return_std"}
    frame = pd.read_parquet(out)
    assert frame["step"].max() == 4 and set(frame["chain"]) == {0, 1}
    final = frame[frame["step"] == 4]
    assert final["valid"].all() and len(final) >= 8
    for smiles in final["smiles"]:
        mol = Chem.MolFromSmiles(smiles)
        assert mol is not None and sum(a.GetSymbol() == "*" for a in mol.GetAtoms()) == 2
    assert np.isfinite(final["bandgap_mean"]).all() and (final["bandgap_std"] > 0).all()


def test_cli_design_bad_target_names_it(tmp_path, iqspr, capsys):
    from xenonscale.cli.main import main

    data = tmp_path / "data.csv"
    iqspr.iloc[:20].to_csv(data, index=False)
    argv = ["design", str(data), "--column", "SMILES", "-o", "x.parquet"]
    assert main([*argv, "--target-range", "E=5:1"]) == 2
    assert "'E=5:1'" in capsys.readouterr().err
    assert main([*argv, "--target-range", "dipole=0:1"]) == 2
    assert "dipole" in capsys.readouterr().err


def test_cli_design_refuses_a_gaussian_process_beyond_its_rows(tmp_path, iqspr, capsys):
    """20,001 rows: refused before any n-gram or model is trained, with the flag to use."""
    from xenonscale.cli.main import main

    data = tmp_path / "big.csv"
    rows = iqspr.sample(20_001, replace=True, random_state=0)
    rows.to_csv(data, index=False)
    argv = ["design", str(data), "--column", "SMILES", "--target-range", "E=0:200",
            "--fingerprint-models", "gaussian-process", "--no-progress",
            "-o", str(tmp_path / "x.parquet")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "20,001 rows" in err and "--fingerprint-models families" in err
    assert not (tmp_path / "x.parquet").exists()
    # the default consensus goes on without the Gaussian process, and says so
    from xenonscale.cli.design import _family

    ensemble = _family("consensus", 20_001)
    assert [type(m).__name__ for m in ensemble.members] == ["BayesianRidge", "TanimotoNeighbors"]
    assert "the consensus is Bayesian ridge and Tanimoto neighbours" in capsys.readouterr().err


def test_plots_of_a_run():
    from xenonscale.viz.design import property_space_figure, trajectory_figure

    rng = np.random.default_rng(0)
    n = 3 * 4 * 10
    frame = pd.DataFrame(
        {
            "chain": np.repeat([0, 1, 2], 40),
            "step": np.tile(np.repeat(np.arange(4), 10), 3),
            "beta": 0.5,
            "log_likelihood": -rng.random(n) * 10,
            "in_target": rng.random(n) > 0.5,
            "E_mean": rng.normal(150, 60, n),
            "HOMO-LUMO gap_mean": rng.normal(4, 1, n),
        }
    )
    figure = property_space_figure(frame, TARGETS, panels=3)
    assert len(figure.axes) == 3
    assert figure.axes[0].patches  # the target box
    assert "in target" in figure.axes[0].get_title()
    one = property_space_figure(frame, ["E=0:200"], steps=[0, 3])
    assert len(one.axes) == 2
    assert len(trajectory_figure(frame).axes) == 3
