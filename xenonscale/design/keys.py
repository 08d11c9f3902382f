"""Context keys of the n-gram model and the grammar masks (shared by training and growth).

**Context keys.** The context of the next token is the generation state
(inside a branch or not, number of open rings) and the last ``k`` tokens
along the contracted chain (:attr:`~xenonscale.design.tokens.Extended.parent`),
``k = 0 .. order``; a chain shorter than ``k`` is padded with
:data:`~xenonscale.design.tokens.BEGIN`. The key of an order-``k`` context is

* ``a0 = mix(SEED ^ state)``, ``state = 32 * (depth > 0) + min(rings, 31)``;
* ``a(k) = a0 + sum(token_hash(token j back) * P**(j + 1) for j < k)``
  (arithmetic modulo 2**64);
* ``key(k) = (a(k) + k * K) >> 12`` (the high 52 bits, which depend on every bit
  of the token hashes),

with ``mix`` the SplitMix64 finalizer, ``SEED``, ``P`` and ``K`` the 64-bit
constants below and ``token_hash`` the first 8 bytes (little endian) of the
token's BLAKE2b digest. The keys of all orders of a batch of contexts take a
dozen numpy operations (one cumulative sum). Counts are stored as
``entry = key << 12 | token id``: one ``uint64`` per (context, next token)
pair, so a vocabulary holds at most 4096 tokens.

**Grammar masks.** ``ALLOWED[last kind * 8 + code]`` says which token kinds
may come next (see :func:`_allowed_table`): ``)`` needs an open branch, ring
bonds follow an atom, the end needs no open branch or ring and the wanted
number of ``*``, and ``*`` is masked once that number is reached. A ring close
``}k`` also needs ``k + 1`` open rings and must not close a ring on the atom
that opened it (checked by the growers, which know the ring stack).

Examples
--------
>>> import numpy as np
>>> from xenonscale.design.keys import context_keys
>>> tokens = np.array([7, 7], np.uint64)
>>> keys = context_keys(np.array([0, 0]), tokens[None, :].repeat(2, 0), order=2)
>>> keys.shape, bool((keys[0] == keys[1]).all())
((2, 3), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xenonscale.design.tokens import (
    BEGIN,
    KIND_ATOM,
    KIND_BRANCH_CLOSE,
    KIND_BRANCH_OPEN,
    KIND_DOT,
    KIND_END,
    KIND_RING_CLOSE,
    KIND_RING_OPEN,
    KIND_STAR,
    Extended,
    ring_index,
    token_hash,
)

__all__ = [
    "ALLOWED",
    "BEGIN_HASH",
    "CODES",
    "KEY_BITS",
    "MAX_DEPTH",
    "MAX_RINGS",
    "MAX_VOCAB",
    "N_KINDS",
    "TOKEN_BITS",
    "Prefix",
    "Tables",
    "context_keys",
    "mix",
    "prefix_of",
    "states",
]

TOKEN_BITS = 12
KEY_BITS = 64 - TOKEN_BITS
MAX_VOCAB = 1 << TOKEN_BITS
MAX_RINGS = 32  # open rings at once (a ring-open token is masked beyond)
MAX_DEPTH = 64  # open branches at once
_SEED = np.uint64(0x9E3779B97F4A7C15)
_P = 0xD6E8FEB86659FD93  # odd: powers never vanish modulo 2**64
_K = np.uint64(0xA0761D6478BD642F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_SHIFT = np.uint64(TOKEN_BITS)
BEGIN_HASH = np.uint64(token_hash(BEGIN))
N_KINDS = 9


def mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer of ``uint64`` values (a bijection that spreads every bit)."""
    h = h ^ (h >> _S30)
    h = h * _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    return h


def states(depth: np.ndarray, rings: np.ndarray) -> np.ndarray:
    """State codes ``32 * (depth > 0) + min(rings, 31)`` (``int64``)."""
    return (np.asarray(depth) > 0) * 32 + np.minimum(rings, 31)


@lru_cache(maxsize=64)
def powers(order: int) -> np.ndarray:
    mask = (1 << 64) - 1
    return np.array([pow(_P, j + 1, 1 << 64) & mask for j in range(order)], np.uint64)


@lru_cache(maxsize=1)
def starts() -> np.ndarray:
    return mix(_SEED ^ np.arange(64, dtype=np.uint64))


def context_keys(state: np.ndarray, back: np.ndarray, order: int) -> np.ndarray:
    """Keys (52-bit, ``uint64[n, order + 1]``) of the contexts of orders ``0 .. order``.

    ``state`` holds state codes (``0 .. 63``); ``back[:, j]`` is the hash of
    the token ``j`` positions back along the contracted chain (``j = 0``: the
    last token), ``BEGIN``'s hash past the start.
    """
    a0 = starts()[np.asarray(state, np.int64)]
    acc = np.empty((len(a0), order + 1), np.uint64)
    acc[:, 0] = 0
    if order:
        np.cumsum(back[:, :order] * powers(order), axis=1, out=acc[:, 1:])
    acc += a0[:, None]
    acc += offsets(order)
    acc >>= _SHIFT
    return acc


