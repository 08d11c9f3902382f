"""ASE inputs: extxyz files, ASE databases and ``ase.Atoms`` objects, on real data.

The reference is always another path: crystals are compared with the store of the
same structures written as CIF files, ASE's DC-DFT database with pymatgen structures
built from its JSON by hand, molecules with ECFP from their SMILES.
"""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pandas as pd
import pytest

import xenonscale
from xenonscale.engine import featurize_to_store
from xenonscale.errors import SourceError
from xenonscale.featurize.base import RejectedInput
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.sources import AseDbSource, ExtxyzSource, infer_format, open_source
from xenonscale.testing import SourceRecord, SourceTests

pytest.importorskip("ase")
import ase.db
import ase.io
from ase import Atoms

STRUCTURE_SPEC = FeaturizerSpec.parse("structure", "rdf,ofm,structure")
ECFP_SPEC = FeaturizerSpec.parse("molecule", "ecfp")
N_CRYSTALS = 36
N_MOLECULES = 50
SLAB_AT = 11  # where the extxyz file and the database hold a partially periodic slab


# -- real data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def phonons(data_dir) -> dict:
    """Matbench phonons (pandas split JSON: pymatgen structure dicts, last phdos peak)."""
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def crystals(tmp_path_factory, phonons):
    """Matbench phonon structures as CIF files, and the same (CIF-read) structures as Atoms."""
    from pymatgen.core import Structure
    from pymatgen.io.cif import CifWriter

    table = phonons
    folder = tmp_path_factory.mktemp("crystals")
    (folder / "cifs").mkdir()
    names, atoms = [], []
    for index, (doc, peak) in zip(table["index"], table["data"][:N_CRYSTALS], strict=False):
        name = f"mbph-{index:04d}"
        path = folder / "cifs" / f"{name}.cif"
        CifWriter(Structure.from_dict(doc)).write_file(str(path))
        structure = Structure.from_str(path.read_text(), fmt="cif")  # what the CIF store reads
        frame = Atoms(
            numbers=[site.specie.Z for site in structure],
            positions=structure.cart_coords,
            cell=structure.lattice.matrix,
            pbc=True,
        )
        frame.info.update(name=name, phdos_peak=float(peak), matbench_index=int(index))
        names.append(name)
        atoms.append(frame)
    return folder, names, atoms


def _slab() -> Atoms:
    from ase.build import fcc111

    slab = fcc111("Al", size=(2, 2, 3), vacuum=6.0)  # pbc = (True, True, False)
    slab.info = {"name": "al-slab", "phdos_peak": 0.0, "matbench_index": -1}
    return slab


@pytest.fixture(scope="module")
def crystal_files(crystals):
    """The crystals as an extxyz file, its gzip copy and an ASE SQLite database (+ a slab)."""
    folder, _, atoms = crystals
    frames = [*atoms[:SLAB_AT], _slab(), *atoms[SLAB_AT:]]
    xyz = folder / "crystals.extxyz"
    ase.io.write(xyz, frames, format="extxyz")
    gz = folder / "crystals.xyz.gz"
    with open(xyz, "rb") as f, gzip.open(gz, "wb") as out:
        shutil.copyfileobj(f, out)
    db_path = folder / "crystals.db"
    with ase.db.connect(db_path) as db:
        for frame in frames:
            db.write(frame, **frame.info)
    return {"extxyz": xyz, "gz": gz, "db": db_path, "frames": frames}


def _featurize(source, store, spec, client, rows=8) -> xenonscale.engine.JobSummary:
    return featurize_to_store(
        str(source) if not isinstance(source, AseDbSource | ExtxyzSource) else source,
        str(store),
        spec,
        client=client,
        chunk_rows=rows,
        partition_rows=rows,
        progress=False,
    )


