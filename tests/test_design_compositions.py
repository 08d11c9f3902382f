"""Inorganic design: composition moves, SMC over formulas, the CLI with zoo models."""

from __future__ import annotations

import json
from math import gcd

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from xenonscale.design import Likelihood
from xenonscale.design.compositions import CompositionProposal, canonical_formulas, valid_formulas
from xenonscale.design.smc import SMC
from xenonscale.errors import ConfigError

pytestmark = pytest.mark.usefixtures("data_dir")


@pytest.fixture(scope="module")
def gaps(data_dir) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    return frame.rename(columns={"formula": "composition", "target": "gap"})


def test_canonical_formulas_are_pymatgen_reduced_formulas(gaps):
    formulas = gaps["composition"].iloc[:300].tolist()
    ours = canonical_formulas(formulas)
    for mine, text in zip(ours, formulas, strict=True):
        reference = Composition(text)
        assert Composition(mine).fractional_composition.almost_equals(
            reference.fractional_composition
        )
        if all(float(a).is_integer() for a in reference.get_el_amt_dict().values()):
            assert Composition(mine) == reference.reduced_composition or len(reference) == 1
    assert sum(m is None for m in ours) == 0
    assert canonical_formulas(["Fe0.5O0.5", "Xx2", "", None]) == ["FeO", None, None, None]
    assert valid_formulas(["Fe2O3", "Xx2"]).tolist() == [True, False]


def test_design_writes_formulas_as_the_enumeration_does():
    from xenonscale.chem.enumeration import CompositionSpace

    space = CompositionSpace(["Li", "Mg", "Al", "O", "S", "Cl"], max_atoms=8)
    _, formulas = space.slice(0, space.size)
    assert canonical_formulas(formulas) == list(formulas)  # MgAl2S4, not Mg(AlS2)2


def test_moves_stay_inside_the_space_and_charge_balance_agrees_with_pymatgen():
    elements = ["Li", "Fe", "Mn", "P", "O"]
    proposal = CompositionProposal(elements, max_atoms=12, charge_balanced=True)
    rng = np.random.default_rng(0)
    parents = ["LiFePO4", "Fe2O3", "MnO2", "Li2O", "LiMnPO4"] * 40
    children = proposal.propose(parents, rng)
    assert len(children) == len(parents)
    moved = [
        c for c, p in zip(children, parents, strict=True) if c != Composition(p).reduced_formula
    ]
    assert len(moved) > 150  # most parents find a legal move
    for child in set(children):
        composition = Composition(child)
        amounts = list(composition.get_el_amt_dict().values())
        assert {str(e) for e in composition.elements} <= set(elements)
        assert sum(amounts) <= 12 and all(float(a).is_integer() for a in amounts)
        assert len(amounts) >= 2 and gcd(*map(int, amounts)) == 1
        assert composition.oxi_state_guesses(max_sites=-1), child  # pymatgen finds a neutral one
    again = proposal.propose(parents, np.random.default_rng(0))
    assert again == children  # a seed fixes the moves


def test_a_parent_without_legal_moves_proposes_itself():
    proposal = CompositionProposal(["Na"], max_atoms=1, min_elements=1)
    assert proposal.propose(["Na"], np.random.default_rng(1)) == ["Na"]
    with pytest.raises(ConfigError, match="not element symbols"):
        CompositionProposal(["Li", "Qq"])


def test_smc_over_compositions_moves_toward_the_target(gaps):
    """Forward model: BayesianRidge on XenonPy's pooled descriptors of real formulas."""
    data = gaps.sample(n=1500, random_state=0).reset_index(drop=True)
    formulas = data["composition"].tolist()
    likelihood = Likelihood(["gap=1.0:2.0"], kind="composition", cv=3).fit(formulas, data[["gap"]])
    elements = sorted({str(e) for f in formulas[:200] for e in Composition(f).elements})
    proposal = CompositionProposal(elements, max_atoms=10)
    start = [f for f in canonical_formulas(formulas[:400]) if f][:40]
    frame = SMC(likelihood, proposal, samples=40, steps=30).run(start, seed=3)
    first = frame[frame["step"] == 0]["in_target"].mean()
    last = frame[frame["step"] == frame["step"].max()]
    assert last["valid"].all() and last["canonical_smiles"].is_unique
    assert last["in_target"].mean() >= first + 0.15, (first, last["in_target"].mean())  # .25→.45


def test_cli_design_compositions_with_a_zoo_model(tmp_path, dask_client, gaps, capsys):
    """`design --kind composition --model gap=REF`: a real zoo MLP as the forward model."""
    from xenonscale.cli.main import main
    from xenonscale.engine import featurize_to_store
    from xenonscale.featurize.registry import FeaturizerSpec
    from xenonscale.workflows.registration import train_and_register
    from xenonscale.zoo import Zoo

    data = tmp_path / "gaps.csv"
    gaps.sample(n=800, random_state=0).to_csv(data, index=False)
    store = tmp_path / "gaps.zarr"
    featurize_to_store(str(data), str(store), FeaturizerSpec.parse("composition", "classic"),
                       column="composition", client=dask_client, progress=False)  # fmt: skip
    zoo = Zoo(str(tmp_path / "zoo"))
    train_and_register(str(store), "gap", name="gap-mlp", zoo=zoo, max_epochs=5, hidden=[32],
                       progress=False, output=tmp_path / "model")  # fmt: skip
    out = tmp_path / "run.parquet"
    argv = [
        "design", str(data), "--column", "composition", "--kind", "composition",
        "--target-range", "gap=1:2", "--forward-model", "gap=gap-mlp",
        "--zoo", str(tmp_path / "zoo"),
        "--candidate-elements", "Li,Na,K,Mg,Ca,Zn,Al,Ga,In,Si,Ge,Sn,N,P,As,O,S,Se,F,Cl,Br,I",
        "--atoms", "10", "--charge-balanced", "--samples", "12", "--steps", "4",
        "--chains", "2", "--seed", "0", "--no-plots", "--no-progress",
        "--scheduler", dask_client.scheduler.address, "-o", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    assert "final populations" in capsys.readouterr().out
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["kind"] == "composition" and summary["zoo_models"] == {"gap": "gap-mlp@1"}
    assert summary["ngram"]["charge_balanced"] is True
    frame = pd.read_parquet(out)
    final = frame[frame["step"] == 4]
    for formula in final["smiles"].unique():
        assert Composition(formula).oxi_state_guesses(max_sites=-1), formula
    assert frame["valid"].all()
    assert main([*argv[:-2], "--ngram", str(tmp_path), "-o", str(out)]) == 2
