"""Write the RACI table of a freshly initialised store into README.md.

The table is printed by the running system (the same code as `chainkeeper roles raci
--format md`) from the permission matrix that every route and command is checked
against; tests/test_readme.py fails when the README and the default matrix differ.

    .venv/bin/python scripts/readme_raci.py
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from chainkeeper.core.db import Database
from chainkeeper.core.settings import load_settings
from chainkeeper.governance.bootstrap import initialise
from chainkeeper.governance.permissions import permission_matrix, raci_rows, render_raci

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- RACI:BEGIN -->\n).*?(<!-- RACI:END -->)", re.S)


def default_raci_markdown() -> str:
    with tempfile.TemporaryDirectory() as home:
        settings = load_settings({}, home=Path(home))
        initialise(settings)
        db = Database(settings.resolved_database_url)
        try:
            return render_raci(raci_rows(permission_matrix(db)), "md")
        finally:
            db.dispose()


def main() -> int:
    text = README.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print("README.md has no <!-- RACI:BEGIN --> ... <!-- RACI:END --> block", file=sys.stderr)
        return 1
    README.write_text(BLOCK.sub(lambda m: m.group(1) + default_raci_markdown() + m.group(2), text), encoding="utf-8")
    print(f"updated the RACI table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
