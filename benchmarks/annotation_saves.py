"""Saving answers: what a labelling page waits for, against a named baseline.

Measured: ``save_annotation`` (authorise, check the answer against the schema, the
optimistic version check, store, settle the item, audit-ledger entry), one transaction
per answer, for every item of one annotator's queue; then two annotators saving at once
from two threads (one overwriting her answers with their version, one answering anew).
Baseline: plain INSERTs of the same annotation rows, one transaction each, with none of
those checks. The ratio is the price of the rules.

The project is the built-in customer-service sample (train rows, 10 intents), overlap
20 % x 2, on a SQLite file in a temporary folder.

    python benchmarks/annotation_saves.py [--per-intent 60]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from _common import load_average  # benchmarks/ is the script's folder

from chainkeeper.annotation.projects import assign_batches, create_project
from chainkeeper.annotation.schemas import define_schema
from chainkeeper.annotation.tables import SqlAnnotation
from chainkeeper.annotation.tasks import annotator_queue, save_annotation
from chainkeeper.apps.customer_service.sample import INTENTS, generate_sample
from chainkeeper.chain import open_context
from chainkeeper.core import migrations
from chainkeeper.core.context import Context
from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.settings import load_settings
from chainkeeper.data.ingest import import_file
from chainkeeper.data.versions import create_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.bootstrap import seed_roles
from chainkeeper.governance.permissions import seed_permissions
from chainkeeper.governance.users import create_user

STEWARD = Actor("stella", frozenset({"data_steward"}))
ANA = Actor("ana", frozenset({"annotator"}))
BEN = Actor("ben", frozenset({"annotator"}))


def _store(folder: Path) -> Context:
    home = folder / "home"
    home.mkdir()
    db = Database(f"sqlite:///{home / 'chainkeeper.db'}")
    migrations.upgrade(db)
    seed_roles(db)
    seed_permissions(db)
    db.dispose()
    ctx = open_context(load_settings({}, home=home))
    create_user(ctx.db, STEWARD.name, roles=["data_steward"])
    for actor in (ANA, BEN):
        create_user(ctx.db, actor.name, roles=["annotator"])
    return ctx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-intent", type=int, default=60, help="Sample train rows per intent.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ck-bench-") as tmp:
        folder = Path(tmp)
        ctx = _store(folder)
        paths = generate_sample(folder / "sample", per_intent=args.per_intent)
        source = import_file(ctx, paths["train"], actor=STEWARD)
        version = create_dataset_version(ctx, name="intents", source_ids=[source.id], actor=STEWARD)
        schema = define_schema(ctx.db, name="intents", kind="single", labels=list(INTENTS), actor=STEWARD)
        project = create_project(ctx, name="bench", dataset_version_id=version.id, schema_id=schema.id,
                                 actor=STEWARD, overlap_k=2, overlap_fraction=0.2)
        assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD)
        mine, theirs = annotator_queue(ctx, project.id, ANA), annotator_queue(ctx, project.id, BEN)

        start = time.perf_counter()
        for task in mine:
            with ctx.db.session() as s:
                s.add(SqlAnnotation(project_id=project.id, item_id=task.item_id, annotator="baseline",
                                    schema_id=schema.id, value={"label": INTENTS[0]}, status="labelled",
                                    created_at=utcnow(), updated_at=utcnow()))
        baseline = (time.perf_counter() - start) / len(mine)

        start = time.perf_counter()
        for task in mine:
            save_annotation(ctx, project.id, task.item_id, ANA, expected_version=0, value={"label": INTENTS[0]})
        ours = (time.perf_counter() - start) / len(mine)

        def work(actor: Actor, tasks: list, version: int) -> None:
            for task in tasks:
                save_annotation(ctx, project.id, task.item_id, actor, expected_version=version,
                                value={"label": INTENTS[1]})

        threads = [threading.Thread(target=work, args=(ANA, mine, 1)),
                   threading.Thread(target=work, args=(BEN, theirs, 0))]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = time.perf_counter() - start
        ctx.close()
    print(f"project: {version.stats['rows']} items, overlap 20 % x 2; ana's queue {len(mine)}, ben's {len(theirs)}")
    print(f"baseline (plain INSERT, one transaction each): {baseline * 1000:.1f} ms per answer")
    print(f"save_annotation, one annotator:                {ours * 1000:.1f} ms per answer "
          f"({ours / baseline:.1f}x the baseline)")
    print(f"two annotators at once (threads):              {len(mine) + len(theirs)} saves in {both:.2f} s = "
          f"{(len(mine) + len(theirs)) / both:.0f} saves/s")
    print(f"measured on SQLite (WAL) in a temp folder; {load_average()} — the machine may be shared, "
          "so compare the ratio more than the milliseconds")


if __name__ == "__main__":
    main()
