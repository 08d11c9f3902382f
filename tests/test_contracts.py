"""The shipped contracts (``xenonscale.testing``) run over everything the package has.

* :func:`~xenonscale.testing.check_featurizer` on every registered featurizer
  of every kind (compositions, structures, molecules), a union per kind and
  the ``frozen:`` family (on a tiny zoo model built here: an untrained
  PropertyModel, a second);
* :class:`~xenonscale.testing.SourceTests` for every reader of
  :data:`xenonscale.sources.FORMATS` (CSV, gzip CSV, TSV, Parquet, JSON Lines,
  JSON documents, split JSON, a CIF folder, a POSCAR glob, SMILES, SDF), each on
  the local disk and on the moto S3 server;
* :class:`~xenonscale.testing.StoreTests` on a local folder and an S3 bucket.

Records are real, from the data mirror (``XENONSCALE_DATA_DIR``): Matbench
``expt_gap`` formulas, ``perov5`` CIFs (and POSCARs converted from them by
pymatgen), the Matbench phonons structures, the CGCNN/XenonPy CIF files, ESOL
SMILES (and SDF molblocks made from them by RDKit), NCI SMILES.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import json

import numpy as np
import pandas as pd
import pytest

from xenonscale.featurize import Compositions
from xenonscale.featurize.base import FeatureBatch
from xenonscale.featurize.registry import FeaturizerSpec, registered
from xenonscale.sources import FORMATS
from xenonscale.testing import SourceRecord, SourceTests, StoreTests, check_featurizer
from xenonscale.testing.sources import write_bytes

# -- real records (the data mirror; every test skips cleanly without it) ----------------------


@pytest.fixture(scope="module")
def gap(data_dir) -> pd.DataFrame:
    """Matbench expt_gap (formula, target)."""
    return pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")


@pytest.fixture(scope="module")
def perov(data_dir) -> pd.DataFrame:
    """perov5 validation structures: material_id, cif, formula, ... (first 9)."""
    return pd.read_csv(data_dir / "structures" / "perov5_val.csv.gz", nrows=9)


@pytest.fixture(scope="module")
def esol(data_dir) -> pd.DataFrame:
    """ESOL: Compound ID, smiles, measured log solubility (first 9)."""
    return pd.read_csv(data_dir / "molecules" / "esol.csv", nrows=9)


@pytest.fixture(scope="module")
def phonons(data_dir) -> pd.DataFrame:
    """Matbench phonons (pymatgen structure dicts, last phdos peak): the first 8 rows."""
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as handle:
        table = json.load(handle)
    frame = pd.DataFrame(table["data"], columns=table["columns"], index=table["index"])
    return frame.iloc[:8]


# -- 1. every registered featurizer ------------------------------------------------------------

UNIONS = [("composition", "classic,magpie"), ("structure", "rdf,ofm,structure"),
          ("molecule", "ecfp,maccs")]  # fmt: skip
SPECS = [(kind, name) for kind, names in registered().items() for name in names] + UNIONS


@pytest.fixture(scope="module")
def inputs(gap, perov, esol) -> dict[str, tuple[list, list]]:
    """``kind: (valid, invalid)``: real records; an unknown element, garbage text, None."""
    cif = perov["cif"].iloc[0]
    unknown_element = cif.replace("  Cu  Cu0", "  Xx  Xx0")
    assert unknown_element != cif
    return {
        "composition": (gap["formula"].iloc[:8].tolist(), ["Xx2O3", "garbage text !!", None]),
        "structure": (perov["cif"].iloc[1:5].tolist(), [unknown_element, "garbage text", None]),
        "molecule": (esol["smiles"].iloc[:6].tolist(), ["[Xx]CC", "garbage text !!", None]),
    }


@pytest.mark.parametrize(("kind", "names"), SPECS, ids=[f"{k}:{n}" for k, n in SPECS])
def test_every_registered_featurizer_keeps_the_contract(kind, names, inputs):
    if names == "mordred" and importlib.util.find_spec("mordred") is None:
        pytest.skip("Mordred is not installed (pip install mordredcommunity)")
    spec = FeaturizerSpec.parse(kind, names)
    featurizer = spec.build()
    assert spec.build().labels == featurizer.labels, "two builds of the spec differ in labels"
    valid, invalid = inputs[kind]
    if names == "mordred":  # tens of ms per molecule: the three smallest molecules
        valid = sorted(valid, key=len)[:3]
    # a neural network's float32 sums may differ in the last bits with the batch size
    tolerance = {"rtol": 1e-5, "atol": 1e-6} if names == "chgnet" else {}
    check_featurizer(featurizer, valid, invalid, name=f"{kind}:{names}", **tolerance)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory, gap) -> str:
    """A zoo holding ``tiny@1``: an untrained MLP on WeightedAverage features (a second)."""
    import torch

    from xenonscale.models import PropertyModel
    from xenonscale.zoo import Zoo, featurizer_fields

    spec = FeaturizerSpec.parse("composition", "WeightedAverage")
    batch = spec.build().featurize_batch(gap["formula"].iloc[:200].tolist())
    x = np.asarray(batch.values, np.float32)[batch.ok]
    torch.manual_seed(0)
    model = PropertyModel(
        {"in_features": x.shape[1], "out_features": 1, "hidden": [8, 4], "dropout": 0.0}
    )
    model.fit_scaling(np.nanmean(x, 0), np.nanstd(x, 0) + 1e-6, np.zeros(1), np.ones(1))
    folder = str(tmp_path_factory.mktemp("contracts-zoo") / "zoo")
    with Zoo(folder) as zoo:
        zoo.register("tiny", model.eval(), featurizer_fields(spec) | {"targets": ["target"]})
    return folder


def test_every_featurizer_family_has_a_contract_test():
    from xenonscale.featurize.registry import family_names

    # dscribe: test_dscribe.py, matminer: test_matminer_adapter.py
    untested = set(family_names()) - {"frozen", "graph", "dscribe", "matminer"}
    assert not untested, f"featurizer families {sorted(untested)}: add them to check_featurizer"


def test_the_frozen_family_keeps_the_contract(tiny_zoo, inputs, monkeypatch):
    monkeypatch.setenv("XENONSCALE_ZOO", tiny_zoo)
    featurizer = FeaturizerSpec.parse("composition", "frozen:tiny@1").build()
    valid, invalid = inputs["composition"]
    # torch's batched matmul may differ in the last bits with the batch size
    check_featurizer(featurizer, valid, invalid, name="frozen:tiny@1", rtol=1e-5, atol=1e-6)


def test_the_graph_family_keeps_the_contract(inputs):
    name = "graph:cutoff=6/neighbors=8/atoms=16"
    featurizer = FeaturizerSpec.parse("structure", name).build()
    valid, invalid = inputs["structure"]
    check_featurizer(featurizer, valid, invalid, name=name)


# Featurizers that each break one rule (module level: the pickle check pickles them).


class _Base(Compositions):  # sound: what every broken one below starts from
    def __init__(self, *, featurizers="WeightedAverage", on_error="record"):
        super().__init__(featurizers=featurizers, on_error=on_error)


class _CopiesArguments(_Base):  # params: __init__ changes what it is given
    def __init__(self, *, featurizers="WeightedAverage", on_error="record"):
        super().__init__(featurizers=list(np.atleast_1d(featurizers)), on_error=on_error)


class _DuplicateLabels(_Base):  # labels
    @property
    def labels(self):
        return [*super().labels[:-1], super().labels[0]]


class _WrongEmptyWidth(_Base):  # empty_batch
    def featurize_batch(self, items):
        if not len(items):
            return FeatureBatch(np.empty((0, 0)), np.zeros(0, bool), [])
        return super().featurize_batch(items)


class _UnsortedErrors(_Base):  # batch_contract
    def featurize_batch(self, items):
        batch = super().featurize_batch(items)
        return FeatureBatch(batch.values, batch.ok, batch.errors[::-1])


class _RaisesValueError(_Base):  # on_error_raise: not a XenonscaleError
    def featurize_batch(self, items):
        batch = super().featurize_batch(items)
        if self.on_error == "raise" and batch.errors:
            raise ValueError("bad row")
        return batch


class _AcceptsAnyMode(_Base):  # on_error_validated: never checks its mode (as FeatureUnion)
    def featurize_batch(self, items):
        mode, self.on_error = self.on_error, "record"
        try:
            return super().featurize_batch(items)
        finally:
            self.on_error = mode


class _KeepsALambda(_Base):  # pickle: a cache that cannot be pickled
    def featurize_batch(self, items):
        self._hook_ = lambda: None
        return super().featurize_batch(items)


class _Noisy(_Base):  # deterministic (and batch_invariance)
    def featurize_batch(self, items):
        batch = super().featurize_batch(items)
        noise = np.random.default_rng().normal(size=batch.values.shape)
        return FeatureBatch(batch.values + noise, batch.ok, batch.errors)


class _DependsOnTheBatch(_Base):  # batch_invariance
    def featurize_batch(self, items):
        batch = super().featurize_batch(items)
        return FeatureBatch(batch.values + len(items), batch.ok, batch.errors)


class _ReturnsAnArray(_Base):  # transform
    def transform(self, items):
        return super().transform(items).to_numpy()


BROKEN = {  # check → a featurizer breaking that check's rule
    "params": _CopiesArguments, "labels": _DuplicateLabels, "empty_batch": _WrongEmptyWidth,
    "batch_contract": _UnsortedErrors, "on_error_raise": _RaisesValueError,
    "on_error_validated": _AcceptsAnyMode, "pickle": _KeepsALambda, "deterministic": _Noisy,
    "batch_invariance": _DependsOnTheBatch, "transform": _ReturnsAnArray,
}  # fmt: skip


def test_check_featurizer_catches_each_broken_rule_and_names_it(inputs):
    from xenonscale.testing import FEATURIZER_CHECKS

    valid, invalid = inputs["composition"]
    broken = BROKEN
    assert set(broken) == set(FEATURIZER_CHECKS), "a check without a broken featurizer"
    check_featurizer(_Base(), valid, invalid, name="base")  # sound base
    for check, cls in broken.items():
        with pytest.raises(AssertionError) as caught:
            check_featurizer(cls(), valid, invalid, name=cls.__name__)
        message = str(caught.value)
        assert message.startswith(f"check_featurizer({cls.__name__}):"), message
        assert f"check {check!r}" in message, f"{cls.__name__} not caught by {check}: {message}"
    # a listed known violation that does not happen is reported (so the list only shrinks)
    with pytest.raises(AssertionError, match="passed but is listed"):
        check_featurizer(_Base(), valid, invalid,
                         expected_failed_checks={"pickle": "not really"})  # fmt: skip


# -- 2. every source format, on the local disk and on S3 ---------------------------------------


@pytest.fixture(scope="module")
def s3_base(s3_endpoint) -> tuple[str, dict]:
    """One bucket for the module's source and store tests (each test writes a fresh prefix)."""
    import uuid

    import boto3

    bucket = f"contracts-{uuid.uuid4().hex[:12]}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **credentials
                 ).create_bucket(Bucket=bucket)  # fmt: skip
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    return f"s3://{bucket}", options


