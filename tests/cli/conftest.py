"""The CLI as a user meets it, in-process: a fresh home and a runner per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from chainkeeper.cli.main import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path) -> Run:
    """Run the CLI in-process with a fresh home; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("CHAINKEEPER_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")

    def invoke(*args: str, token: str | None = None) -> tuple[int, str, str]:
        if token is not None:
            monkeypatch.setenv("CHAINKEEPER_TOKEN", token)
        else:
            monkeypatch.delenv("CHAINKEEPER_TOKEN", raising=False)
        code = 0
        try:
            main(list(args))
        except SystemExit as exit_:  # click ends every command with sys.exit
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    return invoke
