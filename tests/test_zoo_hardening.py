"""Zoo imports and cards against hostile input (issue 12, "Hardening").

Every archive here is built the way an attacker would: ``zipfile`` /
``tarfile`` writing deflated zeros (they compress ~1000:1), members the card
does not list, a card listing a huge member with its true sha256, a central
directory patched to declare less than the real stream, a tar pax record of
50 MiB, links and traversal names. Each must be refused in one
:class:`ZooError` line, and the tests measure what the refusal cost:
the bytes written to the extraction folder and the peak Python memory
(tracemalloc) stay within the cap — the old reader inflated everything first.
Caps are small (``ZooLimits(max_bytes=10 MiB)``) so members of 50 MiB matter
and the file runs in seconds. A card asking for a 10-million-wide network is
refused before torch allocates anything, on import and on load.

The model is a tiny synthetic :class:`PropertyModel` (no data mirror needed);
``tests/test_zoo.py`` covers the round trip of a real trained one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sqlite3
import stat
import struct
import tarfile
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from xenonscale.errors import ConfigError, ZooError, ZooIntegrityError
from xenonscale.models.backbones import PropertyModel, model_size
from xenonscale.zoo import ModelRef, Zoo, ZooLimits
from xenonscale.zoo.archive import extract_archive, read_archive
from xenonscale.zoo.limits import check_model_config

MiB = 1 << 20
BIG = 50 * MiB  # a member that matters: 5× the test cap
CAP = ZooLimits(max_bytes=10 * MiB, max_ratio=math.inf)  # only the size caps bite
NAME = "tiny"
NOTES = b"# notes\nfitted on nothing in particular\n"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model() -> PropertyModel:
    torch.manual_seed(0)
    model = PropertyModel.from_config({"in_features": 4, "hidden": [8, 4], "dropout": 0.0})
    model.fit_scaling(np.zeros(4), np.ones(4), np.array([2.0]), np.array([3.0]))
    return model.eval()


@pytest.fixture
def zoo(tmp_path):
    with Zoo(tmp_path / "zoo") as zoo:
        yield zoo


@pytest.fixture
def exported(zoo, model, tmp_path) -> dict[str, bytes]:
    """The members of a genuine export (card, weights, notes.md)."""
    ref = zoo.register(
        NAME, model, {"featurizer": None, "targets": ["y"]}, files={"notes.md": NOTES}
    )
    zoo.export(ref, tmp_path / "genuine.zip")
    with zipfile.ZipFile(tmp_path / "genuine.zip") as archive:
        return {name: archive.read(name) for name in archive.namelist()}


# -- building hostile archives -------------------------------------------------------------


def zeros_sha256(size: int) -> str:
    digest = hashlib.sha256()
    block = bytes(MiB)
    for start in range(0, size, MiB):
        digest.update(block[: min(MiB, size - start)])
    return digest.hexdigest()


def with_card(members: dict[str, bytes], **changes) -> dict[str, bytes]:
    """``members`` with card.json changed (``None`` values delete keys)."""
    card = json.loads(members["card.json"])
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    return {**members, "card.json": json.dumps(card).encode()}


def listing(members: dict[str, bytes], extra: dict[str, int], sizes: bool = True) -> dict:
    """Card changes that list ``extra`` ({name: zero bytes}) with their true sha256 (and sizes)."""
    card = json.loads(members["card.json"])
    files = {**card["files"], **{name: zeros_sha256(size) for name, size in extra.items()}}
    changes: dict = {"files": files}
    changes["sizes"] = {**card["sizes"], **extra} if sizes else None
    return changes


def write_zip(path: Path, members: dict[str, bytes | int], *, mode: int | None = None) -> Path:
    """A deflated zip; an int member is that many zeros, streamed in 1 MiB chunks."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None and name not in ("card.json", "weights.safetensors"):
                info.external_attr = mode << 16
            with archive.open(info, "w") as handle:
                if isinstance(data, int):
                    block = bytes(MiB)
                    for start in range(0, data, MiB):
                        handle.write(block[: min(MiB, data - start)])
                else:
                    handle.write(data)
    return path


