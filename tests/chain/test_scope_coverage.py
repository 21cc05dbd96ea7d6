"""Every protected service function is in a cross-project refusal test.

A protected service function is one a stage exports (its package's ``__all__``) that
takes an ``actor``. Each ``tests/chain/test_scope_<stage>.py`` holds ``CASES`` (function
→ a call of it as an actor whose roles are all bound to another project, which must be
refused), ``LISTS`` (list functions, which must show that actor nothing of the project)
and ``NOT_PROJECT_SCOPED`` (name → why it guards no project's objects). This test fails
when a stage exports such a function that none of them names.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import tests.chain

STAGES = ("governance", "data", "annotation", "training", "registry", "serving", "monitoring", "chain")

# Functions that take an actor but guard no project's objects, with the reason.
_DECIDES = "the authorisation primitive itself, which the services call; tests/governance checks it"
_PRIMITIVE = "an internal primitive: records the actor; the calling service has authorised"
_ADMIN = "user and role administration is global: user.manage / role.manage in a global role"
NOT_PROJECT_SCOPED: dict[str, str] = {
    "chainkeeper.governance.users.create_user": _ADMIN,
    "chainkeeper.governance.users.issue_token": _ADMIN,
    "chainkeeper.governance.users.revoke_token": _ADMIN,
    "chainkeeper.governance.users.grant_role": _ADMIN,
    "chainkeeper.governance.users.revoke_role": _ADMIN,
    "chainkeeper.governance.users.list_users": _ADMIN,
    "chainkeeper.governance.users.list_tokens": _ADMIN,
    "chainkeeper.governance.users.list_sessions": _ADMIN,
    "chainkeeper.governance.users.end_sessions": _ADMIN,
    "chainkeeper.governance.users.disable_user": _ADMIN,
    "chainkeeper.governance.users.enable_user": _ADMIN,
    "chainkeeper.governance.users.delete_user": _ADMIN,
    "chainkeeper.governance.passwords.set_password": _ADMIN,
    "chainkeeper.governance.permissions.create_role": _ADMIN,
    "chainkeeper.governance.permissions.set_permission": _ADMIN,
    "chainkeeper.governance.audit.read_entries": "the ledger spans every project: audit.read is global",
    "chainkeeper.governance.audit.verify_ledger_as": "the ledger spans every project: audit.verify is global",
    "chainkeeper.governance.audit.export_ledger": "the ledger spans every project: audit.read is global",
    "chainkeeper.governance.audit.anchor_ledger_as": "the ledger spans every project: audit.verify is global",
    "chainkeeper.governance.users.describe_actor": "answers who the caller is, about no object",
    "chainkeeper.governance.permissions.read_matrix": "the permission matrix is one for all projects",
    "chainkeeper.governance.ledger.append_entry": "records what the caller did; decides nothing",
    "chainkeeper.governance.permissions.authorize": _DECIDES,
    "chainkeeper.governance.permissions.authorize_object": _DECIDES,
    "chainkeeper.governance.permissions.projects_allowed": _DECIDES,
    "chainkeeper.governance.permissions.is_allowed": _DECIDES,
    "chainkeeper.monitoring.alerts.find_signals": "the catalogue of signals a rule may watch, the same for everyone",
    "chainkeeper.monitoring.metrics.metric_names": "the catalogue of metric names, the same for everyone",
    "chainkeeper.data.ingest.store_records": _PRIMITIVE,
    "chainkeeper.data.versions.freeze_dataset_version": _PRIMITIVE,
    "chainkeeper.data.versions.freeze_sources": _PRIMITIVE,
}


def _protected() -> dict[str, Callable[..., Any]]:
    found = {}
    for stage in STAGES:
        package = importlib.import_module(f"chainkeeper.{stage}")
        for name in getattr(package, "__all__", ()):
            obj = getattr(package, name)
            if inspect.isfunction(obj) and "actor" in inspect.signature(obj).parameters:
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def _scope_modules() -> list[Any]:
    return [importlib.import_module(f"tests.chain.{info.name}") for info in pkgutil.iter_modules(tests.chain.__path__)
            if info.name.startswith("test_scope_") and info.name != "test_scope_coverage"]


def _covered() -> set[Callable[..., Any]]:
    """Functions refused to an outsider (``CASES``) or whose lists show an outsider nothing (``LISTS``)."""
    covered: set[Callable[..., Any]] = set()
    for module in _scope_modules():
        covered |= set(module.CASES) | set(getattr(module, "LISTS", {}))
    return covered


def _exempt() -> dict[str, str]:
    exempt = dict(NOT_PROJECT_SCOPED)
    for module in _scope_modules():
        exempt.update(getattr(module, "NOT_PROJECT_SCOPED", {}))
    return exempt


def test_every_protected_service_function_has_a_cross_project_case() -> None:
    covered, exempt = _covered(), _exempt()
    missing = sorted(name for name, fn in _protected().items() if fn not in covered and name not in exempt)
    assert all(reason.strip() for reason in exempt.values())
    assert not missing, f"protected service functions without a cross-project case: {missing}"
