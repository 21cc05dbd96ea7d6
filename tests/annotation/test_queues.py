"""Projects, queues and answers: overlap, order, own-queue-only, and what bad input leaves."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from chainkeeper.annotation.projects import QueueOrder, assign_batches, create_project, list_projects, queue_positions
from chainkeeper.annotation.schemas import LabelSchema
from chainkeeper.annotation.tasks import annotator_queue, get_task, save_annotation
from chainkeeper.core.context import Context
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput
from chainkeeper.core.schema import metadata
from chainkeeper.data.versions import DatasetVersion
from tests.annotation.conftest import ANA, BEN, STEWARD


def _counts(ctx: Context) -> dict[str, int]:
    with ctx.db.engine.connect() as conn:
        return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables}


def _project(ctx: Context, version: DatasetVersion, schema: LabelSchema, **kwargs: object) -> int:
    args = {"name": "p1", "overlap_k": 2, "overlap_fraction": 0.5, **kwargs}
    project = create_project(ctx, dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD, **args)
    assign_batches(ctx, project.id, annotators=[ANA.name, BEN.name], actor=STEWARD, batch_size=4)
    return project.id


def test_items_are_dealt_with_k_annotators_on_the_overlap(ctx: Context, version: DatasetVersion,
                                                          schema: LabelSchema) -> None:
    project_id = _project(ctx, version, schema)
    mine, theirs = annotator_queue(ctx, project_id, ANA), annotator_queue(ctx, project_id, BEN)
    rows = version.stats["rows"]
    both = {t.item_id for t in mine} & {t.item_id for t in theirs}
    assert len(both) == round(rows * 0.5) and all(t.overlap for t in mine if t.item_id in both)
    assert len({t.item_id for t in mine} | {t.item_id for t in theirs}) == rows  # every item is in a queue
    assert abs(len(mine) - len(theirs)) <= 1
    assert [t.batch for t in mine][:5] == [1, 1, 1, 1, 2]
    assert [p.name for p in list_projects(ctx.db, annotator=ANA.name)] == ["p1"]


def test_queue_orders_are_random_by_seed_by_metadata_and_by_score() -> None:
    rows = [{"text": "x" * n, "label": lab} for n, lab in ((3, "b"), (1, "a"), (2, "c"))]
    assert queue_positions(rows, QueueOrder.METADATA, seed=1, order_key="length") == [2.0, 0.0, 1.0]
    assert queue_positions(rows, QueueOrder.METADATA, seed=1, order_key="label") == [1.0, 0.0, 2.0]
    assert queue_positions(rows, QueueOrder.ACTIVE, seed=1, scores=[0.1, None, 0.9]) == [1.0, 2.0, 0.0]
    assert queue_positions(rows, QueueOrder.RANDOM, seed=1) == queue_positions(rows, QueueOrder.RANDOM, seed=1)
    assert sorted(queue_positions(rows, QueueOrder.RANDOM, seed=1)) == [0.0, 1.0, 2.0]


def test_an_annotator_labels_only_their_own_queue(ctx: Context, version: DatasetVersion, schema: LabelSchema) -> None:
    project_id = _project(ctx, version, schema, overlap_fraction=0.0, overlap_k=1)
    ben_only = next(t for t in annotator_queue(ctx, project_id, BEN))
    before = _counts(ctx)
    with pytest.raises(Forbidden, match=f"Item {ben_only.item_id} is not assigned to ana"):
        save_annotation(ctx, project_id, ben_only.item_id, ANA, expected_version=0, value={"label": "lost_card"})
    with pytest.raises(Forbidden, match="not assigned to ana"):
        get_task(ctx, project_id, ben_only.item_id, ANA)
    with pytest.raises(Forbidden, match="annotation.manage"):
        annotator_queue(ctx, project_id, ANA, annotator=BEN.name)
    assert _counts(ctx) == before
    # the data steward sees every queue
    assert annotator_queue(ctx, project_id, STEWARD, annotator=BEN.name)[0].item_id == ben_only.item_id


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        pytest.param({"value": {"label": "pizza_order"}}, InvalidInput, "'pizza_order' is not in schema intents v1",
                     id="label-outside-schema"),
        pytest.param({"value": {"labels": ["lost_card"]}}, InvalidInput, "one label per item", id="wrong-shape"),
        pytest.param({"value": None}, InvalidInput, "Nothing to save", id="nothing"),
        pytest.param({"value": {"label": "lost_card"}, "expected_version": 3}, Conflict, "changed since you loaded it",
                     id="stale-version"),
    ],
)
def test_bad_answers_are_refused_and_change_nothing(ctx: Context, version: DatasetVersion, schema: LabelSchema,
                                                    kwargs: dict, error: type, fragment: str) -> None:
    project_id = _project(ctx, version, schema)
    task = annotator_queue(ctx, project_id, ANA)[0]
    first = save_annotation(ctx, project_id, task.item_id, ANA, expected_version=0, value={"label": "change_pin"})
    before = _counts(ctx)
    args = {"expected_version": first.version, **kwargs}
    with pytest.raises(error, match=fragment):
        save_annotation(ctx, project_id, task.item_id, ANA, **args)
    assert _counts(ctx) == before
    assert get_task(ctx, project_id, task.item_id, ANA).answer.value == {"label": "change_pin"}


def test_an_empty_project_is_refused_and_nothing_is_stored(ctx: Context, version: DatasetVersion,
                                                           schema: LabelSchema) -> None:
    before = _counts(ctx)
    with pytest.raises(InvalidInput, match="would be empty"):
        create_project(ctx, name="empty", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                       row_filter={"text_contains": "no text says this"})
    with pytest.raises(InvalidInput, match="Unknown filter key"):
        create_project(ctx, name="bad", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                       row_filter={"colour": "red"})
    with pytest.raises(InvalidInput, match="overlap_k of at least 2"):
        create_project(ctx, name="bad", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                       overlap_fraction=0.2)
    with pytest.raises(Forbidden, match="annotation.manage"):
        create_project(ctx, name="bad", dataset_version_id=version.id, schema_id=schema.id, actor=ANA)
    assert _counts(ctx) == before


def test_a_filter_and_a_seeded_sample_choose_the_rows(ctx: Context, version: DatasetVersion,
                                                      schema: LabelSchema) -> None:
    project = create_project(ctx, name="cards", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                             row_filter={"labels": ["lost_card", "card_arrival", "change_pin"], "limit": 4})
    assert assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD) == {"ana": 4}
    assert assign_batches(ctx, project.id, annotators=[ANA.name], actor=STEWARD) == {"ana": 0}  # all dealt
    with pytest.raises(InvalidInput, match="may not label"):
        assign_batches(ctx, project.id, annotators=[STEWARD.name], actor=STEWARD)


def test_answers_settle_items_as_done_or_disputed(ctx: Context, version: DatasetVersion, schema: LabelSchema) -> None:
    project_id = _project(ctx, version, schema, overlap_fraction=1.0)
    items = [t.item_id for t in annotator_queue(ctx, project_id, ANA)][:3]
    for i, item_id in enumerate(items):
        save_annotation(ctx, project_id, item_id, ANA, expected_version=0, value={"label": "lost_card"})
        assert get_task(ctx, project_id, item_id, ANA).state == "open"  # waiting for the second answer
        other = "lost_card" if i != 1 else "refund_request"
        save_annotation(ctx, project_id, item_id, BEN, expected_version=0, value={"label": other})
    states = [get_task(ctx, project_id, i, ANA).state for i in items]
    assert states == ["done", "disputed", "done"]
    skipped = save_annotation(ctx, project_id, items[0], ANA, expected_version=1, skip=True)
    assert skipped.status == "skipped" and skipped.version == 2
    assert get_task(ctx, project_id, items[0], ANA).state == "open"


def test_concurrent_saves_of_one_answer_keep_exactly_one(any_ctx: Context, tmp_path) -> None:
    """Real threads race to save the same annotator's answer from the same version:
    one wins, the others get a Conflict, and no save is lost silently."""
    import threading

    from chainkeeper.annotation.schemas import define_schema
    from tests.annotation.conftest import make_users, make_version

    ctx = any_ctx
    make_users(ctx)
    version = make_version(ctx, tmp_path / "sample")
    schema = define_schema(ctx.db, name="intents", kind="single", labels=["lost_card", "refund_request", "change_pin"],
                           actor=STEWARD)
    project_id = _project(ctx, version, schema, overlap_fraction=1.0)
    item_id = annotator_queue(ctx, project_id, ANA)[0].item_id
    save_annotation(ctx, project_id, item_id, ANA, expected_version=0, value={"label": "lost_card"})
    writers = 6
    barrier = threading.Barrier(writers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def write(n: int) -> None:
        label = ["refund_request", "change_pin"][n % 2]
        barrier.wait()
        try:
            save_annotation(ctx, project_id, item_id, ANA, expected_version=1, value={"label": label})
            result = "saved:" + label
        except Conflict as exc:
            assert "changed since you loaded it" in exc.message
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tally = Counter(o.split(":")[0] for o in outcomes)
    assert tally == {"saved": 1, "conflict": writers - 1}
    answer = get_task(ctx, project_id, item_id, ANA).answer
    winner = next(o for o in outcomes if o.startswith("saved")).split(":")[1]
    assert answer.version == 2 and answer.value == {"label": winner}

    # Two annotators answering the same overlap item at once both keep their work.
    barrier2 = threading.Barrier(2)
    second = annotator_queue(ctx, project_id, ANA)[1].item_id

    def answer_as(actor: object) -> None:
        barrier2.wait()
        save_annotation(ctx, project_id, second, actor, expected_version=0, value={"label": "change_pin"})

    pair = [threading.Thread(target=answer_as, args=(a,)) for a in (ANA, BEN)]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    assert get_task(ctx, project_id, second, ANA).state == "done"
    assert get_task(ctx, project_id, second, BEN).answer.version == 1


def test_a_metadata_order_sorts_the_queue_by_a_row_column(ctx: Context, version: DatasetVersion,
                                                          schema: LabelSchema) -> None:
    project_id = _project(ctx, version, schema, name="by-length", overlap_fraction=0.0, overlap_k=1,
                          queue_order="metadata", order_key="length")
    lengths = [len(t.text) for t in annotator_queue(ctx, project_id, ANA)]
    assert lengths == sorted(lengths)
    with pytest.raises(InvalidInput, match="No row has a value for the order key 'colour'"):
        create_project(ctx, name="bad", dataset_version_id=version.id, schema_id=schema.id, actor=STEWARD,
                       queue_order="metadata", order_key="colour")
