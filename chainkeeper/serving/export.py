"""Export a registered model version to ONNX (optionally int8), check it, record it.

``export_model_version`` loads the version's PyTorch classifier, exports its whole
forward (encoder, mean pooling, head) to ONNX with dynamic batch and sequence axes,
optionally quantises the weights to int8 (dynamic quantisation), and measures each form
on the dataset version's test split: accuracy, the delta against PyTorch in points, and
batch-1 latency. A form passes the gate when it loses at most ``max_delta_points``.

A token tagger (``chainkeeper.json`` says ``token-classification``) is exported with
per-token logits (batch x sequence x tags, and a ``cases`` input when it reads word
shapes) and scored by entity F1 (seqeval) on the test split's sentences instead of
accuracy: ``metric`` says which, ``accuracy`` fields then hold entity F1, and each form
records ``agreement``, the share of words it tags as PyTorch does.

Where the record lives, without a schema change: the ``.onnx`` files and a JSON manifest
go to the artefact store (content-addressed, so their digests are their identity), and
the ``model.export`` ledger entry of the version names the manifest's digest. The latest
such entry is the version's current export (``latest_export``); the runtime serves the
best passing form from it (onnx-int8 > onnx > torch).

An export is long work: ``request_export`` checks who asks and that the version's
folder is complete (weights, head, label map, tokenizer) before anything is queued,
then submits an ``export`` job that a worker runs (``run_export_job``), with progress.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import InvalidInput
from chainkeeper.core.jobs import Job, JobHandle, submit_job
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import append_entry, list_entries
from chainkeeper.governance.permissions import authorize_object
from chainkeeper.registry import get_model_version, project_of_model_version
from chainkeeper.training import get_run

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.training import TextClassifier

__all__ = [
    "DEFAULT_MAX_DELTA_POINTS",
    "ENGINES",
    "OPSET",
    "ExportResult",
    "ExportedForm",
    "accuracy_of",
    "check_model_files",
    "export_model_version",
    "export_onnx",
    "latest_export",
    "model_task",
    "quantize_onnx",
    "request_export",
    "run_export_job",
]

OPSET = 17
# An exported form may lose at most this many accuracy points against PyTorch.
DEFAULT_MAX_DELTA_POINTS = 0.5
# What ``chainkeeper.json`` says of a token tagger: scored by entity F1, not accuracy.
TAGGER_TASK = "token-classification"
# Engines in the order the runtime prefers them (fastest first).
ENGINES = ("onnx-int8", "onnx", "torch")
# Batch-1 latency is the median over this many test texts (after one warm-up call).
LATENCY_SAMPLES = 50


@dataclass(frozen=True)
class ExportedForm:
    """One exported file of a model version and how it scored."""

    engine: str  # "onnx" or "onnx-int8"
    artifact: str  # digest of the .onnx file in the artefact store
    size_bytes: int
    accuracy: float
    delta_points: float  # (accuracy - torch accuracy) * 100
    latency_ms_p50: float
    passed: bool
    # A tagger's form: the share of test words it tags as PyTorch does (None for a classifier).
    agreement: float | None = None


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: the forms, their scores and the manifest that records them."""

    model_version_id: int
    model_artifact: str
    manifest: str  # digest of the JSON manifest in the artefact store
    torch_accuracy: float
    torch_latency_ms_p50: float
    max_delta_points: float
    evaluated_rows: int
    forms: list[ExportedForm] = field(default_factory=list)
    created_by: str = ""
    created_at: str = ""
    # What ``torch_accuracy`` and each form's ``accuracy`` measure: "accuracy" (a
    # classifier, on test texts) or "entity_f1" (a tagger, seqeval on test sentences).
    metric: str = "accuracy"

    def form(self, engine: str) -> ExportedForm | None:
        """The form of ``engine``, if exported."""
        return next((f for f in self.forms if f.engine == engine), None)

    def best_engine(self) -> str:
        """The fastest engine that passed the gate ("torch" when none did)."""
        for engine in ENGINES[:-1]:
            form = self.form(engine)
            if form is not None and form.passed:
                return engine
        return "torch"


# --- pure-ish building blocks -----------------------------------------------------------


