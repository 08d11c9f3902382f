"""Budgets of the zoo: what an archive or a card may ask for before it is refused.

An archive comes from someone else, and a card says how large a network to
build. Both are checked against :class:`ZooLimits` *before* anything is
decompressed or allocated: a 2 MB zip that inflates to gigabytes, or a 1 KB
card asking for a 10-million-wide layer, is refused in one line
(:class:`~xenonscale.errors.ZooError`) that names the field, the value, the
limit and the fix, instead of exhausting memory. The defaults fit any model
the zoo is meant for (a few hundred million parameters at most) with a wide
margin; give ``Zoo(..., limits=ZooLimits(...))`` to import something larger
from a source you trust.

Examples
--------
>>> from xenonscale.zoo.limits import ZooLimits, check_model_config
>>> ZooLimits().max_bytes == 2 << 30
True
>>> check_model_config({"in_features": 4, "hidden": [8]})
(65, 92)
>>> check_model_config({"in_features": 10_000_000, "hidden": [8]})
Traceback (most recent call last):
...
xenonscale.errors.ZooError: card['model']['in_features'] = 10000000 exceeds max_width 1000000: ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from xenonscale.errors import ConfigError, ZooError
from xenonscale.models.attention import attention_size
from xenonscale.models.backbones import ACTIVATIONS, TASKS, model_size
from xenonscale.models.graphs import GRAPH_BACKBONES, graph_size

__all__ = ["ZooLimits", "check_model_config", "weights_bound"]

_MODEL_KEYS = (
    "in_features",
    "out_features",
    "hidden",
    "dropout",
    "batch_norm",
    "activation",
    "input_clip",
    "task",
)
#: Keys of a deep ensemble's config (its members are checked as models of their own).
_ENSEMBLE_KEYS = ("backbone", "members", "in_features", "out_features", "task")
#: Room for the safetensors header (tensor names, dtypes, shapes) beyond the tensor bytes.
_HEADER_ALLOWANCE = 1 << 20
#: Bytes per stored element at most (float64 / int64).
_ELEMENT_BYTES = 8


@dataclass(frozen=True)
class ZooLimits:
    """Budgets of archive imports and model cards (see the module docstring).

    Attributes
    ----------
    max_bytes : int
        Uncompressed bytes of one archive, all members together (and so of
        its weights); also the largest archive file accepted. 2 GiB.
    max_json_bytes : int
        Uncompressed bytes of ``card.json`` and of each extra ``.json`` file. 16 MiB.
    max_file_bytes : int
        Uncompressed bytes of each other extra file (plots, notes). 64 MiB.
    max_members : int
        Members of one archive.
    max_ratio : float
        Largest uncompressed:compressed ratio of a member (zip) or of the whole
        stream (tar.gz) once it is past 1 MiB; real weights compress less than
        2:1, a decompression bomb ~1000:1. ``math.inf`` disables the check.
    max_parameters : int
        Trainable parameters of the network a card describes.
    max_width : int
        ``in_features``, ``out_features`` and each hidden width.
    max_layers : int
        Hidden layers.
    """

    max_bytes: int = 2 << 30
    max_json_bytes: int = 16 << 20
    max_file_bytes: int = 64 << 20
    max_members: int = 256
    max_ratio: float = 100.0
    max_parameters: int = 500_000_000
    max_width: int = 1_000_000
    max_layers: int = 1_000

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            default = getattr(ZooLimits, item.name)
            number = int | float if item.name == "max_ratio" else int
            if isinstance(value, bool) or not isinstance(value, number) or not value > 0:
                kind = "number" if item.name == "max_ratio" else "integer"
                raise ConfigError(
                    f"ZooLimits({item.name}={value!r}): give a positive {kind}, e.g. "
                    f"{item.name}={default!r}"
                )

    def refuse(self, field: str, value: object, limit: str, what: str = "") -> ZooError:
        """The :class:`ZooError` for ``field`` = ``value`` over the limit named ``limit``."""
        amount = _number(getattr(self, limit))
        return ZooError(
            f"{field} = {_number(value)} exceeds {limit} {amount}"
            f"{': ' + what if what else ''}; pass Zoo(limits=ZooLimits({limit}=...)) only for "
            "a source you trust"
        )


def check_model_config(
    config: Any, limits: ZooLimits | None = None, where: str = "card"
) -> tuple[int, int]:
    """Check a card's ``model`` config against ``limits`` without allocating anything.

    Every count must be a positive integer within ``max_width`` /
    ``max_layers``, the other options of the right type, and the network's
    parameter count within ``max_parameters``. Returns ``(parameters, state
    elements)`` (see :func:`~xenonscale.models.backbones.model_size`); raises
    one-line :class:`ZooError` naming the field, the value and the limit.

    >>> check_model_config({"in_features": 4, "hidden": [8]}, where="x.zip")
    (65, 92)
    >>> check_model_config({"in_features": 4, "hidden": [0]})
    Traceback (most recent call last):
    ...
    xenonscale.errors.ZooError: card['model']['hidden'][0] = 0: give a positive integer ...
    """
    limits = limits or ZooLimits()
    field = f"{where}['model']" if where == "card" else f"{where}: card['model']"
    if not isinstance(config, Mapping):
        raise ZooError(
            f"{field} is {type(config).__name__}, not a model config: export the model again"
        )
    if config.get("backbone") == "ensemble":
        return _check_ensemble(config, limits, field)
    if config.get("backbone") == "attention":
        return _check_attention(config, limits, field)
    if config.get("backbone") in GRAPH_BACKBONES:
        return _check_graph(config, limits, field)
    unknown = sorted(str(key) for key in set(config) - set(_MODEL_KEYS))
    if unknown:
        raise ZooError(
            f"{field} has unknown option(s) {_short(unknown)}: this xenonscale knows "
            f"{list(_MODEL_KEYS)}; install the version that exported it or export it again"
        )
    for key in ("in_features", "out_features"):
        if key in config or key == "in_features":
            _width(f"{field}[{key!r}]", config.get(key), limits, "a feature count")
    hidden = config.get("hidden", [512, 256, 128])
    if not isinstance(hidden, list | tuple) or not hidden:
        raise ZooError(
            f"{field}['hidden'] = {_short(hidden)}: give a non-empty list of layer widths; "
            "export the model again"
        )
    if len(hidden) > limits.max_layers:
        raise limits.refuse(f"{field}['hidden'] (layers)", len(hidden), "max_layers")
    for index, width in enumerate(hidden):
        _width(f"{field}['hidden'][{index}]", width, limits, "a layer width")
    dropout = config.get("dropout", 0.0)
    if not _is_number(dropout) or not 0.0 <= dropout < 1.0:
        raise ZooError(f"{field}['dropout'] = {_short(dropout)}: give a number in [0, 1)")
    clip = config.get("input_clip", 10.0)
    if not _is_number(clip) or not 0.0 < clip < math.inf:
        raise ZooError(f"{field}['input_clip'] = {_short(clip)}: give a positive number")
    if not isinstance(config.get("batch_norm", True), bool):
        raise ZooError(f"{field}['batch_norm'] = {_short(config['batch_norm'])}: give true/false")
    if config.get("task", "regression") not in TASKS:
        raise ZooError(f"{field}['task'] = {_short(config['task'])}: give one of {list(TASKS)}")
    activation = config.get("activation", "relu")
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ZooError(
            f"{field}['activation'] = {_short(activation)}: give one of "
            f"{', '.join(sorted(ACTIVATIONS))}"
        )
    parameters, elements = model_size(dict(config))
    if parameters > limits.max_parameters:
        raise limits.refuse(
            f"{field} (parameters of in_features={config['in_features']}, "
            f"hidden={_short(list(hidden))})",
            parameters,
            "max_parameters",
            "the card asks for an absurd model",
        )
    return parameters, elements


def _check_attention(config: Mapping, limits: ZooLimits, field: str) -> tuple[int, int]:
    """An attention model's config (models/attention.py): its own validation, then sizes."""
    widths = ("d_model", "feedforward", "table_width")
    return _check_network(config, limits, field, widths, attention_size, "attention")


