"""Sources: every format planned and read in small partitions equals the whole file.

Real data from the mirror (``XENONSCALE_DATA_DIR``); derived files (compressed
copies, injected bad lines, JSON Lines/JSON list/Parquet/TSV/SDF conversions)
are written into ``tmp_path`` from those files.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from xenonscale.errors import ConfigError, SourceError
from xenonscale.sources import (
    DelimitedSource,
    FileSetSource,
    JsonLinesSource,
    JsonListSource,
    ParquetSource,
    SdfSource,
    SmilesSource,
    SplitJsonSource,
    infer_format,
    open_source,
)
from xenonscale.sources.jsonscan import JsonScanner

CODECS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


def read_all(source, rows_per_partition: int) -> pd.DataFrame:
    """Plan + read every partition, checking the contract on the way."""
    total, partitions = source.plan(rows_per_partition)
    assert source.plan(rows_per_partition) == (total, partitions)  # deterministic
    assert pickle.loads(pickle.dumps(partitions)) == partitions
    json.dumps([p.locator for p in partitions])
    clone = pickle.loads(pickle.dumps(source))
    frames = []
    for k, part in enumerate(partitions):
        assert part.index == k and part.start == k * rows_per_partition
        assert part.rows == (rows_per_partition if k < len(partitions) - 1 else part.rows)
        frame = clone.read(part)
        assert len(frame) == part.rows
        assert list(frame.columns[:3]) == ["row", "id", "input"]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    assert len(frame) == total
    if total:
        assert frame["row"].dtype == np.int64
        np.testing.assert_array_equal(frame["row"], np.arange(total))
        assert all(isinstance(i, str) for i in frame["id"])
    json.dumps(source.describe())
    return frame


def inputs(frame: pd.DataFrame) -> list:
    return frame["input"].tolist()


def nan_to_none(values) -> list:
    return [None if isinstance(v, float) and np.isnan(v) else v for v in values]


def compressed_copy(path, tmp_path, codec: str):
    out = tmp_path / f"{path.name.removesuffix('.gz')}.{codec}"
    raw = path.read_bytes()
    raw = gzip.decompress(raw) if path.suffix == ".gz" else raw
    out.write_bytes(CODECS[codec](raw))
    return out


# --------------------------------------------------------------------------- CSV / TSV


@pytest.mark.parametrize("rows_per_partition", [7, 1000])
def test_csv_matches_pandas(data_dir, rows_per_partition):
    path = data_dir / "compositions" / "matbench_expt_gap.csv"
    source = open_source(str(path))
    assert isinstance(source, DelimitedSource)
    assert (source.column, source.id_column, source.kind) == ("formula", None, "composition")
    frame = read_all(source, rows_per_partition)
    expected = pd.read_csv(path)
    assert inputs(frame) == expected["formula"].tolist()
    assert frame["id"].tolist() == [str(i) for i in range(len(expected))]
    np.testing.assert_array_equal(frame["target"].to_numpy(float), expected["target"])


def test_csv_oqmd_whole_file(data_dir):
    path = data_dir / "compositions" / "oqmd_formation_enthalpy_train.csv"
    frame = read_all(open_source(f"file://{path}"), 50_000)
    expected = pd.read_csv(path)
    assert len(frame) == 239_190
    assert inputs(frame) == expected["formula"].tolist()
    np.testing.assert_array_equal(frame["target"].to_numpy(), expected["target"].to_numpy())


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_compressed_csv_is_identical(data_dir, tmp_path, codec):
    path = data_dir / "compositions" / "matbench_expt_gap.csv"
    plain = read_all(open_source(str(path)), 500)
    copy = open_source(str(compressed_copy(path, tmp_path, codec)))
    assert copy.compression == {"gz": "gzip"}.get(codec, codec)
    pd.testing.assert_frame_equal(read_all(copy, 500), plain)


def test_unnamed_index_column_is_the_id(data_dir):
    path = data_dir / "compositions" / "xenonpy_quasicrystal.csv"
    source = open_source(str(path))
    assert (source.column, source.id_column) == ("composition", "Unnamed: 0")
    frame = read_all(source, 999)
    expected = pd.read_csv(path, index_col=0)
    assert frame["id"].tolist() == expected.index.tolist()
    assert inputs(frame) == expected["composition"].tolist()
    for name in ("elements", "label", "for_test"):
        assert frame[name].tolist() == expected[name].tolist()
    assert frame["for_test"].dtype == bool


@pytest.mark.parametrize("codec", [None, "xz"])
def test_cif_text_in_csv_spans_lines(data_dir, tmp_path, codec):
    path = data_dir / "structures" / "perov5_val.csv.gz"
    url = str(path if codec is None else compressed_copy(path, tmp_path, codec))
    source = open_source(url, column="cif", block_size=4096)  # records cross blocks
    assert (source.kind, source.id_column) == ("structure", "Unnamed: 0")
    frame = read_all(source, 500)
    expected = pd.read_csv(path, index_col=0)
    assert len(frame) == 3787 and all("\n" in text for text in inputs(frame))
    assert inputs(frame) == expected["cif"].tolist()
    assert frame["id"].tolist() == [str(i) for i in expected.index]
    for name in ("material_id", "formula", "heat_all", "dir_gap", "ind_gap"):
        assert frame[name].tolist() == expected[name].tolist(), name


def test_quotes_after_the_first_block(data_dir, tmp_path):
    lines = (data_dir / "compositions" / "matbench_glass.csv").read_text().splitlines()
    lines[-20] = '"Fe80B20",1.0'
    lines[-10] = '"Cu50\nZr50",0.0'  # a quoted newline near the end
    path = tmp_path / "late_quotes.csv"
    path.write_text("\n".join(lines) + "\n")
    frame = read_all(open_source(str(path), block_size=256), 64)
    expected = pd.read_csv(path)
    assert inputs(frame) == expected["formula"].tolist()
    assert frame["target"].tolist() == expected["target"].tolist()


def test_malformed_lines_keep_one_record_each(data_dir, tmp_path):
    raw = (data_dir / "compositions" / "matbench_expt_gap.csv").read_bytes().splitlines()
    header, rows = raw[0], raw[1:]
    bad = {
        5: b"Fe2O3",  # truncated: no target
        50: b"NaCl,1.5,extra,more",  # too many fields
        500: b"\xff\xfeFeO,2.0",  # undecodable bytes
        1000: b",3.25",  # empty input cell
        1500: b'Fe"O,4.5',  # a stray quote inside a field
        2000: b"   ",  # whitespace only
        2500: b"MgO,1.25\r",  # a CRLF line among LF lines
        3000: b"Al2O3,not-a-number",
    }
    data = [bad.get(i, row) for i, row in enumerate(rows)]
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\n".join([header, *data[:10], b"", *data[10:]]) + b"\n\n")
    expected = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    for rows_per_partition in (7, 1000):
        source = open_source(str(path), block_size=1024)
        frame = read_all(source, rows_per_partition)
        assert len(frame) == len(rows)  # one record per data line, blank lines skipped
        got = frame.set_index("row")
        assert got.loc[5, "input"] == "Fe2O3" and np.isnan(got.loc[5, "target"])
        assert (got.loc[50, "input"], float(got.loc[50, "target"])) == ("NaCl", 1.5)
        assert got.loc[500, "input"] == "\ufffd\ufffdFeO"
        assert got.loc[1000, "input"] is None and float(got.loc[1000, "target"]) == 3.25
        assert got.loc[1500, "input"] == 'Fe"O'
        assert got.loc[2000, "input"] == "   "
        assert (got.loc[2500, "input"], float(got.loc[2500, "target"])) == ("MgO", 1.25)
        assert got.loc[3000, "input"] == "Al2O3"
        clean = [i for i in range(len(rows)) if i not in bad]
        assert got.loc[clean, "input"].tolist() == expected.loc[clean, "formula"].tolist()
        targets = pd.to_numeric(got.loc[clean, "target"]).to_numpy(float)
        np.testing.assert_array_equal(targets, expected.loc[clean, "target"].to_numpy(float))


def test_fast_and_slow_parsers_agree(tmp_path):
    """pandas' C parser (quote-free bytes) and the csv-module path give the same frame."""
    text = b"formula,target,note\nFe2O3,1.5,a\n\xff\xfeNaCl,2,b\n,3,\nMgO\nSiO2,4,c,d\n"
    path = tmp_path / "both.csv"
    path.write_bytes(text)
    source = open_source(str(path))
    data = text[len(b"formula,target,note\n") :]
    fast, slow = source._fast_frame(data), source._slow_frame(data)
    assert fast is None  # the long record makes pandas refuse: the slow path decides
    ok = data.replace(b",c,d", b",c")
    fast, slow = source._fast_frame(ok), source._slow_frame(ok)
    pd.testing.assert_frame_equal(
        fast.astype(object).where(fast.notna(), None),
        slow.astype(object).where(slow.notna(), None),
    )


