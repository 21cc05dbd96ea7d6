"""Surge detection of negative sentiment per entity (apps.monitor.surge): seeded simulations."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from chainkeeper.apps.monitor.surge import (
    Surge,
    SurgeConfig,
    SurgeDetector,
    cusum_arl,
    cusum_scores,
    cusum_threshold,
)
from chainkeeper.core.errors import InvalidInput

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
RATE = 0.12  # the share of negative sentences in Financial PhraseBank, roughly


def calm_stream(n_items: int, n_entities: int, seed: int, start: int = 0) -> list[tuple[str, datetime, bool, str]]:
    rng = np.random.default_rng(seed)
    entities = rng.integers(0, n_entities, n_items).tolist()
    negative = (rng.random(n_items) < RATE).tolist()
    return [(f"org{e}", T0 + timedelta(seconds=start + i), bool(x), f"c{start + i}")
            for i, (e, x) in enumerate(zip(entities, negative, strict=True))]


# --- the chart ---------------------------------------------------------------------------


def test_exact_arl_matches_a_hand_solved_chain_and_a_simulation() -> None:
    # up 1, down 1, threshold 2 (two negatives in a row alarm): L0 = 1 + p·L1 + q·L0 and
    # L1 = 1 + q·L0 give L0 = (1 + p) / p².
    p = 0.3
    assert cusum_arl(1, 1, 2, p) == pytest.approx((1 + p) / p**2)
    # A realistic chart against 4,000 simulated runs.
    up, down = cusum_scores(0.2, 0.6)
    threshold = 120
    rng = np.random.default_rng(5)
    lengths = []
    for _ in range(3000):
        s, n = 0, 0
        while s < threshold:
            n += 1
            s = max(0, s + (up if rng.random() < 0.2 else -down))
        lengths.append(n)
    exact = cusum_arl(up, down, threshold, 0.2)
    assert np.mean(lengths) == pytest.approx(exact, rel=0.06)


def test_threshold_is_the_smallest_reaching_the_target() -> None:
    up, down = cusum_scores(0.12, 0.36)
    h = cusum_threshold(up, down, 10_000, 0.12)
    assert cusum_arl(up, down, h, 0.12) >= 10_000 > cusum_arl(up, down, h - 1, 0.12)
    # Lorden: a CUSUM of the exact log-likelihood ratio needs h ≤ log(ARL0) nats.
    assert h / 50 < math.log(10_000)
    # A higher true rate needs a higher threshold for the same target.
    assert cusum_threshold(up, down, 10_000, 0.15) > h


# --- false alarms and delay --------------------------------------------------------------


def test_calm_stream_false_alarms_stay_below_the_target() -> None:
    det = SurgeDetector()  # target 1 per 10,000 calm items
    items = calm_stream(100_000, 50, seed=11)
    surges = det.update_many(items)
    per_10k = len(surges) / len(items) * 10_000
    assert per_10k < det.config.false_alarms_per_10k
    assert det.overall_rate() == pytest.approx(RATE, abs=0.01)
    assert all(abs(det.baseline(f"org{e}") - RATE) < 0.05 for e in range(50))


def test_planted_surges_are_found_within_a_few_items_and_name_their_items() -> None:
    rng = np.random.default_rng(3)
    warm = calm_stream(10_000, 20, seed=4)
    base = SurgeDetector()
    assert base.update_many(warm) == []  # no alarm while calm
    saved = base.state()
    delays = []
    for trial in range(100):
        det = SurgeDetector.from_state(saved)
        surge: Surge | None = None
        for j in range(200):
            found = det.update("org0", T0 + timedelta(seconds=10_000 + j), bool(rng.random() < 0.8), f"s{trial}-{j}")
            if found:
                surge = found[0]
                delays.append(j + 1)
                break
        assert surge is not None
        assert surge.entity == "org0" and surge.n_items <= j + 1
        assert all(i.startswith(f"s{trial}-") for i in surge.items)  # the change point is inside the surge
        assert surge.negative_share > 0.6 and surge.statistic >= surge.threshold
        assert surge.baseline == pytest.approx(RATE, abs=0.04)
        assert surge.started_at <= surge.detected_at
    assert np.median(delays) <= 14
    assert max(delays) <= 40


def test_surge_items_do_not_become_the_baseline() -> None:
    det = SurgeDetector()
    det.update_many(calm_stream(4000, 4, seed=8))
    before = det.baseline("org1")
    alarms = 0
    for j in range(600):
        alarms += len(det.update("org1", T0 + timedelta(seconds=5000 + j), j % 10 != 0, f"bad{j}"))
    assert alarms >= 30  # a surge that goes on keeps alarming
    assert det.baseline("org1") == pytest.approx(before, abs=0.03)


# --- state -------------------------------------------------------------------------------


def test_saved_state_resumes_with_the_same_decisions() -> None:
    items = calm_stream(6000, 10, seed=21)
    rng = np.random.default_rng(2)
    items += [("org3", T0 + timedelta(seconds=6000 + j), bool(rng.random() < 0.9), f"s{j}") for j in range(60)]
    items += calm_stream(3000, 10, seed=22, start=6060)
    whole = SurgeDetector()
    expected = [s.to_json() for s in whole.update_many(items)]
    assert any(s["entity"] == "org3" for s in expected)

    first = SurgeDetector()
    got = [s.to_json() for s in first.update_many(items[:6030])]
    text = json.dumps(first.state())
    resumed = SurgeDetector.from_state(json.loads(text))
    got += [s.to_json() for s in resumed.update_many(items[6030:])]
    assert got == expected
    assert resumed.state() == whole.state()
    json.dumps(expected)  # a surge is plain JSON too


def test_damaged_or_foreign_state_is_refused() -> None:
    with pytest.raises(InvalidInput, match="version"):
        SurgeDetector.from_state({"version": 99})
    with pytest.raises(InvalidInput, match="damaged"):
        SurgeDetector.from_state({"version": 1, "config": {}, "global_n": 0, "global_k": 0, "entities": {"a": 3}})


# --- bad input ---------------------------------------------------------------------------


def test_bad_items_raise_invalid_input() -> None:
    det = SurgeDetector()
    det.update("nokia", T0, False, "a")
    with pytest.raises(InvalidInput, match="time zone"):
        det.update("nokia", datetime(2024, 5, 1, 9, 1), False, "b")
    with pytest.raises(InvalidInput, match="True or False"):
        det.update("nokia", T0, float("nan"), "c")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="datetime"):
        det.update("nokia", float("nan"), True, "d")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="non-empty"):
        det.update(" ", T0, True, "e")
    with pytest.raises(InvalidInput, match="Item id"):
        det.update("nokia", T0, True, "")
    # Slightly late (within allowed_lateness_s, default 60 s): scored; older: refused.
    det.update("nokia", T0 + timedelta(minutes=10), False, "f")
    det.update("nokia", T0 + timedelta(minutes=9, seconds=30), True, "g")
    with pytest.raises(InvalidInput, match="older than that entity's latest item"):
        det.update("nokia", T0 + timedelta(minutes=5), True, "h")
    # Another entity has its own clock; another offset is the same instant.
    det.update("kone", T0 + timedelta(minutes=1), np.bool_(True), "i")
    det.update("nokia", (T0 + timedelta(minutes=10)).astimezone(timezone(timedelta(hours=3))), False, "j")
    assert det.state()["entities"]["nokia"]["seen"] == 4


@pytest.mark.parametrize("field, value", [("false_alarms_per_10k", 0.0), ("lift", 1.0), ("guard_quantile", 1.0),
                                          ("prior_rate", float("nan")), ("half_life_items", 0.0)])
def test_bad_settings_name_the_setting(field: str, value: float) -> None:
    settings: dict[str, Any] = {field: value}
    with pytest.raises(InvalidInput, match=field):
        SurgeDetector(SurgeConfig(**settings))
