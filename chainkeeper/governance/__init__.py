"""Chainkeeper governance: who may do what, the approvals that hand work on, the ledger.

The foundation every stage stands on, imported by module (``governance.permissions``,
``governance.ledger`` …) like ``core``; the names below are its public surface, loaded
on first use (PEP 562) so that importing ``governance.tables`` loads nothing else.

- actors and users: ``Actor``, ``SYSTEM``, ``create_user``, ``issue_token``,
  ``authenticate_token``, ``grant_role``, ``set_password``, ``login``; user administration:
  ``disable_user``, ``enable_user``, ``delete_user``, ``list_tokens``, ``list_sessions``, ``end_sessions``;
- permissions: ``authorize``, ``authorize_object``, ``projects_allowed``, the matrix and
  its RACI export;
- approvals: ``request_approval``, ``decide``, ``show_approval``, ``find_approvals``
  (the gates themselves are wired by ``chainkeeper.chain``);
- the ledger: ``append_entry``, ``verify_ledger``; read as a person through ``audit``;
- jobs as people see them: ``find_jobs``, ``show_job``, ``cancel_job``; schedules of recurring
  jobs: ``find_schedules``, ``show_schedule``, ``pause_schedule``, ``resume_schedule``, ``remove_schedule``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.governance.actors import SYSTEM, Actor
    from chainkeeper.governance.approvals import (
        Approval,
        ApprovalState,
        CheckResult,
        Gate,
        decide,
        find_approvals,
        request_approval,
        show_approval,
        who_may_approve,
    )
    from chainkeeper.governance.audit import (
        anchor_ledger_as,
        export_ledger,
        read_entries,
        verify_ledger_as,
    )
    from chainkeeper.governance.jobs import (
        cancel_job,
        find_jobs,
        read_job_logs,
        requeue_job,
        show_job,
    )
    from chainkeeper.governance.ledger import append_entry, count_entries, verify_ledger
    from chainkeeper.governance.lineage import LineageNode
    from chainkeeper.governance.passwords import login, set_password
    from chainkeeper.governance.permissions import (
        ACTIONS,
        authorize,
        authorize_object,
        create_role,
        is_allowed,
        permission_matrix,
        projects_allowed,
        raci_rows,
        read_matrix,
        render_raci,
        set_permission,
    )
    from chainkeeper.governance.roles import BuiltinRole
    from chainkeeper.governance.schedules import (
        find_schedules,
        pause_schedule,
        remove_schedule,
        resume_schedule,
        show_schedule,
    )
    from chainkeeper.governance.users import (
        authenticate_token,
        create_user,
        delete_user,
        describe_actor,
        disable_user,
        enable_user,
        end_sessions,
        get_user,
        grant_role,
        issue_token,
        list_sessions,
        list_tokens,
        list_users,
        revoke_role,
        revoke_token,
    )

_EXPORTS = {
    "SYSTEM": "actors", "Actor": "actors",
    "Approval": "approvals", "ApprovalState": "approvals", "CheckResult": "approvals", "Gate": "approvals",
    "decide": "approvals", "find_approvals": "approvals", "request_approval": "approvals",
    "show_approval": "approvals", "who_may_approve": "approvals",
    "anchor_ledger_as": "audit", "export_ledger": "audit", "read_entries": "audit", "verify_ledger_as": "audit",
    "cancel_job": "jobs", "find_jobs": "jobs", "read_job_logs": "jobs", "requeue_job": "jobs", "show_job": "jobs",
    "append_entry": "ledger", "count_entries": "ledger", "verify_ledger": "ledger",
    "LineageNode": "lineage",
    "login": "passwords", "set_password": "passwords",
    "find_schedules": "schedules", "pause_schedule": "schedules", "remove_schedule": "schedules",
    "resume_schedule": "schedules", "show_schedule": "schedules",
    "ACTIONS": "permissions", "authorize": "permissions", "authorize_object": "permissions",
    "create_role": "permissions", "is_allowed": "permissions", "permission_matrix": "permissions",
    "projects_allowed": "permissions", "raci_rows": "permissions", "read_matrix": "permissions",
    "render_raci": "permissions", "set_permission": "permissions",
    "BuiltinRole": "roles",
    "authenticate_token": "users", "create_user": "users", "describe_actor": "users", "get_user": "users",
    "grant_role": "users", "issue_token": "users", "list_tokens": "users", "list_users": "users",
    "revoke_role": "users", "revoke_token": "users", "delete_user": "users", "disable_user": "users",
    "enable_user": "users", "end_sessions": "users", "list_sessions": "users",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "ACTIONS",
    "Actor",
    "Approval",
    "ApprovalState",
    "BuiltinRole",
    "CheckResult",
    "Gate",
    "LineageNode",
    "SYSTEM",
    "anchor_ledger_as",
    "append_entry",
    "authenticate_token",
    "authorize",
    "authorize_object",
    "cancel_job",
    "count_entries",
    "create_role",
    "create_user",
    "decide",
    "delete_user",
    "describe_actor",
    "disable_user",
    "enable_user",
    "end_sessions",
    "export_ledger",
    "find_approvals",
    "find_jobs",
    "find_schedules",
    "get_user",
    "grant_role",
    "is_allowed",
    "issue_token",
    "list_sessions",
    "list_tokens",
    "list_users",
    "login",
    "pause_schedule",
    "permission_matrix",
    "projects_allowed",
    "raci_rows",
    "read_entries",
    "read_job_logs",
    "read_matrix",
    "remove_schedule",
    "render_raci",
    "request_approval",
    "requeue_job",
    "resume_schedule",
    "revoke_role",
    "revoke_token",
    "set_password",
    "set_permission",
    "show_approval",
    "show_job",
    "show_schedule",
    "verify_ledger",
    "verify_ledger_as",
    "who_may_approve",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
