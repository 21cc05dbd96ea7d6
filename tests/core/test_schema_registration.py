"""Every stage's tables are registered when a context module loads, whatever the caller
imported first (issue 14, items 1 and 11: 'annotate prelabel' and 'train cancel' failed
with NoReferencedTableError in a fresh CLI process, because only the tables its own
imports had touched were known)."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sqlalchemy as sa
import {first}
import chainkeeper.core.context
from chainkeeper.core.db import Base
sa.orm.configure_mappers()
tables = [t.name for t in Base.metadata.sorted_tables]  # resolves every foreign key
assert {{"dataset_versions", "annotation_projects", "runs", "model_versions", "deployments", "jobs"}} <= set(tables)
print(len(tables))
"""


@pytest.mark.parametrize("first", ["chainkeeper.annotation.tables", "chainkeeper.training.tables",
                                   "chainkeeper.monitoring.tables", "chainkeeper.core.jobs"])
def test_foreign_keys_resolve_in_a_fresh_interpreter(first: str) -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(first=first)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) >= 20