def _stored(store) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(ids, ok, features as float64 with NaN on failed rows)`` of a store."""
    ds = xenonscale.open_store(str(store))
    ok = ds.ok.values.astype(bool)
    values = ds.features.values.astype(np.float64)
    values[~ok] = np.nan
    return [str(i) for i in ds.id.values], ok, values


@pytest.fixture(scope="module")
def cif_store(crystals, tmp_path_factory, dask_client):
    folder, _, _ = crystals
    store = tmp_path_factory.mktemp("stores") / "cif.zarr"
    _featurize(folder / "cifs", store, STRUCTURE_SPEC, dask_client)
    return _stored(store)


# -- crystals: extxyz and ASE database stores equal the CIF store ---------------------------


@pytest.mark.parametrize("name", ["extxyz", "db"])
def test_crystal_store_equals_the_cif_store(name, crystal_files, cif_store, tmp_path, dask_client):
    store = tmp_path / f"{name}.zarr"
    job = _featurize(crystal_files[name], store, STRUCTURE_SPEC, dask_client)
    assert job.rows == N_CRYSTALS + 1
    assert job.featurized + job.errors == job.rows and job.errors == 1
    ids, ok, values = _stored(store)
    cif_ids, cif_ok, cif_values = cif_store
    assert ids[SLAB_AT] == "al-slab" and not ok[SLAB_AT]
    keep = np.arange(len(ids)) != SLAB_AT
    assert [ids[i] for i in np.flatnonzero(keep)] == cif_ids
    np.testing.assert_array_equal(ok[keep], cif_ok)
    assert cif_ok.all()
    if name == "db":  # the database keeps positions and cell exactly: the same features to
        # the last bits (AVX-512 BLAS kernels may round a cancelling sum, ~1e-11, differently)
        np.testing.assert_allclose(values[keep], cif_values, rtol=1e-12, atol=1e-15)
    else:  # ASE writes extxyz positions as %16.8f (1e-8 Å): float32 features within 1e-7
        np.testing.assert_allclose(values[keep], cif_values, rtol=1e-6, atol=1e-6)
    errors = xenonscale.read_errors(str(store)).set_index("row")
    assert list(errors.index) == [SLAB_AT]
    assert "partially periodic (pbc=TTF)" in errors.loc[SLAB_AT, "error"]
    ds = xenonscale.open_store(str(store))
    peaks = ds["phdos_peak"].values[keep]
    want = [a.info["phdos_peak"] for k, a in enumerate(crystal_files["frames"]) if k != SLAB_AT]
    np.testing.assert_array_equal(peaks, want)


def test_periodic_frames_keep_cartesian_positions_exactly(crystal_files):
    """The structure JSON holds each position as written (ASE's own read of the file)."""
    from xenonscale.featurize.structures.parse import parse_structures

    source = open_source(str(crystal_files["extxyz"]))
    frame = source.read(source.plan(1000)[1][0])
    frames = ase.io.read(crystal_files["extxyz"], index=":")
    for text, atoms in zip(frame["input"], frames, strict=True):
        if isinstance(text, RejectedInput):
            assert atoms.info["name"] == "al-slab"
            continue
        doc = json.loads(text)
        assert np.array_equal(np.array([s["xyz"] for s in doc["sites"]]), atoms.positions)
        assert np.array_equal(np.array(doc["lattice"]["matrix"]), atoms.cell.array)
        # pymatgen recomputes Cartesian coordinates from the fractional ones on reading
        cart = parse_structures([text]).cart
        np.testing.assert_allclose(cart, atoms.positions, rtol=0, atol=1e-12)


def test_compressed_file_plans_the_same_frames(crystal_files):
    plain, packed = (open_source(str(crystal_files[k])) for k in ("extxyz", "gz"))
    assert isinstance(packed, ExtxyzSource) and packed.compression == "gzip"
    assert plain.plan(5) == packed.plan(5)  # offsets are in the decompressed stream
    for a, b in zip(plain.plan(5)[1], packed.plan(5)[1], strict=True):
        pd.testing.assert_frame_equal(plain.read(a), packed.read(b))


def test_partitions_add_up_and_read_only_their_frames(crystal_files):
    source = ExtxyzSource(str(crystal_files["extxyz"]))
    total, partitions = source.plan(5)
    assert total == N_CRYSTALS + 1 == sum(p.rows for p in partitions)
    size = crystal_files["extxyz"].stat().st_size
    names = [a.info["name"] for a in crystal_files["frames"]]
    for p in partitions:
        data = source.read_bytes(p)
        end = p.locator["end"] if p.locator["end"] is not None else size
        assert len(data) == end - p.locator["offset"]
        assert data.count(b"Lattice=") == p.rows  # its frames, no byte of another
        assert source.read(p)["id"].tolist() == names[p.start : p.stop]


def test_a_damaged_frame_is_one_error_row_and_the_others_read(crystal_files, tmp_path):
    lines = crystal_files["extxyz"].read_text().splitlines(keepends=True)
    lines[2] = "Qq 0.0 0.0 0.0\n"  # frame 0's first atom: not an element
    path = tmp_path / "damaged.extxyz"
    path.write_text("".join(lines[:-2]))  # and the last frame loses its last two atom lines
    source = open_source(str(path))
    total, partitions = source.plan(4)
    frame = pd.concat([source.read(p) for p in partitions], ignore_index=True)
    rejected = [i for i, x in enumerate(frame["input"]) if isinstance(x, RejectedInput)]
    assert rejected == [0, SLAB_AT, total - 1]
    assert "ASE cannot read it" in frame["input"][0].reason
    last = frame["input"][total - 1].reason
    assert "truncated: the file ends 2 line(s) before the frame does" in last
    assert frame["id"][0] == "frame-0"


def test_a_count_line_that_is_not_a_number_names_the_line(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("1\nwater-ish\nO 0 0 0\nthree\n\nH 0 0 0\n")
    with pytest.raises(SourceError, match=r"line 4: 'three' is not an atom count"):
        open_source(str(path)).plan(10)


# -- ASE databases ------------------------------------------------------------------------


def test_dcdft_json_database_matches_structures_built_from_its_json(
    data_dir, tmp_path, dask_client
):
    """ASE's DC-DFT set (71 elemental crystals, ASE JSON db) against pymatgen by hand."""
    from pymatgen.core import Lattice, Structure

    path = data_dir / "structures" / "ase_dcdft.json"
    source = open_source(f"ase:{path}", kind="structure")
    assert isinstance(source, AseDbSource) and source.type == "json"
    store = tmp_path / "dcdft.zarr"
    spec = FeaturizerSpec.parse("structure", "rdf,structure")
    job = _featurize(source, store, spec, dask_client, rows=16)
    assert job.rows == 71 and job.errors == 0

    raw = json.loads(path.read_text())
    rows = [raw[str(i)] for i in raw["ids"]]
    structures = [
        Structure(Lattice(r["cell"]), r["numbers"], r["positions"], coords_are_cartesian=True)
        for r in rows
    ]
    expected = spec.build().transform(structures).to_numpy(np.float64)
    ids, ok, values = _stored(store)
    assert ids == [r["key_value_pairs"]["name"] for r in rows]
    assert ok.all()
    np.testing.assert_allclose(values, expected.astype(np.float32), rtol=1e-6, atol=1e-6)
    ds = xenonscale.open_store(str(store))
    for key in ("wien2k_B", "exp_volume"):
        want = [r["key_value_pairs"].get(key, np.nan) for r in rows]
        np.testing.assert_array_equal(ds[key].values, np.asarray(want, dtype=np.float64))


def test_database_partitions_follow_id_ranges(crystal_files):
    source = open_source(str(crystal_files["db"]))
    total, partitions = source.plan(10)
    assert total == N_CRYSTALS + 1 == sum(p.rows for p in partitions)
    assert [(p.locator["first"], p.locator["last"]) for p in partitions] == [
        (1, 10), (11, 20), (21, 30), (31, 37)
    ]  # fmt: skip
    third = source.read(partitions[2])
    assert third["row"].tolist() == list(range(20, 30))
    assert third["id"].tolist() == [a.info["name"] for a in crystal_files["frames"][20:30]]
    assert third["matbench_index"].dtype == np.int64


def test_foreign_or_empty_files_are_refused_untouched(tmp_path):
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    before = other.read_bytes()
    with pytest.raises(SourceError, match="not an ASE one"):
        open_source(str(other))
    assert other.read_bytes() == before  # ASE would have added its tables
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(SourceError, match="is empty"):
        open_source(str(tmp_path / "empty.db"))
    (tmp_path / "docs.json").write_text('[{"formula": "NaCl"}]')
    with pytest.raises(SourceError, match="is neither SQLite nor a JSON object"):
        open_source(f"ase:{tmp_path / 'docs.json'}")
    (tmp_path / "doc.json").write_text('{"formula": "NaCl"}')
    with pytest.raises(SourceError, match="not a readable ASE json database"):
        open_source(f"ase:{tmp_path / 'doc.json'}")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.db"))
    assert not (tmp_path / "missing.db").exists()


def test_url_dispatch(tmp_path, data_dir):
    assert infer_format("a.extxyz") == infer_format("b.xyz.bz2") == "extxyz"
    assert infer_format("c.db") == "ase-db" and infer_format("d.json") == "json"
    path = tmp_path / "one.xyz"
    ase.io.write(path, Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), format="extxyz")
    assert isinstance(open_source(f"ase:{path}"), ExtxyzSource)
    assert open_source(f"ase:{path}").kind == "molecule"
    dcdft = data_dir / "structures" / "ase_dcdft.json"
    assert isinstance(open_source(str(dcdft), format="ase-db"), AseDbSource)
    with pytest.raises(xenonscale.XenonscaleError, match="does not apply"):
        open_source(str(path), column="formula")


# -- molecules: XYZ frames featurized like their SMILES -----------------------------------


@pytest.fixture(scope="module")
def molecules(tmp_path_factory, data_dir):
    """ESOL molecules embedded by RDKit (ETKDG + MMFF) and written as non-periodic frames."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    table = pd.read_csv(data_dir / "molecules" / "esol.csv").head(N_MOLECULES)
    frames, smiles = [], []
    for name, text in zip(table["Compound ID"], table["smiles"].str.strip(), strict=True):
        mol = Chem.AddHs(Chem.MolFromSmiles(text))
        assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0, text
        AllChem.MMFFOptimizeMolecule(mol)
        symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
        frame = Atoms(symbols, positions=mol.GetConformer().GetPositions())
        frame.info["name"] = name
        frames.append(frame)
        smiles.append(text)
    path = tmp_path_factory.mktemp("molecules") / "esol.extxyz"
    ase.io.write(path, frames, format="extxyz")
    return path, frames, smiles


def _perceived(xyz_text: str) -> str | None:
    """Canonical SMILES (no stereo) of what RDKit's bond perception makes of an XYZ block."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    mol = Chem.MolFromXYZBlock(xyz_text)
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0)
    except ValueError:
        return None
    return Chem.MolToSmiles(Chem.RemoveHs(mol), isomericSmiles=False)


