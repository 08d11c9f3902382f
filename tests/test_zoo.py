"""The model zoo (:mod:`xenonscale.zoo`), one contract run against three backends.

``ZooContract`` holds the tests; ``TestSQLite`` (a folder: SQLite catalog and
local artifacts), ``TestPostgres`` (a PostgreSQL catalog from the session's
``postgres_url`` server, a fresh database per test) and ``TestS3`` (SQLite
catalog, artifacts on ``s3://`` served by moto on 127.0.0.1) run it.

The model is a small :class:`PropertyModel` trained for a few steps on the
real Matbench steels formulas featurized with the XenonPy ``classic``
composition descriptors (it need not be accurate: the zoo must keep it bit
for bit and predict from raw formulas).
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
import threading
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
import torch

import xenonscale.zoo
from xenonscale.cli.main import main
from xenonscale.errors import (
    ConfigError,
    ModelNotFoundError,
    ZooError,
    ZooIntegrityError,
    ZooMismatchError,
)
from xenonscale.featurize.registry import FeaturizerSpec
from xenonscale.models.backbones import PropertyModel, mlp_config
from xenonscale.zoo import ModelRef, Zoo, ZooModel, featurizer_fields
from xenonscale.zoo.artifacts import looks_like_pickle, sha256_hex
from xenonscale.zoo.zoo import resolve_location

SPEC = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
NAME = "steels-yield"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_png() -> bytes:
    """A valid 1×1 grayscale PNG (what a trainer's parity plot would be)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x80"))
        + chunk(b"IEND", b"")
    )


PNG = tiny_png()


@dataclass
class Trained:
    model: PropertyModel
    card: dict
    x: np.ndarray  # float32 features of the training formulas
    formulas: list[str]

    def expected(self, x: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.from_numpy(self.x if x is None else x)).numpy()


@pytest.fixture(scope="module")
def trained(data_dir) -> Trained:
    """A tiny model trained for 30 steps on real steels formulas → yield strength (MPa)."""
    from xenonscale.datasets import content_sha256

    csv = data_dir / "compositions" / "matbench_steels_yield.csv"
    frame = pd.read_csv(csv)
    batch = SPEC.build().featurize_batch(frame["formula"].tolist())
    assert batch.ok.all()
    x = np.asarray(batch.values, dtype=np.float32)
    y = frame["target"].to_numpy(np.float32)[:, None]
    torch.manual_seed(0)
    model = PropertyModel.from_config(mlp_config(x.shape[1], hidden=[32, 16], dropout=0.0))
    model.fit_scaling(np.nanmean(x, 0), np.nanstd(x, 0), y.mean(0), y.std(0))
    xt = torch.from_numpy(x)
    yt = (torch.from_numpy(y) - model.target_mean) / model.target_std
    model.train()
    for _ in range(30):  # plain gradient descent (torch.optim's first use costs ~1.5 s)
        model.zero_grad()
        torch.nn.functional.mse_loss(model.forward_scaled(xt), yt).backward()
        with torch.no_grad():
            for parameter in model.parameters():
                parameter -= 0.05 * parameter.grad
    model.eval()
    with torch.no_grad():
        mae = float((model(xt) - torch.from_numpy(y)).abs().mean())
    card = {
        **featurizer_fields(SPEC),
        "targets": ["yield_strength"],
        "units": {"yield_strength": "MPa"},
        "metrics": {"train": {"mae": mae, "steps": 30}},
        "split": {"train": len(frame), "seed": 0},
        "training_data": {"url": str(csv), "fingerprint": content_sha256(csv)},
    }
    return Trained(model, card, x, frame["formula"].tolist())


def cli(argv: list[str]) -> int:
    """``xenonscale zoo ...`` in this process (exit status; errors are one line on stderr)."""
    return main(argv)


def classify(name: str, data: bytes) -> str:
    """What a zoo file is: only JSON, safetensors, PNG, Markdown notes and SQLite are allowed."""
    assert not looks_like_pickle(data), name
    assert b"data.pkl" not in data and not data.startswith(b"PK"), name
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"SQLite format 3\x00"):
        return "sqlite"
    if name.endswith(".safetensors"):
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        assert all(k == "__metadata__" or "dtype" in v for k, v in header.items())
        return "safetensors"
    if name.endswith(".md"):
        data.decode("utf-8")
        return "text"
    json.loads(data)
    return "json"


