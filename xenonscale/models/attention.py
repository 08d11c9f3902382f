"""An attention network over the elements of a composition (backbone ``"attention"``).

The model reads a composition as a set of (element, fraction) pairs rather
than as pooled descriptors, and learns how elements act on each other:

1. **Element embedding**: each element's row of an element table (any
   preset: ``mat2vec``, ``oliynyk``, ``jarvis``, ``magpie``, ``xenonpy58``,
   ``xenonscale``), standardized over the table's elements, projected to
   ``d_model``; plus a learned per-element correction (zero at the start).
   The table is a buffer of the model, so a saved model carries it.
2. **Fractional-amount encoding**: the fraction and its logarithm through
   sines and cosines of several frequencies (fine resolution for dopant-level
   and majority amounts alike), projected and added to the embedding.
3. **Self-attention** layers (pre-norm transformer blocks) in which each
   element attends only to the elements present in its formula (padding slots
   are masked out).
4. **Weighted pooling**: a learned gate per element times its fraction,
   normalized over the elements present, weights the element vectors into one
   vector per composition: the *pooled embedding* (``hidden_features()[0]``,
   what transfer learning freezes and reuses).
5. A **residual head** (linear shortcuts around each hidden layer) to the
   targets.

It follows the ideas of CrabNet (Wang, Kauwe, Murdock & Sparks, *npj Comput.
Mater.* 7, 77 (2021): element embeddings + fractional encoding + transformer
encoder + residual head) and Roost (Goodall & Lee, *Nat. Commun.* 11, 6280
(2020): message passing restricted to the elements of one formula, weighted
attention pooling); the code is written for xenonscale.

Inputs are the 32 columns of the ``slots`` composition featurizer
(:mod:`xenonscale.featurize.slots`): 16 atomic numbers (0 = empty slot,
sorted by fraction, descending) then their 16 fractions. Batches are cut to
the widest formula they hold, so a batch of ternaries costs 3 slots, not 16.

Examples
--------
>>> import torch
>>> from xenonscale.models.attention import AttentionModel, attention_config
>>> config = attention_config(elements=None, d_model=16, heads=2, layers=1, head_hidden=[8])
>>> model = AttentionModel(config)
>>> x = torch.zeros(2, 32)
>>> x[0, :2], x[0, 16:18] = torch.tensor([26.0, 8.0]), torch.tensor([0.4, 0.6])  # Fe2O3
>>> x[1, :2], x[1, 16:18] = torch.tensor([11.0, 17.0]), torch.tensor([0.5, 0.5])  # NaCl
>>> model(x).shape, model.hidden_widths
(torch.Size([2, 1]), [16, 8])
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from xenonscale.elements import load_table
from xenonscale.errors import ConfigError
from xenonscale.models.backbones import ACTIVATIONS, PortableModel, check_task

__all__ = [
    "SLOTS",
    "AttentionModel",
    "attention_config",
    "element_matrix",
]

#: Element slots of the input (the ``slots`` featurizer's width / 2).
SLOTS = 16
#: Rows of the element matrix: Z = 0 (empty slot) .. 118.
ELEMENT_ROWS = 119

_DEFAULTS = {
    "elements": "mat2vec",
    "table_width": None,  # filled in from the table
    "d_model": 128,
    "heads": 4,
    "layers": 3,
    "feedforward": 256,
    "dropout": 0.1,
    "frequencies": 8,
    "head_hidden": [256, 128],
    "activation": "silu",
    "learn_elements": True,
}


def attention_config(in_features: int = 2 * SLOTS, out_features: int = 1, **options) -> dict:
    """A complete, validated attention-model config (defaults filled in).

    ``elements`` names the element table (a preset; ``None``: a learned
    embedding only, no table). ``table_width`` is the table's property count
    (set by :func:`element_matrix`'s caller; 0 without a table).
    """
    options = {k: v for k, v in options.items() if k not in ("backbone",)}
    task = options.pop("task", None)
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown attention option(s) {unknown}: use {sorted(_DEFAULTS)}")
    config = {"backbone": "attention", "in_features": int(in_features),
              "out_features": int(out_features)}  # fmt: skip
    config |= {key: options.get(key, default) for key, default in _DEFAULTS.items()}
    if config["in_features"] != 2 * SLOTS:
        raise ConfigError(
            f"in_features={in_features!r}: the attention model reads the {2 * SLOTS} columns of "
            "the 'slots' composition featurizer"
        )
    if config["elements"] is None:
        config["table_width"] = 0
    config["head_hidden"] = [int(w) for w in config["head_hidden"]]
    for key in ("d_model", "heads", "layers", "feedforward", "frequencies"):
        config[key] = int(config[key])
        if config[key] < 1:
            raise ConfigError(f"{key}={config[key]!r}: use a positive integer")
    if config["d_model"] % config["heads"]:
        raise ConfigError(
            f"d_model={config['d_model']} is not a multiple of heads={config['heads']}: "
            "choose heads that divide d_model"
        )
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise ConfigError(f"dropout={config['dropout']!r}: use a value in [0, 1)")
    if config["activation"] not in ACTIVATIONS:
        raise ConfigError(
            f"activation={config['activation']!r}: use one of {', '.join(sorted(ACTIVATIONS))}"
        )
    if not config["elements"] and not config["learn_elements"]:
        raise ConfigError("elements=None needs learn_elements=True (nothing would embed them)")
    if task is not None:
        config["task"] = check_task(task)
    return config


def attention_size(config: dict) -> tuple[int, int]:
    """``(parameters, state elements)`` of ``AttentionModel(config)``, by arithmetic alone.

    Safe on a config far too large to allocate (a zoo card from elsewhere is
    checked with it before anything is built).

    >>> attention_size(attention_config(elements=None, d_model=8, heads=2, layers=1,
    ...                                 head_hidden=[4], frequencies=2))
    (5818, 5822)
    """
    config = attention_config(**config)
    d, ff, f = config["d_model"], config["feedforward"], config["frequencies"]
    width, outputs = int(config["table_width"] or 0), config["out_features"]
    parameters = (width * d + d) if width else 0
    parameters += ELEMENT_ROWS * d if config["learn_elements"] else 0
    parameters += (4 * f + 2) * d + d  # fraction encoding
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff + ff * d + d)
    parameters += config["layers"] * block + 2 * d + (d + 1)  # blocks, final norm, gate
    previous = d
    for size in config["head_hidden"]:
        parameters += previous * size + size + (0 if size == previous else previous * size)
        previous = size
    parameters += previous * outputs + outputs
    buffers = ELEMENT_ROWS * width + f + 2 * outputs
    return parameters, parameters + buffers


def element_matrix(elements: str | None) -> tuple[np.ndarray, dict]:
    """``float32[119, properties]`` of a preset table (row Z; row 0 zeros) and its identity.

    Each property is standardized over the elements that have a value;
    missing values and elements absent from the table are 0 (the mean). The
    identity (``name``, ``sha256``, ``properties``) goes on the model card.

    >>> matrix, identity = element_matrix("magpie")  # doctest: +REQUIRES_DATA
    >>> matrix.shape, identity["name"]  # doctest: +REQUIRES_DATA
    ((119, 22), 'magpie')
    """
    if elements is None:
        return np.zeros((ELEMENT_ROWS, 0), np.float32), {"name": None}
    table = load_table(elements)
    values = np.asarray(table.values, dtype=np.float64)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(std > 0, std, 1.0)
    z = np.nan_to_num((values - mean) / std, nan=0.0)
    matrix = np.zeros((ELEMENT_ROWS, values.shape[1]), dtype=np.float32)
    numbers = np.asarray(table.atomic_numbers)
    keep = numbers < ELEMENT_ROWS
    matrix[numbers[keep]] = z[keep]
    identity = {"name": table.name, "sha256": getattr(table, "sha256", None),
                "properties": len(table.properties), "elements": int(keep.sum())}  # fmt: skip
    return matrix, identity


class FractionEncoding(nn.Module):
    """Fraction → ``d_model``: sines/cosines of the fraction and of its log, projected."""

    def __init__(self, d_model: int, frequencies: int):
        super().__init__()
        self.register_buffer("scales", 2.0 ** torch.arange(frequencies, dtype=torch.float32))
        self.project = nn.Linear(4 * frequencies + 2, d_model)

    def forward(self, fractions: torch.Tensor) -> torch.Tensor:
        f = fractions.clamp_min(1e-6).unsqueeze(-1)
        linear = f * self.scales * math.pi  # fraction in (0, 1]
        log = (torch.log(f) / math.log(1e-6) + 1.0) * self.scales * math.pi  # log10-like in (0, 1]
        waves = [torch.sin(linear), torch.cos(linear), torch.sin(log), torch.cos(log)]
        raw = torch.cat([f, torch.log(f) / 14.0, *waves], dim=-1)
        return self.project(raw)


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: masked multi-head self-attention, then a feed-forward."""

    def __init__(self, d_model: int, heads: int, feedforward: int, dropout: float,
                 activation: str):  # fmt: skip
        super().__init__()
        self.norm_attention = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm_feedforward = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, feedforward),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(feedforward, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, padding: torch.Tensor, weights: list | None = None):
        q = self.norm_attention(h)
        attended, attention = self.attention(
            q, q, q, key_padding_mask=padding, need_weights=weights is not None,
            average_attn_weights=False,
        )  # fmt: skip
        if weights is not None:
            weights.append(attention)
        h = h + self.dropout(attended)
        return h + self.dropout(self.feedforward(self.norm_feedforward(h)))


