"""The scalar grower: a few rows grown one by one in plain Python, with a context cache.

For a handful of rows, a dozen numpy calls per token cost more than plain
Python, so :func:`~xenonscale.design.batched.grow` hands its last
:data:`SCALAR_ROWS` rows (all of them for a small batch, such as an SMC
population of 25) to :func:`grow_one`. It draws from the same distribution
as the vectorized step, with a cache per model (in a weak dictionary, gone with
the model): (allowed kinds, state, last ``order`` tokens) -> cumulative counts
of the longest usable context.

Examples
--------
>>> from xenonscale.design.scalar import SCALAR_ROWS
>>> SCALAR_ROWS >= 1
True
"""

from __future__ import annotations

import weakref
from bisect import bisect_right

import numpy as np

from xenonscale.design.keys import (
    ALLOWED,
    BEGIN_HASH,
    CODES,
    MAX_DEPTH,
    MAX_RINGS,
    TOKEN_BITS,
    Prefix,
    Tables,
    offsets,
    powers,
    starts,
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

__all__ = ["CONTEXT_CACHE", "SCALAR_ROWS", "grow_one", "scalar_state", "scalar_tables"]

#: At most this many rows left: they finish one by one in plain Python (cheaper than a
#: dozen numpy calls per token for a handful of rows, the long tail of a batch).
SCALAR_ROWS = 64
_MASK = (1 << 64) - 1


#: Contexts remembered per model by the scalar path (cleared when full).
CONTEXT_CACHE = 100_000
_CACHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scalar_tables(tables: Tables) -> tuple[dict, dict, dict, dict]:
    """Python-list copies of the small per-token tables of ``tables``, and its caches.

    ``(tables, contexts, rows, draws)``: (allowed-kinds code, state, last
    ``order`` token hashes) -> draw table; context key -> table row (-1: not
    seen in training); (row, code) -> draw table ``(cumulative counts,
    tokens, total)`` or None. They live in a weak dictionary: they go when
    the model goes.
    """
    held = _CACHES.get(tables)
    if held is None:
        order = tables.order
        py = {
            "kind": tables.kind.tolist(),
            "ridx": tables.ridx.tolist(),
            "hash": tables.hashes.tolist(),
            "allowed": ALLOWED.tolist(),
            "codes": CODES.tolist(),
            "starts": starts().tolist(),
            "powers": powers(order).tolist() if order else [],
            "offsets": offsets(order).tolist(),
            "offsets1": offsets(order).tolist()[1:],
        }
        held = _CACHES.setdefault(tables, (py, {}, {}, {}))
    return held


def _found_rows(tables: Tables, held: tuple, state: int, view: list[int]) -> list[int]:
    """Table rows of the contexts of ``view`` (its last ``order`` token hashes) that were
    seen in training, orders 0, 1, ... up to the longest.

    A context of order ``k + 1`` seen in training implies its order-``k`` suffix
    was seen at the same position, so the scan stops at the first unseen order.
    Keys follow :func:`~xenonscale.design.keys.context_keys`.
    """
    py, _, rows, _ = held
    a0 = py["starts"][state]
    key = (a0 + py["offsets"][0]) >> TOKEN_BITS
    found: list[int] = []
    acc = 0
    steps = zip(reversed(view), py["powers"], py["offsets1"], strict=True)
    while True:
        row = rows.get(key)
        if row is None:  # not looked up yet: look this key and all longer ones up at once
            keys = [key]
            for h, power, offset in steps:
                acc = (acc + h * power) & _MASK
                keys.append(((a0 + acc + offset) & _MASK) >> TOKEN_BITS)
            if len(rows) >= CONTEXT_CACHE:
                rows.clear()
            table = tables.keys
            at = table.searchsorted(np.array(keys, np.uint64))
            for k, p, got in zip(keys, at.tolist(), table[at].tolist(), strict=True):
                rows[k] = p if got == k else -1
            for k in keys:
                if rows[k] < 0:
                    break
                found.append(rows[k])
            return found
        if row < 0:
            return found
        found.append(row)
        step = next(steps, None)
        if step is None:
            return found
        h, power, offset = step
        acc = (acc + h * power) & _MASK
        key = ((a0 + acc + offset) & _MASK) >> TOKEN_BITS


def _exact(tables, py, found, ok, nring, ring_atoms, atoms, rng) -> int:
    """The masked back-off draw, every candidate checked (-1: nothing allowed)."""
    kind_of, ridx_of, indptr = py["kind"], py["ridx"], tables.indptr
    for row in reversed(found):
        start, stop = indptr[row], indptr[row + 1]
        total, cands = 0, []
        for t, c in zip(
            tables.tokens[start:stop].tolist(), tables.counts[start:stop].tolist(), strict=True
        ):
            kind = kind_of[t]
            if not ok[kind]:
                continue
            if kind == KIND_RING_CLOSE:
                at = nring - 1 - ridx_of[t]
                if at < 0 or ring_atoms[at] == atoms - 1:
                    continue
            total += c
            cands.append((total, t))
        if total:
            draw = int(rng.random() * total)
            return next(t for cum, t in cands if cum > draw)
    return -1


def _static(tables: Tables, held: tuple, found: list[int], code: int) -> tuple | None:
    """The draw table ``(cumulative counts, tokens, total)`` of the longest context (of the
    ``found`` rows) with a token of a kind allowed by ``code`` (ring closes unchecked)."""
    py, _, _, draws = held
    kind_of, ok, indptr = py["kind"], py["allowed"][code], tables.indptr
    for row in reversed(found):
        draw = draws.get((row, code), ())
        if draw == ():
            if len(draws) >= CONTEXT_CACHE:
                draws.clear()
            start, stop = indptr[row], indptr[row + 1]
            cum, toks, total = [], [], 0
            for t, c in zip(
                tables.tokens[start:stop].tolist(), tables.counts[start:stop].tolist(), strict=True
            ):
                if ok[kind_of[t]]:
                    total += c
                    cum.append(total)
                    toks.append(t)
            draw = draws[(row, code)] = (cum, toks, total) if total else None
        if draw is not None:
            return draw
    return None


def grow_one(tables: Tables, py: dict, st: dict, rng: np.random.Generator) -> list[int] | None:
    """Grow one row from its state ``st`` (plain Python); the new token ids, or None.

    A draw comes from the longest context with a token of an allowed kind,
    cached per (state, allowed kinds, last ``order`` tokens); a ring close
    drawn there that cannot close (its ring opened on this atom) sends the
    draw to the exact path, which checks every candidate. The result follows
    the same distribution as :func:`grow`'s vectorized step (rejection
    sampling: a rejected draw is redrawn from the exact distribution).
    """
    order = tables.order
    held = scalar_tables(tables)
    cache = held[1]
    kind_of, ridx_of, hash_of, allowed = py["kind"], py["ridx"], py["hash"], py["allowed"]
    codes = py["codes"]
    view, opens, ring_atoms = st["view"], st["opens"], st["ring_atoms"]
    depth, nring, atoms, left, last = st["depth"], st["nring"], st["atoms"], st["left"], st["last"]
    out: list[int] = []
    while len(out) < st["limit"]:
        state = 32 * (depth > 0) + min(nring, 31)
        code = codes[state][(left > 0) - (left < 0) + 1] + last * 8
        context = (code, state, *view[len(view) - order :])
        static = cache.get(context, ())
        found = None
        if static == ():
            if len(cache) >= CONTEXT_CACHE:
                cache.clear()
            found = _found_rows(tables, held, state, view[len(view) - order :])
            static = cache[context] = _static(tables, held, found, code)
        chosen = -1
        if static is not None:
            cum, toks, total = static
            chosen = toks[bisect_right(cum, int(rng.random() * total))]
            if kind_of[chosen] == KIND_RING_CLOSE:
                at = nring - 1 - ridx_of[chosen]
                if at < 0 or ring_atoms[at] == atoms - 1:
                    if found is None:
                        found = _found_rows(tables, held, state, view[len(view) - order :])
                    ok = allowed[code]
                    chosen = _exact(tables, py, found, ok, nring, ring_atoms, atoms, rng)
        if chosen < 0:
            return None
        kind = kind_of[chosen]
        if kind == KIND_END:
            return out
        out.append(chosen)
        if kind == KIND_BRANCH_CLOSE:
            depth -= 1
            del view[opens.pop() + 2 :]
        elif kind == KIND_BRANCH_OPEN:
            opens.append(len(view))
            depth += 1
            if depth >= MAX_DEPTH:
                return None
        elif kind in (KIND_ATOM, KIND_STAR):
            atoms += 1
            left -= kind == KIND_STAR
        elif kind == KIND_RING_OPEN:
            ring_atoms.append(atoms - 1)
            nring += 1
            if nring >= MAX_RINGS:
                return None
        elif kind == KIND_RING_CLOSE:
            del ring_atoms[nring - 1 - ridx_of[chosen]]
            nring -= 1
        view.append(hash_of[chosen])
        last = kind
    return None


def scalar_state(prefix: Prefix, target: int, order: int, max_len: int) -> dict:
    return {
        "view": [int(BEGIN_HASH)] * order + list(prefix.view),
        "opens": [o + order for o in prefix.opens],
        "ring_atoms": list(prefix.ring_atoms),
        "depth": len(prefix.opens),
        "nring": len(prefix.ring_atoms),
        "atoms": prefix.atoms,
        "left": -1 if target < 0 else target - prefix.stars,
        "last": prefix.last,
        "limit": max_len - prefix.length,
    }