def test_tsv(data_dir, tmp_path):
    expected = pd.read_csv(data_dir / "compositions" / "matbench_glass.csv")
    path = tmp_path / "glass.tsv"
    expected.to_csv(path, sep="\t", index=False)
    source = open_source(str(path))
    assert source.format == "tsv" and source.delimiter == "\t"
    frame = read_all(source, 1000)
    assert inputs(frame) == expected["formula"].tolist()
    assert frame["target"].tolist() == expected["target"].tolist()


def test_bom_and_crlf(data_dir, tmp_path):
    raw = (data_dir / "compositions" / "matbench_steels_yield.csv").read_bytes()
    path = tmp_path / "steels_windows.csv"
    path.write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    expected = pd.read_csv(data_dir / "compositions" / "matbench_steels_yield.csv")
    source = open_source(str(path))
    assert source.columns == ["formula", "target"]
    frame = read_all(source, 100)
    assert inputs(frame) == expected["formula"].tolist()
    assert frame["target"].tolist() == expected["target"].tolist()


@pytest.mark.parametrize("content", [b"", b"formula,target\n", b"\n\nformula,target\n\n"])
def test_empty_csv(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert open_source(str(path)).plan(10) == (0, [])


# --------------------------------------------------------------------------- JSON


def test_jsonl_broken_lines_give_none(data_dir, tmp_path):
    expected = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    lines = [json.dumps(r) for r in expected.to_dict("records")]
    lines[3] = '{"formula": "Fe2O3", "target":'  # cut short
    lines[7] = '["not", "an", "object"]'
    path = tmp_path / "gap.jsonl"
    path.write_text("\n".join(lines[:100]) + "\n\n" + "\n".join(lines[100:]) + "\n")
    frames = []
    for url in (path, compressed_copy(path, tmp_path, "gz")):
        source = open_source(str(url), block_size=4096)
        assert isinstance(source, JsonLinesSource)
        assert (source.column, source.id_column, source.extras) == ("formula", None, ["target"])
        frames.append(read_all(source, 33))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    frame = frames[0]
    want = expected["formula"].tolist()
    want[3] = want[7] = None
    assert inputs(frame) == want
    assert np.isnan(frame["target"][3]) and frame["target"][8] == expected["target"][8]


@pytest.fixture(scope="module")
def phonons(data_dir):
    with gzip.open(data_dir / "structures" / "matbench_phonons.json.gz", "rt") as f:
        return json.load(f)


def _mp_docs(phonons, n=60):
    return [
        {
            "material_id": f"mp-{1000 + i}",
            "structure": row[0],
            "last phdos peak": row[1],
            "nsites": len(row[0]["sites"]),
            "symmetry": {"number": 1},  # nested: not an extra
        }
        for i, row in enumerate(phonons["data"][:n])
    ]


@pytest.mark.parametrize("layout", ["jsonl", "json", "json.gz"])
def test_mp_style_documents(phonons, tmp_path, layout):
    docs = _mp_docs(phonons)
    path = tmp_path / f"docs.{layout}"
    if layout == "jsonl":
        path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    else:
        text = json.dumps(docs, indent=1).encode()
        path.write_bytes(gzip.compress(text) if layout.endswith("gz") else text)
    source = open_source(str(path), block_size=2048)  # structures cross blocks
    assert isinstance(source, JsonLinesSource if layout == "jsonl" else JsonListSource)
    assert (source.column, source.id_column, source.kind) == (
        "structure",
        "material_id",
        "structure",
    )
    assert source.extras == ["last phdos peak", "nsites"]
    frame = read_all(source, 7)
    assert frame["id"].tolist() == [d["material_id"] for d in docs]
    assert inputs(frame) == [d["structure"] for d in docs]
    assert frame["last phdos peak"].tolist() == [d["last phdos peak"] for d in docs]
    assert frame["nsites"].tolist() == [d["nsites"] for d in docs]
    assert "symmetry" not in frame.columns


def test_split_json_matbench(data_dir, phonons):
    url = str(data_dir / "structures" / "matbench_phonons.json.gz")
    source = open_source(url, block_size=1 << 16)
    assert isinstance(source, SplitJsonSource)
    assert (source.column, source.kind) == ("structure", "structure")
    frame = read_all(source, 100)
    assert len(frame) == 1265
    assert inputs(frame) == [row[0] for row in phonons["data"]]
    assert frame["id"].tolist() == [str(i) for i in phonons["index"]]
    assert frame["last phdos peak"].tolist() == [row[1] for row in phonons["data"]]


@pytest.mark.parametrize("block_size", [1, 3, 64])
def test_json_scanner_offsets_survive_any_block_size(block_size):
    values = [1.5, 22, -3e5, 'a"b\u00e9', {"k": [1, 2]}, None, True, [], "\u65e5\u672c"]
    data = json.dumps(values, ensure_ascii=False).encode()
    scan = JsonScanner(io.BytesIO(data), block_size=block_size)
    scan.expect("[")
    seen = []
    while not scan.at("]"):
        offset = scan.offset()
        seen.append(scan.item())
        assert json.JSONDecoder().raw_decode(data[offset:].decode())[0] == seen[-1]
    assert seen == values


def test_invalid_json_document_raises(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"formula": "Fe2O3"}, {"formula": ')
    source = open_source(str(path))
    with pytest.raises(SourceError, match=r"broken\.json"):
        source.plan(10)


# --------------------------------------------------------------------------- files


def test_cif_directory_and_glob(data_dir):
    folder = data_dir / "structures" / "cifs"
    files = sorted(folder.glob("*.cif"))
    frames = []
    for url in (str(folder), f"{folder}/*.cif", f"file://{folder}/"):
        source = open_source(url)
        assert isinstance(source, FileSetSource)
        assert (source.format, source.kind) == ("cif", "structure")
        frames.append(read_all(source, 5))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])
    assert frames[0]["id"].tolist() == [f.stem for f in files]
    assert inputs(frames[0]) == [f.read_text() for f in files]
    one = read_all(open_source(str(files[0])), 5)
    assert (one["id"].tolist(), inputs(one)) == ([files[0].stem], [files[0].read_text()])
    with pytest.raises(SourceError, match="no files match"):
        open_source(f"{folder}/*.nothing.cif")


