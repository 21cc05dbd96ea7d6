"""Deployment tests: what a model version's exported artefact must show before production.

The evaluation gates judge the metrics training recorded; these judge the artefact that
will actually serve. Once a release manager sets a latency budget for a model name
(``max_p95_latency_ms`` in ``registry.gates``), the registry's gate evaluation runs them
through the hook the chain's wiring registers (``registry.gates.DEPLOYMENT_TESTS_HOOK`` →
``run_deployment_tests``) on the form the runtime would serve (the best passing form of
the version's latest export):

- ``export-accuracy``: that form loses at most ``max_export_delta_points`` accuracy
  points (entity-F1 points for a tagger) against PyTorch on the dataset version's test
  split (measured by the export);
- ``deploy-loads``: it loads from the artefact store and answers;
- ``deploy-golden-examples``: it gives the registered PyTorch model's label on each
  golden example (the first ``GOLDEN_EXAMPLES`` texts of the test split); a tagger must
  give the same entities (types and offsets) on the first test sentences;
- ``deploy-p95-latency``: the p95 of ``LATENCY_CALLS`` calls of ``latency_batch_size``
  texts stays under the budget;
- ``deploy-rejects-malformed``: every input of ``malformed_inputs()`` is refused with
  a clear ``InvalidInput``, and the model still answers afterwards.

``probe_deployment`` does the measuring (I/O, models); ``judge_deployment_tests`` is pure
and turns a probe into gate outcomes. The runtime (PyTorch, ONNX Runtime) is imported
when a probe runs, so registering the hook loads no model library.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chainkeeper.core.errors import ChainkeeperError, InvalidInput
from chainkeeper.registry import GateOutcome, GateThresholds, ModelVersion
from chainkeeper.serving.export import TAGGER_TASK, latest_export, model_task
from chainkeeper.training import get_run, load_split

if TYPE_CHECKING:
    from chainkeeper.core.context import Context

__all__ = [
    "DEFAULT_MAX_EXPORT_DELTA_POINTS",
    "DeploymentProbe",
    "GOLDEN_EXAMPLES",
    "LATENCY_CALLS",
    "answer_key",
    "judge_deployment_tests",
    "malformed_inputs",
    "percentile",
    "probe_deployment",
    "run_deployment_tests",
]

# The export gate's default, the same as ``serving.export.DEFAULT_MAX_DELTA_POINTS``.
DEFAULT_MAX_EXPORT_DELTA_POINTS = 0.5
# How many test-split texts serve as golden examples.
GOLDEN_EXAMPLES = 32
# Timed calls for the p95 (after one warm-up call).
LATENCY_CALLS = 40


def malformed_inputs() -> list[tuple[str, Any]]:
    """(case, input) pairs a served model must refuse with ``InvalidInput``."""
    from chainkeeper.serving.runtime import (  # the runtime loads torch
        MAX_TEXT_CHARS,
        MAX_TEXTS_PER_CALL,
    )

    return [("no texts", []), ("empty text", [""]), ("blank text", ["   \n"]), ("not a string", [42]),
            ("text too long", ["x" * (MAX_TEXT_CHARS + 1)]), ("too many texts", ["hi"] * (MAX_TEXTS_PER_CALL + 1)),
            ("not a list", "a bare string")]


@dataclass(frozen=True)
class DeploymentProbe:
    """What trying the served form of a version showed (plain values)."""

    engine: str  # the form tried: "onnx-int8", "onnx" or "torch" (no passing export)
    export_manifest: str | None  # digest of the export tried, None when there is none
    delta_points: float | None  # that form's accuracy delta vs PyTorch (points), from the export
    evaluated_rows: int  # test rows the export scored
    load_error: str | None = None
    golden: list[tuple[str, str, str]] = field(default_factory=list)  # (text, PyTorch label, served label)
    golden_error: str | None = None  # why there are no golden examples, if so
    latencies_ms: list[float] = field(default_factory=list)
    batch_size: int = 1
    malformed: dict[str, str | None] = field(default_factory=dict)  # case -> refusal message (None: accepted)
    answers_after_malformed: bool = False
    metric: str = "accuracy"  # what delta_points measures: "accuracy", or "entity_f1" for a tagger


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values`` (pure)."""
    if not values:
        raise InvalidInput("No values to take a percentile of.", hint="Measure at least one call.")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# --- the pure part ---------------------------------------------------------------------


