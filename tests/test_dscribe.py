"""The ``dscribe:`` family: parity with DScribe's own ``create``, labels, error rows, engine.

Every number is checked against DScribe itself (2.1.x, the installed one) on
``ase.Atoms`` built here independently of the featurizer: crystals through
pymatgen's ``Structure.from_dict``/``from_str`` and ``AseAtomsAdaptor``,
molecules through RDKit with the documented recipe (hydrogens, ETKDG v3 seed
42, MMFF94). Data are real (``$XENONSCALE_DATA_DIR``): Matbench phonons
structures whose elements are among eight (32 crystals), perov5 CIFs, QM9
SMILES.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from xenonscale.errors import ConfigError
from xenonscale.featurize.dscribe import DscribeFeaturizer, dscribe_family
from xenonscale.featurize.dscribe.atoms import CONFORMER_SEED, molecule_atoms
from xenonscale.featurize.dscribe.compat import load_dscribe
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.limits import record_limits

pytestmark = [
    pytest.mark.filterwarnings("ignore:Issues encountered while parsing CIF"),
    pytest.mark.filterwarnings("ignore:Please use atoms.calc"),  # DScribe → ASE
]

#: The eight elements of the test crystals (32 Matbench phonons structures hold only these).
SPECIES = ["Li", "O", "F", "P", "S", "K", "Se", "Cs"]
QM9 = ["H", "C", "N", "O", "F"]


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="module")
def phonons(data_dir) -> list[dict]:
    """Every Matbench phonons structure (pymatgen dicts)."""
    table = json.loads(
        gzip.decompress((data_dir / "structures" / "matbench_phonons.json.gz").read_bytes())
    )
    return [row[0] for row in table["data"]]


def _elements(doc: dict) -> set[str]:
    return {sp["element"] for site in doc["sites"] for sp in site["species"]}


@pytest.fixture(scope="module")
def crystals(phonons) -> list[dict]:
    """The 32 phonons structures made of :data:`SPECIES` only (2 to 12 sites)."""
    chosen = [doc for doc in phonons if _elements(doc) <= set(SPECIES)]
    assert len(chosen) == 32
    return chosen


@pytest.fixture(scope="module")
def smiles(data_dir) -> list[str]:
    """20 QM9 molecules (rows 1000.., where QM9 has two to nine heavy atoms)."""
    frame = pd.read_csv(data_dir / "molecules" / "qm9.csv.gz", nrows=1020)
    column = next(c for c in frame.columns if c.lower() == "smiles")
    return frame[column].iloc[1000:1020].tolist()


def ase_atoms(doc_or_text):
    """Crystal → ase.Atoms the independent way: pymatgen's reader and AseAtomsAdaptor."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(doc_or_text, dict):
            structure = Structure.from_dict(doc_or_text)
        else:
            structure = Structure.from_str(doc_or_text, fmt="cif")
    return AseAtomsAdaptor.get_atoms(structure)


def rdkit_atoms(smi: str):
    """SMILES → ase.Atoms with the recipe the docs state, written out here independently."""
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smi))
    params = AllChem.ETKDGv3()
    params.randomSeed = 42
    assert AllChem.EmbedMolecule(mol, params) == 0
    assert AllChem.MMFFHasAllMoleculeParams(mol)
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    return Atoms(
        numbers=[a.GetAtomicNum() for a in mol.GetAtoms()],
        positions=mol.GetConformer().GetPositions(),
    )


def dscribe_reference(featurizer: DscribeFeaturizer, atoms: list) -> np.ndarray:
    """DScribe's own ``create`` with the constructor call the featurizer reports."""
    descriptors = load_dscribe()
    found, params = featurizer._setup()
    periodic = featurizer.kind == "structure"
    obj = getattr(descriptors, found.name)(**found.constructor(params, periodic))
    out = obj.create(atoms, n_jobs=1, **found.create_arguments(params))
    return np.asarray(out, dtype=np.float64).reshape(len(atoms), -1)


def assert_parity(ours: np.ndarray, reference: np.ndarray) -> None:
    """Equal within 1e-6 relative (an absolute floor of 1e-12 × the largest value)."""
    assert ours.shape == reference.shape
    floor = 1e-12 * max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=floor)


