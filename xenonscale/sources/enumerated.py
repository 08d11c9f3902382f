"""Candidate compositions as a source: ``enumerate:compositions?elements=...&max_atoms=...``.

:class:`EnumeratedSource` reads no file: its records are the rows of a
:class:`~xenonscale.chem.enumeration.CompositionSpace` (every reduced formula
over the elements, in a fixed order), made by the workers partition by
partition. Each record's ``id`` and ``input`` are its formula; the extras are
``n_atoms`` and ``n_elements``. The plan is arithmetic, or, with
``charge_balanced=true``, one scan of the space on the client that counts the
kept rows per block (a few million rows a second), so partitions are
contiguous in the kept numbering and every worker makes its own rows.

Query keys (anything else is refused):

==================  ==========================================================
``elements``        symbols, comma-separated (required)
``max_atoms``       most atoms in a reduced formula unit (required)
``min_elements``    fewest distinct elements (default 2)
``max_elements``    most distinct elements (default all)
``charge_balanced`` ``true`` keeps charge-neutral compositions only
``oxidation_states`` ``icsd`` (default), ``common`` or ``all``
==================  ==========================================================

Examples
--------
>>> from xenonscale.sources import open_source
>>> source = open_source("enumerate:compositions?elements=Li,Fe,O&max_atoms=5&charge_balanced=1")
>>> total, partitions = source.plan(rows_per_partition=3)
>>> total, [(p.start, p.stop) for p in partitions]
(5, [(0, 3), (3, 5)])
>>> source.read(partitions[1]).to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
[{'row': 3, 'id': 'LiFeO2', 'input': 'LiFeO2', 'n_atoms': 4, 'n_elements': 3},
 {'row': 4, 'id': 'Li2FeO2', 'input': 'Li2FeO2', 'n_atoms': 5, 'n_elements': 3}]
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from xenonscale.chem.enumeration import CompositionSpace, Span
from xenonscale.errors import ConfigError
from xenonscale.sources.base import Partition, Source

__all__ = ["ENUMERATE_PREFIX", "QUERY_KEYS", "SPACES", "EnumeratedSource", "refuse_file_options"]

#: URLs of enumerated sources start with this.
ENUMERATE_PREFIX = "enumerate:"
#: The spaces an ``enumerate:`` URL may name.
SPACES = ("compositions",)
#: Query keys of ``enumerate:compositions`` and how each is read.
QUERY_KEYS = {
    "elements": "symbols",
    "max_atoms": "int",
    "min_elements": "int",
    "max_elements": "int",
    "charge_balanced": "bool",
    "oxidation_states": "text",
}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def refuse_file_options(**given: Any) -> None:
    """File-source arguments (``format``, ``column``, ``id_column``) do not apply here."""
    for name, value in given.items():
        if value is not None:
            raise ConfigError(
                f"{name}={value!r} does not apply to enumerate: sources (ids and inputs are the "
                "formulas, extras n_atoms and n_elements): leave it out"
            )


class EnumeratedSource(Source):
    """The rows of a composition space (see the module docstring).

    Parameters
    ----------
    url
        ``enumerate:compositions?elements=Li,Fe,O&max_atoms=8[&...]``.
    kind
        Only ``composition``.
    **options
        The query keys as keyword arguments (``elements=["Li", "O"]``,
        ``max_atoms=8``, ...), for keys the URL does not give.
    """

    def __init__(
        self,
        url: str,
        *,
        kind: str | None = None,
        storage_options: dict | None = None,
        **options: Any,
    ) -> None:
        if kind not in (None, "composition"):
            raise ConfigError(
                f"--kind {kind!r} with an enumerate: source: its records are compositions; "
                "use --kind composition"
            )
        if storage_options:
            raise ConfigError(
                "storage_options do not apply to enumerate: sources (nothing is read from "
                "storage): leave them out"
            )
        self.url = url
        self.kind = "composition"
        self.column = None  # the input is the formula itself
        settings = _parse(url)
        unknown = sorted(set(options) - set(QUERY_KEYS))
        if unknown:
            raise ConfigError(
                f"option(s) {unknown!r} are not accepted by enumerate: sources: "
                f"use {', '.join(QUERY_KEYS)}"
            )
        twice = sorted(set(options) & set(settings))
        if twice:
            raise ConfigError(
                f"{twice[0]} is given in the enumerate: URL and as an option: give it once"
            )
        settings.update(options)
        for key in ("elements", "max_atoms"):
            if key not in settings:
                raise ConfigError(
                    f"the enumerate: URL gives no {key}: add the key to its query "
                    f"({'symbols joined by commas' if key == 'elements' else 'a whole number'})"
                )
        elements = settings.pop("elements")
        max_atoms = settings.pop("max_atoms")
        try:
            self.space = CompositionSpace(elements, max_atoms, **settings)
        except ConfigError as exc:  # in the URL's words: KEY=VALUE would read as a flag
            raise ConfigError(f"the enumerate: URL's {_keys(str(exc))}") from None

    # -- Source contract ------------------------------------------------------------------

    def fingerprint(self) -> str:
        """The space's identity (elements, bounds, filter and the oxidation states used)."""
        identity = json.dumps(self.space.describe(), sort_keys=True)
        return "enumerate:" + hashlib.sha256(identity.encode()).hexdigest()[:32]

    def describe(self) -> dict:
        """Provenance: the URL and the space's definition."""
        return {
            "url": self.url,
            "kind": self.kind,
            "type": type(self).__name__,
            "column": None,
            **self.space.describe(),
        }

    def plan(self, rows_per_partition: int) -> tuple[int, list[Partition]]:
        """Arithmetic, or one counting scan with ``charge_balanced`` (see the module)."""
        spans = self.space.plan(rows_per_partition)
        partitions = [
            Partition(i, s.start, s.stop, {"offset": s.offset, "skip": s.skip})
            for i, s in enumerate(spans)
        ]
        return (spans[-1].stop if spans else 0), partitions

    def read(self, partition: Partition) -> pd.DataFrame:
        """Make the partition's compositions (no earlier row is made)."""
        where = partition.locator
        span = Span(
            partition.start,
            partition.stop,
            int(where.get("offset", partition.start)),
            int(where.get("skip", 0)),
        )
        rows = self.space.take(span)
        return pd.DataFrame(
            {
                "row": np.arange(partition.start, partition.stop, dtype=np.int64),
                "id": pd.Series(rows.formulas, dtype=object),
                "input": pd.Series(rows.formulas, dtype=object),
                "n_atoms": rows.n_atoms.astype(np.int64),
                "n_elements": rows.n_elements.astype(np.int64),
            }
        )

    def describe_partition(self, partition: Partition) -> str:
        where = partition.locator
        return (
            f"compositions {partition.start}..{partition.stop - 1} (from row "
            f"{where.get('offset', partition.start)} of the space)"
        )


