"""How good a designed population is: validity, uniqueness, novelty, in-target fraction.

Molecules are compared by RDKit canonical SMILES, so two spellings of one
molecule count once and a designed molecule that is a re-spelling of a
training molecule is not novel.

Examples
--------
>>> from xenonscale.design.metrics import canonical_smiles, population_metrics
>>> canonical_smiles(["OCC", "C1CC", "c1ccccc1"])
['CCO', None, 'c1ccccc1']
>>> m = population_metrics(["OCC", "CCO", "C1CC", "CCN"], reference=["CCO"])
>>> m["validity"], m["uniqueness"], m["novelty"]
(0.75, 0.6666666666666666, 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from xenonscale.featurize.molecules.parse import iter_molecules, rdkit

__all__ = ["canonical_smiles", "population_metrics"]


def canonical_smiles(smiles: Sequence[str]) -> list[str | None]:
    """RDKit canonical SMILES of each input, None where RDKit cannot read it (no logs printed).

    Examples
    --------
    >>> canonical_smiles(["C(C)O"])
    ['CCO']
    """

    to_smiles = rdkit().MolToSmiles
    texts = [s if isinstance(s, str) else None for s in smiles]  # text only, as documented
    out: list[str | None] = [None] * len(texts)
    for row, mol in iter_molecules(texts, []):
        out[row] = to_smiles(mol)
    return out


def population_metrics(
    smiles: Sequence[str],
    *,
    reference: Iterable[str] | set[str] = (),
    in_target: Sequence[bool] | None = None,
    canonical: Sequence[str | None] | None = None,
    reference_is_canonical: bool = False,
) -> dict[str, float | int]:
    """Quality figures of a set of designed SMILES.

    Parameters
    ----------
    smiles
        The designed molecules (several chains' final populations pooled).
    reference
        Known molecules (the training data) for novelty.
    in_target
        Per molecule, whether its predicted properties are in the target region.
    canonical
        Canonical SMILES of ``smiles`` if already known (None = invalid).
    reference_is_canonical
        ``reference`` already holds canonical SMILES (a set from an earlier call).

    Returns
    -------
    dict
        ``n``; ``validity`` = valid / n; ``uniqueness`` = distinct valid
        molecules / valid; ``novelty`` = distinct valid molecules not in the
        reference / distinct valid; ``in_target`` = in-target / n (invalid
        molecules count as misses); ``n_valid``, ``n_unique``, ``n_novel``.
        Fractions of an empty set are NaN.
    """
    smiles = list(smiles)
    keys = list(canonical) if canonical is not None else canonical_smiles(smiles)
    known = set(reference) if reference_is_canonical else set(canonical_smiles(list(reference)))
    known.discard(None)
    valid = [k for k in keys if k is not None]
    unique = set(valid)
    novel = unique - known
    n = len(smiles)
    out: dict[str, float | int] = {
        "n": n,
        "n_valid": len(valid),
        "n_unique": len(unique),
        "n_novel": len(novel),
        "validity": _ratio(len(valid), n),
        "uniqueness": _ratio(len(unique), len(valid)),
        "novelty": _ratio(len(novel), len(unique)),
    }
    if in_target is not None:
        hits = np.asarray(in_target, dtype=bool)
        out["n_in_target"] = int(hits.sum())
        out["in_target"] = _ratio(int(hits.sum()), n)
    return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")
