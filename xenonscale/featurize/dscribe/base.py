"""The shared part of the ``dscribe:`` descriptors: the :class:`Descriptor` interface and checks.

A :class:`Descriptor` stands for one DScribe class: its keyword defaults, the
input kinds it serves, how to check and complete a spec's keywords
(:meth:`Descriptor.resolve`, a :class:`~xenonscale.errors.ConfigError` naming
the bad value), how to build the DScribe object (:meth:`Descriptor.build`,
which imports DScribe), the labels of its fixed-width row
(:meth:`Descriptor.labels`, computed without DScribe) and how one batched
``create`` call becomes rows (:meth:`Descriptor.rows`). The descriptors
themselves live in :mod:`.environments` (SOAP, ACSF), :mod:`.tensors` (MBTR,
Valle–Oganov) and :mod:`.matrices`; :mod:`.descriptors` lists them.

Examples
--------
>>> number_param("dscribe:SOAP", "r_cut", -1)
Traceback (most recent call last):
...
xenonscale.errors.ConfigError: dscribe:SOAP: r_cut=-1: give a positive number
>>> grid_labels({"min": 0.0, "max": 1.0, "n": 5})
['0', '0.25', '0.5', '0.75', '1']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from xenonscale.errors import ConfigError
from xenonscale.featurize.dscribe.compat import load_dscribe
from xenonscale.featurize.dscribe.spec import render_call

__all__ = [
    "DSCRIBE_CITATIONS",
    "KINDS",
    "Descriptor",
    "choice_param",
    "dict_param",
    "grid_labels",
    "integer_param",
    "number_param",
    "pair_indices",
    "rows_param",
    "short_number",
]

KINDS = ("structure", "molecule")

DSCRIBE_CITATIONS = (
    "Himanen, L. et al. DScribe: Library of descriptors for machine learning in materials "
    "science. Comput. Phys. Commun. 247, 106949 (2020)",
    "Laakso, J. et al. Updates to the DScribe library: New descriptors and derivatives. "
    "J. Chem. Phys. 158, 234802 (2023)",
)


def number_param(what: str, key: str, value: object, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what}: {key}={value!r}: give a finite number")
    if positive and value <= 0:
        raise ConfigError(f"{what}: {key}={value!r}: give a positive number")
    return float(value)


def integer_param(what: str, key: str, value: object, minimum: int, maximum: int = 10**6) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(f"{what}: {key}={value!r}: give an integer from {minimum} to {maximum}")
    return int(value)


def choice_param(what: str, key: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{what}: {key}={value!r}: use one of {', '.join(map(repr, choices))}")
    return str(value)


def rows_param(what: str, key: str, value: object, width: int) -> list[list[float]]:
    """A list of ``width``-number rows (ACSF parameter sets)."""
    if not isinstance(value, list | tuple) or not value:
        raise ConfigError(f"{what}: {key}={value!r}: give a list of [{width} numbers] rows or None")
    out = []
    for row in value:
        if not isinstance(row, list | tuple) or len(row) != width:
            raise ConfigError(f"{what}: {key} row {row!r}: give {width} numbers per row")
        out.append([number_param(what, key, x, positive=False) for x in row])
    return out


def dict_param(what: str, key: str, value: object) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{what}: {key}={value!r}: give a dict with string keys, or None")
    return dict(value)


def short_number(value: float) -> str:
    return format(value, "g")


# ---------------------------------------------------------------------- the base
class Descriptor:
    """One DScribe class as a ``dscribe:`` descriptor (see the module docstring)."""

    name: str = ""
    #: Keyword → default; every keyword a spec may give (None: DScribe's own choice).
    defaults: ClassVar[dict[str, object]] = {}
    kinds: tuple[str, ...] = KINDS
    citations: tuple[str, ...] = ()
    #: Whether DScribe bins the atoms into a cell list of :meth:`cutoff`-sized cells
    #: (SOAP, ACSF): its memory grows with the box the atoms span.
    cell_list: bool = False
    wrong_kind: str = ""  # why a kind not in ``kinds`` is refused, and what to use

    # -- spec → parameters ------------------------------------------------------------
    def resolve(self, params: Mapping[str, object], kind: str) -> dict[str, object]:
        """Every keyword of :attr:`defaults`, checked and normalized (a :class:`ConfigError`)."""
        what = f"dscribe:{self.name}"
        if kind not in self.kinds:
            raise ConfigError(f"{what} is not for --kind {kind}: {self.wrong_kind}")
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(
                f"{what}: unknown keyword {unknown[0]!r}; {self.name} takes "
                f"{', '.join(self.defaults)}"
            )
        merged = {**self.defaults, **params}
        return self._check(what, merged, set(params))

    def _check(self, what: str, p: dict[str, object], given: set[str]) -> dict[str, object]:
        """Check and normalize ``p`` (defaults filled in); ``given``: the keywords the spec set."""
        raise NotImplementedError  # pragma: no cover - abstract

    def display_defaults(self, p: Mapping[str, object]) -> dict[str, object]:
        """The defaults the label prefix is compared against (MBTR's depend on ``k``)."""
        return self.defaults

    def prefix(self, p: Mapping[str, object]) -> str:
        """``NAME`` or ``NAME(k=v ...)`` with the keywords that differ from the defaults.

        Species are left out: the labels name the elements themselves.
        """
        defaults = self.display_defaults(p)
        changed = {
            k: v for k, v in p.items() if k != "species" and k in defaults and v != defaults[k]
        }
        return render_call(self.name, changed)

    def call(self, p: Mapping[str, object], periodic: bool) -> str:
        """The DScribe constructor call this builds, as text (provenance)."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.constructor(p, periodic).items())
        return f"{self.name}({args})"

    # -- DScribe -----------------------------------------------------------------------
    def constructor(self, p: Mapping[str, object], periodic: bool) -> dict[str, object]:
        """Keyword arguments of the DScribe class."""
        raise NotImplementedError  # pragma: no cover - abstract

    def create_arguments(self, p: Mapping[str, object]) -> dict[str, object]:
        """Extra keyword arguments of ``create`` (EwaldSumMatrix's)."""
        return {}

    def build(self, p: Mapping[str, object], periodic: bool):
        """The DScribe object; DScribe's own refusal of a value becomes a :class:`ConfigError`."""
        module = load_dscribe()
        try:
            return getattr(module, self.name)(**self.constructor(p, periodic))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"dscribe:{self.name}: DScribe refuses the parameters: {exc}"
            ) from None

    def create(self, built, atoms: list, p: Mapping[str, object]) -> object:
        """DScribe's ``create`` on a list of systems, serial (the engine parallelizes)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # DScribe: atoms.get_calculator()
            return built.create(atoms, n_jobs=1, **self.create_arguments(p))

    def rows(self, built, atoms: list, p: Mapping[str, object]) -> np.ndarray:
        """``float64[len(atoms), d]``: one ``create`` call on the whole list."""
        out = np.asarray(self.create(built, atoms, p), dtype=np.float64)
        return out.reshape(len(atoms), -1)

    # -- layout and budgets ------------------------------------------------------------
    def labels(self, p: Mapping[str, object]) -> list[str]:
        raise NotImplementedError  # pragma: no cover - abstract

    def species(self, p: Mapping[str, object]) -> tuple[str, ...] | None:
        """The elements a record may hold (None: any element)."""
        return p.get("species")  # type: ignore[return-value]

    def cutoff(self, built, p: Mapping[str, object]) -> float | None:
        """The radius of the periodic neighbour search (for the ``max_neighbors`` budget)."""
        return None

    def refuse(self, p: Mapping[str, object], n_atoms: int) -> str | None:
        """Why a record of ``n_atoms`` atoms cannot have this descriptor's fixed-width row."""
        return None


def pair_indices(species: Sequence[str]) -> list[tuple[int, int]]:
    """(i, j ≥ i) in DScribe's order: the upper triangle, row by row."""
    return [(i, j) for i in range(len(species)) for j in range(i, len(species))]


def grid_labels(grid: Mapping[str, float]) -> list[str]:
    """The grid points as short, distinct texts (4 significant digits, more when needed)."""
    points = np.linspace(grid["min"], grid["max"], int(grid["n"]))
    for digits in range(4, 18):
        texts = [format(float(x), f".{digits}g") for x in points]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(float(x)) for x in points]  # pragma: no cover - distinct at 17 digits
