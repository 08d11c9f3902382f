"""Screening: probability of meeting every target, ranking, Pareto front, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from xenonscale.errors import ConfigError
from xenonscale.workflows.screening import pareto_front, screen


def _brute_front(values: np.ndarray) -> np.ndarray:
    n = len(values)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if np.all(values[j] >= values[i]) and np.any(values[j] > values[i]):
                out[i] = False
                break
    return out


@pytest.mark.parametrize("k", [2, 3, 4])
def test_pareto_front_equals_brute_force(k):
    rng = np.random.default_rng(k)
    values = rng.normal(size=(400, k))
    values[rng.integers(0, 400, 20)] = np.round(values[rng.integers(0, 400, 20)], 1)  # ties
    np.testing.assert_array_equal(pareto_front(values), _brute_front(values))
    values[5] = np.nan
    assert not pareto_front(values)[5]


def test_probability_rank_and_front_by_hand():
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "row": np.arange(n),
            "id": [f"c{i}" for i in range(n)],
            "gap:target": rng.uniform(0, 3, n),
            "gap:target_std": rng.uniform(0.05, 0.5, n),
            "form:target": rng.uniform(-2, 1, n),
            "form:target_std": rng.uniform(0.05, 0.3, n),
        }
    )
    result = screen(frame, ["gap=1:2", "form=:0"], objectives=["gap:max", "form:min"], top=None)
    out = result.frame.sort_values("row")
    g, gs = frame["gap:target"], frame["gap:target_std"]
    f, fs = frame["form:target"], frame["form:target_std"]
    expected = (norm.cdf((2 - g) / gs) - norm.cdf((1 - g) / gs)) * norm.cdf((0 - f) / fs)
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-9, atol=1e-12)
    inside = (g > 1) & (g < 2) & (f < 0)
    np.testing.assert_array_equal(out["in_target"], inside)
    assert (np.diff(result.frame["probability"].to_numpy()) <= 0).all()  # ranked
    values = np.stack([g, -f], axis=1)[inside.to_numpy()]
    front = np.zeros(n, dtype=bool)
    front[np.flatnonzero(inside)] = _brute_front(values)
    np.testing.assert_array_equal(out["pareto"], front)
    assert result.counts == {"rows": n, "in_target": int(inside.sum()), "kept": n,
                             "pareto": int(front.sum()), "predicted": n}  # fmt: skip
    assert len(screen(frame, ["gap=1:2"], top=10).frame) == 10
    with pytest.raises(ConfigError, match="names no"):
        screen(frame, ["band=1:2"])
    with pytest.raises(ConfigError, match="PROP:max"):
        screen(frame, ["gap=1:2"], objectives=["gap:up"])
    with pytest.raises(ConfigError, match="zoo"):  # no std column and no zoo
        screen(frame.drop(columns=["gap:target_std"]), ["gap=1:2"])


def test_cli_screens_an_enumerated_space_with_a_zoo_model(tmp_path, dask_client, data_dir):
    """Enumerate → predict on the workers → screen: the kept rows are ZooModel.predict's, the
    std is the card's validation RMSE, plots and the summary are written."""
    from xenonscale.cli.main import main
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows.registration import train_and_register
    from xenonscale.zoo import Zoo

    gaps = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv").sample(
        n=800, random_state=0
    )
    gaps.to_csv(tmp_path / "gaps.csv", index=False)
    store = tmp_path / "gaps.zarr"
    featurize_to_store(str(tmp_path / "gaps.csv"), str(store),
                       FeaturizerSpec.parse("composition", "classic"), column="formula",
                       client=dask_client, progress=False)  # fmt: skip
    zoo = Zoo(str(tmp_path / "zoo"))
    train_and_register(str(store), "target", name="gap", zoo=zoo, max_epochs=5, hidden=[32],
                       progress=False, output=tmp_path / "model")  # fmt: skip
    space = "enumerate:compositions?elements=Li,Na,Mg,Zn,O,S,Cl&max_atoms=6&charge_balanced=true"
    out = tmp_path / "screen" / "run.parquet"
    argv = ["screen", "gap", space, "--target-range", "target=1:2", "--top", "25",
            "--pareto", "target:max", "--zoo", str(tmp_path / "zoo"), "--partition-rows", "200",
            "--scheduler", dask_client.scheduler.address, "--no-progress",
            "-o", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    kept = pd.read_parquet(out)
    assert record["std_source"] == {"gap:target": "gap@1 validation RMSE"}
    assert record["counts"]["kept"] == len(kept) <= 25 + record["counts"]["pareto"]
    assert set(record["plots"]) == {"histogram", "property_space"}
    for name in record["plots"].values():
        assert (out.parent / name).stat().st_size > 5_000
    direct = zoo.load("gap").predict(kept["id"].tolist())["target"].to_numpy()
    np.testing.assert_allclose(kept["gap:target"], direct, rtol=1e-6)
    everything = pd.read_parquet(out.with_name("run_predictions.parquet"))
    assert len(everything) == record["counts"]["rows"] > 100
    assert kept["pareto"].sum() == 1  # one objective: the front is the best predicted gap
    best = everything.loc[everything["gap:target"].between(1, 2, inclusive="neither")]
    assert kept.loc[kept["pareto"], "gap:target"].iloc[0] == best["gap:target"].max()
