"""Frozen features from zoo models: in memory and through the engine."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xenonscale.engine import featurize_to_store
from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.training import train_model
from xenonscale.transfer import FrozenFeaturizer
from xenonscale.zoo import Zoo

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")


@pytest.fixture(scope="module")
def source_zoo(tmp_path_factory, data_dir, dask_client) -> str:
    """A zoo with one small source model trained on real Matbench mp_e_form formulas."""
    work = tmp_path_factory.mktemp("source")
    frame = pd.read_csv(data_dir / "compositions" / "matbench_mp_e_form.csv").sample(
        3000, random_state=0
    )
    frame.to_csv(work / "mp.csv", index=False)
    featurize_to_store(str(work / "mp.csv"), str(work / "mp.zarr"), SPEC, column="formula",
                       client=dask_client, progress=False)  # fmt: skip
    zoo = str(work / "zoo")
    train_model(str(work / "mp.zarr"), "target", name="mp-small", zoo=zoo, output=work / "m",
                hidden=[64, 32], max_epochs=3, progress=False, plots=False,
                accelerator="cpu")  # fmt: skip
    return zoo


def _hooked_activations(model, x: np.ndarray) -> list[np.ndarray]:
    """Block outputs captured by forward hooks during a plain forward pass (a second path)."""
    seen = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().numpy()))
             for b in model.backbone.blocks]  # fmt: skip
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    return seen


def test_frozen_features_are_the_hidden_activations(source_zoo):
    formulas = ["Fe2O3", "NaCl", "Xx2", "LiFePO4", "GaN"]
    last = FrozenFeaturizer("mp-small", zoo=source_zoo)
    both = FrozenFeaturizer(["mp-small@1"], zoo=source_zoo, depth=None)
    frame, every = last.transform(formulas), both.transform(formulas)
    assert frame.shape == (5, 32) and every.shape == (5, 96)
    assert frame.columns[0] == "mp-small@1:h1:0" and every.columns[0] == "mp-small@1:h0:0"
    assert last.errors_["row"].tolist() == [2] and frame.iloc[2].isna().all()
    model = Zoo(source_zoo).load("mp-small")
    x = SPEC.build().featurize_batch(formulas).values.astype(np.float32)
    keep = [0, 1, 3, 4]
    hooked = _hooked_activations(model.model, x[keep])
    np.testing.assert_allclose(frame.to_numpy()[keep], hooked[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(every.to_numpy()[keep], np.hstack(hooked), rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigError, match="depth=3"):
        FrozenFeaturizer("mp-small", zoo=source_zoo, depth=3).transform(["NaCl"])


def test_frozen_features_through_the_engine(source_zoo, tmp_path, data_dir, dask_client):
    # workers find the zoo as deployed workers would: through $XENONSCALE_ZOO
    dask_client.run(lambda: os.environ.__setitem__("XENONSCALE_ZOO", source_zoo))
    old = os.environ.get("XENONSCALE_ZOO")
    os.environ["XENONSCALE_ZOO"] = source_zoo
    try:
        spec = FeaturizerSpec.parse("composition", "frozen:mp-small@1")
        source = str(data_dir / "compositions" / "matbench_steels_yield.csv")
        store = str(tmp_path / "frozen.zarr")
        job = featurize_to_store(source, store, spec, column="formula", client=dask_client,
                                 progress=False)  # fmt: skip
        want = FrozenFeaturizer("mp-small@1").transform(
            pd.read_csv(source)["formula"]).to_numpy(np.float32)  # fmt: skip
    finally:
        dask_client.run(lambda: os.environ.pop("XENONSCALE_ZOO", None))
        if old is None:
            os.environ.pop("XENONSCALE_ZOO", None)
        else:
            os.environ["XENONSCALE_ZOO"] = old
    assert (job.rows, job.features) == (312, 32)
    np.testing.assert_array_equal(xr.open_zarr(store).features.values, want)
    with pytest.raises(ConfigError, match="frozen:ARG"):
        FeaturizerSpec.parse("composition", "frozen")
