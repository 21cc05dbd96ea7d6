"""Drift checks on stored traffic, run now or as (recurring) ``drift`` jobs.

The I/O edge of ``monitoring.drift``: it finds the reference of the served model by
its lineage (model version -> run -> dataset version), reads a sample of that dataset
version (its test split when there is one: text the model never trained on, so its
confidences look like live traffic's; else dev, else train), runs the model over it
once (the profile is cached under ``<home>/cache/drift``), reads a window of the
prediction log, runs the checks and stores one ``SqlDriftResult`` per check, with an
audit entry per window.

Like is compared with like: the reference's labels and confidences are the model's own
answers on the reference texts (``profile_texts`` without ``served``), not the dataset's
labels, and the window's are what the same model version served (the log is filtered on
it), so the label checks see a change of traffic, not the model's errors.

A token tagger is checked with ``drift.TAGGER_CHECKS``: its reference is the entities it
finds in the test split's sentences (run once through the serving runtime, cached), the
window's are the entities the log stored for each served text; the entity-type checks
compare the two distributions, the other checks the texts as for a classifier.

A ``drift`` job checks one window and ends. Recurring checks are a schedule
(``schedule_drift_checks``): the scheduler queues one such job per period, so no worker
sleeps between checks and other jobs run in between.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa

from chainkeeper.core.db import Database, utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import Job, JobHandle, submit_job
from chainkeeper.core.scheduler import Schedule, create_schedule
from chainkeeper.data import detect_script, get_dataset_version, read_dataset_rows
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry, auditor
from chainkeeper.monitoring.access import authorize_for_deployment
from chainkeeper.monitoring.drift import (
    ALL_CHECKS,
    CLASSIFIER_CHECKS,
    DEFAULT_ALPHA,
    OOV_PIECES,
    TAGGER_CHECKS,
    CheckResult,
    Profile,
    entity_type_sample,
    run_checks,
)
from chainkeeper.monitoring.logwriter import flush_writers
from chainkeeper.monitoring.tables import SqlDriftResult, SqlPrediction
from chainkeeper.registry import get_model_version
from chainkeeper.serving import get_deployment_by_name, model_task, project_of_deployment
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.registry import ModelVersion
    from chainkeeper.training import TextClassifier

__all__ = [
    "JOB_KIND",
    "MIN_WINDOW",
    "MMD_MAX_ROWS",
    "REFERENCE_SAMPLE",
    "DriftResult",
    "Reference",
    "check_drift",
    "latest_drift_results",
    "list_drift_results",
    "load_model",
    "profile_texts",
    "reference_profile",
    "run_drift_job",
    "tagger_profile",
    "schedule_drift_checks",
    "submit_drift_job",
    "text_features",
]

JOB_KIND = "drift"
# Fewer served texts than this in a window make no check: the tests would say nothing.
MIN_WINDOW = 30
# Reference texts read from the dataset version (a seeded sample when it has more).
REFERENCE_SAMPLE = 500
# The MMD permutation test is O(n^2) per permutation: both sides are capped at this.
MMD_MAX_ROWS = 300


@dataclass(frozen=True)
class DriftResult:
    """A stored drift check (mirrors ``SqlDriftResult``)."""

    id: int
    deployment_id: int
    model_version_id: int
    check: str
    statistic: float
    threshold: float
    p_value: float | None
    drifted: bool
    window_start: datetime
    window_end: datetime
    window_size: int
    reference: str
    reference_dataset_version_id: int | None
    reference_size: int
    details: dict[str, Any]
    job_id: int | None
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class Reference:
    """Where a model's reference sample comes from, and its profile."""

    dataset_version_id: int
    description: str
    profile: Profile


def _to_result(row: SqlDriftResult) -> DriftResult:
    return DriftResult(id=row.id, deployment_id=row.deployment_id, model_version_id=row.model_version_id,
                       check=row.check_name, statistic=row.statistic, threshold=row.threshold, p_value=row.p_value,
                       drifted=row.drifted, window_start=row.window_start, window_end=row.window_end,
                       window_size=row.window_size, reference=row.reference,
                       reference_dataset_version_id=row.reference_dataset_version_id,
                       reference_size=row.reference_size, details=dict(row.details or {}), job_id=row.job_id,
                       created_by=row.created_by, created_at=row.created_at)


