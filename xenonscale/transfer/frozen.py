"""Frozen features: the hidden-layer activations of zoo models as descriptors.

XenonPy's ``FrozenFeaturizer`` idea, batched: each source model featurizes
the raw inputs with the featurizer its card names (models sharing a
featurizer share that work), then its network runs forward once per batch and
the outputs of its last ``depth`` hidden blocks (closest to the output, where
the learned representation is most property-specific) become features.
``depth=None`` takes every hidden block.

Labels are ``"{name@version}:h{block}:{unit}"``. A row is ok only when every
source model could featurize it. Usable in memory (scikit-learn manners) and
by the engine: ``xenonscale featurize ... --featurizers frozen:oqmd-hf@1``
(the zoo is ``$XENONSCALE_ZOO`` on the workers, or the default zoo).

Examples
--------
>>> from xenonscale.transfer import FrozenFeaturizer
>>> frozen = FrozenFeaturizer(["oqmd-hf@1", "mp-gap"], depth=1)  # doctest: +SKIP
>>> frozen.transform(["Fe2O3", "NaCl"]).shape  # doctest: +SKIP
(2, 256)
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from xenonscale.chem.formula import RowError
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import (
    BatchTransformer,
    FeatureBatch,
    check_on_error,
    featurize_safely,
)
from xenonscale.featurize.registry import element_tables
from xenonscale.zoo import Zoo, ZooModel

__all__ = ["FrozenFeaturizer", "frozen_family", "hidden_activations"]


def hidden_activations(model, x: np.ndarray, blocks: Sequence[int],
                       batch_rows: int = 65_536) -> np.ndarray:  # fmt: skip
    """The outputs of hidden ``blocks`` of a PropertyModel for float32 ``x``, side by side."""
    batch_rows = min(batch_rows, getattr(model, "predict_batch_rows", batch_rows))
    model.eval()
    widths = [model.hidden_widths[b] for b in blocks]
    out = np.empty((len(x), sum(widths)), dtype=np.float32)
    with torch.no_grad():
        for lo in range(0, len(x), batch_rows):
            chunk = torch.from_numpy(np.ascontiguousarray(x[lo : lo + batch_rows], np.float32))
            hidden = model.hidden_features(chunk)
            out[lo : lo + len(chunk)] = torch.cat([hidden[b] for b in blocks], dim=1).numpy()
    return out


class FrozenFeaturizer(BatchTransformer):
    """Hidden-layer activations of one or more zoo models (see the module docstring).

    Parameters
    ----------
    models
        Zoo references (``name`` or ``name@version``), or loaded ``ZooModel`` objects.
    zoo
        A :class:`~xenonscale.zoo.Zoo` or its location (default zoo when None).
    depth
        How many hidden blocks, counted back from the output (``1``: the last);
        ``None``: all of them.
    """

    def __init__(self, models, *, zoo=None, depth: int | None = 1, on_error: str = "record"):
        self.models = models
        self.zoo = zoo
        self.depth = depth
        self.on_error = on_error

    def _loaded(self) -> list:
        if getattr(self, "_models_", None) is None:
            check_on_error(self.on_error)
            refs = [self.models] if isinstance(self.models, str) else list(self.models)
            if not refs:
                raise ConfigError("FrozenFeaturizer(models=[]): name at least one zoo model")
            zoo = None
            loaded = []
            for ref in refs:
                if isinstance(ref, ZooModel):
                    loaded.append(ref)
                    continue
                zoo = zoo or (self.zoo if isinstance(self.zoo, Zoo) else Zoo(self.zoo))
                loaded.append(zoo.load(ref))
            self._models_ = loaded
        return self._models_

    def _blocks(self, model) -> list[int]:
        n = len(model.model.hidden_widths)
        if self.depth is None:
            return list(range(n))
        if not 1 <= int(self.depth) <= n:
            raise ConfigError(
                f"depth={self.depth!r}: {model.ref} has {n} hidden blocks; use 1..{n} or None"
            )
        return list(range(n - int(self.depth), n))

    @property
    def labels(self) -> list[str]:
        out = []
        for model in self._loaded():
            for block in self._blocks(model):
                width = model.model.hidden_widths[block]
                out.extend(f"{model.ref}:h{block}:{unit}" for unit in range(width))
        return out

    @property
    def tables(self) -> list:
        return [t for model in self._loaded() for t in element_tables(model.featurizer)]

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        models = self._loaded()
        inputs = list(inputs)
        shared: dict[str, object] = {}  # one featurization per distinct featurizer spec
        parts, ok = [], np.ones(len(inputs), dtype=bool)
        first: dict[int, RowError] = {}
        for model in models:
            key = json.dumps(model.card.get("featurizer"), sort_keys=True)
            if key not in shared:
                shared[key] = featurize_safely(model.featurizer, list(inputs))
            batch = shared[key]
            ok &= np.asarray(batch.ok, dtype=bool)
            for error in batch.errors:
                first.setdefault(error.row, error)
            parts.append(hidden_activations(model.model, np.asarray(batch.values),
                                            self._blocks(model)))  # fmt: skip
        values = np.hstack(parts) if parts else np.zeros((len(inputs), 0), np.float32)
        values[~ok] = np.nan
        return FeatureBatch(values=values, ok=ok, errors=[first[r] for r in sorted(first)])


def frozen_family(arg: str, elements: str | None = None) -> FrozenFeaturizer:
    """The ``frozen:NAME[@V][+NAME2...]`` featurizer family (entry point of the registry).

    Declared in ``pyproject.toml`` under ``xenonscale.featurizer_families``, so
    :mod:`xenonscale.featurize.registry` finds it without importing this floor;
    the zoo is ``$XENONSCALE_ZOO`` on every worker.
    """
    return FrozenFeaturizer(arg.split("+"))
