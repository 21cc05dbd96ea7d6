"""Chainkeeper annotation stage: label schemas, queues, agreement, adjudication, pre-labels, export.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). The schema imports ``chainkeeper.annotation.tables``
through this package, which must not pull in pyarrow or torch.

- schemas: ``define_schema``, ``find_schemas`` (shared definitions: a global
  ``annotation.manage``), ``get_schema``, ``check_value``;
- projects: ``create_project``, ``find_projects``, ``show_project``, ``assign_batches``,
  ``change_schema``; an annotation project belongs to its dataset version's project;
- queues: ``annotator_queue``, ``get_task``, ``save_annotation``, ``list_answers``;
- adjudication: ``adjudication_queue``, ``adjudicate_item``, ``resolve_disputes``,
  ``list_decisions``; figures: ``project_figures``;
- pre-labels: ``prelabel_project``, ``submit_prelabel`` (job ``run_prelabel_job``), with the
  model from the ``PRELABEL_MODEL_HOOK`` the chain layer registers;
- export: ``export_project`` (through ``data.freeze_dataset_version``); ``row_lineage``.

Functions that take an ``actor`` decide themselves, in the project of the object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.annotation.adjudication import (
        Decision,
        Dispute,
        adjudicate_item,
        adjudication_queue,
        list_decisions,
        resolve_disputes,
    )
    from chainkeeper.annotation.export import export_project
    from chainkeeper.annotation.figures import project_figures
    from chainkeeper.annotation.hooks import PRELABEL_MODEL_HOOK
    from chainkeeper.annotation.prelabel import (
        PrelabelModel,
        attach_prelabels,
        prelabel_project,
        run_prelabel_job,
        submit_prelabel,
    )
    from chainkeeper.annotation.projects import (
        Project,
        ProjectState,
        QueueOrder,
        assign_batches,
        change_schema,
        create_project,
        find_projects,
        get_project,
        list_projects,
        project_of_annotation_project,
        show_project,
    )
    from chainkeeper.annotation.schemas import (
        LabelDef,
        LabelSchema,
        SchemaKind,
        check_value,
        define_schema,
        find_schemas,
        get_schema,
        list_schemas,
    )
    from chainkeeper.annotation.spans import bio_tags
    from chainkeeper.annotation.tasks import (
        Answer,
        AnswerStatus,
        Task,
        annotator_queue,
        get_task,
        list_answers,
        save_annotation,
    )
    from chainkeeper.annotation.trace import row_lineage

_EXPORTS = {
    "SchemaKind": "schemas", "LabelDef": "schemas", "LabelSchema": "schemas", "define_schema": "schemas",
    "find_schemas": "schemas", "get_schema": "schemas", "list_schemas": "schemas", "check_value": "schemas",
    "Project": "projects", "ProjectState": "projects", "QueueOrder": "projects", "create_project": "projects",
    "find_projects": "projects",
    "show_project": "projects", "get_project": "projects", "list_projects": "projects",
    "project_of_annotation_project": "projects", "assign_batches": "projects", "change_schema": "projects",
    "Task": "tasks", "Answer": "tasks", "AnswerStatus": "tasks", "annotator_queue": "tasks", "get_task": "tasks",
    "save_annotation": "tasks", "list_answers": "tasks",
    "Dispute": "adjudication", "Decision": "adjudication", "adjudication_queue": "adjudication",
    "adjudicate_item": "adjudication", "resolve_disputes": "adjudication", "list_decisions": "adjudication",
    "project_figures": "figures",
    "PRELABEL_MODEL_HOOK": "hooks", "PrelabelModel": "prelabel", "prelabel_project": "prelabel",
    "submit_prelabel": "prelabel", "run_prelabel_job": "prelabel", "attach_prelabels": "prelabel",
    "export_project": "export",
    "bio_tags": "spans",
    "row_lineage": "trace",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "Answer",
    "AnswerStatus",
    "Decision",
    "Dispute",
    "LabelDef",
    "LabelSchema",
    "PRELABEL_MODEL_HOOK",
    "PrelabelModel",
    "Project",
    "ProjectState",
    "QueueOrder",
    "SchemaKind",
    "Task",
    "adjudicate_item",
    "adjudication_queue",
    "annotator_queue",
    "assign_batches",
    "bio_tags",
    "change_schema",
    "check_value",
    "create_project",
    "define_schema",
    "export_project",
    "find_projects",
    "find_schemas",
    "get_project",
    "get_schema",
    "get_task",
    "list_answers",
    "list_decisions",
    "list_projects",
    "list_schemas",
    "prelabel_project",
    "attach_prelabels",
    "project_figures",
    "project_of_annotation_project",
    "resolve_disputes",
    "row_lineage",
    "run_prelabel_job",
    "save_annotation",
    "show_project",
    "submit_prelabel",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
