"""A served model with a real lineage: dataset version -> run -> model version -> deployment.

``served`` stores a small real dataset version (a Parquet snapshot with train and test
splits in the artefact store; the row is inserted directly, the data stage tests its own
path, as ``tests/model_rows.py`` does for runs), records a succeeded run whose model is
the tiny 6-label classifier stored in the artefact store, registers and promotes it,
deploys it as ``support`` and serves texts through ``serve_predictions``, so the
prediction log holds real rows with real request ids.

Test modules import the fixtures they use from here (``from tests.monitoring.chain import
served``): they are plain module fixtures, not a conftest, so other suites of this folder
are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chainkeeper.core.context import Context
from chainkeeper.data.tables import SqlDatasetVersion
from chainkeeper.data.versions import content_hash
from chainkeeper.governance.actors import Actor
from chainkeeper.registry.versions import ModelVersion, Stage, register_model_version, transition_stage
from chainkeeper.serving.deployments import deploy_model_version, serve_predictions
from chainkeeper.serving.runtime import PredictorCache
from chainkeeper.training.runs import finish_run
from chainkeeper.training.tables import SqlRun
from tests.model_rows import ENGINEER, LABELS, RELEASER, save_tiny_classifier

STEWARD = Actor("dana", frozenset({"data_steward"}))
OPERATOR = Actor("otto", frozenset({"operator"}))
# Offline numbers the registry holds for the version (as a real run stores them).
OFFLINE = {"test": {"accuracy": 0.9, "macro_f1": 0.85, "calibration": {"ece": 0.05}}}
# Short banking-like questions: the in-distribution side (the first 40 train, the rest test).
IN_DISTRIBUTION = [f"how do I check the {w} of my card {i}" for i in range(20)
                   for w in ("balance", "limit", "pin", "status")]


@dataclass
class Served:
    ctx: Context
    version: ModelVersion
    deployment: str
    predictors: PredictorCache

    def serve(self, texts: list[str]) -> list[str]:
        """Serve texts; return their request ids."""
        out = []
        for start in range(0, len(texts), 64):
            served = serve_predictions(self.ctx, self.predictors, self.deployment, texts[start:start + 64])
            out += [p.request_id for p in served.predictions]
        return out


def store_dataset_version(ctx: Context, rows: list[tuple[str, str, str]], *, name: str = "support-intents") -> int:
    """A released dataset version of (text, label, split) rows; returns its id."""
    table = pa.table({"row_id": list(range(len(rows))), "text": [r[0] for r in rows], "label": [r[1] for r in rows],
                      "split": [r[2] for r in rows], "source_id": [1] * len(rows),
                      "source_line": list(range(2, len(rows) + 2))})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with ctx.db.session() as s:
        row = SqlDatasetVersion(name=name, version=1, content_hash=content_hash(table),
                                snapshot_artifact=ctx.artifacts.put_bytes(sink.getvalue().to_pybytes()),
                                state="released", owner=STEWARD.name, created_by=STEWARD.name)
        s.add(row)
        s.flush()
        return row.id


def serve_model(ctx: Context, classifier_dir: Path) -> Served:
    """Build the whole lineage in ``ctx`` and deploy it as ``support``."""
    dataset_id = store_dataset_version(ctx, [(text, LABELS[i % len(LABELS)], "train" if i < 40 else "test")
                                             for i, text in enumerate(IN_DISTRIBUTION)])
    with ctx.db.session() as s:
        run = SqlRun(task="sequence-classification", dataset_version_id=dataset_id, base_model="tiny",
                     state="queued", created_by=ENGINEER.name)
        s.add(run)
        s.flush()
        run_id = run.id
    finish_run(ctx.db, run_id, metrics=OFFLINE, model_artifact=ctx.artifacts.put_tree(classifier_dir))
    version = register_model_version(ctx, run_id=run_id, name="intents", actor=ENGINEER)
    transition_stage(ctx, version.id, Stage.STAGING, actor=RELEASER)
    version = transition_stage(ctx, version.id, Stage.PRODUCTION, actor=RELEASER)
    deploy_model_version(ctx, name="support", model_version_id=version.id, actor=RELEASER)
    return Served(ctx, version, "support", PredictorCache(ctx, batching=False))


@pytest.fixture(scope="module")
def classifier_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tiny_model_dir, tmp_path_factory.mktemp("classifier"))


@pytest.fixture
def served(ctx: Context, classifier_dir: Path) -> Iterator[Served]:
    result = serve_model(ctx, classifier_dir)
    yield result
    result.predictors.close()


@pytest.fixture
def any_served(any_ctx: Context, classifier_dir: Path) -> Iterator[Served]:
    result = serve_model(any_ctx, classifier_dir)
    yield result
    result.predictors.close()