def build(kind: str, text: str) -> DscribeFeaturizer:
    return FeaturizerSpec.parse(kind, f"dscribe:{text}").build()


# --------------------------------------------------------------------- parity: crystals
CRYSTAL_SPECS = [  # (spec, how many of the 32 crystals: Valle–Oganov is slow in DScribe)
    (f"SOAP(species={SPECIES})", 32),
    (f"SOAP(species={SPECIES}, average='inner', compression='crossover', r_cut=4)", 32),
    (f"MBTR(species={SPECIES}, k=1)", 32),
    (f"MBTR(species={SPECIES})", 32),
    (f"MBTR(species={SPECIES}, k=3, grid={{'n': 40}})", 32),
    ("SineMatrix(n_atoms_max=16)", 32),
    ("SineMatrix(n_atoms_max=12, permutation='sorted_l2')", 32),
    ("EwaldSumMatrix(n_atoms_max=16)", 32),
    (f"ValleOganov(species={SPECIES}, r_cut=8)", 10),
    (f"ValleOganov(species={SPECIES}, function='angle', n=30, r_cut=4)", 6),
]


@pytest.mark.parametrize(
    ("text", "n"),
    CRYSTAL_SPECS,
    ids=[t.split("(")[0] + str(i) for i, (t, _) in enumerate(CRYSTAL_SPECS)],
)
def test_crystals_equal_dscribes_own_create(text, n, crystals):
    crystals = crystals[:n]
    featurizer = build("structure", text)
    batch = featurizer.featurize_batch(crystals)
    assert batch.ok.all(), batch.errors[:2]
    assert batch.values.shape == (len(crystals), len(featurizer.labels))
    reference = dscribe_reference(featurizer, [ase_atoms(doc) for doc in crystals])
    assert_parity(batch.values, reference)
    assert np.abs(reference).max() > 0  # not a vacuous comparison


def acsf_statistics(
    per_atom: list[np.ndarray], atoms: list, species: list[str], stats
) -> np.ndarray:
    """The per-element reduction as the docs state it, written independently of the featurizer."""
    from ase.data import atomic_numbers

    order = sorted(species, key=atomic_numbers.__getitem__)
    rows = []
    for values, system in zip(per_atom, atoms, strict=True):
        frame = pd.DataFrame(values)
        symbols = np.asarray(system.get_chemical_symbols())
        row = []
        for center in order:
            part = frame[symbols == center]
            row.append([len(part) / len(frame)])
            if not len(part):
                row += [np.zeros(frame.shape[1])] * len(stats)
                continue
            functions = {
                "mean": part.mean(),
                "std": part.std(ddof=0),
                "min": part.min(),
                "max": part.max(),
            }
            row += [functions[stat].to_numpy() for stat in stats]
        rows.append(np.concatenate(row))
    return np.vstack(rows)


def test_acsf_per_element_statistics_equal_dscribes_per_atom_acsf(crystals):
    featurizer = build("structure", f"ACSF(species={SPECIES}, g2_params=[[0.1, 0], [1, 2]])")
    batch = featurizer.featurize_batch(crystals)
    assert batch.ok.all()
    descriptors = load_dscribe()
    found, params = featurizer._setup()
    acsf = descriptors.ACSF(**found.constructor(params, True))
    atoms = [ase_atoms(doc) for doc in crystals]
    per_atom = [acsf.create(a) for a in atoms]
    assert_parity(batch.values, acsf_statistics(per_atom, atoms, SPECIES, params["stats"]))


# -------------------------------------------------------------------- parity: molecules
MOLECULE_SPECS = [
    "SOAP(species='qm9')",
    "ACSF(species='qm9', stats=['mean', 'max'])",
    "MBTR(species='qm9', k=2)",
    "MBTR(species='qm9', k=3, normalization='l2')",
    "CoulombMatrix(n_atoms_max=30)",
    "CoulombMatrix(n_atoms_max=30, permutation='sorted_l2')",
]


@pytest.fixture(scope="module")
def qm9_atoms(smiles) -> list:
    return [rdkit_atoms(s) for s in smiles]


