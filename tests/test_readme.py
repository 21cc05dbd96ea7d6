"""The README shows what the running system enforces."""

from __future__ import annotations

import re
from pathlib import Path

from chainkeeper.core.context import Context
from chainkeeper.governance.permissions import permission_matrix, raci_rows, render_raci

REPO = Path(__file__).resolve().parent.parent


def test_readme_raci_table_is_the_enforced_default_matrix(ctx: Context) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- RACI:BEGIN -->\n(.*?)<!-- RACI:END -->", readme, re.S)
    assert block is not None
    expected = render_raci(raci_rows(permission_matrix(ctx.db)), "md")
    assert block.group(1) == expected, "run: .venv/bin/python scripts/readme_raci.py"


def test_readme_first_screen_gives_the_two_commands() -> None:
    first_screen = "\n".join((REPO / "README.md").read_text(encoding="utf-8").splitlines()[:30])
    assert "make demo" in first_screen and "make test" in first_screen
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci

