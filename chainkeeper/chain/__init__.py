"""Chainkeeper chain layer: what crosses stages, above all of them.

The stages (data, annotation, training, registry, serving, monitoring) import only
downward; what joins them lives here and imports them all:

- wiring: ``build_wiring`` and ``open_context`` (job handlers, gates and hooks on the context);
- gates: the gate table with its separation-of-duties rules (``gate_table``);
- jobs: the job handler table (``job_table``);
- ownership: ``owner_of``, ``reassign_owner``;
- lineage: ``lineage_of`` (prediction → … → source rows), ``run_row_lineage``;
- maintenance: the loop drift → ticket → retrain → gate → promote (``start_retraining``,
  ``train_on_released``, ``evaluate_retraining``, ``hand_to_release_gate``, ``close_when_served``);
- projects: ``project_of_object`` (the project any object belongs to);
- overview: ``chain_overview``, ``jobs_panel`` (the front page's model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

if TYPE_CHECKING:
    from chainkeeper.chain.gates import gate_table
    from chainkeeper.chain.jobs import job_table
    from chainkeeper.chain.lineage import KINDS as LINEAGE_KINDS
    from chainkeeper.chain.lineage import lineage_of, run_row_lineage
    from chainkeeper.chain.maintenance import (
        FEEDBACK_TEST_SHARE,
        Retraining,
        RetrainingRun,
        close_when_served,
        evaluate_retraining,
        hand_to_release_gate,
        start_retraining,
        train_on_released,
    )
    from chainkeeper.chain.overview import (
        ChainOverview,
        JobsPanel,
        StageCard,
        StageCount,
        chain_overview,
        jobs_panel,
    )
    from chainkeeper.chain.ownership import (
        RESPONSIBLE_ROLE,
        Ownership,
        owner_of,
        reassign_owner,
    )
    from chainkeeper.chain.projects import project_of_object
    from chainkeeper.chain.wiring import build_wiring, open_context

# name -> (module, name in that module)
_EXPORTS = {
    "train_on_released": ("maintenance", "train_on_released"),
    "start_retraining": ("maintenance", "start_retraining"),
    "hand_to_release_gate": ("maintenance", "hand_to_release_gate"),
    "evaluate_retraining": ("maintenance", "evaluate_retraining"),
    "close_when_served": ("maintenance", "close_when_served"),
    "RetrainingRun": ("maintenance", "RetrainingRun"),
    "Retraining": ("maintenance", "Retraining"),
    "FEEDBACK_TEST_SHARE": ("maintenance", "FEEDBACK_TEST_SHARE"),
    "ChainOverview": ("overview", "ChainOverview"),
    "JobsPanel": ("overview", "JobsPanel"),
    "LINEAGE_KINDS": ("lineage", "KINDS"),
    "Ownership": ("ownership", "Ownership"),
    "RESPONSIBLE_ROLE": ("ownership", "RESPONSIBLE_ROLE"),
    "StageCard": ("overview", "StageCard"),
    "StageCount": ("overview", "StageCount"),
    "build_wiring": ("wiring", "build_wiring"),
    "chain_overview": ("overview", "chain_overview"),
    "gate_table": ("gates", "gate_table"),
    "job_table": ("jobs", "job_table"),
    "jobs_panel": ("overview", "jobs_panel"),
    "lineage_of": ("lineage", "lineage_of"),
    "open_context": ("wiring", "open_context"),
    "owner_of": ("ownership", "owner_of"),
    "project_of_object": ("projects", "project_of_object"),
    "reassign_owner": ("ownership", "reassign_owner"),
    "run_row_lineage": ("lineage", "run_row_lineage"),
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "ChainOverview",
    "FEEDBACK_TEST_SHARE",
    "JobsPanel",
    "LINEAGE_KINDS",
    "Ownership",
    "RESPONSIBLE_ROLE",
    "Retraining",
    "RetrainingRun",
    "StageCard",
    "StageCount",
    "build_wiring",
    "chain_overview",
    "close_when_served",
    "evaluate_retraining",
    "gate_table",
    "hand_to_release_gate",
    "job_table",
    "jobs_panel",
    "lineage_of",
    "open_context",
    "owner_of",
    "project_of_object",
    "reassign_owner",
    "run_row_lineage",
    "start_retraining",
    "train_on_released",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