class ZooContract:
    """The zoo's guarantees; subclasses provide ``location`` (Zoo arguments) and ``files``."""

    @pytest.fixture
    def location(self) -> dict:
        raise NotImplementedError

    @pytest.fixture
    def zoo(self, location):
        with Zoo(**location) as zoo:
            yield zoo

    def artifact_fs(self, zoo: Zoo):
        fs, root = fsspec.core.url_to_fs(zoo.artifacts.root, **zoo.storage_options)
        fs.invalidate_cache()
        return fs, root

    def cli_args(self, location: dict) -> list[str]:
        args = ["--zoo", str(location["catalog"])]
        if location.get("artifacts"):
            args += ["--artifacts", str(location["artifacts"])]
        if location.get("storage_options"):
            args += ["--storage-options", json.dumps(location["storage_options"])]
        return args

    # -- register / list / show / load ---------------------------------------------

    def test_register_list_show_load_round_trip(self, zoo, trained, tmp_path):
        notes = tmp_path / "notes.md"
        notes.write_text("# steels\ntrained for 30 steps\n")
        ref = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        assert ref == ModelRef(NAME, 1) and str(ref) == f"{NAME}@1"
        ref2 = zoo.register(NAME, trained.model, trained.card, files={"notes.md": notes})
        assert str(ref2) == f"{NAME}@2"
        assert str(zoo.register("other", trained.model, trained.card)) == "other@1"

        listed = zoo.list()
        assert listed[["name", "version", "stage"]].values.tolist() == [
            ["other", 1, "candidate"],
            [NAME, 1, "candidate"],
            [NAME, 2, "candidate"],
        ]
        assert listed["train.mae"].tolist() == [trained.card["metrics"]["train"]["mae"]] * 3
        assert zoo.list(NAME)["version"].tolist() == [1, 2]
        assert zoo.list("nothing-here").empty

        card = zoo.show(f"{NAME}@1")
        assert (card["name"], card["version"]) == (NAME, 1)
        assert card["model"] == trained.model.config
        assert card["featurizer"] == SPEC.to_dict()
        assert card["targets"] == ["yield_strength"]
        assert card["units"] == {"yield_strength": "MPa"}
        assert card["feature_labels"] == trained.card["feature_labels"]
        assert card["element_tables"] == trained.card["element_tables"]
        assert card["training_data"] == trained.card["training_data"]
        assert card["files"] == {"parity.png": sha256_hex(PNG)}
        assert card["created"].endswith("+00:00")
        assert {"python", "xenonscale", "torch", "safetensors", "numpy"} <= set(card["versions"])
        assert zoo.show(NAME)["version"] == 2  # no production version: the latest

        loaded = zoo.load(f"{NAME}@1")
        assert isinstance(loaded, ZooModel) and loaded.ref == ref
        assert not loaded.model.training
        predicted = loaded.predict_features(trained.x)
        assert predicted.dtype == np.float32 and predicted.shape == (len(trained.x), 1)
        assert predicted.tobytes() == trained.expected().tobytes()  # bit for bit
        assert loaded.files == ["parity.png"] and loaded.read_file("parity.png") == PNG
        assert zoo.load(NAME).ref == ref2
        assert zoo.load(NAME).read_file("notes.md") == notes.read_bytes()
        assert xenonscale.zoo.load(f"{NAME}@2", zoo=zoo).card == zoo.show(ref2)
        with pytest.raises(ConfigError, match="2-D array with 290 columns"):
            loaded.predict_features(trained.x[0])
        with pytest.raises(ModelNotFoundError, match=f"{NAME}@7 is not in the zoo"):
            zoo.load(f"{NAME}@7")
        with pytest.raises(ModelNotFoundError, match="no model named 'missing'"):
            zoo.show("missing")

    def test_predict_raw_formulas(self, zoo, trained):
        zoo.register(NAME, trained.model, trained.card)
        model = xenonscale.zoo.load(NAME, zoo=zoo)
        frame = model.predict(["Fe2O3", "NaCl", "Xx2"])
        assert frame.columns.tolist() == ["yield_strength"] and len(frame) == 3
        values = frame["yield_strength"].to_numpy()
        assert np.isfinite(values[:2]).all() and np.isnan(values[2])
        assert model.errors_[["row", "input"]].values.tolist() == [[2, "Xx2"]]
        assert "unknown element 'Xx'" in model.errors_["error"].iloc[0]
        assert frame.attrs["errors"] == model.errors_.to_dict("records")
        # the same numbers as featurizing by hand and predicting from features
        batch = SPEC.build().featurize_batch(["Fe2O3", "NaCl"])
        by_hand = trained.expected(np.asarray(batch.values, dtype=np.float32))
        assert values[:2].tolist() == by_hand[:, 0].astype(np.float64).tolist()
        steels = model.predict(trained.formulas[:50])
        assert steels["yield_strength"].tolist() == trained.expected()[:50, 0].tolist()
        assert model.errors_.empty
        with pytest.raises(ConfigError, match="list of inputs"):
            model.predict("Fe2O3")
        series = pd.Series(["NaCl", "Yy"], index=["a", "b"])
        frame = model.predict(series)
        assert frame.index.tolist() == ["a", "b"] and frame["yield_strength"].isna().tolist() == [
            False,
            True,
        ]
        assert model.errors_[["row", "input"]].values.tolist() == [[1, "Yy"]]

    def test_featurizer_mismatch_is_refused(self, zoo, trained):
        labels = list(reversed(trained.card["feature_labels"]))
        zoo.register("labels", trained.model, {**trained.card, "feature_labels": labels})
        with pytest.raises(ZooMismatchError, match="first difference at column 0"):
            zoo.load("labels").predict(["Fe2O3"])
        tables = [{"name": "xenonpy58", "sha256": "0" * 64}]
        zoo.register("tables", trained.model, {**trained.card, "element_tables": tables})
        with pytest.raises(ZooMismatchError, match="element table"):
            zoo.load("tables").predict(["Fe2O3"])
        zoo.register("features", trained.model, {**trained.card, "featurizer": None})
        plain = zoo.load("features")
        with pytest.raises(ZooError, match="predict_features"):
            plain.predict(["Fe2O3"])
        assert plain.predict_features(trained.x).tobytes() == trained.expected().tobytes()

    def test_bad_arguments_are_refused(self, zoo, trained):
        for name in ("Steels", "-x", "", "a b", "a/b", "x" * 101):
            with pytest.raises(ConfigError, match="model name"):
                zoo.register(name, trained.model, trained.card)
        card = {k: v for k, v in trained.card.items() if k != "targets"}
        with pytest.raises(ConfigError, match="targets"):
            zoo.register(NAME, trained.model, card)
        card = {k: v for k, v in trained.card.items() if k != "featurizer"}
        with pytest.raises(ConfigError, match="featurizer"):
            zoo.register(NAME, trained.model, card)
        with pytest.raises(ConfigError, match="differs from the model's config"):
            zoo.register(NAME, trained.model, {**trained.card, "model": {"in_features": 3}})
        with pytest.raises(ConfigError, match="plain JSON"):
            zoo.register(NAME, trained.model, {**trained.card, "split": {"rows": object()}})
        with pytest.raises(ConfigError, match="looks like a pickle"):
            zoo.register(NAME, trained.model, trained.card, files={"x.json": b"\x80\x04K\x01."})
        with pytest.raises(ConfigError, match="suffix"):
            zoo.register(NAME, trained.model, trained.card, files={"model.pkl": b"{}"})
        with pytest.raises(ConfigError, match="PropertyModel"):
            zoo.register(NAME, torch.nn.Linear(2, 1), trained.card)
        with pytest.raises(ConfigError, match="positive integer"):
            zoo.show(f"{NAME}@0")
        assert zoo.list().empty  # nothing was registered, nothing reserved is listed
        assert str(zoo.register(NAME, trained.model, trained.card)) == f"{NAME}@1"

    def test_card_is_normalized_to_strict_json(self, zoo, trained, tmp_path):
        card = {
            **trained.card,
            "metrics": {"val": {"mae": np.float32(2.5), "r2": float("nan"), "n": np.int64(7)}},
            "training_data": {"store": tmp_path / "steels.zarr", "rows": 312},
            "versions": {"lightning": "2.6.6", "torch": "9.9"},
            "training": {"hidden": (32, 16), "bounds": np.array([1.0, np.inf])},
        }
        ref = zoo.register(NAME, trained.model, card)
        shown = zoo.show(ref)
        assert shown["metrics"] == {"val": {"mae": 2.5, "r2": None, "n": 7}}
        assert shown["training_data"]["store"] == str(tmp_path / "steels.zarr")
        assert shown["training"] == {"hidden": [32, 16], "bounds": [1.0, None]}
        assert shown["versions"]["lightning"] == "2.6.6" and shown["versions"]["torch"] == "9.9"
        assert "safetensors" in shown["versions"]  # completed from this process
        listed = zoo.list(NAME)
        assert listed["val.mae"].tolist() == [2.5] and listed["val.n"].tolist() == [7.0]
        assert listed["val.r2"].isna().all()

    # -- concurrency -------------------------------------------------------------------

    def test_concurrent_registrations_get_distinct_versions(self, zoo, location, trained):
        threads, refs, errors = 8, [], []
        start = threading.Barrier(threads)

        def register() -> None:
            try:
                with Zoo(**location) as own:  # one client each, like separate processes
                    start.wait(timeout=30)
                    refs.append(own.register(NAME, trained.model, trained.card))
            except Exception as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=register) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors
        assert sorted(ref.version for ref in refs) == list(range(1, threads + 1))
        assert zoo.list(NAME)["version"].tolist() == list(range(1, threads + 1))

        # concurrent promotions of different versions: exactly one production at the end
        promoters = [
            threading.Thread(target=lambda v=v: zoo.promote(f"{NAME}@{v}")) for v in (2, 5, 7)
        ]
        for worker in promoters:
            worker.start()
        for worker in promoters:
            worker.join(timeout=60)
        stages = zoo.list(NAME)["stage"].tolist()
        assert stages.count("production") == 1 and stages.count("archived") == 2

    # -- stages --------------------------------------------------------------------------

    def test_promote_and_production(self, zoo, trained):
        for _ in range(3):
            zoo.register(NAME, trained.model, trained.card)
        assert zoo.production(NAME) is None and zoo.latest(NAME) == ModelRef(NAME, 3)
        assert zoo.load(NAME).ref.version == 3
        assert zoo.promote(f"{NAME}@1") == ModelRef(NAME, 1)
        assert zoo.production(NAME) == ModelRef(NAME, 1)
        assert zoo.load(NAME).ref.version == 1  # production wins over the latest
        assert zoo.show(NAME)["version"] == 1
        zoo.promote(ModelRef(NAME, 2))
        assert zoo.list(NAME)["stage"].tolist() == ["archived", "production", "candidate"]
        zoo.promote(f"{NAME}@2")  # already production: nothing changes
        assert zoo.list(NAME)["stage"].tolist() == ["archived", "production", "candidate"]
        ref = zoo.register(NAME, trained.model, trained.card, stage="production")
        assert zoo.production(NAME) == ref == ModelRef(NAME, 4)
        assert zoo.list(NAME)["stage"].tolist() == [
            "archived",
            "archived",
            "candidate",
            "production",
        ]
        zoo.promote(f"{NAME}@1")  # rolling back to an archived version
        assert zoo.production(NAME) == ModelRef(NAME, 1)
        with pytest.raises(ConfigError, match="name the version"):
            zoo.promote(NAME)
        with pytest.raises(ModelNotFoundError):
            zoo.promote(f"{NAME}@9")
        with pytest.raises(ConfigError, match="stage"):
            zoo.register(NAME, trained.model, trained.card, stage="archived")

    def test_remove(self, zoo, trained):
        first = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        second = zoo.register(NAME, trained.model, trained.card)
        fs, root = self.artifact_fs(zoo)
        assert fs.exists(f"{root}/{NAME}/1/weights.safetensors")
        zoo.remove(first)
        fs.invalidate_cache()
        assert not fs.exists(f"{root}/{NAME}/1")
        assert zoo.list(NAME)["version"].tolist() == [2]
        with pytest.raises(ModelNotFoundError, match="versions of 'steels-yield': 2"):
            zoo.load(f"{NAME}@1")
        with pytest.raises(ModelNotFoundError):
            zoo.remove(first)
        with pytest.raises(ConfigError, match="name the version"):
            zoo.remove(NAME)
        zoo.promote(second)
        with pytest.raises(ZooError, match="production"):
            zoo.remove(second)
        zoo.remove(second, force=True)
        assert zoo.list().empty
        with pytest.raises(ModelNotFoundError):
            zoo.load(NAME)
        assert zoo.register(NAME, trained.model, trained.card).version == 3  # never reused

    # -- export / import -------------------------------------------------------------------

    @pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
    def test_export_import_round_trip(self, zoo, trained, tmp_path, suffix):
        ref = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        archive = tmp_path / f"exported{suffix}"
        assert zoo.export(ref, archive) == str(archive)
        again = tmp_path / f"again{suffix}"
        zoo.export(NAME, again)
        assert archive.read_bytes() == again.read_bytes()  # deterministic
        members = _members(archive)
        assert sorted(members) == ["card.json", "parity.png", "weights.safetensors"]
        assert json.loads(members["card.json"]) == zoo.show(ref)

        imported = zoo.import_(archive)
        assert imported == ModelRef(NAME, 2)
        copy = zoo.import_(archive, name="steels-copy")
        assert copy == ModelRef("steels-copy", 1)
        for other in (imported, copy):
            card = zoo.show(other)
            assert card["imported_from"] == f"{NAME}@1"
            assert card["weights_sha256"] == zoo.show(ref)["weights_sha256"]
            assert card["versions"] == zoo.show(ref)["versions"]
            for key in ("model", "featurizer", "targets", "feature_labels", "element_tables"):
                assert card[key] == zoo.show(ref)[key], key
            model = zoo.load(other)
            assert model.predict_features(trained.x).tobytes() == trained.expected().tobytes()
            assert model.read_file("parity.png") == PNG

        # a modified archive is refused
        tampered = tmp_path / f"tampered{suffix}"
        members["weights.safetensors"] = _flip(members["weights.safetensors"])
        _write_members(tampered, members)
        with pytest.raises(ZooIntegrityError, match=r"weights\.safetensors"):
            zoo.import_(tampered)
        with pytest.raises(ConfigError, match=r"\.zip"):
            zoo.export(ref, tmp_path / "exported.rar")

    # -- integrity, no pickle ---------------------------------------------------------------

    def test_tampered_files_are_detected(self, zoo, trained, tmp_path):
        ref = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        fs, root = self.artifact_fs(zoo)
        folder = f"{root}/{NAME}/1"
        weights = fs.cat_file(f"{folder}/weights.safetensors")
        fs.pipe_file(f"{folder}/weights.safetensors", _flip(weights))
        with pytest.raises(ZooIntegrityError, match=r"weights\.safetensors.*modified"):
            zoo.load(ref)
        with pytest.raises(ZooIntegrityError, match=r"weights\.safetensors"):
            zoo.export(ref, tmp_path / "x.zip")
        fs.pipe_file(f"{folder}/weights.safetensors", weights)
        assert zoo.load(ref).predict_features(trained.x).tobytes() == trained.expected().tobytes()

        card = json.loads(fs.cat_file(f"{folder}/card.json"))
        fs.pipe_file(f"{folder}/card.json", json.dumps({**card, "targets": ["x"]}).encode())
        with pytest.raises(ZooIntegrityError, match=r"card\.json"):
            zoo.load(ref)
        fs.pipe_file(f"{folder}/card.json", json.dumps(card).encode())

        fs.pipe_file(f"{folder}/parity.png", PNG + b"\x00")
        with pytest.raises(ZooIntegrityError, match=r"parity\.png"):
            zoo.load(ref).read_file("parity.png")
        fs.rm(f"{folder}/weights.safetensors")
        with pytest.raises(ZooIntegrityError, match="missing"):
            zoo.load(ref)

    def test_no_pickle_anywhere(self, zoo, location, trained, tmp_path):
        notes = tmp_path / "notes.md"
        notes.write_text("notes\n")
        ref = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        zoo.register(NAME, trained.model, trained.card, files={"notes.md": notes})
        zoo.export(ref, tmp_path / "model.tar.gz")
        zoo.import_(tmp_path / "model.tar.gz", name="imported")
        fs, root = self.artifact_fs(zoo)
        kinds = {}
        for path in fs.find(root):
            kinds[path] = classify(path, fs.cat_file(path))
        catalog = Path(str(location["catalog"]))
        if catalog.is_dir():
            kinds[str(catalog / "catalog.sqlite")] = classify(
                "catalog.sqlite", (catalog / "catalog.sqlite").read_bytes()
            )
        assert set(kinds.values()) <= {"json", "safetensors", "png", "sqlite", "text"}
        assert sum(kind == "safetensors" for kind in kinds.values()) == 3
        for entry in zoo.catalog.entries():  # the catalog's cards are plain JSON too
            json.loads(json.dumps(entry.card, allow_nan=False))
        for name, data in _members(tmp_path / "model.tar.gz").items():
            classify(name, data)

    # -- command line ------------------------------------------------------------------------

    def test_cli(self, zoo, location, trained, tmp_path, capsys):
        zoo.register(NAME, trained.model, trained.card)
        zoo.register(NAME, trained.model, trained.card)
        where = self.cli_args(location)
        assert cli(["zoo", "list", *where]) == 0
        out = capsys.readouterr().out
        assert "steels-yield" in out and "candidate" in out and "train.mae" in out
        assert cli(["zoo", "list", NAME, "--json", *where]) == 0
        assert [r["version"] for r in json.loads(capsys.readouterr().out)] == [1, 2]
        assert cli(["zoo", "show", f"{NAME}@1", *where]) == 0
        assert json.loads(capsys.readouterr().out)["version"] == 1
        assert cli(["zoo", "promote", f"{NAME}@1", *where]) == 0
        assert f"{NAME}@1 is production" in capsys.readouterr().out
        assert cli(["zoo", "promote", f"{NAME}@2", *where]) == 0
        assert f"({NAME}@1 archived)" in capsys.readouterr().out
        archive = tmp_path / "out.zip"
        assert cli(["zoo", "export", NAME, "-o", str(archive), *where]) == 0
        assert archive.exists()
        assert cli(["zoo", "import", str(archive), "--name", "copy", *where]) == 0
        assert f"copy@1 (imported from {NAME}@2)" in capsys.readouterr().out
        assert cli(["zoo", "remove", f"{NAME}@1", *where]) == 0
        assert cli(["zoo", "remove", f"{NAME}@2", *where]) == 2
        assert "--force" in capsys.readouterr().err
        assert cli(["zoo", "remove", f"{NAME}@2", "--force", *where]) == 0
        capsys.readouterr()
        assert cli(["zoo", "list", NAME, *where]) == 0
        assert "no models" in capsys.readouterr().out
        assert cli(["zoo", "list", *where, "--storage-options", "{not json"]) == 2
        assert "storage-options" in capsys.readouterr().err


