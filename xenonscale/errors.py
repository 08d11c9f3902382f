"""Typed errors: every error xenonscale raises derives from :class:`XenonscaleError`.

Messages name the offending value (``{value!r}``) and say how to fix it.

Examples
--------
>>> from xenonscale.errors import XenonscaleError, FormulaError
>>> issubclass(FormulaError, XenonscaleError)
True
"""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "ConfigError",
    "DatasetError",
    "DatasetUnavailableError",
    "DesignError",
    "ElementTableError",
    "FeaturizerError",
    "FormulaError",
    "ModelNotFoundError",
    "SourceError",
    "SourceUnavailableError",
    "StoreError",
    "StoreLockedError",
    "XenonscaleError",
    "ZooError",
    "ZooIntegrityError",
    "ZooMismatchError",
]


class XenonscaleError(Exception):
    """Base class of every error raised by xenonscale."""


class ConfigError(XenonscaleError, ValueError):
    """A bad argument or setting (the message names the value and the fix)."""


class DatasetError(XenonscaleError):
    """A dataset is unknown or its file cannot be read."""


class DatasetUnavailableError(DatasetError):
    """No local mirror, no cached copy and the download failed (offline?)."""


class ChecksumError(DatasetError):
    """A dataset file does not match the checksum recorded in the registry."""


class ElementTableError(XenonscaleError, ValueError):
    """An element table is unknown, malformed, or lacks a requested property."""


class FormulaError(XenonscaleError, ValueError):
    """A chemical formula could not be parsed (raised only with ``on_error="raise"``)."""


class FeaturizerError(XenonscaleError, ValueError):
    """A featurizer was configured with a bad argument or failed on a batch."""


class StoreError(XenonscaleError):
    """A feature store is missing, unfinished, or was built with another spec."""


class StoreLockedError(StoreError):
    """Another featurize job is writing the same store right now."""


class SourceError(XenonscaleError):
    """A source cannot be opened or planned (missing file, unknown format)."""


class SourceUnavailableError(SourceError):
    """A web source kept failing (429/5xx, dropped connections) after every retry."""


class ZooError(XenonscaleError):
    """The model zoo cannot do what was asked (catalog, artifacts or archive problem)."""


class ModelNotFoundError(ZooError, LookupError):
    """No model (or no such version) under that name in the zoo."""


class ZooIntegrityError(ZooError):
    """A zoo file does not match the sha256 recorded for it (tampered or corrupt)."""


class ZooMismatchError(ZooError):
    """A zoo model's featurizer or element tables differ from those it was trained with."""


class DesignError(XenonscaleError):
    """Inverse design cannot proceed (bad SMILES vocabulary, n-gram file, or a failed chain)."""
