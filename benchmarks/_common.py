"""What the benchmarks share: where the public datasets are, reading a text,label CSV,
and the machine's load (printed with every figure, since the machine may be shared)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def datasets_dir() -> Path:
    """CHAINKEEPER_DATASETS_DIR, else ../shared/datasets beside the repository."""
    configured = os.environ.get("CHAINKEEPER_DATASETS_DIR")
    return Path(configured) if configured else REPO.parent / "shared" / "datasets"


def read_csv(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a CSV with columns text,label."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"
