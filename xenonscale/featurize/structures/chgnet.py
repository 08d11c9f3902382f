"""CHGNet's pretrained crystal embedding and energy per atom (extra ``xenonscale[chgnet]``).

:class:`ChgnetFeatures` (engine name ``chgnet``) runs the universal CHGNet
potential (Deng et al. 2023) with the pretrained weights that ship inside the
``chgnet`` wheel (nothing is downloaded) and writes, per structure:

==============================  ==============================================
label                           definition
==============================  ==============================================
``chgnet:crystal_fea:0..63``    CHGNet's crystal feature, what
                                ``predict_structure(s, return_crystal_feas=True)``
                                returns: the layer-normed atom features after the
                                last convolution, summed over the cell's atoms
                                (CHGNet reads out before pooling, so it is a sum,
                                not a mean: it grows with the cell)
``chgnet:energy_per_atom``      CHGNet's predicted energy (eV/atom),
                                ``predict_structure(s)["e"]``
==============================  ==============================================

The weights are loaded without running pickled code: the checkpoint's bytes
are read once, their SHA-256 is compared with :data:`WEIGHTS` (a changed or
swapped file is refused with a :class:`~xenonscale.errors.FeaturizerError`,
before it is parsed), and those same bytes go to
``torch.load(..., map_location="cpu", weights_only=True)``, PyTorch's
restricted unpickler that rebuilds tensors and plain containers only. CHGNet
is then built from the checkpoint's ``model_args`` and ``state_dict``
(``CHGNet.from_dict``, as ``CHGNet.load`` does after its unrestricted
``torch.load``). Each process builds the model once (:func:`load_model`), so a
Dask worker pays for it on its first partition only.

Per batch, the parsed structures (:func:`~.parse.parse_structures`) are turned
into CHGNet's crystal graphs one by one (each under the per-record budgets),
then run through the network ``batch_size`` graphs at a time under
``torch.inference_mode()``. Error rows, with a reason, rather than a failed
batch: an unreadable input, a disordered structure (CHGNet needs one element
per site), an element beyond CHGNet's 94, a neighbour search above the
``max_neighbors`` budget, an isolated atom (no neighbour within 6 Å: CHGNet
refuses it), or a structure the network fails on. The network computes in
float32: a structure of two or three atoms alone and inside a batch can differ
in the last bit (about 5e-7), larger ones are bit-identical.

The model version is recorded: :attr:`ChgnetFeatures.card` (chgnet version,
weights file, SHA-256, loader), also part of ``citations``, which a feature
store keeps in its provenance.

Examples
--------
>>> from xenonscale.featurize.structures.chgnet import ChgnetFeatures
>>> poscar = "Si\\n1.0\\n0 2.7 2.7\\n2.7 0 2.7\\n2.7 2.7 0\\nSi\\n2\\ndirect\\n"
>>> poscar += "0 0 0\\n0.25 0.25 0.25\\n"
>>> chgnet = ChgnetFeatures()
>>> chgnet.labels[-1], len(chgnet.labels)
('chgnet:energy_per_atom', 65)
>>> batch = chgnet.featurize_batch([poscar, "not a structure"])
>>> batch.ok.tolist(), round(float(batch.values[0, -1]), 2)
([True, False], -5.31)
>>> chgnet.card["sha256"][:12]
'd14ab7c0f093'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.chem.periodic import PERIODIC_SYMBOLS
from xenonscale.errors import ConfigError, FeaturizerError
from xenonscale.featurize.base import FeatureBatch
from xenonscale.featurize.structures.featurizer import StructureFeaturizer
from xenonscale.featurize.structures.neighbors import search_cost
from xenonscale.featurize.structures.parse import StructureBatch
from xenonscale.limits import RecordTimeout, current_limits, failure_reason, run_record

__all__ = ["CHGNET_CITATION", "WEIGHTS", "ChgnetFeatures", "PretrainedWeights", "load_model"]

CHGNET_HINT = "pip install 'xenonscale[chgnet]'"
CHGNET_CITATION = (
    "Deng, B., Zhong, P., Jun, K., Riebesell, J., Han, K., Bartel, C. J. & Ceder, G. CHGNet as "
    "a pretrained universal neural network potential for charge-informed atomistic modelling. "
    "Nat. Mach. Intell. 5, 1031-1041 (2023)"
)
R2SCAN_CITATION = (
    "Huang, X. et al. Cross-functional transferability in foundation machine learning "
    "interatomic potentials. npj Comput. Mater. (CHGNet r2SCAN weights; as cited in chgnet's "
    "pretrained/r2scan/README.md)"
)
DISORDERED = "disordered structure (partial occupancies): CHGNet needs one element per site"
ISOLATED = (
    "isolated atom: an atom has no neighbour within CHGNet's {cutoff:g} Å atom-graph cutoff, "
    "and CHGNet refuses such structures"
)


@dataclass(frozen=True)
class PretrainedWeights:
    """A checkpoint inside the ``chgnet`` package: where it is and what it must hash to."""

    model: str
    path: str  # relative to the chgnet package folder
    sha256: str
    citations: tuple[str, ...] = (CHGNET_CITATION,)

    @property
    def file(self) -> str:
        return self.path.rsplit("/", 1)[-1]


#: The checkpoints of chgnet 0.4.2 (``CHGNet.load(model_name=...)``), hashed once and pinned.
WEIGHTS: dict[str, PretrainedWeights] = {
    w.model: w
    for w in (
        PretrainedWeights(
            "0.3.0",
            "pretrained/0.3.0/chgnet_0.3.0_e29f68s314m37.pth.tar",
            "d14ab7c0f093efe64b60a7bcd540bca10e74fb7f46c86108a079af60524659d1",
        ),
        PretrainedWeights(
            "0.2.0",
            "pretrained/0.2.0/chgnet_0.2.0_e30f77s348m32.pth.tar",
            "ef624f78b6db9d315b4ef256f1bb3207449924191b91720dc17d3f60c5df980e",
        ),
        PretrainedWeights(
            "r2scan",
            "pretrained/r2scan/chgnet_r2scan_transfer_learning_e15f36s161m23.pth.tar",
            "8eba3db0f35a2788bb3ae22885ad340591e27996f213c6643af522a633b50dad",
            (CHGNET_CITATION, R2SCAN_CITATION),
        ),
    )
}
DEFAULT_MODEL = "0.3.0"
EMBEDDING_WIDTH = 64  # atom_fea_dim of every shipped checkpoint

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}
_DIGESTS: dict[tuple, str] = {}


def _weights(model: str) -> PretrainedWeights:
    if model not in WEIGHTS:
        raise ConfigError(f"model={model!r}: CHGNet checkpoints are {', '.join(WEIGHTS)}")
    return WEIGHTS[model]


def weights_path(model: str = DEFAULT_MODEL) -> Path:
    """Where the checkpoint of ``model`` is in the installed ``chgnet`` (not imported)."""
    weights = _weights(model)
    spec = importlib.util.find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        raise FeaturizerError(
            f"the chgnet featurizer needs CHGNet, which is missing: {CHGNET_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / weights.path


def _read_verified(model: str) -> tuple[Path, bytes]:
    """The checkpoint's bytes, refused unless their SHA-256 is the pinned one."""
    weights = _weights(model)
    path = weights_path(model)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeaturizerError(
            f"CHGNet {model} weights {str(path)!r} cannot be read ({exc}): "
            f"reinstall chgnet ({CHGNET_HINT})"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != weights.sha256:
        raise FeaturizerError(
            f"CHGNet {model} weights {str(path)!r} have sha256 {digest}, expected "
            f"{weights.sha256} (chgnet 0.4.2's file): refusing to load a changed checkpoint; "
            "reinstall it with pip install --force-reinstall 'chgnet==0.4.2'"
        )
    stat = path.stat()
    _DIGESTS[(str(path), stat.st_size, stat.st_mtime_ns)] = digest
    return path, data


def _digest(model: str) -> str:
    """The verified SHA-256 of the checkpoint (hashed once per file size and mtime)."""
    path = weights_path(model)
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = None
    if key is None or key not in _DIGESTS:
        _read_verified(model)  # raises unless the bytes hash to the pinned value
        return _weights(model).sha256
    return _DIGESTS[key]


def load_model(model: str = DEFAULT_MODEL):
    """CHGNet with the pinned pretrained weights, in eval mode, built once per process.

    The checkpoint is checked against :data:`WEIGHTS` and read with
    ``torch.load(weights_only=True)``; no pickled object is executed.

    Raises
    ------
    FeaturizerError
        chgnet is not installed, or the file differs from the pinned one.
    """
    if model in _MODELS:
        return _MODELS[model]
    with _LOCK:
        if model not in _MODELS:
            _MODELS[model] = _build(model)
    return _MODELS[model]


def _build(model: str):
    path, data = _read_verified(model)
    try:
        import torch  # lazy: optional extra (chgnet), kept off the structures import path
        from chgnet.model import CHGNet  # lazy: optional extra
    except ImportError as exc:
        raise FeaturizerError(
            f"the chgnet featurizer needs CHGNet, which is not importable ({exc}): {CHGNET_HINT}"
        ) from exc
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        checkpoint = state["model"]
        args, tensors = checkpoint["model_args"], checkpoint["state_dict"]
    except Exception as exc:
        raise FeaturizerError(
            f"CHGNet {model} weights {str(path)!r} do not load as plain tensors "
            f"(torch.load weights_only=True: {exc}); refusing to unpickle them otherwise"
        ) from exc
    # CHGNet prints "CHGNet v0.3.0 initialized with ... parameters"; not on our stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        network = CHGNet.from_dict(
            {"model_args": args, "state_dict": tensors},
            mlp_out_bias=model == "0.2.0",  # what CHGNet.load passes
            version=model,
        )
    return network.eval()