def _members(path: Path) -> dict[str, bytes]:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    with tarfile.open(path, "r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def _write_members(path: Path, members: dict[str, bytes]) -> None:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def _flip(data: bytes) -> bytes:
    """The same bytes with the last one changed (a weight's low bits)."""
    return data[:-1] + bytes([data[-1] ^ 0x01])


# -- backends ------------------------------------------------------------------------------


class TestSQLite(ZooContract):
    """A plain folder: ``catalog.sqlite`` + ``artifacts/``."""

    @pytest.fixture
    def location(self, tmp_path) -> dict:
        return {"catalog": str(tmp_path / "zoo")}


class TestPostgres(ZooContract):
    """A PostgreSQL catalog (a fresh database per test) and local artifacts."""

    @pytest.fixture
    def location(self, postgres_url, tmp_path) -> dict:
        pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' for PostgreSQL")
        from sqlalchemy import create_engine, make_url, text

        database = f"zoo_{uuid.uuid4().hex[:12]}"
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        url = make_url(postgres_url).set(database=database).render_as_string(hide_password=False)
        return {"catalog": url, "artifacts": str(tmp_path / "artifacts")}


class TestS3(ZooContract):
    """A SQLite catalog with the artifacts in an S3 bucket (moto on 127.0.0.1)."""

    @pytest.fixture
    def location(self, s3_bucket, tmp_path) -> dict:
        bucket, options = s3_bucket
        return {
            "catalog": f"sqlite:///{tmp_path / 'catalog.sqlite'}",
            "artifacts": f"{bucket}/models",
            "storage_options": options,
        }

    def test_artifacts_are_in_the_bucket(self, zoo, location, trained):
        ref = zoo.register(NAME, trained.model, trained.card, files={"parity.png": PNG})
        assert zoo.catalog.get(NAME, 1).uri == f"{location['artifacts']}/{NAME}/1"
        fs, root = self.artifact_fs(zoo)
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.find(root)) == [
            "card.json",
            "parity.png",
            "weights.safetensors",
        ]
        model = xenonscale.zoo.load(ref, zoo=zoo)
        assert model.predict_features(trained.x).tobytes() == trained.expected().tobytes()


