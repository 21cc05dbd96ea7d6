"""``chainkeeper data`` as a user meets it: import, list, create, show, ask for release; refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.conftest import Run
from tests.cli.test_cli import _admin_token

LABELS = ("card_arrival", "lost_card", "change_pin")


def _write_csv(path: Path, rows: int = 60) -> Path:
    lines = ["text,label"] + [f"message number {i} about {LABELS[i % 3]},{LABELS[i % 3]}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\nragged row without label\n", encoding="utf-8")
    return path


def _user(run: Run, admin: str, name: str, role: str) -> str:
    assert run("users", "create", name, "--role", role, token=admin)[0] == 0
    code, out, _ = run("users", "token", name, token=admin)
    assert code == 0
    return out.strip().splitlines()[-1]


def test_import_create_show_and_release_request(run: Run, tmp_path: Path) -> None:  # noqa: F811
    admin = _admin_token(run)
    steward = _user(run, admin, "dana", "data_steward")

    code, out, err = run("data", "import", str(_write_csv(tmp_path / "intents.csv")), token=steward)
    assert code == 0, err
    assert "60 rows accepted, 1 quarantined" in out and "(csv, utf-8)" in out
    source_id = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]

    code, out, _ = run("data", "sources", token=steward)
    assert code == 0 and "intents.csv" in out and "dana" in out

    code, out, err = run("data", "create", "intents", "--source", source_id, "--seed", "7", token=steward)
    assert code == 0, err
    version_id = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]

    code, out, _ = run("data", "versions", token=steward)
    assert code == 0 and "intents" in out and "draft" in out
    code, out, _ = run("data", "show", version_id, token=steward)
    assert code == 0 and "splits" in out and "recipe" in out and "3 labels" in out

    code, out, err = run("data", "release-request", version_id, token=steward)
    assert code == 0, err
    assert re.search(r"approval request \d+ for intents v1: pending", out)


def test_jsonl_import_with_named_columns_reports_quarantine(run: Run, tmp_path: Path) -> None:  # noqa: F811
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"body": "hi", "intent": "greet"}) + "\n{oops\n", encoding="utf-8")

    code, out, err = run("data", "import", str(path), "--text-column", "body", "--label-column", "intent",
                         "--split", "test", token=steward)

    assert code == 0, err
    assert "(jsonl, utf-8)" in out and "1 rows accepted, 1 quarantined" in out


def test_bad_import_is_one_message_and_exit_code_and_stores_nothing(run: Run, tmp_path: Path) -> None:  # noqa: F811
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    (tmp_path / "empty.csv").write_bytes(b"")

    code, _, err = run("data", "import", str(tmp_path / "empty.csv"), token=steward)
    assert code == 2 and "is empty" in err
    code, _, err = run("data", "import", str(tmp_path / "nowhere"), "--format", "folder", token=steward)
    assert code == 2 and "There is no folder" in err

    code, out, _ = run("data", "sources", token=steward)
    assert code == 0 and "empty.csv" not in out and "nowhere" not in out


def test_import_needs_data_import_permission(run: Run, tmp_path: Path) -> None:  # noqa: F811
    admin = _admin_token(run)
    annotator = _user(run, admin, "ann", "annotator")

    code, _, err = run("data", "import", str(_write_csv(tmp_path / "a.csv")), token=annotator)

    assert code == 5 and "may not data.import" in err
    code, _, err = run("data", "sources")
    assert code == 5 and "needs an API token" in err


def test_crawl_queues_a_job_and_refuses_a_bad_url(run: Run) -> None:  # noqa: F811
    steward = _user(run, _admin_token(run), "dana", "data_steward")

    code, out, err = run("data", "crawl", "http://127.0.0.1:9/", "--max-pages", "3", token=steward)
    assert code == 0, err
    job_id = re.search(r"job (\d+)", out).group(1)  # type: ignore[union-attr]
    code, out, _ = run("jobs", "show", job_id, token=steward)
    assert code == 0 and "crawl" in out

    code, _, err = run("data", "crawl", "ftp://127.0.0.1/", token=steward)
    assert code == 2 and "not an http(s) URL" in err
