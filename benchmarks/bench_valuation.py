"""Valuation benchmarks (issue targets, 2-core machine).

- Value a 1,000,000-loan tape under the 3 scenarios of ``scenarios/eu_2026.toml`` in under 30 s
  after scoring (timed: the collateral response at the scenarios' shocks + pricing, as
  ``npl value`` does without ``--simulations``; the scoring itself runs in set-up), peak
  memory under 6 GB. Baseline: one pass of NumPy over the curves (summing the borrower and
  collateral matrices), the least work any valuation of them needs.
- 1,000 Monte Carlo paths on a 100,000-loan tape in under 60 s. Baseline: the deterministic
  valuation of the same tape (one path's worth of work per scenario).

The model is trained once on a 50,000-loan simulated book and cached in ``benchmarks/_data``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _harness import BenchConfig, BenchResult, at_most, measure

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios" / "eu_2026.toml"


def _model_dir(data_dir: Path) -> Path:
    from npl_engine.data.simulator import SimulationSettings, simulate
    from npl_engine.scoring import RecoveryModel

    folder = data_dir / "valuation_model_50k"
    if not (folder / "model.json").exists():
        sim = simulate(SimulationSettings(n_loans=50_000, seed=3))
        RecoveryModel(baselines=False).fit(sim.dataset()).save(folder)
    return folder


def _scored(model_dir: str, n: int) -> tuple[Any, Any, Any]:
    from npl_engine.data.simulator import SimulationSettings, simulate
    from npl_engine.scoring import RecoveryModel

    model = RecoveryModel.load(model_dir)
    loans = simulate(SimulationSettings(n_loans=n, seed=11, kind="tape")).loans
    return model, loans, model.score(loans.lazy())


def _value(state: tuple[Any, Any, Any]) -> float:
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import build_portfolio, collateral_grid_for, value_portfolio

    model, loans, scores = state
    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=False)
    portfolio = build_portfolio(model, loans, scores=scores, collateral_grid=grid)
    return float(value_portfolio(portfolio, scenarios).weighted.price)


def _sum_curves(state: tuple[Any, Any, Any]) -> float:
    _, _, scores = state
    c = scores.curves
    return float(
        c["expected_borrower"].to_numpy().sum() + c["expected_collateral"].to_numpy().sum()
    )


def _portfolio(model_dir: str, n: int) -> tuple[Any, Any]:
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import build_portfolio, collateral_grid_for

    model, loans, scores = _scored(model_dir, n)
    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    return build_portfolio(model, loans, scores=scores, collateral_grid=grid), scenarios


def _monte_carlo(state: tuple[Any, Any], paths: int) -> float:
    from npl_engine.valuation import MonteCarloSettings, simulate_paths

    portfolio, scenarios = state
    result = simulate_paths(portfolio, scenarios, MonteCarloSettings(n_paths=paths, seed=1),
                            recovery_threshold=0.5, price=portfolio.gbv * 0.3)  # fmt: skip
    return float(result.price.mean())


def _monte_carlo_1000(state: tuple[Any, Any]) -> float:
    return _monte_carlo(state, 1000)


def _monte_carlo_100(state: tuple[Any, Any]) -> float:
    return _monte_carlo(state, 100)


def _deterministic(state: tuple[Any, Any]) -> float:
    from npl_engine.valuation import value_portfolio

    portfolio, scenarios = state
    return float(value_portfolio(portfolio, scenarios).weighted.price)


def valuation(config: BenchConfig) -> list[BenchResult]:
    """Value 1M loans under 3 scenarios; 1,000 Monte Carlo paths on 100k loans."""
    model_dir = str(_model_dir(config.data_dir))
    n_value = 50_000 if config.quick else 1_000_000
    n_mc = 10_000 if config.quick else 100_000
    value = measure(_value, model_dir, n_value, setup=_scored)
    base = measure(_sum_curves, model_dir, n_value, setup=_scored)
    mc = measure(_monte_carlo_100 if config.quick else _monte_carlo_1000, model_dir, n_mc,
                 setup=_portfolio)  # fmt: skip
    det = measure(_deterministic, model_dir, n_mc, setup=_portfolio, repeat=3)
    paths = 100 if config.quick else 1000
    return [
        BenchResult(
            name=f"value {n_value:,} loans under 3 scenarios (after scoring): wall time",
            value=value.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(30.0),
            baseline_name="NumPy sums the curves once",
            baseline_value=base.wall_seconds,
            notes="collateral response at the scenarios' 2 non-zero shocks + pricing",
        ),
        BenchResult(
            name=f"value {n_value:,} loans under 3 scenarios: peak memory",
            value=value.peak_rss_mib,
            unit="MiB",
            target=None if config.quick else at_most(6144.0),
            notes=f"whole process incl. the scored curves; method {value.peak_method}",
        ),
        BenchResult(
            name=f"Monte Carlo {paths:,} paths on {n_mc:,} loans: wall time",
            value=mc.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(60.0),
            baseline_name="deterministic valuation of the same tape",
            baseline_value=det.wall_seconds,
            notes=f"peak memory {mc.peak_rss_mib:,.0f} MiB",
        ),
    ]


BENCHMARKS = [valuation]