def judge_deployment_tests(probe: DeploymentProbe, *, max_p95_ms: float,
                           max_delta_points: float | None) -> list[GateOutcome]:
    """Turn a probe into the five deployment gate outcomes, in a fixed order (pure).

    Args:
        probe: what ``probe_deployment`` measured.
        max_p95_ms: the latency budget.
        max_delta_points: the accuracy points the served form may lose (None: the default).
    """
    limit = DEFAULT_MAX_EXPORT_DELTA_POINTS if max_delta_points is None else max_delta_points
    out: list[GateOutcome] = []
    if probe.export_manifest is None:
        out.append(GateOutcome("export-accuracy", False, None, limit,
                               "the version has no export of its current files; export it first"))
    elif probe.engine == "torch" or probe.delta_points is None:
        out.append(GateOutcome("export-accuracy", False, None, limit,
                               f"no exported form passed its accuracy check (export {probe.export_manifest[:12]})"))
    else:
        ok = -probe.delta_points <= limit + 1e-9
        what, rows = ("entity F1", "sentences") if probe.metric == "entity_f1" else ("accuracy", "rows")
        out.append(GateOutcome("export-accuracy", ok, probe.delta_points, limit,
                               f"{probe.engine} {what} {probe.delta_points:+.3f} points vs PyTorch on "
                               f"{probe.evaluated_rows:,} test {rows} (at most -{limit:g} allowed)"))

    if probe.load_error is not None:
        out.append(GateOutcome("deploy-loads", False, None, None, f"{probe.engine} failed: {probe.load_error}"))
        skipped = "not run: the artefact did not load"
        out += [GateOutcome("deploy-golden-examples", False, None, None, skipped),
                GateOutcome("deploy-p95-latency", False, None, max_p95_ms, skipped),
                GateOutcome("deploy-rejects-malformed", False, None, None, skipped)]
        return out
    out.append(GateOutcome("deploy-loads", True, None, None, f"the {probe.engine} form loaded and answered"))

    same = sum(expected == got for _, expected, got in probe.golden)
    differ = [f"{text[:40]!r}: {expected} → {got}" for text, expected, got in probe.golden if expected != got]
    if not probe.golden:
        out.append(GateOutcome("deploy-golden-examples", False, 0.0, 1.0,
                               f"no golden examples to answer: {probe.golden_error or 'the test split is empty'}"))
    else:
        detail = (f"all {same} golden examples answered as the registered model does" if not differ
                  else f"{len(differ)} of {len(probe.golden)} golden examples differ, e.g. {'; '.join(differ[:3])}")
        out.append(GateOutcome("deploy-golden-examples", not differ, same / len(probe.golden), 1.0, detail))

    p95 = round(percentile(probe.latencies_ms, 95), 3)
    verdict = "within" if p95 <= max_p95_ms else "over"
    out.append(GateOutcome("deploy-p95-latency", p95 <= max_p95_ms, p95, max_p95_ms,
                           f"p95 {p95:.1f} ms over {len(probe.latencies_ms)} calls of {probe.batch_size} "
                           f"text(s), {verdict} the {max_p95_ms:g} ms budget"))

    accepted = sorted(case for case, message in probe.malformed.items() if message is None)
    refused = len(probe.malformed) - len(accepted)
    if accepted or not probe.answers_after_malformed:
        why = (f"accepted: {', '.join(accepted)}" if accepted
               else "the model stopped answering after the malformed inputs")
        out.append(GateOutcome("deploy-rejects-malformed", False, refused, len(probe.malformed), why))
    else:
        out.append(GateOutcome("deploy-rejects-malformed", True, refused, len(probe.malformed),
                               f"all {refused} malformed inputs refused with a clear error "
                               f"({', '.join(sorted(probe.malformed))}); answers normally afterwards"))
    return out


# --- measuring -------------------------------------------------------------------------


