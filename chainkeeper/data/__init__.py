"""Chainkeeper data stage: import files as sources, clean them, freeze dataset versions.

The public names are re-exported here and loaded on first use (PEP 562): importing the
package, which the schema does for ``chainkeeper.data.tables``, must not pull in
pyarrow, so the CLI and web shells start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chainkeeper.data.cleaning import BASIC_RECIPE, STEPS, StepReport, apply_recipe
    from chainkeeper.data.ingest import SPLITS, import_csv
    from chainkeeper.data.sources import Source, count_sources, get_source, list_sources, read_source_rows
    from chainkeeper.data.splits import stratified_split
    from chainkeeper.data.versions import (
        DatasetState,
        DatasetVersion,
        count_dataset_versions,
        create_dataset_version,
        get_dataset_version,
        list_dataset_versions,
        read_dataset_rows,
        release_dataset_version,
    )

_EXPORTS = {
    "BASIC_RECIPE": "cleaning", "STEPS": "cleaning", "StepReport": "cleaning", "apply_recipe": "cleaning",
    "SPLITS": "ingest", "import_csv": "ingest",
    "Source": "sources", "count_sources": "sources", "get_source": "sources", "list_sources": "sources",
    "read_source_rows": "sources",
    "stratified_split": "splits",
    "DatasetState": "versions", "DatasetVersion": "versions", "count_dataset_versions": "versions",
    "create_dataset_version": "versions", "get_dataset_version": "versions", "list_dataset_versions": "versions",
    "read_dataset_rows": "versions", "release_dataset_version": "versions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'chainkeeper.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"chainkeeper.data.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