def _parse(url: str) -> dict:
    """The settings of an ``enumerate:`` URL, typed; unknown or repeated keys refused."""
    if not url.startswith(ENUMERATE_PREFIX):
        raise ConfigError(f"{url!r} is not an enumerate: URL: start it with {ENUMERATE_PREFIX!r}")
    space, _, query = url[len(ENUMERATE_PREFIX) :].partition("?")
    if space not in SPACES:
        raise ConfigError(
            f"enumerate:{space} is not a space: use one of {', '.join(SPACES)} "
            "(enumerate:compositions?...)"
        )
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(
            f"the query of enumerate:{space} ({query!r}) is malformed: write KEY=VALUE pairs "
            "joined by '&'"
        ) from None
    unknown = sorted({key for key, _ in pairs} - set(QUERY_KEYS))
    if unknown:
        raise ConfigError(
            f"the enumerate: URL has unknown key(s) {unknown!r}: use {', '.join(QUERY_KEYS)}"
        )
    settings: dict[str, Any] = {}
    for key, text in pairs:
        if key in settings:
            raise ConfigError(f"the enumerate: URL gives {key} twice: give it once")
        settings[key] = _value(key, text.strip())
    return settings


def _value(key: str, text: str) -> Any:
    kind = QUERY_KEYS[key]
    if kind == "int":
        if not (text.isascii() and text.isdigit()):
            raise ConfigError(
                f"the enumerate: URL's {key} {text!r} is not a whole number: give one, e.g. 8"
            )
        return int(text)
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(
            f"the enumerate: URL's {key} {text!r} is not true or false: give true or false"
        )
    return text


def _keys(message: str) -> str:
    """``key=value`` of the query keys as ``key value``: a command maps ``NAME=`` in a library
    message to its own flag (``--max-atoms`` of featurize is a per-record limit)."""
    return re.sub(rf"(?<![\w.\-])({'|'.join(QUERY_KEYS)})=", r"\1 ", message)