def export_onnx(model: TextClassifier, path: Path, *, opset: int = OPSET) -> Path:
    """Write a classifier's forward (encoder + pooling + head) as ONNX.

    Inputs ``input_ids`` and ``attention_mask`` (int64, batch x sequence, both axes
    dynamic); output ``logits`` (batch x labels). A token tagger's output is per token
    (batch x sequence x tags), with a third input ``cases`` (batch x sequence) when it
    reads word shapes.

    Raises:
        InvalidInput: ``opset`` below 17 (older opsets lack the fused layer norm).
    """
    import torch

    if opset < OPSET:
        raise InvalidInput(f"ONNX opset {opset} is too old.", hint=f"Use opset {OPSET} or newer.")
    model = model.eval()
    dummy_ids = torch.ones(2, 8, dtype=torch.long)
    dummy_mask = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    inputs: tuple[Any, ...] = (dummy_ids, dummy_mask)
    names = ["input_ids", "attention_mask"]
    dynamic: dict[str, dict[int, str]] = {"input_ids": axes, "attention_mask": axes, "logits": {0: "batch"}}
    if getattr(model.meta, "task", "") == TAGGER_TASK:  # logits per token: (batch, sequence, tags)
        dynamic["logits"] = axes
        if getattr(model, "casing", None) is not None:  # the word shape of each piece, 0 at special tokens
            inputs, names = (*inputs, torch.ones(2, 8, dtype=torch.long)), [*names, "cases"]
            dynamic["cases"] = axes
    # The TorchScript exporter is chosen on purpose (dynamo=False): it exports this
    # encoder in ~1.5 s with logits within 3e-6 of PyTorch; its deprecation and tracer
    # notes are about the exporter, not about this model.
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        # torch.jit imports TracerWarning without listing it in its __all__.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        # Position-id slicing in BERT embeddings: its indices are never negative here.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(model, inputs, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=opset, dynamo=False, do_constant_folding=True)
    return path


def quantize_onnx(src: Path, dst: Path) -> Path:
    """Dynamic int8 quantisation of an ONNX model's weights (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


def accuracy_of(predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Share of predictions equal to their label (pure; 0.0 for no rows)."""
    if len(predicted) != len(labels):
        raise InvalidInput(f"{len(predicted)} predictions for {len(labels)} labels.", hint="Pass one per row.")
    return sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels) if labels else 0.0


def _median_ms(call: Any, texts: Sequence[str]) -> float:
    call([texts[0]])  # warm-up: first calls allocate
    times = []
    for text in texts[:LATENCY_SAMPLES]:
        start = time.perf_counter()
        call([text])
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def check_model_files(files: Sequence[str], *, what: str) -> None:
    """Refuse a model folder that cannot be exported or served (pure).

    Args:
        files: the folder's relative file names (its artefact manifest's keys).
        what: how the message names the folder, e.g. "model version 3 (intents v1)".

    Raises:
        InvalidInput: the label map, the encoder config or weights, the head or the
            tokenizer is missing; the message lists what is missing.
    """
    from chainkeeper.serving._training import HEAD_FILE, META_FILE  # loads torch

    names = set(files)
    missing = [label for label, choices in (
        (f"label map ({META_FILE})", {META_FILE}),
        ("encoder config (config.json)", {"config.json"}),
        ("encoder weights (model.safetensors)", {"model.safetensors"}),
        (f"classification head ({HEAD_FILE})", {HEAD_FILE}),
        # A fast tokenizer.json, or the WordPiece/SentencePiece vocabulary it is built from.
        ("tokenizer (tokenizer.json, vocab.txt or tokenizer.model)",
         {"tokenizer.json", "vocab.txt", "tokenizer.model"}),
    ) if not names & choices]
    if missing:
        raise InvalidInput(f"The model folder of {what} is missing its {', '.join(missing)}.",
                           hint="Register a version from a run whose model folder is complete (retrain if the "
                           "files were lost); nothing was exported.")


def model_task(ctx: Context, model_artifact: str) -> str:
    """What a stored model folder does, from its ``chainkeeper.json``: ``sequence-classification``
    (also for folders older than tasks) or ``token-classification``.

    Raises:
        ArtifactError: the folder or its label map is not in the artefact store.
    """
    from chainkeeper.serving._training import META_FILE  # loads torch

    manifest = ctx.artifacts.read_manifest(model_artifact)
    if META_FILE not in manifest:
        return "sequence-classification"
    meta = json.loads(ctx.artifacts.get_bytes(manifest[META_FILE]))
    return str(meta.get("task") or "sequence-classification")


def _check_version_files(ctx: Context, version: Any) -> None:
    check_model_files(list(ctx.artifacts.read_manifest(version.model_artifact)),
                      what=f"model version {version.id} ({version.label})")


# --- the service ------------------------------------------------------------------------