def run_deployment_tests(ctx: Context, version: ModelVersion, thresholds: GateThresholds) -> list[GateOutcome]:
    """Probe the served form of ``version`` and judge it against its name's thresholds.

    The registry's ``DEPLOYMENT_TESTS_HOOK``: the chain's wiring registers this function,
    and the registry's gate evaluation calls it when a latency budget is set.

    Args:
        version: the model version being judged.
        thresholds: its name's thresholds (``max_p95_latency_ms`` set).

    Returns:
        The five deployment gate outcomes (``judge_deployment_tests``).
    """
    probe = probe_deployment(ctx, version, batch_size=thresholds.latency_batch_size or 1)
    return judge_deployment_tests(probe, max_p95_ms=float(thresholds.max_p95_latency_ms or 0),
                                  max_delta_points=thresholds.max_export_delta_points)


def probe_deployment(ctx: Context, version: ModelVersion, *, batch_size: int = 1,
                     golden_texts: Sequence[str] | None = None) -> DeploymentProbe:
    """Load the form the runtime would serve for ``version`` and try it.

    Args:
        version: the model version.
        batch_size: texts per timed call.
        golden_texts: None reads the first ``GOLDEN_EXAMPLES`` texts of the test split of
            the dataset version the version was trained on.

    Returns:
        The probe (errors of loading are in it, not raised).
    """
    from chainkeeper.serving.runtime import (
        load_predictor,  # torch and onnxruntime: loaded when a probe runs
    )

    export = latest_export(ctx, version.id, version.model_artifact)
    engine = export.best_engine() if export is not None else "torch"
    form = export.form(engine) if export is not None else None
    base = functools.partial(DeploymentProbe, engine=engine, export_manifest=export.manifest if export else None,
                             delta_points=form.delta_points if form else None,
                             evaluated_rows=export.evaluated_rows if export else 0, batch_size=batch_size,
                             metric=export.metric if export else "accuracy")
    if export is None or form is None:
        return base(load_error="no passing exported form to load")
    golden_error = None
    try:
        texts = list(golden_texts) if golden_texts is not None else _golden_texts(ctx, version)
    except ChainkeeperError as exc:  # the dataset's rows are gone: the golden gate says so
        texts, golden_error = [], str(exc)
    try:
        served = load_predictor(ctx, version, engine=engine)
        reference = load_predictor(ctx, version, engine="torch")
        expected = [answer_key(p) for p in reference.predict(texts)] if texts else []
        got = [answer_key(p) for p in served.predict(texts)] if texts else []
    except ChainkeeperError as exc:
        return base(load_error=str(exc))
    except (OSError, RuntimeError, ValueError) as exc:  # a broken file: onnxruntime/tokenizers raise these
        return base(load_error=f"{type(exc).__name__}: {exc}")

    malformed: dict[str, str | None] = {}
    for case, value in malformed_inputs():
        try:
            served.predict(value)
            malformed[case] = None
        except InvalidInput as exc:
            malformed[case] = exc.message
    sample = texts or ["hello"]
    batch = [sample[i % len(sample)] for i in range(batch_size)]
    served.predict(batch)  # warm-up: the first call allocates
    latencies = []
    for _ in range(LATENCY_CALLS):
        start = time.perf_counter()
        served.predict(batch)
        latencies.append((time.perf_counter() - start) * 1000)
    after = served.predict(sample[:1])
    return base(golden=list(zip(texts, expected, got, strict=True)), golden_error=golden_error,
                latencies_ms=latencies, malformed=malformed, answers_after_malformed=len(after) == 1)


def answer_key(prediction: Any) -> str:
    """What must match on a golden example: the label, or for a tagger every entity's type and offsets."""
    entities = getattr(prediction, "entities", None)
    if entities is None:
        return str(prediction.label)
    return " ".join(f"{e['type']}[{e['start']}:{e['end']}]" for e in entities) or "no entity"


def _golden_texts(ctx: Context, version: ModelVersion) -> list[str]:
    dataset_version_id = get_run(ctx.db, version.run_id).dataset_version_id
    if model_task(ctx, version.model_artifact) == TAGGER_TASK:
        from chainkeeper.serving.tagging import read_tagged_split  # loads torch

        sentences, _ = read_tagged_split(ctx, dataset_version_id, "test")
        return [" ".join(words) for words in sentences[:GOLDEN_EXAMPLES]]
    split = load_split(ctx, dataset_version_id, "test")
    return split.texts[:GOLDEN_EXAMPLES]
