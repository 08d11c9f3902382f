"""The n-gram chemical language model of iQSPR: proposals by tail deletion and regrowth.

An :class:`NGram` holds the counts of (context, next token) pairs of
extended SMILES (:mod:`xenonscale.design.tokens`) for every context length
``0 .. order``, as sorted numpy arrays (no Python dict per context, cheap to
ship to Dask workers). :meth:`NGram.propose` edits a population of SMILES:

1. with probability ``reorder_prob``, the SMILES is rewritten from a random
   atom order (RDKit), so that the tail cut in step 2 can fall anywhere in
   the molecule;
2. a random number of tokens in ``del_range`` (default ``(1, 10)``, as in
   XenonPy) is deleted from the end of the extended SMILES (at least one
   token is kept);
3. the tail is regrown by sampling the n-gram, all rows of the batch at once
   (:func:`xenonscale.design.batched.grow`): the longest context seen in
   training decides (back-off to shorter ones), and tokens that would break
   the grammar are masked by the state (open branches, open rings, the
   parent's number of ``*`` polymer ends);
4. the new SMILES is checked with RDKit; a row that fails (unparsable, or
   longer than ``max_len`` tokens) is regrown again, up to ``retries``
   times, and otherwise the parent is returned unchanged.

A model is trained by :func:`xenonscale.design.ngram_training.train_ngram`
and stored by :meth:`NGram.save` as a directory of JSON + Parquet, no pickle
(:mod:`xenonscale.design.ngram_store`).

Examples
--------
>>> import numpy as np
>>> from xenonscale.design import train_ngram
>>> model = train_ngram(["CCO", "CCN", "c1ccccc1O", "CC(=O)O"] * 5, order=4, client=False)
>>> proposals = model.propose(["CCO", "c1ccccc1O"], np.random.default_rng(0))
>>> len(proposals)
2
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from xenonscale.design.batched import grow
from xenonscale.design.keys import (
    BEGIN_HASH,
    MAX_DEPTH,
    MAX_RINGS,
    MAX_VOCAB,
    TOKEN_BITS,
    Prefix,
    Tables,
    prefix_of,
)
from xenonscale.design.ngram_store import read_ngram, write_ngram
from xenonscale.design.tokens import (
    KIND_BEGIN,
    Extended,
    extend,
    ring_index,
    to_smiles,
    token_hash,
    token_kind,
)
from xenonscale.errors import ConfigError, DesignError

__all__ = ["NGram"]


@lru_cache(maxsize=20_000)
def _extended(smiles: str) -> Extended:
    """:func:`extend`, remembered; a parent the grower cannot hold raises DesignError."""
    ext = extend(smiles)
    if ext.depth.max() >= MAX_DEPTH or ext.rings.max() >= MAX_RINGS:
        raise DesignError(f"{smiles!r} nests more than {MAX_DEPTH} branches or {MAX_RINGS} rings")
    return ext


@lru_cache(maxsize=1)
def _checker():
    from rdkit import Chem

    params = Chem.SmilesParserParams()
    params.sanitize = False
    params.removeHs = False  # removing Hs costs a full sanitization
    flags = Chem.SanitizeFlags
    ops = flags.SANITIZE_CLEANUP | flags.SANITIZE_PROPERTIES | flags.SANITIZE_KEKULIZE
    return Chem, params, ops, flags.SANITIZE_NONE


def _valid(smiles: str) -> bool:
    """RDKit parses ``smiles`` and the sanitization steps that can fail pass.

    Cleanup, valence and kekulization: the others (ring perception,
    aromaticity, conjugation, hybridization) do not reject a molecule, so
    this agrees with ``Chem.MolFromSmiles(smiles) is not None`` at a quarter
    of its cost.
    """
    chem, params, ops, none = _checker()
    mol = chem.MolFromSmiles(smiles, params)
    return mol is not None and chem.SanitizeMol(mol, ops, catchErrors=True) == none


class NGram:
    """An n-gram model of extended SMILES with back-off and grammar masks.

    Parameters
    ----------
    vocabulary
        Token strings; ``vocabulary[i]`` is token id ``i``.
    entries
        Sorted unique ``uint64`` ``context key << 12 | token id``
        (:mod:`xenonscale.design.keys`).
    counts
        Count of each entry.
    order
        Longest context (tokens) in the table.
    del_range
        ``(low, high)`` tokens deleted from the end by a proposal (an int
        ``n`` means ``(1, n)``).
    reorder_prob
        Probability of re-ordering a SMILES (RDKit random atom order) before
        the deletion.
    max_len
        Longest extended SMILES grown; longer attempts fail.
    retries
        Regrowths of a row whose proposal is not a valid molecule before the
        parent is returned unchanged.
    provenance
        Training provenance (stored in ``ngram.json``).

    Notes
    -----
    Thread-safe for concurrent :meth:`propose`/:meth:`sample` calls with
    separate generators (the arrays are read only). Pickling (Dask) ships
    the numpy arrays only.

    Examples
    --------
    >>> import numpy as np
    >>> from xenonscale.design import train_ngram
    >>> model = train_ngram(["CCO", "CCN", "CC(C)O", "OCC=O"] * 3, order=3, client=False)
    >>> model.order, len(model.sample(2, np.random.default_rng(1)))
    (3, 2)
    """

    def __init__(
        self,
        vocabulary: Sequence[str],
        entries: np.ndarray,
        counts: np.ndarray,
        *,
        order: int,
        del_range: tuple[int, int] | int = (1, 10),
        reorder_prob: float = 0.0,
        max_len: int = 250,
        retries: int = 5,
        provenance: dict | None = None,
    ) -> None:
        if not isinstance(order, int | np.integer) or order < 1:
            raise ConfigError(f"order={order!r}: use a context length of at least 1 token")
        vocabulary = list(vocabulary)
        if len(vocabulary) > MAX_VOCAB:
            raise DesignError(f"{len(vocabulary)} tokens: the format holds at most {MAX_VOCAB}")
        entries = np.asarray(entries, np.uint64)
        if entries.size and np.any(entries[1:] <= entries[:-1]):
            raise DesignError("n-gram entries must be sorted and unique")
        self.order = int(order)
        self.del_range = del_range
        self.reorder_prob = reorder_prob
        self.max_len = max_len
        self.retries = retries
        self.provenance = dict(provenance or {})
        self.vocabulary = vocabulary
        context = entries >> np.uint64(TOKEN_BITS)
        starts = np.flatnonzero(np.r_[True, context[1:] != context[:-1]]) if context.size else []
        keys = context[starts] if context.size else context
        del context
        tokens = (entries & np.uint64((1 << TOKEN_BITS) - 1)).astype(np.int32)
        if tokens.size and tokens.max() >= len(vocabulary):
            raise DesignError("an n-gram entry names a token id outside the vocabulary")
        indptr = np.append(np.asarray(starts, np.int64), len(entries))
        # the grower's tables: keys end with a sentinel no 52-bit key equals
        self._tables = Tables(
            order=self.order,
            keys=np.append(keys, np.uint64(np.iinfo(np.uint64).max)),
            indptr=np.append(indptr, indptr[-1]),
            tokens=tokens,
            counts=np.asarray(counts, np.int64),
            kind=np.array([token_kind(t) for t in vocabulary], np.int64),
            ridx=np.array([ring_index(t) for t in vocabulary], np.int64),
            hashes=np.array([token_hash(t) for t in vocabulary], np.uint64),
        )
        self._strings = np.array(vocabulary, dtype=object)

    # -- properties ----------------------------------------------------------------------

    @property
    def n_contexts(self) -> int:
        """Distinct contexts (all orders)."""
        return int(self._tables.keys.size - 1)

    @property
    def n_entries(self) -> int:
        """Distinct (context, next token) pairs."""
        return int(self._tables.tokens.size)

    @property
    def stars(self) -> int:
        """The most common number of ``*`` in the training SMILES (2 for polymers)."""
        histogram = self.provenance.get("stars") or {"0": 1}
        return int(max(histogram.items(), key=lambda kv: (kv[1], -int(kv[0])))[0])

    def __repr__(self) -> str:
        trained = self.provenance.get("smiles")
        return (
            f"NGram(order={self.order}, vocabulary={len(self.vocabulary)} tokens, "
            f"contexts={self.n_contexts}, entries={self.n_entries}"
            + (f", trained on {trained} SMILES)" if trained is not None else ")")
        )

    def _settings(self) -> tuple[int, int]:
        low, high = (1, self.del_range) if isinstance(self.del_range, int) else self.del_range
        if not (0 <= int(low) <= int(high)):
            raise ConfigError(
                f"del_range={self.del_range!r}: use (low, high) with 0 <= low <= high, e.g. (1, 10)"
            )
        if not 0 <= float(self.reorder_prob) <= 1:
            raise ConfigError(f"reorder_prob={self.reorder_prob!r}: use a probability in [0, 1]")
        if int(self.max_len) < 2 or int(self.retries) < 0:
            raise ConfigError(
                f"max_len={self.max_len!r}, retries={self.retries!r}: "
                "use max_len >= 2 and retries >= 0"
            )
        return int(low), int(high)

    # -- generation ----------------------------------------------------------------------

    def _reorder(self, smiles: str, rng: np.random.Generator) -> str:
        from rdkit import Chem

        mol = Chem.MolFromSmiles(smiles)
        if mol is None or mol.GetNumAtoms() < 2:
            return smiles
        seed = int(rng.integers(1, 1 << 31))  # RDKit ignores randomSeed=0
        return Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed)[0]

    def propose(
        self, smiles: Sequence[str], rng: np.random.Generator, *, validate: bool = True
    ) -> list[str]:
        """One proposal per input SMILES, same order (see the module docstring).

        Parameters
        ----------
        smiles
            The parents. One that cannot be tokenized (or any non-string) is
            returned unchanged; nothing raises for a bad parent.
        rng
            The only source of randomness: the same generator state gives the
            same proposals.
        validate
            Check proposals with RDKit and regrow the invalid ones (default).
            ``False`` returns the first regrowth as is (for measuring the
            model's raw validity); a row that failed to grow is still the parent.

        Returns
        -------
        list of str
            A parent with ``*`` ends gets proposals with the same number of ``*``.

        Examples
        --------
        >>> import numpy as np
        >>> from xenonscale.design import train_ngram
        >>> model = train_ngram(["CCOC", "CCNC", "CC(=O)OC"] * 4, order=3, client=False)
        >>> model.propose(["CCOC"], np.random.default_rng(0))[0].startswith("C")
        True
        """
        from rdkit import rdBase

        low, high = self._settings()
        out = [s for s in smiles]
        todo: list[tuple[int, Extended]] = []
        with rdBase.BlockLogs():
            for i, parent in enumerate(out):
                text = parent
                if self.reorder_prob and rng.random() < self.reorder_prob:
                    text = self._reorder(parent, rng) if isinstance(parent, str) else parent
                try:
                    todo.append((i, _extended(text)))
                except (DesignError, TypeError):
                    continue
            todo = [(i, ext) for i, ext in todo if len(ext) - 1 < self.max_len]
            if not todo:
                return out
            exts = [ext for _, ext in todo]
            cuts = [0] * len(todo)
            tries = [0] * len(todo)

            dels = rng.integers(low, high + 1, size=len(todo)).tolist()
            span = high + 1 - low

            def attempt(j: int) -> Prefix | None:
                if tries[j] > (int(self.retries) if validate else 0):
                    return None
                n_del = dels[j] if not tries[j] else low + int(rng.random() * span)
                tries[j] += 1
                body = len(exts[j]) - 1  # BEGIN .. the last token before END
                cuts[j] = max(min(body, 2), body - n_del)
                return prefix_of(exts[j], cuts[j])

            def accept(j: int, new: np.ndarray) -> bool:
                candidate = to_smiles([*exts[j].tokens[1 : cuts[j]], *self._strings[new]])
                if validate and not _valid(candidate):
                    return False
                out[todo[j][0]] = candidate
                return True

            first = [attempt(j) for j in range(len(todo))]
            grow(
                self._tables,
                first,
                np.array([ext.stars for ext in exts]),
                rng,
                int(self.max_len),
                accept=accept,
                restart=attempt,
            )
        return out

    def sample(
        self,
        n: int,
        rng: np.random.Generator,
        *,
        stars: int | None = None,
        rounds: int = 20,
    ) -> list[str]:
        """``n`` valid SMILES grown from scratch.

        Parameters
        ----------
        n
            Number of molecules.
        rng
            Source of randomness.
        stars
            Number of ``*`` ends of each molecule (default: the most common
            number in the training data, :attr:`stars`); ``-1`` leaves it free.
        rounds
            Batches grown to replace invalid ones before giving up.

        Raises
        ------
        DesignError
            Fewer than ``n`` valid molecules after ``rounds`` batches.

        Examples
        --------
        >>> import numpy as np
        >>> from xenonscale.design import train_ngram
        >>> model = train_ngram(["CCO", "CCCO", "CC(C)CO"] * 4, order=3, client=False)
        >>> all(s.endswith("O") or "O" in s for s in model.sample(3, np.random.default_rng(0)))
        True
        """
        from rdkit import rdBase

        if int(n) < 0:
            raise ConfigError(f"n={n!r}: ask for a number of molecules >= 0")
        self._settings()
        target = self.stars if stars is None else int(stars)
        found: list[str] = []
        with rdBase.BlockLogs():
            for _round in range(rounds):
                missing = int(n) - len(found)
                if missing <= 0:
                    break
                start = Prefix([int(BEGIN_HASH)], [], [], 0, 0, KIND_BEGIN, 1)
                grown = grow(
                    self._tables, [start] * missing, np.full(missing, target), rng, self.max_len
                )
                for new in grown:
                    if new is not None:
                        smiles = to_smiles(self._strings[new])
                        if smiles and _valid(smiles):
                            found.append(smiles)
        if len(found) < int(n):
            raise DesignError(
                f"the n-gram grew only {len(found)} valid molecules of {n} in {rounds} rounds "
                f"(stars={target}); train on more SMILES or raise max_len={self.max_len}"
            )
        return found[: int(n)]

    # -- storage -------------------------------------------------------------------------

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """``(entries uint64, counts int64)``: the table as sorted packed pairs."""
        t = self._tables
        context = np.repeat(t.keys[:-1], np.diff(t.indptr[:-1]))
        packed = (context << np.uint64(TOKEN_BITS)) | t.tokens.astype(np.uint64)
        return packed, t.counts.copy()

    def save(self, path: str | Path) -> None:
        """Write the model to the directory ``path`` (created; its two files replaced).

        See :mod:`xenonscale.design.ngram_store` for the format: ``ngram.json``
        (format name and version, order, vocabulary, key scheme, settings,
        provenance) and ``counts.parquet`` (``context``, ``token``, ``count``).

        Examples
        --------
        >>> from xenonscale.design import NGram, train_ngram
        >>> model = train_ngram(["CCO", "CCN"] * 3, order=2, client=False)
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> model.save(folder)
        >>> NGram.load(folder).order
        2
        """
        low, high = self._settings()
        settings = {
            "del_range": [low, high],
            "reorder_prob": float(self.reorder_prob),
            "max_len": int(self.max_len),
            "retries": int(self.retries),
        }
        context, counts = self.entries()
        write_ngram(
            path,
            order=self.order,
            vocabulary=self.vocabulary,
            entries=context,
            counts=counts,
            settings=settings,
            provenance=self.provenance,
        )

    @classmethod
    def load(cls, path: str | Path) -> NGram:
        """Read a model written by :meth:`save` (seconds, even for MOSES-sized tables).

        Raises
        ------
        DesignError
            ``path`` is not an n-gram directory, or its format version is not
            one this xenonscale reads.
        """
        stored = read_ngram(path)
        settings = stored.pop("settings")
        return cls(
            **stored,
            del_range=tuple(settings.get("del_range", (1, 10))),
            reorder_prob=settings.get("reorder_prob", 0.0),
            max_len=settings.get("max_len", 250),
            retries=settings.get("retries", 5),
        )
