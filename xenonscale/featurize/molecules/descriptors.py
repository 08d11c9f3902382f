"""Every RDKit 2D descriptor (``Descriptors._descList``), as XenonPy's ``DescriptorFeature``.

:class:`RDKitDescriptors` calls RDKit's descriptor functions in
``Descriptors._descList`` order (217 in RDKit 2026.09; the list grows with
RDKit versions, so the labels are RDKit's names and the store records them),
one molecule at a time, into one ``float64[n, d]`` matrix per batch.

Values are RDKit's own, exactly (``float64``, as ``Descriptors.CalcMolDescriptors``
returns them), with two documented differences, both NaN:

* a descriptor RDKit **raises** on for a molecule is NaN (XenonPy 0.6.7's
  ``DescriptorFeature`` puts ``-666`` there and prints the traceback;
  ``CalcMolDescriptors`` puts its ``missingVal``);
* a **non-finite** value (RDKit returns NaN for Gasteiger charges it cannot
  assign, e.g. on some metals and dummy atoms, and ``inf`` in rare overflows)
  is NaN.

The molecule itself is fine in both cases, so the row is ``ok``. Polymer
SMILES' ``*`` dummy atoms count as atoms of atomic number 0 (as in XenonPy).
A FeatureStore holds ``float32``: ``Ipc`` (the information content of the
coefficients of the characteristic polynomial) exceeds ``float32``'s
3.4e38 for very large molecules (2 of the 7,252 polymers of
``polymer_tg.csv``, up to 8.9e58) and is then ``inf`` in a store; the
in-memory ``float64`` values are exact.

Examples
--------
>>> from xenonscale.featurize.molecules import RDKitDescriptors
>>> frame = RDKitDescriptors(descriptors=["MolWt", "NumHDonors"]).transform(["CCO"])
>>> frame.round(3).to_dict("records")
[{'MolWt': 46.069, 'NumHDonors': 1.0}]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from xenonscale.errors import FeaturizerError
from xenonscale.featurize.molecules.fingerprints import (
    RDKIT_CITATION,
    XENONPY_CITATION,
    MoleculeFeaturizer,
)
from xenonscale.featurize.molecules.parse import rdkit

__all__ = ["RDKitDescriptors", "rdkit_descriptor_names"]


def rdkit_descriptor_names() -> list[str]:
    """The names in ``rdkit.Chem.Descriptors._descList`` (this RDKit's full 2D set)."""
    rdkit()
    from rdkit.Chem import Descriptors

    return [name for name, _ in Descriptors._descList]


class RDKitDescriptors(MoleculeFeaturizer):
    """RDKit's 2D descriptors (``MolWt``, ``TPSA``, ``MolLogP``, ``fr_*`` counts, ...).

    Parameters
    ----------
    descriptors : "all" or list of str, default "all"
        ``"all"``: every name in ``Descriptors._descList`` (XenonPy's
        ``desc_list='all'``); or a list of those names, in the order wanted.
    add_hs : bool, default False
        Add explicit hydrogens (``Chem.AddHs``) before computing, as XenonPy's
        ``add_Hs`` (which changes a few charge- and surface-based values).
        Unlike XenonPy, it applies to every input (XenonPy ignores it for
        ``Mol`` inputs with ``input_type='mol'``).
    on_error : {"record", "raise"}
        ``"record"``: rows that do not parse are NaN and listed in ``errors_``.

    Examples
    --------
    >>> desc = RDKitDescriptors()
    >>> desc.labels[:3]
    ['MaxAbsEStateIndex', 'MaxEStateIndex', 'MinAbsEStateIndex']
    >>> round(float(desc.transform(["c1ccccc1O"])["TPSA"].iloc[0]), 2)
    20.23
    """

    dtype = np.float64
    citations = (RDKIT_CITATION, XENONPY_CITATION)

    def __init__(
        self,
        *,
        descriptors: str | Sequence[str] = "all",
        add_hs: bool = False,
        on_error: str = "record",
    ) -> None:
        self.descriptors = descriptors
        self.add_hs = add_hs
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        """The descriptor names, in output order."""
        return [name for name, _ in self._functions()]

    def _functions(self) -> list[tuple[str, Callable[[Any], float]]]:
        rdkit()
        from rdkit.Chem import Descriptors

        table = dict(Descriptors._descList)
        if isinstance(self.descriptors, str):
            if self.descriptors != "all":
                raise FeaturizerError(
                    f"descriptors={self.descriptors!r}: use 'all' or a list of RDKit descriptor "
                    "names, e.g. ['MolWt', 'TPSA']"
                )
            return list(Descriptors._descList)
        names = list(self.descriptors)
        unknown = [name for name in names if name not in table]
        if unknown or not names:
            raise FeaturizerError(
                f"descriptors: unknown {unknown or 'empty list'}; choose from RDKit's "
                f"Descriptors._descList ({len(table)} names, e.g. {list(table)[:3]})"
            )
        return [(name, table[name]) for name in names]

    def _row_dtype(self) -> type | None:
        return None  # rows are lists of floats, written straight into the float64 matrix

    def _row_function(self) -> Callable[[Any], object]:
        Chem = rdkit()
        functions = [fn for _, fn in self._functions()]
        add_hs = bool(self.add_hs)
        nan, isfinite = math.nan, math.isfinite

        def row(mol: Any) -> list[float]:
            if add_hs:
                mol = Chem.AddHs(mol)
            out = []
            for fn in functions:
                try:
                    value = float(fn(mol))
                except Exception:  # RDKit's own convention: a failed descriptor is missing
                    value = nan
                out.append(value if isfinite(value) else nan)
            return out

        return row