class OnDiskAndS3:
    """Runs a contract class twice: in ``tmp_path`` and under an ``s3://`` bucket (moto)."""

    @pytest.fixture(params=["local", "s3"])
    def location(self, request, tmp_path) -> tuple[str, dict]:
        if request.param == "local":
            return str(tmp_path), {}
        return request.getfixturevalue("s3_base")


def _csv_bytes(header: list[str], rows: list[list], delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


class TestCsvSource(OnDiskAndS3, SourceTests):
    """CSV with multi-line quoted CIF text, an id column and extras (perov5)."""

    filename = "records.csv"
    open_options = {"column": "cif", "id_column": "material_id"}  # noqa: RUF012
    kind = "structure"

    @pytest.fixture
    def records(self, perov):
        return [
            SourceRecord(r.cif, id=str(r.material_id),
                         extras={"formula": r.formula, "dir_gap": r.dir_gap})
            for r in perov.itertuples()
        ]  # fmt: skip

    def encode(self, records):
        rows = [[r.id, r.input, r.extras["formula"], r.extras["dir_gap"]] for r in records]
        return _csv_bytes(["material_id", "cif", "formula", "dir_gap"], rows)


class TestGzipCsvSource(OnDiskAndS3, SourceTests):
    """Gzip-compressed CSV of formulas and targets; ids are the row numbers."""

    filename = "records.csv.gz"
    kind = "composition"

    @pytest.fixture
    def records(self, gap):
        rows = gap.iloc[:9]
        return [SourceRecord(f, extras={"target": t}) for f, t in zip(rows.formula, rows.target,
                                                                       strict=True)]  # fmt: skip

    def encode(self, records):
        rows = [[r.input, r.extras["target"]] for r in records]
        return gzip.compress(_csv_bytes(["formula", "target"], rows), mtime=0)


class TestTsvSource(OnDiskAndS3, SourceTests):
    """Tab-separated formulas (the last 9 of expt_gap) with an id column."""

    filename = "records.tsv"
    open_options = {"id_column": "id"}  # noqa: RUF012
    kind = "composition"

    @pytest.fixture
    def records(self, gap):
        rows = gap.iloc[-9:]
        return [SourceRecord(f, id=f"gap-{i}", extras={"target": t})
                for i, f, t in zip(rows.index, rows.formula, rows.target, strict=True)]  # fmt: skip

    def encode(self, records):
        rows = [[r.id, r.input, r.extras["target"]] for r in records]
        return _csv_bytes(["id", "formula", "target"], rows, delimiter="\t")


class TestParquetSource(OnDiskAndS3, SourceTests):
    """Parquet in row groups of 3 (ESOL SMILES, compound ids, solubility)."""

    filename = "records.parquet"
    open_options = {"column": "smiles", "id_column": "compound"}  # noqa: RUF012
    kind = "molecule"

    @pytest.fixture
    def records(self, esol):
        solubility = "measured log solubility in mols per litre"
        return [SourceRecord(s, id=c, extras={"solubility": v})
                for c, s, v in zip(esol["Compound ID"], esol.smiles, esol[solubility],
                                   strict=True)]  # fmt: skip

    def encode(self, records):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({
            "compound": pa.array([r.id for r in records], pa.string()),
            "smiles": pa.array([r.input for r in records], pa.string()),
            "solubility": pa.array([r.extras["solubility"] for r in records], pa.float64()),
        })  # fmt: skip
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=3)
        return buffer.getvalue()


