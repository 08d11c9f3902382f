"""Scheduled retraining and the source-model library (zoo build), on real data."""

from __future__ import annotations

import pandas as pd
import pytest

from xenonscale.cli.main import main
from xenonscale.engine import featurize_to_store
from xenonscale.engine.bookkeeping import JobLock
from xenonscale.errors import StoreLockedError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.store.layout import StoreLocation
from xenonscale.workflows.registration import train_and_register
from xenonscale.workflows.retraining import retrain
from xenonscale.zoo import Zoo

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")


def _featurize(csv, store, client):
    featurize_to_store(str(csv), store, SPEC, column="formula", client=client, overwrite=True,
                       progress=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_retrain_is_idempotent_and_promotes_only_when_not_worse(tmp_path, data_dir, dask_client):
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    first, full = tmp_path / "first.csv", tmp_path / "full.csv"
    frame.iloc[:800].to_csv(first, index=False)
    frame.iloc[:2400].to_csv(full, index=False)
    store = str(tmp_path / "gap.zarr")
    _featurize(first, store, dask_client)
    zoo = Zoo(str(tmp_path / "zoo"))
    common = dict(zoo=zoo, progress=False, accelerator="cpu", patience=100)
    trained = train_and_register(store, "target", name="gap", output=tmp_path / "m1",
                                 max_epochs=8, **common)  # fmt: skip
    zoo.promote(trained.ref)

    # nothing changed: nothing to do, twice
    for _ in range(2):
        assert [r["action"] for r in retrain(zoo=zoo, progress=False)] == ["up to date"]
    assert len(zoo.list("gap")) == 1

    # the store is rebuilt from more data; a 1-epoch retrain is worse: kept, but recorded
    _featurize(full, store, dask_client)
    (row,) = retrain(zoo=zoo, max_epochs=1, progress=False)
    assert (row["reason"], row["new"], row["current"]) == ("store changed", "gap@2", "gap@1")
    assert row["action"] == "kept current" and row["mae_new"] > row["mae_current"]
    assert str(zoo.production("gap")) == "gap@1"
    assert [r["action"] for r in retrain(zoo=zoo, progress=False)] == ["up to date"]

    # an age policy makes it stale again; a real retrain is better and is promoted
    (row,) = retrain(zoo=zoo, max_age_days=0, max_epochs=15, progress=False)
    assert row["reason"] == "older than 0 days" and row["new"] == "gap@3"
    assert row["action"] == "promoted" and row["mae_new"] <= row["mae_current"]
    assert str(zoo.production("gap")) == "gap@3"

    # a second run while one holds the lock is refused
    with JobLock(StoreLocation(f"{zoo.artifacts.root}/_retrain"), purpose="retrain run"), \
            pytest.raises(StoreLockedError, match="another retrain run"):  # fmt: skip
        retrain(zoo=zoo, progress=False)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zoo_build_preset_registers_and_promotes_the_library(tmp_path, capsys):
    zoo = str(tmp_path / "zoo")
    argv = ["zoo", "build", "--preset", "mp", "--limit", "2000", "--max-epochs", "2",
            "-o", str(tmp_path / "work"), "--zoo", zoo, "--workers", "2",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    listing = Zoo(zoo).list()
    assert sorted(listing["name"]) == ["mp-e-form", "mp-gap"]
    assert set(listing["stage"]) == {"production"}
    card = Zoo(zoo).show("mp-gap")
    assert card["units"] == {"target": "eV"} and card["training_data"]["rows"] == 2000
    assert "mp-e-form@1 (production)" in capsys.readouterr().out
    assert main(["zoo", "build", "--preset", "perovskites", "--zoo", zoo]) == 2
