"""The one object that does set-up: settings, metadata store, artefact store and wiring.

Entry points (CLI commands, the API app factory, a worker) build a ``Context`` once and
pass it to service functions; nothing connects to anything at import time. Entry points
open it through ``chainkeeper.chain.open_context``, which adds the chain's wiring (job
handlers, gates, hooks); ``Context.open`` alone gives a context with none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

# Every stage's tables are registered on the ORM's metadata here, once, before any
# session exists: a foreign key to another stage's table resolves whatever the caller
# imported first (a CLI command that touched only annotation used to fail on
# 'dataset_versions').
from chainkeeper.core import schema as _schema  # noqa: F401
from chainkeeper.core.artifacts import ArtifactStore, open_artifact_store
from chainkeeper.core.db import Database, verify_schema
from chainkeeper.core.file_modes import keep_files_private
from chainkeeper.core.settings import Settings
from chainkeeper.core.wiring import Wiring

T = TypeVar("T")


@dataclass
class Context:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    wiring: Wiring = field(default_factory=Wiring)

    def state(self, name: str, factory: Callable[[], T]) -> T:
        """The object a layer keeps for this context under ``name``, made by ``factory`` once.

        Caches, pools and rate-limit buckets live here rather than in module globals, so
        two contexts (two stores, two test cases) never share them and closing the
        context drops them. Each object bounds its own size. Kept on the store
        (``Database.state``), so services that take only ``db`` reach the same objects.
        """
        return self.db.state(name, factory)

    @classmethod
    def open(cls, settings: Settings, *, check_schema: bool = True, wiring: Wiring | None = None) -> Context:
        """Connect to the stores named by ``settings``.

        Args:
            check_schema: refuse a database that is not migrated to this code's head.
            wiring: the functions the chain's layers registered (``chain.build_wiring``).

        Files this process creates from here on are owner-only unless
        ``settings.private_files`` is false (``core.file_modes``: the umask is process-wide).

        Raises:
            ConfigError, StoreError, SchemaError: with the next step to take.
        """
        keep_files_private(settings)
        db = Database(settings.resolved_database_url)
        if check_schema:
            try:
                verify_schema(db)
            except BaseException:
                db.dispose()
                raise
        return cls(settings=settings, db=db, artifacts=open_artifact_store(settings.resolved_artifacts_url),
                   wiring=wiring or Wiring())

    def close(self) -> None:
        self.db.dispose()
