"""Chainkeeper data stage: import and crawl sources, clean them, freeze and compare dataset versions.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). Importing the package, which the schema does for
``chainkeeper.data.tables``, must not pull in pyarrow, so the CLI and web shells start fast.

- collect: ``import_file`` (CSV/TSV, JSON Lines, Parquet, a folder of texts, CoNLL),
  ``import_csv``, ``crawl`` (a job) and ``crawl_to_source``; ``Source`` and its readers;
- clean: ``apply_recipe`` with ``STEPS`` (``BASIC_RECIPE``, ``FULL_RECIPE``,
  ``TOKEN_RECIPE``), ``find_near_duplicates``, ``redact_text`` / ``find_pii``;
- version: ``create_dataset_version`` (task kind: ``DatasetTask``), ``release_dataset_version``,
  ``read_dataset_rows``, ``stratified_split``;
- review: ``get_quality_report``, ``render_quality_html``, ``diff_dataset_versions``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainkeeper.data.cleaning import (
        BASIC_RECIPE,
        FULL_RECIPE,
        STEPS,
        TOKEN_RECIPE,
        StepReport,
        apply_recipe,
        check_recipe,
    )
    from chainkeeper.data.crawler import crawl, crawl_to_source
    from chainkeeper.data.diff import VersionDiff, diff_dataset_versions
    from chainkeeper.data.ingest import FORMATS, SPLITS, import_csv, import_file
    from chainkeeper.data.near_duplicates import NearDuplicates, find_near_duplicates
    from chainkeeper.data.pii import PII_TYPES, find_pii, redact_text
    from chainkeeper.data.quality import get_quality_report, render_quality_html
    from chainkeeper.data.sources import Source, count_sources, get_source, list_sources, read_source_rows
    from chainkeeper.data.splits import stratified_split
    from chainkeeper.data.versions import (
        DatasetState,
        DatasetTask,
        DatasetVersion,
        count_dataset_versions,
        create_dataset_version,
        get_dataset_version,
        list_dataset_versions,
        read_dataset_rows,
        release_dataset_version,
    )

_EXPORTS = {
    "BASIC_RECIPE": "cleaning", "FULL_RECIPE": "cleaning", "STEPS": "cleaning", "TOKEN_RECIPE": "cleaning",
    "StepReport": "cleaning", "apply_recipe": "cleaning", "check_recipe": "cleaning",
    "crawl": "crawler", "crawl_to_source": "crawler",
    "VersionDiff": "diff", "diff_dataset_versions": "diff",
    "FORMATS": "ingest", "SPLITS": "ingest", "import_csv": "ingest", "import_file": "ingest",
    "NearDuplicates": "near_duplicates", "find_near_duplicates": "near_duplicates",
    "PII_TYPES": "pii", "find_pii": "pii", "redact_text": "pii",
    "get_quality_report": "quality", "render_quality_html": "quality",
    "Source": "sources", "count_sources": "sources", "get_source": "sources", "list_sources": "sources",
    "read_source_rows": "sources",
    "stratified_split": "splits",
    "DatasetState": "versions", "DatasetTask": "versions", "DatasetVersion": "versions",
    "count_dataset_versions": "versions", "create_dataset_version": "versions", "get_dataset_version": "versions",
    "list_dataset_versions": "versions", "read_dataset_rows": "versions", "release_dataset_version": "versions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chainkeeper.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chainkeeper.data.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
