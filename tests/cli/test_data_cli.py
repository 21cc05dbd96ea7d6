"""``chainkeeper data`` as a user meets it: import, list, create, show, ask for release; refusals."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from chainkeeper.api.app import create_app
from chainkeeper.chain import open_context
from chainkeeper.core.settings import load_settings
from chainkeeper.data import read_dataset_rows
from tests.cli.conftest import Run
from tests.cli.test_cli import _admin_token
from tests.data.test_crawler import site  # noqa: F401 (a fixture: a local site with robots.txt and loops)

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


def test_crawl_queues_a_job_and_refuses_a_bad_url(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    code, _, err = run("data", "crawl", "http://127.0.0.1:9/", token=steward)  # loopback: refused by default
    assert code == 2 and "Refused to connect to 127.0.0.1" in err and "CHAINKEEPER_OUTBOUND_ALLOW" in err

    monkeypatch.setenv("CHAINKEEPER_OUTBOUND_ALLOW", "127.0.0.1")
    code, out, err = run("data", "crawl", "http://127.0.0.1:9/", "--max-pages", "3", token=steward)
    assert code == 0, err
    job_id = re.search(r"job (\d+)", out).group(1)  # type: ignore[union-attr]
    code, out, _ = run("jobs", "show", job_id, token=steward)
    assert code == 0 and "crawl" in out

    code, _, err = run("data", "crawl", "ftp://127.0.0.1/", token=steward)
    assert code == 2 and "not an http(s) URL" in err


# --- bad input, as a user meets it -------------------------------------------------------


def _artefacts(home: Path) -> list[Path]:
    return sorted(p for p in (home / "artifacts").rglob("*") if p.is_file()) if (home / "artifacts").exists() else []


@pytest.mark.parametrize(("name", "content", "args", "message"), [
    pytest.param("empty.csv", b"", (), "is empty", id="empty-file"),
    pytest.param("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", (), "contains NUL bytes", id="binary-as-csv"),
    pytest.param("intents.csv", b"text,intent\nhello,greet\n", (), "has no column 'label'", id="no-label-column"),
    pytest.param("intents.csv", b"text,label\nhello,greet\n", ("--label-column", "category"),
                 "has no column 'category'", id="named-label-column-missing"),
    pytest.param("all-ragged.csv", b"text,label\na,b,c\nd,e,f\n", (), "has no usable rows", id="every-row-ragged"),
])
def test_bad_files_are_one_message_and_exit_code_and_leave_nothing_behind(
        run: Run, tmp_path: Path, home: Path, name: str, content: bytes, args: tuple[str, ...], message: str) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / name
    path.write_bytes(content)
    before = _artefacts(home)

    code, out, err = run("data", "import", str(path), *args, token=steward)

    assert code == 2 and message in err, err
    assert "→" in err  # and what to do about it
    assert _artefacts(home) == before
    code, out, _ = run("data", "sources", token=steward)
    assert code == 0 and name not in out


def test_ragged_rows_are_quarantined_with_their_reasons(run: Run, tmp_path: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\nfine row,a\ntoo,many,fields\nshort\n,no text\nanother fine row,b\n", encoding="utf-8")

    code, out, err = run("data", "import", str(path), token=steward)

    assert code == 0, err
    assert "2 rows accepted, 3 quarantined" in out
    assert "extra_fields 1" in out and "missing_fields 1" in out and "empty_text 1" in out


def test_crawl_here_refuses_an_unreachable_url_and_cuts_a_loop(run: Run, home: Path, site: tuple[str, list[str]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    monkeypatch.setenv("CHAINKEEPER_OUTBOUND_ALLOW", "127.0.0.1")  # the site is on loopback
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    code, _, err = run("data", "crawl", f"http://127.0.0.1:{port}/", "--here", "--rate", "100", token=steward)
    assert code == 2 and f"Cannot reach http://127.0.0.1:{port}" in err
    assert _artefacts(home) == []

    base, requested = site
    code, out, err = run("data", "crawl", base, "--here", "--max-depth", "3", "--rate", "100", token=steward)
    assert code == 0, err
    assert "crawled 5 pages" in out and "5 rows accepted" in out
    assert requested.count("/") == 1 and requested.count("/a") == 1  # links back home were not followed again


def test_diff_and_report_of_two_versions(run: Run, tmp_path: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    first = _write_csv(tmp_path / "intents.csv", rows=60)
    more = tmp_path / "more.csv"
    more.write_text("text,label\n" + "".join(f"extra {i},{LABELS[i % 3]}\n" for i in range(9)), encoding="utf-8")
    ids = []
    for path in (first, more):
        code, out, err = run("data", "import", str(path), token=steward)
        assert code == 0, err
        ids.append(re.search(r"source (\d+):", out).group(1))  # type: ignore[union-attr]
    code, out, _ = run("data", "create", "intents", "--source", ids[0], token=steward)
    a = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]
    code, out, _ = run("data", "create", "intents", "--source", ids[0], "--source", ids[1], token=steward)
    b = re.search(r"\(id (\d+)\)", out).group(1)  # type: ignore[union-attr]

    code, out, err = run("data", "diff", a, b, token=steward)
    assert code == 0, err
    assert f"version {a} (60 rows) -> version {b} (69 rows): 9 added, 0 removed" in out
    code, out, _ = run("data", "diff", a, b, "--json", token=steward)
    assert code == 0 and json.loads(out)["counts"]["added"] == 9

    html = tmp_path / "report.html"
    code, out, err = run("data", "report", b, "--html", str(html), token=steward)
    assert code == 0, err
    assert "quality report of intents v2" in out and "69 rows from 69" in out
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 3 and "<script" not in page
    code, out, _ = run("data", "report", b, "--json", token=steward)
    assert code == 0 and json.loads(out)["rows"] == 69

    code, _, err = run("data", "diff", a, "999", token=steward)
    assert code == 2 and "no dataset version with id 999" in err
    code, _, err = run("data", "report", "999", token=steward)
    assert code == 2 and "no dataset version with id 999" in err


def test_a_version_that_cannot_be_made_leaves_no_version_and_no_artefact(run: Run, tmp_path: Path,
                                                                         home: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    code, out, _ = run("data", "import", str(_write_csv(tmp_path / "intents.csv")), token=steward)
    labelled = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("An unlabelled document.", encoding="utf-8")
    code, out, _ = run("data", "import", str(tmp_path / "docs"), token=steward)
    unlabelled = re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]
    before = _artefacts(home)

    code, _, err = run("data", "create", "mixed", "--source", labelled, "--source", unlabelled, token=steward)
    assert code == 2 and "different kinds of rows" in err
    code, _, err = run("data", "create", "mixed", "--source", labelled, "--step", "no_such_step", token=steward)
    assert code == 2 and "Unknown cleaning step(s): 'no_such_step'" in err

    assert _artefacts(home) == before
    code, out, _ = run("data", "versions", token=steward)
    assert code == 0 and "mixed" not in out


def _rows_of(home: Path, version_id: int) -> list[dict[str, object]]:
    ctx = open_context(load_settings({}, home=home))
    try:
        return read_dataset_rows(ctx, version_id).to_pylist()
    finally:
        ctx.close()


def _import(run: Run, path: Path, steward: str, *options: str) -> str:
    code, out, err = run("data", "import", str(path), *options, token=steward)
    assert code == 0, err
    return re.search(r"source (\d+):", out).group(1)  # type: ignore[union-attr]


def _create(run: Run, steward: str, *args: str) -> int:
    code, out, err = run("data", "create", *args, token=steward)
    assert code == 0, err
    return int(re.search(r"\(id (\d+)\)", out).group(1))  # type: ignore[union-attr]


def test_personal_data_is_redacted_by_default_and_kept_only_when_asked(run: Run, tmp_path: Path,
                                                                       home: Path) -> None:
    # Issue 14 item 7: a crawled page's phone number 13800000000 went into the dataset unredacted.
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / "crawled.csv"
    path.write_text("text,label\ncall me on 13800000000 please,contact\nwrite to anna@example.com,contact\n"
                    + "".join(f"plain question {i},other\n" for i in range(8)), encoding="utf-8")
    source = _import(run, path, steward)

    redacted = _create(run, steward, "pages", "--source", source)
    texts = [r["text"] for r in _rows_of(home, redacted)]
    assert "call me on [PHONE] please" in texts and "write to [EMAIL]" in texts
    assert not any("13800000000" in str(t) or "anna@example.com" in str(t) for t in texts)
    code, out, _ = run("data", "show", str(redacted), "--json", token=steward)
    assert json.loads(out)["stats"]["redaction"] == "on"

    code, out, err = run("data", "create", "pages-raw", "--source", source, "--no-redact", token=steward)
    assert code == 0, err
    assert "personal data NOT redacted (--no-redact)" in out
    kept = int(re.search(r"\(id (\d+)\)", out).group(1))  # type: ignore[union-attr]
    texts = [r["text"] for r in _rows_of(home, kept)]
    assert "call me on 13800000000 please" in texts and "write to anna@example.com" in texts
    code, out, _ = run("data", "show", str(kept), "--json", token=steward)
    shown = json.loads(out)
    assert shown["stats"]["redaction"] == "opted out"
    assert "redact_pii" not in [s["name"] for s in shown["recipe"]]
    code, out, _ = run("data", "report", str(kept), token=steward)
    assert "personal data NOT redacted (--no-redact)" in " ".join(out.split())
    code, out, _ = run("data", "report", str(kept), "--json", token=steward)
    assert json.loads(out)["redaction"] == "opted out"
    code, _, err = run("data", "create", "pages", "--source", source, "--step", "redact_pii", "--no-redact",
                       token=steward)
    assert code == 2 and "redaction is turned off" in err


def test_token_data_is_redacted_whole_tokens_at_a_time(run: Run, tmp_path: Path, home: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / "ner.conll"
    path.write_text("Call O\n13800000000 O\nnow O\n\nPeter B-PER\nBlackburn I-PER\n\n", encoding="utf-8")
    version = _create(run, steward, "ner", "--source", _import(run, path, steward))

    rows = {tuple(r["tags"]): r for r in _rows_of(home, version)}  # type: ignore[arg-type]
    assert rows[("O", "O", "O")]["tokens"] == ["Call", "[PHONE]", "now"]
    assert rows[("O", "O", "O")]["text"] == "Call [PHONE] now"


def test_repeats_inside_a_declared_split_are_removed_and_tag_conflicts_reported(run: Run, tmp_path: Path) -> None:
    # Issue 14 item 12: a declared training file's repeated sentences were all kept ("removed 0 duplicates"),
    # and sentences with the same tokens but other tags were collapsed as "0 label conflicts".
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    sentences = ["EU B-ORG\nrejects O\n", "Peter B-PER\nBlackburn I-PER\n", "EU B-ORG\nrejects O\n",
                 "EU B-LOC\nrejects O\n", "BRUSSELS B-LOC\n1996-08-22 O\n", "Peter B-PER\nBlackburn I-PER\n"]
    train = tmp_path / "train.conll"
    train.write_text("-DOCSTART- O\n\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    test = tmp_path / "test.conll"
    test.write_text("BRUSSELS B-LOC\n1996-08-22 O\n\nJapan B-LOC\nwins O\n\n", encoding="utf-8")
    ids = [_import(run, train, steward, "--split", "train"), _import(run, test, steward, "--split", "test")]
    version = _create(run, steward, "ner", "--source", ids[0], "--source", ids[1])

    code, out, _ = run("data", "report", str(version), "--json", token=steward)
    report = json.loads(out)
    assert report["removed"]["duplicates"] == 3 and report["conflicts"] == 1
    assert report["rows_per_split"] == {"train": 3, "test": 2}
    dedup = next(s for s in report["steps"] if s["name"] == "dedup_exact")
    assert {(r["kept_in"], r["removed_from"], r["rows"]) for r in dedup["details"]["repeats"]} == {
        ("train", "train", 2), ("test", "train", 1)}
    assert report["leakage"]["texts"] == 0
    code, out, _ = run("data", "report", str(version), token=steward)
    out = " ".join(out.split())
    assert "removed 0 empty, 3 duplicates" in out and "1 label conflicts" in out and "no text is in two splits" in out


def test_json_files_holding_an_array_or_an_object_of_lists_import(run: Run, tmp_path: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    array = tmp_path / "array.json"
    array.write_text(json.dumps([{"text": "card lost", "label": "lost"}, {"text": "pin", "label": "pin"}, 7,
                                 {"text": "", "label": "pin"}], indent=2), encoding="utf-8")
    columns = tmp_path / "columns.json"
    columns.write_text(json.dumps({"text": ["card lost", "pin", "fee"], "label": ["lost", "pin", "fee"]}),
                       encoding="utf-8")
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"text": ["a", "b"], "label": ["x"]}), encoding="utf-8")

    code, out, err = run("data", "import", str(array), token=steward)
    assert code == 0, err
    assert "(json, utf-8)" in out and "2 rows accepted, 2 quarantined (not_an_object 1, empty_text 1)" in out
    code, out, err = run("data", "import", str(columns), token=steward)
    assert code == 0 and "3 rows accepted, 0 quarantined" in out, err
    code, _, err = run("data", "import", str(odd), token=steward)
    assert code == 2 and "lists of different lengths" in err


def test_hints_name_the_command_line_option(run: Run, tmp_path: Path) -> None:
    # Issue 14 item 14: the hint said 'format=' (the API's field) to a shell user.
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    path = tmp_path / "rows.dat"
    path.write_text("text,label\na,b\n", encoding="utf-8")
    code, _, err = run("data", "import", str(path), token=steward)
    assert code == 2 and "--format" in err and "(command line)" in err
    code, _, err = run("data", "import", str(_write_csv(tmp_path / "intents.csv")), "--label-column", "intent",
                       token=steward)
    assert code == 2 and "--label-column" in err


def test_every_listing_and_showing_command_prints_the_api_fields_with_json(run: Run, tmp_path: Path,
                                                                           home: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    source = _import(run, _write_csv(tmp_path / "intents.csv"), steward)
    a = _create(run, steward, "intents", "--source", source)
    b = _create(run, steward, "intents", "--source", source, "--source",
                _import(run, _write_csv(tmp_path / "more.csv", rows=70), steward))
    ctx = open_context(load_settings({}, home=home))
    try:
        client = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {steward}"})
        pairs = [(["sources"], "/api/sources"), (["source", source], f"/api/sources/{source}"),
                 (["versions"], "/api/datasets"), (["show", str(b)], f"/api/datasets/{b}"),
                 (["diff", str(a), str(b)], f"/api/datasets/{a}/diff/{b}"),
                 (["report", str(b)], f"/api/datasets/{b}/report")]
        for args, url in pairs:
            code, out, err = run("data", *args, "--json", token=steward)
            assert code == 0, err
            answer = client.get(url)
            assert answer.status_code == 200, url
            assert json.loads(out) == answer.json(), f"chainkeeper data {' '.join(args)} --json != GET {url}"
    finally:
        ctx.close()
    code, out, _ = run("data", "diff", str(a), str(b), token=steward)
    assert "10 added, 0 removed, 60 unchanged" in out


def test_release_request_takes_m_as_approvals_request_does(run: Run, tmp_path: Path) -> None:
    steward = _user(run, _admin_token(run), "dana", "data_steward")
    version = _create(run, steward, "intents", "--source", _import(run, _write_csv(tmp_path / "i.csv"), steward))

    code, out, err = run("data", "release-request", str(version), "-m", "labels spot-checked", token=steward)

    assert code == 0, err
    code, out, _ = run("approvals", "show", re.search(r"approval request (\d+)", out).group(1),  # type: ignore[union-attr]
                       "--json", token=steward)
    assert json.loads(out)["request_comment"] == "labels spot-checked"
