"""The zoo catalog: which model versions exist, their stage and card (SQLAlchemy Core).

One code path for SQLite (the default, a file next to the artifacts) and
PostgreSQL (``postgresql+psycopg://user@host/db``, shared by a cluster). Three
tables, prefixed so they can share a database with other tools (Optuna)::

    xenonscale_zoo_names   name (PK), last_version, created
    xenonscale_zoo_models  (name, version) PK, created, stage, promoted_at,
                           weights_sha256, uri, card (JSON text)
    xenonscale_zoo_meta    key (PK), value          schema_version = 1

Times are UTC ISO-8601 text (``2025-01-31T12:00:00+00:00``), identical on both
backends. ``stage`` is ``pending`` (reserved, artifacts being written; never
listed), ``candidate``, ``production`` or ``archived``; a partial unique
index allows at most one ``production`` row per name.

Guarantees
----------
- :meth:`Catalog.reserve` is atomic: concurrent callers (threads, processes,
  machines on one PostgreSQL) get distinct versions 1, 2, 3, ... per name.
  It increments ``last_version`` under a row lock (``UPDATE ... RETURNING``)
  and inserts the version row; the primary key (name, version) is the final
  guard, and a conflicting transaction is retried. Version numbers are never
  reused, even after :meth:`Catalog.delete` or a failed registration.
- :meth:`Catalog.promote` is one transaction: the previous production version
  becomes ``archived`` and the new one ``production``, or nothing changes.
- Every method is one transaction; a :class:`Catalog` is thread-safe (the
  engine pools connections). On SQLite, write transactions start with
  ``BEGIN IMMEDIATE`` and wait up to 30 s for the file lock; reads do not lock.
- Raises :class:`~xenonscale.errors.ModelNotFoundError` for an unknown name or
  version, :class:`~xenonscale.errors.ZooError` when a transaction still
  conflicts after retries or the schema is from another xenonscale version,
  :class:`~xenonscale.errors.ConfigError` for a URL that is not a database URL.

Examples
--------
>>> from xenonscale.zoo.catalog import Catalog
>>> catalog = Catalog("sqlite://")  # in memory
>>> catalog.reserve("demo"), catalog.reserve("demo")
(1, 2)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    CheckConstraint,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.pool import StaticPool

from xenonscale.errors import ConfigError, ModelNotFoundError, ZooError
from xenonscale.zoo.refs import ModelRef, check_name

__all__ = ["SCHEMA_VERSION", "STAGES", "Catalog", "Entry", "utc_now"]

SCHEMA_VERSION = "1"
#: Stages a listed version can be in.
STAGES = ("candidate", "production", "archived")
PENDING = "pending"
_RETRIES = 30
_MISSING = object()
_READ = "xenonscale_read_only"

metadata = MetaData()
names_table = Table(
    "xenonscale_zoo_names",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("last_version", Integer, nullable=False),
    Column("created", String(40), nullable=False),
)
models_table = Table(
    "xenonscale_zoo_models",
    metadata,
    Column("name", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created", String(40), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("promoted_at", String(40), nullable=True),
    Column("weights_sha256", String(64), nullable=True),
    Column("uri", Text, nullable=True),
    Column("card", Text, nullable=True),
    PrimaryKeyConstraint("name", "version", name="xenonscale_zoo_models_pk"),
    CheckConstraint(
        "stage IN ('pending', 'candidate', 'production', 'archived')",
        name="xenonscale_zoo_models_stage",
    ),
)
Index(
    "xenonscale_zoo_one_production",
    models_table.c.name,
    unique=True,
    sqlite_where=models_table.c.stage == "production",
    postgresql_where=models_table.c.stage == "production",
)
meta_table = Table(
    "xenonscale_zoo_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def utc_now() -> str:
    """The current UTC time as ISO-8601 text (seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Entry:
    """One listed version (a catalog row)."""

    name: str
    version: int
    stage: str
    created: str
    promoted_at: str | None
    weights_sha256: str
    uri: str
    card: dict

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.name, self.version)


