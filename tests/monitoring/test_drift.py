"""Drift checks: hand-computed statistics, shifted vs unshifted samples, and the stored job path."""

from __future__ import annotations

import math
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats

from chainkeeper.core.db import utcnow
from chainkeeper.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from chainkeeper.core.jobs import JobState, get_job, job_logs, submit_job
from chainkeeper.core.scheduler import Scheduler, get_schedule
from chainkeeper.core.worker import Worker
from chainkeeper.governance.actors import Actor
from chainkeeper.governance.ledger import list_entries
from chainkeeper.monitoring import drift
from chainkeeper.monitoring.drift import Profile, categorical_chi2, embedding_mmd, ks_check, psi, run_checks
from chainkeeper.monitoring.drift_jobs import (
    check_drift,
    latest_drift_results,
    list_drift_results,
    schedule_drift_checks,
    submit_drift_job,
    text_features,
)
from chainkeeper.monitoring.tables import SqlPrediction
from tests.monitoring.chain import IN_DISTRIBUTION, OPERATOR, Served, any_served, classifier_dir, served  # noqa: F401  (fixtures)

# Financial-news sentences: longer, and full of names the tokenizer splits into many pieces.
SHIFTED = [f"Rautaruukki and Tietoenator said operating profit totalled EUR{i}.{i % 7}m , up from EUR{i + 3}.2m "
           f"in 200{i % 9} , {i % 11}.4 % of net sales of Aspocomp" for i in range(40)]


# --- statistics against hand computation and scipy -------------------------------------


def test_label_psi_needs_more_than_the_rule_of_thumb_on_small_windows() -> None:
    reference = ["a"] * 150 + ["b"] * 150
    small = drift.label_psi(reference, ["a"] * 15 + ["b"] * 15)
    assert small.threshold > 0.2 and small.details["threshold_from"] == "calibrated" and not small.drifted
    assert drift.label_psi(reference * 20, ["a"] * 3000 + ["b"] * 3000).threshold == 0.2


def test_psi_matches_the_hand_computed_value() -> None:
    # shares (.5, .5) -> (.8, .2): 0.3 ln(1.6) + 0.3 ln(2.5)
    assert psi([50, 50], [80, 20]) == pytest.approx(0.3 * math.log(1.6) + 0.3 * math.log(2.5))
    assert psi([10, 20, 30], [1, 2, 3]) == pytest.approx(0.0)
    with pytest.raises(InvalidInput, match="one length"):
        psi([1, 2], [1])


def test_chi_square_matches_the_hand_computed_value_and_scipy() -> None:
    reference, window = ["a"] * 50 + ["b"] * 50, ["a"] * 80 + ["b"] * 20
    result = categorical_chi2(reference, window, alpha=0.01)
    # expected counts 65/35 in both rows: 2 * 15^2/65 + 2 * 15^2/35
    assert result.statistic == pytest.approx(2 * 225 / 65 + 2 * 225 / 35)
    assert result.p_value == pytest.approx(stats.chi2.sf(result.statistic, 1))
    assert result.threshold == pytest.approx(stats.chi2.ppf(0.99, 1)) and result.drifted


def test_ks_matches_scipy_and_the_hand_computed_distance() -> None:
    result = ks_check("confidence_ks", [1, 2, 3, 4], [3, 4, 5, 6])
    assert result.statistic == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 200), rng.normal(0.4, 1, 150)
    ours, theirs = ks_check("x", a, b), stats.ks_2samp(a, b)
    assert (ours.statistic, ours.p_value) == pytest.approx((theirs.statistic, theirs.pvalue))
    assert ours.threshold == pytest.approx(math.sqrt(-math.log(0.005) / 2) * math.sqrt(350 / (200 * 150)))