# --- the model and the features it sees --------------------------------------------------


def load_model(ctx: Context, model_version: ModelVersion) -> tuple[TextClassifier, Any]:
    """The version's classifier and tokenizer, from the same local cache serving uses."""
    from chainkeeper.monitoring._training import TextClassifier  # loads torch

    digest = model_version.model_artifact
    folder = ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest)
    return TextClassifier.load(folder)


def _encode(model: TextClassifier, tokenizer: Any, texts: list[str], batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n, k) and mean-pooled encoder states (n, hidden), in input order."""
    import torch

    probs = np.empty((len(texts), len(model.meta.labels)), dtype=np.float32)
    pooled = np.empty((len(texts), model.encoder.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # pad each batch to its own longest
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=model.meta.max_length, return_tensors="pt")
            hidden = model.encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, t, 1)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (b, h)
            head_in = hidden[:, 0] if model.meta.pooling == "cls" else mean
            probs[idx] = torch.softmax(model.head(head_in).float(), dim=-1).numpy()
            pooled[idx] = mean.float().numpy()
    return probs, pooled


def text_features(tokenizer: Any, texts: list[str]) -> tuple[list[int], list[int], list[str]]:
    """Words, out-of-vocabulary words and dominant script of each text.

    A word (split on whitespace) is out of vocabulary when the tokenizer maps a piece of
    it to its unknown token or splits it into ``OOV_PIECES`` or more pieces.
    """
    import pyarrow as pa

    words = [t.split() or [""] for t in texts]
    enc = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    unk = tokenizer.unk_token_id
    lengths, oov = [], []
    for i, _ws in enumerate(words):
        pieces: dict[int, int] = {}
        unknown: set[int] = set()
        for token_id, word_id in zip(enc["input_ids"][i], enc.word_ids(i), strict=True):
            if word_id is None:
                continue
            pieces[word_id] = pieces.get(word_id, 0) + 1
            if token_id == unk:
                unknown.add(word_id)
        lengths.append(len(texts[i].split()))
        oov.append(sum(1 for w, count in pieces.items() if count >= OOV_PIECES or w in unknown))
    scripts = detect_script(pa.array(texts, pa.string())).to_pylist()
    return lengths, oov, scripts


def profile_texts(model: TextClassifier, tokenizer: Any, texts: list[str], *,
                  served: list[tuple[str, float]] | None = None) -> Profile:
    """The profile of texts as the model sees them.

    Args:
        served: the (label, confidence) answered for each text, from the log; None:
            take the model's own answers (the reference side).
    """
    probs, pooled = _encode(model, tokenizer, texts)
    if served is None:
        best = probs.argmax(axis=1)
        labels = [model.meta.labels[i] for i in best]
        confidences = [float(probs[i, j]) for i, j in enumerate(best)]
    else:
        labels, confidences = [s[0] for s in served], [float(s[1]) for s in served]
    lengths, oov, scripts = text_features(tokenizer, texts)
    return Profile(labels=labels, confidences=confidences, lengths=lengths, oov_words=oov, scripts=scripts,
                   embeddings=pooled)


def _is_tagger(ctx: Context, model_version: ModelVersion) -> bool:
    return model_task(ctx, model_version.model_artifact) == "token-classification"


def tagger_profile(ctx: Context, model_version: ModelVersion, texts: list[str], *,
                   served: list[tuple[str, float, list[dict[str, Any]] | None]] | None = None) -> Profile:
    """The profile of texts as a tagger sees them: its entities' types, its confidence, the texts' features.

    Args:
        served: per text, the (label, confidence, entities) the log holds; None: tag the
            texts now with the version (the reference side).
    """
    from chainkeeper.monitoring._serving import load_predictor  # loads torch

    predictor = load_predictor(ctx, model_version)
    if served is None:
        answers = [p for start in range(0, len(texts), 256) for p in predictor.predict(texts[start:start + 256])]
        served = [(p.label, p.score, p.entities) for p in answers]
    lengths, oov, scripts = text_features(predictor.tokenizer, texts)
    types = entity_type_sample([[str(e["type"]) for e in entities or ()] for _, _, entities in served])
    return Profile(labels=[s[0] for s in served], confidences=[float(s[1]) for s in served], lengths=lengths,
                   oov_words=oov, scripts=scripts, embeddings=None, entity_types=types)


# --- the reference --------------------------------------------------------------------


def reference_profile(ctx: Context, model_version: ModelVersion, *, sample: int = REFERENCE_SAMPLE,
                      model: tuple[TextClassifier, Any] | None = None) -> Reference:
    """The reference of a model version: a sample of the dataset version it was trained on.

    Args:
        sample: at most this many texts (a seeded sample).
        model: the loaded classifier and tokenizer, when the caller has them.

    Raises:
        NotFound: the run or dataset version is gone. InvalidInput: it has no rows.
    """
    run = get_run(ctx.db, model_version.run_id)
    dataset = get_dataset_version(ctx.db, run.dataset_version_id)
    cache = ctx.settings.home / "cache" / "drift" / f"{model_version.model_artifact[:16]}-{dataset.id}-{sample}"
    if (cache / "profile.json").is_file():
        meta = json.loads((cache / "profile.json").read_text(encoding="utf-8"))
        embeddings = np.load(cache / "embeddings.npy") if (cache / "embeddings.npy").is_file() else None
        profile = Profile(**meta["profile"], embeddings=embeddings)
        return Reference(dataset.id, meta["description"], profile)
    table = read_dataset_rows(ctx, dataset.id)
    splits = table.column("split").to_pylist()
    split = next((s for s in ("test", "dev", "train") if s in splits), None)
    if split is None:
        raise InvalidInput(f"Dataset version {dataset.name} v{dataset.version} (id {dataset.id}) has no rows to "
                           "compare traffic with.", hint="Train the model on a dataset version with rows.")
    tagger = _is_tagger(ctx, model_version)
    if tagger and "tokens" in table.column_names:  # a tagger reads the sentences as a caller would send them
        texts = [" ".join(words) for words, s in zip(table.column("tokens").to_pylist(), splits, strict=True)
                 if s == split and words]
    else:
        texts = [t for t, s in zip(table.column("text").to_pylist(), splits, strict=True) if s == split]
    if len(texts) > sample:
        texts = random.Random(0).sample(texts, sample)
    if tagger:
        profile = tagger_profile(ctx, model_version, texts)
        what = "sentences"
    else:
        classifier, tokenizer = model or load_model(ctx, model_version)
        profile = profile_texts(classifier, tokenizer, texts)
        what = "texts"
    description = (f"dataset version {dataset.name} v{dataset.version} (id {dataset.id}), {split} split, "
                   f"{len(texts)} {what}")
    cache.mkdir(parents=True, exist_ok=True)
    if profile.embeddings is not None:
        np.save(cache / "embeddings.npy", profile.embeddings)
    fields = {k: v for k, v in asdict(profile).items() if k != "embeddings"}
    (cache / "profile.json").write_text(json.dumps({"description": description, "profile": fields}),
                                        encoding="utf-8")
    return Reference(dataset.id, description, profile)


# --- checking a window ------------------------------------------------------------------


def _window_rows(db: Database, deployment_id: int, model_version_id: int, *, start: datetime | None,
                 end: datetime | None, last: int | None) -> list[SqlPrediction]:
    flush_writers(db)  # read this process's buffered log records too
    query = sa.select(SqlPrediction).where(SqlPrediction.deployment_id == deployment_id,
                                           SqlPrediction.model_version_id == model_version_id)
    if start is not None:
        query = query.where(SqlPrediction.at > start)
    if end is not None:
        query = query.where(SqlPrediction.at <= end)
    query = query.order_by(SqlPrediction.at.desc(), SqlPrediction.id)
    if last is not None:
        query = query.limit(last)
    with db.session(readonly=True) as s:
        rows = list(s.scalars(query))
        s.expunge_all()
    return rows[::-1]


def _subsample(x: np.ndarray, limit: int) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.random.default_rng(0).choice(len(x), limit, replace=False)]


def check_drift(ctx: Context, deployment: str, *, actor: Actor, start: datetime | None = None,
                end: datetime | None = None, last: int | None = None, checks: list[str] | None = None,
                alpha: float = DEFAULT_ALPHA, min_window: int = MIN_WINDOW, job_id: int | None = None,
                ) -> list[DriftResult]:
    """Check one window of a deployment's traffic against its model's reference, and store the results.

    The window holds the predictions answered by the deployment's current model version
    with ``start < at <= end`` (the latest ``last`` of them, when given).

    Args:
        actor: who asks (``monitoring.check`` in the deployment's project); recorded on each
            result and in the ledger.
        checks: names from ``drift.ALL_CHECKS`` that fit the model (default: ``drift.CHECKS``
            for a classifier, ``drift.TAGGER_CHECKS`` for a tagger).
        alpha: significance level of every test.
        min_window: refuse windows with fewer predictions.
        job_id: the job this check runs in, if any.

    Returns:
        The stored results, one per check, in ``ALL_CHECKS`` order.

    Raises:
        Forbidden: the actor may not check it. NotFound: no such deployment.
        InvalidInput: too few predictions in the window, an unknown check, alpha outside (0, 0.5).
    """
    authorize_for_deployment(ctx.db, actor, "monitoring.check", deployment)
    return _check_window(ctx, deployment, actor=actor, start=start, end=end, last=last, checks=checks, alpha=alpha,
                         min_window=min_window, job_id=job_id)


def _check_window(ctx: Context, deployment: str, *, actor: Actor, start: datetime | None, end: datetime | None,
                  last: int | None, checks: list[str] | None, alpha: float, min_window: int = MIN_WINDOW,
                  job_id: int | None = None) -> list[DriftResult]:
    if not 0 < alpha < 0.5:
        raise InvalidInput(f"alpha must lie between 0 and 0.5, got {alpha}.", hint="The usual choice is 0.01.")
    unknown = sorted(set(checks or ()) - set(ALL_CHECKS))
    if unknown:
        raise InvalidInput(f"Unknown drift check(s): {', '.join(unknown)}.", hint=f"Checks: {', '.join(ALL_CHECKS)}.")
    dep = get_deployment_by_name(ctx.db, deployment)
    version = get_model_version(ctx.db, dep.model_version_id)
    tagger = _is_tagger(ctx, version)
    kind_checks = TAGGER_CHECKS if tagger else CLASSIFIER_CHECKS
    wanted = list(checks or kind_checks)
    unfit = [c for c in wanted if c not in kind_checks]
    if unfit:
        raise InvalidInput(f"Check(s) {', '.join(unfit)} do not apply to {version.label}, a "
                           f"{'tagger' if tagger else 'classifier'}.", hint=f"Its checks: {', '.join(kind_checks)}.")
    rows = _window_rows(ctx.db, dep.id, version.id, start=start, end=end, last=last)
    if len(rows) < min_window:
        raise InvalidInput(
            f"Deployment {deployment!r} served {len(rows)} prediction(s) with {version.label} in this window; "
            f"a drift check needs at least {min_window}.",
            hint="Widen the window (--window / --last) or wait for more traffic.")
    if tagger:
        reference = reference_profile(ctx, version)
        window = tagger_profile(ctx, version, [r.input_text for r in rows],
                                served=[(r.label, r.score, r.entities or []) for r in rows])
        results = run_checks(reference.profile, window, alpha=alpha, checks=wanted)
        return _store(ctx.db, results, actor=actor, deployment_id=dep.id, model_version_id=version.id,
                      window=(rows[0].at, rows[-1].at, len(rows)), reference=reference, job_id=job_id)
    classifier, tokenizer = load_model(ctx, version)
    reference = reference_profile(ctx, version, model=(classifier, tokenizer))
    window = profile_texts(classifier, tokenizer, [r.input_text for r in rows],
                           served=[(r.label, r.score) for r in rows])
    ref_profile = Profile(**{**asdict(reference.profile),
                             "embeddings": _subsample(reference.profile.embeddings, MMD_MAX_ROWS)})
    win_profile = Profile(**{**asdict(window), "embeddings": _subsample(window.embeddings, MMD_MAX_ROWS)})
    results = run_checks(ref_profile, win_profile, alpha=alpha, checks=wanted)
    return _store(ctx.db, results, actor=actor, deployment_id=dep.id, model_version_id=version.id,
                  window=(rows[0].at, rows[-1].at, len(rows)), reference=reference, job_id=job_id)


# A threshold can be infinite (a one-category chi-square); JSON answers and charts cannot
# carry inf, so it is stored capped at this number, and shown as "inf" / "∞".
THRESHOLD_CAP = 1e12


def _finite(value: float) -> float:
    return float(min(value, THRESHOLD_CAP))


def _store(db: Database, results: list[CheckResult], *, actor: Actor, deployment_id: int, model_version_id: int,
           window: tuple[datetime, datetime, int], reference: Reference, job_id: int | None) -> list[DriftResult]:
    start, end, size = window
    with db.session() as s:
        rows = [SqlDriftResult(deployment_id=deployment_id, model_version_id=model_version_id, check_name=r.check,
                               statistic=_finite(r.statistic), threshold=_finite(r.threshold), p_value=r.p_value,
                               drifted=bool(r.drifted), window_start=start, window_end=end, window_size=size,
                               reference=reference.description,
                               reference_dataset_version_id=reference.dataset_version_id,
                               reference_size=len(reference.profile), details=r.details, job_id=job_id,
                               created_by=actor.name, created_at=utcnow()) for r in results]
        s.add_all(rows)
        s.flush()
        fired = [r.check for r in results if r.drifted]
        append_entry(s, actor, "monitoring.drift_check", "deployment", deployment_id,
                     details={"model_version_id": model_version_id, "window_size": size, "fired": fired,
                              "checks": [r.check for r in results], "job_id": job_id})
        return [_to_result(r) for r in rows]


def list_drift_results(db: Database, deployment: str, *, check: str | None = None, limit: int = 200
                       ) -> list[DriftResult]:
    """Stored results of a deployment, newest window first.

    Raises:
        NotFound: no such deployment.
    """
    dep = get_deployment_by_name(db, deployment)
    query = (sa.select(SqlDriftResult).where(SqlDriftResult.deployment_id == dep.id)
             .order_by(SqlDriftResult.window_end.desc(), SqlDriftResult.id.desc()).limit(limit))
    if check is not None:
        query = query.where(SqlDriftResult.check_name == check)
    with db.session(readonly=True) as s:
        return [_to_result(r) for r in s.scalars(query)]


def latest_drift_results(db: Database, deployment: str) -> dict[str, DriftResult]:
    """The newest stored result of each check of a deployment (what alerts and the page read)."""
    latest: dict[str, DriftResult] = {}
    for result in list_drift_results(db, deployment, limit=len(ALL_CHECKS) * 20):
        latest.setdefault(result.check, result)
    return latest


def show_drift_results(ctx: Context, deployment: str, *, actor: Actor, check: str | None = None,
                       limit: int = 200) -> tuple[list[DriftResult], dict[str, DriftResult]]:
    """A deployment's stored results, newest window first, and the newest of each check,
    for a reader (``monitoring.read`` in the deployment's project).

    Raises:
        Forbidden: the actor may not read it. NotFound: no such deployment.
    """
    authorize_for_deployment(ctx.db, actor, "monitoring.read", deployment)
    return (list_drift_results(ctx.db, deployment, check=check, limit=limit),
            latest_drift_results(ctx.db, deployment))


# --- as a job, or as a schedule of jobs -------------------------------------------------


def _check_job_args(ctx: Context, deployment: str, actor: Actor, **numbers: float | int | None) -> None:
    authorize_for_deployment(ctx.db, actor, "monitoring.check", deployment)
    for name, value in numbers.items():
        if value is not None and value <= 0:
            raise InvalidInput(f"{name} must be positive, got {value}.")


def _drift_params(deployment: str, *, last: int | None, window_s: float | None, checks: list[str] | None,
                  alpha: float) -> dict[str, Any]:
    unknown = sorted(set(checks or ()) - set(ALL_CHECKS))
    if unknown:
        raise InvalidInput(f"Unknown drift check(s): {', '.join(unknown)}.", hint=f"Checks: {', '.join(ALL_CHECKS)}.")
    params = {"deployment": deployment, "last": last, "window_s": window_s, "checks": checks, "alpha": alpha}
    return {k: v for k, v in params.items() if v is not None}


def submit_drift_job(ctx: Context, deployment: str, *, actor: Actor, last: int | None = None,
                     window_s: float | None = None, checks: list[str] | None = None,
                     alpha: float = DEFAULT_ALPHA) -> Job:
    """Queue one ``drift`` job for a deployment (checked to exist first).

    Args:
        last: check the latest this-many predictions.
        window_s: check the predictions of the last this-many seconds (default: 1 hour).

    Raises:
        Forbidden: the actor may not check it (``monitoring.check`` in the deployment's project).
        NotFound: no such deployment. InvalidInput: a non-positive number, an unknown check.
    """
    _check_job_args(ctx, deployment, actor, last=last, window_s=window_s)
    params = _drift_params(deployment, last=last, window_s=window_s, checks=checks, alpha=alpha)
    get_deployment_by_name(ctx.db, deployment)
    job = submit_job(ctx, JOB_KIND, params, actor=actor.name, project=project_of_deployment(ctx.db, deployment))
    with ctx.db.session() as s:
        append_entry(s, actor, "monitoring.drift_job", "job", job.id, details=job.params)
    return job


def schedule_drift_checks(ctx: Context, deployment: str, *, actor: Actor, every_s: float,
                          last: int | None = None, window_s: float | None = None,
                          checks: list[str] | None = None, alpha: float = DEFAULT_ALPHA) -> Schedule:
    """Check a deployment every ``every_s`` seconds: a schedule (``drift:<deployment>``) from
    which the scheduler queues one short ``drift`` job per period; the first is due now.

    Each check covers the last ``window_s`` seconds (default: the period, so the windows
    tile); a window with too little traffic is skipped, not failed.

    Raises:
        Forbidden: the actor may not check it (``monitoring.check`` in the deployment's project).
        NotFound: no such deployment. InvalidInput: a non-positive number, an unknown check,
        a period under a second. Conflict: the deployment has a drift schedule already.
    """
    _check_job_args(ctx, deployment, actor, last=last, window_s=window_s, every_s=every_s)
    params = _drift_params(deployment, last=last, window_s=window_s or (None if last else every_s), checks=checks,
                           alpha=alpha)
    get_deployment_by_name(ctx.db, deployment)
    return create_schedule(ctx, f"drift:{deployment}", JOB_KIND, {**params, "skip_small_windows": True},
                           every_s=every_s, actor=actor.name, project=project_of_deployment(ctx.db, deployment),
                           audit=auditor(actor, "monitoring.drift_schedule", "schedule"))


def run_drift_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """The ``drift`` handler: one check of one window, then the job ends.

    With ``skip_small_windows`` (a scheduled check) a window with too little traffic is
    logged and skipped instead of failing the job.

    Returns:
        ``{"checks_run", "fired": [[window_end, check], ...], "skipped"}``.
    """
    params = job.params
    deployment = str(params.get("deployment", ""))
    window = timedelta(seconds=float(params.get("window_s") or 3600))
    # Authorised when it was queued or scheduled: the job acts as its submitter.
    actor = Actor(job.job.created_by, frozenset(), request_id=f"job:{job.id}")
    end = utcnow()
    job.check_cancelled()
    try:
        results = _check_window(ctx, deployment, actor=actor, start=None if params.get("last") else end - window,
                                end=end, last=params.get("last"), checks=params.get("checks"),
                                alpha=float(params.get("alpha", DEFAULT_ALPHA)), job_id=job.id)
    except InvalidInput as exc:
        if not params.get("skip_small_windows") or "needs at least" not in exc.message:
            raise
        job.log(f"skipped: {exc.message}")
        return {"checks_run": 0, "fired": [], "skipped": 1}
    job.log(f"window of {results[0].window_size} predictions: "
            + ", ".join(f"{r.check} {r.statistic:.3g}/{r.threshold:.3g}{' FIRED' if r.drifted else ''}"
                        for r in results))
    return {"checks_run": 1, "fired": [[r.window_end.isoformat(), r.check] for r in results if r.drifted],
            "skipped": 0}
