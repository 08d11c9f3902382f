"""Substructure-key fingerprints: MACCS keys, RDKit's pattern and layered fingerprints.

These have no ``rdFingerprintGenerator`` form: each row calls RDKit's own
function (the one XenonPy 0.6.7 calls) and unpacks the bit vector with one
``ToBitString`` into the batch's ``float32`` matrix. They cost far more per
molecule than the hashed fingerprints (SMARTS matching: MACCS and the
pattern fingerprint run a few hundred substructure queries per molecule,
the layered fingerprint enumerates subgraphs). All three are 0/1 bits
(``feature_encoding = "bits"``): a store keeps them as ``uint8``.

Examples
--------
>>> from xenonscale.featurize.molecules import MACCS
>>> frame = MACCS().transform(["CCO"])
>>> frame.shape, frame.columns[-1]
((1, 167), 'maccs:166')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xenonscale.featurize.molecules.fingerprints import (
    RDKIT_CITATION,
    XENONPY_CITATION,
    MoleculeFeaturizer,
    check_positive,
)
from xenonscale.featurize.molecules.parse import rdkit

__all__ = ["MACCS", "LayeredFP", "PatternFP"]

MACCS_CITATION = (
    "Durant, J. L., Leland, B. A., Henry, D. R. & Nourse, J. G. Reoptimization of MDL keys "
    "for use in drug discovery. J. Chem. Inf. Comput. Sci. 42, 1273-1280 (2002)"
)

_ZERO = ord("0")


def _unpacked(fingerprint: Callable[[Any], Any]) -> Callable[[Any], np.ndarray]:
    """``mol → uint8 bits`` from ``mol → ExplicitBitVect`` (one string copy, no Python loop)."""

    def row(mol: Any) -> np.ndarray:
        text = fingerprint(mol).ToBitString().encode("ascii")
        return np.frombuffer(text, dtype=np.uint8) - _ZERO

    return row


class MACCS(MoleculeFeaturizer):
    """The 166 public MACCS keys (167 bits: bit 0 is always 0), as XenonPy's ``MACCS``.

    Parameters
    ----------
    on_error : {"record", "raise"}
        ``"record"``: bad rows are NaN and listed in ``errors_``.

    Examples
    --------
    >>> int(MACCS().transform(["c1ccccc1O"]).to_numpy().sum())
    10
    """

    feature_encoding = "bits"
    citations = (MACCS_CITATION, RDKIT_CITATION, XENONPY_CITATION)

    def __init__(self, *, on_error: str = "record") -> None:
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``maccs:0`` … ``maccs:166``."""
        return [f"maccs:{i}" for i in range(167)]

    def _row_function(self) -> Callable[[Any], object]:
        rdkit()
        from rdkit.Chem import rdMolDescriptors

        return _unpacked(rdMolDescriptors.GetMACCSKeysFingerprint)


class PatternFP(MoleculeFeaturizer):
    """RDKit's pattern fingerprint (SMARTS-based, for substructure screening).

    As XenonPy's ``PatternFP``: ``Chem.PatternFingerprint(mol, fpSize=n_bits)``.

    Parameters
    ----------
    n_bits : int, default 2048
    on_error : {"record", "raise"}

    Examples
    --------
    >>> PatternFP().transform(["CCO"]).columns[0]
    'patfp:0'
    """

    feature_encoding = "bits"
    citations = (RDKIT_CITATION, XENONPY_CITATION)

    def __init__(self, *, n_bits: int = 2048, on_error: str = "record") -> None:
        self.n_bits = n_bits
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``patfp:0`` … ``patfp:{n_bits - 1}``."""
        return [f"patfp:{i}" for i in range(check_positive("n_bits", self.n_bits))]

    def _row_function(self) -> Callable[[Any], object]:
        Chem = rdkit()
        size = check_positive("n_bits", self.n_bits)
        return _unpacked(lambda mol: Chem.PatternFingerprint(mol, fpSize=size))


class LayeredFP(MoleculeFeaturizer):
    """RDKit's layered substructure fingerprint, as XenonPy's ``LayeredFP``.

    ``Chem.LayeredFingerprint(mol, fpSize=n_bits)`` with RDKit's default
    layers (paths up to 7 bonds).

    Parameters
    ----------
    n_bits : int, default 2048
    on_error : {"record", "raise"}

    Examples
    --------
    >>> LayeredFP().transform(["CCO"]).columns[0]
    'layfp:0'
    """

    feature_encoding = "bits"
    citations = (RDKIT_CITATION, XENONPY_CITATION)

    def __init__(self, *, n_bits: int = 2048, on_error: str = "record") -> None:
        self.n_bits = n_bits
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """``layfp:0`` … ``layfp:{n_bits - 1}``."""
        return [f"layfp:{i}" for i in range(check_positive("n_bits", self.n_bits))]

    def _row_function(self) -> Callable[[Any], object]:
        Chem = rdkit()
        size = check_positive("n_bits", self.n_bits)
        return _unpacked(lambda mol: Chem.LayeredFingerprint(mol, fpSize=size))
