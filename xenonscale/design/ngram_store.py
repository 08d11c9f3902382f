"""The portable n-gram format: a directory of JSON + Parquet (no pickle), versioned.

A model directory holds two files:

``ngram.json``
    ``format`` (``"xenonscale-ngram"``), ``version`` (:data:`FORMAT_VERSION`),
    ``order``, ``vocabulary`` (token strings; a token id is an index into
    it), ``begin``/``end`` tokens, ``key_scheme`` (how a context key is
    computed, :mod:`xenonscale.design.keys`), ``contexts``/``entries``
    (sizes), ``files``, proposal ``settings``, training ``provenance``
    (SMILES counted and skipped, augmentation, seed, source, versions) and
    ``written_by``.
``counts.parquet``
    One row per (context, next token), sorted: ``context`` (``uint64``, the
    52-bit context key), ``token`` (``uint16``), ``count`` (``uint32``,
    saturated). Zstandard-compressed.

A reader of another version refuses with a :class:`~xenonscale.errors.DesignError`
that names the version; anything that can read JSON and Parquet can read a
model (the key scheme says how to look contexts up).

Examples
--------
>>> from xenonscale.design.ngram_store import FORMAT, FORMAT_VERSION
>>> FORMAT, FORMAT_VERSION
('xenonscale-ngram', 1)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from xenonscale import __version__
from xenonscale.design.keys import TOKEN_BITS
from xenonscale.design.tokens import BEGIN, END
from xenonscale.errors import DesignError

__all__ = ["FORMAT", "FORMAT_VERSION", "KEY_SCHEME", "read_ngram", "write_ngram"]

#: ``format`` field of ``ngram.json``.
FORMAT = "xenonscale-ngram"
#: The version this code writes and reads.
FORMAT_VERSION = 1
#: How a context key is computed (stored in the header, for other readers).
KEY_SCHEME = (
    "key(k) = (a0 + sum_{j<k} blake2b64(token j back along the contracted chain, '^' past the "
    "start) * P**(j+1) + k*K) >> 12 mod 2**64, a0 = splitmix64(SEED ^ state), state = "
    "32*(depth>0) + min(open rings, 31), SEED=0x9E3779B97F4A7C15, P=0xD6E8FEB86659FD93, "
    "K=0xA0761D6478BD642F, blake2b64 = first 8 bytes (little endian) of BLAKE2b(UTF-8) "
    "(xenonscale.design.keys)"
)
HEADER = "ngram.json"
COUNTS = "counts.parquet"
_U32_MAX = np.iinfo(np.uint32).max


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_ngram(
    path: str | Path,
    *,
    order: int,
    vocabulary: list[str],
    entries: np.ndarray,
    counts: np.ndarray,
    settings: dict,
    provenance: dict,
) -> None:
    """Write a model directory (see the module docstring); ``entries`` are packed and sorted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    entries = np.asarray(entries, np.uint64)
    low = np.uint64((1 << TOKEN_BITS) - 1)
    table = pa.table(
        {
            "context": pa.array(entries >> np.uint64(TOKEN_BITS), pa.uint64()),
            "token": pa.array((entries & low).astype(np.uint16), pa.uint16()),
            "count": pa.array(np.minimum(counts, _U32_MAX).astype(np.uint32), pa.uint32()),
        }
    )
    pq.write_table(table, folder / COUNTS, compression="zstd")
    n_contexts = int(np.count_nonzero(np.diff(entries >> np.uint64(TOKEN_BITS)))) + bool(
        entries.size
    )
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "order": int(order),
        "vocabulary": list(vocabulary),
        "begin": BEGIN,
        "end": END,
        "key_scheme": KEY_SCHEME,
        "contexts": n_contexts,
        "entries": int(entries.size),
        "files": {"counts": COUNTS},
        "settings": settings,
        "provenance": provenance,
        "written_by": f"xenonscale {__version__}",
    }
    (folder / HEADER).write_text(json.dumps(header, indent=1, default=_jsonable))


def read_ngram(path: str | Path) -> dict[str, Any]:
    """``vocabulary, entries, counts, order, settings, provenance`` of a model directory.

    Raises
    ------
    DesignError
        No ``ngram.json``, another format, or a version other than
        :data:`FORMAT_VERSION` (the message names it).
    """
    import pyarrow.parquet as pq

    folder = Path(path)
    header_path = folder / HEADER
    if not header_path.is_file():
        raise DesignError(
            f"{str(path)!r} is not an n-gram directory (no {HEADER}); "
            "train one with `xenonscale ngram train`"
        )
    try:
        header = json.loads(header_path.read_text())
    except (OSError, ValueError) as exc:
        raise DesignError(f"cannot read {str(header_path)!r}: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        raise DesignError(f"{str(header_path)!r} has format {found!r}, not {FORMAT!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise DesignError(
            f"n-gram {str(path)!r} has format version {version!r}; this xenonscale reads "
            f"version {FORMAT_VERSION}: use the xenonscale that wrote it "
            f"({header.get('written_by', 'unknown')}) or retrain"
        )
    table = pq.read_table(folder / header.get("files", {}).get("counts", COUNTS))
    context = table.column("context").to_numpy().astype(np.uint64, copy=False)
    tokens = table.column("token").to_numpy().astype(np.uint64)
    return {
        "vocabulary": header["vocabulary"],
        "entries": (context << np.uint64(TOKEN_BITS)) | tokens,
        "counts": table.column("count").to_numpy(),
        "order": int(header["order"]),
        "settings": header.get("settings", {}),
        "provenance": header.get("provenance", {}),
    }