@lru_cache(maxsize=64)
def offsets(order: int) -> np.ndarray:
    return _K * np.arange(order + 1, dtype=np.uint64)


@dataclass(frozen=True, eq=False)
class Tables:
    """The arrays the grower reads: a CSR table of next-token counts per context key.

    ``keys`` (sorted, ``uint64[c + 1]``, the last one a sentinel ``2**64 - 1``
    that no 52-bit key equals), ``indptr`` (``int64[c + 2]``), ``tokens``
    (``int32[e]``) and ``counts`` (``int64[e]``) of the entries, and per
    vocabulary token its ``kind``, ring index ``ridx`` (``k`` of ``}k``, else
    -1) and ``hashes`` (``uint64``).
    """

    order: int
    keys: np.ndarray
    indptr: np.ndarray
    tokens: np.ndarray
    counts: np.ndarray
    kind: np.ndarray
    ridx: np.ndarray
    hashes: np.ndarray


@dataclass
class Prefix:
    """The generation state after a kept prefix of an extended SMILES (one row)."""

    view: list[int]  # token hashes along the contracted chain, BEGIN first
    opens: list[int]  # view positions of the open "(" tokens
    ring_atoms: list[int]  # atom index that opened each open ring
    atoms: int  # atoms so far
    stars: int
    last: int  # kind of the last token
    length: int  # tokens so far (BEGIN included)


def prefix_of(ext: Extended, cut: int) -> Prefix:
    """State after ``ext.tokens[:cut]`` (``1 <= cut < len(ext)``)."""
    parents, kinds = ext.parents, ext.kinds
    chain = [cut - 1]
    i = cut - 1
    while i:
        i = parents[i]
        chain.append(i)
    chain.reverse()
    opens: list[int] = []
    rings: list[int] = []
    atoms = stars = 0
    for i in range(1, cut):
        kind = kinds[i]
        if kind <= KIND_STAR:  # an atom
            atoms += 1
            stars += kind
        elif kind == KIND_BRANCH_OPEN:
            opens.append(i)
        elif kind == KIND_BRANCH_CLOSE:
            opens.pop()
        elif kind == KIND_RING_OPEN:
            rings.append(atoms - 1)
        elif kind == KIND_RING_CLOSE:
            rings.pop(len(rings) - 1 - ring_index(ext.tokens[i]))
    if opens:
        position = {index: pos for pos, index in enumerate(chain)}
        opens = [position[i] for i in opens]
    hashes = ext.hashes
    return Prefix(
        view=[hashes[i] for i in chain],
        opens=opens,
        ring_atoms=rings,
        atoms=atoms,
        stars=stars,
        last=kinds[cut - 1],
        length=cut,
    )


def _allowed_table() -> np.ndarray:
    """``bool[9 * 8, 9]``: kinds allowed next, by ``last kind * 8 + code`` (see :func:`grow`).

    ``code = 4 * (inside a branch) + 2 * (a '*' may come) + (the end may come)``.
    After the start, ``(`` or ``.`` only an atom; a ring bond only after an
    atom or a ring bond; ``(``, ``)``, ``.`` and the end only after an atom,
    a ring bond or ``)``; ``)`` only inside a branch, ``.`` only outside.
    """
    table = np.zeros((N_KINDS * 8, N_KINDS), bool)
    for last in range(N_KINDS):
        for code in range(8):
            inside, star, end = code & 4, code & 2, code & 1
            ok = table[last * 8 + code]
            ok[KIND_ATOM] = True
            ok[KIND_STAR] = bool(star)
            after_atom = last in (KIND_ATOM, KIND_STAR, KIND_RING_OPEN, KIND_RING_CLOSE)
            complete = after_atom or last == KIND_BRANCH_CLOSE
            ok[KIND_BRANCH_OPEN] = complete
            ok[KIND_BRANCH_CLOSE] = complete and bool(inside)
            ok[KIND_RING_OPEN] = ok[KIND_RING_CLOSE] = after_atom
            ok[KIND_DOT] = complete and not inside
            ok[KIND_END] = complete and not inside and bool(end)
    return table


ALLOWED = _allowed_table()


def _code_table() -> np.ndarray:
    """``int64[64, 3]``: the low 3 bits of the allowed-table row, by state code and star sign.

    Star sign: 0 (free, any number of ``*``), 1 (enough ``*``), 2 (more needed).
    """
    table = np.zeros((64, 3), np.int64)
    for state in range(64):
        inside, no_rings = state >= 32, state % 32 == 0
        for sign in range(3):
            star_ok = sign != 1
            end_ok = no_rings and sign != 2
            table[state, sign] = 4 * inside + 2 * star_ok + end_ok
    return table


CODES = _code_table()
