"""Train an :class:`~xenonscale.design.ngram.NGram` on Dask: count shards on workers, merge.

:func:`train_ngram` cuts the SMILES (an in-memory list, or a source read by
:mod:`xenonscale.sources`: a CSV column, a ``.smi`` file, ``.csv.gz``, an
``s3://`` URL) into partitions. Each worker counts the (context, next token)
pairs of its partition with numpy (:func:`~xenonscale.design.counting.count_smiles`,
``augment`` re-ordered copies per SMILES), and the counts are merged pairwise
on the workers as they arrive (a balanced tree; only the final table comes
back to the client). The vocabulary is then sorted, so the model does not
depend on the partitioning, the number of workers or the order the shards
finished in. SMILES that RDKit cannot parse are counted and skipped
(``provenance["bad"]``, with examples), never fatal.

Examples
--------
>>> from xenonscale.design import train_ngram
>>> model = train_ngram(["CCO", "c1ccccc1", "CC(=O)O", "oops("], order=4, client=False)
>>> model.provenance["smiles"], model.provenance["bad"]
(4, 1)
>>> model = train_ngram("moses_train.csv.gz", order=10, workers=2)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from xenonscale import __version__
from xenonscale.cluster import close_client, get_client
from xenonscale.design.counting import Counts, count_smiles, merge_counts
from xenonscale.design.ngram import NGram
from xenonscale.errors import ConfigError
from xenonscale.sources import open_source
from xenonscale.versions import installed_versions

__all__ = ["DEFAULT_AUGMENT", "PARTITION_ROWS", "train_ngram"]

#: Re-ordered copies per training SMILES by default.
DEFAULT_AUGMENT = 1
#: SMILES per partition by default.
PARTITION_ROWS = 10_000
_SMILES_COLUMNS = ("smiles", "psmiles", "canonical_smiles", "smi")


def _open_source(url: str, column: str | None, storage_options: dict | None):
    source = open_source(url, column=column, kind="molecule", storage_options=storage_options)
    columns = getattr(source, "columns", None)
    if column is None and columns:
        by_name = {str(c).lower(): c for c in columns}
        for name in _SMILES_COLUMNS:
            if name in by_name and by_name[name] != source.column:
                return open_source(
                    url, column=by_name[name], kind="molecule", storage_options=storage_options
                )
    return source


def _count_partition(source, partition, limit, order, augment, seed) -> Counts:
    frame = source.read(partition)
    if limit is not None:
        frame = frame[frame["row"] < limit]
    return count_smiles(
        frame["input"].tolist(),
        order=order,
        augment=augment,
        seed=seed,
        rows=frame["row"].to_numpy(),
    )


def _count_chunk(smiles, first_row, order, augment, seed) -> Counts:
    return count_smiles(smiles, order=order, augment=augment, seed=seed, first_row=first_row)


def _tree(items: Iterable, merge: Callable, progress: Callable[[], None]) -> Any:
    """Merge ``items`` as they arrive, pairing equal-sized merges (a binary counter)."""
    levels: dict[int, Any] = {}
    for item in items:
        progress()
        level = 0
        while level in levels:
            item = merge(levels.pop(level), item)
            level += 1
        levels[level] = item
    rest = [levels[k] for k in sorted(levels)]
    while len(rest) > 1:
        rest = [merge(*rest[i : i + 2]) if i + 1 < len(rest) else rest[i]
                for i in range(0, len(rest), 2)]  # fmt: skip
    return rest[0] if rest else None


def train_ngram(
    smiles,
    *,
    order: int = 10,
    augment: int = DEFAULT_AUGMENT,
    client=None,
    partitions: int | None = None,
    seed: int = 0,
    progress: bool = True,
    column: str | None = None,
    limit: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    storage_options: dict | None = None,
    **settings: Any,
) -> NGram:
    """Count an n-gram model of extended SMILES, distributed over Dask workers.

    Parameters
    ----------
    smiles
        An iterable of SMILES strings, or a source path/URL (``str`` or
        ``Path``) readable by :func:`xenonscale.sources.open_source`.
    order
        Longest context, in tokens (XenonPy's ``train_order`` upper bound).
    augment
        Random re-orderings (RDKit ``MolToRandomSmilesVect``, seeded by
        ``seed`` and the row number) counted per SMILES, on top of the
        SMILES as given. 0 counts the SMILES as given only.
    client
        A ``distributed.Client``; ``None`` starts an embedded LocalCluster
        (:func:`xenonscale.cluster.get_client`, with ``workers`` and
        ``scheduler``) and closes it at the end; ``False`` counts in this
        process.
    partitions
        Number of partitions (default: one per 10,000 SMILES).
    seed
        Seed of the re-orderings: the same seed gives the same model.
    progress
        Show a progress bar over partitions.
    column
        Input column of a tabular source (default: a column named
        ``smiles``/``SMILES``/``psmiles``, else the source's default).
    limit
        Use only the first ``limit`` SMILES.
    workers, scheduler
        For the embedded cluster or a scheduler address (``client=None``).
    storage_options
        fsspec options of a source URL (S3 credentials).
    **settings
        Proposal settings of the model (``del_range``, ``reorder_prob``,
        ``max_len``, ``retries``).

    Returns
    -------
    NGram
        ``provenance`` says what was counted: ``smiles``, ``bad`` (+
        ``bad_examples``), ``sequences``, ``tokens``, ``augment``, ``seed``,
        ``source``, versions.

    Raises
    ------
    ConfigError
        ``order < 1``, ``augment < 0``, ``partitions < 1``, ``limit < 0``, a
        missing column or an unreadable source.

    Examples
    --------
    >>> from xenonscale.design import train_ngram
    >>> model = train_ngram(["CCO", "CCN", "CCC"], order=2, augment=2, client=False)
    >>> model.provenance["sequences"]
    9
    """
    from tqdm.auto import tqdm

    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ConfigError(f"order={order!r}: use a context length of at least 1 token, e.g. 10")
    if isinstance(augment, bool) or not isinstance(augment, int) or augment < 0:
        raise ConfigError(f"augment={augment!r}: use a number of re-orderings >= 0, e.g. 1")
    if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
        raise ConfigError(f"partitions={partitions!r}: use a positive number of partitions")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit={limit!r}: use a number of SMILES >= 0")
    NGram([], [], [], order=order, **settings)._settings()  # bad settings fail early

    if isinstance(smiles, str | Path):
        source = _open_source(str(smiles), column, storage_options)
        total, plan = source.plan(rows_per_partition=PARTITION_ROWS)
        used = total if limit is None else min(total, limit)
        if partitions is not None:
            total, plan = source.plan(rows_per_partition=max(1, math.ceil(used / partitions)))
        plan = [p for p in plan if p.start < used]
        origin = {"source": str(smiles), "column": getattr(source, "column", None)}
        tasks = [(_count_partition, (source, p, limit, order, augment, seed)) for p in plan]
    else:
        if column is not None:
            raise ConfigError(
                f"column={column!r} applies to a source path, not to a list of SMILES: leave it out"
            )
        items = list(smiles)[:limit] if limit is not None else list(smiles)
        size = math.ceil(len(items) / partitions) if partitions else PARTITION_ROWS
        size = max(1, size)
        tasks = [
            (_count_chunk, (items[i : i + size], i, order, augment, seed))
            for i in range(0, len(items), size)
        ]
        origin = {"source": "in-memory list"}

    own = client is None
    if own:
        client = get_client(scheduler, workers=workers, quiet=not progress)
    n_workers = 0
    try:
        with tqdm(
            total=len(tasks), unit="partition", desc="n-gram counts", disable=not progress
        ) as bar:
            if client is False:
                counts = _tree(
                    (fn(*args) for fn, args in tasks), merge_counts, lambda: bar.update(1)
                )
            else:
                from distributed import as_completed

                n_workers = len(client.scheduler_info().get("workers", {}))
                futures = [client.submit(fn, *args, pure=False) for fn, args in tasks]
                arriving = as_completed(futures)
                del futures

                def merge(a, b):
                    return client.submit(merge_counts, a, b, pure=False)

                counts = _tree(arriving, merge, lambda: bar.update(1))
                counts = counts.result() if counts is not None else None
    finally:
        if own:
            close_client(client)
    if counts is None:
        counts = count_smiles([], order=order)
    counts = counts.canonical()
    provenance = {
        **origin,
        "smiles": counts.inputs,
        "bad": counts.bad,
        "bad_examples": counts.bad_examples,
        "sequences": counts.sequences,
        "tokens": counts.tokens,
        "stars": {str(k): v for k, v in sorted(counts.stars.items())},
        "order": order,
        "augment": augment,
        "seed": seed,
        "limit": limit,
        "partitions": len(tasks),
        "workers": n_workers,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": {"xenonscale": __version__, **installed_versions("rdkit", "numpy")},
    }
    return NGram(
        counts.vocabulary, counts.entries, counts.counts, order=order,
        provenance=provenance, **settings,
    )  # fmt: skip