class Zeros(io.RawIOBase):
    """``size`` zero bytes as a file (tarfile copies it in blocks)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def write_tar(path: Path, members: dict[str, bytes | int], pax: dict | None = None) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = data if isinstance(data, int) else len(data)
            if pax and name in pax:
                info.pax_headers = pax[name]
            source = Zeros(data) if isinstance(data, int) else io.BytesIO(data)
            archive.addfile(info, io.BufferedReader(source) if isinstance(data, int) else source)
    return path


def forge_sizes(path: Path, name: str, size: int, crc: int) -> None:
    """Patch ``name``'s uncompressed size and CRC in the central directory and local header."""
    data = bytearray(path.read_bytes())
    start = 0
    while (start := data.find(b"PK\x01\x02", start)) >= 0:
        (length,) = struct.unpack_from("<H", data, start + 28)
        if data[start + 46 : start + 46 + length] == name.encode():
            (local,) = struct.unpack_from("<I", data, start + 42)
            struct.pack_into("<I", data, start + 16, crc)
            struct.pack_into("<I", data, start + 24, size)
            assert data[local : local + 4] == b"PK\x03\x04"
            struct.pack_into("<I", data, local + 14, crc)
            struct.pack_into("<I", data, local + 22, size)
            path.write_bytes(bytes(data))
            return
        start += 4
    raise AssertionError(f"{name} not in {path}")