def _phonon_docs(phonons: pd.DataFrame) -> list[SourceRecord]:
    return [
        SourceRecord(structure, id=f"phonons-{index}", extras={"last phdos peak": peak})
        for index, (structure, peak) in zip(phonons.index, phonons.to_numpy(), strict=True)
    ]


def _doc(record: SourceRecord) -> dict:
    return {"material_id": record.id, "structure": record.input, **record.extras}


class TestJsonLinesSource(OnDiskAndS3, SourceTests):
    """JSON Lines documents with pymatgen structure dicts (Matbench phonons)."""

    filename = "records.jsonl"
    kind = "structure"

    @pytest.fixture
    def records(self, phonons):
        return _phonon_docs(phonons)

    def encode(self, records):
        return "".join(json.dumps(_doc(r)) + "\n" for r in records).encode()


class TestJsonDocumentsSource(OnDiskAndS3, SourceTests):
    """A JSON list of documents (Materials Project style)."""

    filename = "records.json"
    kind = "structure"

    @pytest.fixture
    def records(self, phonons):
        return _phonon_docs(phonons)

    def encode(self, records):
        return json.dumps([_doc(r) for r in records], indent=1).encode()


class TestSplitJsonSource(OnDiskAndS3, SourceTests):
    """A pandas ``orient="split"`` table (Matbench's own format); ids from its index."""

    filename = "records.json"
    kind = "structure"

    @pytest.fixture
    def records(self, phonons):
        return [SourceRecord(s, id=str(i), extras={"last phdos peak": p})
                for i, (s, p) in zip(phonons.index, phonons.to_numpy(), strict=True)]  # fmt: skip

    def encode(self, records):
        table = {
            "columns": ["structure", "last phdos peak"],
            "index": [int(r.id) for r in records],
            "data": [[r.input, r.extras["last phdos peak"]] for r in records],
        }
        return json.dumps(table).encode()