def test_smiles_become_the_documented_conformer(smiles, qm9_atoms):
    batch = molecule_atoms(smiles)
    assert CONFORMER_SEED == 42 and not batch.errors
    for ours, theirs in zip(batch.atoms, qm9_atoms, strict=True):
        assert ours.get_atomic_numbers().tolist() == theirs.get_atomic_numbers().tolist()
        np.testing.assert_array_equal(ours.positions, theirs.positions)  # bit for bit
        assert not ours.pbc.any()


@pytest.mark.parametrize(
    "text", MOLECULE_SPECS, ids=[t.split("(")[0] + str(i) for i, t in enumerate(MOLECULE_SPECS)]
)
def test_molecules_equal_dscribes_own_create(text, smiles, qm9_atoms):
    featurizer = build("molecule", text)
    batch = featurizer.featurize_batch(smiles)
    assert batch.ok.all(), batch.errors[:2]
    if text.startswith("ACSF"):
        found, params = featurizer._setup()
        acsf = load_dscribe().ACSF(**found.constructor(params, False))
        reference = acsf_statistics(
            [acsf.create(a) for a in qm9_atoms], qm9_atoms, QM9, params["stats"]
        )
    else:
        reference = dscribe_reference(featurizer, qm9_atoms)
    assert_parity(batch.values, reference)


def test_xyz_text_and_ase_atoms_give_the_smiles_rows(smiles, qm9_atoms):
    soap = build("molecule", "SOAP(species='qm9', n_max=3, l_max=2)")
    xyz = [
        f"{len(a)}\nfrom {s}\n"
        + "\n".join(
            f"{sym} {x!r} {y!r} {z!r}"
            for sym, (x, y, z) in zip(a.get_chemical_symbols(), a.positions.tolist(), strict=True)
        )
        for s, a in zip(smiles[:5], qm9_atoms[:5], strict=True)
    ]
    from_smiles = soap.featurize_batch(smiles[:5]).values
    np.testing.assert_array_equal(soap.featurize_batch(xyz).values, from_smiles)
    np.testing.assert_array_equal(soap.featurize_batch(qm9_atoms[:5]).values, from_smiles)

    # an SDF record (3-D, titled by a number as PubChem's are) keeps its coordinates
    from rdkit import Chem

    from xenonscale.featurize.dscribe.atoms import conformer

    mol = conformer(Chem.MolFromSmiles(smiles[0]))
    mol.SetProp("_Name", "2244")
    (read,) = molecule_atoms([Chem.MolToMolBlock(mol)]).atoms
    np.testing.assert_allclose(read.positions, qm9_atoms[0].positions, atol=1e-4)  # 4 decimals
    assert read.get_atomic_numbers().tolist() == qm9_atoms[0].get_atomic_numbers().tolist()


# ------------------------------------------------------------------------------ labels
def test_soap_and_mbtr_labels_follow_dscribes_get_location():
    descriptors = load_dscribe()
    soap = DscribeFeaturizer("SOAP", {"species": ["O", "Si", "H"], "n_max": 3, "l_max": 2})
    obj = soap._built()
    labels = np.asarray(soap.labels)
    assert len(labels) == obj.get_number_of_features() == len(set(labels))
    for pair in [("H", "H"), ("H", "O"), ("O", "Si"), ("Si", "Si")]:
        block = labels[obj.get_location(pair)]
        assert all(
            label.startswith(f"SOAP(n_max=3 l_max=2):{pair[0]}-{pair[1]}:") for label in block
        )
    crossover = DscribeFeaturizer("SOAP", {"species": ["O", "Si"], "compression": "crossover"})
    obj = crossover._built()
    assert len(crossover.labels) == obj.get_number_of_features()
    assert np.asarray(crossover.labels)[obj.get_location(("Si", "Si"))][0].split(":")[1] == "Si-Si"
    for k, combos in (
        (2, [("O", "O"), ("O", "Si")]),
        (3, [("O", "Si", "O"), ("Si", "O", "Si"), ("O", "O", "Si")]),
    ):
        mbtr = DscribeFeaturizer("MBTR", {"species": ["Si", "O"], "k": k})
        obj = mbtr._built()
        labels = np.asarray(mbtr.labels)
        assert len(labels) == obj.get_number_of_features()
        for combo in combos:
            canonical = combo if combo[0] <= combo[-1] or k == 2 else combo[::-1]
            name = "-".join(sorted(canonical) if k == 2 else canonical)
            assert {label.split(":")[1] for label in labels[obj.get_location(combo)]} == {name}
    assert descriptors.MBTR  # the module is DScribe's


