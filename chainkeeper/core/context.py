"""The one object that does set-up: settings, metadata store and artefact store.

Entry points (CLI commands, the API app factory, a worker) build a ``Context`` once and
pass it to service functions; nothing connects to anything at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainkeeper.core.artifacts import ArtifactStore, open_artifact_store
from chainkeeper.core.db import Database, verify_schema
from chainkeeper.core.settings import Settings


@dataclass
class Context:
    settings: Settings
    db: Database
    artifacts: ArtifactStore

    @classmethod
    def open(cls, settings: Settings, *, check_schema: bool = True) -> Context:
        """Connect to the stores named by ``settings``.

        Args:
            check_schema: refuse a database that is not migrated to this code's head.

        Raises:
            ConfigError, StoreError, SchemaError: with the next step to take.
        """
        settings.home.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if check_schema:
            try:
                verify_schema(db)
            except BaseException:
                db.dispose()
                raise
        return cls(settings=settings, db=db, artifacts=open_artifact_store(settings.resolved_artifacts_url))

    def close(self) -> None:
        self.db.dispose()
