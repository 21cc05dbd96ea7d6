"""The monitoring package exports the stage's service functions; the retraining loop lives in the chain layer."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_stage_exports_resolve_without_loading_torch_or_the_loop() -> None:
    # The schema imports chainkeeper.monitoring.tables: every name must load only when used,
    # and none of them pulls in the retraining loop (chain) or torch, so the shells start fast.
    code = ("import sys, chainkeeper.core.schema, chainkeeper.monitoring as m; "
            "assert all(getattr(m, name) is not None for name in m.__all__); "
            "assert 'chainkeeper.chain.maintenance' not in sys.modules and 'torch' not in sys.modules; "
            "import chainkeeper.cli.main, chainkeeper.api.app")

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


def test_the_stage_names_are_exported_and_an_unknown_one_is_an_attribute_error() -> None:
    import chainkeeper.monitoring as monitoring

    assert {"submit_feedback", "check_drift", "evaluate_rules", "hand_over_ticket"} <= set(monitoring.__all__)
    assert not {"start_retraining", "train_on_released"} & set(monitoring.__all__)  # chain.maintenance
    with pytest.raises(AttributeError, match="retrain_everything"):
        monitoring.retrain_everything  # noqa: B018 - the access is the test