def _check_graph(config: Mapping, limits: ZooLimits, field: str) -> tuple[int, int]:
    """A crystal-graph model's config (models/graphs.py): widths and depth, then sizes."""
    widths = ("width", "gaussians", "table_width", "atoms", "neighbors")
    return _check_network(config, limits, field, widths, graph_size, "graph")


def _check_network(config: Mapping, limits: ZooLimits, field: str, widths: tuple[str, ...],
                   size, what: str) -> tuple[int, int]:  # fmt: skip
    """Widths, layers + head depth and head widths against the limits, then ``size(config)``."""
    for key in widths:
        if config.get(key) is not None:
            _width(f"{field}[{key!r}]", config.get(key), limits, "a width")
    head = config.get("head_hidden", [])
    layers = config.get("layers", 1)
    if (
        not isinstance(head, list | tuple)
        or not isinstance(layers, int)
        or isinstance(layers, bool)
    ):
        raise ZooError(f"{field}: head_hidden must be a list and layers an integer; export again")
    if len(head) + layers > limits.max_layers:
        raise limits.refuse(f"{field} (layers)", len(head) + layers, "max_layers")
    for index, width in enumerate(head):
        _width(f"{field}['head_hidden'][{index}]", width, limits, "a layer width")
    try:
        parameters, elements = size(dict(config))
    except (ConfigError, TypeError, ValueError, KeyError) as exc:
        raise ZooError(f"{field}: {exc}; export the model again") from exc
    if parameters > limits.max_parameters:
        raise limits.refuse(f"{field} ({what} parameters)", parameters, "max_parameters",
                            "the card asks for an absurd model")  # fmt: skip
    return parameters, elements