def request_export(ctx: Context, model_version_id: int, *, actor: Actor, quantize: bool = False,
                   max_delta_points: float = DEFAULT_MAX_DELTA_POINTS) -> Job:
    """Queue the export of a model version as a job, after checking what can be checked now.

    Args:
        model_version_id: the version to export.
        actor: who asks (``model.export`` in the model version's project).
        quantize: also produce the dynamic-int8 form.
        max_delta_points: the accuracy points a form may lose against PyTorch.

    Returns:
        The queued ``export`` job (follow it with ``chainkeeper jobs logs ID -f``).

    Raises:
        Forbidden: the actor may not export. NotFound: no such version.
        InvalidInput: a bad gate, or the version's folder misses files (its tokenizer...).
        ArtifactError: the version's files are not in the artefact store.
    """
    authorize_object(ctx.db, actor, "model.export", lambda: project_of_model_version(ctx.db, model_version_id))
    version = get_model_version(ctx.db, model_version_id)
    _check_gate(max_delta_points)
    _check_version_files(ctx, version)
    job = submit_job(ctx, "export", {"model_version_id": version.id, "quantize": bool(quantize),
                                        "max_delta_points": float(max_delta_points)}, actor=actor.name,
                     project=project_of_model_version(ctx.db, version.id))
    with ctx.db.session() as s:
        append_entry(s, actor, "model.export.request", "model_version", version.id,
                     details={"job_id": job.id, "quantize": bool(quantize), "max_delta_points": max_delta_points})
    return job


def _check_gate(max_delta_points: float) -> None:
    if isinstance(max_delta_points, bool) or not 0 <= max_delta_points <= 100:
        raise InvalidInput(f"max_delta_points is {max_delta_points}; it must be between 0 and 100.",
                           hint=f"The default is {DEFAULT_MAX_DELTA_POINTS} points.")



def export_model_version(ctx: Context, model_version_id: int, *, actor: Actor, quantize: bool = True,
                         max_delta_points: float = DEFAULT_MAX_DELTA_POINTS,
                         evaluation: tuple[Sequence[Any], Sequence[Any]] | None = None,
                         progress: Any = None) -> ExportResult:
    """Export a model version to ONNX (and int8 when asked), score each form, record it.

    Args:
        model_version_id: the registered version.
        actor: who exports (recorded in the ledger as ``model.export``).
        quantize: also produce the dynamic-int8 form.
        max_delta_points: the gate: the accuracy points a form may lose against PyTorch.
        evaluation: (texts, labels) to score on — for a tagger (sentences as word lists,
            their tags); None reads the test split of the dataset version the version's
            run trained on.
        progress: optional ``fn(percent, message)``.

    Returns:
        The export's record: per form the artefact digest, accuracy, delta and latency.

    Raises:
        NotFound: no such model version. InvalidInput: no labelled test rows, a bad gate, or
            the model folder misses files (see ``check_model_files``).
        ArtifactError: the model's files are not in the artefact store.
    """
    _check_gate(max_delta_points)
    report = progress or (lambda pct, msg: None)
    version = get_model_version(ctx.db, model_version_id)
    _check_version_files(ctx, version)
    digest = version.model_artifact
    if model_task(ctx, digest) == TAGGER_TASK:
        metric = "entity_f1"
        torch_acc, torch_ms, forms, rows = _tagger_forms(ctx, version, quantize=quantize,
                                                         max_delta_points=max_delta_points, evaluation=evaluation,
                                                         report=report)
    else:
        metric = "accuracy"
        torch_acc, torch_ms, forms, rows = _classifier_forms(ctx, version, quantize=quantize,
                                                             max_delta_points=max_delta_points, evaluation=evaluation,
                                                             report=report)

    at = utcnow()
    manifest = {"model_version_id": version.id, "model_artifact": digest, "opset": OPSET,
                "torch_accuracy": torch_acc, "torch_latency_ms_p50": torch_ms, "max_delta_points": max_delta_points,
                "evaluated_rows": rows, "forms": [asdict(f) for f in forms], "created_by": actor.name,
                "created_at": at.isoformat(), "metric": metric}
    manifest_digest = ctx.artifacts.put_bytes(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"))
    with ctx.db.session() as s:
        append_entry(s, actor, "model.export", "model_version", version.id,
                     details={"manifest": manifest_digest, "model_artifact": digest,
                              "forms": {f.engine: {"artifact": f.artifact, "passed": f.passed,
                                                   "delta_points": f.delta_points} for f in forms}})
    report(100, "exported")
    return _result(manifest, manifest_digest)


def _classifier_forms(ctx: Context, version: Any, *, quantize: bool, max_delta_points: float,
                      evaluation: tuple[Sequence[Any], Sequence[Any]] | None, report: Any,
                      ) -> tuple[float, float, list[ExportedForm], int]:
    """Export a classifier and score each form by accuracy on (texts, labels).

    Returns:
        (PyTorch accuracy, PyTorch latency, the forms, rows scored).
    """
    from chainkeeper.serving._training import TextClassifier  # loads torch
    from chainkeeper.serving.onnx_runtime import (
        make_session,
        onnx_probabilities,
        rust_tokenizer,
    )

    texts, labels = evaluation if evaluation is not None else _test_split(ctx, version.run_id)
    texts, labels = list(texts), list(labels)
    if not texts:
        raise InvalidInput(f"There are no labelled test rows to score model version {version.id} on.",
                           hint="Export a version trained on a dataset version with a labelled test split.")
    digest = version.model_artifact
    report(5, f"loading {version.label}")
    folder = ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest)
    model, tokenizer = TextClassifier.load(folder)
    names = model.meta.labels
    report(10, "scoring PyTorch")
    probs = model.predict_proba(tokenizer, texts)
    torch_acc = accuracy_of([names[i] for i in probs.argmax(dim=1).tolist()], labels)
    torch_ms = _median_ms(lambda batch: model.predict_proba(tokenizer, batch), texts)

    forms: list[ExportedForm] = []
    rust = rust_tokenizer(tokenizer, model.meta.max_length)
    pad_id = int(tokenizer.pad_token_id or 0)
    with tempfile.TemporaryDirectory(prefix="ck-export-") as tmp:
        for n, (engine, path) in enumerate(_onnx_files(model, Path(tmp), quantize, report)):
            report(50 + 20 * n, f"scoring {engine}")
            session = make_session(path)
            predicted = onnx_probabilities(session, rust, texts, pad_id=pad_id).argmax(axis=1).tolist()
            acc = accuracy_of([names[i] for i in predicted], labels)
            delta = round((acc - torch_acc) * 100, 3)
            ms = _median_ms(lambda batch, s=session: onnx_probabilities(s, rust, batch, pad_id=pad_id), texts)
            forms.append(ExportedForm(engine=engine, artifact=ctx.artifacts.put_file(path),
                                      size_bytes=path.stat().st_size, accuracy=acc, delta_points=delta,
                                      latency_ms_p50=ms, passed=-delta <= max_delta_points))
    return torch_acc, torch_ms, forms, len(texts)


