"""The whole chain end to end, as `chainkeeper quickstart` runs it, on a test-sized budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chainkeeper.cli.main import main
from chainkeeper.core.context import Context
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.ledger import verify_ledger
from chainkeeper.governance.lineage import lineage


def _quickstart(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = 0
    try:
        main(["quickstart", *args])
    except SystemExit as exit_:  # click ends a command with sys.exit(0)
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert code == 0, f"quickstart exited {code}: {err}{out[-2000:]}"
    assert "Traceback" not in out + err
    return out


def test_the_whole_chain_runs_on_the_sample_with_real_users(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CHAINKEEPER_HOME", str(home))
    monkeypatch.setenv("CHAINKEEPER_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("COLUMNS", "200")
    out = _quickstart(capsys, "--limit", "80", "--max-steps", "4")

    for n, stage in enumerate(["collect", "clean", "release data", "train", "release model", "deploy", "serve",
                               "monitor"], start=1):
        assert f"[{n}/8] {stage}" in out
    # Each hand-off was asked by one person and approved by another entitled one.
    assert "dataset.release asked by sofia" in out and "executed by dara" in out
    assert "model.promote asked by emil" in out and "executed by rhea" in out
    assert "deployment.create asked by rhea" in out and "executed by remy" in out
    accuracy = float(re.findall(r"^accuracy: (\d\.\d{3})$", out, re.M)[-1])
    assert 0.0 <= accuracy <= 1.0

    request_id = re.search(r"chainkeeper lineage prediction ([0-9a-f-]{36})", out)
    assert request_id is not None
    ctx = Context.open(load_settings({}, home=home))
    try:
        tree = lineage(ctx, "prediction", request_id.group(1))
        kinds = [node.kind for node in tree.walk()]
        assert kinds[:3] == ["prediction", "deployment", "model_version"]
        assert "run" in kinds and "dataset_version" in kinds and kinds.count("source") == 2
        decisions = {n.attrs["action"]: n.attrs["decided_by"] for n in tree.walk() if n.kind == "approval"}
        assert decisions == {"dataset.release": "dara", "model.promote": "rhea", "deployment.create": "remy"}
        train_source = next(n for n in tree.walk() if n.kind == "source" and n.attrs.get("rows"))
        assert train_source.attrs["uri"].endswith("train.csv") and train_source.attrs["first_line"] >= 2
        assert verify_ledger(ctx.db).ok
    finally:
        ctx.close()


@pytest.mark.datasets
@pytest.mark.slow
def test_quickstart_on_a_banking77_slice_with_the_real_minilm(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, datasets_dir: Path
) -> None:
    monkeypatch.setenv("CHAINKEEPER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    out = _quickstart(capsys, "--data", str(datasets_dir / "banking77"), "--limit", "1500")
    accuracy = float(re.findall(r"^accuracy: (\d\.\d{3})$", out, re.M)[-1])
    # 77 intents, chance 1.3 %; one short epoch on ~1,200 rows is far above it.
    assert accuracy > 0.25, out[-3000:]