# -- locations ------------------------------------------------------------------------------


def test_locations(tmp_path, monkeypatch, trained):
    monkeypatch.delenv("XENONSCALE_ZOO", raising=False)
    monkeypatch.delenv("XENONSCALE_ZOO_ARTIFACTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home_zoo = tmp_path / "home" / ".xenonscale" / "zoo"
    assert resolve_location() == (
        f"sqlite:///{home_zoo / 'catalog.sqlite'}",
        str(home_zoo / "artifacts"),
    )
    monkeypatch.setenv("XENONSCALE_ZOO", str(tmp_path / "env-zoo"))
    with Zoo() as zoo:
        zoo.register(NAME, trained.model, trained.card)
    assert (tmp_path / "env-zoo" / "catalog.sqlite").is_file()
    assert xenonscale.zoo.load(NAME).ref == ModelRef(NAME, 1)  # module-level, default zoo
    assert xenonscale.zoo.load(NAME, zoo=str(tmp_path / "env-zoo")).ref.version == 1

    with pytest.raises(ConfigError, match="artifacts=URL"):
        Zoo(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with pytest.raises(ConfigError, match="database URL"):
        Zoo("s3://bucket/zoo")
    with pytest.raises(ConfigError, match="give a local folder, or a catalog database URL"):
        Zoo("mysql://host/db", artifacts=str(tmp_path))
    closed_port = "postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=2"
    with pytest.raises(ZooError, match="cannot be opened"):
        Zoo(closed_port, artifacts=str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        Zoo(tmp_path / "file")
    monkeypatch.setenv("XENONSCALE_ZOO_ARTIFACTS", str(tmp_path / "env-artifacts"))
    _, artifacts = resolve_location(f"sqlite:///{tmp_path / 'c.sqlite'}")
    assert artifacts == str(tmp_path / "env-artifacts")


def test_main_cli_when_wired(tmp_path, trained, capsys):
    """Through ``xenonscale.cli.main.main`` once ``zoo`` is wired there."""
    from xenonscale.cli import main as cli_main

    if "zoo" not in cli_main.cli.commands:
        pytest.skip("`zoo` is not wired into xenonscale.cli.main yet")
    with Zoo(tmp_path / "zoo") as zoo:
        zoo.register(NAME, trained.model, trained.card)
    assert cli_main.main(["zoo", "list", "--zoo", str(tmp_path / "zoo")]) == 0
    assert NAME in capsys.readouterr().out
    assert cli_main.main(["zoo", "show", "missing", "--zoo", str(tmp_path / "zoo")]) == 2
    assert "no model named 'missing'" in capsys.readouterr().err
