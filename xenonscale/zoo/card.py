"""Model cards: the JSON that says what a zoo model is and how to feed it.

Fields a trainer gives (checked by :func:`validate_card`):

``model``
    ``PropertyModel.config`` (filled in from the model when absent; must equal it).
``featurizer``
    A :class:`~xenonscale.featurize.registry.FeaturizerSpec` as a dict (or the
    spec itself), or None for a model trained on arbitrary features. Required key.
``targets``
    Target column names, one per model output. Required.
``units``
    ``{target: unit}`` (a plain string is accepted for one target).
``feature_labels``
    The featurizer's labels at training time (one per model input).
``element_tables``
    ``[{"name": ..., "sha256": ...}]`` of the element tables used in training
    (a feature store's ``element_tables`` attribute has this form).
``metrics``, ``split``, ``training_data`` (``{"url": ..., "fingerprint": ...}``)
    Free-form JSON objects; numeric ``metrics`` appear in ``zoo.list()``.

Fields the zoo sets: ``name``, ``version``, ``created`` (UTC ISO),
``weights_sha256``, ``files`` (``{file: sha256}``), ``sizes`` (``{member: bytes}``
of the weights and every file: an import checks each archive member against
it before decompressing; absent on cards older than that check), ``versions`` (package
versions; a trainer's own ``versions`` entries are kept and completed), and
``imported_from`` (``"name@version"``) for imported models. Other keys are
kept as they are (notes, descriptions). A card is strict JSON: NaN and
infinities become null (an undefined metric), numpy scalars and arrays become
numbers and lists, paths become strings; other objects are refused.

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.zoo.card import featurizer_fields
>>> spec = FeaturizerSpec.parse("composition", "classic", elements="xenonpy58")
>>> fields = featurizer_fields(spec)  # doctest: +REQUIRES_DATA
>>> sorted(fields)
['element_tables', 'feature_labels', 'featurizer']
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from xenonscale.errors import ConfigError
from xenonscale.featurize.registry import FeaturizerSpec, element_tables
from xenonscale.versions import installed_versions

__all__ = [
    "SET_BY_ZOO",
    "featurizer_fields",
    "featurizer_spec",
    "key_metrics",
    "package_versions",
    "validate_card",
]

#: Card keys the zoo writes itself (a trainer's values for them are replaced).
SET_BY_ZOO = ("name", "version", "created", "weights_sha256", "files", "sizes")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PACKAGES = ("xenonscale", "numpy", "torch", "safetensors")


def package_versions(recorded: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Versions of Python and the packages that produced (and can read) the weights.

    ``recorded`` (the trainer's own record, e.g. with lightning) wins over the
    versions found in this process.
    """
    versions = {"python": platform.python_version()}
    versions |= installed_versions(*_PACKAGES, missing="unknown")
    return {**versions, **{str(k): str(v) for k, v in (recorded or {}).items()}}


def featurizer_spec(value: Any):
    """A :class:`FeaturizerSpec` from a card's ``featurizer`` (dict or spec); validated."""
    if isinstance(value, FeaturizerSpec):
        spec = value
    elif isinstance(value, Mapping):
        spec = FeaturizerSpec.from_dict(value)
    else:
        raise ConfigError(
            f"card featurizer {value!r}: give FeaturizerSpec(...).to_dict(), or None for a "
            "model trained on arbitrary features"
        )
    spec.validate()
    return spec


def featurizer_fields(spec) -> dict:
    """``featurizer``, ``feature_labels`` and ``element_tables`` for a card, from a spec.

    Builds the featurizer now: use it when the model was trained on features
    computed in this environment (a feature store's attributes record the same
    facts for store-trained models).
    """
    spec = featurizer_spec(spec)
    featurizer = spec.build()
    return {
        "featurizer": spec.to_dict(),
        "feature_labels": [str(label) for label in featurizer.labels],
        "element_tables": [
            {"name": table.name, "sha256": table.sha256} for table in element_tables(featurizer)
        ],
    }


