"""Molecule featurizers: XenonPy 0.6.7 / RDKit parity on real molecules, bad inputs, engine, CLI."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xenonscale
from xenonscale.errors import FeaturizerError
from xenonscale.featurize.molecules import (
    ECFP,
    FCFP,
    MACCS,
    REGISTERED,
    AtomPairFP,
    LayeredFP,
    MordredDescriptors,
    PatternFP,
    RDKitDescriptors,
    RDKitFP,
    TopologicalTorsionFP,
    parse_molecules,
)
from xenonscale.featurize.registry import FeaturizerSpec, registered

Chem = pytest.importorskip("rdkit.Chem")
from rdkit import rdBase  # noqa: E402

PER_SET = 60  # molecules drawn from each real set for the parity checks (300 in all)


@pytest.fixture(scope="module")
def real_smiles(data_dir) -> list[str]:
    """300 real SMILES: QM9, ESOL, PubChemQC (iQSPR), polymers with ``*`` (two sets)."""
    folder = data_dir / "molecules"
    qm9 = pd.read_csv(folder / "qm9.csv.gz", usecols=["SMILES"]).SMILES
    sets = [
        qm9.iloc[:: len(qm9) // PER_SET].iloc[:PER_SET],
        pd.read_csv(folder / "esol.csv").smiles.iloc[:PER_SET],
        pd.read_csv(folder / "iqspr_pubchemqc.csv").SMILES.iloc[::120].iloc[:PER_SET],
        pd.read_csv(folder / "polymer_tg.csv").PSMILES.iloc[::60].iloc[:PER_SET],
        pd.read_csv(folder / "polymer_genome_500.csv").smiles.iloc[::5].iloc[:PER_SET],
    ]
    smiles = [s for part in sets for s in part.tolist()]
    assert sum("*" in s for s in smiles) >= PER_SET + 20
    return smiles


def run_xenonpy(peers, xenonpy58_csv, cls, smiles, **kwargs) -> pd.DataFrame:
    """XenonPy 0.6.7 ``cls(n_jobs=1, input_type="any", on_errors="raise", **kwargs)``, peer env."""
    return peers.call(
        "xenonpy_molecules", cls=cls, smiles=smiles, kwargs=kwargs, elements_csv=xenonpy58_csv
    )["frame"]


# -- parity -------------------------------------------------------------------------------

PARITY = [
    ("ECFP", ECFP, {}),
    ("ECFP", ECFP, {"counting": True}),
    ("ECFP", ECFP, {"radius": 2, "n_bits": 1024}),
    ("FCFP", FCFP, {}),
    ("FCFP", FCFP, {"counting": True}),
    ("MACCS", MACCS, {}),
    ("AtomPairFP", AtomPairFP, {}),
    ("AtomPairFP", AtomPairFP, {"counting": True}),
    ("AtomPairFP", AtomPairFP, {"bit_per_entry": 2, "n_bits": 1024}),
    ("TopologicalTorsionFP", TopologicalTorsionFP, {}),
    ("TopologicalTorsionFP", TopologicalTorsionFP, {"counting": True}),
    ("TopologicalTorsionFP", TopologicalTorsionFP, {"bit_per_entry": 1}),
    ("RDKitFP", RDKitFP, {}),
    ("RDKitFP", RDKitFP, {"counting": True}),
    ("RDKitFP", RDKitFP, {"bit_per_entry": 4, "n_bits": 512}),
    ("LayeredFP", LayeredFP, {}),
    ("PatternFP", PatternFP, {}),
]


@pytest.mark.peers
@pytest.mark.parametrize(("peer", "cls", "kwargs"), PARITY, ids=[f"{p}-{k}" for p, _, k in PARITY])
def test_fingerprints_equal_xenonpy_bit_for_bit(
    peer, cls, kwargs, real_smiles, peers, xenonpy58_csv
):
    theirs = run_xenonpy(peers, xenonpy58_csv, peer, real_smiles, **kwargs)
    ours = cls(**kwargs).transform(real_smiles)
    assert list(ours.columns) == list(theirs.columns)
    assert ours.attrs["errors"] == []
    assert ours.dtypes.unique().tolist() == [np.float32]
    np.testing.assert_array_equal(ours.to_numpy(), theirs.to_numpy(dtype=np.float64))
    assert ours.to_numpy().sum() > len(real_smiles)  # not all zeros


@pytest.mark.peers
@pytest.mark.slow
def test_descriptors_equal_rdkit_and_xenonpy(real_smiles, peers, xenonpy58_csv, capfd):
    from rdkit.Chem import Descriptors

    real_smiles = real_smiles[::2]  # 150: descriptors take ~5 ms per molecule and tool
    ours = RDKitDescriptors().transform(real_smiles)
    names = [name for name, _ in Descriptors._descList]
    assert list(ours.columns) == names
    # RDKit's own call, missing (raised) → NaN, non-finite → NaN (documented)
    with rdBase.BlockLogs():
        rows = [Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(s)) for s in real_smiles]
    expected = np.array([[r[n] if r[n] is not None else np.nan for n in names] for r in rows])
    expected[~np.isfinite(expected)] = np.nan
    np.testing.assert_array_equal(ours.to_numpy(), expected)
    assert ours.dtypes.unique().tolist() == [np.float64]

    # XenonPy's DescriptorFeature: equal wherever it gives a number (-666 = it caught an error)
    theirs = run_xenonpy(peers, xenonpy58_csv, "DescriptorFeature", real_smiles)
    capfd.readouterr()  # XenonPy prints a traceback per failed descriptor
    assert list(theirs.columns) == names
    a, b = ours.to_numpy(), theirs.to_numpy(dtype=np.float64)
    number = np.isfinite(b) & (b != -666)
    np.testing.assert_array_equal(a[number], b[number])
    assert np.isnan(a[~number]).all()
    assert number.mean() > 0.97  # BCUT2D_* raise, Gasteiger charges are NaN on some


def test_molblocks_mols_and_smiles_agree(real_smiles):
    smiles = real_smiles[::7]
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    blocks = [Chem.MolToMolBlock(m) for m in mols]
    for featurizer in (ECFP(), MACCS(), RDKitDescriptors(descriptors=["MolWt", "TPSA"])):
        from_smiles = featurizer.featurize_batch(smiles)
        np.testing.assert_array_equal(featurizer.featurize_batch(mols).values, from_smiles.values)
        from_blocks = featurizer.featurize_batch(blocks)
        assert from_blocks.ok.all()
        again = [Chem.MolFromMolBlock(b) for b in blocks]
        np.testing.assert_array_equal(from_blocks.values, featurizer.featurize_batch(again).values)


def test_polymer_attachment_points_are_dummy_atoms(data_dir):
    psmiles = pd.read_csv(data_dir / "molecules" / "polymer_tg.csv").PSMILES.iloc[:50].tolist()
    batch = parse_molecules(psmiles)
    assert batch.ok.all()
    for smiles, mol in zip(psmiles, batch.mols, strict=True):
        dummies = [a for a in mol.GetAtoms() if a.GetAtomicNum() == 0]
        assert len(dummies) == smiles.count("*") >= 1


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("mordred") is None,
    reason="Mordred not installed (optional: pip install mordredcommunity)",
)
def test_mordred_equals_mordreds_own_calculator(real_smiles):
    import warnings

    from mordred import Calculator, descriptors

    smiles = real_smiles[::50]
    ours = MordredDescriptors().featurize_batch(smiles)
    assert ours.ok.all() and ours.values.shape[1] == len(MordredDescriptors().labels) > 1000
    calc = Calculator(descriptors, ignore_3D=True)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        frame = calc.pandas([Chem.MolFromSmiles(s) for s in smiles], nproc=1, quiet=True)
    expected = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    expected[~np.isfinite(expected)] = np.nan
    np.testing.assert_array_equal(ours.values, expected)


# -- bad inputs ---------------------------------------------------------------------------

SMILES_ALPHABET = "CNOSPFIBrcnos()[]=#@+-123456789%*.\\/Hl "


def _mutants(smiles: list[str], n: int, seed: int) -> list[object]:
    """Random edits of real SMILES plus junk: deletions, insertions, swaps, cuts, garbage."""
    rng = np.random.default_rng(seed)
    out: list[object] = []
    for i in range(n):
        s = smiles[int(rng.integers(len(smiles)))]
        kind = i % 6
        at = int(rng.integers(len(s)))
        char = SMILES_ALPHABET[int(rng.integers(len(SMILES_ALPHABET)))]
        if kind == 0:
            out.append(s[:at] + s[at + 1 :])
        elif kind == 1:
            out.append(s[:at] + char + s[at:])
        elif kind == 2 and len(s) > 1:
            j = int(rng.integers(len(s)))
            chars = list(s)
            chars[at], chars[j] = chars[j], chars[at]
            out.append("".join(chars))
        elif kind == 3:
            out.append(s[:at])
        elif kind == 4:
            size = int(rng.integers(1, 30))
            out.append("".join(rng.choice(list(SMILES_ALPHABET), size)))
        else:
            junk = [None, "", "   ", float("nan"), 42, b"CCO", "C1CC", "\nnot\na\nmolblock\n"]
            out.append(junk[(i // 6) % len(junk)])
    return out


def _expected_ok(item: object) -> bool:
    """What RDKit itself says: a Mol with atoms from the text (or UTF-8 bytes)."""
    if isinstance(item, bytes):
        item = item.decode()
    if not isinstance(item, str) or not item.strip():
        return False
    with rdBase.BlockLogs():
        reader = Chem.MolFromMolBlock if "\n" in item.rstrip() else Chem.MolFromSmiles
        mol = reader(item)
    return mol is not None and mol.GetNumAtoms() > 0


def test_a_thousand_mutants_never_raise_and_every_row_is_counted(real_smiles, capfd):
    inputs = _mutants(real_smiles, 1500, seed=0)
    rng = np.random.default_rng(1)
    for pos, smiles in zip(rng.integers(0, len(inputs), 300), real_smiles[:300], strict=True):
        inputs.insert(int(pos), smiles)
    n = len(inputs)
    capfd.readouterr()
    batch = ECFP().featurize_batch(inputs)
    assert capfd.readouterr().err == ""  # RDKit's parse errors are captured, not printed
    assert batch.ok.sum() + len(batch.errors) == n
    assert 300 <= batch.ok.sum() < n - 500  # most mutants are bad, all real SMILES are good
    rows = [e.row for e in batch.errors]
    assert rows == sorted(set(rows))
    assert all(e.reason and isinstance(e.input, str) for e in batch.errors)
    np.testing.assert_array_equal(batch.ok, [_expected_ok(item) for item in inputs])
    assert np.isnan(batch.values[~batch.ok]).all()
    good = [inputs[i] for i in np.flatnonzero(batch.ok)]
    np.testing.assert_array_equal(batch.values[batch.ok], ECFP().featurize_batch(good).values)
    reasons = " | ".join(e.reason for e in batch.errors)
    for words in ("SMILES Parse Error", "empty input", "unsupported input type int"):
        assert words in reasons


def test_reasons_are_rdkits_messages():
    inputs = ["C1CC", "N(C)(C)(C)(C)C", "c1cccc1", "C(((", None, pd.NA, Chem.Mol(), 3.5]
    batch = parse_molecules(inputs)
    reasons = [e.reason for e in batch.errors]
    assert reasons[0] == "SMILES Parse Error: unclosed ring for input: 'C1CC'"
    assert reasons[1] == "Explicit valence for atom # 0 N, 5, is greater than permitted"
    assert reasons[2].startswith("Can't kekulize mol.")
    assert "syntax error while parsing: C(((" in reasons[3] and "position 3" in reasons[3]
    assert reasons[4:] == [
        "empty input (None/NaN: no record)",
        "empty input (None/NaN: no record)",
        "molecule has no atoms",
        "unsupported input type float: give a SMILES string, a molblock or an RDKit Mol",
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=SMILES_ALPHABET, max_size=25),
            st.text(max_size=10),
            st.sampled_from(["CCO", "c1ccccc1", "*CC(*)C", "[Na+].[Cl-]"]),
            st.none(),
        ),
        max_size=12,
    )
)
def test_any_text_batch_keeps_the_contract(items):
    batch = MACCS().featurize_batch(items)
    assert batch.values.shape == (len(items), 167)
    assert batch.ok.sum() + len(batch.errors) == len(items)
    assert [bool(x) for x in batch.ok] == [_expected_ok(item) for item in items]
    assert np.isfinite(batch.values[batch.ok]).all()


def test_on_error_raise_and_parameter_errors():
    with pytest.raises(FeaturizerError, match=r"row 1: 'C1CC': SMILES Parse Error"):
        ECFP(on_error="raise").transform(["CCO", "C1CC"])
    bad = [
        (ECFP(n_bits=0), r"n_bits=0"),
        (ECFP(radius=-1), r"radius=-1"),
        (AtomPairFP(bit_per_entry=3), r"bit_per_entry=3"),
        (RDKitDescriptors(descriptors=["MolWt", "Nope"]), r"unknown \['Nope'\]"),
        (RDKitDescriptors(descriptors="classic"), r"'classic'"),
    ]
    for featurizer, message in bad:
        with pytest.raises(FeaturizerError, match=message):
            featurizer.featurize_batch(["CCO"])


def test_scikit_learn_manners_and_pickling():
    from sklearn.base import clone

    featurizer = AtomPairFP(n_bits=1024, counting=True)
    assert featurizer.get_params() == {
        "n_bits": 1024,
        "bit_per_entry": None,
        "counting": True,
        "on_error": "record",
    }
    twin = clone(featurizer)
    assert twin.get_params() == featurizer.get_params() and twin is not featurizer
    restored = pickle.loads(pickle.dumps(featurizer))
    np.testing.assert_array_equal(
        restored.featurize_batch(["CCO"]).values, featurizer.featurize_batch(["CCO"]).values
    )
    assert list(featurizer.get_feature_names_out()[:2]) == ["apfp_c:0", "apfp_c:1"]
    frame = ECFP().transform(pd.Series(["CCO", "bad("], index=["a", "b"]))
    assert list(frame.index) == ["a", "b"] and frame.attrs["errors"][0]["row"] == 1
    assert ECFP().featurize_batch([]).values.shape == (0, 2048)


def test_registered_names_and_lazy_rdkit():
    names = ["ecfp", "fcfp", "maccs", "atompair", "torsion", "rdkitfp", "layered", "pattern"]
    counts = [f"{n}_counts" for n in ("ecfp", "fcfp", "atompair", "torsion", "rdkitfp")]
    assert {*names, *counts, "rdkit", "mordred"} == set(registered("molecule")["molecule"])
    for name, cls in REGISTERED.items():
        built = FeaturizerSpec.parse("molecule", name, elements="xenonpy58").build()
        assert type(built) is cls
    for name in counts:  # the bits class, counting
        built = FeaturizerSpec.parse("molecule", name).build()
        assert type(built) is REGISTERED[name.removesuffix("_counts")] and built.counting
    code = (
        "import sys, xenonscale.featurize.registry as r; "
        "assert 'molecule' in r.registered(); "
        "assert not [m for m in sys.modules if m.startswith(('rdkit', 'mordred'))]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- engine and CLI -----------------------------------------------------------------------

ENGINE_SPEC = FeaturizerSpec.parse("molecule", "ecfp,maccs,rdkit")
BAD = ["C1CC", "N(C)(C)(C)(C)C", "Xx", "c1cccc1"]


def _store_matches(store, inputs, spec) -> xr.Dataset:
    ds = xr.open_zarr(store)
    reference = spec.build().featurize_batch(inputs)
    bits = spec.build().feature_encoding == "bits"  # 0/1 fingerprints only: uint8, 0 on errors
    assert ds.features.dtype == (np.uint8 if bits else np.float32)
    assert list(ds.feature.values) == spec.build().labels
    np.testing.assert_array_equal(ds.ok.values, reference.ok)
    dense = xenonscale.open_store(store, decode="float32").features.values
    np.testing.assert_array_equal(dense, reference.values.astype(np.float32))
    errors = xenonscale.read_errors(store)
    assert errors["row"].tolist() == [e.row for e in reference.errors]
    assert errors["error"].tolist() == [e.reason for e in reference.errors]
    return ds


@pytest.mark.slow
def test_engine_smi_with_bad_lines_is_bit_identical(tmp_path, dask_client, data_dir):
    from xenonscale.engine import featurize_to_store

    lines = (data_dir / "molecules" / "nci_first_5k.smi").read_text().splitlines()[:200]
    positions = [0, 77, 120, len(lines) + 3]
    for pos, smiles in zip(positions, BAD, strict=True):
        lines.insert(pos, f"{smiles}\tbad{pos}")
    path = tmp_path / "nci_dirty.smi"
    path.write_text("\n".join(lines) + "\n")
    store = str(tmp_path / "nci.zarr")
    job = featurize_to_store(
        str(path), store, ENGINE_SPEC, client=dask_client,
        chunk_rows=50, partition_rows=100, progress=False,
    )  # fmt: skip
    assert (job.rows, job.errors) == (len(lines), len(BAD))
    assert job.featurized + job.errors == job.rows
    ds = _store_matches(store, [line.split("\t")[0] for line in lines], ENGINE_SPEC)
    assert ds.features.shape == (len(lines), 2048 + 167 + len(RDKitDescriptors().labels))
    assert xenonscale.read_errors(store)["row"].tolist() == positions
    assert ds.attrs["featurizer"]["kind"] == "molecule"


def test_engine_csv_smiles_column_and_sdf(tmp_path, dask_client, data_dir):
    from xenonscale.engine import featurize_to_store

    spec = FeaturizerSpec.parse("molecule", "ecfp,maccs")
    esol = pd.read_csv(data_dir / "molecules" / "esol.csv")[["smiles", "Compound ID"]]
    bad = pd.DataFrame({"smiles": ["C1CC", None, "Xx"], "Compound ID": ["a", "b", "c"]})
    frame = pd.concat([esol.iloc[:400], bad, esol.iloc[400:700]], ignore_index=True)
    csv = tmp_path / "esol_dirty.csv"
    frame.to_csv(csv, index=False)
    store = str(tmp_path / "esol.zarr")
    job = featurize_to_store(
        str(csv), store, spec, column="smiles", client=dask_client,
        chunk_rows=100, partition_rows=300, progress=False,
    )  # fmt: skip
    assert (job.rows, job.featurized, job.errors) == (len(frame), len(frame) - 3, 3)
    _store_matches(store, frame.smiles.tolist(), spec)

    sdf = tmp_path / "esol.sdf"
    with Chem.SDWriter(str(sdf)) as writer:
        for smiles in esol.smiles.iloc[:150]:
            writer.write(Chem.MolFromSmiles(smiles))
    store = str(tmp_path / "sdf.zarr")
    job = featurize_to_store(str(sdf), store, spec, client=dask_client, progress=False)
    assert (job.rows, job.errors) == (150, 0)
    blocks = xr.open_zarr(store)["input"].values.tolist()
    assert all("M  END" in b for b in blocks)
    _store_matches(store, blocks, spec)


@pytest.mark.slow
def test_cli_featurize_molecules_into_a_store(tmp_path, dask_client, data_dir, capsys):
    from xenonscale.cli.main import main

    source = tmp_path / "polymer_genome_200.csv"  # the first 200 rows of the real file
    frame = pd.read_csv(data_dir / "molecules" / "polymer_genome_500.csv", nrows=200)
    frame.to_csv(source, index=False)
    store = str(tmp_path / "polymers.zarr")
    status = main(
        [
            "featurize", str(source), "-o", store, "--kind", "molecule", "--column", "smiles",
            "--featurizers", "ecfp,maccs,rdkit", "--scheduler", dask_client.scheduler.address,
            "--chunk-rows", "50", "--partition-rows", "100", "--no-progress",
        ]
    )  # fmt: skip
    assert status == 0
    assert "200 rows → 200 featurized + 0 errors" in capsys.readouterr().out
    ds = _store_matches(store, frame.smiles.tolist(), ENGINE_SPEC)
    assert ds.features.shape[0] == 200
    np.testing.assert_array_equal(ds.bandgap.values, frame.bandgap.to_numpy())
