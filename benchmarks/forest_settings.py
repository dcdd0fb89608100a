"""Causal forest settings against the simulator's truth: cost of fitting and predicting, accuracy.

Not part of ``make bench`` (the default forest alone takes ~5 CPU-minutes on 50,000 loans); run
by hand on simulated books (each folder with its ``truth/`` as ``npl simulate`` writes it)::

    .venv/bin/python benchmarks/forest_settings.py BOOK [BOOK ...] \
        --settings 400:0.45 200:0.45 200:0.25 100:0.25 --predict-rows 200000

Each setting is ``TREES:MAX_SAMPLES`` or ``TREES:MAX_SAMPLES:MIN_SAMPLES_LEAF`` of
:class:`~npl_engine.causal.CausalForestEstimator` (other options at their defaults: LightGBM
nuisances of 200 rounds, 3 folds, seed 0 unless ``--seed``), fitted on the book's causal data
as ``npl effects`` builds it (outcome: 60-month recovery rate). For each it prints

- fit: wall seconds and CPU-seconds (``os.times`` user + system, threads included) of
  ``fit``, nuisance models included (the same, same seed, for every setting);
- per action, against the true per-loan effect (``tests/causal/conftest.py``'s
  ``true_effects``: expected collections under the action minus under none, over exposure):
  Spearman rank correlation, error of the mean effect (estimated mean minus true mean, all
  analysed loans), share of loans whose 95 % interval covers the truth, mean interval width;
- predict: wall and CPU-seconds of ``effect_and_interval`` (compiled forest) on
  ``--predict-rows`` rows drawn with replacement from the book's covariates, after a warm-up
  call that compiles the kernels: the per-loan cost of ``npl policy``.

The load average is printed with each figure: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import spearmanr

REPO_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_DIR))  # the truth helper of the tests, shared rather than copied

from tests.causal.conftest import true_effects  # noqa: E402


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _causal_data(book: str) -> Any:
    from npl_engine.causal import CausalSettings, build_causal_data
    from npl_engine.data import read_dataset
    from npl_engine.features import build_features, learn_vocabularies

    data = read_dataset(book, kind="book")
    vocab = learn_vocabularies(build_features(data.loans).collect())
    return build_causal_data(data, CausalSettings(), vocab)


def _arms(treatment: np.ndarray) -> tuple[str, ...]:
    from npl_engine.causal import ACTION_INTENSITY

    order = {a: i for i, a in enumerate(ACTION_INTENSITY)}
    return tuple(sorted(set(treatment.tolist()), key=lambda a: (order.get(a, len(order)), a)))


def _parse(setting: str) -> dict[str, Any]:
    parts = setting.split(":")
    out: dict[str, Any] = {"n_trees": int(parts[0]), "max_samples": float(parts[1])}
    if len(parts) > 2:  # TREES:MAX_SAMPLES:LEAF
        out["min_samples_leaf"] = int(parts[2])
    return out


def run_book(book: str, settings: list[str], *, predict_rows: int, seed: int) -> None:
    """Fit each setting on one book and print its cost and its accuracy against the truth."""
    from npl_engine.causal import CausalForestEstimator

    data = _causal_data(book)
    X = np.asarray(data.covariates.values, dtype=np.float64)  # noqa: N806
    treatment = np.asarray(data.treatment).astype(str)
    y = np.asarray(data.outcome, dtype=np.float64)
    arms = _arms(treatment)
    sim = SimpleNamespace(truth=pl.read_parquet(Path(book) / "truth" / "loans.parquet"))
    ids = data.frame["loan_id"]
    truth = {a: true_effects(sim, ids, a).to_numpy() for a in arms[1:]}  # type: ignore[arg-type]
    rows = np.random.default_rng(0).integers(0, X.shape[0], size=predict_rows)
    print(
        f"\n## {book}: {X.shape[0]:,} loans, {X.shape[1]} covariates, arms {arms}, "
        f"min_leaf default {CausalForestEstimator.min_leaf(X.shape[0])}"
    )
    print(
        "| trees:max_samples[:leaf] | fit wall s | fit CPU-s | predict CPU-s | "
        + " | ".join(f"{a} rho / err / cover / width" for a in arms[1:])
        + " | load |"
    )
    print("|---|--:|--:|--:|" + "---|" * len(arms[1:]) + "---|")
    for setting in settings:
        load_before = _load()
        estimator = CausalForestEstimator(seed=seed, **_parse(setting))
        start, cpu = time.perf_counter(), _cpu()
        estimator.fit(y, treatment, X, arms=arms)
        fit_wall, fit_cpu = time.perf_counter() - start, _cpu() - cpu
        effect, low, high = estimator.effect_and_interval(X)
        cells = []
        for k, action in enumerate(arms[1:]):
            t = truth[action]
            rho = spearmanr(effect[:, k], t)[0]
            err = effect[:, k].mean() - t.mean()
            cover = ((low[:, k] <= t) & (t <= high[:, k])).mean()
            width = (high[:, k] - low[:, k]).mean()
            cells.append(f"{rho:.3f} / {err:+.4f} / {cover:.3f} / {width:.3f}")
        x_pred = X[rows]
        estimator.effect_and_interval(X[:1000])  # compiled kernels warm
        start, cpu = time.perf_counter(), _cpu()
        estimator.effect_and_interval(x_pred)
        pred_cpu = _cpu() - cpu
        print(
            f"| {setting} | {fit_wall:.1f} | {fit_cpu:.1f} | {pred_cpu:.2f} | "
            + " | ".join(cells)
            + f" | {load_before} → {_load()} |",
            flush=True,
        )


def main() -> None:
    """Parse the books and settings, then run each book."""
    parser = argparse.ArgumentParser()
    parser.add_argument("books", nargs="+")
    parser.add_argument("--settings", nargs="+", default=["400:0.45", "200:0.45", "200:0.25"])
    parser.add_argument("--predict-rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average {_load()}; CPUs {os.cpu_count()}; seed {args.seed}")
    for book in args.books:
        run_book(book, args.settings, predict_rows=args.predict_rows, seed=args.seed)


if __name__ == "__main__":
    main()
