"""Drift detection: how soon each check fires after the traffic changes, and how often it cries wolf.

A quick MiniLM classifier is trained on a seeded sample of BANKING77 ``train.csv`` (with
``chainkeeper.training.loop``; 8 rows per intent, 2 epochs by default: a weak model, but
drift is about the inputs), evaluated on 300 rows of ``test.csv`` (the dataset version's
test split: the drift reference), registered, promoted and deployed in a
fresh Chainkeeper home. Then requests are served through ``serve_predictions`` (so they
are logged with request ids, as in production), 10 texts per call:

1. held-back BANKING77 test rows (51 windows of 30 by default, 1,530 rows not in the
   reference): in-distribution traffic, cut into non-overlapping windows of ``--window``
   requests; the share of windows in which a check fires is its false-alarm rate (alpha
   is 0.01, so about 1 % is by design);
2. then ``financial_sentiment/test.csv`` sentences: after every 10 of them, the last
   ``--window`` requests are checked; the first such window in which a check fires
   gives "requests after the switch".

Each window is checked with the same functions the ``drift`` job runs (``drift.run_checks``
on profiles built by ``drift_jobs.profile_texts``); each served text's profile is
computed once, so sliding windows do not recompute embeddings. At the end one real
``check_drift`` call stores the results of the last window, as the job does.

Baselines, in the same run: (a) the textbook PSI over all 77 raw labels with the 0.2
rule (no merging of rare labels, no small-sample threshold); (b) a mean-confidence rule:
fire when the window's mean confidence falls below 80 % of the reference sample's;
(c, d) the label checks as they were before issue 8: labels merged into bins expecting at
least 5 window rows by their reference share, chi-square with its asymptotic p-value,
and PSI against ``max(0.2, chi2_{1-alpha}(bins - 1) (1/n + 1/m))``.

    python benchmarks/drift.py                    # train (~1-2 min on 2 idle cores), then stream
    python benchmarks/drift.py --per-label 15 --epochs 3 --window 50 --calm-windows 50

The machine may be shared: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from _common import datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)


def build_chain(home: Path, train: tuple[list[str], list[str]], test: tuple[list[str], list[str]],
                args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """A migrated home with a dataset version, a trained model in production, deployed as ``banking``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from chainkeeper.chain import open_context
    from chainkeeper.core import migrations
    from chainkeeper.core.db import Database
    from chainkeeper.core.settings import default_base_model, load_settings
    from chainkeeper.data.tables import SqlDatasetVersion
    from chainkeeper.data.versions import content_hash
    from chainkeeper.governance.actors import Actor
    from chainkeeper.governance.bootstrap import seed_roles
    from chainkeeper.governance.permissions import seed_permissions
    from chainkeeper.registry.versions import Stage, register_model_version, transition_stage
    from chainkeeper.serving.deployments import deploy_model_version
    from chainkeeper.training.config import TrainConfig
    from chainkeeper.training.jobs import Split, evaluate_split
    from chainkeeper.training.loop import seed_everything, train_classifier
    from chainkeeper.training.model import ClassifierMeta, TextClassifier
    from chainkeeper.training.runs import finish_run
    from chainkeeper.training.tables import SqlRun

    db = Database(f"sqlite:///{home / 'chainkeeper.db'}")
    migrations.upgrade(db)
    seed_roles(db)
    seed_permissions(db)
    db.dispose()
    ctx = open_context(load_settings({}, home=home))
    steward, engineer = Actor("dana", frozenset({"data_steward"})), Actor("erin", frozenset({"ml_engineer"}))
    releaser = Actor("rory", frozenset({"release_manager"}))

    # The dataset version: its Parquet snapshot in the artefact store (the data stage's
    # cleaning is measured by benchmarks/data_million.py, not here).
    texts, labels = train[0] + test[0], train[1] + test[1]
    splits = ["train"] * len(train[0]) + ["test"] * len(test[0])
    table = pa.table({"row_id": list(range(len(texts))), "text": texts, "label": labels, "split": splits,
                      "source_id": [1] * len(texts), "source_line": list(range(2, len(texts) + 2))})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with ctx.db.session() as s:
        dataset = SqlDatasetVersion(name="banking77", version=1, content_hash=content_hash(table),
                                    snapshot_artifact=ctx.artifacts.put_bytes(sink.getvalue().to_pybytes()),
                                    state="released", owner=steward.name, created_by=steward.name)
        s.add(dataset)
        s.flush()
        run = SqlRun(task="sequence-classification", dataset_version_id=dataset.id, base_model="MiniLM",
                     state="running", created_by=engineer.name)
        s.add(run)
        s.flush()
        run_id = run.id

    label_names = sorted(set(train[1]))
    config = TrainConfig(epochs=args.epochs, max_length=32, batch_size=32, learning_rate=1e-4)
    seed_everything(config.seed)
    model, tokenizer = TextClassifier.from_base(default_base_model(), ClassifierMeta(labels=label_names,
                                                                                     max_length=32))
    index = {name: i for i, name in enumerate(label_names)}
    start = time.perf_counter()
    result = train_classifier(model, tokenizer, train[0], [index[y] for y in train[1]], config)
    print(f"trained {result.steps} steps on {len(train[0])} rows in {time.perf_counter() - start:.0f}s", flush=True)
    metrics = {"test": evaluate_split(model, tokenizer, Split(texts=test[0], labels=test[1]), batch_size=64,
                                      full=True)}
    with tempfile.TemporaryDirectory() as tmp:
        digest = ctx.artifacts.put_tree(model.save(Path(tmp) / "model", tokenizer))
    finish_run(ctx.db, run_id, metrics=metrics, model_artifact=digest)
    version = register_model_version(ctx, run_id=run_id, name="banking", actor=engineer)
    transition_stage(ctx, version.id, Stage.STAGING, actor=releaser)
    version = transition_stage(ctx, version.id, Stage.PRODUCTION, actor=releaser)
    deploy_model_version(ctx, name="banking", model_version_id=version.id, actor=releaser)
    print(f"offline test: accuracy {metrics['test']['accuracy']:.3f}, macro-F1 {metrics['test']['macro_f1']:.3f}, "
          f"ECE {metrics['test']['calibration']['ece']:.3f}", flush=True)
    torch.set_num_threads(args.threads)
    return ctx, version, (model, tokenizer)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-label", type=int, default=8, help="training rows per intent (seeded sample)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--reference", type=int, default=300, help="test rows kept as the dataset version's test split")
    parser.add_argument("--window", type=int, default=30, help="requests per checked window")
    parser.add_argument("--calm-windows", type=int, default=51, help="in-distribution windows streamed first")
    parser.add_argument("--step", type=int, default=10, help="requests between checks after the switch")
    parser.add_argument("--shifted", type=int, default=200, help="financial sentences streamed after the switch")
    parser.add_argument("--permutations", type=int, default=200, help="MMD permutation test size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    folder = datasets_dir()
    needed = [folder / "banking77" / "train.csv", folder / "banking77" / "test.csv",
              folder / "financial_sentiment" / "test.csv"]
    if not all(p.is_file() for p in needed):
        print(f"Datasets not found under {folder} (need {', '.join(str(p) for p in needed)}). "
              "Set CHAINKEEPER_DATASETS_DIR.", file=sys.stderr)
        return 2

    from scipy import stats

    from chainkeeper.monitoring.drift import CHECKS, Profile, psi, run_checks
    from chainkeeper.monitoring.drift_jobs import MMD_MAX_ROWS, check_drift, profile_texts, reference_profile
    from chainkeeper.serving.deployments import serve_predictions
    from chainkeeper.serving.runtime import PredictorCache

    print(f"{load_average()}  (the machine may be shared with other work)")
    train_texts, train_labels = read_csv(needed[0])
    test_texts, test_labels = read_csv(needed[1])
    finance, _ = read_csv(needed[2])
    rng = random.Random(13)
    by_label: dict[str, list[int]] = {}
    for i, y in enumerate(train_labels):
        by_label.setdefault(y, []).append(i)
    keep = sorted(i for rows in by_label.values() for i in rng.sample(rows, min(args.per_label, len(rows))))
    order = list(range(len(test_texts)))
    rng.shuffle(order)
    reference_rows = order[:args.reference]
    stream_rows = order[args.reference:args.reference + args.calm_windows * args.window]
    shifted = rng.sample(finance, min(args.shifted, len(finance)))

    with tempfile.TemporaryDirectory(prefix="ck-drift-") as tmp:
        ctx, version, model = build_chain(Path(tmp), ([train_texts[i] for i in keep], [train_labels[i] for i in keep]),
                                          ([test_texts[i] for i in reference_rows],
                                           [test_labels[i] for i in reference_rows]), args)
        reference = reference_profile(ctx, version, model=model)
        print(f"reference: {reference.description}")
        predictors = PredictorCache(ctx, batching=False, engine="torch")
        stream = [test_texts[i] for i in stream_rows] + shifted
        switch = len(stream_rows)
        profiles: list[Profile] = []
        start = time.perf_counter()
        for at in range(0, len(stream), args.step):
            texts = stream[at:at + args.step]
            served = serve_predictions(ctx, predictors, "banking", texts)
            profiles.append(profile_texts(model[0], model[1], texts,
                                          served=[(p.label, p.score) for p in served.predictions]))
        print(f"served and profiled {len(stream)} requests in {time.perf_counter() - start:.0f}s "
              f"({switch} BANKING77, then {len(shifted)} financial sentences)", flush=True)

        flat = {key: [v for p in profiles for v in getattr(p, key)]
                for key in ("labels", "confidences", "lengths", "oov_words", "scripts")}
        embeddings = np.vstack([p.embeddings for p in profiles])
        sub = np.random.default_rng(0)
        ref_emb = reference.profile.embeddings
        ref_emb = ref_emb[sub.choice(len(ref_emb), MMD_MAX_ROWS, replace=False)] if len(ref_emb) > MMD_MAX_ROWS \
            else ref_emb
        ref = Profile(**{**{k: getattr(reference.profile, k) for k in flat}, "embeddings": ref_emb})
        ref_mean_conf = float(np.mean(reference.profile.confidences))
        all_labels = sorted(set(reference.profile.labels) | set(flat["labels"]))

        def window(lo: int, hi: int) -> Profile:
            return Profile(**{k: v[lo:hi] for k, v in flat.items()}, embeddings=embeddings[lo:hi])

        def fired(lo: int, hi: int) -> dict[str, bool]:
            w = window(lo, hi)
            out = {r.check: r.drifted for r in run_checks(ref, w, permutations=args.permutations)}
            raw = psi([reference.profile.labels.count(y) for y in all_labels], [w.labels.count(y) for y in all_labels])
            out["baseline: raw 77-label PSI > 0.2"] = raw > 0.2
            out["baseline: mean confidence < 80 %"] = float(np.mean(w.confidences)) < 0.8 * ref_mean_conf
            ref_bins, win_bins = _old_label_bins(ref.labels, w.labels)
            out[OLD_CHI2] = stats.chi2_contingency([ref_bins, win_bins], correction=False).pvalue < 0.01
            old_limit = max(0.2, float(stats.chi2.ppf(0.99, len(ref_bins) - 1)) * (1 / len(ref.labels) + 1 / len(w)))
            out[OLD_PSI] = psi(ref_bins, win_bins) > old_limit
            return out

        names = [*CHECKS, "baseline: raw 77-label PSI > 0.2", "baseline: mean confidence < 80 %", OLD_CHI2, OLD_PSI]
        alarms = {n: 0 for n in names}
        calm_windows = switch // args.window
        for w in range(calm_windows):
            for name, hit in fired(w * args.window, (w + 1) * args.window).items():
                alarms[name] += hit
        first: dict[str, int | None] = {n: None for n in names}
        for after in range(args.step, len(shifted) + 1, args.step):
            hi = switch + after
            for name, hit in fired(hi - args.window, hi).items():
                if hit and first[name] is None:
                    first[name] = after
        checked = check_drift(ctx, "banking", actor=_operator(), last=args.window)

    print(f"\nwindows of {args.window} requests; alpha 0.01; {calm_windows} in-distribution windows\n")
    print(f"| check | false alarms (of {calm_windows} windows) | false-alarm rate | requests after the switch "
          "until it fires |")
    print("|---|---|---|---|")
    for name in names:
        when = first[name]
        print(f"| {name} | {alarms[name]} | {alarms[name] / calm_windows:.1%} | "
              f"{when if when is not None else f'not within {len(shifted)}'} |")
    print(f"\nstored by check_drift for the last window: "
          f"{', '.join(f'{r.check}={r.statistic:.3g}/{r.threshold:.3g}' for r in checked)}")
    print(load_average())
    return 0


OLD_CHI2 = "before issue 8: label_chi2, asymptotic p-value"
OLD_PSI = "before issue 8: label_psi, chi-square-scaled threshold"


def _old_label_bins(reference: list[str], window: list[str]) -> tuple[list[int], list[int]]:
    """Reference and window counts over the bins used before issue 8.

    Labels from most to least frequent in the reference, packed until a bin expects 5
    window rows; a short last bin joins the one before; unseen labels go to the last.
    """
    counts = Counter(reference)
    bins: dict[str, int] = {}
    current, filled = 0, 0
    for label, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        bins[label] = current
        filled += count
        if filled * len(window) >= 5 * len(reference):
            current, filled = current + 1, 0
    last = max(current - 1, 0)  # a short last bin joins the one before; none is left empty
    bins = {label: min(b, last) for label, b in bins.items()}
    ref_bins, win_bins = [0] * (last + 1), [0] * (last + 1)
    for label in reference:
        ref_bins[bins[label]] += 1
    for label in window:
        win_bins[bins.get(label, last)] += 1
    return ref_bins, win_bins


def _operator():  # type: ignore[no-untyped-def]
    from chainkeeper.governance.actors import Actor

    return Actor("otto", frozenset({"operator"}))


if __name__ == "__main__":
    raise SystemExit(main())
