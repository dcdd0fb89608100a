"""Scoring benchmarks: train on a 200,000-loan book, score a 1,000,000-loan tape (issue targets).

- ``npl train`` on a 200,000-loan simulated book, as a user runs it (full tuning grid,
  baselines on): under 300 s. Baseline: LightGBM fitting one classifier with its default
  settings (100 rounds) on the same features and labels, the least any boosted model of this
  book costs; the ratio says how many such fits training is worth.
- ``npl score`` of a 1,000,000-loan tape, curves included (60 rows per loan written to
  Parquet): under 60 s and 6 GiB peak memory (whole process). Baseline: polars scanning and
  collecting the tape's loans file. A row without target gives ``RecoveryModel.score`` alone
  (features, predictions and curves in memory: no validation, no writing), to show where
  the time goes.

Each figure comes from a fresh process (see ``_harness.measure``). ``npl score`` is called
in-process through click and ``npl train`` as a command (see ``_train``), so figures include
imports, validation, writing and printing.
Inputs are simulated once and cached under ``benchmarks/_data`` (the simulator is
deterministic by seed); the trained model is cached there too for the scoring rows.
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

BOOK_FULL, TAPE_FULL = 200_000, 1_000_000
BOOK_QUICK, TAPE_QUICK = 20_000, 20_000
BOOK_SEED, TAPE_SEED = 1, 8


def _train(book: str, out: str) -> int:
    """`npl train` as its own process (see ``_harness.npl_command``); its peak RSS."""
    return npl_command("train", "--data", book, "--out", out)


def _score(model: str, tape: str, out: str) -> None:
    npl_cli("score", "--model", model, "--data", tape, "--out", out)


def _book_features(book: str) -> tuple[Any, Any]:
    """Set-up of the training baseline: the book's feature matrix and recovery labels."""
    from npl_engine.data import read_dataset
    from npl_engine.features import build_features, feature_matrix, learn_vocabularies
    from npl_engine.scoring import RecoveryDefinition
    from npl_engine.scoring._collections import default_knots
    from npl_engine.scoring._targets import build_targets

    data = read_dataset(book, kind="book")
    features = build_features(data.loans).collect()
    x = feature_matrix(features, learn_vocabularies(features))
    definition = RecoveryDefinition()
    targets = build_targets(data, definition, default_knots(definition.valuation_horizon_months))
    labelled = targets["recovered"].is_not_null().to_numpy()
    return x, (labelled, targets["recovered"].to_numpy()[labelled].astype(float))


def _default_lightgbm(state: tuple[Any, Any]) -> int:
    import lightgbm as lgb

    from npl_engine.scoring._classifier import lgb_dataset, subset

    x, (labelled, y) = state
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb_dataset(subset(x, labelled), y))
    return int(booster.current_iteration())


def _read_tape(tape: str) -> int:
    import polars as pl

    return pl.scan_parquet(Path(tape) / "loans.parquet").collect().height


def _load_model_and_tape(model: str, tape: str) -> tuple[Any, Any]:
    from npl_engine.data import read_dataset
    from npl_engine.scoring import RecoveryModel

    return RecoveryModel.load(model), read_dataset(tape, kind="tape").loans.collect()


def _model_score(state: tuple[Any, Any]) -> int:
    model, loans = state
    return int(model.score(loans.lazy()).curves.height)


def _model_folder(config: BenchConfig, n_book: int) -> Path:
    return config.data_dir / f"scoring_model_{n_book}"


def train(config: BenchConfig) -> list[BenchResult]:
    """`npl train` on a simulated book against one default LightGBM fit on its features."""
    n = BOOK_QUICK if config.quick else BOOK_FULL
    book = simulated_dataset(config, "scoring", n, BOOK_SEED, "book")
    out = _model_folder(config, n)
    fit = measure(_train, str(book), str(out), timeout=7200.0)
    base = measure(
        _default_lightgbm, str(book), setup=_book_features, repeat=1 if config.quick else 3
    )
    return [
        BenchResult(
            name=f"npl train, {n:,}-loan book: wall time",
            value=fit.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(300.0),
            baseline_name="LightGBM, one default fit (100 rounds)",
            baseline_value=base.wall_seconds,
            notes="3 settings × 4 folds, 2 × 10 collections boosters, logistic and forest "
            f"baselines; run as a command; its peak memory {fit.result / MIB:,.0f} MiB",
        ),
    ]


def score(config: BenchConfig) -> list[BenchResult]:
    """`npl score` of a simulated tape, curves included, against polars reading the tape."""
    n_book = BOOK_QUICK if config.quick else BOOK_FULL
    n = TAPE_QUICK if config.quick else TAPE_FULL
    tape = simulated_dataset(config, "scoring", n, TAPE_SEED, "tape")
    model = _model_folder(config, n_book)
    if not (model / "model.json").is_file():  # `--only ...score`: train it, unmeasured
        measure(
            _train, str(simulated_dataset(config, "scoring", n_book, BOOK_SEED, "book")), str(model)
        )
    out = config.data_dir / "scoring_scores"
    shutil.rmtree(out, ignore_errors=True)
    cli = measure(_score, str(model), str(tape), str(out), timeout=3600.0)
    shutil.rmtree(out, ignore_errors=True)
    read = measure(_read_tape, str(tape), repeat=3)
    alone = measure(_model_score, str(model), str(tape), setup=_load_model_and_tape)
    quick = config.quick
    return [
        BenchResult(
            name=f"npl score with curves, {n:,} loans: wall time",
            value=cli.wall_seconds,
            unit="s",
            target=None if quick else at_most(60.0),
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.wall_seconds,
            notes=f"model trained on {n_book:,} loans; writes {n * 60:,} curve rows",
        ),
        BenchResult(
            name=f"npl score with curves, {n:,} loans: peak memory",
            value=cli.peak_rss_mib,
            unit="MiB",
            target=None if quick else at_most(6144.0),
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.peak_rss_mib,
            notes=f"whole process incl. imports; method {cli.peak_method}",
        ),
        BenchResult(
            name=f"RecoveryModel.score alone, {n:,} loans: wall time",
            value=alone.wall_seconds,
            unit="s",
            target=None,
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.wall_seconds,
            notes="features, predictions, curves in memory; no validation or writing; "
            f"extra peak memory {alone.peak_rss_delta_mib:,.0f} MiB",
        ),
    ]


BENCHMARKS = [train, score]
