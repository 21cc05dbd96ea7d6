"""The reproducibility record of a run, and re-running a record to check it.

Before it trains, the job stores with the run what decides its numbers: the seed, the
library versions (Python, torch, transformers, tokenizers), the torch thread count, the
dataset version's content hash, a hash of the config and the code version (package
version and git commit, or ``unknown`` outside a checkout).

``reproduce_run`` starts a new run from a record: the same dataset version (its hash
checked again), base model and config. ``compare_reproduction`` then sets the two runs'
headline metrics side by side and says whether each agrees within the tolerance. On a
CPU with the same thread count the loop is deterministic, so the default tolerance
(``DEFAULT_TOLERANCE``, absolute, on metrics in [0, 1] and on losses) is tight; other
hardware or thread counts change float summation order, which is what it allows for.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainkeeper.core.errors import Conflict, InvalidInput
from chainkeeper.data import get_dataset_version
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.training.config import TrainConfig
from chainkeeper.training.runs import (
    FROM_SCRATCH,
    Run,
    RunState,
    get_run,
    project_of_run,
    start_training_run,
)

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = ["DEFAULT_TOLERANCE", "Reproduction", "build_record", "code_version", "compare_reproduction",
           "config_hash", "library_versions", "reproduce_run"]

DEFAULT_TOLERANCE = 0.005
LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors")
# The split metrics compared when checking a reproduction (those a split has).
COMPARED = ("accuracy", "macro_f1", "f1", "loss")


def config_hash(config: TrainConfig) -> str:
    """sha256 of the config's canonical JSON (sorted keys): equal configs, equal hashes."""
    return hashlib.sha256(json.dumps(config.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Python and the installed versions of the libraries that decide the numbers."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def code_version() -> dict[str, str]:
    """The chainkeeper package version and the git commit of its checkout ('unknown'
    when the code does not run from a git checkout or git is absent)."""
    try:
        package = metadata.version("chainkeeper")
    except metadata.PackageNotFoundError:
        package = "unknown"
    commit = "unknown"
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": package, "git_commit": commit}


def build_record(config: TrainConfig, *, dataset_hash: str, torch_threads: int) -> dict[str, Any]:
    """The record stored with a run before it trains.

    Args:
        config: the run's config.
        dataset_hash: the dataset version's content hash.
        torch_threads: the intra-op threads the job trains with.
    """
    return {"seed": config.seed, "config_hash": config_hash(config), "dataset_hash": dataset_hash,
            "libraries": library_versions(), "code": code_version(), "torch_threads": torch_threads}


def reproduce_run(ctx: Context, run_id: int, *, actor: Actor) -> Run:
    """Start a new run from a finished run's record: same data, base model and config.

    Args:
        run_id: the run to reproduce (it must have succeeded and have a record).
        actor: who asks (``run.create`` in the run's project); the new run is theirs.

    Returns:
        The new run, queued.

    Raises:
        Forbidden: the actor may not create runs in the run's project.
        NotFound: no such run.
        Conflict: the run did not succeed, or has no reproducibility record.
        InvalidInput: the dataset version's content no longer matches the record.
    """
    authorize_object(ctx.db, actor, "run.create", lambda: project_of_run(ctx.db, run_id))
    run = get_run(ctx.db, run_id)
    if run.state != RunState.SUCCEEDED or not run.reproducibility:
        raise Conflict(f"Training run {run_id} is {run.state} and has "
                       f"{'a' if run.reproducibility else 'no'} reproducibility record; only a succeeded run "
                       "with a record can be reproduced.", hint="Pick a succeeded run ('chainkeeper train list').")
    version = get_dataset_version(ctx.db, run.dataset_version_id)
    if version.content_hash != run.reproducibility.get("dataset_hash"):
        raise InvalidInput(f"Dataset version {version.id} now hashes to {version.content_hash[:12]}, not "
                           f"{str(run.reproducibility.get('dataset_hash'))[:12]} as recorded by run {run_id}.",
                           hint="The data changed under the record; it cannot be reproduced.")
    base = None if run.base_model == FROM_SCRATCH else Path(run.base_model)
    # An experiment on a draft is reproduced as one, under the original's override.
    return start_training_run(ctx, dataset_version_id=run.dataset_version_id, config=run.train_config, actor=actor,
                              base_model=base, allow_draft=run.draft_override)


@dataclass(frozen=True)
class Reproduction:
    """Two runs' headline metrics and whether they agree within ``tolerance``."""

    original: int
    rerun: int
    tolerance: float
    rows: list[dict[str, Any]]  # {"split", "metric", "original", "rerun", "difference", "within"}
    record_differences: dict[str, list[Any]]  # record keys whose values differ: [original, rerun]

    @property
    def reproduced(self) -> bool:
        return bool(self.rows) and all(r["within"] for r in self.rows)


def compare_reproduction(original: Run, rerun: Run, *, tolerance: float = DEFAULT_TOLERANCE) -> Reproduction:
    """Compare a rerun's metrics with the original's (values in, values out).

    Args:
        original: the reproduced run.
        rerun: the run ``reproduce_run`` started (finished).
        tolerance: the largest absolute difference that still agrees.

    Raises:
        InvalidInput: a negative tolerance, or the rerun has not succeeded.
    """
    if tolerance < 0:
        raise InvalidInput(f"tolerance must not be negative, got {tolerance}.")
    if rerun.state != "succeeded":
        raise InvalidInput(f"Run {rerun.id} is {rerun.state}; compare once it has succeeded.",
                           hint=f"Follow it with 'chainkeeper train logs {rerun.id} -f'.")
    rows = []
    for split in ("dev", "test"):
        a, b = original.metrics.get(split) or {}, rerun.metrics.get(split) or {}
        for metric in COMPARED:
            if isinstance(a.get(metric), int | float) and isinstance(b.get(metric), int | float):
                diff = abs(float(b[metric]) - float(a[metric]))
                rows.append({"split": split, "metric": metric, "original": a[metric], "rerun": b[metric],
                             "difference": diff, "within": diff <= tolerance})
    a_loss = (original.metrics.get("train") or {}).get("final_loss")
    b_loss = (rerun.metrics.get("train") or {}).get("final_loss")
    if isinstance(a_loss, int | float) and isinstance(b_loss, int | float):
        diff = abs(b_loss - a_loss)
        rows.append({"split": "train", "metric": "final_loss", "original": a_loss, "rerun": b_loss,
                     "difference": diff, "within": diff <= tolerance})
    flat_a, flat_b = _flatten(original.reproducibility), _flatten(rerun.reproducibility)
    differences = {k: [flat_a.get(k), flat_b.get(k)] for k in sorted(set(flat_a) | set(flat_b))
                   if flat_a.get(k) != flat_b.get(k)}
    return Reproduction(original=original.id, rerun=rerun.id, tolerance=tolerance, rows=rows,
                        record_differences=differences)


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
