"""The :class:`Zoo`: register, list, load, promote, remove, export and import models.

A zoo is a catalog (SQLite or PostgreSQL, :mod:`xenonscale.zoo.catalog`) plus
an artifacts location (a folder or ``s3://`` URL, :mod:`xenonscale.zoo.artifacts`).

Where it is (argument > environment > default):

- ``Zoo("path/to/zoo")``: a folder holding ``catalog.sqlite`` and ``artifacts/``;
- ``Zoo("sqlite:///catalog.sqlite", artifacts="s3://bucket/zoo", storage_options=...)``
  or ``Zoo("postgresql+psycopg://user@db/zoo", artifacts=...)``: a database URL
  needs ``artifacts`` (or ``$XENONSCALE_ZOO_ARTIFACTS``);
- ``Zoo()``: ``$XENONSCALE_ZOO``, else ``~/.xenonscale/zoo``.

A reference is ``"name@3"`` (that version) or ``"name"`` (the production
version if one is promoted, else the latest). Versions start at 1, are
assigned atomically and never reused.

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> import xenonscale.zoo
>>> from xenonscale.featurize.registry import FeaturizerSpec
>>> from xenonscale.models import PropertyModel
>>> from xenonscale.zoo import Zoo, featurizer_fields
>>> fields = featurizer_fields(FeaturizerSpec.parse("composition", "classic"))
>>> model = PropertyModel.from_config(  # untrained: it stands for a trained one
...     {"in_features": len(fields["feature_labels"]), "out_features": 1, "hidden": [8]}
... )
>>> card = {**fields, "targets": ["yield_strength"], "units": {"yield_strength": "MPa"}}
>>> zoo = Zoo(Path(tempfile.mkdtemp()) / "my-zoo")
>>> ref = zoo.register("steels-yield", model, card, files={"notes.md": b"# Steels"})
>>> str(ref)
'steels-yield@1'
>>> frame = zoo.load("steels-yield").predict(["Fe2O3", "NaCl", "Xx2"])
>>> frame.attrs["errors"]
[{'row': 2, 'input': 'Xx2', 'error': "unknown element 'Xx'"}]
>>> zoo.close()
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from xenonscale.errors import ConfigError, ZooIntegrityError
from xenonscale.models.networks import build_model, is_property_model
from xenonscale.zoo.archive import read_archive, write_archive
from xenonscale.zoo.artifacts import (
    CARD,
    WEIGHTS,
    ArtifactStore,
    check_file,
    sha256_hex,
    weights_from_bytes,
    weights_to_bytes,
)
from xenonscale.zoo.card import key_metrics, package_versions, validate_card
from xenonscale.zoo.catalog import Catalog, Entry, utc_now
from xenonscale.zoo.limits import ZooLimits, check_model_config
from xenonscale.zoo.model import ZooModel
from xenonscale.zoo.refs import ModelRef, check_name, parse_ref

__all__ = ["ARTIFACTS_ENV", "ZOO_ENV", "Zoo", "load", "resolve_location"]

ZOO_ENV = "XENONSCALE_ZOO"
ARTIFACTS_ENV = "XENONSCALE_ZOO_ARTIFACTS"
_DATABASES = ("sqlite", "postgresql")
_REGISTER_STAGES = ("candidate", "production")


def resolve_location(
    catalog: str | os.PathLike | None = None, artifacts: str | os.PathLike | None = None
) -> tuple[str, str]:
    """``(catalog URL, artifacts URL)`` for a zoo location (see the module docstring)."""
    value = os.fspath(catalog) if catalog is not None else os.environ.get(ZOO_ENV, "")
    value = value or str(Path.home() / ".xenonscale" / "zoo")
    if "://" in value:
        scheme = value.split("://", 1)[0].split("+", 1)[0]
        if scheme not in _DATABASES:
            raise ConfigError(
                f"zoo location {value!r}: give a local folder, or a catalog database URL "
                "('sqlite:///path/catalog.sqlite', 'postgresql+psycopg://user@host/db') with "
                "artifacts='s3://...' for artifacts in object storage"
            )
        artifacts = artifacts if artifacts is not None else os.environ.get(ARTIFACTS_ENV)
        if not artifacts:
            raise ConfigError(
                f"zoo catalog {value!r} is a database URL: say where the weights go with "
                f"artifacts=URL (--artifacts URL, or ${ARTIFACTS_ENV}), e.g. 's3://bucket/zoo'"
            )
        return value, os.fspath(artifacts)
    folder = Path(value).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"zoo location {value!r} is a file: give a folder or a database URL")
    artifacts = os.fspath(artifacts) if artifacts is not None else str(folder / "artifacts")
    return f"sqlite:///{folder / 'catalog.sqlite'}", artifacts


class Zoo:
    """A versioned registry of trained property models.

    Parameters
    ----------
    catalog : str, optional
        A folder, or a ``sqlite:///`` / ``postgresql+psycopg://`` URL (then
        ``artifacts`` is required). Default: ``$XENONSCALE_ZOO`` else
        ``~/.xenonscale/zoo``.
    artifacts : str, optional
        Folder or fsspec URL for the weights, cards and files.
    storage_options : dict, optional
        fsspec options for ``artifacts`` (and for archive URLs in export/import).
    limits : ZooLimits, optional
        What an imported archive and a card's model may ask for (archive bytes,
        parameters, widths; :mod:`xenonscale.zoo.limits`). Checked on import
        before anything is decompressed or allocated, and on load before the
        network is built. Raise them only for archives and catalogs you trust.

    Notes
    -----
    Thread-safe. Every catalog change is one transaction (see
    :mod:`xenonscale.zoo.catalog`). Registration reserves a version, writes the
    artifacts, then lists the version; if writing fails, nothing is listed and
    the number is not reused. Loading and exporting check the weights and files
    against the sha256 recorded at registration (:class:`ZooIntegrityError`).
    Unknown names or versions raise :class:`~xenonscale.errors.ModelNotFoundError`.
    """

    def __init__(
        self,
        catalog: str | os.PathLike | None = None,
        *,
        artifacts: str | os.PathLike | None = None,
        storage_options: dict | None = None,
        limits: ZooLimits | None = None,
    ):
        if limits is not None and not isinstance(limits, ZooLimits):
            raise ConfigError(
                f"limits={limits!r}: give xenonscale.zoo.ZooLimits(...), e.g. "
                "ZooLimits(max_bytes=8 << 30)"
            )
        catalog_url, artifacts_url = resolve_location(catalog, artifacts)
        self.limits = limits or ZooLimits()
        self.storage_options = dict(storage_options or {})
        self.artifacts = ArtifactStore(artifacts_url, self.storage_options)
        self.catalog = Catalog(catalog_url)

    def __repr__(self) -> str:
        return f"Zoo(catalog={self.catalog!r}, artifacts={self.artifacts.root!r})"

    def __enter__(self) -> Zoo:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the catalog's database connections."""
        self.catalog.close()

    # -- writing --------------------------------------------------------------------

    def register(
        self,
        name: str,
        model,
        card: Mapping,
        *,
        files: Mapping[str, bytes | str | os.PathLike] | None = None,
        stage: str = "candidate",
    ) -> ModelRef:
        """Add ``model`` as the next version of ``name``; return its reference.

        Parameters
        ----------
        name : str
            ``[a-z0-9][a-z0-9._-]*``.
        model : PropertyModel
            Saved as safetensors (its ``state_dict``) + its ``config`` in the card.
        card : dict
            Needs ``featurizer`` (spec dict or None) and ``targets``; see
            :mod:`xenonscale.zoo.card` for the optional fields.
        files : dict, optional
            Extra files (plots): ``{"parity.png": bytes or path}``.
        stage : {"candidate", "production"}
            ``"production"`` promotes the new version (archiving the previous one).
        """
        check_name(name)
        if not is_property_model(model):
            raise ConfigError(
                f"model {type(model).__name__!r}: the zoo stores the networks of "
                "xenonscale.models.networks.BACKBONES (e.g. xenonscale.models.PropertyModel)"
            )
        body = validate_card(card, model.config)
        versions = body.pop("versions", None)
        extra = {filename: check_file(filename, data) for filename, data in (files or {}).items()}
        weights = weights_to_bytes(model.state_dict())
        return self._add(name, body, weights, extra, stage, versions=versions)

    def _add(
        self,
        name: str,
        body: dict,
        weights: bytes,
        files: dict[str, bytes],
        stage: str,
        versions: dict | None = None,
    ) -> ModelRef:
        if stage not in _REGISTER_STAGES:
            raise ConfigError(f"stage {stage!r}: register as one of {_REGISTER_STAGES}")
        sha = sha256_hex(weights)
        version = self.catalog.reserve(name)
        created = utc_now()
        card = {
            "name": name,
            "version": version,
            "created": created,
            **body,
            "weights_sha256": sha,
            "files": {filename: sha256_hex(data) for filename, data in sorted(files.items())},
            "sizes": _sizes(weights, files),
            "versions": package_versions(versions),
        }
        uri = None
        try:
            uri = self.artifacts.write(name, version, weights, card, files)
            self.catalog.complete(
                name, version, card=card, uri=uri, weights_sha256=sha, created=created
            )
        except Exception:
            if uri is not None:
                with contextlib.suppress(Exception):
                    self.artifacts.remove(uri)
            with contextlib.suppress(Exception):
                self.catalog.discard(name, version)
            raise
        ref = ModelRef(name, version)
        if stage == "production":
            self.catalog.promote(name, version)
        return ref

    def promote(self, ref: str | ModelRef) -> ModelRef:
        """Make ``name@version`` the production version; the previous one becomes archived."""
        name, version = _explicit(ref, "promote")
        self.catalog.promote(name, version)
        return ModelRef(name, version)

    def remove(self, ref: str | ModelRef, *, force: bool = False) -> None:
        """Delete ``name@version`` (catalog row, then artifacts); production needs ``force``."""
        name, version = _explicit(ref, "remove")
        entry = self.catalog.delete(name, version, force=force)
        self.artifacts.remove(entry.uri)

    def import_(
        self, path: str | os.PathLike, name: str | None = None, *, stage: str = "candidate"
    ) -> ModelRef:
        """Register an exported archive as the next version of ``name`` (default: its own).

        The card keeps ``imported_from`` (``"name@version"`` it was exported as)
        and the package ``versions`` that produced the weights; the weights keep
        their bytes (and sha256).

        The archive is checked against :attr:`limits` before anything in it is
        decompressed, and its card's model before the network is allocated
        (see :mod:`xenonscale.zoo.archive`): a hostile or oversized archive is
        one :class:`~xenonscale.errors.ZooError` line.
        """
        where = f"archive {os.fspath(path)!r}"
        card, weights, files = read_archive(path, self._options_for(path), limits=self.limits)
        target = check_name(name if name is not None else card.get("name"))
        check_model_config(card.get("model"), self.limits, where=where)
        model = build_model(card["model"])
        try:
            model.load_state_dict(weights_from_bytes(weights), strict=True)
        except RuntimeError as exc:
            raise ZooIntegrityError(
                f"archive {os.fspath(path)!r}: the weights do not fit the card's model config "
                f"({exc}); export it again"
            ) from exc
        body = validate_card(card, model.config)
        versions = body.pop("versions", None)
        body["imported_from"] = f"{card.get('name')}@{card.get('version')}"
        return self._add(target, body, weights, files, stage, versions=versions)

    # -- reading --------------------------------------------------------------------

    def list(self, name: str | None = None) -> pd.DataFrame:
        """One row per version: name, version, stage, created, targets, numeric metrics."""
        if name is not None:
            check_name(name)
        rows = [
            {
                "name": e.name,
                "version": e.version,
                "stage": e.stage,
                "created": e.created,
                "targets": ",".join(e.card.get("targets", [])),
                **key_metrics(e.card),
            }
            for e in self.catalog.entries(name)
        ]
        columns = ["name", "version", "stage", "created", "targets"]
        return pd.DataFrame(
            rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r]))
        )

    def show(self, ref: str | ModelRef) -> dict:
        """The card of ``name@version`` (or of the version ``"name"`` resolves to)."""
        return dict(self._entry(ref).card)

    def latest(self, name: str) -> ModelRef:
        """The highest listed version of ``name``."""
        return self.catalog.latest(check_name(name)).ref

    def production(self, name: str) -> ModelRef | None:
        """The production version of ``name``, or None if none is promoted."""
        entry = self.catalog.production(check_name(name))
        return None if entry is None else entry.ref

    def load(self, ref: str | ModelRef) -> ZooModel:
        """A :class:`ZooModel` (weights checked against their sha256, model in eval mode)."""
        entry = self._checked(ref)
        check_model_config(entry.card.get("model"), self.limits, where=str(entry.ref))
        model = build_model(entry.card["model"])
        try:
            model.load_state_dict(
                self.artifacts.read_weights(entry.uri, entry.weights_sha256), strict=True
            )
        except RuntimeError as exc:
            raise ZooIntegrityError(
                f"{entry.ref}: the weights at {entry.uri!r} do not fit the card's model "
                f"config ({exc}); remove the version and register it again"
            ) from exc
        listed = dict(entry.card.get("files") or {})
        # a partial of a module-level function, not a closure: a ZooModel pickles (Dask tasks)
        read_file = functools.partial(_read_listed_file, self.artifacts, entry.uri, listed)
        return ZooModel(entry.ref, entry.card, model.eval(), sorted(listed), read_file)

    def export(self, ref: str | ModelRef, path: str | os.PathLike) -> str:
        """Write one portable archive (``.zip`` or ``.tar.gz``) of a version; return its path.

        The archive's card is the catalog's; a card registered before the zoo
        recorded member ``sizes`` gets them added, so that an import can check
        every member's size before decompressing it.
        """
        entry = self._checked(ref)
        weights = self.artifacts.read_bytes(entry.uri, WEIGHTS, entry.weights_sha256)
        files = {
            filename: self.artifacts.read_bytes(entry.uri, filename, sha)
            for filename, sha in sorted((entry.card.get("files") or {}).items())
        }
        card = entry.card
        if "sizes" not in card:
            card = {**card, "sizes": _sizes(weights, files)}
        members = {CARD: _card_bytes(card), WEIGHTS: weights, **files}
        return write_archive(path, members, self._options_for(path))

    def _entry(self, ref: str | ModelRef) -> Entry:
        name, version = parse_ref(ref)
        return self.catalog.get(name, version)

    def _checked(self, ref: str | ModelRef) -> Entry:
        """The catalog entry, after checking the artifacts' card.json equals the catalog's."""
        entry = self._entry(ref)
        if self.artifacts.read_card(entry.uri) != entry.card:
            raise ZooIntegrityError(
                f"{entry.uri}/{CARD} differs from the card the catalog recorded for {entry.ref}: "
                "the file was modified; remove the version and register or import it again"
            )
        return entry

    def _options_for(self, path: str | os.PathLike) -> dict | None:
        return self.storage_options if "://" in os.fspath(path) else None


