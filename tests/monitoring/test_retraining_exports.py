"""The monitoring package exports the stage's service functions, the retraining loop's among them."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_the_stage_exports_resolve_without_loading_the_loop_up_front() -> None:
    # The schema imports chainkeeper.monitoring.tables; the loop (data, training, registry)
    # must load only when a name is used, so the shells start fast and nothing cycles.
    code = ("import sys, chainkeeper.core.schema, chainkeeper.monitoring as m; "
            "assert 'chainkeeper.monitoring.maintenance' not in sys.modules; "
            "assert all(getattr(m, name) is not None for name in m.__all__); "
            "assert m.train_on_released.__module__ == 'chainkeeper.monitoring.maintenance'; "
            "import chainkeeper.cli.main, chainkeeper.api.app")

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr


def test_the_stage_names_are_exported_and_an_unknown_one_is_an_attribute_error() -> None:
    import chainkeeper.monitoring as monitoring

    assert {"submit_feedback", "check_drift", "evaluate_rules", "hand_over_ticket", "start_retraining",
            "train_on_released"} <= set(monitoring.__all__)
    with pytest.raises(AttributeError, match="retrain_everything"):
        monitoring.retrain_everything  # noqa: B018 - the access is the test
