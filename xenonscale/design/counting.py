"""Count (context, next token) pairs of a batch of SMILES, and merge such counts.

The map step of :func:`~xenonscale.design.ngram_training.train_ngram`:
:func:`count_smiles` augments each SMILES with re-ordered copies, extends
them (:func:`~xenonscale.design.tokens.extend`), and counts every
(context, next token) pair of every order ``0 .. order`` with numpy (the key
scheme of :mod:`xenonscale.design.keys`). The result is a :class:`Counts`:
a local vocabulary, sorted ``uint64`` entries ``key << 12 | token`` and their
counts. :func:`merge_counts` is the reduce step; merging is associative and
commutative up to the vocabulary order, which :meth:`Counts.canonical` fixes
(tokens sorted), so any tree of merges gives the same model.

Augmentation is deterministic: row ``r`` (its 0-based position in the
input) gets RDKit's ``MolToRandomSmilesVect(mol, augment, randomSeed=...)``
with a seed drawn from ``(seed, r)``, whatever the partitioning.

Examples
--------
>>> from xenonscale.design.counting import count_smiles
>>> counts = count_smiles(["CCO", "c1ccccc1", "not a smiles"], order=3, augment=1)
>>> counts.inputs, counts.bad, counts.sequences
(3, 1, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from xenonscale.design.keys import MAX_VOCAB, TOKEN_BITS, context_keys, states
from xenonscale.design.tokens import BEGIN, END, extend, token_hash
from xenonscale.errors import DesignError

__all__ = ["Counts", "count_smiles", "merge_counts", "row_seed"]

_SHIFT = np.uint64(TOKEN_BITS)
_LOW = np.uint64((1 << TOKEN_BITS) - 1)
#: Bad inputs kept as examples in the provenance.
EXAMPLES = 5


@dataclass
class Counts:
    """Counted (context, next token) pairs with their vocabulary and bookkeeping.

    Attributes
    ----------
    vocabulary
        Token strings; the low 12 bits of an entry index this list.
    entries
        Sorted, unique ``uint64`` ``context key << 12 | token id``.
    counts
        ``uint64`` count of each entry.
    inputs, bad, sequences, tokens
        SMILES read, SMILES skipped (unparsable), extended sequences counted
        (inputs and their re-ordered copies), tokens in them.
    bad_examples
        Up to five ``[row, smiles, reason]`` of skipped inputs.
    stars
        ``{number of '*': SMILES}`` over the good inputs (polymers have 2).
    """

    vocabulary: list[str]
    entries: np.ndarray
    counts: np.ndarray
    inputs: int = 0
    bad: int = 0
    sequences: int = 0
    tokens: int = 0
    bad_examples: list = field(default_factory=list)
    stars: dict = field(default_factory=dict)

    def canonical(self) -> Counts:
        """The same counts with the vocabulary sorted (``^`` and ``!`` first)."""
        special = [t for t in (BEGIN, END) if t in self.vocabulary]
        vocabulary = special + sorted(set(self.vocabulary) - set(special))
        return _remap(self, vocabulary)


def row_seed(seed: int, row: int) -> int:
    """RDKit ``randomSeed`` of input ``row``: a SplitMix64 mix of ``seed`` and ``row`` (>= 1).

    Examples
    --------
    >>> row_seed(0, 1) == row_seed(0, 1) != row_seed(1, 1)
    True
    """
    mask = (1 << 64) - 1
    h = ((int(seed) & 0xFFFFFFFF) << 32 | (int(row) & 0xFFFFFFFF)) & mask
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & mask
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & mask
    # RDKit reads randomSeed=0 as "do not reseed": seeds are 1 .. 2**31 - 1
    return ((h ^ (h >> 31)) >> 33) % (2**31 - 1) + 1


def _variants(smiles, row: int, augment: int, seed: int) -> tuple[list[str], str | None]:
    """The SMILES and its re-ordered copies, or ``([], reason)``."""
    from rdkit import Chem

    if not isinstance(smiles, str) or not smiles.strip():
        return [], "not a SMILES string"
    smiles = smiles.split()[0]
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return [], "RDKit cannot parse it"
    if augment <= 0:
        return [smiles], None
    return [smiles, *Chem.MolToRandomSmilesVect(mol, augment, randomSeed=row_seed(seed, row))], None


def count_smiles(
    smiles: Sequence,
    *,
    order: int,
    augment: int = 0,
    seed: int = 0,
    first_row: int = 0,
    rows: Sequence[int] | None = None,
) -> Counts:
    """Count the (context, next token) pairs of ``smiles`` and ``augment`` re-orderings of each.

    Parameters
    ----------
    smiles
        SMILES strings (text after whitespace is a name and is dropped);
        anything RDKit cannot parse is counted in ``bad`` and skipped.
    order
        Longest context, in tokens.
    augment
        Random re-orderings per SMILES, on top of the SMILES as given.
    seed
        Seed of the re-orderings.
    first_row, rows
        Global row number of each SMILES (``rows``, else ``first_row + i``),
        which fixes its re-orderings whatever the partitioning.
    """
    from rdkit import rdBase

    vocabulary: dict[str, int] = {}
    ids: list[int] = []
    parents: list[np.ndarray] = []
    depths: list[np.ndarray] = []
    rings: list[np.ndarray] = []
    ends: list[int] = []
    bad_examples: list = []
    stars: dict[int, int] = {}
    bad = 0
    offset = 0
    with rdBase.BlockLogs():
        for i, smi in enumerate(smiles):
            row = int(rows[i]) if rows is not None else first_row + i
            variants, reason = _variants(smi, row, augment, seed)
            exts = []
            for text in variants:
                try:
                    exts.append(extend(text))
                except DesignError as exc:
                    if text is variants[0]:
                        reason = str(exc)
                        break
            if reason is not None or not exts:
                bad += 1
                if len(bad_examples) < EXAMPLES:
                    bad_examples.append([row, None if smi is None else str(smi), reason])
                continue
            stars[exts[0].stars] = stars.get(exts[0].stars, 0) + 1
            for ext in exts:
                ids.extend(vocabulary.setdefault(t, len(vocabulary)) for t in ext.tokens)
                parents.append(ext.parent.astype(np.int64) + offset)
                depths.append(ext.depth)
                rings.append(ext.rings)
                offset += len(ext.tokens)
                ends.append(offset - 1)
    if len(vocabulary) > MAX_VOCAB:
        raise DesignError(
            f"{len(vocabulary)} distinct tokens in one batch: the n-gram format holds at most "
            f"{MAX_VOCAB}; filter exotic bracket atoms out of the training SMILES"
        )
    vocab = list(vocabulary)
    if not ends:
        empty = np.zeros(0, np.uint64)
        return Counts(vocab, empty, empty.copy(), len(smiles), bad, 0, 0, bad_examples, stars)
    token = np.asarray(ids, np.int64)
    parent = np.concatenate(parents)
    state = states(np.concatenate(depths), np.concatenate(rings))
    hashes = np.array([token_hash(t) for t in vocab], np.uint64)[token]
    last = np.zeros(len(token), bool)
    last[ends] = True
    position = np.flatnonzero(~last)
    following = token[position + 1].astype(np.uint64)
    back = np.empty((len(position), order), np.uint64)
    ancestor = position
    for j in range(order):
        back[:, j] = hashes[ancestor]
        ancestor = parent[ancestor]
    keys = context_keys(state[position], back, order) << _SHIFT
    keys |= following[:, None]
    entries, counts = np.unique(keys.ravel(), return_counts=True)
    return Counts(
        vocab,
        entries,
        counts.astype(np.uint64),
        inputs=len(smiles),
        bad=bad,
        sequences=len(ends),
        tokens=len(token),
        bad_examples=bad_examples,
        stars=stars,
    )


def _remap(counts: Counts, vocabulary: list[str]) -> Counts:
    """``counts`` re-indexed on ``vocabulary`` (a superset of its own), entries re-sorted."""
    if counts.vocabulary == vocabulary[: len(counts.vocabulary)]:
        entries, values = counts.entries, counts.counts
    else:
        index = {t: i for i, t in enumerate(vocabulary)}
        lookup = np.array([index[t] for t in counts.vocabulary] or [0], np.uint64)
        low = (counts.entries & _LOW).astype(np.int64)
        entries = (counts.entries >> _SHIFT << _SHIFT) | lookup[low]
        order = np.argsort(entries, kind="stable")
        entries, values = entries[order], counts.counts[order]
    return Counts(
        list(vocabulary),
        entries,
        values,
        counts.inputs,
        counts.bad,
        counts.sequences,
        counts.tokens,
        list(counts.bad_examples),
        dict(counts.stars),
    )


def merge_counts(*parts: Counts) -> Counts:
    """Sum of counts (the vocabulary of the first part, extended by the others').

    Examples
    --------
    >>> from xenonscale.design.counting import count_smiles, merge_counts
    >>> a, b = count_smiles(["CCO"], order=2), count_smiles(["CCN"], order=2)
    >>> merged = merge_counts(a, b)
    >>> merged.inputs, int(merged.counts.sum()) == int(a.counts.sum() + b.counts.sum())
    (2, True)
    """
    if not parts:
        raise DesignError("merge_counts needs at least one Counts")
    vocabulary = list(parts[0].vocabulary)
    seen = set(vocabulary)
    for part in parts[1:]:
        for t in part.vocabulary:
            if t not in seen:
                seen.add(t)
                vocabulary.append(t)
    if len(vocabulary) > MAX_VOCAB:
        raise DesignError(
            f"{len(vocabulary)} distinct tokens: the n-gram format holds at most {MAX_VOCAB}; "
            "filter exotic bracket atoms out of the training SMILES"
        )
    remapped = [_remap(p, vocabulary) for p in parts]
    entries = np.concatenate([p.entries for p in remapped])
    values = np.concatenate([p.counts for p in remapped])
    if len(parts) > 1 and entries.size:
        order = np.argsort(entries, kind="stable")
        entries, values = entries[order], values[order]
        starts = np.flatnonzero(np.r_[True, entries[1:] != entries[:-1]])
        entries, values = entries[starts], np.add.reduceat(values, starts)
    stars: dict[int, int] = {}
    for p in parts:
        for k, v in p.stars.items():
            stars[k] = stars.get(k, 0) + v
    return Counts(
        vocabulary,
        entries,
        values,
        inputs=sum(p.inputs for p in parts),
        bad=sum(p.bad for p in parts),
        sequences=sum(p.sequences for p in parts),
        tokens=sum(p.tokens for p in parts),
        bad_examples=sorted((e for p in parts for e in p.bad_examples), key=lambda e: e[0])[
            :EXAMPLES
        ],
        stars=stars,
    )
