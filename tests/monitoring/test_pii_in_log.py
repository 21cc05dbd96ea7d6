"""Personal data never reaches the prediction log or the monitoring report (issue 15, item 7).

At the level a user meets it: texts holding a US phone number, an SSN, a card with its CVV,
a password, a PIN, a UK sort code and account number are posted to a real server's
predict endpoint; the stored rows and the diagnosis report (JSON and HTML) hold only
placeholders.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainkeeper.api.app import create_app
from chainkeeper.api.server import RunningServer, start_server_in_thread
from chainkeeper.core.context import Context
from chainkeeper.governance.users import create_user, issue_token
from chainkeeper.monitoring.predictions import get_prediction
from chainkeeper.serving.deployments import deploy_model_version
from tests.model_rows import RELEASER, in_production, save_tiny_classifier

# The short ones with the words around them: bare "381" also turns up in a random request id.
SECRETS = ["(415) 555-0132", "219-09-9999", "4539 1488 0343 6467", "cvv 381", "Blue42Sky!", "PIN is 7391",
           "20-00-00", "55779911", "Abc12345", "+1 212 555 0187"]
TEXTS = [
    "Please call me back on (415) 555-0132, my SSN is 219-09-9999",
    "card 4539 1488 0343 6467 cvv 381 was declined",
    "my online banking password is Blue42Sky! and PIN is 7391",
    "pay sort code 20-00-00 account number 55779911 today",
    "我的登录密码是Abc12345，美国电话 +1 212 555 0187",
]
REDACTED = [
    "Please call me back on [PHONE], my SSN is [SSN]",
    "card [CARD] cvv [CVV] was declined",
    "my online banking password is [SECRET] and PIN is [SECRET]",
    "pay sort code [SORT_CODE] account number [ACCOUNT] today",
    "我的登录密码是[SECRET]，美国电话 [PHONE]",
]


@pytest.fixture
def running(ctx: Context) -> Iterator[RunningServer]:
    server = start_server_in_thread(create_app(ctx), host="127.0.0.1", port=0)
    yield server
    server.stop()


def test_predictions_over_http_are_logged_and_reported_with_personal_data_redacted(
    ctx: Context, running: RunningServer, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = in_production(ctx, "intents",
                            model_artifact=ctx.artifacts.put_tree(save_tiny_classifier(tiny_model_dir, tmp_path / "m")))
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    create_user(ctx.db, "olive", roles=["operator"])
    token = issue_token(ctx.db, "olive", name="test").secret

    with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        answer = client.post("/v1/deployments/support/predict", json={"texts": TEXTS})
        assert answer.status_code == 200, answer.text
        ids = [p["request_id"] for p in answer.json()["predictions"]]
        rows = [get_prediction(ctx.db, i) for i in ids]  # flushes this process's log writer
        report = client.get("/api/monitoring/deployments/support/report")
        page = client.get("/api/monitoring/deployments/support/report.html")

    assert [r.input_text for r in rows] == REDACTED
    assert [r.pii_spans for r in rows] == [2, 2, 2, 2, 2]
    assert report.status_code == 200 and page.status_code == 200
    shown = sorted(e["text"] for e in report.json()["low_confidence"])
    assert shown == sorted(REDACTED)
    for secret in SECRETS:
        assert not any(secret in r.input_text for r in rows), secret
        assert secret not in report.text and secret not in page.text, secret
