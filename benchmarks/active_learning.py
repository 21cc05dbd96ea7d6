"""Active learning on BANKING77: test accuracy against labels bought, random vs uncertainty order.

A simulated annotation project, with BANKING77's gold labels as the oracle (the
"annotator" answers every item correctly and instantly):

- Model, the same for every order: frozen all-MiniLM-L6-v2 (the default base model,
  ``default_base_model()``), mean-pooled and L2-normalised sentence embeddings computed
  once for all 13,083 texts (cached), with a multinomial logistic-regression head
  (scikit-learn, L-BFGS, ``C`` = ``--c``) retrained from scratch after every batch.
- Pool: the 10,003 rows of ``train.csv``; evaluation: all 3,080 rows of ``test.csv``.
- Each repeat draws a random seed set (``--seed-labels``, the same for every order in
  that repeat), then buys ``--batch`` labels at a time up to ``--budget``, choosing them:
  - random (the baseline): uniformly from the unlabelled pool;
  - least_confidence / margin / entropy: the most uncertain unlabelled items under
    the current model (``chainkeeper.annotation.active.rank_items``).
- Printed: accuracy per budget (mean over ``--repeats``), labels needed to reach each
  ``--target`` accuracy (85 % and 90 % by default) for each order and its ratio to
  random, the accuracy with the whole pool labelled (the ceiling of this model),
  seconds, and the load average. The plot goes to ``--plot`` (matplotlib, from the
  ``bench`` extra).

    python benchmarks/active_learning.py        # 19 min on 2 cores at load 18; the first run embeds too (+9 min)
    python benchmarks/active_learning.py --repeats 1 --budget 2000   # quicker
    CHAINKEEPER_DATASETS_DIR=/data/datasets python benchmarks/active_learning.py

The machine may be shared: seconds move with the load, the accuracies and label counts
do not (everything is seeded).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from chainkeeper.annotation.active import STRATEGIES, rank_items
from chainkeeper.core.settings import default_base_model
from chainkeeper.training.model import ClassifierMeta, TextClassifier

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, datasets_dir, load_average, read_csv  # noqa: E402  (benchmarks/ is the script's folder)

ORDERS = ("random", *STRATEGIES)


# --- embeddings (computed once) ---------------------------------------------------------


@torch.inference_mode()
def embed(texts: Sequence[str], base: Path, *, batch_size: int = 128) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM embeddings of shape (len(texts), 384).

    The classifier's own forward pass does the pooling: with its head replaced by the
    identity (and dropout off in eval mode) it returns the pooled embedding.
    """
    model, tokenizer = TextClassifier.from_base(base, ClassifierMeta(labels=["_", "__"], pooling="mean"))
    model.head = torch.nn.Identity()
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # pad each batch to its own longest text
    out = np.empty((len(texts), model.encoder.config.hidden_size), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                        max_length=model.meta.max_length, return_tensors="pt")
        out[idx] = torch.nn.functional.normalize(model(enc["input_ids"], enc["attention_mask"]), dim=-1).numpy()
    return out


def cached_embeddings(texts: Sequence[str], base: Path, cache: Path) -> tuple[np.ndarray, float]:
    """Embeddings from ``cache`` when it holds these texts under this model, else computed and saved.

    Returns:
        The embeddings and the seconds spent computing them (0 when read from the cache).
    """
    key = hashlib.sha256("\n".join([str(base), *texts]).encode()).hexdigest()
    if cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            return stored["embeddings"], 0.0
    start = time.perf_counter()
    vectors = embed(texts, base)
    seconds = time.perf_counter() - start
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=np.array(key), embeddings=vectors)
    return vectors, seconds


# --- the simulation ---------------------------------------------------------------------


def fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
    """The linear head: multinomial logistic regression, retrained from scratch."""
    with warnings.catch_warnings():
        # a few hundred L-BFGS steps are enough for the ranking; full convergence is not the point
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=300).fit(x, y)