def test_labels_mean_what_they_say(crystals):
    """Labels naming an element a record lacks are zero; an l ≤ 1 SOAP is the l ≤ 1 part of
    an l ≤ 2 one; MBTR k=1 peaks at the grid point labelled with the element's Z."""
    lithium_fluoride = next(doc for doc in crystals if _elements(doc) == {"Li", "F"})
    for featurizer in (
        DscribeFeaturizer("SOAP", {"species": ["Li", "F", "K"], "n_max": 2, "l_max": 2}),
        DscribeFeaturizer("ACSF", {"species": ["Li", "F", "K"]}),
        DscribeFeaturizer("MBTR", {"species": ["Li", "F", "K"], "k": 3}),
    ):
        row = featurizer.featurize_batch([lithium_fluoride]).values[0]
        mentions_k = np.array(
            [":K" in label or "K-" in label or "-K" in label for label in featurizer.labels]
        )
        assert mentions_k.any() and (row[mentions_k] == 0).all()
        assert (row[~mentions_k] != 0).sum() > 0.1 * (~mentions_k).sum()
    small = DscribeFeaturizer("SOAP", {"species": SPECIES, "l_max": 1})
    large = DscribeFeaturizer("SOAP", {"species": SPECIES, "l_max": 2})
    a = pd.DataFrame(
        small.featurize_batch(crystals[:6]).values,
        columns=[x.split(":", 1)[1] for x in small.labels],
    )
    b = pd.DataFrame(
        large.featurize_batch(crystals[:6]).values,
        columns=[x.split(":", 1)[1] for x in large.labels],
    )
    assert_parity(a.to_numpy(), b[a.columns].to_numpy())
    k1 = DscribeFeaturizer("MBTR", {"species": ["Li", "F"], "k": 1})
    row = pd.Series(k1.featurize_batch([lithium_fluoride]).values[0], index=k1.labels)
    assert row.filter(like="MBTR(k=1):Li:").idxmax() == "MBTR(k=1):Li:atomic_number=3"
    assert row.filter(like="MBTR(k=1):F:").idxmax() == "MBTR(k=1):F:atomic_number=9"


def test_acsf_labels_and_default_sizes():
    acsf = DscribeFeaturizer("ACSF", {"species": ["Si", "O"]})
    labels = acsf.labels
    d = 6 * 2 + 4 * 3  # per atom: (G1 + 5 G2) per species, 4 G4 per pair
    assert len(labels) == 2 * (1 + 4 * d) == 194
    assert labels[:3] == ["ACSF:O:fraction", "ACSF:O:mean:G1:O", "ACSF:O:mean:G2:O:eta=0.01:Rs=0"]
    assert "ACSF:Si:max:G4:O-Si:eta=0.005:zeta=4:lambda=-1" in labels
    acsf_obj = acsf._built()
    assert acsf_obj.get_number_of_features() == d
    sizes = {
        "SOAP": 144, "MBTR": 300, "SineMatrix": 100, "EwaldSumMatrix": 100, "ValleOganov": 300,
    }  # fmt: skip
    for name, size in sizes.items():
        params = {} if "Matrix" in name else {"species": ["Si", "O"]}
        assert len(DscribeFeaturizer(name, params).labels) == size, name
    assert len(DscribeFeaturizer("CoulombMatrix", kind="molecule").labels) == 100


