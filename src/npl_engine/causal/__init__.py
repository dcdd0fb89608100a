"""Causal effects of collection actions: estimation, refutation and a budgeted action plan.

Start with :func:`estimate_effects`, which returns an :class:`Effects` bundle (save, load,
plan, gain curve). Names load on first use: the action plan and its costs (:mod:`._policy`)
need neither EconML nor DoWhy, so a command or the scoring service that only plans does not pay
for importing them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from npl_engine.causal._costs import (
        COSTS_RECORD,
        DEFAULT_SETTLEMENT_DISCOUNT,
        ActionCosts,
        CostRule,
        estimate_costs,
        load_costs,
        parse_costs,
    )
    from npl_engine.causal._effects import (
        MODEL_FILE,
        MODEL_INFO_FILE,
        ActionEffect,
        ActionEffectModel,
        OverlapReport,
    )
    from npl_engine.causal._estimate import (
        CATE_FILE,
        EFFECTS_FILES,
        SUMMARY_FILE,
        Effects,
        Plan,
        PolicyCurve,
        estimate_effects,
    )
    from npl_engine.causal._estimators import (
        CateEstimator,
        CausalForestEstimator,
        DRLearnerEstimator,
    )
    from npl_engine.causal._policy import (
        BAU_SAMPLE,
        ActionTotals,
        BusinessAsUsual,
        GainCurve,
        PartitionMap,
        PlanColumns,
        PlanResult,
        PolicyInputs,
        PolicyPart,
        gain_curve,
        parse_budgets,
        plan_actions,
        plan_comparison,
        plan_frame,
        plan_price,
        plan_shadow_price,
        policy_inputs,
        settlement_economics,
        solve_plan,
    )
    from npl_engine.causal._refute import (
        CHECKS,
        RefutationSettings,
        refute_action,
        refute_effects,
        verdict,
    )
    from npl_engine.causal._treatment import (
        ACTION_INTENSITY,
        CONTROL,
        CausalData,
        CausalSettings,
        build_causal_data,
    )
    from npl_engine.causal._validate import calibration_groups, toc

__all__ = [
    "ACTION_INTENSITY",
    "BAU_SAMPLE",
    "CATE_FILE",
    "CHECKS",
    "CONTROL",
    "COSTS_RECORD",
    "DEFAULT_SETTLEMENT_DISCOUNT",
    "EFFECTS_FILES",
    "MODEL_FILE",
    "MODEL_INFO_FILE",
    "SUMMARY_FILE",
    "ActionCosts",
    "ActionEffect",
    "ActionEffectModel",
    "ActionTotals",
    "BusinessAsUsual",
    "CateEstimator",
    "CausalData",
    "CausalForestEstimator",
    "CausalSettings",
    "CostRule",
    "DRLearnerEstimator",
    "Effects",
    "GainCurve",
    "OverlapReport",
    "PartitionMap",
    "Plan",
    "PlanColumns",
    "PlanResult",
    "PolicyCurve",
    "PolicyInputs",
    "PolicyPart",
    "RefutationSettings",
    "build_causal_data",
    "calibration_groups",
    "estimate_costs",
    "estimate_effects",
    "gain_curve",
    "load_costs",
    "parse_budgets",
    "parse_costs",
    "plan_actions",
    "plan_comparison",
    "plan_frame",
    "plan_price",
    "plan_shadow_price",
    "policy_inputs",
    "refute_action",
    "refute_effects",
    "settlement_economics",
    "solve_plan",
    "toc",
    "verdict",
]

#: The private module that defines each public name.
_WHERE: dict[str, str] = {
    **dict.fromkeys(("MODEL_FILE", "MODEL_INFO_FILE", "ActionEffect", "ActionEffectModel",
                     "OverlapReport"), "_effects"),
    **dict.fromkeys(("CateEstimator", "CausalForestEstimator", "DRLearnerEstimator"),
                    "_estimators"),
    **dict.fromkeys(("CATE_FILE", "EFFECTS_FILES", "SUMMARY_FILE", "Effects", "Plan",
                     "PolicyCurve", "estimate_effects"), "_estimate"),
    **dict.fromkeys(("COSTS_RECORD", "DEFAULT_SETTLEMENT_DISCOUNT", "ActionCosts", "CostRule",
                     "estimate_costs", "load_costs", "parse_costs"), "_costs"),
    **dict.fromkeys(("BAU_SAMPLE", "ActionTotals", "BusinessAsUsual", "GainCurve",
                     "PartitionMap", "PlanColumns", "PlanResult", "PolicyInputs", "PolicyPart",
                     "gain_curve", "parse_budgets", "plan_actions", "plan_comparison",
                     "plan_frame", "plan_price", "plan_shadow_price", "policy_inputs",
                     "settlement_economics", "solve_plan"), "_policy"),
    **dict.fromkeys(("CHECKS", "RefutationSettings", "refute_action", "refute_effects",
                     "verdict"), "_refute"),
    **dict.fromkeys(("ACTION_INTENSITY", "CONTROL", "CausalData", "CausalSettings",
                     "build_causal_data"), "_treatment"),
    **dict.fromkeys(("calibration_groups", "toc"), "_validate"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)