def _chgnet_version() -> str:
    try:
        return version("chgnet")
    except PackageNotFoundError:
        raise FeaturizerError(
            f"the chgnet featurizer needs CHGNet, which is not installed: {CHGNET_HINT}"
        ) from None


class ChgnetFeatures(StructureFeaturizer):
    """CHGNet's crystal embedding and energy per atom (see the module docstring).

    Parameters
    ----------
    model : {"0.3.0", "0.2.0", "r2scan"}
        Which checkpoint shipped with chgnet (``CHGNet.load(model_name=...)``).
        Labels start with ``chgnet:`` for 0.3.0, ``chgnet@MODEL:`` otherwise.
    batch_size : int, default 64
        Crystal graphs per network call.
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN with a reason in ``errors_``.

    Examples
    --------
    >>> ChgnetFeatures(model="r2scan").labels[0]
    'chgnet@r2scan:crystal_fea:0'
    """

    def __init__(
        self, model: str = DEFAULT_MODEL, *, batch_size: int = 64, on_error: str = "record"
    ):
        self.model = model
        self.batch_size = batch_size
        self.on_error = on_error

    @property
    def prefix(self) -> str:
        _weights(self.model)
        return "chgnet" if self.model == DEFAULT_MODEL else f"chgnet@{self.model}"

    @property
    def labels(self) -> list[str]:
        p = self.prefix
        return [f"{p}:crystal_fea:{i}" for i in range(EMBEDDING_WIDTH)] + [f"{p}:energy_per_atom"]

    @property
    def card(self) -> dict[str, str]:
        """What the features come from: model, chgnet version, weights file and its SHA-256."""
        weights = _weights(self.model)
        chgnet = _chgnet_version()
        return {
            "model": f"CHGNet {weights.model}",
            "chgnet": chgnet,
            "weights": f"chgnet/{weights.path}",
            "sha256": _digest(self.model),
            "loader": "torch.load(map_location='cpu', weights_only=True) on checksummed bytes",
        }

    @property
    def citations(self) -> tuple[str, ...]:
        """The papers, and the model card in one line (stores keep citations as provenance)."""
        card = self.card
        line = (
            f"{card['model']} pretrained weights from chgnet {card['chgnet']}: "
            f"{card['weights']}, sha256 {card['sha256']}"
        )
        return (*_weights(self.model).citations, line)

    def _check_params(self) -> None:
        _weights(self.model)
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ConfigError(f"batch_size={size!r}: use a positive integer, e.g. 64")

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        """Featurize a batch; bad rows are NaN with one reason each (never raises for a row)."""
        self._check_params()
        return super().featurize_batch(inputs)

    def _compute(self, batch: StructureBatch, rows: np.ndarray, out: np.ndarray) -> list[RowError]:
        network = load_model(self.model)
        converter = network.graph_converter
        cutoff = float(converter.atom_graph_cutoff)
        n_elements = int(network.atom_embedding.embedding.num_embeddings)
        limits = current_limits()
        errors: list[RowError] = []
        graphs: list[tuple[int, Any]] = []  # (k, graph)
        for k, row in enumerate(rows.tolist()):
            reason = self._refuse(batch, row, cutoff, n_elements, limits)
            if reason is not None:
                errors.append(batch.error(row, reason))
                continue
            try:
                graphs.append((k, run_record(_graph, converter, batch, row)))
            except (Exception, RecordTimeout) as exc:
                isolated = isinstance(exc, ValueError) and "isolated atom" in str(exc)
                why = ISOLATED.format(cutoff=cutoff) if isolated else failure_reason(exc)
                errors.append(batch.error(row, why))
        size = int(self.batch_size)
        for start in range(0, len(graphs), size):
            group = graphs[start : start + size]
            errors += _run_group(network, group, batch, rows, out)
        return errors

    @staticmethod
    def _refuse(batch, row: int, cutoff: float, n_elements: int, limits) -> str | None:
        if not batch.ordered[row]:
            return DISORDERED
        z = batch.z[batch.sites(row)]
        if int(z.max()) > n_elements:
            symbol = PERIODIC_SYMBOLS[int(z.max()) - 1]
            return f"element {symbol} (Z={int(z.max())}): CHGNet knows H to Z={n_elements} only"
        n = int(batch.n_sites[row])
        cost = search_cost(n, batch.lattice[row], batch.pbc[row], cutoff)
        if not cost <= limits.max_neighbors:
            what = f"neighbour search to {cutoff:g} Å of {cost:.3g} pairs/images"
            return limits.limit_reason("max_neighbors", cost, what)
        return None


