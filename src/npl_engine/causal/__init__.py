"""Causal effects of collection actions: estimation, refutation and a budgeted action plan."""

from npl_engine.causal._effects import ActionEffect, ActionEffectModel, OverlapReport
from npl_engine.causal._treatment import (
    ACTION_INTENSITY,
    CONTROL,
    CausalData,
    CausalSettings,
    build_causal_data,
)

__all__ = [
    "ACTION_INTENSITY",
    "CONTROL",
    "ActionEffect",
    "ActionEffectModel",
    "CausalData",
    "CausalSettings",
    "OverlapReport",
    "build_causal_data",
]