def _onnx_files(model: Any, tmp: Path, quantize: bool, report: Any) -> list[tuple[str, Path]]:
    report(25, "exporting to ONNX")
    fp32 = export_onnx(model, tmp / "model.onnx")
    files = [("onnx", fp32)]
    if quantize:
        report(40, "quantising to int8")
        files.append(("onnx-int8", quantize_onnx(fp32, tmp / "model.int8.onnx")))
    return files


def _tagger_forms(ctx: Context, version: Any, *, quantize: bool, max_delta_points: float,
                  evaluation: tuple[Sequence[Any], Sequence[Any]] | None, report: Any,
                  ) -> tuple[float, float, list[ExportedForm], int]:
    """Export a tagger and score each form by entity F1 (seqeval) on (sentences, tags).

    Every engine tags through the same ``tagging.TaggerPredictor``, so a delta is the
    engine's alone; each form also records ``agreement``, the share of words it tags as
    PyTorch does. Latency is one test sentence (as a text) per call, decoded to spans.

    Returns:
        (PyTorch entity F1, PyTorch latency, the forms, sentences scored).
    """
    from chainkeeper.serving._training import TokenTagger, entity_metrics  # loads torch
    from chainkeeper.serving.onnx_runtime import make_session
    from chainkeeper.serving.tagging import (
        TaggerPredictor,
        onnx_logits,
        read_tagged_split,
        torch_logits,
    )

    if evaluation is not None:
        sentences, gold = [list(s) for s in evaluation[0]], [list(t) for t in evaluation[1]]
    else:
        sentences, gold = read_tagged_split(ctx, get_run(ctx.db, version.run_id).dataset_version_id, "test")
    if not sentences:
        raise InvalidInput(f"There are no tagged test sentences to score model version {version.id} on.",
                           hint="Export a version trained on a dataset version with a tagged test split.")
    digest = version.model_artifact
    report(5, f"loading {version.label}")
    folder = ctx.artifacts.get_tree(digest, ctx.settings.home / "cache" / "models" / digest)
    model, tokenizer = TokenTagger.load(folder)
    labels = model.labels

    def predictor(logits: Any, engine: str) -> TaggerPredictor:
        return TaggerPredictor(logits, tokenizer, labels, max_length=model.meta.max_length,
                               model_version_id=version.id, artifact=digest, engine=engine,
                               casing=model.casing is not None)

    report(10, "scoring PyTorch")
    reference = predictor(torch_logits(model), "torch")
    torch_tags = reference.tag_sentences(sentences)
    torch_f1 = float(entity_metrics(gold, torch_tags, labels)["f1"])
    texts = [" ".join(s) for s in sentences]
    torch_ms = _median_ms(reference.predict, texts)
    words = sum(len(s) for s in sentences)

    forms: list[ExportedForm] = []
    with tempfile.TemporaryDirectory(prefix="ck-export-") as tmp:
        for n, (engine, path) in enumerate(_onnx_files(model, Path(tmp), quantize, report)):
            report(50 + 20 * n, f"scoring {engine}")
            served = predictor(onnx_logits(make_session(path)), engine)
            tags = served.tag_sentences(sentences)
            f1 = float(entity_metrics(gold, tags, labels)["f1"])
            same = sum(a == b for x, y in zip(tags, torch_tags, strict=True) for a, b in zip(x, y, strict=True))
            delta = round((f1 - torch_f1) * 100, 3)
            forms.append(ExportedForm(engine=engine, artifact=ctx.artifacts.put_file(path),
                                      size_bytes=path.stat().st_size, accuracy=f1, delta_points=delta,
                                      latency_ms_p50=_median_ms(served.predict, texts),
                                      passed=-delta <= max_delta_points, agreement=round(same / max(words, 1), 6)))
    return torch_f1, torch_ms, forms, len(sentences)


