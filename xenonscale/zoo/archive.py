"""Portable model archives: one ``.zip`` or ``.tar.gz`` per model version.

An archive holds exactly ``card.json``, ``weights.safetensors`` and the extra
files the card lists, flat, with fixed timestamps (the same version exports
to the same bytes). Reading checks every member: no folders, links or
unlisted names, and each file's sha256 against the card. No pickle: the
weights are safetensors and everything else is data.

Examples
--------
>>> from xenonscale.zoo.archive import read_archive, write_archive
>>> write_archive("model.zip", {"card.json": b"{}"})  # doctest: +SKIP
>>> read_archive("model.zip")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from collections.abc import Mapping

import fsspec

from xenonscale.errors import ConfigError, ZooError, ZooIntegrityError
from xenonscale.zoo.artifacts import CARD, WEIGHTS, check_file, sha256_hex

__all__ = ["ARCHIVE_SUFFIXES", "archive_format", "read_archive", "write_archive"]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_MAX_MEMBER = 4 << 30  # 4 GiB: refuse absurd members (decompression bombs)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


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
        import gzip

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
    path: str | os.PathLike, storage_options: dict | None = None
) -> tuple[dict, bytes, dict[str, bytes]]:
    """``(card, weights, files)`` from an archive, every member checked.

    Raises :class:`ZooError` for a malformed archive and
    :class:`~xenonscale.errors.ZooIntegrityError` when a file's sha256 differs
    from the card's.
    """
    kind = archive_format(path)
    text = os.fspath(path)
    try:
        with fsspec.open(text, "rb", **(storage_options or {})) as handle:
            data = handle.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"archive {text!r} does not exist") from exc
    try:
        members = _zip_members(data) if kind == "zip" else _tar_members(data)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise ZooError(f"{text!r} is not a readable {kind} archive ({exc})") from exc
    for required in (CARD, WEIGHTS):
        if required not in members:
            raise ZooError(f"{text!r} has no {required}: it is not a xenonscale zoo archive")
    try:
        card = json.loads(members.pop(CARD))
    except ValueError as exc:
        raise ZooError(f"{text!r}: {CARD} is not valid JSON ({exc})") from exc
    weights = members.pop(WEIGHTS)
    if not isinstance(card, dict) or sha256_hex(weights) != card.get("weights_sha256"):
        raise ZooIntegrityError(
            f"{text!r}: {WEIGHTS} has sha256 {sha256_hex(weights)} but the card records "
            f"{card.get('weights_sha256') if isinstance(card, dict) else None}: the archive "
            "was modified or corrupted; export it again"
        )
    listed = card.get("files") or {}
    if set(members) != set(listed):
        raise ZooError(
            f"{text!r} holds files {sorted(members)} but its card lists {sorted(listed)}: "
            "export it again"
        )
    for name, content in members.items():
        check_file(name, content)
        if sha256_hex(content) != listed[name]:
            raise ZooIntegrityError(
                f"{text!r}: {name} has sha256 {sha256_hex(content)} but the card records "
                f"{listed[name]}: the archive was modified or corrupted; export it again"
            )
    return card, weights, members


def _check_name(name: str, seen: dict) -> None:
    if "/" in name or "\\" in name or name in ("", ".", "..") or name in seen:
        raise ZooError(f"archive member {name!r}: expected flat, unique file names")


def _zip_members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            _check_name(info.filename, members)
            if info.is_dir() or info.file_size > _MAX_MEMBER:
                raise ZooError(f"archive member {info.filename!r}: not a plain file")
            members[info.filename] = archive.read(info)
    return members


def _tar_members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for info in archive:
            _check_name(info.name, members)
            if not info.isfile() or info.size > _MAX_MEMBER:
                raise ZooError(f"archive member {info.name!r}: not a plain file")
            handle = archive.extractfile(info)
            members[info.name] = handle.read() if handle else b""
    return members
