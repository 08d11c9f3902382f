"""Portable model archives: one ``.zip`` or ``.tar.gz`` per model version.

An archive holds exactly ``card.json``, ``weights.safetensors`` and the extra
files the card lists, flat, with fixed timestamps (the same version exports
to the same bytes). No pickle: the weights are safetensors and everything
else is data.

Reading an archive trusts nothing in it and is bounded by
:class:`~xenonscale.zoo.limits.ZooLimits` at every step, so a decompression
bomb or a forged header is refused in one line (:class:`ZooError`) before it
can exhaust memory or disk:

1. the archive file itself is at most ``max_bytes``;
2. zip: every entry of the central directory is checked before anything is
   decompressed: a flat, unique name (no folders, no ``..``), a plain file
   (no folder, link, device or encryption), stored or deflated, a declared
   size within its cap (``card.json`` and ``.json`` files ``max_json_bytes``,
   other extra files ``max_file_bytes``, all members together ``max_bytes``),
   at most ``max_ratio`` : 1 compressed, at most ``max_members`` entries;
3. ``card.json`` is read (within its cap) and parsed; its model config must
   describe a sane network (:func:`~xenonscale.zoo.limits.check_model_config`);
   every other member must be listed by the card, have the size the card
   records (``sizes``, written by the zoo since this check exists) and, for
   the weights, no more bytes than that network can need;
4. each member is then streamed to disk in 1 MiB blocks, never past the size
   its header declares nor past the running total ``max_bytes``, hashed on
   the way and compared with the sha256 the card records
   (:class:`~xenonscale.errors.ZooIntegrityError`); extra files that look
   like pickles are refused.

A tar.gz has no central directory: its headers are read one by one through a
counter that refuses a header (a pax record, a long name) past 1 MiB, a
member's data past its declared size and a stream past ``max_ratio`` : 1,
and each member is checked as in 2 and 3 as its header arrives (the zoo
writes ``card.json`` first, so every later member is checked against it
before its data is read). Sparse files and links are refused.

Examples
--------
:meth:`Zoo.export <xenonscale.zoo.Zoo.export>` writes archives that pass; a
hand-made one whose card is not a zoo card is refused before anything is used:

>>> import tempfile
>>> from pathlib import Path
>>> from xenonscale.zoo.archive import read_archive, write_archive
>>> from xenonscale.zoo.limits import ZooLimits
>>> path = Path(tempfile.mkdtemp()) / "model.zip"
>>> _ = write_archive(path, {"card.json": b"{}"})
>>> card, weights, files = read_archive(path, limits=ZooLimits(max_bytes=10 << 20))
Traceback (most recent call last):
...
xenonscale.errors.ZooError: archive '...model.zip': member 'card.json': weights_sha256 None ...
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

from xenonscale.errors import ConfigError, XenonscaleError, ZooError, ZooIntegrityError
from xenonscale.zoo.artifacts import CARD, WEIGHTS, check_file, check_file_name
from xenonscale.zoo.limits import ZooLimits, check_model_config, weights_bound

__all__ = [
    "ARCHIVE_SUFFIXES",
    "archive_format",
    "extract_archive",
    "read_archive",
    "write_archive",
]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_BLOCK = 1 << 20  # bytes decompressed at a time
_SLACK = 1 << 20  # archive headers beyond the members' bytes
_HEADER_BYTES = 1 << 20  # a tar header with its pax records / long names
_TAR_SLACK = 64 << 10  # tar padding and tarfile's read-ahead past a member's data
_RATIO_FLOOR = 1 << 20  # the ratio check starts past this many bytes
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_TAR_FILES = (tarfile.REGTYPE, tarfile.AREGTYPE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REEXPORT = "export it again with `xenonscale zoo export`"


def archive_format(path: str | os.PathLike) -> str:
    """``"zip"`` or ``"tar.gz"`` from the file name; :class:`ConfigError` otherwise."""
    name = os.fspath(path).lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    raise ConfigError(
        f"archive {os.fspath(path)!r}: name it with one of {', '.join(ARCHIVE_SUFFIXES)}"
    )


def write_archive(
    path: str | os.PathLike, members: Mapping[str, bytes], storage_options: dict | None = None
) -> str:
    """Write ``members`` (name → bytes, in order) to a zip or tar.gz at ``path`` (or URL)."""
    kind = archive_format(path)
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                archive.writestr(info, data)
    else:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                archive.addfile(info, io.BytesIO(data))
        buffer.write(gzip.compress(raw.getvalue(), mtime=0))
    text = os.fspath(path)
    if "://" not in text:
        text = os.path.abspath(os.path.expanduser(text))
        os.makedirs(os.path.dirname(text), exist_ok=True)
    with fsspec.open(text, "wb", **(storage_options or {})) as handle:
        handle.write(buffer.getvalue())
    return text


def read_archive(
    path: str | os.PathLike,
    storage_options: dict | None = None,
    *,
    limits: ZooLimits | None = None,
) -> tuple[dict, bytes, dict[str, bytes]]:
    """``(card, weights, files)`` from an archive, every member checked (module docstring).

    Members are extracted to a temporary folder first (see
    :func:`extract_archive`), so nothing is held in memory until every size
    and sha256 has been checked. Raises :class:`ZooError` for a malformed,
    oversized or hostile archive and :class:`~xenonscale.errors.ZooIntegrityError`
    when a file's size or sha256 differs from the card's.
    """
    text = os.fspath(path)
    with tempfile.TemporaryDirectory(prefix="xenonscale-archive-") as folder:
        card, paths = extract_archive(path, folder, storage_options, limits=limits)
        weights = paths.pop(WEIGHTS).read_bytes()
        files = {name: file.read_bytes() for name, file in paths.items()}
    for name, content in files.items():
        try:
            check_file(name, content)
        except ConfigError as exc:
            raise ZooError(f"archive {text!r}: {exc}; {_REEXPORT}") from exc
    return card, weights, files


def extract_archive(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    storage_options: dict | None = None,
    *,
    limits: ZooLimits | None = None,
) -> tuple[dict, dict[str, Path]]:
    """Check and extract an archive into ``folder``: ``(card, {name: path})`` (no card file).

    Bounded as the module docstring says: at most ``limits.max_bytes`` are
    ever written to ``folder``, in 1 MiB blocks. On error ``folder`` may keep
    the partial files written so far: give a temporary folder
    (:func:`read_archive` does).
    """
    limits = limits or ZooLimits()
    kind = archive_format(path)
    text = os.fspath(path)
    url = text if "://" in text else os.path.abspath(os.path.expanduser(text))
    fs, location = fsspec.core.url_to_fs(url, **(storage_options or {}))
    try:
        size = int(fs.size(location) or 0)
    except FileNotFoundError as exc:
        raise ConfigError(f"archive {text!r} does not exist") from exc
    if size > limits.max_bytes + _SLACK:
        raise limits.refuse(f"archive {text!r} (file bytes)", size, "max_bytes")
    job = _Extraction(text, Path(folder), limits, size)
    try:
        with fs.open(location, "rb") as handle:
            if kind == "zip":
                job.zip(handle)
            else:
                job.tar(handle)
    except XenonscaleError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ZooError(
            f"{text!r} is not a readable {kind} archive ({_one_line(exc)}): {_REEXPORT}"
        ) from exc
    return job.finish()


class _Extraction:
    """The checks and the running totals of one archive being extracted."""

    def __init__(self, text: str, folder: Path, limits: ZooLimits, size: int):
        self.text = text
        self.folder = folder
        self.limits = limits
        self.size = size  # compressed bytes of the whole archive
        self.card: dict | None = None
        self.listed: set[str] = set()
        self.sizes: dict[str, int] | None = None
        self.weights_cap = limits.max_bytes
        self.parameters = 0
        self.declared: dict[str, int] = {}  # member → the size its header declares
        self.written: dict[str, tuple[Path, str]] = {}  # member → (file, sha256)
        self.total = 0  # member bytes decompressed so far

    def where(self, name: str | None = None) -> str:
        return f"archive {self.text!r}" + (f": member {name!r}" if name is not None else "")

    # -- zip -------------------------------------------------------------------------

    def zip(self, handle) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            if len(infos) > self.limits.max_members:
                raise self.limits.refuse(f"{self.where()} (members)", len(infos), "max_members")
            for info in infos:  # the central directory only: nothing decompressed yet
                self._zip_entry(info)
                self.header(info.filename, info.file_size)
            entries = {info.filename: info for info in infos}
            self._require(CARD)
            card = self.read_card(archive.open(entries[CARD]), entries[CARD].file_size)
            self.set_card(card)  # every member checked against the card
            self._require(WEIGHTS)
            for info in infos:
                if info.filename != CARD:
                    self.stream(info.filename, archive.open(info), info.file_size)

    def _zip_entry(self, info: zipfile.ZipInfo) -> None:
        name = info.filename
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise ZooError(
                f"{self.where(name)} is not a plain file (a folder or a link): a zoo archive "
                f"holds flat files only; {_REEXPORT}"
            )
        if info.flag_bits & 0x1:
            raise ZooError(f"{self.where(name)} is encrypted: {_REEXPORT}")
        if info.compress_type not in _ZIP_METHODS:
            raise ZooError(
                f"{self.where(name)} uses zip compression method {info.compress_type}: a zoo "
                f"archive is {' or '.join(_ZIP_METHODS.values())}; {_REEXPORT}"
            )
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _RATIO_FLOOR and ratio > self.limits.max_ratio:
            raise self.limits.refuse(
                f"{self.where(name)} (ratio of {info.file_size} bytes to "
                f"{info.compress_size} compressed)",
                round(ratio, 1),
                "max_ratio",
                "a decompression bomb",
            )

    # -- tar.gz ----------------------------------------------------------------------

    def tar(self, handle) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stream = _Counter(gzip.GzipFile(fileobj=handle, mode="rb"), self)
        header = "a tar header (with its pax records)"
        stream.window(_HEADER_BYTES, header)  # opening reads the first header
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            while True:
                info = archive.next()
                if info is None:
                    break
                name = info.name
                if info.type not in _TAR_FILES or info.issparse():
                    raise ZooError(
                        f"{self.where(name)} is not a plain file (a folder, link, device or "
                        f"sparse file): a zoo archive holds flat files only; {_REEXPORT}"
                    )
                self.header(name, info.size)
                stream.window(info.size + _TAR_SLACK, f"the data of member {name!r}")
                source = archive.extractfile(info)
                if source is None:  # pragma: no cover - regular files always have data
                    raise ZooError(f"{self.where(name)} has no data: {_REEXPORT}")
                if name == CARD:
                    self.set_card(self.read_card(source, info.size))
                else:
                    self.stream(name, source, info.size)
                stream.window(_HEADER_BYTES, header)
        self._require(CARD)

    # -- checks ----------------------------------------------------------------------

    def header(self, name: Any, size: int) -> None:
        """Check one member from its header alone (nothing of it decompressed yet)."""
        if (
            not isinstance(name, str)
            or not name
            or "/" in name
            or "\\" in name
            or "\x00" in name
            or name in (".", "..")
        ):
            raise ZooError(
                f"{self.where(name)}: expected flat file names (no folders, no '..'); {_REEXPORT}"
            )
        if name in self.declared:
            raise ZooError(f"{self.where(name)} appears twice: {_REEXPORT}")
        if len(self.declared) >= self.limits.max_members:
            raise self.limits.refuse(
                f"{self.where()} (members)", len(self.declared) + 1, "max_members"
            )
        if name not in (CARD, WEIGHTS):
            try:
                check_file_name(name)
            except ConfigError as exc:
                raise ZooError(f"{self.where(name)} is refused ({exc}); {_REEXPORT}") from exc
        if name == WEIGHTS:
            limit = "max_bytes"
        elif name == CARD or name.lower().endswith(".json"):
            limit = "max_json_bytes"
        else:
            limit = "max_file_bytes"
        if size > getattr(self.limits, limit):
            raise self.limits.refuse(f"{self.where(name)} (declared bytes)", size, limit)
        if self.card is not None:
            self.against_card(name, size)
        self.declared[name] = size
        total = sum(self.declared.values())
        if total > self.limits.max_bytes:
            raise self.limits.refuse(
                f"{self.where()} (declared bytes of all members)", total, "max_bytes"
            )

    def against_card(self, name: str, size: int) -> None:
        """Check a member's name and declared size against the card (before its data)."""
        if name == CARD:
            return
        if name not in self.listed:
            raise ZooError(
                f"{self.where(name)} is not listed in its card.json (files: "
                f"{sorted(self.listed - {CARD, WEIGHTS})}): refused before decompressing it; "
                f"{_REEXPORT}"
            )
        recorded = None if self.sizes is None else self.sizes[name]
        if recorded is not None and size != recorded:
            raise ZooIntegrityError(
                f"{self.where(name)} declares {size} bytes but the card records {recorded}: "
                f"the archive was modified or corrupted; {_REEXPORT}"
            )
        if name == WEIGHTS and size > self.weights_cap:
            raise ZooError(
                f"{self.where(name)} declares {size} bytes but the card's model "
                f"({self.parameters} parameters) fits in {self.weights_cap}: the weights do "
                f"not belong to that model; {_REEXPORT}"
            )

    def set_card(self, card: Any) -> None:
        """Validate the card's bookkeeping and model, then check the members seen so far."""
        if not isinstance(card, dict):
            raise ZooError(f"{self.where(CARD)} is not a JSON object: {_REEXPORT}")
        sha = card.get("weights_sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise ZooError(
                f"{self.where(CARD)}: weights_sha256 {_short(sha)} is not a sha256: "
                f"not a xenonscale zoo archive; {_REEXPORT}"
            )
        files = card.get("files") or {}
        if not isinstance(files, dict) or len(files) > self.limits.max_members:
            raise ZooError(
                f"{self.where(CARD)}: files {_short(files)} is not {{name: sha256}}; {_REEXPORT}"
            )
        for name, digest in files.items():
            try:
                check_file_name(name)
            except ConfigError as exc:
                raise ZooError(f"{self.where(CARD)} lists a refused file ({exc})") from exc
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ZooError(
                    f"{self.where(CARD)}: files[{name!r}] = {_short(digest)} is not a sha256; "
                    f"{_REEXPORT}"
                )
        listed = {CARD, WEIGHTS, *files}
        sizes = card.get("sizes")
        if sizes is not None and (
            not isinstance(sizes, dict)
            or set(sizes) != listed - {CARD}
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()
            )
        ):
            raise ZooError(
                f"{self.where(CARD)}: sizes {_short(sizes)} is not {{member: bytes}} for "
                f"{sorted(listed - {CARD})}; {_REEXPORT}"
            )
        self.parameters, elements = check_model_config(
            card.get("model"), self.limits, where=self.where()
        )
        self.weights_cap = min(self.limits.max_bytes, weights_bound(elements))
        self.card, self.listed, self.sizes = card, listed, sizes
        for name, size in self.declared.items():
            self.against_card(name, size)

    def _require(self, name: str) -> None:
        if name not in self.declared:
            raise ZooError(f"{self.where()} has no {name}: it is not a xenonscale zoo archive")

    # -- reading ---------------------------------------------------------------------

    def read_card(self, source, size: int) -> Any:
        """The parsed card.json (at most its declared size, already within max_json_bytes)."""
        data = bytearray()
        with source:
            for block in self._blocks(CARD, source, size):
                data += block
        try:
            return json.loads(bytes(data))
        except (ValueError, RecursionError) as exc:
            raise ZooError(
                f"{self.where(CARD)} is not valid JSON ({_one_line(exc)}): {_REEXPORT}"
            ) from exc

    def stream(self, name: str, source, size: int) -> None:
        """Copy a member to ``folder/name`` in blocks, hashing it on the way."""
        target = self.folder / name
        digest = hashlib.sha256()
        with source:
            try:
                out = open(target, "wb")  # noqa: SIM115 - closed below, errors reworded
            except OSError as exc:
                raise ZooError(f"cannot write {str(target)!r} ({exc}): free disk space") from exc
            with out:
                for block in self._blocks(name, source, size):
                    digest.update(block)
                    try:
                        out.write(block)
                    except OSError as exc:
                        raise ZooError(
                            f"cannot write {str(target)!r} ({exc}): free disk space or set "
                            "TMPDIR to a larger disk"
                        ) from exc
        self.written[name] = (target, digest.hexdigest())

    def _blocks(self, name: str, source, size: int):
        """Blocks of a member, never past its declared ``size`` nor the running ``max_bytes``."""
        count = 0
        while True:
            block = source.read(min(_BLOCK, size - count + 1))  # at most 1 byte past ``size``
            if not block:
                break
            count += len(block)
            self.total += len(block)
            if count > size:
                raise ZooError(
                    f"{self.where(name)} holds more than the {size} bytes its header declares: "
                    f"a forged archive, refused after {count} bytes; {_REEXPORT}"
                )
            if self.total > self.limits.max_bytes:
                raise self.limits.refuse(
                    f"{self.where()} (bytes decompressed)", self.total, "max_bytes"
                )
            yield block
        if count != size:
            raise ZooError(
                f"{self.where(name)} holds {count} bytes, its header declares {size}: the "
                f"archive is truncated or forged; {_REEXPORT}"
            )

    def check_stream(self, count: int) -> None:
        """The tar.gz stream's own ratio (a tar.gz has no per-member compressed sizes)."""
        if count > _RATIO_FLOOR and count > self.limits.max_ratio * max(self.size, 1):
            raise self.limits.refuse(
                f"{self.where()} (ratio of {count} bytes decompressed to {self.size} compressed)",
                round(count / max(self.size, 1), 1),
                "max_ratio",
                "a decompression bomb",
            )

    # -- the end ---------------------------------------------------------------------

    def finish(self) -> tuple[dict, dict[str, Path]]:
        """Every listed member present and matching its sha256: ``(card, {name: path})``."""
        self._require(CARD)
        self._require(WEIGHTS)
        assert self.card is not None
        missing = sorted(self.listed - set(self.declared))
        if missing:
            raise ZooError(f"{self.where()} lacks {missing}, which its card lists: {_REEXPORT}")
        wanted = {WEIGHTS: self.card["weights_sha256"], **self.card.get("files", {})}
        for name, (_, digest) in self.written.items():
            if digest != wanted[name]:
                raise ZooIntegrityError(
                    f"{self.text!r}: {name} has sha256 {digest} but the card records "
                    f"{wanted[name]}: the archive was modified or corrupted; {_REEXPORT}"
                )
        return self.card, {name: path for name, (path, _) in self.written.items()}


class _Counter(io.RawIOBase):
    """A decompressed tar stream that refuses to run past the current window."""

    def __init__(self, raw, job: _Extraction):
        super().__init__()
        self.raw = raw
        self.job = job
        self.count = 0
        self.start = 0
        self.limit = 0
        self.what = ""

    def readable(self) -> bool:
        return True

    def window(self, size: int, what: str) -> None:
        """Allow ``size`` more bytes for ``what`` (a header, a member's data)."""
        self.start, self.limit, self.what = self.count, self.count + size, what

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > _BLOCK:
            size = _BLOCK
        data = self.raw.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise ZooError(
                f"{self.job.where()}: {self.what} runs past {self.limit - self.start} bytes: "
                f"a forged archive, refused; {_REEXPORT}"
            )
        self.job.check_stream(self.count)
        return data

    def readinto(self, buffer) -> int:  # pragma: no cover - tarfile calls read()
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