def _graph(converter, batch: StructureBatch, row: int):
    """CHGNet's crystal graph of one parsed row (its lattice, elements, fractional coordinates)."""
    from pymatgen.core import Lattice, Structure  # lazy: pymatgen stays off the import path

    sites = batch.sites(row)
    lattice = Lattice(batch.lattice[row], pbc=tuple(bool(p) for p in batch.pbc[row]))
    structure = Structure(lattice, batch.z[sites].tolist(), batch.frac[sites])
    return converter(structure)


def _run_group(network, group, batch, rows, out) -> list[RowError]:
    """One network call on a group of graphs; if it fails, each graph alone (its own error)."""
    try:
        _forward(network, group, out)
        return []
    except Exception as exc:
        if len(group) == 1:
            return [batch.error(int(rows[group[0][0]]), failure_reason(exc))]
    errors = []
    for item in group:
        errors += _run_group(network, [item], batch, rows, out)
    return errors


def _forward(network, group, out) -> None:
    import torch  # lazy: optional extra (chgnet)

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CHGNet's torch.tensor(tensor) copies
        prediction = network([g for _, g in group], task="e", return_crystal_feas=True)
    crystal = prediction["crystal_fea"].double().numpy()
    energy = prediction["e"].double().numpy()
    values = np.concatenate([crystal, energy[:, None]], axis=1)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise FloatingPointError(f"CHGNet gave non-finite values for {int(bad.sum())} structure(s)")
    out[[k for k, _ in group]] = values
