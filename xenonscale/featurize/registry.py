"""Featurizers by name, so the CLI and the engine can build them from a spec.

A :class:`FeaturizerSpec` (kind, names, element table) is small, JSON- and
pickle-friendly: the engine ships it to workers, which build the featurizer
there, and records it in the store's provenance. New kinds (structures,
molecules) plug in with :func:`register_featurizer`.

Composition names: ``classic``, ``all``, ``pooling`` (XenonPy sets),
``magpie`` (matminer's Magpie statistics on the Magpie table, whatever
``--elements`` says), ``slots`` (the composition itself: 16 atomic numbers
and their fractions, :mod:`xenonscale.featurize.slots`), or a single XenonPy pooling
(``WeightedAverage``, ..., ``Counting``). Several names are joined by a
:class:`FeatureUnion`.

Examples
--------
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> spec = FeaturizerSpec.parse("composition", "classic,magpie", elements="xenonpy58")
>>> spec.names
('classic', 'magpie')
>>> len(spec.build().labels)  # doctest: +REQUIRES_DATA
422
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from xenonscale.chem.formula import RowError
from xenonscale.errors import ConfigError
from xenonscale.featurize.base import (
    BatchTransformer,
    FeatureBatch,
    check_on_error,
    combined_encoding,
)
from xenonscale.featurize.compositions import (
    ALL,
    FEATURIZER_SETS,
    Compositions,
    ElementPresence,
    ElementStatistics,
)
from xenonscale.featurize.slots import CompositionSlots
from xenonscale.limits import RecordLimits

__all__ = [
    "FeatureUnion",
    "FeaturizerSpec",
    "build_featurizer",
    "element_tables",
    "family_names",
    "register_family",
    "register_featurizer",
    "registered",
    "split_names",
]

Factory = Callable[[str | None], BatchTransformer]
FamilyFactory = Callable[[str, str | None], BatchTransformer]
_REGISTRY: dict[str, dict[str, Factory]] = {}
_FAMILIES: dict[str, FamilyFactory] = {}


def register_featurizer(kind: str, name: str, factory: Factory) -> None:
    """Make ``name`` usable in ``--featurizers`` for ``--kind kind``.

    ``factory(elements)`` returns a featurizer with ``labels`` and
    ``featurize_batch``; ``elements`` is the ``--elements`` value or None.
    """
    _REGISTRY.setdefault(kind, {})[name] = factory


def register_family(prefix: str, factory: FamilyFactory) -> None:
    """Make ``prefix:ARG`` usable in ``--featurizers`` for every kind.

    ``factory(arg, elements)`` builds the featurizer, e.g. ``frozen:oqmd-hf@1``
    → frozen features of that zoo model.
    """
    _FAMILIES[prefix] = factory


def _factory(kind: str, name: str) -> Factory | None:
    if name in _REGISTRY.get(kind, {}):
        return _REGISTRY[kind][name]
    prefix, sep, arg = name.partition(":")
    family = _family(prefix) if sep and arg else None
    if family is not None:
        return lambda elements: _build_family(family, arg, elements, kind)
    return None


def _build_family(family: FamilyFactory, arg: str, elements: str | None, kind: str):
    """``family(arg, elements)``; a family whose factory takes ``kind=`` (``dscribe:``) gets it."""
    import inspect

    try:
        takes_kind = "kind" in inspect.signature(family).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature
        takes_kind = False
    return family(arg, elements, kind=kind) if takes_kind else family(arg, elements)


def split_names(names: str) -> list[str]:
    """A ``--featurizers`` comma list split on its top-level commas only.

    Commas inside brackets belong to one name (a family argument such as
    ``dscribe:SOAP(r_cut=5, species=['Si', 'O'])``).

    >>> split_names("rdf, dscribe:ACSF(g2_params=[[1, 1], [1, 2]]),ofm")
    ['rdf', 'dscribe:ACSF(g2_params=[[1, 1], [1, 2]])', 'ofm']
    """
    items, depth, start = [], 0, 0
    for i, char in enumerate(names):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            items.append(names[start:i])
            start = i + 1
    items.append(names[start:])
    return [item.strip() for item in items if item.strip()]


def family_names() -> list[str]:
    """Prefixes of the registered and installed (entry-point) families."""
    from importlib.metadata import entry_points

    return sorted({*_FAMILIES, *(e.name for e in entry_points(group=FAMILY_ENTRY_POINTS))})


def registered(kind: str | None = None) -> dict[str, list[str]]:
    """Registered names by kind."""
    kinds = [kind] if kind else sorted(_REGISTRY)
    return {k: sorted(_REGISTRY.get(k, {})) for k in kinds}


def _compositions(featurizers) -> Factory:
    return lambda elements: Compositions(elements=elements or "xenonscale", featurizers=featurizers)


for _name in FEATURIZER_SETS:
    register_featurizer("composition", _name, _compositions(_name))
for _name in ALL:
    register_featurizer("composition", _name, _compositions([_name]))
register_featurizer(
    "composition", "presence", lambda elements: ElementPresence(elements=elements or "xenonscale")
)
# The Magpie preset is defined by its own table: --elements does not apply to it.
register_featurizer("composition", "magpie", lambda elements: ElementStatistics())
# The composition itself (16 element slots): no element table, --elements does not apply.
register_featurizer("composition", "slots", lambda elements: CompositionSlots())


#: Entry-point group through which higher floors add ``prefix:ARG`` families
#: (``frozen:NAME@V`` from :mod:`xenonscale.transfer.frozen`); this module never
#: imports them, it loads the one a spec names when it is first asked for.
FAMILY_ENTRY_POINTS = "xenonscale.featurizer_families"


def _family(prefix: str) -> FamilyFactory | None:
    """A registered family, else one loaded from :data:`FAMILY_ENTRY_POINTS` (then cached)."""
    if prefix not in _FAMILIES:
        from importlib.metadata import entry_points

        for entry in entry_points(group=FAMILY_ENTRY_POINTS, name=prefix):
            _FAMILIES[prefix] = entry.load()
            break
    return _FAMILIES.get(prefix)


@dataclass(frozen=True)
class FeaturizerSpec:
    """What to build: ``kind``, registered ``names``, ``elements`` table, ``on_error``.

    ``limits`` are the per-record budgets the engine applies around every
    batch (:class:`~xenonscale.limits.RecordLimits`); they are part
    of the spec, so a store built with other limits is a different store.
    """

    kind: str = "composition"
    names: tuple[str, ...] = ("classic",)
    elements: str | None = None
    on_error: str = "record"
    limits: RecordLimits = field(default_factory=RecordLimits)

    def __post_init__(self) -> None:
        if not isinstance(self.limits, RecordLimits):  # a dict from JSON (store attrs, cards)
            object.__setattr__(self, "limits", RecordLimits.from_dict(self.limits))

    @classmethod
    def parse(
        cls,
        kind: str,
        names: str | Sequence[str],
        *,
        elements: str | None = None,
        on_error: str = "record",
        limits: RecordLimits | None = None,
    ) -> FeaturizerSpec:
        """From CLI text: ``names`` is a comma list (top-level commas, :func:`split_names`)."""
        items = split_names(names) if isinstance(names, str) else list(names)
        spec = cls(
            kind,
            tuple(n.strip() for n in items if n.strip()),
            elements,
            on_error,
            limits if limits is not None else RecordLimits(),
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        if self.kind not in _REGISTRY:
            raise ConfigError(
                f"--kind {self.kind!r} has no featurizers; registered kinds: {sorted(_REGISTRY)}"
            )
        if self.on_error not in ("record", "raise"):
            raise ConfigError(f"--on-error {self.on_error!r}: use 'record' or 'raise'")
        known = _REGISTRY[self.kind]
        unknown = [n for n in self.names if _factory(self.kind, n) is None]
        if unknown or not self.names:
            families = ", ".join(f"{p}:ARG" for p in sorted(family_names()))
            raise ConfigError(
                f"--featurizers {','.join(self.names)!r}: unknown {unknown} for kind "
                f"{self.kind!r}; choose from {', '.join(sorted(known))}"
                + (f" or {families}" if families else "")
            )

    def build(self) -> BatchTransformer:
        """Build the featurizer (a :class:`FeatureUnion` for several names)."""
        self.validate()
        parts = [_factory(self.kind, name)(self.elements) for name in self.names]
        for part in parts:
            part.on_error = self.on_error
        return parts[0] if len(parts) == 1 else FeatureUnion(parts, on_error=self.on_error)

    def to_dict(self) -> dict:
        return {**asdict(self), "names": list(self.names), "limits": self.limits.to_dict()}

    @classmethod
    def from_dict(cls, value: dict) -> FeaturizerSpec:
        """The inverse of :meth:`to_dict` (a store's or a card's ``featurizer``).

        >>> spec = FeaturizerSpec.parse("structure", "rdf,ofm")
        >>> FeaturizerSpec.from_dict(spec.to_dict()) == spec
        True
        """
        fields = dict(value)
        names = fields.get("names", ("classic",))
        fields["names"] = (names,) if isinstance(names, str) else tuple(names)
        try:
            return cls(**fields)
        except TypeError as exc:
            raise ConfigError(
                f"featurizer {dict(value)!r} is not a FeaturizerSpec dict ({exc}): "
                "use FeaturizerSpec.parse(...).to_dict()"
            ) from exc


class FeatureUnion(BatchTransformer):
    """Several featurizers side by side; a row is ok only if every part is ok.

    Examples
    --------
    >>> parts = [Compositions(featurizers="classic"), ElementStatistics()]
    >>> FeatureUnion(parts).labels[-1]  # doctest: +REQUIRES_DATA
    'MagpieData mode SpaceGroupNumber'
    """

    def __init__(self, featurizers: Sequence[BatchTransformer], *, on_error: str = "record"):
        self.featurizers = featurizers
        self.on_error = on_error

    @property
    def labels(self) -> list[str]:
        return [label for part in self.featurizers for label in part.labels]

    @property
    def citations(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for part in self.featurizers for c in part.citations))

    @property
    def feature_encoding(self) -> str:
        """The parts' common encoding (``bits``, ``counts``) or ``float32``; the rule is
        :func:`~xenonscale.featurize.base.combined_encoding`'s."""
        return combined_encoding(self.featurizers)[0]

    @property
    def feature_max(self) -> int | None:
        return combined_encoding(self.featurizers)[1]

    @property
    def tables(self) -> list:
        """The element tables of the parts (for provenance)."""
        return [t for part in self.featurizers for t in element_tables(part)]

    def featurize_batch(self, inputs: Sequence[object]) -> FeatureBatch:
        check_on_error(self.on_error)  # checked at use, like the parts (set_params skips __init__)
        batches = [part.featurize_batch(inputs) for part in self.featurizers]
        ok = np.logical_and.reduce([b.ok for b in batches])
        first: dict[int, RowError] = {}
        for batch in batches:
            for error in batch.errors:
                first.setdefault(error.row, error)
        values = np.hstack([b.values for b in batches])
        values[~ok] = np.nan
        return FeatureBatch(values=values, ok=ok, errors=[first[r] for r in sorted(first)])


def build_featurizer(spec: str, *, elements: str | None = None) -> BatchTransformer:
    """Composition featurizer(s) from a comma list of names (CLI helper)."""
    return FeaturizerSpec.parse("composition", spec, elements=elements).build()


def element_tables(featurizer) -> list:
    """Element tables a featurizer uses (none, one, or several for a union)."""
    if hasattr(featurizer, "tables"):
        return list(featurizer.tables)
    table = getattr(featurizer, "table", None)
    return [table] if table is not None else []


# Structure and molecule featurizers register themselves when imported (their
# heavy dependencies, pymatgen and RDKit, load lazily inside them).
from xenonscale.featurize import molecules, structures  # noqa: E402, F401