def test_ks_where_scipys_exact_p_value_overflows_uses_the_asymptotic_one_quietly() -> None:
    # Text lengths of two windows of 500 that differ in two texts: D = 2/500, where
    # scipy's exact computation fails and warns (the quickstart's drift check met it).
    reference = [float(i % 50 + 3) for i in range(500)]
    window = [100.0, 100.0, *reference[2:]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = ks_check("length_ks", reference, window)
    expected = stats.ks_2samp(reference, window, method="asymp")
    assert (result.statistic, result.p_value) == pytest.approx((0.004, expected.pvalue))
    assert not result.drifted


def test_oov_increase_is_a_one_sided_two_proportion_test() -> None:
    result = drift.oov_increase(10, 1000, 30, 1000, alpha=0.01)
    pooled = 40 / 2000
    se = math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert result.statistic == pytest.approx(0.02)
    assert result.p_value == pytest.approx(stats.norm.sf(0.02 / se))
    assert result.threshold == pytest.approx(stats.norm.ppf(0.99) * se) and result.drifted
    assert not drift.oov_increase(30, 1000, 10, 1000).drifted  # fewer unknown words is no drift


def test_mmd_permutation_test_separates_shifted_from_unshifted_embeddings() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, (120, 8))
    same = embedding_mmd(reference, rng.normal(0, 1, (60, 8)), permutations=100)
    shifted = embedding_mmd(reference, rng.normal(0.8, 1, (60, 8)), permutations=100)
    assert not same.drifted and same.p_value > 0.05
    assert shifted.drifted and shifted.p_value < 0.01 and shifted.statistic > shifted.threshold > same.statistic / 10


def _profile(rng: np.random.Generator, n: int, *, shift: bool) -> Profile:
    labels = list(rng.choice(["a", "b", "c", "d"], n, p=[0.7, 0.1, 0.1, 0.1] if shift else [0.25] * 4))
    return Profile(labels=labels, confidences=list(rng.beta(2 if shift else 8, 2, n)),
                   lengths=list(rng.poisson(30 if shift else 10, n) + 1),
                   oov_words=list(rng.binomial(30 if shift else 10, 0.2 if shift else 0.01, n)),
                   scripts=["cjk" if shift and i % 2 else "latin" for i in range(n)],
                   embeddings=rng.normal(0.7 if shift else 0, 1, (n, 6)))


def test_every_check_fires_on_a_shifted_sample_and_none_on_an_unshifted_one() -> None:
    # Each test has a 1 % false-alarm rate by design (alpha 0.01); this seed draws no false alarm.
    rng = np.random.default_rng(11)
    reference = _profile(rng, 400, shift=False)
    calm = {r.check: r for r in run_checks(reference, _profile(rng, 100, shift=False), permutations=100)}
    shifted = {r.check: r for r in run_checks(reference, _profile(rng, 100, shift=True), permutations=100)}
    assert list(calm) == list(drift.CHECKS) == list(shifted)
    assert [name for name, r in calm.items() if r.drifted] == []
    assert [name for name, r in shifted.items() if not r.drifted] == []


def test_unknown_checks_and_empty_sides_are_refused() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(InvalidInput, match="Unknown drift check"):
        run_checks(_profile(rng, 10, shift=False), _profile(rng, 10, shift=False), checks=["psi"])


# --- text features with the real tokenizer ------------------------------------------------


