"""Model artifacts: one folder per version, safetensors weights and a JSON card.

::

    ARTIFACTS/<name>/<version>/
        weights.safetensors    the state dict (safetensors: tensors only, no code)
        card.json              the card (written last: a folder without it is unfinished)
        <extra files>          plots and notes a trainer attached (PNG, SVG, JSON, CSV, ...)

``ARTIFACTS`` is a local folder or an fsspec URL (``s3://bucket/prefix``) read
and written with the ``storage_options`` given (credentials, endpoint). The
card records the sha256 of the weights and of every extra file; reading a
file recomputes its hash and raises :class:`~xenonscale.errors.ZooIntegrityError`
naming the file when it differs. Nothing here pickles or unpickles: extra
files that look like pickles are refused.

Guarantees: :meth:`ArtifactStore.write` never overwrites a finished version
folder (it raises :class:`~xenonscale.errors.ZooError`); readers never see a
card before the files it lists are written. Instances are thread-safe (they
only hold an fsspec file system).

Examples
--------
>>> import tempfile
>>> import torch
>>> from xenonscale.zoo.artifacts import ArtifactStore, sha256_hex, weights_to_bytes
>>> store = ArtifactStore(tempfile.mkdtemp())
>>> data = weights_to_bytes({"w": torch.ones(2)})
>>> uri = store.write("demo", 1, data, {"weights_sha256": sha256_hex(data)})
>>> store.read_weights(uri, sha256_hex(data))["w"]
tensor([1., 1.])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec

from xenonscale.errors import ConfigError, ZooError, ZooIntegrityError

__all__ = [
    "CARD",
    "FILE_SUFFIXES",
    "WEIGHTS",
    "ArtifactStore",
    "check_file",
    "check_file_name",
    "looks_like_pickle",
    "sha256_hex",
    "weights_from_bytes",
    "weights_to_bytes",
]

WEIGHTS = "weights.safetensors"
CARD = "card.json"
#: Extra files a version may carry (figures, tables, notes): never code or pickles.
FILE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".json", ".csv", ".txt", ".md", ".html")
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def weights_to_bytes(state_dict: Mapping[str, Any]) -> bytes:
    """Serialize a state dict with safetensors (deterministic for equal tensors)."""
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous().clone() for key, value in state_dict.items()}
    return save(tensors, metadata={"format": "pt"})


def weights_from_bytes(data: bytes) -> dict:
    """The state dict stored by :func:`weights_to_bytes` (CPU tensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as exc:
        raise ZooIntegrityError(f"not a safetensors file ({exc}): re-register the model") from exc


def looks_like_pickle(data: bytes) -> bool:
    """True for a pickle stream or a zip holding one (``torch.save``'s format)."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    return data[:2] == b"PK" and b".pkl" in data


def check_file_name(name: object) -> str:
    """Validate an extra file's name (plain, a known suffix, not a reserved name); return it.

    >>> check_file_name("parity.png")
    'parity.png'
    """
    if not isinstance(name, str) or not _FILE_NAME.fullmatch(name) or name in (CARD, WEIGHTS):
        raise ConfigError(
            f"file name {name!r}: use a plain name such as 'parity.png' (letters, digits, "
            f"'.', '_', '-'; not {CARD!r} or {WEIGHTS!r})"
        )
    if not name.lower().endswith(FILE_SUFFIXES):
        raise ConfigError(
            f"file {name!r}: a zoo keeps figures and notes only, with a suffix in "
            f"{', '.join(FILE_SUFFIXES)}"
        )
    return name


def check_file(name: object, data: bytes | str | os.PathLike) -> bytes:
    """Validate one extra file: a plain name with a known suffix, no pickle; return its bytes.

    ``data`` is the content (bytes) or a local path to read.
    """
    name = check_file_name(name)
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if not path.is_file():
            raise ConfigError(f"file {name!r}: {str(path)!r} does not exist")
        data = path.read_bytes()
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ConfigError(f"file {name!r}: give bytes or a path, not {type(data).__name__}")
    data = bytes(data)
    if looks_like_pickle(data):
        raise ConfigError(f"file {name!r} looks like a pickle: a zoo never stores pickles")
    return data


class ArtifactStore:
    """Version folders under a root URL (see the module docstring).

    Parameters
    ----------
    root : str
        Local folder (created on first write) or fsspec URL such as ``s3://bucket/zoo``.
    storage_options : dict, optional
        fsspec options (``key``, ``secret``, ``client_kwargs={"endpoint_url": ...}``).
    """

    def __init__(self, root: str | os.PathLike, storage_options: dict | None = None):
        self.storage_options = dict(storage_options or {})
        text = os.fspath(root)
        if "://" not in text:
            text = os.path.abspath(os.path.expanduser(text))
        self._fs, path = fsspec.core.url_to_fs(text, **self.storage_options)
        self._local = "file" in _protocols(self._fs)
        self.root = self._url(path.rstrip("/"))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def _url(self, path: str) -> str:
        return path if self._local else self._fs.unstrip_protocol(path)

    def _path(self, uri: str, *parts: str) -> str:
        path = self._fs._strip_protocol(uri).rstrip("/")
        return "/".join([path, *parts])

    def uri(self, name: str, version: int) -> str:
        """Where ``name@version`` lives (a path or URL)."""
        return f"{self.root}/{name}/{version}"

    def write(
        self,
        name: str,
        version: int,
        weights: bytes,
        card: dict,
        files: Mapping[str, bytes] | None = None,
    ) -> str:
        """Write a version folder (files, weights, then the card); return its URI.

        Raises :class:`ZooError` if the folder already holds a card (two catalogs
        sharing one artifacts location?).
        """
        uri = self.uri(name, version)
        fs = self._fs
        if fs.exists(self._path(uri, CARD)):
            raise ZooError(
                f"artifacts for {name}@{version} already exist at {uri!r}: is another catalog "
                "using this artifacts location? Give each catalog its own artifacts URL"
            )
        try:
            fs.makedirs(self._path(uri), exist_ok=True)
            for filename, data in (files or {}).items():
                fs.pipe_file(self._path(uri, filename), data)
            fs.pipe_file(self._path(uri, WEIGHTS), weights)
            fs.pipe_file(self._path(uri, CARD), json.dumps(card, indent=1).encode())
        except Exception:
            with contextlib.suppress(Exception):
                self.remove(uri)  # no half-written folder left behind
            raise
        return uri

    def read_bytes(self, uri: str, filename: str, sha256: str | None = None) -> bytes:
        """A file of a version folder; with ``sha256`` its hash is checked."""
        path = self._path(uri, filename)
        try:
            data = self._fs.cat_file(path)
        except FileNotFoundError as exc:
            raise ZooIntegrityError(
                f"{self._url(path)!r} is missing: the artifacts were moved or deleted; "
                "remove the version from the zoo and register or import it again"
            ) from exc
        if sha256 is not None and sha256_hex(data) != sha256:
            raise ZooIntegrityError(
                f"{self._url(path)!r} has sha256 {sha256_hex(data)} but the zoo recorded "
                f"{sha256}: the file was modified or corrupted; remove the version and "
                "register or import it again"
            )
        return data

    def read_card(self, uri: str) -> dict:
        """The ``card.json`` of a version folder."""
        data = self.read_bytes(uri, CARD)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ZooIntegrityError(f"{uri}/{CARD} is not valid JSON ({exc})") from exc

    def read_weights(self, uri: str, sha256: str) -> dict:
        """The state dict, after checking the weights file against ``sha256``."""
        return weights_from_bytes(self.read_bytes(uri, WEIGHTS, sha256))

    def listdir(self, uri: str) -> list[str]:
        """File names in a version folder (empty if it does not exist)."""
        path = self._path(uri)
        if not self._fs.exists(path):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(path, detail=False))

    def remove(self, uri: str) -> None:
        """Delete a version folder (no error if it is already gone)."""
        path = self._path(uri)
        if self._fs.exists(path):
            self._fs.rm(path, recursive=True)


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