def refused(path: Path, folder: Path, limits: ZooLimits, error=ZooError, match: str = "") -> dict:
    """Extract ``path`` expecting one-line ``error``; what it cost: bytes written, peak memory."""
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match) as caught:
            extract_archive(path, folder, limits=limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    written = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {"written": written, "peak": peak, "message": message}


# -- archives --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_round_trip_records_sizes(zoo, model, exported, tmp_path, suffix):
    card = json.loads(exported["card.json"])
    assert card["sizes"] == {
        "weights.safetensors": len(exported["weights.safetensors"]),
        "notes.md": len(NOTES),
    }
    archive = tmp_path / f"again{suffix}"
    zoo.export(f"{NAME}@1", archive)
    tracemalloc.start()
    ref = zoo.import_(archive, name="copy")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert ref == ModelRef("copy", 1) and peak < 8 * MiB
    loaded = zoo.load(ref)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        assert loaded.predict_features(x).tobytes() == model(torch.from_numpy(x)).numpy().tobytes()
    assert loaded.read_file("notes.md") == NOTES
    assert zoo.show(ref)["sizes"] == card["sizes"]
    # a card exported before sizes were recorded is still accepted (bounded by the caps)
    legacy = write_zip(tmp_path / "legacy.zip", with_card(exported, sizes=None))
    assert zoo.import_(legacy, name="legacy") == ModelRef("legacy", 1)


def test_unlisted_members_are_refused_before_decompressing(exported, tmp_path):
    members = {**exported, "a.png": BIG, "b.png": BIG}  # the measured 2 × 1 GiB attack, scaled
    path = write_zip(tmp_path / "unlisted.zip", members)
    assert path.stat().st_size < MiB
    cost = refused(path, tmp_path / "out", ZooLimits(max_ratio=math.inf), match="not listed")
    assert "'a.png'" in cost["message"] and "export it again" in cost["message"]
    assert cost["written"] == 0  # only card.json was read, in memory
    assert cost["peak"] < 8 * MiB
    tar = write_tar(tmp_path / "unlisted.tar.gz", members)
    cost = refused(tar, tmp_path / "out-tar", ZooLimits(max_ratio=math.inf), match="not listed")
    assert cost["written"] <= len(exported["weights.safetensors"]) + len(NOTES)
    assert cost["peak"] < 8 * MiB


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_listed_huge_member_is_refused_by_its_declared_size(exported, tmp_path, suffix):
    # the card lists it with its true sha256: only the size gives it away
    members = {**with_card(exported, **listing(exported, {"big.png": BIG})), "big.png": BIG}
    write = write_zip if suffix == ".zip" else write_tar
    path = write(tmp_path / f"listed{suffix}", members)
    assert path.stat().st_size < MiB
    cost = refused(path, tmp_path / "out", CAP, match="max_bytes")
    total = sum(len(data) if isinstance(data, bytes) else data for data in members.values())
    assert f"(declared bytes of all members) = {total} exceeds max_bytes" in cost["message"]
    assert cost["written"] <= 10 * MiB and cost["peak"] < 8 * MiB
    per_member = ZooLimits(max_file_bytes=10 * MiB, max_ratio=math.inf)
    cost = refused(path, tmp_path / "out2", per_member, match=rf"'big\.png'.*{BIG}.*max_file_bytes")
    assert cost["written"] <= 10 * MiB
    # with the default limits the ratio (~1000:1) refuses it first
    cost = refused(path, tmp_path / "out3", ZooLimits(), match="max_ratio")
    assert cost["written"] <= 10 * MiB and cost["peak"] < 8 * MiB


def test_json_members_have_their_own_cap(exported, tmp_path):
    members = {**with_card(exported, **listing(exported, {"meta.json": 20 * MiB})), "meta.json": 0}
    members["meta.json"] = 20 * MiB
    path = write_zip(tmp_path / "json.zip", members)
    cost = refused(path, tmp_path / "out", ZooLimits(max_ratio=math.inf), match="max_json_bytes")
    assert cost["written"] == 0


def test_sizes_must_match_the_card_and_the_model(exported, tmp_path):
    card = json.loads(exported["card.json"])
    lying = with_card(exported, sizes={**card["sizes"], "notes.md": len(NOTES) + 1})
    path = write_zip(tmp_path / "sizes.zip", lying)
    refused(path, tmp_path / "out", ZooLimits(), ZooIntegrityError, match="card records")
    # weights far larger than the card's model can need (8 bytes per number + header)
    weights = 3 * MiB
    fat = with_card(
        exported,
        weights_sha256=zeros_sha256(weights),
        sizes={**card["sizes"], "weights.safetensors": weights},
    )
    fat["weights.safetensors"] = weights
    path = write_zip(tmp_path / "fat.zip", fat)
    cost = refused(path, tmp_path / "out2", CAP, match=r"parameters\) fits in")
    assert cost["written"] == 0


def test_a_forged_central_directory_stops_at_its_declared_size(exported, tmp_path):
    """The central directory (and local header) declare 1 MiB; the stream inflates to 50 MiB."""
    members = {**with_card(exported, **listing(exported, {"big.png": BIG}, sizes=False))}
    members["big.png"] = BIG
    path = write_zip(tmp_path / "forged.zip", members)
    forge_sizes(path, "big.png", MiB, zlib.crc32(bytes(MiB)))  # a consistent lie
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("big.png").file_size == MiB
    cost = refused(path, tmp_path / "out", CAP, ZooIntegrityError, match=r"big\.png has sha256")
    assert cost["written"] <= len(exported["weights.safetensors"]) + len(NOTES) + MiB
    assert cost["peak"] < 8 * MiB
    # a lie the CRC gives away is refused as unreadable, just as early
    forge_sizes(path, "big.png", MiB, 0)
    cost = refused(path, tmp_path / "out2", CAP, match="not a readable zip")
    assert cost["written"] <= len(exported["weights.safetensors"]) + len(NOTES) + MiB


def test_tar_stream_is_bounded_while_it_inflates(exported, tmp_path):
    # a 50 MiB pax record: tarfile would read it whole into memory
    pax = {"notes.md": {"comment": "a" * BIG}}
    path = write_tar(tmp_path / "pax.tar.gz", exported, pax=pax)
    cost = refused(path, tmp_path / "out", ZooLimits(max_ratio=math.inf), match="tar header")
    assert cost["peak"] < 8 * MiB
    # a listed member within every size cap, but inflating ~1000:1 from a small file
    members = {**with_card(exported, **listing(exported, {"big.png": BIG})), "big.png": BIG}
    path = write_tar(tmp_path / "ratio.tar.gz", members)
    cost = refused(path, tmp_path / "out2", ZooLimits(), match="max_ratio")
    assert cost["written"] < 100 * path.stat().st_size + 2 * MiB < BIG
    assert cost["peak"] < 8 * MiB


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil.png", "flat file names"),
        ("sub/evil.png", "flat file names"),
        ("model.pkl", "refused"),
        ("card.json", "appears twice"),
    ],
)
def test_names_are_refused(exported, tmp_path, suffix, name, match):
    if suffix == ".zip":
        path = tmp_path / "names.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for member, data in [*exported.items(), (name, b"x")]:
                archive.writestr(member, data)
    else:
        path = tmp_path / "names.tar.gz"
        with tarfile.open(path, "w:gz") as archive:
            for member, data in [*exported.items(), (name, b"x")]:
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    refused(path, tmp_path / "out", ZooLimits(), match=match)
    assert not (tmp_path / "evil.png").exists()


