"""Valuation: prices, IRRs and expected loss from the scored monthly collections curves.

Conventions are in :mod:`npl_engine.valuation._finance` and ``docs/valuation.md``.
"""

from npl_engine.valuation._backtest import ALL_SEGMENTS, Backtest, backtest
from npl_engine.valuation._cashflows import (
    PortfolioSums,
    ScenarioCashFlows,
    loan_cash_flows,
    portfolio_sums,
    scenario_cash_flows,
)
from npl_engine.valuation._expected_loss import (
    EL_FILES,
    EL_GROUPS,
    MONTHS_SINCE_DEFAULT_BANDS,
    ExpectedLoss,
    expected_loss,
    portfolio_expected_loss,
    risk_attributes,
)
from npl_engine.valuation._finance import (
    annual_irr,
    discount_factors,
    moic,
    present_value,
    weighted_average_life,
)
from npl_engine.valuation._montecarlo import (
    MonteCarloResult,
    MonteCarloSettings,
    PathDraws,
    draw_paths,
    loan_keys,
    path_flows,
    paths_from_flows,
    simulate_paths,
)
from npl_engine.valuation._plan import (
    PLAN_FILES,
    BusinessPlan,
    business_plan,
    portfolio_business_plan,
)
from npl_engine.valuation._portfolio import (
    DEFAULT_COLLATERAL_GRID,
    Portfolio,
    build_portfolio,
    collateral_grid_for,
)
from npl_engine.valuation._pricing import ScenarioValue, ScenarioValues, value_portfolio
from npl_engine.valuation._sensitivity import (
    SensitivitySettings,
    irr_grid,
    price_grid,
    sensitivities,
)
from npl_engine.valuation._tranche_results import TrancheFlows, TrancheResults, TriggerOutcome
from npl_engine.valuation._tranche_settings import (
    StructureTerms,
    Tranche,
    TrancheStructure,
    Triggers,
    load_tranches,
    parse_tranches,
)
from npl_engine.valuation._value import VALUE_FILES, Valuation, value
from npl_engine.valuation._waterfall import tranche_report, waterfall
from npl_engine.valuation._workbook import grid_table, tranche_table, write_valuation_workbook

__all__ = [
    "ALL_SEGMENTS",
    "DEFAULT_COLLATERAL_GRID",
    "EL_FILES",
    "EL_GROUPS",
    "MONTHS_SINCE_DEFAULT_BANDS",
    "PLAN_FILES",
    "VALUE_FILES",
    "Backtest",
    "BusinessPlan",
    "ExpectedLoss",
    "MonteCarloResult",
    "MonteCarloSettings",
    "PathDraws",
    "Portfolio",
    "PortfolioSums",
    "ScenarioCashFlows",
    "ScenarioValue",
    "ScenarioValues",
    "SensitivitySettings",
    "StructureTerms",
    "Tranche",
    "TrancheFlows",
    "TrancheResults",
    "TrancheStructure",
    "TriggerOutcome",
    "Triggers",
    "Valuation",
    "annual_irr",
    "backtest",
    "build_portfolio",
    "business_plan",
    "collateral_grid_for",
    "discount_factors",
    "draw_paths",
    "expected_loss",
    "grid_table",
    "irr_grid",
    "load_tranches",
    "loan_cash_flows",
    "loan_keys",
    "moic",
    "parse_tranches",
    "path_flows",
    "paths_from_flows",
    "portfolio_business_plan",
    "portfolio_expected_loss",
    "portfolio_sums",
    "present_value",
    "price_grid",
    "risk_attributes",
    "scenario_cash_flows",
    "sensitivities",
    "simulate_paths",
    "tranche_report",
    "tranche_table",
    "value",
    "value_portfolio",
    "waterfall",
    "weighted_average_life",
    "write_valuation_workbook",
]
