"""Backtest benchmark (issue 16 target, 2-core machine).

- Backtest a business plan of 1,000,000 loans against 24 months of their payments in under
  30 s: ``backtest`` scans a Parquet payments table of one payment per loan and month (24
  million rows, the densest such history), maps each to its plan month, charges the plan's
  costs and builds the per-period, per-segment ratios. Baseline: polars sums the same file's
  amounts by loan (one scan and one group-by, the least work any comparison needs).

The plan is built in set-up (not timed) from synthetic expected curves, so no model is trained;
the payments file is generated once and cached in ``benchmarks/_data``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from _harness import BenchConfig, BenchResult, at_most, measure

CUTOFF = date(2026, 9, 30)
MONTHS = 24
SEGMENTS = ("residential_mortgage", "sme_secured", "consumer_unsecured", "credit_card", "auto")


def _payments_file(data_dir: Path, n: int) -> Path:
    """One borrower or collateral payment per loan and month for 24 months (cached)."""
    import polars as pl

    path = data_dir / f"plan_payments_{n}.parquet"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    loans = pl.int_range(0, n, eager=True)
    month = pl.int_range(1, MONTHS + 1, eager=True)
    frame = (
        pl.DataFrame({"loan": loans})
        .join(pl.DataFrame({"month": month}), how="cross")
        .with_columns(
            loan_id=pl.format("T{}", pl.col("loan").cast(pl.String).str.zfill(7)),
            payment_date=pl.date(2026, 10, 15).dt.offset_by(pl.format("{}mo", pl.col("month") - 1)),
            amount=(pl.col("loan") % 97 + pl.col("month")).cast(pl.Float64),
            source=pl.when(pl.col("loan") % 5 == 0)
            .then(pl.lit("collateral_sale"))
            .otherwise(pl.lit("borrower")),
        )
        .select("loan_id", "payment_date", "amount", "source")
    )
    frame.write_parquet(path)
    return path


def _plan(data_dir: str, n: int) -> tuple[Any, str]:
    """A quarterly plan of n loans over 24 months, from synthetic curves (set-up)."""
    import numpy as np
    import polars as pl

    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import Portfolio, portfolio_business_plan

    rng = np.random.default_rng(0)
    scenarios = load_scenarios(Path(__file__).resolve().parent.parent / "scenarios" / "base.toml")
    scenarios = scenarios.model_copy(
        update={"pricing": scenarios.pricing.model_copy(update={"horizon_months": MONTHS})}
    )
    portfolio = Portfolio(
        loan_id=pl.Series([f"T{i:07d}" for i in range(n)]),
        segment=pl.Series(np.array(SEGMENTS, dtype=object)[rng.integers(0, 5, n)]),
        legal_stage=pl.Series(["none"] * n),
        exposure=rng.uniform(1e3, 1e5, n),
        interest_rate=np.full(n, 0.05),
        in_legal_stage=rng.random(n) < 0.4,
        p_recover=np.full(n, 0.4),
        borrower=rng.uniform(0, 100, (n, MONTHS)),
        collateral=np.zeros((n, MONTHS)),
        recovery_horizon_share=np.full(n, 0.5),
        collateral_grid=np.array([0.0]),
        collateral_response=np.ones((n, 1)),
    )
    plan = portfolio_business_plan(portfolio, scenarios, cutoff_date=CUTOFF)
    return plan, str(_payments_file(Path(data_dir), n))


def _backtest(state: tuple[Any, str]) -> float:
    import polars as pl

    from npl_engine.valuation import backtest

    plan, path = state
    result = backtest(plan, pl.scan_parquet(path), as_of=date(2028, 9, 30))
    return float(result.total["collection_ratio"][-1])


def _sum_by_loan(state: tuple[Any, str]) -> float:
    import polars as pl

    _, path = state
    sums = pl.scan_parquet(path).group_by("loan_id").agg(pl.col("amount").sum()).collect()
    return float(sums["amount"].sum())


def backtest_plan(config: BenchConfig) -> list[BenchResult]:
    """Backtest 1M loans × 24 months of payments against their quarterly plan."""
    n = 50_000 if config.quick else 1_000_000
    data_dir = str(config.data_dir)
    run = measure(_backtest, data_dir, n, setup=_plan)
    base = measure(_sum_by_loan, data_dir, n, setup=_plan)
    return [
        BenchResult(
            name=f"backtest {n:,} loans × {MONTHS} months of payments: wall time",
            value=run.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(30.0),
            baseline_name="polars sums the payments by loan",
            baseline_value=base.wall_seconds,
            notes=f"{n * MONTHS:,} payments from Parquet; peak memory {run.peak_rss_mib:,.0f} MiB",
        )
    ]


BENCHMARKS = [backtest_plan]
