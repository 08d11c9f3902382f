"""A LightningDataModule that streams a FeatureStore.

``setup`` reads only the small per-row arrays (``ok``, the targets, the group
labels), picks the usable rows (``ok`` and finite targets; optional outlier
rule), splits them reproducibly (:mod:`xenonscale.models.splits`) and fits
the input and target statistics on the training split alone, in one
streaming pass over the feature chunks. Features are then served either from
memory (when the selected rows fit in ``memory_budget`` bytes) or chunk by
chunk from Zarr (:class:`ChunkStream`): the store is never loaded whole when it
does not fit. Under DDP each process reads its own share.

Outliers: ``outliers="drop"`` removes rows whose target lies more than
``outlier_z`` robust standard deviations (1.4826 × MAD) from the training
median, ``"clip"`` clips them to that bound, ``"keep"`` does nothing. The
shared OQMD file has formation enthalpies of −198.7 and +43.5 eV/atom: real
errors in real data. ``counts`` says how many rows each rule removed.

Examples
--------
>>> from xenonscale.models.data import StoreDataModule
>>> data = StoreDataModule("oqmd.zarr", "target", batch_size=512)  # doctest: +SKIP
>>> data.setup("fit"); data.counts  # doctest: +SKIP
{'rows': 239190, 'not_ok': 0, 'non_finite_target': 0, 'outliers_dropped': 12, ...}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from xenonscale.errors import ConfigError, StoreError
from xenonscale.models.splits import split_indices
from xenonscale.store.layout import WITHDRAWN, StoreLocation

__all__ = ["INPUTS", "ArrayStream", "ChunkStream", "StoreDataModule", "read_inputs", "read_rows"]

OUTLIER_RULES = ("keep", "drop", "clip")
#: What a model reads from a store: the feature matrix, or each row's composition
#: (element slots then fractions, the ``slots`` featurizer's columns).
INPUTS = {
    "features": ("features",),
    "composition": ("composition_element", "composition_fraction"),
    "graph": ("features",),  # the rows of the 'graph' structure featurizer, as written
}


def _group(store: str, storage_options: dict | None):
    import zarr

    location = StoreLocation(store, storage_options)
    if not location.exists():
        raise StoreError(f"no feature store at {store!r}: run `xenonscale featurize` first")
    return zarr.open_group(location.zarr_store(), mode="r")


def read_rows(features, rows: np.ndarray, chunk_rows: int | None = None) -> np.ndarray:
    """``features[rows]`` (sorted rows) read chunk by chunk, as float32."""
    chunk = chunk_rows or features.chunks[0]
    out = np.empty((len(rows), features.shape[1]), dtype=np.float32)
    if not len(rows):
        return out
    bounds = np.searchsorted(rows, np.arange(0, features.shape[0] + chunk, chunk))
    for c in np.flatnonzero(np.diff(bounds)):
        lo, hi = bounds[c], bounds[c + 1]
        block = features[c * chunk : min((c + 1) * chunk, features.shape[0])]
        out[lo:hi] = block[rows[lo:hi] - c * chunk]
    return out


def read_inputs(group, rows: np.ndarray, inputs: str = "features",
                chunk_rows: int | None = None) -> np.ndarray:  # fmt: skip
    """Rows of a store's model inputs as float32: features, or ``[Z slots | fractions]``."""
    parts = [read_rows(group[name], rows, chunk_rows) for name in INPUTS[inputs]]
    return parts[0] if len(parts) == 1 else np.hstack(parts)


def _check_inputs(group, store: str, inputs: str) -> None:
    missing = [name for name in INPUTS[inputs] if name not in group]
    if missing:
        raise StoreError(
            f"{store!r} has no {missing[0]!r} array: the {inputs} inputs need a composition store "
            "built by this xenonscale version; featurize it again (--overwrite)"
        )


