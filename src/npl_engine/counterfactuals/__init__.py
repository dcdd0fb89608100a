"""Counterfactuals and what-ifs: what would have to change for a loan to recover.

See ``docs/counterfactuals.md`` for the method, the levers and the limits. The strategy model
(:class:`StrategyModel`, built by :func:`strategy_model` from a recovery model and effects)
scores a loan under a collection lever; :func:`counterfactuals` asks DiCE for lever settings
that reach a target and re-scores every one; :func:`what_if` re-scores one loan with changed
inputs. Both take the recovery model and the effects as objects or folders.
"""

from npl_engine.counterfactuals._api import counterfactuals, strategy_model, what_if
from npl_engine.counterfactuals._io import read_loan_ids, write_result
from npl_engine.counterfactuals._search import (
    BORROWER_LEVERS,
    IMMUTABLE_COLUMNS,
    CounterfactualResult,
    CounterfactualSettings,
    apply_counterfactuals,
    summarize,
)
from npl_engine.counterfactuals._strategy import BAU, StrategyModel, StrategyScores
from npl_engine.counterfactuals._what_if import WhatIf, parse_changes

__all__ = [
    "BAU",
    "BORROWER_LEVERS",
    "IMMUTABLE_COLUMNS",
    "CounterfactualResult",
    "CounterfactualSettings",
    "StrategyModel",
    "StrategyScores",
    "WhatIf",
    "apply_counterfactuals",
    "counterfactuals",
    "parse_changes",
    "read_loan_ids",
    "strategy_model",
    "summarize",
    "what_if",
    "write_result",
]
