"""The permission matrix and the one place every decision is made: ``authorize``.

Roles are data: the ``permissions`` table holds (role, action) pairs, seeded from
``DEFAULT_MATRIX`` by ``chainkeeper init`` and changed by an admin. Besides plain
actions the table holds the RACI relations that are not permissions: ``consulted:X``
and ``informed:X``. The RACI export reads the same rows that ``authorize`` enforces, so
the written policy and the enforced one cannot drift apart.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from chainkeeper.core.db import Database
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.governance.actors import SYSTEM, Actor
from chainkeeper.governance.ledger import append_entry
from chainkeeper.governance.roles import BuiltinRole as R
from chainkeeper.governance.tables import SqlPermission, SqlRole, SqlUser, SqlUserRole

# Every action the system knows, with what it lets you do.
ACTIONS: dict[str, str] = {
    "system.read": "see the chain overview, jobs and health",
    "data.import": "import files and tables as sources",
    "data.read": "read sources, dataset versions and their reports",
    "dataset.create": "clean rows and freeze a dataset version",
    "dataset.release": "ask for a dataset version to be released",
    "dataset.release.approve": "approve a dataset release (not the version's last editor)",
    "annotation.label": "label rows and spans in an assigned queue",
    "annotation.manage": "create annotation projects and assign queues",
    "annotation.adjudicate": "decide disagreements between annotators",
    "run.create": "start training runs and hyper-parameter searches",
    "run.read": "read runs, their metrics and logs",
    "run.cancel": "cancel a training run",
    "model.register": "register a run's model as a model version",
    "model.read": "read model versions, cards and gate results",
    "model.promote": "ask for a model version to be promoted to production",
    "model.promote.approve": "approve a promotion to production (never the run's author)",
    "deployment.create": "ask for a model version to be deployed",
    "deployment.create.approve": "approve a deployment (never its requester)",
    "deployment.read": "read deployments and their traffic",
    "deployment.rollback": "roll a deployment back to its previous version",
    "deployment.rollout": "start, shift and promote a canary or shadow rollout",
    "apikey.manage": "issue and revoke a deployment's API keys",
    "model.export": "export and optimise a model version (ONNX, int8)",
    "predict": "send requests to a deployed model",
    "monitoring.read": "read predictions, metrics, drift and alerts",
    "monitoring.feedback": "attach ground-truth labels to served predictions",
    "monitoring.check": "run drift checks and schedule them as jobs",
    "alert.manage": "acknowledge, silence and resolve alerts",
    "maintenance.retrain": "retrain from a handed-over maintenance ticket and hand the candidate to the release gate",
    "job.read": "read jobs and their logs",
    "job.cancel": "cancel a job",
    "lineage.read": "trace a prediction back to its data and approvers",
    "owner.read": "ask who is responsible for an object",
    "owner.assign": "reassign an object's owner",
    "app.manage": "create a support assistant and change its deployment or knowledge base",
    "support.read": "read a support assistant's conversations and its hand-off queue",
    "support.answer": "take and answer conversations a support assistant handed over",
    "audit.read": "read and export the audit ledger",
    "audit.verify": "verify the ledger's hash chain",
    "user.manage": "create users, issue and revoke tokens, grant roles",
    "role.manage": "create roles and change the permission matrix",
}

_READ_ALL = {"system.read", "data.read", "run.read", "model.read", "deployment.read", "monitoring.read",
             "job.read", "lineage.read", "owner.read", "support.read"}

DEFAULT_MATRIX: dict[str, set[str]] = {
    R.ADMIN: {"system.read", "job.read", "owner.read", "owner.assign", "audit.read", "audit.verify",
              "user.manage", "role.manage"},
    R.DATA_STEWARD: {"system.read", "data.import", "data.read", "dataset.create", "dataset.release",
                     "dataset.release.approve", "annotation.manage", "annotation.adjudicate", "job.read",
                     "job.cancel", "lineage.read", "owner.read", "support.read"},
    R.ANNOTATOR: {"system.read", "annotation.label", "owner.read"},
    # dataset.release: the retraining loop asks a data steward to release the data it built.
    R.ML_ENGINEER: {"system.read", "data.read", "dataset.release", "run.create", "run.read", "run.cancel",
                    "model.register", "model.read", "model.promote", "model.export", "deployment.read", "predict",
                    "maintenance.retrain", "monitoring.read", "monitoring.feedback", "monitoring.check", "job.read",
                    "job.cancel", "lineage.read", "owner.read"},
    R.RELEASE_MANAGER: {"system.read", "data.read", "run.read", "model.read", "model.promote",
                        "model.promote.approve", "deployment.create", "deployment.create.approve",
                        "deployment.read", "deployment.rollback", "deployment.rollout", "apikey.manage",
                        "model.export", "predict", "monitoring.read", "monitoring.feedback", "job.read", "lineage.read",
                        "owner.read", "app.manage", "support.read"},
    R.OPERATOR: {"system.read", "run.read", "model.read", "deployment.read", "predict", "monitoring.read",
                 "monitoring.feedback", "monitoring.check",
                 "alert.manage", "job.read", "job.cancel", "lineage.read", "owner.read", "support.read"},
    R.AUDITOR: _READ_ALL | {"audit.read", "audit.verify"},
    R.SUPPORT_AGENT: {"system.read", "support.read", "support.answer", "owner.read"},
}

# The chain's activities as RACI rows: (stage, activity, action, approval action or None).
ACTIVITIES: list[tuple[str, str, str, str | None]] = [
    ("collect", "import sources", "data.import", None),
    ("clean", "clean and freeze a dataset version", "dataset.create", None),
    ("annotate", "label rows and spans", "annotation.label", None),
    ("annotate", "adjudicate disagreements", "annotation.adjudicate", None),
    ("release data", "release a dataset version", "dataset.release", "dataset.release.approve"),
    ("train", "train and evaluate a model", "run.create", None),
    ("release model", "register a model version", "model.register", None),
    ("release model", "promote to production", "model.promote", "model.promote.approve"),
    ("deploy", "deploy a model version", "deployment.create", "deployment.create.approve"),
    ("deploy", "roll back a deployment", "deployment.rollback", None),
    ("monitor", "watch and handle alerts", "alert.manage", None),
    ("maintain", "retrain from a maintenance ticket", "maintenance.retrain", "model.promote.approve"),
    ("serve people", "set up a support assistant", "app.manage", None),
    ("serve people", "answer handed-over conversations", "support.answer", None),
    ("audit", "verify and export the ledger", "audit.verify", None),
    ("admin", "manage users and roles", "user.manage", None),
]

# Accountable role for activities without an approval step (DESIGN.md), and who is
# consulted or informed. Stored as 'accountable:X', 'consulted:X', 'informed:X' rows.
DEFAULT_RACI: dict[str, dict[str, set[str]]] = {
    "accountable": {"data.import": {R.DATA_STEWARD}, "dataset.create": {R.DATA_STEWARD},
                    "annotation.label": {R.DATA_STEWARD}, "annotation.adjudicate": {R.DATA_STEWARD},
                    "run.create": {R.ML_ENGINEER}, "model.register": {R.ML_ENGINEER},
                    "deployment.rollback": {R.RELEASE_MANAGER}, "alert.manage": {R.OPERATOR},
                    "audit.verify": {R.AUDITOR}, "user.manage": {R.ADMIN}, "app.manage": {R.RELEASE_MANAGER},
                    "support.answer": {R.DATA_STEWARD}},
    "consulted": {"dataset.release": {R.ML_ENGINEER}, "annotation.adjudicate": {R.ANNOTATOR},
                  "model.promote": {R.OPERATOR}, "deployment.create": {R.OPERATOR, R.ML_ENGINEER},
                  "alert.manage": {R.ML_ENGINEER}},
    "informed": {"dataset.release": {R.ANNOTATOR, R.AUDITOR}, "model.promote": {R.AUDITOR},
                 "deployment.create": {R.AUDITOR}, "deployment.rollback": {R.ML_ENGINEER, R.OPERATOR, R.AUDITOR},
                 "run.create": {R.RELEASE_MANAGER}, "alert.manage": {R.RELEASE_MANAGER}},
}
_RELATIONS = tuple(DEFAULT_RACI)


def default_rows() -> list[tuple[str, str]]:
    rows = [(role, action) for role, actions in DEFAULT_MATRIX.items() for action in sorted(actions)]
    for relation, by_action in DEFAULT_RACI.items():
        rows += [(role, f"{relation}:{action}") for action, roles in by_action.items() for role in sorted(roles)]
    return rows


def seed_permissions(db: Database) -> None:
    """Grant the default matrix to built-in roles that have no grants yet."""
    with db.session() as s:
        granted = set(s.scalars(sa.select(SqlPermission.role).distinct()))
        for role, action in default_rows():
            if role not in granted:
                s.add(SqlPermission(role=role, action=action))
    _matrix_cache(db).clear()


# --- reading the matrix ---------------------------------------------------------------


class _MatrixCache:
    """The matrix of one store, re-read after ``ttl`` seconds or any change made through
    this module (another process's change is seen within ``ttl``). Kept on the store."""

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entry: tuple[float, dict[str, frozenset[str]]] | None = None

    def get(self, db: Database) -> dict[str, frozenset[str]]:
        with self._lock:
            hit = self._entry
            if hit and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        with db.session(readonly=True) as s:
            pairs = s.execute(sa.select(SqlPermission.role, SqlPermission.action)).all()
        matrix: dict[str, set[str]] = {}
        for role, action in pairs:
            matrix.setdefault(role, set()).add(action)
        frozen = {role: frozenset(actions) for role, actions in matrix.items()}
        with self._lock:
            self._entry = (time.monotonic(), frozen)
        return frozen

    def clear(self) -> None:
        with self._lock:
            self._entry = None


def _matrix_cache(db: Database) -> _MatrixCache:
    return db.state("governance.permission_matrix", _MatrixCache)


def permission_matrix(db: Database) -> dict[str, frozenset[str]]:
    """role -> actions (and RACI relations) as stored now."""
    return _matrix_cache(db).get(db)


def read_matrix(db: Database, *, actor: Actor) -> dict[str, frozenset[str]]:
    """``permission_matrix`` for someone who may ask who is responsible (``owner.read`` anywhere).

    Raises:
        Forbidden: not allowed.
    """
    projects_allowed(db, actor, "owner.read")
    return permission_matrix(db)


def roles_allowed(db: Database, action: str) -> list[str]:
    return sorted(role for role, actions in permission_matrix(db).items() if action in actions)


def effective_roles(actor: Actor, project: str | None = None) -> set[str]:
    """Global roles, plus roles bound to ``project`` when one is given."""
    return set(actor.roles) | {role for role, scope in actor.scoped_roles if project is not None and scope == project}


def is_allowed(db: Database, actor: Actor, action: str, *, project: str | None = None) -> bool:
    matrix = permission_matrix(db)
    return any(action in matrix.get(role, ()) for role in effective_roles(actor, project))


def is_allowed_somewhere(db: Database, actor: Actor, action: str) -> bool:
    """Whether ``actor`` may do ``action`` in a global role or in at least one project (for
    showing a panel or a button; deciding is ``authorize``'s)."""
    matrix = permission_matrix(db)
    return is_allowed(db, actor, action) or any(action in matrix.get(role, ()) for role, _ in actor.scoped_roles)


def projects_allowed(db: Database, actor: Actor, action: str) -> frozenset[str] | None:
    """Where ``actor`` may do ``action``: None for everywhere (a global role), else the
    projects whose scoped roles grant it. For services that list objects across projects.

    Raises:
        Forbidden: the actor may do it nowhere.
    """
    if is_allowed(db, actor, action):
        return None
    matrix = permission_matrix(db)
    projects = frozenset(project for role, project in actor.scoped_roles if action in matrix.get(role, ()))
    if not projects:
        authorize(db, actor, action)  # raises, naming the roles that may
    return projects


def authorize_object(db: Database, actor: Actor, action: str, project_of: Callable[[], str | None]) -> str | None:
    """Authorise ``action`` on one object, in the object's own project.

    First the actor must hold the action somewhere (so a caller without it is refused
    before anything is looked up); then ``project_of`` finds the object — raising
    NotFound when there is none — and the actor must hold the action in its project.

    Returns:
        The object's project.

    Raises:
        Forbidden: not allowed. NotFound: from ``project_of``.
    """
    projects_allowed(db, actor, action)
    project = project_of()
    authorize(db, actor, action, project=project)
    return project


def authorize(db: Database, actor: Actor, action: str, *, project: str | None = None) -> None:
    """The single authorisation point: raise unless ``actor`` may do ``action``.

    ``project`` is the project of the object acted on (the service works it out from the
    object: dataset → its name, run → its dataset's, model → its run's, deployment → its
    model's); roles bound to that project count, roles bound to others do not.

    Raises:
        InvalidInput: the action is not in the catalogue (a programming error surfaced
            clearly rather than a silent deny).
        Forbidden: with the action, the actor's roles and the roles that may do it.
    """
    if action not in ACTIONS:
        raise InvalidInput(f"Unknown action {action!r}.")
    if is_allowed(db, actor, action, project=project):
        return
    allowed = roles_allowed(db, action)
    held = ", ".join(sorted(effective_roles(actor, project))) or "no role"
    raise Forbidden(
        f"{actor.name} ({held}) may not {action}: {ACTIONS[action]}.",
        hint=f"Roles that may: {', '.join(allowed) or 'none'}. Ask an admin to grant one.",
    )


# --- changing it (admin) --------------------------------------------------------------


def create_role(db: Database, name: str, *, description: str, actions: Iterable[str] = (),
                actor: Actor = SYSTEM) -> None:
    """A custom role with its actions.

    Raises:
        Forbidden: the actor may not manage roles. InvalidInput: unknown actions. Conflict: the role exists.
    """
    authorize(db, actor, "role.manage")
    actions = list(actions)
    _check_actions(actions)
    with db.session() as s:
        if s.get(SqlRole, name) is not None:
            raise Conflict(f"Role {name!r} already exists.")
        s.add(SqlRole(name=name, description=description, builtin=False))
        s.flush()
        for action in dict.fromkeys(actions):
            s.add(SqlPermission(role=name, action=action))
        append_entry(s, actor, "role.create", "role", name, after={"actions": sorted(set(actions))})
    _matrix_cache(db).clear()


def set_permission(db: Database, role: str, action: str, *, granted: bool, actor: Actor = SYSTEM) -> None:
    """Grant or revoke one action (or RACI relation) for a role.

    Raises:
        Forbidden: the actor may not manage roles. InvalidInput: an unknown action. NotFound: no such role.
    """
    authorize(db, actor, "role.manage")
    _check_actions([action])
    with db.session() as s:
        if s.get(SqlRole, role) is None:
            known = ", ".join(s.scalars(sa.select(SqlRole.name).order_by(SqlRole.name)))
            raise NotFound(f"There is no role {role!r}.", hint=f"Known roles: {known}.")
        row = s.get(SqlPermission, (role, action))
        if granted and row is None:
            s.add(SqlPermission(role=role, action=action))
        elif not granted and row is not None:
            before = administrators(s)
            s.delete(row)
            s.flush()
            check_administrators_remain(s, before)
        else:
            return
        append_entry(s, actor, "permission.grant" if granted else "permission.revoke", "role", role,
                     details={"action": action})
    _matrix_cache(db).clear()


# Actions without which nobody could repair the roles or the users: some enabled user must
# always hold each of them everywhere.
ADMINISTRATION = ("role.manage", "user.manage")


def administrators(s: Session) -> dict[str, int]:
    """How many enabled users hold each ``ADMINISTRATION`` action everywhere."""
    return {action: s.scalar(sa.select(sa.func.count(sa.distinct(SqlUser.id)))
                             .join(SqlUserRole, SqlUserRole.user_id == SqlUser.id)
                             .join(SqlPermission, SqlPermission.role == SqlUserRole.role)
                             .where(SqlPermission.action == action, SqlUserRole.project.is_(None),
                                    SqlUser.disabled.is_(False))) or 0
            for action in ADMINISTRATION}


def check_administrators_remain(s: Session, before: dict[str, int]) -> None:
    """Refuse a change (in ``s``, flushed, not committed) that takes the last enabled holder
    of ``role.manage`` or ``user.manage`` away (``before``: ``administrators`` before the
    change): nobody could repair the roles or the users afterwards.

    Raises:
        Conflict: the change would leave an administration action without a holder.
    """
    after = administrators(s)
    for action in ADMINISTRATION:
        if before[action] and not after[action]:
            raise Conflict(f"Nobody would be left who may {action}: the change is refused.",
                           hint=f"Give another user a role with {action} first (e.g. 'chainkeeper users grant NAME "
                           "admin'), then make this change.")


def _check_actions(actions: Iterable[str]) -> None:
    for action in actions:
        base = action.split(":", 1)[1] if action.startswith(tuple(f"{r}:" for r in _RELATIONS)) else action
        if base not in ACTIONS:
            raise InvalidInput(f"Unknown action {action!r}.", hint="See 'chainkeeper roles actions' for the catalogue.")


# --- RACI (pure) ----------------------------------------------------------------------


@dataclass(frozen=True)
class RaciRow:
    stage: str
    activity: str
    responsible: tuple[str, ...]
    accountable: tuple[str, ...]
    consulted: tuple[str, ...]
    informed: tuple[str, ...]


def raci_rows(matrix: dict[str, frozenset[str]]) -> list[RaciRow]:
    """The enforced matrix as RACI rows over the chain's activities.

    R: roles that may perform the action. A: roles that may approve it when it is gated,
    else the stored ``accountable:`` relation. C, I: the stored relations.
    """
    def holders(key: str) -> tuple[str, ...]:
        return tuple(sorted(role for role, actions in matrix.items() if key in actions))

    rows = []
    for stage, activity, action, approve in ACTIVITIES:
        rows.append(RaciRow(
            stage=stage, activity=activity, responsible=holders(action),
            accountable=holders(approve) if approve else holders(f"accountable:{action}"),
            consulted=holders(f"consulted:{action}"), informed=holders(f"informed:{action}"),
        ))
    return rows


def render_raci(rows: list[RaciRow], fmt: str) -> str:
    """Markdown or CSV text of the RACI rows."""
    header = ["stage", "activity", "Responsible", "Accountable", "Consulted", "Informed"]
    cells = [[r.stage, r.activity, ", ".join(r.responsible), ", ".join(r.accountable), ", ".join(r.consulted),
              ", ".join(r.informed)] for r in rows]
    if fmt == "md":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c or "—" for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(cells)
        return buf.getvalue()
    raise InvalidInput(f"Unknown format {fmt!r}.", hint="Use --format md or --format csv.")
