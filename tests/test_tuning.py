"""Optuna tuning on the Dask workers: exactly N trials in one shared study (SQLite, PostgreSQL)."""

from __future__ import annotations

import json

import optuna
import pytest

from xenonscale.cli.main import main
from xenonscale.engine import featurize_to_store
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.tuning import hidden_from_params, tune
from xenonscale.zoo import Zoo


@pytest.fixture(scope="module")
def steels_store(tmp_path_factory, data_dir, dask_client) -> str:
    store = str(tmp_path_factory.mktemp("steels") / "steels.zarr")
    featurize_to_store(
        str(data_dir / "compositions" / "matbench_steels_yield.csv"), store,
        FeaturizerSpec.parse("composition", "classic", elements="xenonpy58"),
        column="formula", client=dask_client, progress=False,
    )  # fmt: skip
    return store


def test_hidden_widths_taper():
    assert hidden_from_params({"depth": 3, "width": 512, "taper": 0.5}) == [512, 256, 128]
    assert hidden_from_params({"depth": 2, "width": 20, "taper": 0.25}) == [20, 16]


class TuneContract:
    """The same checks against each Optuna storage."""

    def storage(self, request, tmp_path) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    @pytest.mark.slow
    @pytest.mark.timeout(400)
    def test_exactly_the_requested_trials_in_one_study(
        self, request, tmp_path, steels_store, dask_client
    ):
        storage = self.storage(request, tmp_path)
        study = f"steels-{type(self).__name__.lower()}"
        common = dict(storage=storage, study=study, client=dask_client, max_epochs=3,
                      progress=False)  # fmt: skip
        first = tune(steels_store, "target", trials=4, output=tmp_path / "a", **common)
        assert first.trials == 4
        # a second call adds exactly as many more to the same study
        second = tune(steels_store, "target", trials=3, output=tmp_path / "b", **common)
        loaded = optuna.load_study(study_name=study, storage=storage)
        assert len(loaded.trials) == second.trials == 7
        finished = {"COMPLETE", "PRUNED"}
        assert {t.state.name for t in loaded.trials} <= finished, second.states
        assert second.best_value == pytest.approx(loaded.best_value)
        assert (tmp_path / "b" / "history.png").stat().st_size > 0
        assert json.loads((tmp_path / "b" / "best.json").read_text())["params"] == (
            loaded.best_params
        )


class TestSQLite(TuneContract):
    def storage(self, request, tmp_path) -> str:
        return f"sqlite:///{tmp_path / 'tune.db'}"


class TestPostgres(TuneContract):
    def storage(self, request, tmp_path) -> str:
        return request.getfixturevalue("postgres_url")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_cli_tune_registers_the_best_trial(tmp_path, steels_store):
    zoo = tmp_path / "zoo"
    argv = ["tune", steels_store, "--target", "target", "--trials", "3", "--workers", "2",
            "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study", "cli", "--max-epochs", "2",
            "--register", "steels-tuned", "--zoo", str(zoo), "--output", str(tmp_path / "out"),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    entries = Zoo(str(zoo)).list()
    assert entries["name"].tolist() == ["steels-tuned"]
    card = Zoo(str(zoo)).show("steels-tuned@1")
    best = json.loads((tmp_path / "out" / "best.json").read_text())["params"]
    assert card["model"]["hidden"] == hidden_from_params(best)