class Catalog:
    """Model versions in a SQL database (see the module docstring for guarantees).

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path/catalog.sqlite`` or
        ``postgresql+psycopg://user:password@host:5432/db``. Tables are created
        if missing.
    """

    def __init__(self, url: str):
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(
                f"catalog {url!r} is not a database URL: use 'sqlite:///path/catalog.sqlite' "
                "or 'postgresql+psycopg://user@host/db'"
            ) from exc
        self.url = url
        self.backend = parsed.get_backend_name()
        if self.backend == "sqlite":
            database = parsed.database or ""
            options: dict = {"connect_args": {"timeout": 30, "check_same_thread": False}}
            if database in ("", ":memory:"):
                options["poolclass"] = StaticPool
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, **options)
            _sqlite_transactions(self.engine)
        elif self.backend == "postgresql":
            try:
                self.engine = create_engine(url, pool_pre_ping=True)
            except ImportError as exc:
                raise ConfigError(
                    f"catalog {url!r} needs a PostgreSQL driver ({exc}): "
                    "pip install 'psycopg[binary]' and use 'postgresql+psycopg://...'"
                ) from exc
        else:
            raise ConfigError(
                f"catalog {url!r}: backend {self.backend!r} is not supported; use SQLite "
                "('sqlite:///path') or PostgreSQL ('postgresql+psycopg://...')"
            )
        # reads start a deferred transaction on SQLite (no write lock)
        self._reader = self.engine.execution_options(**{_READ: True})
        self._create_schema()

    def __repr__(self) -> str:
        return f"Catalog({make_url(self.url).render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # -- schema ---------------------------------------------------------------------

    def _create_schema(self) -> None:
        try:
            try:
                metadata.create_all(self.engine, checkfirst=True)
            except (IntegrityError, ProgrammingError):  # created by another process just now
                metadata.create_all(self.engine, checkfirst=True)
        except OperationalError as exc:
            raise ZooError(
                f"catalog {self!r} cannot be opened ({exc.orig}): check the URL, that the "
                "database server is running and reachable, and the credentials"
            ) from exc

        def check(conn):
            found = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
            if found is None:
                conn.execute(insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
            elif found != SCHEMA_VERSION:
                raise ZooError(
                    f"catalog {self!r} has schema version {found!r}; this xenonscale reads "
                    f"{SCHEMA_VERSION!r}: upgrade xenonscale or use another catalog"
                )

        self._transaction(check)

    def _transaction(self, work):
        """Run ``work(conn)`` in one transaction, retrying conflicts and lock timeouts."""
        for attempt in range(_RETRIES):
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except (IntegrityError, OperationalError) as exc:
                if attempt == _RETRIES - 1 or not _retryable(exc):
                    raise ZooError(
                        f"catalog {self!r}: transaction failed ({exc.orig!r}); "
                        "retry, or check that the database is reachable and writable"
                    ) from exc
                time.sleep(random.uniform(0.005, 0.05) * (1 + attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # -- writing --------------------------------------------------------------------

    def reserve(self, name: str) -> int:
        """Atomically assign the next version of ``name`` (a ``pending`` row); return it."""
        check_name(name)
        now = utc_now()

        def work(conn) -> int:
            version = conn.execute(
                update(names_table)
                .where(names_table.c.name == name)
                .values(last_version=names_table.c.last_version + 1)
                .returning(names_table.c.last_version)
            ).scalar_one_or_none()
            if version is None:  # first version: a concurrent first insert conflicts → retry
                version = 1
                conn.execute(insert(names_table).values(name=name, last_version=1, created=now))
            conn.execute(
                insert(models_table).values(name=name, version=version, created=now, stage=PENDING)
            )
            return version

        return self._transaction(work)

    def complete(
        self,
        name: str,
        version: int,
        *,
        card: dict,
        uri: str,
        weights_sha256: str,
        created: str,
        stage: str = "candidate",
    ) -> Entry:
        """Turn a reserved ``pending`` row into a listed version."""
        if stage not in STAGES:
            raise ConfigError(f"stage {stage!r}: use one of {', '.join(STAGES)}")
        values = dict(
            card=json.dumps(card),
            uri=uri,
            weights_sha256=weights_sha256,
            created=created,
            stage=stage,
            promoted_at=created if stage == "production" else None,
        )

        def work(conn) -> None:
            done = conn.execute(
                update(models_table)
                .where(_key(name, version), models_table.c.stage == PENDING)
                .values(**values)
            ).rowcount
            if done != 1:
                raise ZooError(f"{name}@{version} is not a reserved version: reserve() it first")

        self._transaction(work)
        return self.get(name, version)

    def discard(self, name: str, version: int) -> None:
        """Drop a ``pending`` row (a registration that failed); its number stays used."""
        self._transaction(
            lambda conn: conn.execute(
                delete(models_table).where(_key(name, version), models_table.c.stage == PENDING)
            )
        )

    def promote(self, name: str, version: int) -> ModelRef | None:
        """Make ``name@version`` production; return the version it replaced (now archived)."""

        def work(conn) -> ModelRef | None:
            # lock the name row: concurrent promotions of one name run one after the other
            locked = conn.execute(
                select(names_table.c.name).where(names_table.c.name == name).with_for_update()
            ).scalar_one_or_none()
            target = conn.execute(
                select(models_table.c.stage).where(
                    _key(name, version), models_table.c.stage != PENDING
                )
            ).scalar_one_or_none()
            if locked is None or target is None:
                return _MISSING
            if target == "production":
                return None
            previous = conn.execute(
                select(models_table.c.version).where(
                    models_table.c.name == name, models_table.c.stage == "production"
                )
            ).scalar_one_or_none()
            conn.execute(
                update(models_table)
                .where(models_table.c.name == name, models_table.c.stage == "production")
                .values(stage="archived")
            )
            conn.execute(
                update(models_table)
                .where(_key(name, version))
                .values(stage="production", promoted_at=utc_now())
            )
            return None if previous is None else ModelRef(name, previous)

        replaced = self._transaction(work)
        if replaced is _MISSING:
            raise ModelNotFoundError(_not_found(self, name, version))
        return replaced

    def delete(self, name: str, version: int, *, force: bool = False) -> Entry:
        """Delete a listed version's row and return it; production needs ``force=True``."""

        def work(conn) -> Entry:
            row = conn.execute(
                select(models_table).where(_key(name, version), models_table.c.stage != PENDING)
            ).one_or_none()
            if row is None:
                return _MISSING
            if row.stage == "production" and not force:
                raise ZooError(
                    f"{name}@{version} is the production version: promote another version "
                    "first, or pass force=True (--force) to remove it anyway"
                )
            conn.execute(delete(models_table).where(_key(name, version)))
            return _entry(row)

        deleted = self._transaction(work)
        if deleted is _MISSING:
            raise ModelNotFoundError(_not_found(self, name, version))
        return deleted

    # -- reading --------------------------------------------------------------------

    def get(self, name: str, version: int | None = None) -> Entry:
        """``name@version``; with ``version=None`` the production version, else the latest."""
        query = select(models_table).where(
            models_table.c.name == name, models_table.c.stage != PENDING
        )
        if version is not None:
            query = query.where(models_table.c.version == version)
        query = query.order_by(
            case((models_table.c.stage == "production", 0), else_=1),
            models_table.c.version.desc(),
        ).limit(1)
        with self._reader.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise ModelNotFoundError(_not_found(self, name, version))
        return _entry(row)

    def latest(self, name: str) -> Entry:
        """The highest listed version of ``name`` (whatever its stage)."""
        with self._reader.connect() as conn:
            version = conn.execute(
                select(models_table.c.version)
                .where(models_table.c.name == name, models_table.c.stage != PENDING)
                .order_by(models_table.c.version.desc())
                .limit(1)
            ).scalar_one_or_none()
        if version is None:
            raise ModelNotFoundError(_not_found(self, name, None))
        return self.get(name, version)

    def production(self, name: str) -> Entry | None:
        """The production version of ``name``, or None if none is promoted."""
        with self._reader.connect() as conn:
            row = conn.execute(
                select(models_table).where(
                    models_table.c.name == name, models_table.c.stage == "production"
                )
            ).one_or_none()
        return None if row is None else _entry(row)

    def entries(self, name: str | None = None) -> list[Entry]:
        """Listed versions (all names, or one), ordered by name then version."""
        query = select(models_table).where(models_table.c.stage != PENDING)
        if name is not None:
            query = query.where(models_table.c.name == name)
        query = query.order_by(models_table.c.name, models_table.c.version)
        with self._reader.connect() as conn:
            return [_entry(row) for row in conn.execute(query)]

    def names(self) -> list[str]:
        """Names with at least one listed version."""
        with self._reader.connect() as conn:
            return list(
                conn.execute(
                    select(models_table.c.name)
                    .where(models_table.c.stage != PENDING)
                    .distinct()
                    .order_by(models_table.c.name)
                ).scalars()
            )


def _key(name: str, version: int):
    return (models_table.c.name == name) & (models_table.c.version == version)


def _entry(row) -> Entry:
    return Entry(
        name=row.name,
        version=row.version,
        stage=row.stage,
        created=row.created,
        promoted_at=row.promoted_at,
        weights_sha256=row.weights_sha256,
        uri=row.uri,
        card=json.loads(row.card),
    )


def _not_found(catalog: Catalog, name: str, version: int | None) -> str:
    known = catalog.entries(name)
    if version is None or not known:
        listed = ", ".join(catalog.names()[:20]) or "none"
        return f"no model named {name!r} in the zoo (names: {listed}); see `xenonscale zoo list`"
    versions = ", ".join(str(e.version) for e in known)
    return f"{name}@{version} is not in the zoo; versions of {name!r}: {versions}"


def _retryable(exc: DBAPIError) -> bool:
    """Conflicts worth retrying: unique violations, SQLite locks, PG serialization/deadlock."""
    if isinstance(exc, IntegrityError):
        return True
    text = str(exc.orig).lower()
    code = getattr(exc.orig, "sqlstate", None)
    return "locked" in text or "busy" in text or code in ("40001", "40P01")


def _sqlite_transactions(engine) -> None:
    """Make pysqlite emit ``BEGIN IMMEDIATE``: a transaction takes the write lock up front."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    @event.listens_for(engine, "begin")
    def _begin(conn):
        read_only = conn.get_execution_options().get(_READ, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
