"""Create a FeatureStore and write whole, chunk-aligned row regions into it.

Regions never share a chunk, so many workers write at once without locks.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> import pandas as pd
>>> import zarr
>>> from xenonscale.store.layout import StoreLocation
>>> from xenonscale.store.writer import create_store, write_region
>>> loc = StoreLocation(str(Path(tempfile.mkdtemp()) / "example.zarr"))
>>> create_store(loc, rows=10, labels=["a"], extras={}, chunk_rows=5, attrs={})
>>> frame = pd.DataFrame({"id": ["5", "6", "7", "8", "9"], "input": ["Fe", "Co", "Ni", "Cu", "Zn"]})
>>> write_region(loc, 5, frame, np.arange(5.0)[:, None], np.ones(5, bool), extras={})
>>> zarr.open_group(loc.zarr_store(), mode="r")["features"][5:, 0].tolist()
[0.0, 1.0, 2.0, 3.0, 4.0]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from xenonscale.errors import ConfigError, StoreError
from xenonscale.store.layout import (
    BOOKKEEPING,
    COMPOSITION_ELEMENT,
    COMPOSITION_ENCODING,
    COMPOSITION_FRACTION,
    FEATURE_VALUES,
    FEATURES,
    StoreLocation,
    feature_encoding,
)

__all__ = [
    "COMPRESSIONS",
    "as_text",
    "composition_attrs",
    "create_store",
    "encode_features",
    "extra_kinds",
    "feature_attrs",
    "feature_dtype",
    "finalize_store",
    "inputs_as_text",
    "write_region",
]

TEXT = "text"
NUMBER = "number"


#: ``--compression`` choices: Blosc codecs for every array of the store.
#: ``lz4`` (default) encodes float32 features at ~2-3 µs/row (406 features),
#: ``zstd`` is ~20 % smaller and ~2× slower to write; ``none`` stores raw bytes.
#: Integer features (bits, counts) are bit-shuffled zstd (level 1, 256 KiB Blosc blocks)
#: under ``lz4`` and ``zstd`` alike: on 10,000 MOSES ECFP rows that is 59 B/row (bit-shuffled
#: lz4: 118; float32 lz4: 500) for ~8 µs/row of compression CPU (float32 lz4: ~6), and it
#: decompresses faster than the float32 array; ``none`` stores them raw.
COMPRESSIONS = ("lz4", "zstd", "none")
#: Unsigned integer widths a counts store may take, smallest first.
_COUNT_DTYPES = ("uint8", "uint16", "uint32")
#: The width of a counts store whose featurizer declares no ``feature_max``.
DEFAULT_COUNT_DTYPE = "uint16"
#: Bytes of featurizer values :func:`encode_features` converts and checks at a time.
_ENCODE_BLOCK = 1 << 18


def _compressor(compression: str = "lz4"):
    import zarr

    if compression not in COMPRESSIONS:
        raise ConfigError(
            f"--compression {compression!r} is unknown: use one of {', '.join(COMPRESSIONS)}"
        )
    if compression == "none":
        return None
    level = 5 if compression == "lz4" else 1
    return zarr.codecs.BloscCodec(cname=compression, clevel=level, shuffle="shuffle")


def _feature_compressor(compression: str, dtype: np.dtype):
    """The codec of ``features``: the store's own for float32, bit-shuffled zstd for integers."""
    import zarr

    if dtype.kind == "f" or compression == "none":
        return _compressor(compression)
    return zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle", blocksize=1 << 18)


def feature_dtype(encoding: str, feature_max: int | None = None) -> np.dtype:
    """The dtype a store gives ``features`` of an encoding (the rule, stated once).

    ``float32`` → float32; ``bits`` → uint8; ``counts`` → the smallest of
    uint8, uint16, uint32 that holds ``feature_max`` (the featurizer's declared
    largest value), uint16 when it declares none. Whatever the width, every
    region is checked before it is written (:func:`encode_features`): a value
    that does not fit fails the job, it is never clipped.

    >>> [str(feature_dtype(e)) for e in ("float32", "bits", "counts")]
    ['float32', 'uint8', 'uint16']
    >>> str(feature_dtype("counts", 200)), str(feature_dtype("counts", 70_000))
    ('uint8', 'uint32')
    """
    if encoding not in FEATURE_VALUES:
        raise ConfigError(
            f"feature encoding {encoding!r} is unknown: use one of {', '.join(FEATURE_VALUES)}"
        )
    if encoding == "float32":
        return np.dtype("float32")
    if encoding == "bits":
        return np.dtype("uint8")
    if feature_max is None:
        return np.dtype(DEFAULT_COUNT_DTYPE)
    for name in _COUNT_DTYPES:
        if int(feature_max) <= np.iinfo(name).max:
            return np.dtype(name)
    raise ConfigError(
        f"feature_max={feature_max!r} does not fit in uint32: store these counts as float32 "
        "(feature_encoding='float32')"
    )


