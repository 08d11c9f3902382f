"""`ElementTable`: one row per element, one numeric column per property.

The table is a small immutable value: symbols ordered by atomic number, a float64
matrix of property values, a unit and a source for every property, and an
``imputed`` mask telling which values were filled in rather than measured or
computed. Featurizers index it by element symbol; its :attr:`sha256` goes into
provenance so a descriptor can always be traced to the exact table.

Examples
--------
>>> import pandas as pd
>>> from xenonscale.elements import ElementTable
>>> frame = pd.DataFrame({"mass": [1.008, 4.0026]}, index=["H", "He"])
>>> table = ElementTable.from_frame(frame, name="tiny", units={"mass": "u"})
>>> table.properties, table.symbols
(('mass',), ('H', 'He'))
>>> table.value("He", "mass")
4.0026
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from xenonscale.chem.periodic import PERIODIC_SYMBOLS, atomic_number
from xenonscale.errors import ElementTableError

__all__ = ["PERIODIC_SYMBOLS", "ElementTable", "atomic_number"]


@dataclass(frozen=True, eq=False)
class ElementTable:
    """Element property table (rows: elements by Z, columns: properties).

    Attributes
    ----------
    name : str
        Preset or user name, recorded in provenance.
    symbols : tuple of str
        Element symbols, sorted by atomic number.
    properties : tuple of str
        Property (column) names.
    values : numpy.ndarray
        float64 array ``[n_elements, n_properties]`` (read-only). May hold NaN
        only where the source lacks a value and no imputation was applied.
    units, sources : dict
        Unit and origin of every property (``""`` when dimensionless/unknown).
    imputed : numpy.ndarray
        bool array like ``values``: True where a value was imputed.
    description : str
        Free text: origin, licence, imputation method.

    Thread-safety: instances are immutable and safe to share between threads and
    to send to Dask workers.
    """

    name: str
    symbols: tuple[str, ...]
    properties: tuple[str, ...]
    values: np.ndarray
    units: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    imputed: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float64, copy=True)
        if values.shape != (len(self.symbols), len(self.properties)):
            raise ElementTableError(
                f"table {self.name!r}: values shape {values.shape} does not match "
                f"{len(self.symbols)} symbols x {len(self.properties)} properties"
            )
        if len(set(self.properties)) != len(self.properties):
            raise ElementTableError(f"table {self.name!r}: duplicate property names")
        for symbol in self.symbols:
            atomic_number(symbol)
        zs = [atomic_number(s) for s in self.symbols]
        if zs != sorted(zs) or len(set(zs)) != len(zs):
            raise ElementTableError(
                f"table {self.name!r}: symbols must be unique and sorted by atomic number"
            )
        imputed = (
            np.zeros(values.shape, dtype=bool)
            if self.imputed is None
            else np.array(self.imputed, dtype=bool, copy=True)
        )
        if imputed.shape != values.shape:
            raise ElementTableError(f"table {self.name!r}: imputed mask shape mismatch")
        values.setflags(write=False)
        imputed.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "imputed", imputed)
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "properties", tuple(self.properties))
        object.__setattr__(self, "units", {p: self.units.get(p, "") for p in self.properties})
        object.__setattr__(self, "sources", {p: self.sources.get(p, "") for p in self.properties})

    # ------------------------------------------------------------------ build
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        name: str,
        units: Mapping[str, str] | None = None,
        sources: Mapping[str, str] | None = None,
        imputed: pd.DataFrame | np.ndarray | None = None,
        description: str = "",
    ) -> ElementTable:
        """Build a table from a DataFrame indexed by element symbol (any order)."""
        if frame.index.has_duplicates:
            raise ElementTableError(f"table {name!r}: duplicate element symbols in the index")
        order = sorted(range(len(frame)), key=lambda i: atomic_number(str(frame.index[i])))
        numeric = frame.iloc[order].apply(pd.to_numeric, errors="coerce")
        mask = None
        if imputed is not None:
            mask = np.asarray(imputed, dtype=bool)[order]
        return cls(
            name=name,
            symbols=tuple(str(s) for s in numeric.index),
            properties=tuple(str(c) for c in numeric.columns),
            values=numeric.to_numpy(dtype=np.float64),
            units=dict(units or {}),
            sources=dict(sources or {}),
            imputed=mask,
            description=description,
        )

    # ----------------------------------------------------------------- access
    @cached_property
    def atomic_numbers(self) -> np.ndarray:
        """Atomic numbers of the rows (int64, read-only)."""
        zs = np.array([atomic_number(s) for s in self.symbols], dtype=np.int64)
        zs.setflags(write=False)
        return zs

    @cached_property
    def z_to_row(self) -> np.ndarray:
        """int64 lookup of length 119: row of element Z, or -1 if not in the table."""
        lookup = np.full(len(PERIODIC_SYMBOLS) + 1, -1, dtype=np.int64)
        lookup[self.atomic_numbers] = np.arange(len(self.symbols))
        lookup.setflags(write=False)
        return lookup

    def index_of(self, symbols: Iterable[str]) -> np.ndarray:
        """Row positions of ``symbols`` (-1 where a symbol is not in the table)."""
        rows = {s: i for i, s in enumerate(self.symbols)}
        return np.array([rows.get(s, -1) for s in symbols], dtype=np.int64)

    def value(self, symbol: str, prop: str) -> float:
        """One value, e.g. ``table.value("Fe", "atomic_number")``."""
        row = self.index_of([symbol])[0]
        if row < 0:
            raise ElementTableError(f"element {symbol!r} is not in table {self.name!r}")
        return float(self.values[row, self._column(prop)])

    def _column(self, prop: str) -> int:
        try:
            return self.properties.index(prop)
        except ValueError:
            raise ElementTableError(
                f"property {prop!r} is not in table {self.name!r}; "
                f"available: {', '.join(self.properties[:8])}, ..."
            ) from None

    def select(self, properties: Sequence[str]) -> ElementTable:
        """A table restricted to ``properties`` (in the given order)."""
        cols = [self._column(p) for p in properties]
        return ElementTable(
            name=self.name,
            symbols=self.symbols,
            properties=tuple(properties),
            values=self.values[:, cols],
            units=self.units,
            sources=self.sources,
            imputed=self.imputed[:, cols],
            description=self.description,
        )

    def to_frame(self) -> pd.DataFrame:
        """The values as a DataFrame (index: symbols, columns: properties)."""
        return pd.DataFrame(self.values, index=list(self.symbols), columns=list(self.properties))

    def imputed_frame(self) -> pd.DataFrame:
        """The imputation mask as a boolean DataFrame shaped like :meth:`to_frame`."""
        return pd.DataFrame(self.imputed, index=list(self.symbols), columns=list(self.properties))

    @cached_property
    def sha256(self) -> str:
        """Content hash of symbols, properties and values (for provenance)."""
        digest = hashlib.sha256()
        digest.update(json.dumps([self.symbols, self.properties]).encode())
        digest.update(np.ascontiguousarray(self.values).tobytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        """Tables are equal when their name and content hash are equal."""
        if not isinstance(other, ElementTable):
            return NotImplemented
        return self.name == other.name and self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash((self.name, self.sha256))

    def __repr__(self) -> str:
        return (
            f"ElementTable(name={self.name!r}, elements={len(self.symbols)} "
            f"({self.symbols[0]}..{self.symbols[-1]}), properties={len(self.properties)})"
        )