def simulate(order: str, x_pool: np.ndarray, y_pool: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
             seed_set: np.ndarray, batch: int, budget: int, c: float, rng: np.random.Generator) -> list[float]:
    """Test accuracy after the seed set and after every batch, buying labels in ``order``."""
    labelled = np.zeros(len(y_pool), dtype=bool)
    labelled[seed_set] = True
    accuracies = []
    while True:
        model = fit(x_pool[labelled], y_pool[labelled], c)
        accuracies.append(float((model.predict(x_test) == y_test).mean()))
        remaining = np.flatnonzero(~labelled)
        take = min(batch, budget - int(labelled.sum()), len(remaining))
        if take <= 0:
            return accuracies
        if order == "random":
            chosen = rng.choice(remaining, size=take, replace=False)
        else:
            probs = model.predict_proba(x_pool[remaining])
            chosen = remaining[rank_items(probs, order, limit=take)]  # type: ignore[arg-type]
        labelled[chosen] = True


def labels_to_reach(sizes: Sequence[int], accuracies: Sequence[float], target: float) -> int | None:
    """The first label count whose accuracy reaches ``target``, or None within the budget."""
    return next((n for n, acc in zip(sizes, accuracies, strict=True) if acc >= target), None)


def plot(sizes: Sequence[int], curves: dict[str, np.ndarray], targets: Sequence[float], ceiling: float, path: Path,
         title: str) -> bool:
    """Accuracy against labels, one line per order (mean, with min-max band over repeats)."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        print("matplotlib is not installed: no plot. Run 'pip install -e .[bench]'.")
        return False
    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for order, runs in curves.items():
        ax.plot(sizes, runs.mean(axis=0), label=order, linewidth=2 if order != "random" else 2.5,
                linestyle="--" if order == "random" else "-")
        ax.fill_between(sizes, runs.min(axis=0), runs.max(axis=0), alpha=0.15)
    for target in targets:
        ax.axhline(target, color="grey", linewidth=1, linestyle=":")
        ax.annotate(f"{target:.0%}", (sizes[0], target), textcoords="offset points", xytext=(0, 3), color="grey")
    ax.axhline(ceiling, color="black", linewidth=1, linestyle="-.", label=f"whole pool labelled ({ceiling:.1%})")
    ax.set_xlabel("labels bought (seed set included)")
    ax.set_ylabel("test accuracy (3,080 rows)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-labels", type=int, default=200, help="random labels before the first model")
    parser.add_argument("--batch", type=int, default=100, help="labels bought per step")
    parser.add_argument("--budget", type=int, default=3000, help="labels in all, seed set included")
    parser.add_argument("--repeats", type=int, default=3, help="seed sets (and random orders) to average over")
    parser.add_argument("--target", type=float, nargs="+", default=[0.85, 0.90],
                        help="accuracies whose label cost is reported")
    parser.add_argument("--c", type=float, default=20.0, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for the embeddings")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "chainkeeper-bench"
                        / "banking77-minilm-embeddings.npz", help="where the embeddings are kept between runs")
    parser.add_argument("--plot", type=Path, default=REPO / "docs" / "images" / "active_learning.png")
    args = parser.parse_args(argv)

    folder = datasets_dir() / "banking77"
    if not (folder / "train.csv").is_file() or not (folder / "test.csv").is_file():
        print(f"BANKING77 not found at {folder} (need train.csv and test.csv). "
              "Set CHAINKEEPER_DATASETS_DIR to the folder holding banking77/.")
        return 2
    began = time.perf_counter()
    torch.set_num_threads(args.threads)
    pool_texts, pool_labels = read_csv(folder / "train.csv")
    test_texts, test_labels = read_csv(folder / "test.csv")
    base = default_base_model()
    print(f"model: frozen {base.parent.name}/{base.name} (all-MiniLM-L6-v2), mean-pooled L2-normalised embeddings "
          f"+ multinomial logistic regression (C={args.c:g}), retrained after every batch")
    print(f"pool {len(pool_texts)} rows (train.csv), test {len(test_texts)} rows, {len(set(pool_labels))} intents; "
          f"seed {args.seed_labels} random labels, batches of {args.batch}, budget {args.budget}, "
          f"{args.repeats} repeats; oracle = gold labels")
    print(load_average())

    vectors, embed_s = cached_embeddings([*pool_texts, *test_texts], base, args.cache)
    print(f"embeddings {vectors.shape}: " + (f"computed in {embed_s:.0f}s, cached at {args.cache}" if embed_s
                                            else f"read from {args.cache}"))
    names = sorted(set(pool_labels))
    index = {name: i for i, name in enumerate(names)}
    x_pool, x_test = vectors[:len(pool_texts)], vectors[len(pool_texts):]
    y_pool = np.array([index[y] for y in pool_labels])
    y_test = np.array([index[y] for y in test_labels])

    # One BLAS thread for the small fits: on a shared, busy machine OpenBLAS's spinning
    # threads made each fit about ten times slower (measured: 22 s against 1.8 s, 1,000 rows).
    threadpool_limits(1)
    start = time.perf_counter()
    ceiling = float((fit(x_pool, y_pool, args.c).predict(x_test) == y_test).mean())
    print(f"ceiling: all {len(y_pool)} pool rows labelled -> test accuracy {ceiling:.4f} "
          f"({time.perf_counter() - start:.1f}s per fit on the whole pool)")

    sizes = list(range(args.seed_labels, args.budget, args.batch)) + [args.budget]
    curves: dict[str, np.ndarray] = {order: np.zeros((args.repeats, len(sizes))) for order in ORDERS}
    seconds = dict.fromkeys(ORDERS, 0.0)
    for repeat in range(args.repeats):
        seed_set = np.random.default_rng(1000 + repeat).choice(len(y_pool), size=args.seed_labels, replace=False)
        for order in ORDERS:
            start = time.perf_counter()
            curves[order][repeat] = simulate(order, x_pool, y_pool, x_test, y_test, seed_set=seed_set,
                                             batch=args.batch, budget=args.budget, c=args.c,
                                             rng=np.random.default_rng(2000 + repeat))
            seconds[order] += time.perf_counter() - start
            print(f"  repeat {repeat + 1}/{args.repeats} {order:<16} final accuracy {curves[order][repeat][-1]:.4f} "
                  f"({time.perf_counter() - start:.0f}s)", flush=True)

    means = {order: runs.mean(axis=0) for order, runs in curves.items()}
    print("\nmean test accuracy by labels bought:")
    shown = [i for i, n in enumerate(sizes) if n in (args.seed_labels, args.budget) or n % 500 == 0]
    print(f"  {'labels':>7} " + " ".join(f"{o:>16}" for o in ORDERS))
    for i in shown:
        print(f"  {sizes[i]:>7} " + " ".join(f"{means[o][i]:>16.4f}" for o in ORDERS))

    for target in args.target:
        print(f"\nlabels needed to reach {target:.0%} test accuracy (mean curve over {args.repeats} repeats; "
              f"None = not within the budget):")
        random_n = labels_to_reach(sizes, means["random"], target)
        for order in ORDERS:
            n = labels_to_reach(sizes, means[order], target)
            per_repeat = [labels_to_reach(sizes, run, target) for run in curves[order]]
            if n is None:
                cost, ratio = f"not within {args.budget}", "-"
            else:
                cost = str(n)
                ratio = f"{n / random_n:.2f}x random" if random_n else f"< {n / args.budget:.2f}x random"
            print(f"  {order:<16} {cost:>18}  {ratio:<16} per repeat {per_repeat}")
    print("\nseconds per repeat (fits + scoring the pool): "
          + ", ".join(f"{order} {seconds[order] / args.repeats:.0f}s" for order in ORDERS))
    print(f"{load_average()}; total {time.perf_counter() - began:.0f}s")

    title = (f"BANKING77: frozen MiniLM-L6 embeddings + logistic regression\n"
             f"seed {args.seed_labels} random labels, batches of {args.batch}, mean of {args.repeats} repeats "
             f"(band: min-max)")
    if plot(sizes, curves, args.target, ceiling, args.plot, title):
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