def _check_ensemble(config: Mapping, limits: ZooLimits, field: str) -> tuple[int, int]:
    """A deep ensemble's config (models/ensemble.py): each member checked, sizes summed."""
    unknown = sorted(str(key) for key in set(config) - set(_ENSEMBLE_KEYS))
    if unknown:
        raise ZooError(
            f"{field} has unknown ensemble option(s) {_short(unknown)}: this xenonscale knows "
            f"{list(_ENSEMBLE_KEYS)}; install the version that exported it or export it again"
        )
    members = config.get("members")
    if not isinstance(members, list) or not members:
        raise ZooError(
            f"{field}['members'] = {_short(members)}: give a non-empty list of member configs; "
            "export the model again"
        )
    parameters = elements = 0
    for k, member in enumerate(members):
        if isinstance(member, Mapping) and member.get("backbone") == "ensemble":
            raise ZooError(f"{field}['members'][{k}] is an ensemble itself: export it again")
        try:
            size = check_model_config(member, limits)
        except ZooError as exc:
            raise ZooError(f"{field}['members'][{k}]: {exc}") from None
        parameters, elements = parameters + size[0], elements + size[1]
        if parameters > limits.max_parameters:
            raise limits.refuse(
                f"{field} (parameters of {k + 1} members)", parameters, "max_parameters",
                "the card asks for an absurd model",
            )  # fmt: skip
    return parameters, elements


def weights_bound(elements: int) -> int:
    """Most bytes a safetensors file of ``elements`` numbers can take (8 bytes each + header)."""
    return _ELEMENT_BYTES * elements + _HEADER_ALLOWANCE


def _width(field: str, value: Any, limits: ZooLimits, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ZooError(
            f"{field} = {_short(value)}: give a positive integer ({what}); export the model again"
        )
    if value > limits.max_width:
        raise limits.refuse(field, value, "max_width", "the card asks for an absurd model")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