def validate_card(card: Mapping[str, Any], config: Mapping[str, Any]) -> dict:
    """Check a trainer's card against the model ``config``; return a normalized JSON copy.

    Raises :class:`ConfigError` naming the bad field and the fix.
    """
    if not isinstance(card, Mapping):
        raise ConfigError(f"card must be a dict, got {type(card).__name__}")
    body = _plain_json(dict(card))
    for key in SET_BY_ZOO:
        body.pop(key, None)
    config = _plain_json(dict(config))
    if body.setdefault("model", config) != config:
        raise ConfigError(
            f"card['model'] {body['model']!r} differs from the model's config {config!r}: "
            "leave 'model' out (the zoo fills it in) or pass model.config"
        )
    if "featurizer" not in card:
        raise ConfigError(
            "card has no 'featurizer': give FeaturizerSpec(...).to_dict() (see "
            "xenonscale.zoo.card.featurizer_fields), or None for arbitrary features"
        )
    if card["featurizer"] is not None:
        body["featurizer"] = featurizer_spec(card["featurizer"]).to_dict()
    body["targets"] = _targets(body.get("targets"), config["out_features"])
    body["units"] = _units(body.get("units"), body["targets"])
    labels = body.get("feature_labels")
    if labels is not None and (
        not isinstance(labels, list)
        or len(labels) != config["in_features"]
        or not all(isinstance(label, str) for label in labels)
    ):
        size = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise ConfigError(
            f"card['feature_labels'] ({size}) must be {config['in_features']} strings, one per "
            "model input"
        )
    if body.get("element_tables") is not None:
        body["element_tables"] = _tables(body["element_tables"])
    for key in ("metrics", "split", "training_data", "versions"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            raise ConfigError(f"card[{key!r}] must be a JSON object (dict), got {body[key]!r}")
    return body


def key_metrics(card: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics flattened to ``a.b`` keys (``{"test": {"mae": 1}}`` → ``test.mae``).

    Null metrics (undefined, e.g. r2 of one row) come back as NaN.
    """
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = float(value)
        elif value is None:  # an undefined metric (NaN when registered)
            flat[prefix] = math.nan

    walk("", card.get("metrics") or {})
    return flat


def _plain_json(value: dict) -> dict:
    try:
        text = json.dumps(_finite(value), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"card is not plain JSON ({exc}): use str/int/float/bool/None/list/dict values"
        ) from exc
    return json.loads(text)


def _finite(value: Any) -> Any:
    """A JSON-ready copy: NaN/inf → None, numpy → Python, tuples → lists, paths → str."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _targets(targets: Any, outputs: int) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    if (
        not isinstance(targets, list)
        or len(targets) != outputs
        or not all(isinstance(t, str) and t for t in targets)
        or len(set(targets)) != len(targets)
    ):
        raise ConfigError(
            f"card['targets'] {targets!r}: give {outputs} distinct column name(s), one per "
            "model output, e.g. ['yield_strength']"
        )
    return targets


def _units(units: Any, targets: list[str]) -> dict[str, str] | None:
    if units is None:
        return None
    if isinstance(units, str) and len(targets) == 1:
        units = {targets[0]: units}
    if not isinstance(units, dict) or not set(units) <= set(targets):
        raise ConfigError(f"card['units'] {units!r}: give {{target: unit}} for targets {targets}")
    return {key: str(value) for key, value in units.items()}


def _tables(tables: Any) -> list[dict]:
    if not isinstance(tables, list):
        raise ConfigError(f"card['element_tables'] {tables!r}: give [{{'name', 'sha256'}}, ...]")
    out = []
    for table in tables:
        entry = {"name": None, "sha256": table} if isinstance(table, str) else table
        if not isinstance(entry, dict) or not _SHA256.fullmatch(str(entry.get("sha256"))):
            raise ConfigError(
                f"card['element_tables'] entry {table!r}: give {{'name': ..., 'sha256': "
                "64 lowercase hex}} (ElementTable.sha256)"
            )
        out.append({"name": entry.get("name"), "sha256": entry["sha256"]})
    return out
