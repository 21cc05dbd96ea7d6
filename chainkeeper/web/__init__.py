"""Chainkeeper web stage: server-rendered pages (Jinja2 + htmx), a thin shell.

The pages themselves live in ``chainkeeper.web.pages`` (``router``, ``STATIC_DIR``),
which the API app includes; importing this package does not import FastAPI.
"""

from chainkeeper.web.overview import (
    ChainOverview,
    JobsPanel,
    StageCard,
    StageCount,
    WorkerInfo,
    chain_overview,
    format_age,
    format_count,
    jobs_panel,
)

__all__ = [
    "ChainOverview",
    "JobsPanel",
    "StageCard",
    "StageCount",
    "WorkerInfo",
    "chain_overview",
    "format_age",
    "format_count",
    "jobs_panel",
]
