"""Find a dataset file (mirror, cache, download), check it, and read it.

Resolution order of :func:`fetch`:

1. the local mirror ``data_dir`` (argument, else ``$XENONSCALE_DATA_DIR``),
   at the registered relative path, e.g. ``<mirror>/compositions/matbench_glass.csv``;
2. the cache, ``<cache_dir>/datasets/<path>`` (``cache_dir`` argument, else
   ``$XENONSCALE_CACHE_DIR``, else ``~/.cache/xenonscale``);
3. a download of the dataset's public URL with pooch into that cache path.

Every file is checked against the registry's SHA-256 of its *decompressed*
content. Hashes are remembered in ``<cache_dir>/datasets/sha256-memo.json``
keyed by (absolute path, size, mtime), so a large mirror file is hashed once.

Examples
--------
>>> from xenonscale.datasets import fetch, load
>>> path = fetch("matbench_steels_yield")  # doctest: +REQUIRES_DATA
>>> load("matbench_steels_yield").shape
(312, 2)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import pandas as pd

from xenonscale import config
from xenonscale.datasets.registry import Dataset, get
from xenonscale.errors import (
    ChecksumError,
    ConfigError,
    DatasetError,
    DatasetUnavailableError,
    XenonscaleError,
)

__all__ = ["fetch", "load"]

_GZIP_MAGIC = b"\x1f\x8b"
_MEMO = "sha256-memo.json"
_CHUNK = 1 << 20
_ASE_BOOKKEEPING = ("ctime", "mtime", "user")


def fetch(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
) -> Path:
    """Return the local path of dataset ``name``: mirror, else cache, else download.

    Parameters
    ----------
    name : str
        A registered name (see :func:`~xenonscale.datasets.names`).
    data_dir : path, optional
        Local mirror; default ``$XENONSCALE_DATA_DIR`` (none when unset).
    cache_dir : path, optional
        Cache root; default ``$XENONSCALE_CACHE_DIR`` or ``~/.cache/xenonscale``.
    download : bool
        Whether a file found in neither place may be downloaded.
    verify : bool
        Check the content SHA-256 (memoised, so cheap after the first time).

    Returns
    -------
    pathlib.Path
        The mirror file or the cached file (gzip when its name ends in ``.gz``).

    Raises
    ------
    DatasetError
        Unknown name (the message lists close matches).
    ChecksumError
        The file's content does not match the registry.
    DatasetUnavailableError
        Not mirrored, not cached, and no download (none allowed, none exists
        for a derived file, or it failed: offline?).

    Thread/process safety: safe to call concurrently; a download lands in a
    private temporary file that is renamed into the cache atomically.

    Examples
    --------
    With ``download=False`` only the mirror and the cache are looked at:

    >>> fetch("esol", download=False).name  # doctest: +REQUIRES_DATA
    'esol.csv'
    """
    dataset = get(name)
    cache = config.cache_dir(cache_dir) / "datasets"
    mirror = config.data_dir(data_dir)
    candidates = [mirror / dataset.path] if mirror is not None else []
    candidates.append(cache / dataset.path)
    for path in candidates:
        if path.is_file():
            if verify:
                _check(dataset, path, cache)
            return path
    if not download:
        raise _unavailable(dataset, candidates, "download=False was given")
    if dataset.url is None:
        raise _unavailable(dataset, candidates, "")
    return _download(dataset, cache, candidates, verify=verify)


def load(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    verify: bool = True,
    **read_kwargs: Any,
) -> pd.DataFrame:
    """Read dataset ``name`` into a :class:`pandas.DataFrame` (via :func:`fetch`).

    ``read_kwargs`` go to the pandas reader (``pandas.read_csv`` for ``csv``
    and ``smi``, ``pandas.read_json`` for ``json-split``), e.g. ``nrows=1000``
    or ``usecols=[...]``. gzip is read transparently. ``smi`` files give the
    columns ``smiles`` and ``name``; ``ase-json`` gives one row per structure
    (``id``, ``numbers``, ``positions``, ``cell``, ``pbc`` and the key-value pairs).

    Examples
    --------
    >>> load("matbench_expt_gap").columns.tolist()  # doctest: +REQUIRES_DATA
    ['formula', 'target']
    """
    dataset = get(name)
    path = fetch(name, data_dir=data_dir, cache_dir=cache_dir, download=download, verify=verify)
    try:
        return _READERS[dataset.reader](dataset, path, read_kwargs)
    except XenonscaleError:
        raise
    except (ValueError, OSError, EOFError, KeyError) as exc:
        raise DatasetError(
            f"cannot read dataset {name!r} from {str(path)!r} as {dataset.reader!r}: {exc}. "
            "Check the read keyword arguments, or delete a corrupt cached copy and fetch again."
        ) from exc


# -- checksums ---------------------------------------------------------------


@contextmanager
def _open_content(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for reading its content, gunzipping when it is gzip data."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped
        else:
            yield raw


def content_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the file's decompressed content (gzip detected by magic bytes).

    Examples
    --------
    >>> import gzip, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.txt").write_bytes(b"x")
    >>> _ = (d / "a.txt.gz").write_bytes(gzip.compress(b"x"))
    >>> content_sha256(d / "a.txt") == content_sha256(d / "a.txt.gz")
    True
    """
    digest = hashlib.sha256()
    with _open_content(Path(path)) as stream:
        for block in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _memo_key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_memo(cache: Path) -> dict[str, str]:
    try:
        memo = json.loads((cache / _MEMO).read_text())
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _write_memo(cache: Path, key: str, digest: str) -> None:
    """Add one entry, atomically (temporary file + rename); a read-only cache is skipped."""
    memo = _read_memo(cache)
    memo[key] = digest
    try:
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".memo-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(memo, handle, indent=0, sort_keys=True)
        os.replace(tmp, cache / _MEMO)
    except OSError:
        return  # the hash is simply computed again next time


