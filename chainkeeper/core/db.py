"""The metadata store: one engine, one session context manager, the schema check.

One URL picks the backend. SQLite (the embedded default) runs in WAL mode with foreign
keys on and a busy timeout, so a worker and the server can share the file; PostgreSQL
is the same code behind a ``postgresql+psycopg://`` URL. Driver errors never reach a
user: ``session()`` maps them to ``StoreError`` with the next step.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from chainkeeper.core.errors import ConfigError, DiskFull, InvalidInput, SchemaError, StoreError
from chainkeeper.core.settings import mask_url
from chainkeeper.core.storage_errors import disk_full, free_bytes, permission_denied

T = TypeVar("T")

# Backends by URL scheme (the part before '+driver').
SUPPORTED_SCHEMES = {"sqlite": "embedded SQLite file", "postgresql": "PostgreSQL via psycopg 3"}
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The largest integer a column of the store holds (64-bit signed, SQLite and PostgreSQL BIGINT).
MAX_INTEGER = 2**63 - 1


class Base(DeclarativeBase):
    """Declarative base of every ORM class (``Sql*``) in every stage."""

    # Named constraints, so later migrations can drop or alter them on every backend.
    metadata = sa.MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })
    type_annotation_map = {dict[str, Any]: sa.JSON, list[Any]: sa.JSON}


def utcnow() -> datetime:
    """Timezone-aware UTC now; the store keeps every time in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp that is always stored and returned as aware UTC.

    SQLite has no time zones and returns naive datetimes; PostgreSQL returns aware
    ones. Normalising here keeps comparisons and arithmetic the same on both.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use chainkeeper.core.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def create_db_engine(url: str) -> sa.Engine:
    """Create the engine for a store URL.

    Raises:
        ConfigError: the URL is malformed or names an unsupported backend.
    """
    try:
        parsed = sa.engine.make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            f"Not a database URL: {url!r}.",
            hint="Use sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/db.",
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_SCHEMES:
        valid = ", ".join(f"{k} ({v})" for k, v in SUPPORTED_SCHEMES.items())
        raise ConfigError(f"Unsupported database scheme {backend!r} in {mask_url(url)}.",
                          hint=f"Valid schemes: {valid}.")

    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Owner-only, as core.file_modes makes every folder of the store.
            Path(parsed.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        _configure_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    except ModuleNotFoundError:
        raise ConfigError(
            "PostgreSQL support is not installed.", hint="Run: pip install 'chainkeeper[postgres]'"
        ) from None


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit transactions defeat
        # BEGIN IMMEDIATE and SAVEPOINT); see _on_begin.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A write transaction that must not interleave with another writer (claiming a
        # job) takes the database's single write lock up front.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """The metadata store: an engine plus a session factory.

    Stage modules take a ``Database`` and open sessions with ``db.session()``; ORM
    objects never leave those functions.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        # A session knows its store, so a commit hook can reach the store's state.
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info={"database": self})
        self._state: dict[str, Any] = {}
        self._state_lock = threading.Lock()

    def state(self, name: str, factory: Callable[[], T]) -> T:
        """The object a layer keeps for this store under ``name``, made by ``factory`` once.

        Caches, pools and rate-limit buckets of a store live here (reached as
        ``ctx.state`` from a context), never in module globals: two stores — two test
        cases, two contexts — never share them, and ``dispose`` drops them (calling
        each one's ``close()`` if it has one). Each object bounds its own size.
        """
        with self._state_lock:
            if name not in self._state:
                self._state[name] = factory()
            return self._state[name]  # type: ignore[no-any-return]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn driver errors into ``StoreError`` with the next step to take."""
        try:
            yield
        except exc.OperationalError as err:
            raise self._operational_error(err) from None
        except exc.IntegrityError as err:
            raise StoreError(f"The metadata store refused a change: {_first_line(err)}.") from None
        except (OverflowError, exc.DataError) as err:
            # An integer beyond 64 bits (an id like 99999999999999999999 in a URL or a
            # command): SQLite's driver cannot bind it, PostgreSQL says "integer out of
            # range". Any other value the store cannot hold is bad input as well.
            if isinstance(err, OverflowError) or "out of range" in str(err.orig):
                raise InvalidInput("A number in the request is out of range: the store holds integers up to "
                                   f"{MAX_INTEGER:,}.", hint="Check the id or number you gave.") from None
            raise InvalidInput(f"A value in the request does not fit the store: {_first_line(err)}.",
                               hint="Check the values you gave against the API's limits (/docs).") from None

    def _operational_error(self, err: exc.OperationalError) -> StoreError:
        """Name what stopped the store: a full disk, a refused write, a lock held too long,
        or (only for a database server) a server that does not answer."""
        said, where = _first_line(err), mask_url(self.url)
        if self.dialect == "sqlite":
            return _sqlite_error(err, said, where, Path(sa.engine.make_url(self.url).database or "."))
        code = getattr(err.orig, "sqlstate", None) or ""
        if code == "53100":  # disk_full
            return DiskFull(f"The disk of the database server at {where} is full: {said}.",
                            hint="Free space on the PostgreSQL server's data disk (or grow it).")
        if code.startswith(("53", "40")):  # out of resources; a deadlock or serialisation failure
            return StoreError(f"The database server at {where} could not complete the request: {said}.",
                              hint="Try again shortly; if it persists, see the PostgreSQL server's log.",
                              transient=True)
        return StoreError(f"The metadata store at {where} cannot be used: {said}.",
                          hint="Check that the database server is running and the URL (CHAINKEEPER_DATABASE_URL) "
                          "is right.", transient=True)

    @contextlib.contextmanager
    def session(self, *, immediate: bool = True, readonly: bool = False) -> Iterator[Session]:
        """A session that commits on success, rolls back on error, maps driver errors.

        On SQLite a session takes the database's write lock when it begins (``BEGIN
        IMMEDIATE``) unless it is ``readonly``: a transaction that reads and then writes
        would otherwise fail at once with "database is locked" when another writer got
        there first (SQLite cannot upgrade its read snapshot; the busy timeout does not
        apply). Writers therefore queue on the busy timeout, and WAL readers never wait.
        On PostgreSQL row locks do this job and both flags change nothing.

        Raises:
            StoreError: the database cannot be reached or refused the statement.
        """
        with self.translate_errors():
            if self.dialect == "sqlite" and immediate and not readonly:
                conn = self.engine.connect().execution_options(sqlite_immediate=True)
                sess = Session(bind=conn, expire_on_commit=False, info={"database": self})
            else:
                conn = None
                sess = self._sessions()
            try:
                yield sess
                if readonly:
                    sess.rollback()
                else:
                    sess.commit()
            except BaseException:
                sess.rollback()
                raise
            finally:
                sess.close()
                if conn is not None:
                    conn.close()

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers a trivial query."""
        with self.session() as sess:
            sess.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        with self._state_lock:
            states, self._state = list(self._state.values()), {}
        for value in states:
            closer = getattr(value, "close", None)
            if callable(closer):
                closer()
        self.engine.dispose()


# Below this much free space a SQLite "disk I/O error" is taken for a full disk.
_NEARLY_FULL_BYTES = 4 << 20


def _sqlite_error(err: exc.OperationalError, said: str, where: str, path: Path) -> StoreError:
    """SQLite's error named by its code (``sqlite_errorname``; the text where it is missing).

    SQLite has no server: "check that the server is running" would send an operator the
    wrong way, so each case names the file and what to do about it.
    """
    name = str(getattr(err.orig, "sqlite_errorname", "") or "")
    setting = "CHAINKEEPER_DATABASE_URL"
    if name == "SQLITE_FULL" or "disk is full" in said:
        return disk_full(path, "the metadata store", setting=setting, detail=said)
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in said:
        # SQLite reports most failed writes as an I/O error: with no space left it is a full disk.
        free = free_bytes(path.parent)
        if free is not None and free < _NEARLY_FULL_BYTES:
            return disk_full(path, "the metadata store", setting=setting, detail=said)
        return StoreError(f"The metadata store at {where} could not read or write its file: {said}.",
                          hint=f"Check the disk holding {path.parent}: free space ('df -h'), device errors "
                          f"('dmesg'), and that nothing removed or truncated {path.name} while in use.",
                          transient=True)
    if name.startswith("SQLITE_READONLY") or "readonly database" in said:
        return permission_denied(path, "the metadata store", setting=setting, detail=said)
    if name.startswith("SQLITE_BUSY") or "database is locked" in said:
        return StoreError(f"The metadata store at {where} is locked: another process held its write lock for "
                          f"more than {SQLITE_BUSY_TIMEOUT_MS // 1000} s.",
                          hint="Try again; if it persists, look for a process holding a long write on the file "
                          "(a stuck command, a backup tool) or move to PostgreSQL.", transient=True)
    return StoreError(f"The metadata store at {where} cannot be used: {said}.",
                      hint=f"Check that {path.parent} exists and the user running Chainkeeper (uid {os.getuid()}) "
                      "may read and write it, and that the URL (CHAINKEEPER_DATABASE_URL) is right.")


def _first_line(err: exc.DBAPIError) -> str:
    return str(err.orig).strip().splitlines()[0] if err.orig else str(err).splitlines()[0]


def schema_head() -> str:
    """The Alembic revision this code expects."""
    from chainkeeper.core.migrations import head_revision

    return head_revision()


def verify_schema(db: Database) -> None:
    """Refuse a database whose schema is not the one this code was written for.

    Raises:
        SchemaError: the database was never initialised, or is at another revision.
    """
    from chainkeeper.core.migrations import current_revision

    current = current_revision(db)
    head = schema_head()
    if current == head:
        return
    if current is None:
        raise SchemaError(
            f"The metadata store at {mask_url(db.url)} has not been initialised.",
            hint="Run 'chainkeeper init' first.",
        )
    raise SchemaError(
        f"The metadata store is at schema revision {current}; this version of Chainkeeper needs {head}.",
        hint="Take a backup of your database, then run 'chainkeeper init' to upgrade it.",
    )