def test_molecule_frames_match_ecfp_of_their_smiles(molecules, tmp_path, dask_client):
    from rdkit import Chem

    path, frames, smiles = molecules
    store = tmp_path / "esol.zarr"
    job = _featurize(path, store, ECFP_SPEC, dask_client, rows=16)
    assert job.rows == N_MOLECULES
    ids, ok, values = _stored(store)
    assert ids == [f.info["name"] for f in frames]
    reference = ECFP_SPEC.build().transform(smiles).to_numpy(np.float64)
    source = open_source(str(path))
    inputs = pd.concat([source.read(p) for p in source.plan(100)[1]])["input"].tolist()
    recovered = []
    for k, text in enumerate(inputs):
        want = Chem.MolToSmiles(Chem.MolFromSmiles(smiles[k]), isomericSmiles=False)
        if _perceived(text) == want:
            recovered.append(k)
            assert ok[k], f"{ids[k]}: perceived as {want} but not featurized"
            np.testing.assert_array_equal(values[k], reference[k], err_msg=ids[k])
    missed = sorted(set(range(N_MOLECULES)) - set(recovered))
    # ESOL row 48, nifedipine: the bonds are found but xyz2mol's bond orders are not (its
    # nitro group next to the dihydropyridine diester): an error row naming that
    assert [ids[k] for k in missed] == ["nifedipine"]
    errors = xenonscale.read_errors(str(store)).set_index("row")
    assert list(errors.index) == missed
    assert "bond perception failed" in errors.loc[missed[0], "error"]