class ResidualHead(nn.Module):
    """Hidden layers with linear shortcuts (``h + W h`` when widths differ), then the output."""

    def __init__(self, width: int, hidden: list[int], outputs: int, activation: str,
                 dropout: float):  # fmt: skip
        super().__init__()
        self.layers = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        for size in hidden:
            self.layers.append(nn.Sequential(nn.Linear(width, size), ACTIVATIONS[activation](),
                                             nn.Dropout(dropout)))  # fmt: skip
            self.shortcuts.append(
                nn.Identity() if size == width else nn.Linear(width, size, bias=False)
            )
            width = size
        self.output = nn.Linear(width, outputs)

    def hidden_features(self, h: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for layer, shortcut in zip(self.layers, self.shortcuts, strict=True):
            h = layer(h) + shortcut(h)
            out.append(h)
        return out

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for layer, shortcut in zip(self.layers, self.shortcuts, strict=True):
            h = layer(h) + shortcut(h)
        return self.output(h)


class AttentionModel(PortableModel):
    """Attention over the elements of a composition (see the module docstring)."""

    def __init__(self, config: dict, matrix: np.ndarray | None = None):
        super().__init__()
        config = dict(config)
        if matrix is None and config.get("table_width") is None:
            matrix, _ = element_matrix(config.get("elements", _DEFAULTS["elements"]))
            config["table_width"] = matrix.shape[1]
        self.config = attention_config(**config)
        width = int(self.config["table_width"] or 0)
        if matrix is not None and matrix.shape != (ELEMENT_ROWS, width):
            raise ConfigError(
                f"element matrix of shape {matrix.shape}: expected ({ELEMENT_ROWS}, {width})"
            )
        d = self.config["d_model"]
        self.register_buffer(
            "element_table",
            torch.as_tensor(matrix if matrix is not None else np.zeros((ELEMENT_ROWS, width)),
                            dtype=torch.float32),
        )  # fmt: skip
        self.project = nn.Linear(width, d) if width else None
        self.learned = nn.Embedding(ELEMENT_ROWS, d) if self.config["learn_elements"] else None
        if self.learned is not None and self.project is not None:
            nn.init.zeros_(self.learned.weight)  # start from the table; learn corrections
        self.fractions = FractionEncoding(d, self.config["frequencies"])
        self.blocks = nn.ModuleList(
            AttentionBlock(d, self.config["heads"], self.config["feedforward"],
                           float(self.config["dropout"]), self.config["activation"])
            for _ in range(self.config["layers"])
        )  # fmt: skip
        self.norm = nn.LayerNorm(d)
        self.gate = nn.Linear(d, 1)
        self.head = ResidualHead(
            d,
            self.config["head_hidden"],
            self.config["out_features"],
            self.config["activation"],
            float(self.config["dropout"]),
        )
        self._init_targets(self.config["out_features"])

    @classmethod
    def from_config(cls, config: dict) -> AttentionModel:
        """An untrained model; with ``table_width`` set, the table buffer is zeros until loaded."""
        return cls(
            config,
            matrix=None
            if config.get("table_width") is None
            else np.zeros((ELEMENT_ROWS, int(config["table_width"] or 0)), np.float32),
        )

    def fit_scaling(self, x_mean=None, x_std=None, y_mean=0.0, y_std=1.0) -> AttentionModel:
        """Set the target statistics (inputs need none: atomic numbers and fractions)."""
        self.fit_targets(y_mean, y_std)
        return self

    # ----------------------------------------------------------------- pieces
    @staticmethod
    def split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z long[n, k], fractions[n, k])`` cut to the widest formula of the batch."""
        numbers = x[:, :SLOTS].round().long().clamp(0, ELEMENT_ROWS - 1)
        fractions = torch.nan_to_num(x[:, SLOTS : 2 * SLOTS], nan=0.0)
        present = numbers > 0
        width = max(1, int(present.sum(dim=1).max())) if len(x) else 1
        return numbers[:, :width], fractions[:, :width]

    def element_vectors(self, numbers: torch.Tensor, fractions: torch.Tensor):
        """Per-element vectors after attention, and the padding mask."""
        padding = numbers == 0
        padding[:, 0] = False  # an empty row keeps one (zero) slot: no all-masked softmax
        h = self.fractions(fractions)
        if self.project is not None:
            h = h + self.project(self.element_table[numbers])
        if self.learned is not None:
            h = h + self.learned(numbers)
        return h, padding

    def _encode(self, x: torch.Tensor, weights: list | None = None):
        numbers, fractions = self.split(x)
        h, padding = self.element_vectors(numbers, fractions)
        for block in self.blocks:
            h = block(h, padding, weights)
        h = self.norm(h)
        gate = self.gate(h).squeeze(-1).masked_fill(padding, -torch.inf)
        gate = gate - gate.max(dim=1, keepdim=True).values
        w = torch.exp(gate) * fractions.clamp_min(0)
        w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return (w.unsqueeze(-1) * h).sum(dim=1), numbers, w

    # -------------------------------------------------------------- interface
    def forward_scaled(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _, _ = self._encode(x)
        return self.head(pooled)

    def hidden_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pooled embedding, then each head layer's output."""
        pooled, _, _ = self._encode(x)
        return [pooled, *self.head.hidden_features(pooled)]

    @property
    def hidden_widths(self) -> list[int]:
        return [self.config["d_model"], *self.config["head_hidden"]]

    def transfer_parts(self) -> tuple[list[nn.Module], nn.Linear, str]:
        """``(blocks in order, output layer, its state-dict prefix)`` for fine-tuning.

        The first block is the whole encoder up to the pooled embedding
        (element embeddings, fraction encoding, attention, pooling gate); then
        one block per head layer (with its shortcut).
        """
        encoder = nn.ModuleList(
            [m for m in (self.project, self.learned) if m is not None]
            + [self.fractions, self.blocks, self.norm, self.gate]
        )
        head = [nn.ModuleList([layer, shortcut]) for layer, shortcut in
                zip(self.head.layers, self.head.shortcuts, strict=True)]  # fmt: skip
        return [encoder, *head], self.head.output, "head.output."

    def explain(self, x: torch.Tensor) -> dict:
        """Attention maps and pooling weights for inspection (eval mode, no gradients).

        Returns ``numbers`` (Z, ``[n, k]``), ``pooling`` (``[n, k]``: each
        element's weight in the pooled embedding) and ``attention``
        (``[layers, n, heads, k, k]``: row *i* says how much element *i*
        attends to each element *j* of its formula).
        """
        weights: list[torch.Tensor] = []
        was_training = self.training
        self.eval()
        with torch.no_grad():
            _, numbers, pooling = self._encode(x, weights)
        self.train(was_training)
        return {"numbers": numbers, "pooling": pooling, "attention": torch.stack(weights)}
