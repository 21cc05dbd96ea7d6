"""Chainkeeper annotation stage: label schemas, queues, agreement, adjudication, pre-labels.

The public names are re-exported here and loaded on first use (PEP 562): the schema
imports ``chainkeeper.annotation.tables`` through this package, which must not pull in
pyarrow or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SchemaKind": "schemas", "LabelDef": "schemas", "LabelSchema": "schemas", "define_schema": "schemas",
    "get_schema": "schemas", "list_schemas": "schemas", "check_value": "schemas",
    "Project": "projects", "QueueOrder": "projects", "create_project": "projects", "get_project": "projects",
    "list_projects": "projects", "assign_batches": "projects", "change_schema": "projects",
    "Task": "tasks", "Answer": "tasks", "annotator_queue": "tasks", "get_task": "tasks",
    "save_annotation": "tasks", "list_answers": "tasks",
    "Dispute": "adjudication", "Decision": "adjudication", "adjudication_queue": "adjudication",
    "adjudicate_item": "adjudication", "resolve_disputes": "adjudication", "list_decisions": "adjudication",
    "project_figures": "figures",
    "prelabel_project": "prelabel", "submit_prelabel": "prelabel",
    "export_project": "export",
    "bio_tags": "spans",
    "row_lineage": "trace", "run_row_lineage": "trace",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chainkeeper.annotation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chainkeeper.annotation.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