class _FileSet(OnDiskAndS3, SourceTests):
    """One file per record in a folder; ``suffix`` names them, ``pattern`` is what is opened."""

    suffix = ".cif"
    pattern = ""

    def write(self, records, url, storage_options):
        from fsspec.core import url_to_fs

        folder = f"{url}/{self.filename}"
        fs, path = url_to_fs(folder, **storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)  # a rewrite holds exactly the new records
        for record in records:
            write_bytes(f"{folder}/{record.id}{self.suffix}", record.input.encode(),
                        storage_options)  # fmt: skip
        return folder + self.pattern

    def write_raw(self, data, url, storage_options):
        folder = f"{url}/{self.filename}"
        write_bytes(f"{folder}/record{self.suffix}", data, storage_options)
        return folder + self.pattern

    def missing_url(self, url):
        return f"{url}/missing-{self.filename}{self.pattern}"


class TestCifFolderSource(_FileSet):
    """A folder of CIF files (CGCNN's sample set and XenonPy's test CIFs)."""

    filename = "cifs"
    kind = "structure"

    @pytest.fixture
    def records(self, data_dir):
        paths = sorted((data_dir / "structures" / "cifs").glob("*.cif"))  # path order
        return [SourceRecord(p.read_text(), id=p.stem) for p in paths]


