"""Person names in the prediction log, found by a token tagger of the registry (issue 15, item 7).

The regex detectors of ``data.pii`` find numbers, addresses and secrets by their shape; a
name has none. With the setting ``pii_name_model`` naming a registered token tagger,
``NameTagger`` tags the texts the prediction log is about to store with that model's
production version, and ``predictions.prediction_record`` writes each ``PER`` (or
``PERSON``) span as ``[NAME]`` beside the regex placeholders. A tagger deployment's own
``PER`` entities count as names as well (``find_names``), so its stored entities and its
stored input agree.

Where it runs: on the log writer's thread (``logwriter.PredictionLogWriter``), a batch at a
time, never on the request path. A server loads the model through its ``PredictorCache``
(one copy in memory, its best engine; loaded when the writer starts), and calls the
model itself rather than its micro-batcher, so the tagging stays on the writer's
low-priority thread. ``log_served_predictions`` (no writer: library use) loads a copy of
its own for the context.

When the model cannot be used — the name has no production version, the model is not a
tagger of person names, it fails to load or to run — logging goes on with the regex
redaction only: one warning per outage (its reason, never a text), the texts stored
unchecked are counted (``stats().unchecked``, the metric
``chainkeeper_prediction_log_names_unchecked_total``), and the registry is asked again
every ``recheck_s``, which is also how soon a newly promoted version takes over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chainkeeper.core.db import Database
from chainkeeper.core.errors import ChainkeeperError
from chainkeeper.registry import ModelVersion, list_model_versions

if TYPE_CHECKING:
    from chainkeeper.core.context import Context
    from chainkeeper.serving import PredictorCache

__all__ = ["NAME_PLACEHOLDER", "NAME_TYPES", "NameTagger", "NameTaggerStats", "add_names", "entity_names",
           "find_names", "name_tagger", "tag_names"]

_log = logging.getLogger(__name__)

NAME_PLACEHOLDER = "[NAME]"
# Entity types that are person names: CoNLL's PER, OntoNotes' PERSON.
NAME_TYPES = frozenset({"PER", "PERSON"})
# How often the registry is asked which version is in production (and a failed model tried again).
RECHECK_S = 60.0
# Texts per model call: a long batch of the writer does not hold the model (which a
# deployment of the same version shares) for long.
TEXTS_PER_CALL = 64
_TAGGER_TASK = "token-classification"
_OWN = "monitoring.name_tagger"  # the context's own tagger when no server cache is given

Span = tuple[int, int]
# A model version -> its loaded predictor (a server's ``PredictorCache.get``).
Loader = Callable[[ModelVersion], Any]


@dataclass(frozen=True)
class NameTaggerStats:
    """What the name tagger did since it started (texts, not requests)."""

    model_version_id: int | None  # the version in use; None while it cannot be used
    tagged: int  # texts the model looked at
    unchecked: int  # texts stored without it because it could not be used
    problem: str | None  # why it cannot be used now


def entity_names(entities: Iterable[Mapping[str, Any]] | None) -> list[Span]:
    """The person-name spans among a tagger's answer (pure)."""
    return [(int(e["start"]), int(e["end"])) for e in entities or () if e.get("type") in NAME_TYPES]


def add_names(pii: Sequence[tuple[int, int, str]], names: Iterable[Span]) -> list[tuple[int, int, str]]:
    """The regex spans with the names added as ``[NAME]`` (pure).

    A regex span keeps its own placeholder: the parts of a name outside every regex span
    become ``[NAME]``, so no character of a name is kept and no ``[EMAIL]`` turns into a
    ``[NAME]``. Overlapping or touching names are joined first.

    Args:
        pii: (start, end, placeholder), sorted and apart (as ``data.find_pii`` returns them).
        names: (start, end) of each name, in any order.

    Returns:
        (start, end, placeholder) of both, sorted and apart.
    """
    joined: list[list[int]] = []
    for start, end in sorted(n for n in names if n[0] < n[1]):
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    pieces: list[tuple[int, int, str]] = []
    for start, end in joined:
        at = start
        for p_start, p_end, _ in pii:
            if p_end <= at or p_start >= end:
                continue
            if p_start > at:
                pieces.append((at, p_start, NAME_PLACEHOLDER))
            at = max(at, p_end)
        if at < end:
            pieces.append((at, end, NAME_PLACEHOLDER))
    return sorted([*pii, *pieces])


def tag_names(predictor: Any, texts: Sequence[str]) -> list[list[Span]]:
    """The person-name spans a loaded tagger finds in each text, ``TEXTS_PER_CALL`` texts per call.

    Args:
        predictor: a ``serving.TaggerPredictor`` (or a cache's wrapper: its ``entities`` is
            the model itself, run on the calling thread, without the micro-batcher).
        texts: served texts (validated when they were served).
    """
    found: list[list[Span]] = []
    for at in range(0, len(texts), TEXTS_PER_CALL):
        for entities, _ in predictor.entities(list(texts[at:at + TEXTS_PER_CALL])):
            found.append([(e.start, e.end) for e in entities if e.type in NAME_TYPES])
    return found