def feature_attrs(encoding: str, feature_max: int | None = None) -> dict[str, str]:
    """The store attributes that say how ``features`` hold their values.

    >>> feature_attrs("bits")["feature_dtype"]
    'uint8'
    """
    return {
        "feature_encoding": encoding,
        "feature_dtype": str(feature_dtype(encoding, feature_max)),
        "feature_values": FEATURE_VALUES[encoding],
    }


def encode_features(
    values: np.ndarray,
    ok: np.ndarray,
    dtype: np.dtype | str,
    encoding: str = "float32",
    *,
    first_row: int = 0,
    labels: object = None,
) -> np.ndarray:
    """Featurizer values (float, NaN on failed rows) as a store of ``dtype`` keeps them.

    float32: a cast. An integer dtype: the rows whose ``ok`` is False become 0
    and every other value must come back unchanged from the cast (an integer in
    ``0 .. max`` of the dtype; 0 or 1 for ``bits``), else :class:`StoreError`
    names the first row (``first_row`` + its offset), its feature (``labels``,
    indexable, read only then) and the value: nothing is ever clipped.

    >>> values = np.array([[0.0, 1.0], [np.nan, np.nan], [1.0, 1.0]])
    >>> encode_features(values, np.array([True, False, True]), "uint8", "bits").tolist()
    [[0, 1], [0, 0], [1, 1]]
    >>> encode_features(np.array([[300.0]]), np.array([True]), "uint8", "counts", first_row=7)
    Traceback (most recent call last):
    ...
    xenonscale.errors.StoreError: row 7, feature 0: 300.0 does not fit this counts store (uint8: integers 0..255); nothing is clipped: featurize it with --feature-encoding float32 (feature_encoding='float32')
    """  # noqa: E501
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    ok = np.asarray(ok, dtype=bool)
    out = np.empty(values.shape, dtype)
    high = 1 if encoding == "bits" else int(np.iinfo(dtype).max)
    step = max(1, _ENCODE_BLOCK // max(1, values.shape[1] * values.itemsize))
    with np.errstate(invalid="ignore", over="ignore"):
        for lo in range(0, len(values), step):  # blocks that stay in the CPU cache
            block, target = values[lo : lo + step], out[lo : lo + step]
            if high == 1 and dtype.itemsize == 1:
                np.not_equal(block, 0, out=target.view(bool))  # 0/1; anything else differs
                changed = block != target
            else:
                np.copyto(target, block, casting="unsafe")
                changed = block != target  # a fraction, a sign or an overflow
                if high < np.iinfo(dtype).max:
                    changed |= target > high
            if changed.any():  # failed rows (NaN) differ too: only ok rows count
                bad = np.flatnonzero(changed.any(axis=1) & ok[lo : lo + step])
                if len(bad):
                    row = int(bad[0])
                    column = int(np.flatnonzero(changed[row])[0])
                    label = repr(str(labels[column])) if labels is not None else str(column)
                    raise StoreError(
                        f"row {first_row + lo + row}, feature {label}: "
                        f"{block[row, column].item()!r} does not fit this {encoding} store "
                        f"({dtype}: integers 0..{high}); nothing is clipped: featurize it with "
                        "--feature-encoding float32 (feature_encoding='float32')"
                    )
    out[~ok] = 0
    return out


def extra_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """``{column: "number" | "text"}`` for the extra columns of a source frame."""
    kinds = {}
    for name in frame.columns:
        if name in ("row", "id", "input"):
            continue
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(
            frame[name]
        )
        kinds[str(name)] = NUMBER if numeric else TEXT
    return kinds


def create_store(
    location: StoreLocation,
    *,
    rows: int,
    labels: list[str],
    extras: Mapping[str, str],
    chunk_rows: int,
    attrs: Mapping[str, object],
    compression: str = "lz4",
    composition_slots: int | None = None,
    feature_encoding: str = "float32",
    feature_max: int | None = None,
) -> None:
    """Create the group and its empty arrays (``rows`` samples × ``len(labels)``).

    ``feature_encoding`` (``float32``, ``bits``, ``counts``) and ``feature_max``
    give ``features`` its dtype (:func:`feature_dtype`); integer features are
    bit-shuffled zstd and 0 until written, float32 ones NaN. The attributes
    say which (:func:`feature_attrs`).

    With ``composition_slots`` (composition stores) it also creates
    ``composition_element`` (int16) and ``composition_fraction`` (float32), both
    ``[sample, element_slot]``, zero-filled, and the ``composition`` attribute
    (its ``rows_without_slots`` is None until :func:`finalize_store`).
    """
    import zarr

    codec = _compressor(compression)
    dtype = feature_dtype(feature_encoding, feature_max)
    _clear_except_bookkeeping(location)
    group = zarr.open_group(location.zarr_store(), mode="a", zarr_format=3)
    chunk = max(1, min(chunk_rows, rows)) if rows else 1
    group.create_array(
        FEATURES,
        shape=(rows, len(labels)),
        chunks=(chunk, max(1, len(labels))),
        dtype=dtype,
        fill_value=np.nan if dtype.kind == "f" else 0,
        compressors=_feature_compressor(compression, dtype),
        dimension_names=["sample", "feature"],
    )
    feature = group.create_array(
        "feature",
        shape=(len(labels),),
        chunks=(max(1, len(labels)),),
        dtype=str,
        dimension_names=["feature"],
    )
    feature[:] = np.asarray(labels, dtype=object)
    sample = group.create_array(
        "sample",
        shape=(rows,),
        chunks=(chunk,),
        dtype="int64",
        dimension_names=["sample"],
        compressors=codec,
    )
    if rows:
        sample[:] = np.arange(rows, dtype=np.int64)
    group.create_array(
        "ok",
        shape=(rows,),
        chunks=(chunk,),
        dtype="bool",
        fill_value=False,
        dimension_names=["sample"],
    )
    for name in ("id", "input"):
        group.create_array(
            name,
            shape=(rows,),
            chunks=(chunk,),
            dtype=str,
            fill_value="",
            dimension_names=["sample"],
            compressors=codec,
        )
    for name, kind in extras.items():
        if kind == NUMBER:
            group.create_array(
                name,
                shape=(rows,),
                chunks=(chunk,),
                dtype="float64",
                fill_value=np.nan,
                dimension_names=["sample"],
                compressors=codec,
            )
        else:
            group.create_array(
                name,
                shape=(rows,),
                chunks=(chunk,),
                dtype=str,
                fill_value="",
                dimension_names=["sample"],
                compressors=codec,
            )
    composition = {}
    if composition_slots is not None:
        for name, dtype in ((COMPOSITION_ELEMENT, "int16"), (COMPOSITION_FRACTION, "float32")):
            group.create_array(
                name,
                shape=(rows, composition_slots),
                chunks=(chunk, composition_slots),
                dtype=dtype,
                fill_value=0,
                compressors=codec,
                dimension_names=["sample", "element_slot"],
            )
        composition = composition_attrs(composition_slots)
    features = feature_attrs(feature_encoding, feature_max)
    group.attrs.update({**attrs, **features, **composition, "complete": False})


def composition_attrs(slots: int, rows_without_slots: int | None = None) -> dict[str, object]:
    """The ``composition`` attribute of a composition store.

    ``rows_without_slots`` counts the ok rows whose composition did not fit in
    ``slots`` (their slots are zero); None until the job finishes.

    >>> composition_attrs(16, 0)["composition"]["arrays"]
    ['composition_element', 'composition_fraction']
    """
    return {
        "composition": {
            "slots": int(slots),
            "arrays": [COMPOSITION_ELEMENT, COMPOSITION_FRACTION],
            "encoding": COMPOSITION_ENCODING,
            "rows_without_slots": rows_without_slots,
        }
    }


def _clear_except_bookkeeping(location: StoreLocation) -> None:
    """Remove an interrupted creation's Zarr content, keeping ``_xenonscale/`` (the lock).

    Only Zarr metadata and Zarr nodes (folders holding a ``zarr.json``) go: the
    engine checked with :func:`~xenonscale.store.layout.store_state` that the
    folder holds nothing else, and this never removes anything it cannot
    recognize as Zarr.
    """
    fs = location.fs
    if not fs.exists(location.root):
        return
    for path in fs.ls(location.root, detail=False):
        path = path.rstrip("/")
        name = path.rsplit("/", 1)[-1]
        if path == location.root or name == BOOKKEEPING:
            continue
        if name == "zarr.json" or fs.exists(f"{path}/zarr.json"):
            fs.rm(path, recursive=True)


def _as_text(values: pd.Series) -> np.ndarray:
    return np.asarray(
        [v if isinstance(v, str) else ("" if _is_missing(v) else str(v)) for v in values],
        dtype=object,
    )


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def as_text(values: pd.Series) -> np.ndarray:
    """Values as the store keeps text: strings as given, missing as ``""``, others ``str``."""
    return _as_text(values)


def inputs_as_text(inputs: pd.Series) -> np.ndarray:
    """Inputs as the store keeps them: strings as given, mappings (structure dicts) as JSON."""
    return _inputs_as_text(inputs)


def write_region(
    location: StoreLocation,
    start: int,
    frame: pd.DataFrame,
    values: np.ndarray,
    ok: np.ndarray,
    extras: Mapping[str, str],
    arrays: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Write rows ``start ..< start + len(frame)`` of every array (one worker, no lock).

    ``arrays`` gives further ``[rows, ...]`` arrays by name (the composition
    slots of a composition store), written into the arrays of that name.
    ``values`` are encoded as the store keeps features (:func:`encode_features`:
    a bits or counts store gets 0 on the rows whose ``ok`` is False, and a value
    it cannot hold raises :class:`StoreError` before anything is written).
    """
    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+")
    stop = start + len(frame)
    features = group[FEATURES]
    encoded = encode_features(
        values, ok, features.dtype, feature_encoding(group.attrs.asdict()),
        first_row=start, labels=_Labels(group),
    )  # fmt: skip
    features[start:stop] = encoded
    for name, data in (arrays or {}).items():
        group[name][start:stop] = data
    group["ok"][start:stop] = ok
    group["id"][start:stop] = _as_text(frame["id"])
    group["input"][start:stop] = _inputs_as_text(frame["input"])
    for name, kind in extras.items():
        column = frame[name] if name in frame.columns else pd.Series([None] * len(frame))
        if kind == NUMBER:
            data = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
        else:
            data = _as_text(column)
        group[name][start:stop] = data


class _Labels:
    """A store's feature labels, read only when an error message names one."""

    def __init__(self, group) -> None:
        self.group = group

    def __getitem__(self, column: int) -> str:
        return str(self.group["feature"][column])


def _inputs_as_text(inputs: pd.Series) -> np.ndarray:
    """Inputs as stored text: strings as given, mappings (structure dicts) as JSON."""
    import json

    out = []
    for value in inputs:
        if isinstance(value, str):
            out.append(value)
        elif _is_missing(value):
            out.append("")
        elif isinstance(value, Mapping):
            out.append(json.dumps(value, default=str))
        else:
            out.append(str(value))
    return np.asarray(out, dtype=object)


def finalize_store(location: StoreLocation, errors: pd.DataFrame, attrs: Mapping) -> None:
    """Write the error table subgroup, final attrs, and consolidated metadata."""
    import warnings

    import zarr

    group = zarr.open_group(location.zarr_store(), mode="r+", use_consolidated=False)
    if "errors" in group:
        del group["errors"]
    sub = group.create_group("errors")
    n = len(errors)
    chunk = max(1, min(n, 100_000))
    sub.create_array("row", shape=(n,), chunks=(chunk,), dtype="int64")
    sub.create_array("input", shape=(n,), chunks=(chunk,), dtype=str, fill_value="")
    sub.create_array("error", shape=(n,), chunks=(chunk,), dtype=str, fill_value="")
    if n:
        sub["row"][:] = errors["row"].to_numpy(dtype=np.int64)
        sub["input"][:] = _as_text(errors["input"])
        sub["error"][:] = _as_text(errors["error"])
    group.attrs.update({**attrs, "complete": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(location.zarr_store())