def test_poscar_files(data_dir, tmp_path):
    from pymatgen.core import Structure

    cifs = sorted((data_dir / "structures" / "cifs").glob("*.cif"))[:3]
    texts = []
    for k, cif in enumerate(cifs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen notes rounded coordinates
            text = Structure.from_file(str(cif)).to(fmt="poscar")
        (tmp_path / f"run{k}").mkdir()
        (tmp_path / f"run{k}" / "POSCAR").write_text(text)
        (tmp_path / f"s{k}.vasp").write_text(text)
        texts.append(text)
    deep = open_source(f"{tmp_path}/**/POSCAR*")
    frame = read_all(deep, 2)
    assert deep.format == "poscar" and deep.kind == "structure"
    assert frame["id"].tolist() == [f"run{k}/POSCAR" for k in range(3)]
    assert inputs(frame) == texts
    flat = read_all(open_source(f"{tmp_path}/*.vasp"), 2)
    assert flat["id"].tolist() == ["s0", "s1", "s2"] and inputs(flat) == texts


# --------------------------------------------------------------------------- molecules


def test_smiles_file(data_dir):
    path = data_dir / "molecules" / "nci_first_5k.smi"
    source = open_source(str(path))
    assert isinstance(source, SmilesSource) and source.kind == "molecule"
    frame = read_all(source, 1000)
    pairs = [line.split("\t") for line in path.read_text().splitlines()]
    assert len(frame) == 4999
    assert inputs(frame) == [p[0] for p in pairs]
    assert frame["id"].tolist() == [p[1] for p in pairs]


def test_smiles_header_and_missing_names(data_dir, tmp_path):
    lines = (data_dir / "molecules" / "nci_first_5k.smi").read_text().splitlines()[:20]
    path = tmp_path / "named.smi"
    body = [line.split("\t")[0] if k % 2 else line for k, line in enumerate(lines)]
    path.write_text("SMILES Name\n" + "\n".join(body) + "\n")
    source = open_source(str(path))
    assert source.header
    frame = read_all(source, 6)
    assert inputs(frame) == [line.split("\t")[0] for line in lines]
    assert frame["id"].tolist() == [
        str(k) if k % 2 else line.split("\t")[1] for k, line in enumerate(lines)
    ]


def test_sdf_written_by_rdkit(data_dir, tmp_path):
    from rdkit import Chem

    path = data_dir / "molecules" / "nci_first_5k.smi"
    pairs = [line.split("\t") for line in path.read_text().splitlines()[:25]]
    out = tmp_path / "nci.sdf"
    writer = Chem.SDWriter(str(out))
    expected = []
    for k, (smiles, name) in enumerate(pairs):
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("_Name", f"nci-{name}")
        mol.SetProp("score", str(k * 0.5))
        writer.write(mol)
        expected.append(Chem.MolToSmiles(mol))
    writer.close()
    for url in (out, compressed_copy(out, tmp_path, "bz2")):
        source = open_source(str(url), block_size=512)
        assert isinstance(source, SdfSource) and source.extras == ["score"]
        frame = read_all(source, 7)
        assert frame["id"].tolist() == [f"nci-{name}" for _, name in pairs]
        assert [Chem.MolToSmiles(Chem.MolFromMolBlock(b)) for b in inputs(frame)] == expected
        assert frame["score"].tolist() == [k * 0.5 for k in range(len(pairs))]


# --------------------------------------------------------------------------- Parquet


def test_parquet_row_groups(data_dir, tmp_path):
    expected = pd.read_csv(data_dir / "compositions" / "matbench_expt_gap.csv")
    path = tmp_path / "gap.parquet"
    expected.assign(name=[f"g{i}" for i in range(len(expected))]).to_parquet(
        path, row_group_size=500, index=False
    )
    source = open_source(str(path), id_column="name")
    assert isinstance(source, ParquetSource) and source.column == "formula"
    _, partitions = source.plan(700)
    assert partitions[1].locator == {"row_groups": [1, 2], "skip": 200}
    frame = read_all(source, 700)
    assert inputs(frame) == expected["formula"].tolist()
    assert frame["id"].tolist() == [f"g{i}" for i in range(len(expected))]
    assert frame["target"].tolist() == expected["target"].tolist()


# --------------------------------------------------------------------------- API


def test_format_inference_and_argument_errors(data_dir, tmp_path):
    csv_path = str(data_dir / "compositions" / "matbench_glass.csv")
    assert infer_format("a/b.CSV.gz") == "csv"
    assert infer_format("x/*.cif") == "cif" and infer_format("run/POSCAR") == "poscar"
    assert open_source(csv_path, kind="structure").kind == "structure"
    with pytest.raises(ConfigError, match="'nope'"):
        open_source(csv_path, column="nope")
    with pytest.raises(ConfigError, match="'xlsx'"):
        open_source(csv_path, format="xlsx")
    with pytest.raises(ConfigError, match="kind="):
        open_source(csv_path, kind="alloy")
    with pytest.raises(ConfigError, match="rows_per_partition"):
        open_source(csv_path).plan(0)
    with pytest.raises(ConfigError, match="option"):
        open_source(csv_path, colour="red")
    with pytest.raises(ConfigError, match="column="):
        open_source(str(data_dir / "structures" / "cifs"), column="formula")
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing.csv"))
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(SourceError, match="format="):
        open_source(str(tmp_path / "notes.txt"))


def test_fingerprint_tracks_content(data_dir, tmp_path):
    path = tmp_path / "steels.csv"
    path.write_bytes((data_dir / "compositions" / "matbench_steels_yield.csv").read_bytes())
    source = open_source(str(path))
    before = source.fingerprint()
    assert before == pickle.loads(pickle.dumps(source)).fingerprint()
    with path.open("ab") as f:
        f.write(b"Fe,1.0\n")
    assert source.fingerprint() != before


def test_plan_memory_stays_flat(data_dir, tmp_path):
    """A ~40 MB CSV is planned with a few MB of Python memory (streaming, not loading)."""
    data = (data_dir / "compositions" / "oqmd_formation_enthalpy_train.csv").read_bytes()
    header, body = data.split(b"\n", 1)
    path = tmp_path / "big.csv"
    path.write_bytes(header + b"\n" + body * 7)
    source = open_source(str(path), block_size=1 << 20)
    tracemalloc.start()
    total, partitions = source.plan(100_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 239_190 * 7 and len(partitions) == 17
    assert peak < 12 << 20, f"plan peaked at {peak / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- S3


def test_s3_csv_gz_matches_local(data_dir, tmp_path, s3_bucket):
    import s3fs

    bucket, options = s3_bucket
    fs = s3fs.S3FileSystem(**options)
    local = data_dir / "compositions" / "matbench_glass.csv"
    gz = compressed_copy(local, tmp_path, "gz")
    fs.put(str(gz), f"{bucket}/glass.csv.gz")
    fs.put(str(local), f"{bucket}/glass.csv")
    expected = read_all(open_source(str(local)), 1000)
    for name in ("glass.csv.gz", "glass.csv"):
        source = open_source(f"{bucket}/{name}", storage_options=options)
        pd.testing.assert_frame_equal(read_all(source, 1000), expected)
        stamp = json.loads(source.fingerprint())["stamp"]
        assert stamp == fs.info(f"{bucket}/{name}")["ETag"]
    s3fs.S3FileSystem.clear_instance_cache()
