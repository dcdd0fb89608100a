"""npl_engine: prices and manages non-performing loans.

Recovery scoring, explanations, causal effects of collection actions, counterfactuals and
valuation of NPL portfolios, Polars-based end to end.

The main names are importable from the top, for notebooks and scripts::

    import npl_engine as npl

    book = npl.read_dataset("data/book")
    model = npl.RecoveryModel().fit(book)
    scores = model.score(npl.read_dataset("data/tape"))

They load on first use (the command line and the scoring service start without importing
what they do not need); ``docs/api.md`` lists them by task.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# LightGBM's OpenMP threads spin while they wait by default; on a shared or busy machine two
# spinning threads stall each other (measured: `npl train` 177 s idle, 395 s under load, and
# back near idle with passive waiting). Idle timings are unchanged. Read when LightGBM loads,
# so it is set here, before any submodule imports it; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("npl_engine")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree not installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from npl_engine.causal import (
        ActionCosts,
        ActionEffectModel,
        CateEstimator,
        CausalForestEstimator,
        CausalSettings,
        DRLearnerEstimator,
        Effects,
        Plan,
        PolicyCurve,
        estimate_costs,
        estimate_effects,
        gain_curve,
        load_costs,
        plan_actions,
        policy_inputs,
        refute_effects,
    )
    from npl_engine.counterfactuals import counterfactuals, what_if
    from npl_engine.data import Dataset, load_column_map, read_dataset
    from npl_engine.data.eba import import_eba
    from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
    from npl_engine.explain import explain_loans, global_importance
    from npl_engine.fairness import FairnessReport, fairness_report
    from npl_engine.monitoring import MonitorReport, monitor
    from npl_engine.scenarios import ScenarioSet, load_scenarios
    from npl_engine.scoring import RecoveryDefinition, RecoveryModel, score_in_chunks
    from npl_engine.strats import stratify
    from npl_engine.valuation import (
        Backtest,
        BusinessPlan,
        ExpectedLoss,
        MonteCarloSettings,
        SensitivitySettings,
        Valuation,
        backtest,
        build_portfolio,
        business_plan,
        expected_loss,
        irr_grid,
        load_tranches,
        portfolio_business_plan,
        portfolio_expected_loss,
        price_grid,
        risk_attributes,
        sensitivities,
        simulate_paths,
        tranche_report,
        value,
        value_portfolio,
    )

#: The module that defines each top-level name.
_WHERE: dict[str, str] = {
    **dict.fromkeys(
        (
            "Dataset",
            "read_dataset",
            "load_column_map",
        ),
        "npl_engine.data",
    ),
    **dict.fromkeys(
        (
            "SimulationSettings",
            "simulate",
            "write_simulation",
        ),
        "npl_engine.data.simulator",
    ),
    **dict.fromkeys(
        ("import_eba",),
        "npl_engine.data.eba",
    ),
    **dict.fromkeys(
        (
            "RecoveryDefinition",
            "RecoveryModel",
            "score_in_chunks",
        ),
        "npl_engine.scoring",
    ),
    **dict.fromkeys(
        (
            "ScenarioSet",
            "load_scenarios",
        ),
        "npl_engine.scenarios",
    ),
    **dict.fromkeys(
        ("stratify",),
        "npl_engine.strats",
    ),
    **dict.fromkeys(
        (
            "value",
            "Valuation",
            "MonteCarloSettings",
            "SensitivitySettings",
            "irr_grid",
            "build_portfolio",
            "value_portfolio",
            "simulate_paths",
            "price_grid",
            "sensitivities",
            "load_tranches",
            "tranche_report",
            "expected_loss",
            "ExpectedLoss",
            "portfolio_expected_loss",
            "risk_attributes",
            "business_plan",
            "BusinessPlan",
            "portfolio_business_plan",
            "counterfactuals",
            "backtest",
            "Backtest",
        ),
        "npl_engine.valuation",
    ),
    **dict.fromkeys(
        (
            "explain_loans",
            "global_importance",
        ),
        "npl_engine.explain",
    ),
    **dict.fromkeys(
        (
            "estimate_effects",
            "Effects",
            "Plan",
            "PolicyCurve",
            "ActionEffectModel",
            "CateEstimator",
            "CausalForestEstimator",
            "DRLearnerEstimator",
            "CausalSettings",
            "refute_effects",
            "ActionCosts",
            "load_costs",
            "estimate_costs",
            "policy_inputs",
            "plan_actions",
            "gain_curve",
        ),
        "npl_engine.causal",
    ),
    **dict.fromkeys(
        ("counterfactuals", "what_if"),
        "npl_engine.counterfactuals",
    ),
    **dict.fromkeys(
        ("fairness_report", "FairnessReport"),
        "npl_engine.fairness",
    ),
    **dict.fromkeys(
        ("monitor", "MonitorReport"),
        "npl_engine.monitoring",
    ),
}

__all__ = [
    "ActionCosts",
    "ActionEffectModel",
    "Backtest",
    "BusinessPlan",
    "CateEstimator",
    "CausalForestEstimator",
    "CausalSettings",
    "DRLearnerEstimator",
    "Dataset",
    "Effects",
    "ExpectedLoss",
    "FairnessReport",
    "MonitorReport",
    "MonteCarloSettings",
    "Plan",
    "PolicyCurve",
    "RecoveryDefinition",
    "RecoveryModel",
    "ScenarioSet",
    "SensitivitySettings",
    "SimulationSettings",
    "Valuation",
    "__version__",
    "backtest",
    "build_portfolio",
    "business_plan",
    "counterfactuals",
    "estimate_costs",
    "estimate_effects",
    "expected_loss",
    "explain_loans",
    "fairness_report",
    "gain_curve",
    "global_importance",
    "import_eba",
    "irr_grid",
    "load_column_map",
    "load_costs",
    "load_scenarios",
    "load_tranches",
    "monitor",
    "plan_actions",
    "policy_inputs",
    "portfolio_business_plan",
    "portfolio_expected_loss",
    "price_grid",
    "read_dataset",
    "refute_effects",
    "risk_attributes",
    "score_in_chunks",
    "sensitivities",
    "simulate",
    "simulate_paths",
    "stratify",
    "tranche_report",
    "value",
    "value_portfolio",
    "what_if",
    "write_simulation",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)


class _Package(types.ModuleType):
    """``npl_engine`` itself: ``npl.counterfactuals`` stays the function once its package loads.

    Importing ``npl_engine.counterfactuals`` makes Python set the attribute of that name on
    this package to the subpackage; the setter below keeps the function there instead
    (``from npl_engine.counterfactuals import ...`` reads ``sys.modules`` and is unaffected).
    """

    @property
    def counterfactuals(self) -> Any:
        """The function :func:`npl_engine.counterfactuals.counterfactuals`."""
        return importlib.import_module("npl_engine.counterfactuals").counterfactuals

    @counterfactuals.setter
    def counterfactuals(self, value: Any) -> None:
        """Ignore the subpackage the import system sets here."""


sys.modules[__name__].__class__ = _Package
