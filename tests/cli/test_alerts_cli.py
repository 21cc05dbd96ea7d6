"""Alert webhooks at the command line: an internal webhook URL refused with the setting that
allows it, and the secret a receiver checks signatures with (issue 15 item 6)."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.cli.conftest import Run
from tests.cli.test_cli import _admin_token

RULE = ("monitor", "alerts", "add", "--metric", "mean_confidence", "--when", "<", "--threshold", "0.5")


def _operator(run: Run) -> str:
    admin = _admin_token(run)
    assert run("users", "create", "olga", "--role", "operator", token=admin)[0] == 0
    code, out, _ = run("users", "token", "olga", token=admin)
    assert code == 0
    return out.strip().splitlines()[-1]


def test_a_webhook_to_loopback_is_refused_until_allowed_and_its_secret_is_printed(
        run: Run, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    olga = _operator(run)

    code, _, err = run(*RULE, "--name", "hook", "--webhook", "http://127.0.0.1:9/hook", token=olga)
    assert code == 2 and "Refused to connect to 127.0.0.1" in err and "CHAINKEEPER_OUTBOUND_ALLOW" in err
    assert json.loads(run("monitor", "alerts", "rules", "--json", token=olga)[1]) == []  # nothing stored

    monkeypatch.setenv("CHAINKEEPER_OUTBOUND_ALLOW", "127.0.0.1")
    code, out, err = run(*RULE, "--name", "hook", "--webhook", "http://127.0.0.1:9/hook", token=olga)
    assert code == 0, err
    rule_id = re.search(r"rule (\d+)", out).group(1)  # type: ignore[union-attr]

    code, out, err = run("monitor", "alerts", "webhook-secret", rule_id, token=olga)
    assert code == 0, err
    secret = out.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", secret)
    assert run("monitor", "alerts", "webhook-secret", rule_id, token=olga)[1].strip() == secret
    assert stat.S_IMODE(os.stat(home / "webhook-signing.key").st_mode) == 0o600
