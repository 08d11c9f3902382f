"""The combinatorial number system: colex ranks of subsets and of positive integer vectors.

A ``c``-subset ``y_1 < ... < y_c`` of ``{0, 1, 2, ...}`` has the colex rank
``C(y_1, 1) + C(y_2, 2) + ... + C(y_c, c)``. Ranks ``0 ..< C(n, c)`` are
exactly the ``c``-subsets of ``{0 ..< n}``, whatever ``n``: a list of
subsets of a smaller set is a prefix of the list of a larger one.

A positive integer vector ``(a_1, ..., a_c)`` is the subset of its partial
sums less one, ``{a_1 - 1, a_1 + a_2 - 1, ...}`` (stars and bars), so the
vectors with total at most ``n`` are ranks ``0 ..< C(n, c)``, ordered by
total first (the largest partial sum is the total). Both directions work on
whole arrays of ranks: unranking is one ``searchsorted`` per position over a
table of binomial coefficients shared by every row.

Examples
--------
>>> import numpy as np
>>> table = binomials(5, 3)
>>> unrank_vectors(np.arange(7), 2, table)
array([[1, 1],
       [1, 2],
       [2, 1],
       [1, 3],
       [2, 2],
       [3, 1],
       [1, 4]])
>>> rank_vectors(np.array([[2, 2], [1, 4]]), table)
array([4, 6])
>>> unrank_subsets(np.array([0, 3]), 2, table), rank_subsets(np.array([[0, 3]]), table)
(array([[0, 1],
       [0, 3]]), array([3]))
"""

from __future__ import annotations

from math import comb

import numpy as np

__all__ = ["LIMIT", "binomials", "rank_subsets", "rank_vectors", "unrank_subsets", "unrank_vectors"]

#: Largest rank (exclusive) the int64 arrays here hold; larger binomials are clipped to it.
LIMIT = 2**62


def binomials(n: int, c: int) -> np.ndarray:
    """``table[j, v] = C(v, j)`` for ``j = 0..c``, ``v = 0 ..< n`` (int64, clipped at LIMIT).

    >>> binomials(4, 2).tolist()
    [[1, 1, 1, 1], [0, 1, 2, 3], [0, 0, 1, 3]]
    """
    table = np.empty((c + 1, max(n, 1)), dtype=np.int64)
    for j in range(c + 1):
        table[j] = [min(comb(v, j), LIMIT) for v in range(max(n, 1))]
    return table


def unrank_subsets(ranks: np.ndarray, c: int, table: np.ndarray) -> np.ndarray:
    """The ``c``-subsets (ascending rows, int64) of colex ``ranks``; ``table`` from
    :func:`binomials` with at least ``c`` rows and as many columns as the ground set."""
    rest = np.array(ranks, dtype=np.int64, copy=True)
    out = np.empty((rest.size, c), dtype=np.int64)
    for j in range(c, 0, -1):  # the largest element first: the largest v with C(v, j) <= rest
        value = np.searchsorted(table[j], rest, side="right") - 1
        out[:, j - 1] = value
        rest -= table[j][value]
    return out


def rank_subsets(subsets: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Colex ranks (int64) of ascending rows of distinct non-negative integers."""
    subsets = np.asarray(subsets, dtype=np.int64)
    ranks = np.zeros(len(subsets), dtype=np.int64)
    for j in range(subsets.shape[1]):
        ranks += table[j + 1][subsets[:, j]]
    return ranks


def unrank_vectors(ranks: np.ndarray, c: int, table: np.ndarray) -> np.ndarray:
    """The positive vectors of length ``c`` (int64 rows) with these ranks (see the module)."""
    sums = unrank_subsets(ranks, c, table) + 1
    return np.diff(sums, axis=1, prepend=0)


def rank_vectors(vectors: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Ranks (int64) of rows of positive integers (see the module)."""
    vectors = np.asarray(vectors, dtype=np.int64)
    return rank_subsets(np.cumsum(vectors, axis=1) - 1, table)