def _check(dataset: Dataset, path: Path, cache: Path) -> None:
    """Raise :class:`ChecksumError` unless ``path``'s content hash is the registry's."""
    key = _memo_key(path)
    actual = _read_memo(cache).get(key)
    if actual is None:
        try:
            actual = content_sha256(path)
        except (OSError, EOFError) as exc:
            raise ChecksumError(
                f"dataset {dataset.name!r}: cannot read {str(path)!r} to check it ({exc}); "
                "replace the file with an intact copy"
            ) from exc
        _write_memo(cache, key, actual)
    if actual != dataset.sha256:
        raise ChecksumError(
            f"dataset {dataset.name!r}: file {str(path)!r} has content sha256 {actual!r}, "
            f"expected {dataset.sha256!r}. Replace it with the original file (or delete a "
            "cached copy to download it again); verify=False skips the check."
        )


# -- download ----------------------------------------------------------------


def _unavailable(dataset: Dataset, looked: list[Path], why: str) -> DatasetUnavailableError:
    where = ", ".join(repr(str(p)) for p in looked)
    if dataset.url is None:
        source = (
            f"it has no public download URL (a derived file: {dataset.origin}), so it must "
            "come from a mirror"
        )
    else:
        source = f"its URL is {dataset.url!r} ({why})"
    return DatasetUnavailableError(
        f"dataset {dataset.name!r} is unavailable: not found at {where}; {source}. Fix: set "
        f"{config.DATA_DIR_ENV} (or pass data_dir=) to a mirror laid out like ../shared/data "
        f"that holds {dataset.path!r}, or go online so it can be downloaded."
    )


def _download(dataset: Dataset, cache: Path, looked: list[Path], *, verify: bool) -> Path:
    """Download into a private temporary folder, check, then move into the cache."""
    import pooch

    target = cache / dataset.path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
    try:
        try:
            raw = pooch.retrieve(
                dataset.url, known_hash=None, fname="raw", path=tmp_dir, progressbar=False
            )
        except (OSError, ValueError) as exc:
            raise _unavailable(dataset, looked, f"download failed: {exc}") from exc
        try:
            staged = _match_compression(Path(raw), tmp_dir / target.name)
            actual = content_sha256(staged)
        except (OSError, EOFError) as exc:
            raise ChecksumError(
                f"dataset {dataset.name!r}: the download of {dataset.url!r} is not readable "
                f"({exc}); try again, or put the file in a mirror under {config.DATA_DIR_ENV}"
            ) from exc
        if verify and actual != dataset.sha256:
            raise ChecksumError(
                f"dataset {dataset.name!r}: the download of {dataset.url!r} has content "
                f"sha256 {actual!r}, expected {dataset.sha256!r}: the origin changed or the "
                f"download is corrupt. Put the original file in a mirror under "
                f"{config.DATA_DIR_ENV} instead (or pass verify=False to accept it)."
            )
        os.replace(staged, target)
        _write_memo(cache, _memo_key(target), actual)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _match_compression(raw: Path, staged: Path) -> Path:
    """Write ``raw`` to ``staged``, gzip-compressed exactly when ``staged`` ends in ``.gz``."""
    with open(raw, "rb") as handle:
        is_gzip = handle.read(2) == _GZIP_MAGIC
    if is_gzip == (staged.suffix == ".gz"):
        os.replace(raw, staged)
    elif is_gzip:
        with gzip.open(raw, "rb") as src, open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    else:
        with open(raw, "rb") as src, gzip.open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    return staged


# -- readers -----------------------------------------------------------------


def _read_csv(dataset: Dataset, path: Path, kwargs: dict[str, Any]) -> pd.DataFrame:
    if dataset.index is None or "index_col" in kwargs:
        return pd.read_csv(path, **kwargs)
    frame = pd.read_csv(path, index_col=0, **kwargs)
    frame.index.name = dataset.index
    return frame


def _read_json_split(dataset: Dataset, path: Path, kwargs: dict[str, Any]) -> pd.DataFrame:
    return pd.read_json(path, **{"orient": "split", **kwargs})


def _read_smi(dataset: Dataset, path: Path, kwargs: dict[str, Any]) -> pd.DataFrame:
    options = {"sep": "\t", "header": None, "names": ["smiles", "name"], "dtype": {"name": str}}
    return pd.read_csv(path, **{**options, **kwargs})


def _read_ase_json(dataset: Dataset, path: Path, kwargs: dict[str, Any]) -> pd.DataFrame:
    if kwargs:
        raise ConfigError(
            f"dataset {dataset.name!r} (ASE database JSON) takes no read options, got "
            f"{sorted(kwargs)!r}; select rows and columns on the returned DataFrame instead"
        )
    with _open_content(path) as stream:
        database = json.load(stream)
    records = []
    for key in database.get("ids", []):
        row = {k: v for k, v in database[str(key)].items() if k not in _ASE_BOOKKEEPING}
        pairs = row.pop("key_value_pairs", {})
        records.append({"id": int(key), **pairs, **row})
    return pd.DataFrame.from_records(records).set_index("id")


_READERS = {
    "csv": _read_csv,
    "json-split": _read_json_split,
    "smi": _read_smi,
    "ase-json": _read_ase_json,
}