def _test_split(ctx: Context, run_id: int) -> tuple[list[str], list[str]]:
    from chainkeeper.serving._training import load_split  # loads torch

    split = load_split(ctx, get_run(ctx.db, run_id).dataset_version_id, "test")
    return split.texts, split.labels


def _result(manifest: dict[str, Any], digest: str) -> ExportResult:
    return ExportResult(model_version_id=manifest["model_version_id"], model_artifact=manifest["model_artifact"],
                        manifest=digest, torch_accuracy=manifest["torch_accuracy"],
                        torch_latency_ms_p50=manifest["torch_latency_ms_p50"],
                        max_delta_points=manifest["max_delta_points"], evaluated_rows=manifest["evaluated_rows"],
                        forms=[ExportedForm(**f) for f in manifest["forms"]], created_by=manifest["created_by"],
                        created_at=manifest["created_at"], metric=manifest.get("metric", "accuracy"))


def latest_export(ctx: Context, model_version_id: int, model_artifact: str | None = None) -> ExportResult | None:
    """The version's most recent export (from its ``model.export`` ledger entries), if any.

    Args:
        model_artifact: when given, only an export of exactly these model files counts.
    """
    entries = [e for e in list_entries(ctx.db, object_kind="model_version", object_id=str(model_version_id),
                                       limit=10_000)
               if e.action == "model.export" and (model_artifact is None
                                                  or e.details.get("model_artifact") == model_artifact)]
    if not entries:
        return None
    digest = entries[-1].details["manifest"]
    return _result(json.loads(ctx.artifacts.get_bytes(digest)), digest)


def run_export_job(ctx: Context, job: JobHandle) -> dict[str, Any]:
    """Job handler for kind ``export``: params ``model_version_id``, ``quantize`` (default true),
    ``max_delta_points`` (optional)."""
    params = job.params
    if "model_version_id" not in params:
        raise InvalidInput("The export job has no model_version_id.", hint='Submit {"model_version_id": N}.')
    actor = Actor(f"worker (for {job.job.created_by})")
    job.check_cancelled()

    def progress(pct: float, msg: str) -> None:
        # Each step checks for a cancel first: an export stops between its stages.
        job.check_cancelled()
        job.progress(pct, msg)
        job.log(msg)

    result = export_model_version(
        ctx, int(params["model_version_id"]), actor=actor, quantize=bool(params.get("quantize", True)),
        max_delta_points=float(params.get("max_delta_points", DEFAULT_MAX_DELTA_POINTS)), progress=progress)
    return {"manifest": result.manifest, "best_engine": result.best_engine(),
            "torch_accuracy": result.torch_accuracy,
            "forms": {f.engine: {"artifact": f.artifact, "accuracy": f.accuracy, "delta_points": f.delta_points,
                                 "latency_ms_p50": f.latency_ms_p50, "passed": f.passed} for f in result.forms}}