def test_links_folders_and_pickles_are_refused(exported, tmp_path):
    notes = {k: v for k, v in exported.items() if k != "notes.md"}
    link = write_zip(tmp_path / "link.zip", {**notes, "notes.md": b"/etc/passwd"}, mode=0o120777)
    refused(link, tmp_path / "o1", ZooLimits(), match="not a plain file")
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, data in notes.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("notes.md")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(info)
    refused(path, tmp_path / "o2", ZooLimits(), match="not a plain file")
    folder = tmp_path / "folder.zip"
    with zipfile.ZipFile(folder, "w") as archive:
        for member, data in exported.items():
            archive.writestr(member, data)
        archive.mkdir("notes")
    refused(folder, tmp_path / "o3", ZooLimits(), match="flat file names|not a plain file")
    # a pickle disguised as a listed JSON file, with its true sha256 and size
    pickled = b"\x80\x04\x95" + bytes(20)
    card = json.loads(exported["card.json"])
    members = with_card(
        exported,
        files={**card["files"], "extra.json": hashlib.sha256(pickled).hexdigest()},
        sizes={**card["sizes"], "extra.json": len(pickled)},
    )
    members["extra.json"] = pickled
    with pytest.raises(ZooError, match="looks like a pickle"):
        read_archive(write_zip(tmp_path / "pickle.zip", members))
    # a zip with more members than allowed
    many = {**exported, **{f"f{i}.png": b"" for i in range(5)}}
    refused(
        write_zip(tmp_path / "many.zip", many),
        tmp_path / "o4",
        ZooLimits(max_members=4),
        match="max_members",
    )


def test_not_an_archive_is_one_line(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not a zip at all" * 10)
    refused(junk, tmp_path / "o1", ZooLimits(), match="not a readable zip")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"\x1f\x8b" + bytes(100))
    refused(junk, tmp_path / "o2", ZooLimits(), match="not a readable tar.gz")
    huge = tmp_path / "huge.zip"
    huge.write_bytes(bytes(3 * MiB))
    refused(huge, tmp_path / "o3", ZooLimits(max_bytes=MiB), match=r"file bytes\) = 3145728")
    with pytest.raises(ConfigError, match="does not exist"):
        read_archive(tmp_path / "missing.zip")


# -- cards that ask for absurd models --------------------------------------------------------


@pytest.fixture
def no_allocation(monkeypatch):
    """Fail the test if anything builds a PropertyModel."""

    def refuse(*args, **kwargs):
        raise AssertionError("a PropertyModel was built before the card was checked")

    monkeypatch.setattr(PropertyModel, "__init__", refuse)


def test_a_card_asking_for_a_huge_model_is_refused_before_allocation(
    zoo, exported, tmp_path, no_allocation
):
    card = json.loads(exported["card.json"])
    wide = with_card(exported, model={**card["model"], "in_features": 10_000_000})
    path = write_zip(tmp_path / "wide.zip", wide)
    assert path.stat().st_size < 10_000
    with pytest.raises(ZooError) as caught:
        zoo.import_(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "['in_features'] = 10000000 exceeds max_width 1000000" in message
    assert "wide.zip" in message and "ZooLimits(max_width=" in message
    deep = with_card(exported, model={**card["model"], "hidden": [100_000] * 3})
    with pytest.raises(ZooError, match=r"\) = 20001400001 exceeds max_parameters 500000000"):
        zoo.import_(write_zip(tmp_path / "deep.zip", deep))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"in_features": 1e7}, r"\['in_features'\] = 10000000\.0: give a positive integer"),
        ({"in_features": True}, r"\['in_features'\] = True: give a positive integer"),
        ({"out_features": 0}, r"\['out_features'\] = 0: give a positive integer"),
        ({"hidden": [8, -1]}, r"\['hidden'\]\[1\] = -1"),
        ({"hidden": ["8"]}, r"\['hidden'\]\[0\] = '8'"),
        ({"hidden": []}, r"\['hidden'\] = \[\]"),
        ({"hidden": 8}, r"\['hidden'\] = 8"),
        ({"hidden": [1] * 1001}, r"\(layers\) = 1001 exceeds max_layers 1000"),
        ({"hidden": [2_000_000]}, r"\['hidden'\]\[0\] = 2000000 exceeds max_width"),
        ({"dropout": "0.1"}, r"\['dropout'\] = '0\.1'"),
        ({"input_clip": float("inf")}, r"\['input_clip'\] = inf"),
        ({"activation": "os.system"}, r"\['activation'\] = 'os\.system'"),
        ({"batch_norm": "yes"}, r"\['batch_norm'\] = 'yes'"),
        ({"layers": 3}, r"unknown option\(s\) \['layers'\]"),
    ],
)
def test_model_config_fields_are_checked(change, match, no_allocation):
    config = {"in_features": 4, "out_features": 1, "hidden": [8], "dropout": 0.0} | change
    with pytest.raises(ZooError, match=match) as caught:
        check_model_config(config)
    assert "\n" not in str(caught.value)
    with pytest.raises(ZooError, match="not a model config"):
        check_model_config(None)


