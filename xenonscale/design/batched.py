"""The batched grower of extended SMILES: the inner loop of the n-gram proposals.

:func:`grow` extends a batch of prefixes one position at a time for all of
them together: one ``searchsorted`` finds every context of every order of
every row (:mod:`xenonscale.design.keys`), the longest context seen in
training whose allowed next tokens have a count wins (back-off), the
candidates of all rows are masked by their states, and one cumulative sum +
``searchsorted`` draws the next token of every row. When few rows are left
(the long tail of a batch, or a small batch), they finish in the scalar
grower (:mod:`xenonscale.design.scalar`). Retries ride along: a finished row
that the caller refuses restarts in place from a new prefix.

Examples
--------
>>> import numpy as np
>>> from xenonscale.design import train_ngram
>>> from xenonscale.design.batched import grow
>>> from xenonscale.design.keys import prefix_of
>>> from xenonscale.design.tokens import extend
>>> model = train_ngram(["CCO", "CCN", "CC(C)O"] * 3, order=3, client=False)
>>> ext = extend("CCO")
>>> out = grow(model._tables, [prefix_of(ext, 2)], np.zeros(1), np.random.default_rng(0), 50)
>>> len(out)
1
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xenonscale.design import scalar
from xenonscale.design.keys import (
    ALLOWED,
    BEGIN_HASH,
    CODES,
    MAX_DEPTH,
    MAX_RINGS,
    N_KINDS,
    Prefix,
    Tables,
    context_keys,
    states,
)
from xenonscale.design.tokens import (
    KIND_ATOM,
    KIND_BRANCH_CLOSE,
    KIND_BRANCH_OPEN,
    KIND_END,
    KIND_RING_CLOSE,
    KIND_RING_OPEN,
    KIND_STAR,
)

__all__ = ["grow"]

_IS_ATOM = np.zeros(N_KINDS, np.int64)
_IS_ATOM[[KIND_ATOM, KIND_STAR]] = 1
_IS_STAR = np.zeros(N_KINDS, np.int64)
_IS_STAR[KIND_STAR] = 1


def _ragged(n_rows: int, values: list[list[int]], dtype) -> tuple:
    """Row and column indices and the values of a ragged list of lists (for one assignment)."""
    sizes = np.fromiter(map(len, values), np.int64, count=n_rows)
    total = int(sizes.sum())
    row = np.repeat(np.arange(n_rows), sizes)
    col = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    flat = np.fromiter((v for vs in values for v in vs), dtype, count=total)
    return row, col, flat, sizes


class _Rows:
    """Generation state: 2-D buffers by row, 1-D state of the active rows only (compacted).

    ``left`` is the number of ``*`` still wanted (negative: free); ``limit``
    the number of tokens a row may still grow before it reaches ``max_len``.
    """

    names = ("index", "vlen", "depth", "nring", "state", "atoms", "left", "last", "limit",
             "grown")  # fmt: skip

    def __init__(self, prefixes: list[Prefix], target: np.ndarray, order: int, max_len: int):
        n = len(prefixes)
        self.order, self.max_len = order, max_len
        row, col, flat, sizes = _ragged(n, [p.view for p in prefixes], np.uint64)
        # a view is never longer than its row (< max_len tokens), so this width holds any
        # prefix a restart brings; ``order`` pads of BEGIN come first
        self.view = np.full((n, order + max_len + 2), BEGIN_HASH, np.uint64)
        self.view[row, col + order] = flat
        self.vlen = sizes + order
        row, col, flat, sizes = _ragged(n, [p.opens for p in prefixes], np.int64)
        self.opens = np.zeros((n, MAX_DEPTH + 1), np.int64)
        self.opens[row, col] = flat + order
        self.depth = sizes
        row, col, flat, sizes = _ragged(n, [p.ring_atoms for p in prefixes], np.int64)
        self.ring_atoms = np.full((n, MAX_RINGS + 1), -1, np.int64)
        self.ring_atoms[row, col] = flat
        self.nring = sizes
        self.state = states(self.depth, self.nring)
        self.atoms = np.array([p.atoms for p in prefixes], np.int64)
        stars = np.array([p.stars for p in prefixes], np.int64)
        target = np.asarray(target, np.int64)
        self.left = np.where(target < 0, -1, target - stars)
        self.last = np.array([p.last for p in prefixes], np.int64)
        self.limit = max_len - np.array([p.length for p in prefixes], np.int64)
        self.index = np.arange(n)
        self.out = np.zeros((n, max_len + 1), np.int32)
        self.grown = np.zeros(n, np.int64)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.names:
            setattr(self, name, getattr(self, name)[mask])

    def reset(self, p: int, prefix: Prefix, target: int) -> None:
        """Restart active row ``p`` from ``prefix``."""
        i, order = self.index[p], self.order
        self.view[i, order : order + len(prefix.view)] = np.asarray(prefix.view, np.uint64)
        self.vlen[p] = order + len(prefix.view)
        self.opens[i, : len(prefix.opens)] = np.asarray(prefix.opens, np.int64) + order
        self.depth[p] = len(prefix.opens)
        self.ring_atoms[i, : len(prefix.ring_atoms)] = prefix.ring_atoms
        self.nring[p] = len(prefix.ring_atoms)
        self.state[p] = 32 * (self.depth[p] > 0) + min(self.nring[p], 31)
        self.atoms[p], self.last[p] = prefix.atoms, prefix.last
        self.left[p] = -1 if target < 0 else target - prefix.stars
        self.limit[p] = self.max_len - prefix.length
        self.grown[p] = 0


def _finish(tables, heads, targets, rng, max_len, accept, restart, result) -> None:
    """Grow rows one by one with the scalar grower; ``heads``: (row, state, tokens so far)."""
    py = scalar.scalar_tables(tables)[0]
    for i, st, head in heads:
        while st is not None:
            new = scalar.grow_one(tables, py, st, rng)
            if new is not None:
                tokens = np.asarray(new, np.int32)
                if head is not None and head.size:
                    tokens = np.concatenate([head, tokens])
                if accept is None or accept(i, tokens):
                    result[i] = tokens
                    break
            head = None
            again = restart(i) if restart is not None else None
            while again is not None and again.length >= max_len:
                again = restart(i)
            st = (
                None
                if again is None
                else scalar.scalar_state(again, int(targets[i]), tables.order, max_len)
            )


def grow(
    tables: Tables,
    prefixes: list[Prefix],
    target_stars: np.ndarray,
    rng: np.random.Generator,
    max_len: int,
    accept: Callable[[int, np.ndarray], bool] | None = None,
    restart: Callable[[int], Prefix | None] | None = None,
) -> list[np.ndarray | None]:
    """Grow every prefix to the end token; the new token ids per row, or None (failed).

    A row fails when it reaches ``max_len`` tokens, opens more than
    ``MAX_RINGS`` rings or ``MAX_DEPTH`` branches, or when no allowed token
    has a count even in its order-0 context. ``target_stars[i] < 0`` leaves
    the number of ``*`` free.

    ``accept(i, tokens)`` (optional) judges a finished row ``i``; a row it
    refuses, or a row that failed, is restarted in place from
    ``restart(i)`` (a new :class:`Prefix`, or None to give the row up), so
    that retries ride along with the rows still growing instead of costing
    another pass. A prefix of ``max_len`` tokens or more fails at once.
    """
    result: list[np.ndarray | None] = [None] * len(prefixes)
    if not prefixes:
        return result
    order = tables.order
    targets = np.asarray(target_stars, np.int64)
    if len(prefixes) <= scalar.SCALAR_ROWS:  # a small batch: plain Python all the way
        heads = [
            (i, scalar.scalar_state(p, int(targets[i]), order, max_len), None)
            for i, p in enumerate(prefixes)
            if p.length < max_len
        ]
        _finish(tables, heads, targets, rng, max_len, accept, restart, result)
        return result
    rows = _Rows(prefixes, targets, order, max_len)
    rows.keep(rows.limit > 0)
    steps = np.arange(1, order + 1)
    keys_table, indptr, counts = tables.keys, tables.indptr, tables.counts
    kind_of, ridx_of, hash_of, tok_of = tables.kind, tables.ridx, tables.hashes, tables.tokens
    found = np.empty((len(prefixes), order + 2), bool)
    found[:, 0] = True  # "no context": the back-off's last resort is to give up
    while rows.index.size:
        idx = rows.index
        na = idx.size
        if na <= scalar.SCALAR_ROWS:
            heads = []
            for p in range(na):
                i = int(idx[p])
                st = {
                    "view": rows.view[i, : rows.vlen[p]].tolist(),
                    "opens": rows.opens[i, : rows.depth[p]].tolist(),
                    "ring_atoms": rows.ring_atoms[i, : rows.nring[p]].tolist(),
                    "limit": int(rows.limit[p] - rows.grown[p]),
                }
                for name in ("depth", "nring", "atoms", "left", "last"):
                    st[name] = int(getattr(rows, name)[p])
                heads.append((i, st, rows.out[i, : rows.grown[p]]))
            _finish(tables, heads, targets, rng, max_len, accept, restart, result)
            break
        depth, nring = rows.depth, rows.nring
        # -- contexts of every order, one lookup (keys end with a sentinel) ---------------
        back = rows.view[idx[:, None], rows.vlen[:, None] - steps]
        keys = context_keys(rows.state, back, order)
        pos = np.searchsorted(keys_table, keys)
        np.equal(keys_table[pos], keys, out=found[:na, 1:])
        code = CODES[rows.state, np.sign(rows.left) + 1] + rows.last * 8
        # -- back-off: longest found context with an allowed, counted next token --------
        chosen = np.full(na, -1, np.int64)
        pending = np.arange(na)
        while True:
            j = order + 1 - np.argmax(found[pending, ::-1], axis=1)
            live = j > 0
            if not live.all():
                pending, j = pending[live], j[live]
                if not pending.size:
                    break
            row = pos[pending, j - 1]
            start = indptr[row]
            sizes = indptr[row + 1] - start
            first = np.cumsum(sizes) - sizes
            entry = np.arange(first[-1] + sizes[-1]) + np.repeat(start - first, sizes)
            tok = tok_of[entry]
            r = np.repeat(pending, sizes)
            kinds = kind_of[tok]
            allow = ALLOWED[code[r], kinds]
            closing = np.flatnonzero(kinds == KIND_RING_CLOSE)
            if closing.size:
                rc = r[closing]
                at = nring[rc] - 1 - ridx_of[tok[closing]]
                opener = rows.ring_atoms[idx[rc], np.maximum(at, 0)]
                allow[closing] &= (at >= 0) & (opener != rows.atoms[rc] - 1)
            weight = counts[entry] * allow
            csum = np.cumsum(weight)
            base = csum[first] - weight[first]
            total = csum[first + sizes - 1] - base
            good = total > 0
            draw = base + (rng.random(pending.size) * total).astype(np.int64)
            if good.all():
                chosen[pending] = tok[np.searchsorted(csum, draw, side="right")]
                break
            chosen[pending[good]] = tok[np.searchsorted(csum, draw[good], side="right")]
            bad = pending[~good]
            found[bad, j[~good]] = False
            pending = bad
        # -- append the chosen tokens, update the states ---------------------------------
        token = np.maximum(chosen, 0)
        kinds = kind_of[token]
        rows.out[idx, rows.grown] = token
        rows.grown += 1
        present = np.bincount(kinds, minlength=N_KINDS)
        overflow = None
        if present[KIND_BRANCH_CLOSE]:
            close = np.flatnonzero(kinds == KIND_BRANCH_CLOSE)
            depth[close] -= 1
            rows.vlen[close] = rows.opens[idx[close], depth[close]] + 2
            rows.state[close] = 32 * (depth[close] > 0) + np.minimum(nring[close], 31)
        if present[KIND_BRANCH_OPEN]:
            opening = np.flatnonzero(kinds == KIND_BRANCH_OPEN)
            rows.opens[idx[opening], np.minimum(depth[opening], MAX_DEPTH)] = rows.vlen[opening]
            depth[opening] += 1
            rows.state[opening] = 32 + np.minimum(nring[opening], 31)
            overflow = depth >= MAX_DEPTH
        rows.view[idx, rows.vlen] = hash_of[token]
        rows.vlen += 1
        rows.atoms += _IS_ATOM[kinds]
        rows.left -= _IS_STAR[kinds]
        if present[KIND_RING_OPEN]:
            ring_open = np.flatnonzero(kinds == KIND_RING_OPEN)
            at = np.minimum(nring[ring_open], MAX_RINGS)
            rows.ring_atoms[idx[ring_open], at] = rows.atoms[ring_open] - 1
            nring[ring_open] += 1
            rows.state[ring_open] = 32 * (depth[ring_open] > 0) + np.minimum(nring[ring_open], 31)
            full = nring >= MAX_RINGS
            overflow = full if overflow is None else overflow | full
        if present[KIND_RING_CLOSE]:
            ring_close = np.flatnonzero(kinds == KIND_RING_CLOSE)
            inner = np.flatnonzero(ridx_of[token[ring_close]] > 0)
            for p in ring_close[inner]:  # rare: an older ring closes, the newer ones move down
                i, n, k = idx[p], nring[p], ridx_of[token[p]]
                rows.ring_atoms[i, n - 1 - k : n - 1] = rows.ring_atoms[i, n - k : n]
            nring[ring_close] -= 1
            rows.state[ring_close] = 32 * (depth[ring_close] > 0) + np.minimum(
                nring[ring_close], 31
            )
        rows.last = kinds
        ended = kinds == KIND_END
        done = ended | (chosen < 0) | (rows.grown >= rows.limit)
        if overflow is not None:
            done |= overflow
        if not done.any():
            continue
        ended &= chosen >= 0
        for p in np.flatnonzero(done):
            i = int(idx[p])
            if ended[p]:
                tokens = rows.out[i, : rows.grown[p] - 1].copy()
                if accept is None or accept(i, tokens):
                    result[i] = tokens
                    continue
            again = restart(i) if restart is not None else None
            while again is not None and again.length >= max_len:
                again = restart(i)
            if again is not None:
                rows.reset(p, again, int(targets[i]))
                done[p] = False
        if done.any():
            rows.keep(~done)
    return result