class StoreDataModule(L.LightningDataModule):
    """Batches of ``(features, targets)`` from a FeatureStore (see the module docstring).

    Parameters
    ----------
    store
        FeatureStore URL.
    targets
        Target variable name(s) in the store (e.g. ``"target"``).
    split, val_fraction, test_fraction, folds, fold, group_by, seed
        See :func:`~xenonscale.models.splits.split_indices`; ``group_by`` names
        the store variable whose values form groups (``input`` or ``id``).
    outliers, outlier_z
        The outlier rule (``keep``, ``drop``, ``clip``) and its bound.
    memory_budget
        Serve from memory when the selected features take at most this many
        bytes; else stream chunks from Zarr.
    candidate_rows
        Store rows the train/validation/test splits are drawn from (default:
        all); a benchmark's outer training fold, so that nothing of its test
        fold is ever seen.
    inputs
        ``"features"`` (the pooled feature matrix) or ``"composition"`` (each
        row's element slots and fractions, for the attention backbone); see
        :data:`INPUTS`.
    split_seed
        Seed of the split alone (default ``seed``, which also shuffles the
        batches): ensemble members share one split and shuffle differently.
    atom_budget
        Graph inputs only: a batch closes when its crystals would hold more
        than this many atoms (or at ``batch_size`` crystals), so a batch of
        large cells costs what a batch of small ones does. Served from memory.
    """

    def __init__(
        self,
        store: str,
        targets: str | Sequence[str] = "target",
        *,
        split: str = "random",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        folds: int = 5,
        fold: int = 0,
        group_by: str = "input",
        seed: int = 0,
        batch_size: int = 256,
        outliers: str = "drop",
        outlier_z: float = 10.0,
        memory_budget: int = 2 << 30,
        storage_options: dict | None = None,
        candidate_rows: Sequence[int] | None = None,
        inputs: str = "features",
        split_seed: int | None = None,
        atom_budget: int | None = None,
    ):
        super().__init__()
        if inputs not in INPUTS:
            raise ConfigError(f"inputs={inputs!r}: use one of {', '.join(INPUTS)}")
        if outliers not in OUTLIER_RULES:
            raise ConfigError(f"outliers={outliers!r}: use one of {', '.join(OUTLIER_RULES)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}: use a positive number")
        self.store = store
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        self.split = split
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.folds = folds
        self.fold = fold
        self.group_by = group_by
        self.seed = seed
        self.split_seed = seed if split_seed is None else split_seed
        self.batch_size = batch_size
        self.outliers = outliers
        self.outlier_z = outlier_z
        self.memory_budget = memory_budget
        self.storage_options = storage_options
        self.candidate_rows = (
            None if candidate_rows is None else np.unique(np.asarray(candidate_rows, np.int64))
        )
        self.inputs = inputs
        if atom_budget is not None and (inputs != "graph" or int(atom_budget) < 1):
            raise ConfigError(
                f"atom_budget={atom_budget!r}: a positive atom count, for graph inputs only"
            )
        self.atom_budget = None if atom_budget is None else int(atom_budget)
        self._ready = False

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        group = _group(self.store, self.storage_options)
        missing = [t for t in self.targets if t not in group]
        if missing:
            names = sorted(k for k in group.array_keys() if k not in ("features", "feature"))
            raise ConfigError(f"--target {missing[0]!r} is not in {self.store!r}; it has {names}")
        _check_inputs(group, self.store, self.inputs)
        first = group[INPUTS[self.inputs][0]]
        if self.inputs != "composition":
            self.labels = [str(v) for v in group["feature"][:].tolist()]
        else:
            slots = int(first.shape[1])
            self.labels = [f"element:{i}" for i in range(slots)]
            self.labels += [f"fraction:{i}" for i in range(slots)]
        self.n_features = len(self.labels)
        self.chunk_rows = int(first.chunks[0])
        self.store_attrs = dict(group.attrs)
        ok = np.asarray(group["ok"][:], dtype=bool)
        y = np.stack([np.asarray(group[t][:], dtype=np.float64) for t in self.targets], axis=1)
        finite = np.isfinite(y).all(axis=1)
        counts = {
            "rows": len(ok),
            "not_ok": int((~ok).sum()),
            "non_finite_target": int((ok & ~finite).sum()),
        }
        if self.inputs == "composition":  # a formula with more elements than slots has none
            has = np.asarray(first[:, 0]) > 0
            counts["no_composition"] = int((ok & finite & ~has).sum())
            ok = ok & has
        if WITHDRAWN in group:  # records a synced database withdrew: kept, never trained on
            withdrawn = np.asarray(group[WITHDRAWN][:], dtype=bool)
            counts["withdrawn"] = int((ok & finite & withdrawn).sum())
            ok = ok & ~withdrawn
        usable = np.flatnonzero(ok & finite)
        if self.candidate_rows is not None:
            usable = usable[np.isin(usable, self.candidate_rows)]
        groups = None
        if self.split == "group":
            groups = np.asarray(group[self.group_by][:], dtype=object)[usable]
        parts = split_indices(
            len(usable),
            method=self.split,
            val_fraction=self.val_fraction,
            test_fraction=self.test_fraction,
            folds=self.folds,
            fold=self.fold,
            groups=groups,
            seed=self.split_seed,
        )
        rows = {name: usable[index] for name, index in parts.items()}
        y_train = y[rows["train"]]
        if not len(y_train):
            raise ConfigError(f"no usable training rows in {self.store!r} (counts: {counts})")
        self.bounds = self._outlier_bounds(y_train)
        for name in ("train", "val", "test"):
            values = y[rows[name]]
            inside = ((values >= self.bounds[0]) & (values <= self.bounds[1])).all(axis=1)
            counts[f"outliers_{name}"] = int((~inside).sum())
            if self.outliers == "drop":
                rows[name] = rows[name][inside]
            elif self.outliers == "clip":
                y[rows[name]] = np.clip(values, self.bounds[0], self.bounds[1])
        counts |= {name: len(r) for name, r in rows.items()}
        self.rows, self.y, self.counts = rows, y.astype(np.float32), counts
        self.target_mean = self.y[rows["train"]].mean(axis=0)
        self.target_std = self.y[rows["train"]].std(axis=0)
        if self.inputs == "features":
            self.feature_mean, self.feature_std = self._feature_stats(first, rows["train"])
        else:  # atomic numbers, fractions and graphs are not standardized
            self.feature_mean = np.zeros(self.n_features, np.float32)
            self.feature_std = np.ones(self.n_features, np.float32)
        selected = sum(len(r) for r in rows.values()) * self.n_features * 4
        self.in_memory = selected <= self.memory_budget
        self._x: dict[str, np.ndarray] = {}
        self._ready = True

    def __getstate__(self) -> dict:
        """Pickled (e.g. to DDP processes) without the in-memory features: re-read there."""
        return {**self.__dict__, "_x": {}}

    def _features(self, name: str) -> np.ndarray:
        if name not in self._x:
            group = _group(self.store, self.storage_options)
            self._x[name] = read_inputs(group, self.rows[name], self.inputs)
        return self._x[name]

    def _outlier_bounds(self, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.outliers == "keep":
            inf = np.full(y_train.shape[1], np.inf)
            return -inf, inf
        median = np.median(y_train, axis=0)
        mad = np.median(np.abs(y_train - median), axis=0) * 1.4826
        mad = np.where(mad > 0, mad, np.std(y_train, axis=0) + 1e-12)
        return median - self.outlier_z * mad, median + self.outlier_z * mad

    def _feature_stats(self, features, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of each feature over ``rows`` (finite values), one streaming pass."""
        total = np.zeros(self.n_features)
        squares = np.zeros(self.n_features)
        count = np.zeros(self.n_features)
        step = self.chunk_rows * 8
        for start in range(0, len(rows), step):
            block = read_rows(features, rows[start : start + step], self.chunk_rows)
            block = block.astype(np.float64)
            finite = np.isfinite(block)
            block[~finite] = 0.0
            total += block.sum(axis=0)
            squares += (block**2).sum(axis=0)
            count += finite.sum(axis=0)
        mean = total / np.maximum(count, 1)
        var = np.maximum(squares / np.maximum(count, 1) - mean**2, 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)

    # ------------------------------------------------------------ dataloaders
    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        if self.in_memory or self.atom_budget:
            x, y = self._features(name), self.y[self.rows[name]]
            sizes = None
            if self.atom_budget:  # the graph rows start with one Z per atom slot (0 = empty)
                slots = sum(label.startswith("z:") for label in self.labels)
                sizes = (np.nan_to_num(x[:, :slots]) > 0).sum(axis=1)
            arrays = ArrayStream(x, y, batch_size=self.batch_size, shuffle=shuffle, seed=self.seed,
                                 sizes=sizes, size_budget=self.atom_budget)  # fmt: skip
            return DataLoader(arrays, batch_size=None)
        stream = ChunkStream(
            self.store,
            self.rows[name],
            self.y[self.rows[name]],
            batch_size=self.batch_size,
            shuffle=shuffle,
            seed=self.seed,
            storage_options=self.storage_options,
            equal_batches=shuffle,
            inputs=self.inputs,
        )
        return DataLoader(stream, batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features, targets)`` of a split as arrays (read from the store if streaming)."""
        self.setup()
        return self._features(name), self.y[self.rows[name]]


def _world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside DDP."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ArrayStream(IterableDataset):
    """Batches sliced from in-memory arrays: one fancy-index per batch, not per sample.

    Each epoch draws a new seeded permutation; under DDP process ``r`` takes
    every ``world``-th row of it, so all processes yield the same number of
    batches. Without shuffling (validation) rows come in order. A training
    epoch in one process whose last batch would hold one row leaves that row
    out (batch norm cannot train on one row; a different row each epoch).

    With ``sizes`` (atoms per row) and ``size_budget``, a batch closes before
    its rows' sizes would pass the budget (or at ``batch_size`` rows; a row
    larger than the budget is a batch of its own). Every process cuts the
    same permutation into the same batches and takes every ``world``-th
    batch, the count rounded down to a multiple of ``world``.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, *, batch_size: int, shuffle: bool,
                 seed: int = 0, sizes: np.ndarray | None = None,
                 size_budget: int | None = None):  # fmt: skip
        self.x, self.y = x, np.asarray(y, dtype=np.float32)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.sizes = None if sizes is None else np.asarray(sizes, dtype=np.int64)
        self.size_budget = size_budget
        self.epoch = 0

    def _budget_batches(self, order: np.ndarray) -> list[np.ndarray]:
        """``order`` cut into consecutive batches under the size budget."""
        sizes = self.sizes[order]
        batches, start, total = [], 0, 0
        for i, size in enumerate(sizes.tolist()):
            full = i - start >= self.batch_size or total + size > self.size_budget
            if i > start and full:
                batches.append(order[start:i])
                start, total = i, 0
            total += size
        if start < len(order):
            batches.append(order[start:])
        return batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rank, world = _world()
        n = len(self.y)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
            order = order[: n - n % world] if world > 1 else order
        else:
            order = np.arange(n)
        self.epoch += 1
        if self.sizes is not None and self.size_budget:
            batches = self._budget_batches(order)
            if world > 1 and self.shuffle:
                batches = batches[: len(batches) - len(batches) % world]
            for index in batches[rank::world]:
                index = np.sort(index)
                yield torch.from_numpy(self.x[index]), torch.from_numpy(self.y[index])
            return
        mine = order[rank::world]
        if self.shuffle and world == 1 and len(mine) > 1 and len(mine) % self.batch_size == 1:
            mine = mine[:-1]  # a 1-row batch breaks batch norm; another row sits out next epoch
        for lo in range(0, len(mine), self.batch_size):
            index = np.sort(mine[lo : lo + self.batch_size])
            yield torch.from_numpy(self.x[index]), torch.from_numpy(self.y[index])


class ChunkStream(IterableDataset):
    """Batches read chunk by chunk from a store (for stores larger than memory).

    Each epoch the chunks are visited in a new seeded order; rows of a few
    chunks at a time are shuffled together. Under DDP the chunks are dealt
    round-robin to the processes, and with ``equal_batches`` every process
    yields the same number of batches (a DDP requirement), the smallest share.
    """

    def __init__(
        self,
        store: str,
        rows: np.ndarray,
        targets: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        storage_options: dict | None = None,
        equal_batches: bool = True,
        mix_chunks: int = 4,
        inputs: str = "features",
    ):
        self.store = store
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.float32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.storage_options = storage_options
        self.equal_batches = equal_batches
        self.mix_chunks = mix_chunks
        self.inputs = inputs
        self.epoch = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        group = _group(self.store, self.storage_options)
        chunk = int(group[INPUTS[self.inputs][0]].chunks[0])
        rank, world = _world()
        ids = self.rows // chunk
        chunks = np.unique(ids)
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        if self.shuffle:
            chunks = rng.permutation(chunks)
        mine = chunks[rank::world]
        limit = None
        if self.equal_batches and world > 1:
            per_rank = [np.isin(ids, chunks[r::world]).sum() for r in range(world)]
            limit = min(math.ceil(n / self.batch_size) for n in per_rank)
        emitted = 0
        for start in range(0, len(mine), self.mix_chunks):
            take = np.flatnonzero(np.isin(ids, mine[start : start + self.mix_chunks]))
            x = read_inputs(group, self.rows[take], self.inputs, chunk)
            y = self.targets[take]
            order = rng.permutation(len(take)) if self.shuffle else np.arange(len(take))
            for lo in range(0, len(order), self.batch_size):
                if limit is not None and emitted >= limit:
                    return
                sel = order[lo : lo + self.batch_size]
                if self.shuffle and world == 1 and len(sel) == 1 < len(order):
                    continue  # a 1-row batch breaks batch norm (a random row, once an epoch)
                yield torch.from_numpy(x[sel]), torch.from_numpy(y[sel])
                emitted += 1
