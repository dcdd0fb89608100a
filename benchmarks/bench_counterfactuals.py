"""Counterfactual benchmarks (issue 6 targets, 2-core machine).

- One loan, 3 counterfactuals (servicer levers, target p_recover 0.5), model trained on a
  100,000-loan book: median wall time per loan over 20 tape loans with p_recover < 0.3, target
  under 2 s. Baseline: the engine re-scoring one loan under every lever
  (``StrategyModel.p_recover``), the least a counterfactual search costs.
- A batch of 1,000 such loans (``counterfactuals`` over the list, as ``npl counterfactual
  --loan-ids`` runs it): wall time, target under 15 minutes; same baseline.

The book (``--seed 31``), the scoring model (``npl train --no-baselines``), the effect models
(``npl effects --outcome recovered`` and ``--outcome recovery_rate``, no refutations) and the
tape (10,000 loans, ``--seed 32``) are built once and cached under ``benchmarks/_data``.
Models and tape are loaded in set-up: the figures are the search, not the imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _harness import BenchConfig, BenchResult, at_most, measure, npl_cli

BOOK_FULL, BOOK_QUICK = 100_000, 5_000
BATCH_FULL, BATCH_QUICK = 1_000, 40
SINGLE_FULL, SINGLE_QUICK = 20, 5
TAPE_LOANS = 10_000


def _prepare(root: str, n_book: int) -> None:
    """Simulate, train and estimate effects once (not measured)."""
    base = Path(root)
    book, tape = base / "book", base / "tape"
    if not (book / "loans.parquet").is_file():
        npl_cli("simulate", "--out", str(book), "--loans", str(n_book), "--seed", "31")
    if not (base / "model" / "model.json").is_file():
        npl_cli("train", "--data", str(book), "--out", str(base / "model"), "--no-baselines")
    for name, outcome in (("effects", "recovered"), ("rate", "recovery_rate")):
        if not (base / name / "effect_model.joblib").is_file():
            npl_cli("effects", "--data", str(book), "--out", str(base / name),
                 "--outcome", outcome, "--no-refutations")  # fmt: skip
    if not (tape / "loans.parquet").is_file():
        npl_cli("simulate", "--out", str(tape), "--loans", str(TAPE_LOANS), "--seed", "32",
             "--kind", "tape")  # fmt: skip


def _load(root: str, n_loans: int) -> tuple[Any, Any, list[str]]:
    """Set-up: the strategy model, the tape's loans and the ids of loans below 0.3."""
    import polars as pl

    from npl_engine.cli._counterfactuals import _strategy_model
    from npl_engine.data import read_dataset

    base = Path(root)
    model = _strategy_model(base / "model", [base / "effects", base / "rate"], None)
    loans = read_dataset(base / "tape").loans.collect()
    p, _ = model.p_recover(loans)
    ids = loans.filter(pl.Series(p < 0.3))["loan_id"].head(n_loans).to_list()
    return model, loans, ids


def _rescore_all_levers(state: tuple[Any, Any, list[str]]) -> float:
    """Baseline: re-score each loan once under every lever; seconds per loan."""
    import time

    import polars as pl

    model, loans, ids = state
    start = time.perf_counter()
    for loan_id in ids:
        row = loans.filter(pl.col("loan_id") == loan_id)
        acts = list(model.actions)
        model.p_recover(pl.concat([row] * len(acts)), actions=acts)
    return (time.perf_counter() - start) / len(ids)


def _one_by_one(state: tuple[Any, Any, list[str]]) -> tuple[float, int]:
    """Median seconds per loan, each loan its own call (as `--loan-id` runs it)."""
    import time

    import numpy as np

    from npl_engine.counterfactuals import CounterfactualSettings, counterfactuals

    model, loans, ids = state
    seconds, found = [], 0
    for loan_id in ids:
        start = time.perf_counter()
        res = counterfactuals(model, loans, [loan_id], CounterfactualSettings(n=3))
        seconds.append(time.perf_counter() - start)
        found += int(res.loans["status"][0] == "found")
    return float(np.median(seconds)), found


def _batch(state: tuple[Any, Any, list[str]]) -> dict[str, Any]:
    from npl_engine.counterfactuals import CounterfactualSettings, counterfactuals, summarize

    model, loans, ids = state
    return summarize(counterfactuals(model, loans, ids, CounterfactualSettings(n=3)))


def counterfactual_latency_and_batch(config: BenchConfig) -> list[BenchResult]:
    """Seconds per loan for 3 counterfactuals, and a batch, against re-scoring the levers."""
    n_book = BOOK_QUICK if config.quick else BOOK_FULL
    n_single = SINGLE_QUICK if config.quick else SINGLE_FULL
    n_batch = BATCH_QUICK if config.quick else BATCH_FULL
    root = config.data_dir / f"counterfactual_{n_book}"
    measure(_prepare, str(root), n_book, timeout=6 * 3600)
    base = measure(_rescore_all_levers, str(root), n_single, setup=_load)
    single = measure(_one_by_one, str(root), n_single, setup=_load)
    batch = measure(_batch, str(root), n_batch, setup=_load, timeout=7200)
    median, found = single.result
    summary = batch.result
    quick = config.quick
    size = f"model trained on a {n_book:,}-loan book; tape loans with p_recover < 0.3"
    return [
        BenchResult(
            name="counterfactuals, one loan (n=3): median wall time per loan",
            value=median,
            unit="s",
            target=None if quick else at_most(2.0),
            baseline_name="re-scoring one loan under every lever",
            baseline_value=base.result,
            notes=f"{size}; {n_single} loans, {found} with a counterfactual at target 0.5",
        ),
        BenchResult(
            name=f"counterfactuals, batch of {n_batch:,} loans: wall time",
            value=batch.wall_seconds,
            unit="s",
            target=None if quick else at_most(900.0),
            baseline_name=f"re-scoring under every lever × {n_batch:,}",
            baseline_value=base.result * n_batch,
            notes=f"{size}; share with a servicer lever "
            f"{summary['share_with_servicer_lever'] or 0:.0%}; median "
            f"{summary['median_seconds_per_loan'] or 0:.2f} s per loan; peak extra memory "
            f"{batch.peak_rss_delta_mib:,.0f} MiB",
        ),
    ]


BENCHMARKS = [counterfactual_latency_and_batch]