def test_a_catalog_card_is_checked_on_load(zoo, model, exported, tmp_path, no_allocation):
    entry = zoo.catalog.get(NAME, 1)
    card = {**entry.card, "model": {**entry.card["model"], "hidden": [10_000_000]}}
    set_card(tmp_path / "zoo", entry.uri, card)
    with pytest.raises(ZooError, match=rf"{NAME}@1: card\['model'\]\['hidden'\]\[0\] = 10000000"):
        zoo.load(NAME)
    tight = Zoo(tmp_path / "zoo", limits=ZooLimits(max_parameters=10))
    with tight, pytest.raises(ZooError, match="max_parameters 10"):
        check_model_config(entry.card["model"], tight.limits, where="x")


def set_card(zoo_folder: Path, uri: str, card: dict) -> None:
    """Rewrite a version's card in the catalog and in its artifacts (they must agree)."""
    with sqlite3.connect(zoo_folder / "catalog.sqlite") as db:
        db.execute(
            "UPDATE xenonscale_zoo_models SET card = ? WHERE name = ? AND version = ?",
            (json.dumps(card), card["name"], card["version"]),
        )
    (Path(uri) / "card.json").write_text(json.dumps(card))


def test_a_card_without_sizes_gets_them_on_export(zoo, exported, tmp_path):
    entry = zoo.catalog.get(NAME, 1)
    legacy = {k: v for k, v in entry.card.items() if k != "sizes"}
    set_card(tmp_path / "zoo", entry.uri, legacy)
    assert "sizes" not in zoo.show(NAME)
    zoo.export(NAME, tmp_path / "legacy.tar.gz")
    card, _, _ = read_archive(tmp_path / "legacy.tar.gz")
    assert card["sizes"] == json.loads(exported["card.json"])["sizes"]
    assert zoo.import_(tmp_path / "legacy.tar.gz") == ModelRef(NAME, 2)


def test_cli_import_refusal_is_one_line(exported, tmp_path, capsys):
    from xenonscale.cli.main import main

    card = json.loads(exported["card.json"])
    wide = write_zip(
        tmp_path / "wide.zip",
        with_card(exported, model={**card["model"], "in_features": 10_000_000}),
    )
    bomb = write_zip(tmp_path / "bomb.zip", {**exported, "a.png": BIG})
    for path in (wide, bomb):
        assert main(["zoo", "import", str(path), "--zoo", str(tmp_path / "cli-zoo")]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("xenonscale: error: ") and "\n" not in err, err
        assert "max_width" in err or "not listed" in err or "max_ratio" in err


# -- the limits themselves -------------------------------------------------------------------


def test_limits_are_validated_and_model_size_is_exact():
    with pytest.raises(ConfigError, match=r"max_bytes=0\): give a positive integer"):
        ZooLimits(max_bytes=0)
    with pytest.raises(ConfigError, match="max_width"):
        ZooLimits(max_width=1.5)
    assert ZooLimits(max_ratio=math.inf).max_ratio == math.inf
    with pytest.raises(ConfigError, match="ZooLimits"):
        Zoo("unused", limits={"max_bytes": 1})
    for config in (
        {"in_features": 4, "hidden": [8]},
        {"in_features": 7, "out_features": 3, "hidden": [5, 6, 2], "batch_norm": False},
        {"in_features": 3, "out_features": 2, "hidden": [9, 1], "input_clip": 3.0},
    ):
        built = PropertyModel.from_config(config)
        parameters = sum(p.numel() for p in built.parameters())
        elements = sum(t.numel() for t in built.state_dict().values())
        assert model_size(config) == check_model_config(config) == (parameters, elements)
    assert stat.S_IFMT(0o120777) == stat.S_IFLNK  # the link mode the zip test forges