def test_atoms_objects_in_memory(crystals, molecules):
    """Lists of Atoms go straight to featurizers: equal to their CIF / SMILES counterparts."""
    folder, names, atoms = crystals
    featurizer = STRUCTURE_SPEC.build()
    cif_texts = [(folder / "cifs" / f"{n}.cif").read_text() for n in names[:12]]
    from_atoms = featurizer.transform([*atoms[:12], _slab()])
    assert featurizer.errors_["row"].tolist() == [12]
    assert "not periodic in all three directions" in featurizer.errors_["error"].iloc[0]
    from_cif = featurizer.transform(cif_texts)
    np.testing.assert_allclose(from_atoms.to_numpy()[:12], from_cif.to_numpy(), rtol=1e-6)

    _, frames, smiles = molecules
    ecfp = ECFP_SPEC.build()
    got = ecfp.transform(frames[:10]).to_numpy()
    np.testing.assert_array_equal(got, ecfp.transform(smiles[:10]).to_numpy())
    periodic = ecfp.transform([atoms[0]])
    assert "is periodic" in ecfp.errors_["error"].iloc[0] and np.isnan(periodic.to_numpy()).all()


def test_kind_mismatches_are_error_rows_with_reasons(molecules, crystal_files):
    path, _, _ = molecules
    as_structures = open_source(str(path), kind="structure")
    inputs = as_structures.read(as_structures.plan(3)[1][0])["input"].tolist()
    assert all(isinstance(x, RejectedInput) and "not periodic" in x.reason for x in inputs)
    as_molecules = open_source(str(crystal_files["db"]), kind="molecule")
    first = as_molecules.read(as_molecules.plan(2)[1][0])["input"][0]
    assert isinstance(first, RejectedInput) and "periodic (pbc=TTT)" in first.reason
    formulas = open_source(str(crystal_files["extxyz"]), kind="composition")
    assert formulas.read(formulas.plan(2)[1][0])["input"].tolist() == [
        a.get_chemical_formula(mode="hill") for a in crystal_files["frames"][:2]
    ]