def test_text_features_count_words_unknown_pieces_and_script(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    lengths, oov, scripts = text_features(tokenizer, ["my card is lost", "Xqzvbwkjh balance", "我的卡丢了"])
    assert lengths == [4, 2, 1]
    assert oov[0] == 0 and oov[1] == 1  # the made-up word is split into many pieces
    assert scripts == ["latin", "latin", "cjk"]


# --- stored checks on served traffic -----------------------------------------------------


def test_in_distribution_traffic_is_calm_and_shifted_traffic_fires(any_served: Served) -> None:
    any_served.serve(IN_DISTRIBUTION[40:])  # the reference's own texts: nothing may fire
    calm = check_drift(any_served.ctx, "support", actor=OPERATOR, last=40)
    assert [r.check for r in calm] == list(drift.CHECKS)
    assert [r.check for r in calm if r.drifted] == []
    assert calm[0].reference.startswith("dataset version support-intents v1") and calm[0].reference_size == 40
    any_served.serve(SHIFTED)
    shifted = {r.check: r for r in check_drift(any_served.ctx, "support", actor=OPERATOR, last=40)}
    assert {"length_ks", "oov_rate", "embedding_mmd"} <= {name for name, r in shifted.items() if r.drifted}
    assert shifted["length_ks"].p_value < 0.01 and shifted["length_ks"].window_size == 40
    stored = list_drift_results(any_served.ctx.db, "support")
    assert len(stored) == 2 * len(drift.CHECKS)
    assert latest_drift_results(any_served.ctx.db, "support")["length_ks"].drifted
    assert [e.action for e in list_entries(any_served.ctx.db, object_kind="deployment")][-2:] == [
        "monitoring.drift_check"] * 2


def test_a_window_too_small_unknown_deployment_or_role_is_refused(served: Served) -> None:
    served.serve(IN_DISTRIBUTION[:5])
    with pytest.raises(InvalidInput, match="served 5 prediction.*needs at least 30"):
        check_drift(served.ctx, "support", actor=OPERATOR)
    with pytest.raises(NotFound, match="no deployment named 'nope'"):
        check_drift(served.ctx, "nope", actor=OPERATOR)
    with pytest.raises(Forbidden, match="monitoring.check"):
        check_drift(served.ctx, "support", actor=Actor("aud", frozenset({"auditor"})))
    assert list_drift_results(served.ctx.db, "support") == []


def test_a_drift_job_checks_one_window_and_ends(served: Served) -> None:
    served.serve(IN_DISTRIBUTION[40:])
    job = submit_drift_job(served.ctx, "support", actor=OPERATOR, last=40)
    done = Worker(served.ctx).run_one()
    assert done is not None and done.state == JobState.SUCCEEDED, done
    assert done.result == {"checks_run": 1, "fired": [], "skipped": 0}
    assert {r.job_id for r in list_drift_results(served.ctx.db, "support")} == {job.id}
    assert any("window of 40 predictions" in line for _, _, line in job_logs(served.ctx.db, job.id))
    with pytest.raises(InvalidInput, match="window_s must be positive"):
        submit_drift_job(served.ctx, "support", actor=OPERATOR, window_s=0)


def test_a_recurring_drift_check_no_longer_blocks_the_queue(served: Served) -> None:
    """Issue 14, item 5: 'monitor drift --every 1h' was a job sleeping in the only worker,
    so the jobs queued after it never ran. Now it is a schedule of one-check jobs."""
    served.serve(IN_DISTRIBUTION[40:])
    schedule = schedule_drift_checks(served.ctx, "support", actor=OPERATOR, every_s=3600)
    assert (schedule.name, schedule.kind, schedule.params["window_s"]) == ("drift:support", "drift", 3600)
    (firing,) = Scheduler(served.ctx).run_once()
    other = submit_job(served.ctx, "sleep", {"steps": 1, "step_s": 0.01}, actor="olga")  # e.g. a training job

    worker = Worker(served.ctx)
    start = time.monotonic()
    assert worker.run_forever(exit_when_idle=True) == 2  # the one worker runs both, then is free
    assert time.monotonic() - start < 60
    assert get_job(served.ctx.db, other.id).state == JobState.SUCCEEDED
    check = get_job(served.ctx.db, firing.job_id or 0)
    assert check.state == JobState.SUCCEEDED and check.result == {"checks_run": 1, "fired": [], "skipped": 0}
    assert {r.job_id for r in list_drift_results(served.ctx.db, "support")} == {check.id}

    # The next firing is an hour on; a quiet window is skipped, not failed.
    assert Scheduler(served.ctx).run_once() == []
    later = get_schedule(served.ctx.db, schedule.id).next_run_at
    (again,) = Scheduler(served.ctx).run_once(now=later)
    with served.ctx.db.session() as s:  # the traffic aged out of the window
        s.execute(sa.update(SqlPrediction).values(at=utcnow() - timedelta(days=2)))
    assert worker.run_one() is not None
    skipped = get_job(served.ctx.db, again.job_id or 0)
    assert skipped.state == JobState.SUCCEEDED and skipped.result == {"checks_run": 0, "fired": [], "skipped": 1}
    with pytest.raises(Conflict, match="drift:support"):
        schedule_drift_checks(served.ctx, "support", actor=OPERATOR, every_s=60)
    with pytest.raises(Forbidden, match="monitoring.check"):
        schedule_drift_checks(served.ctx, "support", actor=Actor("aud", frozenset({"auditor"})), every_s=60)
