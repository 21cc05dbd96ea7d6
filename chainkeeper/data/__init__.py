"""Chainkeeper data stage: import and crawl sources, clean them, freeze and compare dataset versions.

One public surface: every name a shell or another stage needs is re-exported here and
loaded on first use (PEP 562). Importing the package, which the schema does for
``chainkeeper.data.tables``, must not pull in pyarrow, so the CLI and web shells start fast.

- collect: ``import_file`` (CSV/TSV, JSON Lines, Parquet, a folder of texts, CoNLL),
  ``import_csv``, ``crawl`` (a job) and ``crawl_to_source``; ``Source`` and its readers;
- clean: ``apply_recipe`` with ``STEPS`` (``BASIC_RECIPE``, ``FULL_RECIPE``,
  ``TOKEN_RECIPE``), ``find_near_duplicates``, ``redact_text`` / ``find_pii``;
- version: ``create_dataset_version`` (task kind: ``DatasetTask``), ``release_dataset_version``,
  ``read_dataset_rows``, ``stratified_split``; ``freeze_dataset_version``, the one way a
  version is made (the annotation export and the retraining loop call it too), and
  ``freeze_sources`` behind ``create_dataset_version``;
- review: ``get_quality_report``, ``render_quality_html``, ``diff_dataset_versions``.

Functions that take an ``actor`` decide themselves whether the actor may (the project of
a dataset version is its name; sources belong to no project, so importing and reading
them takes a global role). Shells call those: ``find_sources``, ``show_source``,
``find_dataset_versions``, ``show_dataset_version``, ``read_dataset_page``,
``show_quality_report``. The readers that take ``db`` (``get_*``, ``list_*``, ``count_*``)
are for services that have decided already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chainkeeper.core.exports import lazy_exports

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
    from chainkeeper.data.connectors import (
        ParsedSource,
        Record,
        detect_format,
        parse_csv_text,
        read_conll,
        read_delimited,
        read_json,
        read_jsonl,
        read_parquet,
    )
    from chainkeeper.data.crawler import crawl, crawl_to_source, run_crawl_job
    from chainkeeper.data.diff import KINDS, VersionDiff, diff_dataset_versions
    from chainkeeper.data.identity import find_leakage, row_identities, text_identities
    from chainkeeper.data.ingest import (
        FORMATS,
        SPLITS,
        decode_csv_bytes,
        import_csv,
        import_file,
        store_records,
    )
    from chainkeeper.data.language import LANGUAGES, is_han_character, text_language
    from chainkeeper.data.near_duplicates import NearDuplicates, find_near_duplicates
    from chainkeeper.data.pii import PII_TYPES, PLACEHOLDERS, PREFILTER, find_pii, redact_text
    from chainkeeper.data.quality import (
        get_quality_report,
        get_split_leakage,
        render_quality_html,
        report_sections,
        show_quality_report,
    )
    from chainkeeper.data.sources import (
        Source,
        count_sources,
        find_sources,
        get_source,
        list_sources,
        read_source_rows,
        show_source,
    )
    from chainkeeper.data.splits import stratified_split
    from chainkeeper.data.text import detect_script
    from chainkeeper.data.versions import (
        SNAPSHOT_FORMAT,
        DatasetState,
        DatasetTask,
        DatasetVersion,
        count_dataset_versions,
        create_dataset_version,
        find_dataset_versions,
        freeze_dataset_version,
        freeze_sources,
        get_dataset_version,
        list_dataset_versions,
        project_of_dataset_version,
        read_dataset_page,
        read_dataset_rows,
        release_dataset_version,
        show_dataset_version,
        snapshot_schema,
    )

_EXPORTS = {
    "BASIC_RECIPE": "cleaning", "FULL_RECIPE": "cleaning", "STEPS": "cleaning", "TOKEN_RECIPE": "cleaning",
    "StepReport": "cleaning", "apply_recipe": "cleaning", "check_recipe": "cleaning",
    "ParsedSource": "connectors", "Record": "connectors",
    # The readers, values in, values out: a model's evaluation reads a file as an import does.
    "detect_format": "connectors", "read_conll": "connectors", "read_delimited": "connectors",
    "read_json": "connectors", "read_jsonl": "connectors", "read_parquet": "connectors",
    "crawl": "crawler", "crawl_to_source": "crawler",
    "KINDS": "diff", "VersionDiff": "diff", "diff_dataset_versions": "diff",
    "FORMATS": "ingest", "SPLITS": "ingest", "import_csv": "ingest", "import_file": "ingest",
    "store_records": "ingest",
    "find_leakage": "identity", "row_identities": "identity", "text_identities": "identity",
    "LANGUAGES": "language", "is_han_character": "language", "text_language": "language",
    "NearDuplicates": "near_duplicates", "find_near_duplicates": "near_duplicates",
    "PII_TYPES": "pii", "PLACEHOLDERS": "pii", "PREFILTER": "pii", "find_pii": "pii", "redact_text": "pii",
    "get_quality_report": "quality", "render_quality_html": "quality", "report_sections": "quality",
    "show_quality_report": "quality", "get_split_leakage": "quality",
    "Source": "sources", "count_sources": "sources", "find_sources": "sources", "get_source": "sources",
    "list_sources": "sources", "read_source_rows": "sources", "show_source": "sources",
    "stratified_split": "splits",
    "detect_script": "text",
    "SNAPSHOT_FORMAT": "versions", "DatasetState": "versions", "DatasetTask": "versions", "DatasetVersion": "versions",
    "count_dataset_versions": "versions", "create_dataset_version": "versions", "find_dataset_versions": "versions",
    "freeze_dataset_version": "versions", "freeze_sources": "versions", "get_dataset_version": "versions",
    "list_dataset_versions": "versions", "project_of_dataset_version": "versions", "read_dataset_page": "versions",
    "read_dataset_rows": "versions", "release_dataset_version": "versions", "show_dataset_version": "versions",
    "snapshot_schema": "versions",
    "run_crawl_job": "crawler",
    "decode_csv_bytes": "ingest",
    "parse_csv_text": "connectors",
}

# Literal, so type checkers and linters see the exports; tests/test_layers.py keeps it equal to _EXPORTS.
__all__ = [
    "BASIC_RECIPE",
    "DatasetState",
    "DatasetTask",
    "DatasetVersion",
    "FORMATS",
    "FULL_RECIPE",
    "KINDS",
    "LANGUAGES",
    "NearDuplicates",
    "PII_TYPES",
    "PLACEHOLDERS",
    "PREFILTER",
    "ParsedSource",
    "Record",
    "SNAPSHOT_FORMAT",
    "SPLITS",
    "STEPS",
    "Source",
    "StepReport",
    "TOKEN_RECIPE",
    "VersionDiff",
    "apply_recipe",
    "check_recipe",
    "count_dataset_versions",
    "count_sources",
    "crawl",
    "crawl_to_source",
    "create_dataset_version",
    "decode_csv_bytes",
    "detect_format",
    "detect_script",
    "diff_dataset_versions",
    "find_dataset_versions",
    "find_leakage",
    "find_near_duplicates",
    "find_pii",
    "find_sources",
    "freeze_dataset_version",
    "freeze_sources",
    "get_dataset_version",
    "get_quality_report",
    "get_source",
    "get_split_leakage",
    "import_csv",
    "import_file",
    "is_han_character",
    "list_dataset_versions",
    "list_sources",
    "parse_csv_text",
    "project_of_dataset_version",
    "read_conll",
    "read_dataset_page",
    "read_dataset_rows",
    "read_delimited",
    "read_json",
    "read_jsonl",
    "read_parquet",
    "read_source_rows",
    "redact_text",
    "release_dataset_version",
    "render_quality_html",
    "report_sections",
    "row_identities",
    "run_crawl_job",
    "show_dataset_version",
    "show_quality_report",
    "show_source",
    "snapshot_schema",
    "store_records",
    "stratified_split",
    "text_identities",
    "text_language",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
