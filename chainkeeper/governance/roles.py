"""The built-in roles of the chain (DESIGN.md); organisations may add their own."""

from __future__ import annotations

import enum


class BuiltinRole(enum.StrEnum):
    ADMIN = "admin"
    DATA_STEWARD = "data_steward"
    ANNOTATOR = "annotator"
    ML_ENGINEER = "ml_engineer"
    RELEASE_MANAGER = "release_manager"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    SUPPORT_AGENT = "support_agent"


ROLE_DESCRIPTIONS: dict[str, str] = {
    BuiltinRole.ADMIN: "Manages users, roles and the permission matrix.",
    BuiltinRole.DATA_STEWARD: "Owns collection, cleaning and dataset releases; accountable for label quality.",
    BuiltinRole.ANNOTATOR: "Labels rows and spans in assigned queues.",
    BuiltinRole.ML_ENGINEER: "Trains, tunes and evaluates models; registers model versions.",
    BuiltinRole.RELEASE_MANAGER: "Approves promotions to production and deploys; never the run's author.",
    BuiltinRole.OPERATOR: "Watches served models: latency, errors, drift, alerts; opens maintenance work.",
    BuiltinRole.AUDITOR: "Reads everything, verifies the ledger, exports reports.",
    BuiltinRole.SUPPORT_AGENT: "Answers conversations a support assistant handed over; answers become labelled rows.",
}
