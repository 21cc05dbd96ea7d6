"""``chainkeeper models`` and ``chainkeeper deploy`` as a user meets them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Run

from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.registry.versions import transition_stage
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production, registered


@pytest.fixture
def tokens(run: Run, home: Path) -> Iterator[dict[str, str]]:
    """An initialised home with a release manager and an ML engineer, and their tokens."""
    code, out, _ = run("init")
    admin = re.search(r"API token[^:]*:\s+(ck_\S+)", out)
    assert code == 0 and admin is not None
    found = {}
    for user, role in (("rhea", "release_manager"), ("emil", "ml_engineer")):
        assert run("users", "create", user, "--role", role, token=admin.group(1))[0] == 0
        code, out, _ = run("users", "token", user, token=admin.group(1))
        secret = re.search(r"(ck_\S+)", out)
        assert code == 0 and secret is not None
        found[user] = secret.group(1)
    yield found


@pytest.fixture
def store(home: Path, tokens: dict[str, str]) -> Iterator[Context]:
    ctx = Context.open(load_settings({}, home=home))
    yield ctx
    ctx.close()


def test_gates_are_set_by_a_release_manager_and_shown_with_results(run: Run, tokens: dict[str, str],
                                                                   store: Context) -> None:
    version = registered(store, "intents")  # test macro-F1 0.88
    code, out, _ = run("models", "gates", "set", "intents", "--min-macro-f1", "0.9", token=tokens["rhea"])
    assert code == 0 and "min macro-F1 0.9" in out and "max drop vs production not set" in out
    code, _, err = run("models", "gates", "set", "intents", "--min-macro-f1", "0.5", token=tokens["emil"])
    assert code == 5 and "model.promote.approve" in err
    code, out, _ = run("models", "gates", "show", str(version.id), "--run", token=tokens["emil"])
    assert code == 0 and "min-macro-f1" in out and "NO" in out and "0.8800 is below the minimum 0.9000" in out
    code, _, err = run("models", "gates", "set", "intents", "--min-macro-f1", "80", token=tokens["rhea"])
    assert code == 2 and "between 0 and 1, got 80" in err


def test_the_card_is_printed_as_markdown_and_unknown_ids_are_clear(run: Run, tokens: dict[str, str],
                                                                   store: Context) -> None:
    version = registered(store, "intents")
    code, out, _ = run("models", "card", str(version.id), token=tokens["emil"])
    assert code == 0 and out.startswith("# Model card: intents v1") and "## Limitations" in out
    code, out, _ = run("models", "list", "--name", "intents", token=tokens["emil"])
    assert code == 0 and "intents v1" in out and "0.8800" in out
    code, _, err = run("models", "card", "987654", token=tokens["emil"])
    assert code == 2 and "no model version 987654" in err


def test_canary_status_rollback_and_keys_from_the_command_line(run: Run, tokens: dict[str, str],
                                                               store: Context) -> None:
    v1 = in_production(store, "intents")
    deploy_model_version(store, name="support", model_version_id=v1.id, actor=RELEASER)
    v2 = registered(store, "intents")
    transition_stage(store, v2.id, "staging", actor=RELEASER)
    rhea = tokens["rhea"]

    code, _, err = run("deploy", "canary", "support", str(v2.id), "--percent", "10", token=tokens["emil"])
    assert code == 5 and "deployment.rollout" in err
    code, out, _ = run("deploy", "canary", "support", str(v2.id), "--percent", "10", token=rhea)
    assert code == 0 and f"canary: 10% of callers → version {v2.id}" in out
    code, out, _ = run("deploy", "status", "support", token=tokens["emil"])
    assert code == 0 and "canary" in out and "deploy" in out
    code, _, err = run("deploy", "promote", "support", token=rhea)
    assert code == 2 and "only a production version may take all traffic" in err
    code, out, _ = run("deploy", "rollback", "support", token=rhea)
    assert code == 0 and f"all traffic → version {v1.id}" in out

    code, out, _ = run("deploy", "keys", "create", "support", "--name", "shop", "--scope", "predict",
                       "--rate", "50/s", token=rhea)
    secret = re.search(r"(ckd_\S+)", out)
    key_id = re.search(r"key (\d+) for deployment support", out)
    assert code == 0 and secret is not None and key_id is not None
    code, out, _ = run("deploy", "keys", "list", "support", token=rhea)
    assert code == 0 and "shop" in out and "active" in out and secret.group(1) not in out
    assert run("deploy", "keys", "revoke", "support", key_id.group(1), token=rhea)[0] == 0
    code, out, _ = run("deploy", "keys", "list", "support", token=rhea)
    assert "revoked" in out
    code, _, err = run("deploy", "keys", "create", "support", "--rate", "lots", token=rhea)
    assert code == 2 and "COUNT/UNIT" in err
    code, _, err = run("deploy", "status", "ghost", token=rhea)
    assert code == 2 and "no deployment named 'ghost'" in err
