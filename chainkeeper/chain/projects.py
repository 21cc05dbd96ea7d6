"""The project of any object of the chain, by kind: what authorisation is decided in.

A project is the name shared by a dataset's versions; every object downstream belongs to
the project of the data it came from (run → its dataset version, model version → its
run, deployment → its model version, prediction → its deployment). Each stage answers
for its own objects; this table, above them all, answers for a kind named at run time
(lineage, ownership).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from chainkeeper.core.errors import InvalidInput
from chainkeeper.data import project_of_dataset_version
from chainkeeper.monitoring import get_prediction
from chainkeeper.registry import project_of_model_version
from chainkeeper.serving import project_of_deployment
from chainkeeper.training import project_of_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context


def _numeric(kind: str, object_id: str) -> int:
    if not str(object_id).isdigit() or len(str(object_id)) > 18:
        raise InvalidInput(f"{kind} ids are numbers, got {object_id!r}.")
    return int(object_id)


_PROJECT_OF: dict[str, Callable[[Context, str], str | None]] = {
    "dataset_version": lambda ctx, i: project_of_dataset_version(ctx.db, _numeric("dataset_version", i)),
    "run": lambda ctx, i: project_of_run(ctx.db, _numeric("run", i)),
    "model_version": lambda ctx, i: project_of_model_version(ctx.db, _numeric("model_version", i)),
    "deployment": lambda ctx, i: project_of_deployment(ctx.db, _numeric("deployment", i)),
    "prediction": lambda ctx, i: project_of_deployment(ctx.db, get_prediction(ctx.db, i).deployment_id),
}


def project_of_object(ctx: Context, kind: str, object_id: str) -> str | None:
    """The project of one object.

    Raises:
        InvalidInput: a kind with no project, or a malformed id. NotFound: no such object.
    """
    try:
        finder = _PROJECT_OF[kind]
    except KeyError:
        raise InvalidInput(f"Objects of kind {kind!r} belong to no project.",
                           hint=f"Kinds: {', '.join(_PROJECT_OF)}.") from None
    return finder(ctx, str(object_id))
