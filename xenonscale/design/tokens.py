"""SMILES tokens and *extended SMILES*: ring digits replaced by position-free tokens.

A SMILES string is cut into tokens by :func:`tokenize` (``"".join`` of the
tokens gives the string back). :func:`extend` rewrites them into the
*extended* form the n-gram model learns and grows:

* a bond symbol (``- = # $ : / \\ ~``) is glued to the token that follows it
  (an atom or a ring bond), so that a bond never dangles: ``C(=O)`` gives
  ``C ( =O )``;
* a ring-bond digit that *opens* a ring becomes ``{`` (``={`` with a bond);
* a ring-bond digit that *closes* a ring becomes ``}k``, where ``k`` says
  which open ring it closes: ``0`` the ring opened last, ``1`` the one before,
  and so on. The digits themselves (``1``, ``%12``) are gone, so the same
  ring has the same tokens wherever it sits in a molecule;
* the sequence starts with :data:`BEGIN` (``^``) and ends with :data:`END`
  (``!``).

Each extended token carries the *state* after it: the open branch depth and
the number of open rings. A generator may emit ``)`` only when a branch is
open, ``}k`` only when ``k`` rings are open, and :data:`END` only when both
are zero (see :mod:`xenonscale.design.ngram`).

The *context* of a token is read along the contracted chain
(:attr:`Extended.parent`): a closed branch ``( X … )`` counts as its opening
``(``, its first token ``X`` and ``)``, so that a context of ten tokens
reaches back over long side chains to the ring atoms before them.

:func:`to_smiles` writes extended tokens back as SMILES, reusing the smallest
free ring digit (``%nn`` past 9, ``%(nnn)`` past 99); a digit freed at an atom
is reused from the next atom on, so ``C12`` never means "close 1, open 1".

Examples
--------
>>> from xenonscale.design.tokens import extend, to_smiles, tokenize
>>> tokenize("C1=CC=CC=C1Cl")
['C', '1', '=', 'C', 'C', '=', 'C', 'C', '=', 'C', '1', 'Cl']
>>> ext = extend("c1ccccc1C(=O)[O-]")
>>> ext.tokens
('^', 'c', '{', 'c', 'c', 'c', 'c', 'c', '}0', 'C', '(', '=O', ')', '[O-]', '!')
>>> to_smiles(ext.tokens)
'c1ccccc1C(=O)[O-]'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from xenonscale.errors import DesignError

__all__ = [
    "BEGIN",
    "END",
    "KIND_ATOM",
    "KIND_BEGIN",
    "KIND_BRANCH_CLOSE",
    "KIND_BRANCH_OPEN",
    "KIND_DOT",
    "KIND_END",
    "KIND_RING_CLOSE",
    "KIND_RING_OPEN",
    "KIND_STAR",
    "Extended",
    "count_stars",
    "extend",
    "ring_index",
    "to_smiles",
    "token_hash",
    "token_kind",
    "tokenize",
]

#: First token of every extended SMILES (also the padding of short contexts).
BEGIN = "^"
#: Last token of every extended SMILES.
END = "!"

KIND_ATOM, KIND_STAR, KIND_BRANCH_OPEN, KIND_BRANCH_CLOSE = 0, 1, 2, 3
KIND_RING_OPEN, KIND_RING_CLOSE, KIND_DOT, KIND_BEGIN, KIND_END = 4, 5, 6, 7, 8

_BONDS = frozenset(["-", "=", "#", "$", ":", "/", "\\", "~", "->", "<-"])
_BOND = r"(?:->|<-|[-=#$:/\\~])"
_TOKEN = re.compile(
    r"\[[^\[\]]*\]"  # bracket atom
    r"|Br|Cl|[BCNOPSFIbcnops*]"  # organic subset, aromatic, polymer end
    r"|%\(\d+\)|%\d\d|\d"  # ring-bond labels
    r"|->|<-|[-=#$:/\\~]"  # bonds (incl. RDKit's dative bonds)
    r"|[().]"
)
_STAR = re.compile(_BOND + r"?(\*|\[\d*\*[^\]]*\])$")
_CLOSE = re.compile(_BOND + r"?\}(\d+)$")


def tokenize(smiles: str) -> list[str]:
    """SMILES tokens of ``smiles``: ``"".join(tokenize(s)) == s``.

    Bracket atoms (``[nH]``, ``[C@@H]``, ``[*]``), ``Br``/``Cl``, aromatic
    atoms, bonds (``- = # $ : / \\ ~`` and dative ``-> <-``), ring labels (``1``, ``%12``,
    ``%(123)``), branches, ``*`` and ``.`` are one token each.

    Raises
    ------
    DesignError
        ``smiles`` is not a string or holds a character no token starts with.

    Examples
    --------
    >>> tokenize("*CC(*)c1ccc(Br)cc1")
    ['*', 'C', 'C', '(', '*', ')', 'c', '1', 'c', 'c', 'c', '(', 'Br', ')', 'c', 'c', '1']
    """
    if not isinstance(smiles, str):
        raise DesignError(f"SMILES must be a string, got {smiles!r}")
    tokens = _TOKEN.findall(smiles)
    if sum(map(len, tokens)) != len(smiles):
        raise DesignError(f"cannot tokenize SMILES {smiles!r}: unexpected character(s)")
    return tokens


_BOND_T, _RING_T, _OPEN_T, _CLOSE_T, _DOT_T, _ATOM_T, _STAR_T = range(7)
_CLASSES: dict[str, tuple[int, int]] = {"(": (_OPEN_T, 0), ")": (_CLOSE_T, 0), ".": (_DOT_T, 0)}


def _classify(token: str) -> tuple[int, int]:
    """``(class, ring label)`` of a SMILES token (remembered for the common ones)."""
    found = _CLASSES.get(token)
    if found is None:
        if token in _BONDS:
            found = (_BOND_T, 0)
        elif token.isdigit():
            found = (_RING_T, int(token))
        elif token.startswith("%"):
            found = (_RING_T, int(token.strip("%()")))
        elif token == "*" or (token.startswith("[") and _STAR.match(token) is not None):
            found = (_STAR_T, 0)
        else:
            found = (_ATOM_T, 0)
        if len(_CLASSES) < 100_000:
            _CLASSES[token] = found
    return found


@dataclass(frozen=True)
class Extended:
    """One extended SMILES: tokens from :data:`BEGIN` to :data:`END` and the state after each.

    Attributes
    ----------
    tokens
        Extended tokens (strings).
    depth
        ``int16[n]``: open branches after each token.
    rings
        ``int16[n]``: open rings after each token.
    parent
        ``int32[n]``: index of the token before each one along the contracted
        chain (a closed branch counts as ``( X )``); ``parent[0] == 0``.
    stars
        Number of ``*`` atoms (polymer ends).
    """

    tokens: tuple[str, ...]
    depth: np.ndarray
    rings: np.ndarray
    parent: np.ndarray
    stars: int

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def kinds(self) -> tuple[int, ...]:
        """The ``KIND_*`` of each token."""
        return tuple(map(token_kind, self.tokens))

    @cached_property
    def hashes(self) -> tuple[int, ...]:
        """:func:`token_hash` of each token."""
        return tuple(map(token_hash, self.tokens))

    @cached_property
    def parents(self) -> tuple[int, ...]:
        """:attr:`parent` as a tuple (fast to index from Python)."""
        return tuple(self.parent.tolist())


def extend(smiles: str) -> Extended:
    """The extended SMILES of ``smiles`` (see the module docstring).

    Raises
    ------
    DesignError
        Untokenizable text, a dangling bond, an empty or unbalanced branch, a
        ring left open, or no atom at all.

    Examples
    --------
    >>> ext = extend("C1CC1(C)O")
    >>> ext.tokens
    ('^', 'C', '{', 'C', 'C', '}0', '(', 'C', ')', 'O', '!')
    >>> ext.rings.tolist(), ext.depth.tolist()
    ([0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0])
    """
    raw = tokenize(smiles)
    tokens = [BEGIN]
    depth = [0]
    rings = [0]
    parent = [0]
    stars = 0
    open_labels: list[int] = []  # ring labels, in opening order
    branches: list[int] = []  # indices of the open "(" tokens
    top = 0  # last token on the contracted chain
    bond = ""
    last = KIND_BEGIN
    for token in raw:
        cls, label = _CLASSES.get(token) or _classify(token)
        if cls >= _ATOM_T:  # an atom or a "*"
            if bond:
                token, bond = bond + token, ""
            parent.append(top)
            if cls == _STAR_T:
                stars += 1
                last = KIND_STAR
            else:
                last = KIND_ATOM
        elif cls == _BOND_T:
            if bond:
                raise DesignError(f"two bonds in a row in SMILES {smiles!r}")
            bond = token
            continue
        elif cls == _RING_T:
            if last not in (KIND_ATOM, KIND_STAR, KIND_RING_OPEN, KIND_RING_CLOSE):
                raise DesignError(f"ring bond {token!r} not after an atom in SMILES {smiles!r}")
            if label in open_labels:
                k = len(open_labels) - 1 - open_labels.index(label)
                open_labels.remove(label)
                token, last = f"{bond}}}{k}", KIND_RING_CLOSE
            else:
                open_labels.append(label)
                token, last = f"{bond}{{", KIND_RING_OPEN
            bond = ""
            parent.append(top)
        elif cls == _OPEN_T:
            if bond or last in (KIND_BEGIN, KIND_BRANCH_OPEN, KIND_DOT):
                raise DesignError(f"misplaced '(' in SMILES {smiles!r}")
            parent.append(top)
            branches.append(len(tokens))
            last = KIND_BRANCH_OPEN
        elif cls == _CLOSE_T:
            if bond or not branches or last == KIND_BRANCH_OPEN:
                raise DesignError(f"misplaced ')' in SMILES {smiles!r}")
            parent.append(branches.pop() + 1)
            last = KIND_BRANCH_CLOSE
        else:  # "."
            if bond or last in (KIND_BEGIN, KIND_BRANCH_OPEN, KIND_DOT):
                raise DesignError(f"misplaced '.' in SMILES {smiles!r}")
            parent.append(top)
            last = KIND_DOT
        top = len(tokens)
        tokens.append(token)
        depth.append(len(branches))
        rings.append(len(open_labels))
    problem = (
        "a dangling bond" if bond
        else "an open branch" if branches
        else "an open ring" if open_labels
        else "no atom, or a trailing '(' or '.'" if last in (KIND_BEGIN, KIND_BRANCH_OPEN, KIND_DOT)
        else ""
    )  # fmt: skip
    if problem:
        raise DesignError(f"incomplete SMILES {smiles!r}: {problem}")
    parent.append(top)
    tokens.append(END)
    depth.append(0)
    rings.append(0)
    return Extended(
        tuple(tokens),
        np.asarray(depth, np.int16),
        np.asarray(rings, np.int16),
        np.asarray(parent, np.int32),
        stars,
    )


def _label(n: int) -> str:
    return str(n) if n < 10 else f"%{n}" if n < 100 else f"%({n})"


def to_smiles(tokens: Sequence[str]) -> str:
    """SMILES of extended ``tokens`` (with or without :data:`BEGIN`/:data:`END`).

    Ring labels are reassigned: the smallest free digit opens a ring, ``%nn``
    past 9. A ``}k`` token closes the ``k``-th most recently opened ring.

    Raises
    ------
    DesignError
        A ``}k`` with fewer than ``k + 1`` rings open.

    Examples
    --------
    >>> to_smiles(["^", "C", "{", "C", "C", "C", "}0", "!"])
    'C1CCC1'
    """
    out: list[str] = []
    open_labels: list[int] = []
    used: set[int] = set()
    freed: list[int] = []
    for token in tokens:
        if token[-1] == "{":  # a ring opens
            label = 1
            while label in used:
                label += 1
            used.add(label)
            open_labels.append(label)
            out.append(token[:-1] + _LABELS[label] if label < 100 else token[:-1] + _label(label))
        elif token[0] != "[" and "}" in token:  # a ring closes
            cut = token.index("}")
            k = int(token[cut + 1 :])
            if k >= len(open_labels):
                raise DesignError(
                    f"extended token {token!r} closes ring {k} but only "
                    f"{len(open_labels)} ring(s) are open"
                )
            label = open_labels.pop(len(open_labels) - 1 - k)
            freed.append(label)
            out.append(token[:cut] + _label(label))
        elif token in (BEGIN, END):
            continue
        else:
            if freed and token not in ("(", ")"):  # an atom or '.': freed labels reusable
                used.difference_update(freed)
                freed.clear()
            out.append(token)
    return "".join(out)


_LABELS = [_label(n) for n in range(100)]


@lru_cache(maxsize=65536)
def token_kind(token: str) -> int:
    """The kind of an extended token (``KIND_*`` constant).

    Examples
    --------
    >>> [token_kind(t) for t in ("C", "[*]", "(", ")", "={", "}1", ".", "^", "!")]
    [0, 1, 2, 3, 4, 5, 6, 7, 8]
    """
    if token == "(":
        return KIND_BRANCH_OPEN
    if token == ")":
        return KIND_BRANCH_CLOSE
    if token == ".":
        return KIND_DOT
    if token == BEGIN:
        return KIND_BEGIN
    if token == END:
        return KIND_END
    if token.endswith("{"):
        return KIND_RING_OPEN
    if _CLOSE.match(token):
        return KIND_RING_CLOSE
    if _STAR.match(token):
        return KIND_STAR
    return KIND_ATOM


def ring_index(token: str) -> int:
    """``k`` of a ring-closing token ``}k`` (``-1`` for any other token)."""
    match = _CLOSE.match(token)
    return int(match.group(1)) if match else -1


@lru_cache(maxsize=65536)
def token_hash(token: str) -> int:
    """A stable 64-bit hash of a token (BLAKE2b of its UTF-8 text), as used in context keys.

    Examples
    --------
    >>> token_hash("C") == token_hash("C") != token_hash("c")
    True
    """
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def count_stars(smiles: str) -> int:
    """Number of ``*`` atoms (polymer ends) in ``smiles``; 0 when it does not tokenize.

    Examples
    --------
    >>> count_stars("*CC(*)C"), count_stars("[*]CC[*]"), count_stars("CCO")
    (2, 2, 0)
    """
    try:
        tokens = tokenize(smiles)
    except DesignError:
        return 0
    return sum(t == "*" or (t.startswith("[") and _STAR.match(t) is not None) for t in tokens)