class TestPoscarGlobSource(_FileSet):
    """A glob of POSCAR files (perov5 structures written by pymatgen)."""

    filename = "poscars"
    suffix = ".vasp"
    pattern = "/*.vasp"
    kind = "structure"

    @pytest.fixture
    def records(self, perov):
        from pymatgen.core import Structure

        records = [SourceRecord(Structure.from_str(c, fmt="cif").to(fmt="poscar"), id=f"perov-{i}")
                   for i, c in zip(perov.material_id, perov.cif, strict=True)]  # fmt: skip
        return sorted(records, key=lambda r: r.id + self.suffix)  # a file set reads in path order


class TestSmilesSource(OnDiskAndS3, SourceTests):
    """``.smi``: SMILES and a name per line (RDKit's NCI sample)."""

    filename = "records.smi"
    kind = "molecule"

    @pytest.fixture
    def records(self, data_dir):
        lines = (data_dir / "molecules" / "nci_first_5k.smi").read_text().splitlines()[:9]
        return [SourceRecord(s, id=n) for s, n in (line.split("\t") for line in lines)]

    def encode(self, records):
        return "".join(f"{r.input}\t{r.id}\n" for r in records).encode()


class TestSdfSource(OnDiskAndS3, SourceTests):
    """SDF: ESOL molecules as RDKit molblocks, titled by compound, with a data item."""

    filename = "records.sdf"
    kind = "molecule"

    @pytest.fixture
    def records(self, esol):
        from rdkit import Chem

        solubility = "measured log solubility in mols per litre"
        out = []
        for name, smiles, value in zip(esol["Compound ID"], esol.smiles, esol[solubility],
                                       strict=True):  # fmt: skip
            molecule = Chem.MolFromSmiles(smiles)
            molecule.SetProp("_Name", name)
            out.append(SourceRecord(Chem.MolToMolBlock(molecule), id=name,
                                    extras={"solubility": value}))  # fmt: skip
        return out

    def encode(self, records):
        return "".join(
            f"{r.input}> <solubility>\n{r.extras['solubility']!r}\n\n$$$$\n" for r in records
        ).encode()


SOURCE_CLASSES = {
    "csv": TestCsvSource, "tsv": TestTsvSource, "parquet": TestParquetSource,
    "jsonl": TestJsonLinesSource, "json": TestJsonDocumentsSource,
    "json-split": TestSplitJsonSource, "smi": TestSmilesSource, "sdf": TestSdfSource,
    "cif": TestCifFolderSource, "poscar": TestPoscarGlobSource,
    # ASE inputs: their SourceTests classes live in tests/test_ase_sources.py (they need ASE)
    "extxyz": "test_ase_sources.TestExtxyzSource", "ase-db": "test_ase_sources.TestAseDbSource",
}  # fmt: skip


def test_every_source_format_has_a_contract_class():
    assert set(SOURCE_CLASSES) == set(FORMATS), "a format without SourceTests (or a stale one)"


# -- 3. the store, in a local folder and in an S3 bucket ---------------------------------------


class TestLocalStore(StoreTests):
    """Stores of Matbench expt_gap formulas (40 + 2 invalid rows) in a temporary folder."""

    @pytest.fixture(scope="class")
    @classmethod
    def source_frame(cls, gap):
        return gap.iloc[:40]

    @pytest.fixture(scope="class")
    @classmethod
    def client(cls, dask_client):
        return dask_client


class TestS3Store(TestLocalStore):
    """The same tests with every store under an ``s3://`` bucket (moto)."""

    @pytest.fixture(scope="class")
    @classmethod
    def location(cls, s3_base):
        return s3_base
