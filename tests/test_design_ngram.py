"""Chemical language model of iQSPR: extended SMILES, n-gram training, proposals, storage, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xenonscale.cli.main import main
from xenonscale.design import NGram, batched, extend, scalar, to_smiles, tokenize, train_ngram
from xenonscale.design.keys import ALLOWED, BEGIN_HASH, CODES, Prefix, prefix_of
from xenonscale.design.tokens import (
    KIND_ATOM,
    KIND_BEGIN,
    KIND_BRANCH_CLOSE,
    KIND_BRANCH_OPEN,
    KIND_END,
    KIND_RING_CLOSE,
    KIND_STAR,
    count_stars,
    token_kind,
)
from xenonscale.errors import ConfigError, DesignError

Chem = pytest.importorskip("rdkit.Chem")
from rdkit import rdBase  # noqa: E402


def canonical(smiles: str) -> str | None:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def valid_fraction(smiles: list[str]) -> float:
    return float(np.mean([canonical(s) is not None for s in smiles]))


@pytest.fixture(scope="module")
def molecules(data_dir) -> dict[str, list[str]]:
    folder = data_dir / "molecules"
    qm9 = pd.read_csv(folder / "qm9.csv.gz", usecols=["SMILES"]).SMILES
    return {
        "iqspr": pd.read_csv(folder / "iqspr_pubchemqc.csv").SMILES.tolist(),
        "qm9": qm9.iloc[:: len(qm9) // 1500].tolist(),
        "moses": pd.read_csv(folder / "moses_train.csv.gz", nrows=1500).SMILES.tolist(),
        "polymer_genome": pd.read_csv(folder / "polymer_genome_500.csv").smiles.tolist(),
        "polymer_tg": pd.read_csv(folder / "polymer_tg.csv").PSMILES.dropna().tolist(),
    }


@pytest.fixture(scope="module")
def model(molecules) -> NGram:
    """Order 10, trained in this process on 3,000 PubChemQC SMILES (+1 re-ordering each)."""
    return train_ngram(molecules["iqspr"][:3000], order=10, augment=1, client=False, progress=False)


@pytest.fixture(scope="module")
def polymer_model(molecules) -> NGram:
    smiles = molecules["polymer_genome"][:400] + molecules["polymer_tg"][:2000]
    return train_ngram(smiles, order=8, augment=1, client=False, progress=False)


# -- tokens and extended SMILES ----------------------------------------------------------


def test_tokenize_splits_every_kind_of_token():
    assert tokenize("C[C@@H](Cl)c1ccc(Br)cc1/C=C\\O") == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1",
        "/", "C", "=", "C", "\\", "O",
    ]  # fmt: skip
    assert tokenize("C%12CC%(123)CC%12.[Na+]") == [
        "C", "%12", "C", "C", "%(123)", "C", "C", "%12", ".", "[Na+]",
    ]  # fmt: skip
    assert tokenize("*CC(*)C#N") == ["*", "C", "C", "(", "*", ")", "C", "#", "N"]
    assert tokenize("[Fe+2]<-N->[Cu]") == ["[Fe+2]", "<-", "N", "->", "[Cu]"]
    assert tokenize("c1ccccc1C~C:C") == [*"c1ccccc1C", "~", "C", ":", "C"]
    for bad in ("C C", "C?", "Xx", 5, None):
        with pytest.raises(DesignError):
            tokenize(bad)


def test_extend_states_and_contracted_chain():
    ext = extend("CC(=O)C1CC(C)C1")
    assert ext.tokens == ("^", "C", "C", "(", "=O", ")", "C", "{", "C", "C", "(", "C", ")",
                          "C", "}0", "!")  # fmt: skip
    assert ext.depth.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert ext.rings.tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0]
    # ")" hangs on the branch's first token, the next atom on ")": "C C ( =O ) C"
    assert ext.parent[5] == 4 and ext.parent[4] == 3 and ext.parent[6] == 5
    assert ext.stars == 0 and extend("*CC(*)C").stars == 2 and extend("[*]CC[*]").stars == 2
    # rings closed out of order: }1 closes the older of two open rings
    assert [t for t in extend("C12CC1CC2").tokens if "}" in t] == ["}1", "}0"]
    assert [t for t in extend("C12CC2CC1").tokens if "}" in t] == ["}0", "}0"]
    assert [token_kind(t) for t in ("C", "*", "(", ")", "}1", "!")] == [
        KIND_ATOM, KIND_STAR, KIND_BRANCH_OPEN, KIND_BRANCH_CLOSE, KIND_RING_CLOSE, KIND_END,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "bad", ["", "C1CC", "CC(", "C)C", "C(=)C", "C=", "(C)C", "C.", "C()C", "C==C", "1CC1"]
)
def test_extend_rejects_broken_smiles(bad):
    with pytest.raises(DesignError):
        extend(bad)


def test_to_smiles_reassigns_ring_labels():
    tokens = ["C"] + ["{"] * 11 + ["C"] + ["}0"] * 11
    smiles = to_smiles(tokens)
    assert smiles == "C123456789%10%11C%11%10987654321"
    # a label freed at an atom is not reused by a ring opening on that same atom
    assert to_smiles(extend("C1CC12CC2").tokens) == "C1CC12CC2"
    assert to_smiles(extend("C1CC1C1CC1").tokens) == "C1CC1C1CC1"
    with pytest.raises(DesignError, match="only 0 ring"):
        to_smiles(["C", "}0"])


def test_round_trip_keeps_the_molecule_on_real_smiles(molecules):
    """Thousands of real SMILES and random re-orderings: same RDKit canonical SMILES."""
    checked = 0
    for name, smiles in molecules.items():
        for i, s in enumerate(smiles[:1500]):
            can = canonical(s)
            if can is None:
                continue
            variants = [s]
            if i % 5 == 0:
                variants += list(Chem.MolToRandomSmilesVect(Chem.MolFromSmiles(s), 2, randomSeed=i))
            for v in variants:
                back = to_smiles(extend(v).tokens)
                assert canonical(back) == can, (name, v, back)
                checked += 1
    assert checked > 7000
    assert count_stars("*CC(*)C") == 2


# -- grammar masks -----------------------------------------------------------------------


def test_allowed_kinds_follow_the_smiles_grammar():
    def allowed(last, inside=False, star_ok=True, end_ok=True, state=None):
        code = 4 * inside + 2 * star_ok + end_ok
        return ALLOWED[last * 8 + code]

    after_open = allowed(KIND_BRANCH_OPEN, inside=True)
    assert after_open[KIND_ATOM] and not after_open[[KIND_BRANCH_CLOSE, KIND_RING_CLOSE]].any()
    assert not allowed(KIND_ATOM, inside=False)[KIND_BRANCH_CLOSE]
    assert allowed(KIND_ATOM, inside=True)[KIND_BRANCH_CLOSE]
    assert not allowed(KIND_ATOM, inside=True)[KIND_END]
    assert not allowed(KIND_ATOM, end_ok=False)[KIND_END]
    assert not allowed(KIND_ATOM, star_ok=False)[KIND_STAR]
    assert not allowed(KIND_BRANCH_CLOSE)[KIND_RING_CLOSE]
    # the state code: open rings forbid the end, inside a branch sets bit 4
    assert CODES[1, 1] & 1 == 0 and CODES[0, 1] & 1 == 1 and CODES[32, 1] & 4 == 4
    assert CODES[0, 2] & 2 == 2 and CODES[0, 1] & 2 == 0 and CODES[0, 2] & 1 == 0


def test_grown_sequences_are_always_well_formed(model):
    """Whatever is sampled, every branch and ring closes: the text re-extends cleanly."""
    rng = np.random.default_rng(3)
    start = Prefix([int(BEGIN_HASH)], [], [], 0, 0, KIND_BEGIN, 1)
    for threshold in (0, 10**6):  # the vectorized and the scalar grower
        old, scalar.SCALAR_ROWS = scalar.SCALAR_ROWS, threshold
        try:
            grown = batched.grow(model._tables, [start] * 150, np.zeros(150), rng, 250)
        finally:
            scalar.SCALAR_ROWS = old
        texts = [to_smiles(model._strings[g]) for g in grown if g is not None]
        assert len(texts) > 140
        for text in texts:
            assert extend(text).stars == 0  # parses as a complete extended SMILES


def test_scalar_and_vectorized_growers_draw_the_same_distribution(model, molecules):
    exts = [extend(s) for s in molecules["iqspr"][4000:4040]]
    prefixes = [prefix_of(e, max(2, len(e) - 6)) for e in exts] * 25
    stars = np.zeros(len(prefixes))
    stats = []
    for threshold in (0, 10**6):
        old, scalar.SCALAR_ROWS = scalar.SCALAR_ROWS, threshold
        try:
            grown = batched.grow(model._tables, prefixes, stars, np.random.default_rng(5), 250)
        finally:
            scalar.SCALAR_ROWS = old
        lengths = np.array([len(g) for g in grown if g is not None])
        first = np.array([g[0] for g in grown if g is not None and len(g)])
        stats.append((lengths.mean(), np.bincount(first, minlength=len(model.vocabulary))))
    (mean_a, first_a), (mean_b, first_b) = stats
    assert abs(mean_a - mean_b) < 1.5
    share_a, share_b = first_a / first_a.sum(), first_b / first_b.sum()
    assert np.abs(share_a - share_b).max() < 0.06


# -- proposals ---------------------------------------------------------------------------


def test_proposals_are_valid_and_new(model, molecules):
    parents = molecules["iqspr"][5000:5400]
    rng = np.random.default_rng(0)
    raw = model.propose(parents, rng, validate=False)
    assert valid_fraction(raw) >= 0.95
    proposals = model.propose(parents, rng)
    assert len(proposals) == len(parents)
    assert valid_fraction(proposals) >= 0.99
    assert np.mean([p != q for p, q in zip(parents, proposals, strict=True)]) > 0.8
    model.reorder_prob = 0.5
    try:
        reordered = model.propose(parents, rng)
    finally:
        model.reorder_prob = 0.0
    assert valid_fraction(reordered) >= 0.99


def test_proposals_keep_the_number_of_polymer_ends(polymer_model, molecules):
    parents = [s for s in molecules["polymer_genome"][400:] + molecules["polymer_tg"][2000:2300]
               if count_stars(s) == 2]  # fmt: skip
    assert len(parents) > 200
    rng = np.random.default_rng(1)
    for validate in (False, True):
        proposals = polymer_model.propose(parents, rng, validate=validate)
        assert all(count_stars(p) == 2 for p in proposals)
    assert valid_fraction(proposals) >= 0.99
    assert all(count_stars(s) == 2 for s in polymer_model.sample(20, rng, stars=2))


def test_bad_parents_come_back_unchanged(model):
    bad = [None, "", "C1CC(", "not smiles", 42, "C" * 400]
    out = model.propose([*bad, "CCO"], np.random.default_rng(0))
    assert out[:-1] == bad and isinstance(out[-1], str)


def test_proposals_and_training_are_deterministic(model, molecules):
    parents = molecules["iqspr"][6000:6100]
    first = model.propose(parents, np.random.default_rng(7))
    assert model.propose(parents, np.random.default_rng(7)) == first
    assert model.propose(parents, np.random.default_rng(8)) != first
    again = train_ngram(molecules["iqspr"][:3000], order=10, augment=1, client=False,
                        progress=False, partitions=3)  # fmt: skip
    for a, b in zip(model.entries(), again.entries(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_ngram(molecules["iqspr"][:300], order=4, augment=1, seed=1, client=False,
                        progress=False)  # fmt: skip
    same = train_ngram(molecules["iqspr"][:300], order=4, augment=1, seed=0, client=False,
                       progress=False)  # fmt: skip
    assert other.n_entries != same.n_entries or not np.array_equal(
        other.entries()[0], same.entries()[0]
    )


def test_sample_grows_valid_molecules(model):
    smiles = model.sample(50, np.random.default_rng(2))
    assert len(smiles) == 50 and valid_fraction(smiles) == 1.0
    assert len(set(smiles)) > 40
    with pytest.raises(ConfigError):
        model.sample(-1, np.random.default_rng(2))


def test_settings_are_checked(model):
    model.del_range = (5, 2)
    try:
        with pytest.raises(ConfigError, match="del_range"):
            model.propose(["CCO"], np.random.default_rng(0))
    finally:
        model.del_range = (1, 10)
    model.del_range = 3  # an int n means (1, n)
    try:
        assert len(model.propose(["CCO"], np.random.default_rng(0))) == 1
    finally:
        model.del_range = (1, 10)


# -- storage -----------------------------------------------------------------------------


def test_save_load_identity_and_no_pickle(model, molecules, tmp_path):
    folder = tmp_path / "iqspr.ngram"
    model.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["counts.parquet", "ngram.json"]
    for path in folder.iterdir():
        assert not path.read_bytes().startswith(b"\x80"), path  # no pickle protocol header
    header = json.loads((folder / "ngram.json").read_text())
    assert header["format"] == "xenonscale-ngram" and header["version"] == 1
    assert header["order"] == 10 and header["provenance"]["smiles"] == 3000
    assert header["provenance"]["augment"] == 1 and "xenonscale" in header["provenance"]["versions"]
    loaded = NGram.load(folder)
    assert loaded.vocabulary == model.vocabulary and loaded.order == model.order
    for a, b in zip(model.entries(), loaded.entries(), strict=True):
        np.testing.assert_array_equal(a, b)
    parents = molecules["iqspr"][7000:7100]
    assert loaded.propose(parents, np.random.default_rng(4)) == model.propose(
        parents, np.random.default_rng(4)
    )


def test_load_refuses_unknown_versions_and_other_folders(model, tmp_path):
    folder = tmp_path / "m"
    model.save(folder)
    header = json.loads((folder / "ngram.json").read_text())
    header["version"] = 99
    (folder / "ngram.json").write_text(json.dumps(header))
    with pytest.raises(DesignError, match="version 99"):
        NGram.load(folder)
    with pytest.raises(DesignError, match="not an n-gram directory"):
        NGram.load(tmp_path / "nothing")


# -- training ----------------------------------------------------------------------------


def test_distributed_counts_equal_single_process_counts(dask_client, molecules):
    smiles = [*molecules["iqspr"][:1200], "C1CC", None]
    alone = train_ngram(smiles, order=6, augment=1, client=False, progress=False)
    spread = train_ngram(smiles, order=6, augment=1, client=dask_client, partitions=5,
                         progress=False)  # fmt: skip
    assert spread.vocabulary == alone.vocabulary
    for a, b in zip(alone.entries(), spread.entries(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert spread.provenance["partitions"] == 5 and spread.provenance["workers"] == 2
    assert spread.provenance["bad"] == alone.provenance["bad"] == 2
    assert spread.provenance["bad_examples"] == alone.provenance["bad_examples"]


def test_bad_smiles_are_counted_and_skipped():
    model = train_ngram(["CCO", "C1CC", None, "", "xyz", "c1ccccc1"], order=3, client=False,
                        progress=False)  # fmt: skip
    p = model.provenance
    assert p["smiles"] == 6 and p["bad"] == 4 and p["sequences"] == 2 * 2
    assert [row for row, _, _ in p["bad_examples"]] == [1, 2, 3, 4]
    assert p["bad_examples"][0][2] == "RDKit cannot parse it"


def test_train_from_a_source_with_a_column_and_a_limit(data_dir):
    path = data_dir / "molecules" / "moses_train.csv.gz"
    model = train_ngram(path, order=5, limit=700, client=False, progress=False, partitions=2)
    assert model.provenance["smiles"] == 700 and model.provenance["column"] == "SMILES"
    with pytest.raises(ConfigError, match="no_such"):
        train_ngram(path, column="no_such", client=False, progress=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"order": 0}, "order=0"),
        ({"order": 2.5}, "order=2.5"),
        ({"augment": -1}, "augment=-1"),
        ({"partitions": 0}, "partitions=0"),
        ({"limit": -3}, "limit=-3"),
        ({"column": "smiles"}, "column='smiles'"),
        ({"reorder_prob": 2.0}, "reorder_prob=2.0"),
    ],
)
def test_bad_training_arguments_say_what_to_fix(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        train_ngram(["CCO"], client=False, progress=False, **kwargs)


# -- CLI ---------------------------------------------------------------------------------


def test_cli_train_info_sample_propose(tmp_path, molecules, capsys):
    data = tmp_path / "polymers.csv"
    pd.DataFrame({"name": range(300), "smiles": molecules["polymer_tg"][:300]}).to_csv(
        data, index=False
    )
    out = tmp_path / "polymers.ngram"
    assert main(["ngram", "train", str(data), "-o", str(out), "--order", "6", "--in-process",
                 "--augment", "2", "--no-progress"]) == 0  # fmt: skip
    assert "300 SMILES" in capsys.readouterr().out
    assert NGram.load(out).provenance["column"] == "smiles"
    assert main(["ngram", "info", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["order"] == 6
    assert main(["ngram", "sample", str(out), "-n", "4", "--seed", "3"]) == 0
    sampled = capsys.readouterr().out.split()
    assert len(sampled) == 4 and all(count_stars(s) == 2 for s in sampled)
    assert main(["ngram", "propose", str(out), "*CC(*)c1ccccc1", "--seed", "1"]) == 0
    parent, child = capsys.readouterr().out.strip().split("\t")
    assert parent == "*CC(*)c1ccccc1" and count_stars(child) == 2


def test_cli_bad_arguments_exit_2_with_a_message(tmp_path, capsys):
    data = tmp_path / "x.csv"
    data.write_text("smiles\nCCO\nCCN\n")
    out = str(tmp_path / "x.ngram")
    assert main(["ngram", "train", str(data), "-o", out, "--order", "0", "--in-process"]) == 2
    assert "--order: 0" in capsys.readouterr().err
    assert main(["ngram", "train", str(data), "-o", out, "--column", "nope", "--in-process"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["ngram", "info", str(tmp_path)]) == 2
    assert "not an n-gram directory" in capsys.readouterr().err
    assert not Path(out).exists()