def test_charge_on_the_comment_line_guides_bond_perception():
    """Acetate: with charge=-1 (info["charge"] in a frame) it is read; as neutral it is refused."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    from xenonscale.featurize.molecules.parse import parse_molecule, xyz_block

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)[O-]"))
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    symbols = [atom.GetSymbol() for atom in mol.GetAtoms()]
    positions = mol.GetConformer().GetPositions()
    charged, _ = parse_molecule(xyz_block(symbols, positions, charge=-1))
    assert Chem.MolToSmiles(charged) == Chem.MolToSmiles(Chem.MolFromSmiles("CC(=O)[O-]"))
    frame = Atoms(symbols, positions=positions)
    frame.info["charge"] = -1
    assert Chem.MolToSmiles(parse_molecule(frame)[0]) == Chem.MolToSmiles(charged)
    neutral, reason = parse_molecule(xyz_block(symbols, positions))
    assert neutral is None and reason.startswith("bond perception failed (total charge 0)")


# -- the source contract ------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract_records(phonons) -> list[SourceRecord]:
    """Phonon crystals with positions on the 1e-8 Å grid extxyz writes (read back exactly)."""
    from pymatgen.core import Structure

    from xenonscale.featurize.structures.parse import atoms_structure_dict

    records = []
    for k, (doc, peak) in enumerate(phonons["data"][100:109]):
        structure = Structure.from_dict(doc)
        atoms = Atoms(
            numbers=[site.specie.Z for site in structure],
            positions=np.round(structure.cart_coords, 8),
            cell=structure.lattice.matrix,
            pbc=True,
        )
        text = json.dumps(atoms_structure_dict(atoms))
        extras = {"peak": float(peak), "k": k, "energy": -1.25 * len(atoms) - k}
        records.append(SourceRecord(text, id=f"c{k}", extras=extras))
    return records


def _atoms_of(record: SourceRecord) -> Atoms:
    doc = json.loads(record.input)
    atoms = Atoms(
        [site["species"][0]["element"] for site in doc["sites"]],
        positions=[site["xyz"] for site in doc["sites"]],
        cell=doc["lattice"]["matrix"],
        pbc=True,
    )
    atoms.info.update(name=record.id, **record.extras)
    return atoms


class TestExtxyzSource(SourceTests):
    filename = "records.extxyz"
    kind = "structure"

    @pytest.fixture
    def records(self, contract_records):
        return contract_records

    def encode(self, records):
        import io

        text = io.StringIO()
        ase.io.write(text, [_atoms_of(r) for r in records], format="extxyz")
        return text.getvalue().encode()


class TestAseDbSource(SourceTests):
    filename = "records.db"
    kind = "structure"

    @pytest.fixture
    def records(self, contract_records):
        return contract_records

    def write(self, records, url, storage_options):
        from pathlib import Path

        from ase.calculators.singlepoint import SinglePointCalculator

        path = Path(url) / self.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        with ase.db.connect(path) as db:
            for record in records:
                atoms = _atoms_of(record)  # energy: a calculator result, not a key in a db
                energy = atoms.info.pop("energy")
                atoms.calc = SinglePointCalculator(atoms, energy=energy)
                db.write(atoms, **atoms.info)
        return str(path)