class NameTagger:
    """Finds person names with the production version of a registered token tagger.

    Args:
        db: the store holding the registry.
        model_name: the registered model (``pii_name_model``).
        load: a model version -> its loaded predictor (a ``TaggerPredictor``, or a cache's
            wrapper of one).
        recheck_s: how often the registry is asked again, and a failed model retried.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, db: Database, model_name: str, load: Loader, *, recheck_s: float = RECHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.model_name = model_name
        self.recheck_s = recheck_s
        self._load = load
        self._clock = clock
        self._lock = threading.Lock()
        self._version: ModelVersion | None = None
        self._problem: str | None = None
        self._checked_at: float | None = None
        self._tagged = self._unchecked = 0

    def prepare(self) -> None:
        """Look the model up and load it now (the writer does so when it starts), so the
        first batch does not wait for a load; a problem is logged, never raised."""
        self._predictor()

    def find(self, texts: Sequence[str]) -> list[list[Span]] | None:
        """The person-name spans of each text, as offsets into it.

        Returns:
            One list per text; None when the model cannot be used now (the texts are
            counted as unchecked; the first failure of an outage is logged).
        """
        if not texts:
            return []
        predictor = self._predictor()
        if predictor is not None:
            try:
                found = tag_names(predictor, texts)
            except Exception as error:  # noqa: BLE001 - a failing model must not stop the log
                self._fail(_reason(error, "tagging failed"))
            else:
                with self._lock:
                    self._tagged += len(texts)
                return found
        with self._lock:
            self._unchecked += len(texts)
        return None

    def stats(self) -> NameTaggerStats:
        with self._lock:
            return NameTaggerStats(model_version_id=self._version.id if self._version is not None else None,
                                   tagged=self._tagged, unchecked=self._unchecked, problem=self._problem)

    # --- which model -----------------------------------------------------------------

    def _predictor(self) -> Any | None:
        """The loaded tagger to use now, or None (the registry asked at most every ``recheck_s``)."""
        with self._lock:
            now = self._clock()
            due = self._checked_at is None or now - self._checked_at >= self.recheck_s
            if due:
                self._checked_at = now
            version = self._version
        if due:
            version = self._resolve(version)
        if version is None:
            return None
        try:
            return self._load(version)  # a dictionary look-up once loaded
        except Exception as error:  # noqa: BLE001 - see find
            self._fail(_reason(error, "loading failed"))
            return None

    def _resolve(self, current: ModelVersion | None) -> ModelVersion | None:
        """The production version, checked to be a tagger of names when it is new to us."""
        try:
            found = list_model_versions(self.db, self.model_name, stage="production", limit=1)
        except Exception as error:  # noqa: BLE001 - a store outage keeps the model in use
            if current is None:
                self._fail(_reason(error, "the registry could not be read"))
            return current
        if not found:
            self._fail(f"model {self.model_name!r} has no version in production")
            return None
        version = found[0]
        if current is not None and current.id == version.id:
            return current
        try:
            predictor = self._load(version)
        except Exception as error:  # noqa: BLE001 - see find
            self._fail(_reason(error, f"loading version {version.version} failed"))
            return None
        if getattr(predictor, "task", None) != _TAGGER_TASK or not hasattr(predictor, "entities"):
            self._fail(f"model {self.model_name!r} v{version.version} is not a token tagger")
            return None
        if not NAME_TYPES & set(predictor.entity_types):
            self._fail(f"model {self.model_name!r} v{version.version} tags no person names "
                       f"(its types: {', '.join(predictor.entity_types) or 'none'}; looked for PER or PERSON)")
            return None
        with self._lock:
            self._version, recovered, self._problem = version, self._problem, None
        _log.info("person names in the prediction log are redacted with model %r v%s (id %s)%s", self.model_name,
                  version.version, version.id, f"; before: {recovered}" if recovered else "")
        return version

    def _fail(self, problem: str) -> None:
        with self._lock:
            first = self._problem is None
            self._version, self._problem, self._checked_at = None, problem, self._clock()
        if first:  # once per outage; only our own words or an error's class, never a text
            _log.warning("person names are not redacted from the prediction log: %s. Texts are stored with the "
                         "regex redaction only (counted in chainkeeper_prediction_log_names_unchecked_total); the "
                         "model is tried again every %.0f s.", problem, self.recheck_s)


def _reason(error: Exception, what: str) -> str:
    """Why, in words safe to log: our own errors' messages, other errors' class only (their
    message may quote the text being tagged)."""
    if isinstance(error, ChainkeeperError):
        return f"{what}: {error.message}"
    return f"{what} ({type(error).__name__})"


def find_names(tagger: NameTagger | None, items: Sequence[Mapping[str, Any]]) -> list[list[Span]]:
    """The person-name spans of each served text: what ``tagger`` finds (nothing while it
    cannot be used) and a tagger deployment's own ``PER`` entities; none at all without a
    tagger (``pii_name_model`` unset).

    Args:
        items: ``prediction_record`` arguments (``text``, and ``entities`` for a tagger).
    """
    if tagger is None:
        return [[] for _ in items]
    found = tagger.find([str(item["text"]) for item in items]) or [[] for _ in items]
    return [names + entity_names(item.get("entities")) for names, item in zip(found, items, strict=True)]


def name_tagger(ctx: Context, predictors: PredictorCache | None = None) -> NameTagger | None:
    """The name tagger the settings ask for (``pii_name_model``), or None when unset.

    Args:
        predictors: a server's loaded models, which the tagger then shares (a new tagger
            per call: one per log writer). Without it, the context's own tagger, which
            loads its model once.
    """
    name = ctx.settings.pii_name_model
    if name is None:
        return None
    if predictors is not None:
        return NameTagger(ctx.db, name, predictors.get)
    return ctx.state(_OWN, lambda: NameTagger(ctx.db, name, _own_loader(ctx)))


def _own_loader(ctx: Context) -> Loader:
    """A loader that keeps the last version it loaded."""
    loaded: dict[int, Any] = {}
    lock = threading.Lock()

    def load(version: ModelVersion) -> Any:
        with lock:
            if version.id not in loaded:
                from chainkeeper.monitoring._serving import (
                    load_predictor,  # loads torch: only when a name model is used
                )

                loaded.clear()
                loaded[version.id] = load_predictor(ctx, version)
            return loaded[version.id]

    return load
