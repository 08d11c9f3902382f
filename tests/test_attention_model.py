"""The attention backbone as a network: invariances, masking, pooling, tables, saving.

The store, training, zoo and transfer path of the same model is in
``tests/test_attention_training.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from xenonscale.errors import ConfigError
from xenonscale.models.attention import SLOTS, AttentionModel, attention_config, element_matrix
from xenonscale.models.networks import build_model


def _row(pairs: list[tuple[int, float]]) -> torch.Tensor:
    """One input row: the given (Z, fraction) pairs in the given slot order."""
    x = torch.zeros(1, 2 * SLOTS)
    for slot, (z, fraction) in enumerate(pairs):
        x[0, slot], x[0, SLOTS + slot] = float(z), float(fraction)
    return x


@pytest.fixture(scope="module")
def model() -> AttentionModel:
    torch.manual_seed(0)
    config = attention_config(elements=None, d_model=32, heads=4, layers=2, head_hidden=[16],
                              dropout=0.0)  # fmt: skip
    net = AttentionModel(config)
    with torch.no_grad():  # the learned embedding starts random without a table: fine here
        net.learned.weight.normal_()
    return net.eval()


def test_output_does_not_depend_on_the_order_of_the_elements(model):
    fe2o3 = _row([(26, 0.4), (8, 0.6)])
    swapped = _row([(8, 0.6), (26, 0.4)])
    with torch.no_grad():
        assert torch.allclose(model(fe2o3), model(swapped), atol=1e-5)


def test_padding_and_batch_neighbours_do_not_change_a_row(model):
    """A binary alone (cut to 2 slots) = the same binary beside a 6-element formula."""
    binary = _row([(11, 0.5), (17, 0.5)])
    wide = _row([(26, 0.5), (8, 0.2), (3, 0.1), (15, 0.1), (25, 0.05), (27, 0.05)])
    with torch.no_grad():
        alone = model(binary)
        together = model(torch.cat([binary, wide]))
    assert torch.allclose(alone, together[:1], atol=1e-5)


def test_pooling_weights_sum_to_one_over_the_elements_present(model):
    x = torch.cat([_row([(26, 0.4), (8, 0.6)]), _row([(3, 0.25), (26, 0.25), (15, 0.5)])])
    explained = model.explain(x)
    pooling, numbers = explained["pooling"], explained["numbers"]
    assert torch.allclose(pooling.sum(dim=1), torch.ones(2), atol=1e-6)
    assert float(pooling[numbers == 0].abs().sum()) == 0.0
    # attention maps: [layers, rows, heads, k, k]; rows sum to 1, nothing attends to padding
    attention = explained["attention"]
    assert attention.shape == (2, 2, 4, 3, 3)
    assert torch.allclose(attention.sum(dim=-1), torch.ones(2, 2, 4, 3), atol=1e-5)
    assert float(attention[:, 0, :, :, 2].abs().sum()) == 0.0  # Fe2O3's empty third slot


def test_a_larger_fraction_moves_the_pooled_embedding_towards_that_element(model):
    """With equal gates the pooling is the fraction-weighted mean: check it by hand."""
    x = _row([(26, 0.9), (8, 0.1)])
    explained = model.explain(x)
    weights = explained["pooling"][0]
    assert float(weights[0]) > float(weights[1])


def test_element_matrix_is_the_table_standardized_by_hand(data_dir):
    matrix, identity = element_matrix("oliynyk")
    raw = pd.read_csv(data_dir / "elements" / "oliynyk.csv", index_col="element")
    raw = raw.apply(pd.to_numeric, errors="coerce")
    from pymatgen.core import Element

    expected = (raw - raw.mean()) / raw.std(ddof=0).replace(0, 1)
    for symbol in ("H", "Fe", "O", raw.index[-1]):
        z = Element(symbol).Z
        want = np.nan_to_num(expected.loc[symbol].to_numpy(dtype=np.float64), nan=0.0)
        np.testing.assert_allclose(matrix[z], want, rtol=1e-5, atol=1e-5)
    assert not matrix[0].any()  # the empty slot
    assert identity["name"] == "oliynyk" and identity["properties"] == raw.shape[1]


def test_saved_weights_and_config_rebuild_the_same_model(tmp_path, data_dir):
    torch.manual_seed(1)
    model = AttentionModel(attention_config(elements="magpie", d_model=16, heads=2, layers=1,
                                            head_hidden=[8]))  # fmt: skip
    model.fit_scaling(y_mean=[-1.5], y_std=[0.7]).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.st")
    rebuilt = build_model(model.config)
    rebuilt.load_state_dict(load_file(tmp_path / "w.st"))
    rebuilt.eval()
    x = torch.cat([_row([(26, 0.4), (8, 0.6)]), _row([(79, 1.0)])])
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    assert torch.equal(rebuilt.element_table, model.element_table)  # the table travels along


def test_classification_outputs_probabilities():
    torch.manual_seed(2)
    model = AttentionModel(attention_config(elements=None, d_model=8, heads=1, layers=1,
                                            head_hidden=[4], task="classification"))  # fmt: skip
    model.eval()
    with torch.no_grad():
        p = model(_row([(26, 0.5), (8, 0.5)]))
        logit = model.forward_scaled(_row([(26, 0.5), (8, 0.5)]))
    assert 0.0 < float(p) < 1.0
    assert torch.allclose(p, torch.sigmoid(logit))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"d_model": 30, "heads": 4}, "not a multiple of heads"),
        ({"layers": 0}, "layers=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"bogus": 1}, "unknown attention option"),
        ({"elements": None, "learn_elements": False}, "learn_elements"),
    ],
)
def test_bad_options_fail_with_one_line(options, message):
    with pytest.raises(ConfigError, match=message) as info:
        attention_config(**options)
    assert "\n" not in str(info.value)
