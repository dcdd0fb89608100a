"""Causal benchmarks (issue targets, 2-core machine).

- ``npl effects`` on a 50,000-loan simulated book, as a user runs it (doubly robust averages,
  causal forest, validation, DoWhy refutations): under 300 s. Baseline: one LightGBM
  classifier (100 rounds) of the treatment on the same covariates, the least any
  propensity-adjusted estimate of this book costs.
- ``npl policy`` on a 1,000,000-loan tape with the fitted effects: under 60 s. Baseline: polars
  scanning and collecting the tape's loans file.
- ``npl policy --budgets 0:1000000:50`` (the gain curve, its 50 plans written) on the same
  1,000,000-loan tape: within 2x one single-budget plan (``npl policy --budget 1000000``, with
  its per-loan intervals and settlement figures) measured in the same run. Its effect model is
  fitted on a 4,000-loan book (``--no-refutations``): the ratio does not depend on the model's
  training size, and both sides predict with the same forest.

Each figure comes from a fresh process (see ``_harness.measure``); ``npl policy`` runs
in-process through click and ``npl effects`` as a command (see ``_effects``), so figures include
imports, validation, writing and printing. Inputs are
simulated once and cached under ``benchmarks/_data``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from _harness import (
    MIB,
    BenchConfig,
    BenchResult,
    at_most,
    measure,
    npl_cli,
    npl_command,
    simulated_dataset,
)

BOOK_FULL, BOOK_QUICK = 50_000, 8_000
TAPE_FULL, TAPE_QUICK = 1_000_000, 20_000


def _effects(book: str, out: str) -> int:
    """`npl effects` as its own process (see ``_harness.npl_command``); its peak RSS."""
    return npl_command("effects", "--data", book, "--out", out)


def _policy(effects: str, tape: str, out: str) -> None:
    npl_cli("policy", "--effects", effects, "--data", tape, "--budget", "1000000", "--out", out)


def _causal_arrays(book: str) -> tuple[Any, Any]:
    from npl_engine.causal import CausalSettings, build_causal_data
    from npl_engine.data import read_dataset
    from npl_engine.features import build_features, learn_vocabularies

    data = read_dataset(book, kind="book")
    vocab = learn_vocabularies(build_features(data.loans).collect())
    causal = build_causal_data(data, CausalSettings(), vocab)
    return causal.covariates.values, causal.treatment


def _propensity_fit(state: tuple[Any, Any]) -> int:
    from lightgbm import LGBMClassifier

    x, treatment = state
    model = LGBMClassifier(n_estimators=100, verbose=-1).fit(x, treatment)
    return int(model.n_estimators_)


def _read_tape(tape: str) -> int:
    import polars as pl

    return pl.scan_parquet(Path(tape) / "loans.parquet").collect().height


def causal(config: BenchConfig) -> list[BenchResult]:
    """`npl effects` on a simulated book, then `npl policy` on a large tape."""
    n_book = BOOK_QUICK if config.quick else BOOK_FULL
    n_tape = TAPE_QUICK if config.quick else TAPE_FULL
    book = simulated_dataset(config, "causal", n_book, 5, "book")
    tape = simulated_dataset(config, "causal", n_tape, 9, "tape")
    effects_dir = config.data_dir / f"causal_effects_{n_book}"
    shutil.rmtree(effects_dir, ignore_errors=True)
    fit = measure(_effects, str(book), str(effects_dir), timeout=7200.0)
    repeat = 1 if config.quick else 3
    base = measure(_propensity_fit, str(book), setup=_causal_arrays, repeat=repeat)
    plan = config.data_dir / "causal_plan.parquet"
    plan.unlink(missing_ok=True)
    policy = measure(_policy, str(effects_dir), str(tape), str(plan), timeout=3600.0)
    read = measure(_read_tape, str(tape), repeat=3)
    quick = config.quick
    return [
        BenchResult(
            name=f"npl effects, {n_book:,}-loan book: wall time",
            value=fit.wall_seconds,
            unit="s",
            target=None if quick else at_most(300.0),
            baseline_name="LightGBM propensity model, one fit (100 rounds)",
            baseline_value=base.wall_seconds,
            notes="DR learner + causal forest + validation + 4 DoWhy refutations per action; "
            f"run as a command; its peak memory {fit.result / MIB:,.0f} MiB",
        ),
        BenchResult(
            name=f"npl policy, {n_tape:,}-loan tape: wall time",
            value=policy.wall_seconds,
            unit="s",
            target=None if quick else at_most(60.0),
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.wall_seconds,
            notes=f"budget 1,000,000; peak memory {policy.peak_rss_mib:,.0f} MiB",
        ),
    ]


CURVE_BOOK = 4_000


def _effects_quick(book: str, out: str) -> int:
    return npl_command("effects", "--data", book, "--out", out, "--no-refutations")


def _policy_curve(effects: str, tape: str, out: str) -> None:
    npl_cli("policy", "--effects", effects, "--data", tape, "--budgets", "0:1000000:50",
            "--out", out, "--no-audit")  # fmt: skip


def _policy_single(effects: str, tape: str, out: str) -> None:
    npl_cli("policy", "--effects", effects, "--data", tape, "--budget", "1000000",
            "--out", out, "--no-audit")  # fmt: skip


def policy_curve(config: BenchConfig) -> list[BenchResult]:
    """The gain curve at 50 budgets against one single-budget plan, on a large tape."""
    n_tape = TAPE_QUICK if config.quick else TAPE_FULL
    tape = simulated_dataset(config, "causal", n_tape, 9, "tape")
    effects_dir = config.data_dir / f"causal_curve_effects_{CURVE_BOOK}"
    if not (effects_dir / "effect_model.joblib").is_file():
        book = simulated_dataset(config, "causal", CURVE_BOOK, 3, "book")
        measure(_effects_quick, str(book), str(effects_dir), timeout=7200.0)
    plan = config.data_dir / "causal_curve_single.parquet"
    curve_dir = config.data_dir / "causal_curve"
    shutil.rmtree(curve_dir, ignore_errors=True)
    single = measure(_policy_single, str(effects_dir), str(tape), str(plan), timeout=3600.0)
    curve = measure(_policy_curve, str(effects_dir), str(tape), str(curve_dir), timeout=3600.0)
    return [
        BenchResult(
            name=f"npl policy --budgets 0:1000000:50, {n_tape:,}-loan tape: wall time",
            value=curve.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(2.0, ratio=True),
            baseline_name="npl policy --budget 1000000 (one plan) on the same tape",
            baseline_value=single.wall_seconds,
            notes=f"50 plans and curve.parquet written; peak memory {curve.peak_rss_mib:,.0f} "
            f"MiB (one plan: {single.peak_rss_mib:,.0f} MiB)",
        )
    ]


BENCHMARKS = [causal, policy_curve]
