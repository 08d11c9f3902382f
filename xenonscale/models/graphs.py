"""Crystal-graph networks (backbones ``cgcnn`` and ``megnet``) on the ``graph`` rows of a store.

Inputs are the fixed-width rows of the ``graph`` structure featurizer
(:mod:`xenonscale.featurize.structures.graph`): per crystal, the atomic
numbers of up to ``atoms`` sites and, per site, up to ``neighbors`` nearest
neighbours within ``cutoff`` with their distances. :func:`pack_graphs` turns a
batch of rows into one packed graph (atoms of all crystals concatenated, an
edge list, the crystal of every atom) with a few tensor gathers, cutting each
batch to its largest crystal. Message passing is plain ``index_add_`` over the
edge list (no graph library; ``docs/graphs.md`` says why).

Two networks share the embedding, the readout and the head:

``cgcnn``
    The crystal graph convolutional network of Xie & Grossman (*Phys. Rev.
    Lett.* 120, 145301 (2018)): each edge's distance through Gaussians,
    gated convolutions ``v_i ← softplus(v_i + BN(Σ_j σ(z_ij W_f) ⊙ softplus(z_ij W_s)))``
    with ``z_ij = v_i ⊕ v_j ⊕ e_ij``, mean pooling over atoms, dense layers.
``megnet``
    A MEGNet-style network (Chen, Ye, Zuo, Zheng & Ong, *Chem. Mater.* 31,
    3564 (2019)): edges, atoms and a per-crystal state vector are all updated
    in each block (edge ← φ(v_i, v_j, e, u); atom ← φ(sum of its edges, v, u);
    state ← φ(mean edge, mean atom, u)), with residual connections and a
    layer norm after each; the readout joins the mean atom, mean edge and the
    state (the paper: mean edges into atoms, no norm, Set2Set readout; on
    phonons fold 0's training rows the sum and the norm took the inner
    validation MAE from 62.7 to 54.7 cm⁻¹). On Matbench phonons MEGNet
    (29.2 cm⁻¹) beats SchNet (43.1) and CGCNN (46.1) in kgcnn's same-split
    runs, and it needs no bond angles.

Atoms are embedded from an element table (any preset, standardized, projected)
plus a learned per-element vector, as in the attention backbone. The *pooled
crystal embedding* is ``hidden_features()[0]``: what ``FrozenFeaturizer``
reuses for transfer.

Examples
--------
>>> import numpy as np, torch
>>> from xenonscale.featurize.structures.graph import CrystalGraph
>>> from xenonscale.models.graphs import GraphModel, graph_config
>>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
>>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
>>> featurizer = CrystalGraph(cutoff=4.0, neighbors=4, atoms=4)
>>> x = torch.as_tensor(featurizer.featurize_batch([poscar]).values, dtype=torch.float32)
>>> config = graph_config("cgcnn", featurizer.options, elements=None, width=8, head_hidden=[8])
>>> model = GraphModel(config)
>>> model(x).shape, model.hidden_widths
(torch.Size([1, 1]), [8, 8])
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xenonscale.errors import ConfigError
from xenonscale.models.attention import ELEMENT_ROWS, element_matrix
from xenonscale.models.backbones import PortableModel, check_task

__all__ = [
    "GRAPH_BACKBONES",
    "GraphModel",
    "PackedGraph",
    "graph_config",
    "graph_size",
    "pack_graphs",
]

#: The graph backbones and the options they read.
GRAPH_BACKBONES = ("cgcnn", "megnet")
_DEFAULTS = {
    "elements": "magpie",
    "table_width": None,  # filled in from the table
    "width": 64,
    "layers": 3,
    "gaussians": 41,
    "head_hidden": [128],
    "dropout": 0.0,
}
_LAYOUT = ("atoms", "neighbors", "cutoff")


def graph_config(backbone: str, layout: dict, out_features: int = 1, **options) -> dict:
    """A complete, validated config for ``backbone`` on graphs of ``layout``.

    ``layout`` holds the featurizer's ``atoms``, ``neighbors`` and ``cutoff``
    (:attr:`CrystalGraph.options`).
    """
    if backbone not in GRAPH_BACKBONES:
        raise ConfigError(f"backbone={backbone!r}: use one of {', '.join(GRAPH_BACKBONES)}")
    options = {k: v for k, v in options.items() if k not in ("backbone", "in_features")}
    task = options.pop("task", None)
    unknown = sorted(set(options) - set(_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown {backbone} option(s) {unknown}: use {sorted(_DEFAULTS)}")
    missing = [key for key in _LAYOUT if key not in layout]
    if missing:
        raise ConfigError(f"graph layout {layout!r} lacks {missing}: train on a 'graph' store")
    atoms, neighbors = int(layout["atoms"]), int(layout["neighbors"])
    config = {"backbone": backbone, "in_features": atoms * (1 + 5 * neighbors),
              "out_features": int(out_features), "atoms": atoms, "neighbors": neighbors,
              "cutoff": float(layout["cutoff"])}  # fmt: skip
    config |= {key: options.get(key, default) for key, default in _DEFAULTS.items()}
    config["head_hidden"] = [int(w) for w in config["head_hidden"]]
    for key in ("width", "layers", "gaussians", "atoms", "neighbors"):
        config[key] = int(config[key])
        if config[key] < 1:
            raise ConfigError(f"{key}={config[key]!r}: use a positive integer")
    if not config["cutoff"] > 0:
        raise ConfigError(f"cutoff={config['cutoff']!r}: use a positive radius (Å)")
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise ConfigError(f"dropout={config['dropout']!r}: use a value in [0, 1)")
    if config["elements"] is None:
        config["table_width"] = 0
    if task is not None:
        config["task"] = check_task(task)
    return config


def graph_size(config: dict) -> tuple[int, int]:
    """``(parameters, state elements)`` of ``GraphModel(config)``, counted on the meta device.

    Nothing is allocated, so a card asking for an absurd model is refused cheaply
    (its widths and layer counts are checked against the zoo limits first).

    >>> graph_size(graph_config("cgcnn", {"atoms": 4, "neighbors": 2, "cutoff": 4.0},
    ...                         elements=None, width=8, head_hidden=[8], gaussians=4))
    (2185, 2341)
    """
    config = dict(config)
    if config.get("table_width") is None:
        config["table_width"] = 0 if config.get("elements") is None else 1
    with torch.device("meta"):
        model = GraphModel.from_config(config)
    parameters = sum(p.numel() for p in model.parameters())
    return parameters, sum(t.numel() for t in model.state_dict().values())


class PackedGraph(NamedTuple):
    """A batch of crystals as one graph: ``z[N]``, ``crystal[N]``, edges ``center → neighbor``."""

    z: torch.Tensor
    crystal: torch.Tensor
    center: torch.Tensor
    neighbor: torch.Tensor
    distance: torch.Tensor
    crystals: int


def pack_graphs(x: torch.Tensor, atoms: int, neighbors: int) -> PackedGraph:
    """Rows of the ``graph`` featurizer → one :class:`PackedGraph` (no loop over crystals).

    NaN rows (failed records) have no atoms; padding slots are dropped.
    """
    x = torch.nan_to_num(x, nan=0.0)
    n, a, k = len(x), atoms, neighbors
    z = x[:, :a].round().long().clamp(0, ELEMENT_ROWS - 1)
    present = z > 0
    m = max(1, int(present.sum(dim=1).max())) if n else 1
    z, present = z[:, :m], present[:, :m]
    slots = x[:, a : a + a * k].reshape(n, a, k)[:, :m].round().long()
    lengths = x[:, a + a * k : a + 2 * a * k].reshape(n, a, k)[:, :m]
    index = torch.cumsum(present.reshape(-1).long(), 0).reshape(n, m) - 1
    valid = present.unsqueeze(-1) & (slots >= 0) & (slots < m)
    row, site, slot = valid.nonzero(as_tuple=True)
    center = index[row, site]
    neighbor = index[row, slots[row, site, slot]]
    crystal = torch.arange(n, device=x.device).unsqueeze(1).expand(n, m)[present]
    return PackedGraph(z[present], crystal, center, neighbor, lengths[row, site, slot], n)


def _mean(values: torch.Tensor, index: torch.Tensor, groups: int) -> torch.Tensor:
    """Mean of ``values`` rows by ``index`` (0 for an empty group)."""
    total = values.new_zeros((groups, values.shape[1])).index_add_(0, index, values)
    count = torch.bincount(index, minlength=groups).clamp(min=1).to(values.dtype)
    return total / count.unsqueeze(1)


class Gaussians(nn.Module):
    """Distance → ``count`` Gaussians centred on ``0 .. cutoff`` (width = their spacing)."""

    def __init__(self, cutoff: float, count: int):
        super().__init__()
        self.register_buffer("centers", torch.linspace(0.0, float(cutoff), count))
        self.width = float(cutoff) / max(count - 1, 1)

    def forward(self, distance: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(((distance.unsqueeze(1) - self.centers) / self.width) ** 2))


def _batch_norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm that uses its running statistics when a training batch has one row."""
    if norm.training and len(x) < 2:
        return F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                            training=False, eps=norm.eps)  # fmt: skip
    return norm(x)