# ------------------------------------------------------------------------ spec, errors
def test_specs_with_commas_parse_and_round_trip():
    text = "rdf,dscribe:ACSF(species=['Si', 'O'], g2_params=[[1, 1], [1, 2]]),dscribe:SineMatrix"
    spec = FeaturizerSpec.parse("structure", text)
    assert spec.names == (
        "rdf",
        "dscribe:ACSF(species=['Si', 'O'], g2_params=[[1, 1], [1, 2]])",
        "dscribe:SineMatrix",
    )
    assert FeaturizerSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    union = spec.build()
    assert len(union.labels) == 200 + 2 * (1 + 4 * (2 * 3 + 4 * 3)) + 100
    assert union.labels == spec.build().labels
    citations = union.citations
    assert any(c.startswith("Himanen, L. et al. DScribe") for c in citations)
    assert any(
        "ACSF(species=['O', 'Si'], r_cut=6.0, g2_params=[[1.0, 1.0], [1.0, 2.0]]" in c
        for c in citations
    )


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("structure", "dscribe:SOPA", "unknown descriptor; choose from SOAP, ACSF, MBTR"),
        (
            "structure",
            "dscribe:SOAP(species=['Si'], rcut=5)",
            "unknown keyword 'rcut'; SOAP takes species, r_cut",
        ),
        ("structure", "dscribe:SOAP", "needs species: give species=['Si', 'O']"),
        ("structure", "dscribe:ACSF(species=['Xx'])", "species item 'Xx' is not an element"),
        ("structure", "dscribe:SOAP(species=__import__('os'))", "must be a literal"),
        ("structure", "dscribe:SOAP(5, 4)", "positional argument '5'"),
        ("structure", "dscribe:os.system('ls')", "not NAME or NAME(key=value"),
        ("structure", "dscribe:SOAP(species=['Si'], average='off')", "one row per atom"),
        ("structure", "dscribe:SOAP(species=['Si'], n_max=0)", "n_max=0: give an integer from 1"),
        (
            "structure",
            "dscribe:SOAP(species=['Si'], r_cut=0.5)",
            "DScribe refuses the parameters: When using",
        ),
        (
            "structure",
            "dscribe:MBTR(species=['Si'], k=2, geometry={'function': 'angle'})",
            "is a k=3 term but k=2",
        ),
        ("structure", "dscribe:CoulombMatrix", "is not for --kind structure: it ignores the cell"),
        ("molecule", "dscribe:SineMatrix", "is not for --kind molecule: it needs a periodic cell"),
        ("molecule", "dscribe:EwaldSumMatrix", "is not for --kind molecule"),
        ("molecule", "dscribe:ValleOganov(species='qm9')", "defined for periodic cells only"),
        ("composition", "dscribe:SOAP(species=['Si'])", "use --kind structure or --kind molecule"),
    ],
)
def test_bad_specs_are_config_errors_naming_the_fix(kind, text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        FeaturizerSpec.parse(kind, text).build()


def test_importing_the_registry_leaves_dscribe_unloaded():
    code = (
        "import sys, xenonscale.featurize.registry as r\n"
        "spec = r.FeaturizerSpec.parse('structure', \"dscribe:SOAP(species=['Si'])\")\n"
        "heavy = ('dscribe', 'numba', 'ase', 'rdkit', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "spec.build()\n"
        "print('dscribe' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


# ------------------------------------------------------------------------- error rows
def test_bad_records_are_error_rows_with_reasons(crystals, phonons, data_dir):
    perov = pd.read_csv(data_dir / "structures" / "perov5_val.csv.gz", nrows=3)
    barium = next(doc for doc in phonons if _elements(doc) - set(SPECIES) == {"Ba"})
    duplicated = dict(crystals[3], sites=[*crystals[3]["sites"], crystals[3]["sites"][0]])
    disordered = json.loads(json.dumps(crystals[0]))
    disordered["sites"][0]["species"] = [
        {"element": "Li", "occu": 0.5},
        {"element": "K", "occu": 0.5},
    ]
    inputs = [
        crystals[0],
        perov.cif.iloc[0][:300],  # truncated CIF
        barium,
        None,
        duplicated,  # two atoms on one site: the sine matrix has 1/0
        disordered,
        crystals[1],
        max(crystals, key=lambda d: len(d["sites"])),  # 12 sites
    ]
    sine = build("structure", "SineMatrix(n_atoms_max=10)")
    batch = sine.featurize_batch(inputs)
    reasons = {e.row: e.reason for e in batch.errors}
    assert batch.ok.tolist() == [True, False, True, False, False, False, True, False]
    assert reasons[1].startswith("unreadable CIF")
    assert reasons[3] == "empty input (None/NaN)"
    assert reasons[4].startswith("DScribe failed: LinAlgError") or "NaN or infinite" in reasons[4]
    assert reasons[5].startswith("disordered structure")
    assert reasons[7].startswith("12 atoms: more than n_atoms_max=10 of dscribe:SineMatrix")
    assert np.isnan(batch.values[~batch.ok]).all() and np.isfinite(batch.values[batch.ok]).all()
    good = [inputs[i] for i in (0, 2, 6)]
    assert_parity(batch.values[batch.ok], dscribe_reference(sine, [ase_atoms(d) for d in good]))

    soap = build("structure", f"SOAP(species={SPECIES}, n_max=2, l_max=1)")
    batch = soap.featurize_batch(inputs[:3])
    assert batch.ok.tolist() == [True, False, False]
    assert batch.errors[1].reason == (  # SPECIES is in the order of Z, as the message lists it
        f"element Ba is not among species {SPECIES} of dscribe:SOAP: add it to species=[...]"
    )
    with record_limits(max_neighbors=50, max_atoms=8):
        batch = soap.featurize_batch(crystals[:8])
    assert not batch.ok.any()
    for error in batch.errors:
        large = len(crystals[error.row]["sites"]) > 8
        assert (
            "exceeds max_atoms, limit 8" if large else "exceeds max_neighbors, limit 50"
        ) in error.reason


@pytest.mark.parametrize(
    "descriptor, params, limits",
    [
        ("SOAP", {"species": ["O", "Li", "Na", "K", "F", "Cl"], "r_cut": 5.0}, {}),
        (
            "ACSF",
            {"species": ["O", "Li", "Na", "K", "F", "Cl"], "r_cut": 12.0},
            {"max_neighbors": 2000},
        ),
        ("SineMatrix", {"n_atoms_max": 6}, {}),
        ("SOAP", {"species": "Z<=83", "r_cut": 3.0}, {"cells": 30}),
    ],
)
def test_crystal_refusals_over_the_batch_equal_the_per_record_checks(
    phonons, monkeypatch, descriptor, params, limits
):
    """The vectorized checks of a crystal batch give each record the reason the
    one-record check gives (species, n_atoms_max, neighbour budget, cell list)."""
    from xenonscale.featurize.dscribe import featurizer as module
    from xenonscale.featurize.dscribe.atoms import structure_atoms

    if "cells" in limits:
        monkeypatch.setattr(module, "MAX_CELLS", limits["cells"])
    featurizer = DscribeFeaturizer(descriptor, params).check()
    found, resolved = featurizer._setup()
    built = featurizer._built()
    parsed = structure_atoms(phonons)
    budget = {k: v for k, v in limits.items() if k != "cells"}
    with record_limits(**budget):
        batch = featurizer._refuse_crystals(found, resolved, built, parsed)
        one_by_one = {
            row: featurizer._refuse(found, resolved, built, atoms)
            for row, atoms in enumerate(parsed.atoms)
            if atoms is not None
        }
    want = {row: why for row, why in one_by_one.items() if why is not None}
    assert 0 < len(want) < len(phonons)
    assert batch == want


def test_the_batch_call_falls_back_row_by_row_only_when_it_raises(crystals):
    duplicated = dict(crystals[3], sites=[*crystals[3]["sites"], crystals[3]["sites"][0]])
    sine = build("structure", "SineMatrix(n_atoms_max=16)")
    batch = sine.featurize_batch([crystals[0], duplicated, crystals[2]])
    assert batch.ok.tolist() == [True, False, True]
    assert (
        batch.errors[0].reason == "DScribe failed: LinAlgError: Array must not contain infs or NaNs"
    )
    alone = sine.featurize_batch([crystals[0], crystals[2]])
    np.testing.assert_array_equal(batch.values[[0, 2]], alone.values)


def test_bad_molecules_are_error_rows(smiles):
    from ase import Atoms

    soap = build("molecule", "SOAP(species='qm9', n_max=2, l_max=1)")
    inputs = [
        smiles[0],
        "C1CC",  # unclosed ring
        "*CC(*)C",  # polymer ends
        "[Na+].[Cl-]",  # elements outside 'qm9'
        "",
        "3\nbroken\nO 0 0 0\nH 0 0.76\n",
        Atoms("H2", positions=[[0, 0, 0], [1e4, 1e4, 1e4]]),  # one atom 10⁴ Å away
        smiles[1],
    ]
    batch = soap.featurize_batch(inputs)
    reasons = {e.row: e.reason for e in batch.errors}
    assert batch.ok.tolist() == [True, False, False, False, False, False, False, True]
    assert reasons[1].startswith("SMILES Parse Error: unclosed ring")
    assert reasons[2].startswith("dummy atom '*' (atomic number 0)")
    assert reasons[3].startswith("element Na is not among species ['H', 'C', 'N', 'O', 'F']")
    assert reasons[4] == "empty input (blank text)"
    assert reasons[5].startswith("XYZ text announces 3 atoms")
    assert "DScribe's cell list would need" in reasons[6]
    with record_limits(max_atoms=5):
        batch = soap.featurize_batch(smiles[:3])
    assert all("exceeds max_atoms, limit 5" in e.reason for e in batch.errors) and batch.errors


def test_the_featurizer_keeps_the_batch_contract(crystals, phonons, smiles):
    from xenonscale.testing import check_featurizer

    barium = next(doc for doc in phonons if _elements(doc) - set(SPECIES) == {"Ba"})
    check_featurizer(
        dscribe_family(f"SOAP(species={SPECIES}, n_max=2, l_max=2)", kind="structure"),
        crystals[:4],
        [barium, "garbage text", None],
        name="dscribe:SOAP",
    )
    check_featurizer(
        dscribe_family("ACSF(species='qm9', g4_params=None)", kind="molecule"),
        smiles[:4],
        ["[Na+].[Cl-]", "garbage text !!", None],
        name="dscribe:ACSF",
    )


# ---------------------------------------------------------------------------- engine
def test_engine_store_holds_the_same_numbers_and_the_error_rows(
    tmp_path, dask_client, crystals, phonons
):
    import xarray as xr
    from pymatgen.core import Structure

    import xenonscale
    from xenonscale.engine import featurize_to_store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cifs = [Structure.from_dict(doc).to(fmt="cif") for doc in crystals[:24]]
        barium = next(doc for doc in phonons if _elements(doc) - set(SPECIES) == {"Ba"})
        barium = Structure.from_dict(barium).to(fmt="cif")
    rows = [{"id": f"phonons-{i}", "cif": text} for i, text in enumerate(cifs)]
    bad = [(3, cifs[5][:250], "unreadable CIF"), (17, barium, "element Ba is not among species")]
    for position, text, _ in bad:
        rows.insert(position, {"id": f"bad-{position}", "cif": text})
    path = tmp_path / "phonons.csv"
    pd.DataFrame(rows).to_csv(path, index=False)

    spec = FeaturizerSpec.parse(
        "structure",
        f"dscribe:SOAP(species={SPECIES}, n_max=3, l_max=2),dscribe:SineMatrix(n_atoms_max=16)",
    )
    store = tmp_path / "dscribe.zarr"
    job = featurize_to_store(
        str(path), str(store), spec, column="cif", client=dask_client,
        chunk_rows=8, partition_rows=16, progress=False,
    )  # fmt: skip
    assert job.rows == 26 and job.errors == 2 and job.featurized == 24
    errors = xenonscale.read_errors(str(store))
    assert errors["row"].tolist() == [3, 17]
    for (_, _, why), text in zip(bad, errors["error"], strict=True):
        assert why in text

    ds = xr.open_zarr(store)
    featurizer = spec.build()
    assert list(ds.feature.values) == featurizer.labels
    assert ds.attrs["featurizer"]["names"] == list(spec.names)
    assert any(c.startswith("DScribe 2.") and "SOAP(species=" in c for c in ds.attrs["citations"])
    inputs = ds["input"].values.tolist()
    assert inputs == [r["cif"] for r in rows]
    reference = featurizer.featurize_batch(inputs)
    np.testing.assert_array_equal(ds.ok.values, reference.ok)
    np.testing.assert_array_equal(ds.features.values, reference.values.astype(np.float32))
    good = [ase_atoms(r["cif"]) for r, ok in zip(rows, reference.ok, strict=True) if ok]
    soap, sine = featurizer.featurizers
    width = len(soap.labels)
    assert_parity(reference.values[reference.ok, :width], dscribe_reference(soap, good))
    assert_parity(reference.values[reference.ok, width:], dscribe_reference(sine, good))