def load(name: str | ModelRef, zoo: Zoo | str | os.PathLike | None = None) -> ZooModel:
    """Load ``"name"`` or ``"name@version"`` from ``zoo`` (a :class:`Zoo` or location).

    Examples
    --------
    >>> import xenonscale.zoo
    >>> xenonscale.zoo.load("steels-yield@1").predict(["Fe2O3"])  # doctest: +SKIP
    """
    if isinstance(zoo, Zoo):
        return zoo.load(name)
    with Zoo(zoo) as opened:
        return opened.load(name)


def _explicit(ref: str | ModelRef, action: str) -> tuple[str, int]:
    name, version = parse_ref(ref)
    if version is None:
        raise ConfigError(f"{action} {ref!r}: name the version explicitly, e.g. '{name}@1'")
    return name, version


def _sizes(weights: bytes, files: Mapping[str, bytes]) -> dict[str, int]:
    """The card's ``sizes``: bytes of the weights and of every extra file."""
    return {WEIGHTS: len(weights), **{name: len(data) for name, data in sorted(files.items())}}


def _card_bytes(card: dict) -> bytes:
    return json.dumps(card, indent=1).encode()


def _read_listed_file(artifacts: ArtifactStore, uri: str, listed: dict, filename: str) -> bytes:
    """One file of a version's folder, checked against the sha256 its card lists."""
    return artifacts.read_bytes(uri, filename, listed[filename])