class GatedConvolution(nn.Module):
    """One CGCNN convolution (see the module docstring)."""

    def __init__(self, width: int, edge_width: int):
        super().__init__()
        self.full = nn.Linear(2 * width + edge_width, 2 * width)
        self.norm_edges = nn.BatchNorm1d(2 * width)
        self.norm_sum = nn.BatchNorm1d(width)

    def forward(self, h, center, neighbor, edges) -> torch.Tensor:
        z = _batch_norm(self.norm_edges, self.full(torch.cat([h[center], h[neighbor], edges], 1)))
        gate, core = z.chunk(2, dim=1)
        messages = torch.sigmoid(gate) * F.softplus(core)
        summed = torch.zeros_like(h).index_add_(0, center, messages)
        return F.softplus(h + _batch_norm(self.norm_sum, summed))


def _dense(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.Softplus()]
    return nn.Sequential(*layers)


class MegnetBlock(nn.Module):
    """One MEGNet block: edge, atom and state updates with residuals (module docstring)."""

    def __init__(self, width: int):
        super().__init__()
        self.edge = _dense([4 * width, 2 * width, width])
        self.atom = _dense([3 * width, 2 * width, width])
        self.state = _dense([3 * width, 2 * width, width])
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(3))

    def forward(self, h, e, u, graph: PackedGraph):
        center, neighbor, crystal = graph.center, graph.neighbor, graph.crystal
        edge_crystal = crystal[center]
        e_new = self.edge(torch.cat([h[center], h[neighbor], e, u[edge_crystal]], 1))
        incoming = torch.zeros_like(h).index_add_(0, center, e_new)  # summed, as in CGCNN
        h_new = self.atom(torch.cat([incoming, h, u[crystal]], 1))
        u_new = self.state(torch.cat([_mean(e_new, edge_crystal, graph.crystals),
                                      _mean(h_new, crystal, graph.crystals), u], 1))  # fmt: skip
        edge_norm, atom_norm, state_norm = self.norms
        return atom_norm(h + h_new), edge_norm(e + e_new), state_norm(u + u_new)


class GraphModel(PortableModel):
    """A crystal-graph network, ``cgcnn`` or ``megnet`` (see the module docstring)."""

    #: Crystals per inference batch (:func:`~xenonscale.models.backbones.predict_array`).
    predict_batch_rows = 512

    def __init__(self, config: dict, matrix: np.ndarray | None = None):
        super().__init__()
        config = dict(config)
        if matrix is None and config.get("table_width") is None:
            matrix, _ = element_matrix(config.get("elements", _DEFAULTS["elements"]))
            config["table_width"] = matrix.shape[1]
        backbone = config.pop("backbone", "cgcnn")
        layout = {key: config.pop(key) for key in _LAYOUT if key in config}
        self.config = graph_config(backbone, layout, **config)
        self.config["table_width"] = int(config.get("table_width") or 0)
        width, table = self.config["width"], self.config["table_width"]
        self.register_buffer(
            "element_table",
            torch.as_tensor(matrix if matrix is not None else np.zeros((ELEMENT_ROWS, table)),
                            dtype=torch.float32),
        )  # fmt: skip
        self.project = nn.Linear(table, width) if table else None
        self.learned = nn.Embedding(ELEMENT_ROWS, width)
        if self.project is not None:
            nn.init.zeros_(self.learned.weight)  # start from the table; learn corrections
        self.gaussians = Gaussians(self.config["cutoff"], self.config["gaussians"])
        layers = self.config["layers"]
        if backbone == "cgcnn":
            self.convolutions = nn.ModuleList(
                GatedConvolution(width, self.config["gaussians"]) for _ in range(layers)
            )
            pooled = width
        else:
            self.edge_embedding = _dense([self.config["gaussians"], width, width])
            self.state0 = nn.Parameter(torch.zeros(width))
            self.convolutions = nn.ModuleList(MegnetBlock(width) for _ in range(layers))
            pooled = 3 * width
        self.pooled_width = pooled
        hidden, fan_in = [], pooled
        for size in self.config["head_hidden"]:
            hidden.append(nn.Sequential(nn.Linear(fan_in, size), nn.Softplus(),
                                        nn.Dropout(float(self.config["dropout"]))))  # fmt: skip
            fan_in = size
        self.head = nn.ModuleList(hidden)
        self.output = nn.Linear(fan_in, self.config["out_features"])
        self._init_targets(self.config["out_features"])

    @classmethod
    def from_config(cls, config: dict) -> GraphModel:
        """An untrained model; with ``table_width`` set, the table buffer is zeros until loaded."""
        width = config.get("table_width")
        matrix = None if width is None else np.zeros((ELEMENT_ROWS, int(width or 0)), np.float32)
        return cls(config, matrix=matrix)

    def fit_scaling(self, x_mean=None, x_std=None, y_mean=0.0, y_std=1.0) -> GraphModel:
        """Set the target statistics (graph rows are not standardized)."""
        self.fit_targets(y_mean, y_std)
        return self

    def pack(self, x: torch.Tensor) -> PackedGraph:
        return pack_graphs(x, self.config["atoms"], self.config["neighbors"])

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled crystal embedding ``[n, pooled_width]``."""
        graph = self.pack(x)
        h = self.learned(graph.z)
        if self.project is not None:
            h = h + self.project(self.element_table[graph.z])
        edges = self.gaussians(graph.distance)
        if self.config["backbone"] == "cgcnn":
            for convolution in self.convolutions:
                h = convolution(h, graph.center, graph.neighbor, edges)
            return _mean(h, graph.crystal, graph.crystals)
        e = self.edge_embedding(edges)
        u = self.state0.expand(graph.crystals, -1)
        for block in self.convolutions:
            h, e, u = block(h, e, u, graph)
        atoms = _mean(h, graph.crystal, graph.crystals)
        bonds = _mean(e, graph.crystal[graph.center], graph.crystals)
        return torch.cat([atoms, bonds, u], 1)

    def forward_scaled(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for layer in self.head:
            h = layer(h)
        return self.output(h)

    def hidden_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The pooled crystal embedding, then each head layer's output."""
        h = self.embed(x)
        out = [h]
        for layer in self.head:
            h = layer(h)
            out.append(h)
        return out

    @property
    def hidden_widths(self) -> list[int]:
        return [self.pooled_width, *self.config["head_hidden"]]

    def transfer_parts(self) -> tuple[list[nn.Module], nn.Linear, str]:
        """``(blocks in order, output layer, its state-dict prefix)`` for fine-tuning.

        The first block is the whole encoder up to the pooled embedding; then
        one block per head layer.
        """
        parts = [self.project, self.learned, self.convolutions,
                 getattr(self, "edge_embedding", None)]  # fmt: skip
        encoder = nn.ModuleList([m for m in parts if m is not None])
        return [encoder, *self.head], self.output, "output."
