"""Counterfactuals and what-ifs from a recovery model and effects, as the commands run them.

:func:`counterfactuals` and :func:`what_if` take the recovery model and the effects of the
collection actions (objects or the folders ``npl train`` and ``npl effects`` write), build the
:class:`~npl_engine.counterfactuals.StrategyModel` (:func:`strategy_model`) and search or
re-score; ``npl counterfactual`` and ``npl what-if`` only parse options and print.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from npl_engine.counterfactuals._search import (
    CounterfactualResult,
    CounterfactualSettings,
    search_counterfactuals,
)
from npl_engine.counterfactuals._strategy import StrategyModel
from npl_engine.counterfactuals._what_if import WhatIf, parse_changes, rescore
from npl_engine.data import Dataset, read_dataset
from npl_engine.errors import NplError
from npl_engine.scoring import RecoveryModel

if TYPE_CHECKING:
    from npl_engine.causal import ActionCosts, Effects

__all__ = ["counterfactuals", "strategy_model", "what_if"]


def _as_effects(item: Any) -> Effects:
    from npl_engine.causal import Effects  # noqa: PLC0415 - EconML loads only when asked

    return item if isinstance(item, Effects) else Effects.load(item)


def strategy_model(
    model: RecoveryModel | StrategyModel | str | Path,
    effects: Effects | str | Path | Sequence[Effects | str | Path] | None = None,
    *,
    costs: ActionCosts | str | Path | None = None,
) -> StrategyModel:
    """The recovery model with the effects of the collection levers.

    Parameters
    ----------
    model
        A :class:`~npl_engine.scoring.RecoveryModel` or its folder (a
        :class:`StrategyModel` is returned as it is, and then ``effects`` must be ``None``).
    effects
        Effects on ``recovered`` (they move ``p_recover``) and optionally effects on
        ``recovery_rate`` (they move expected collections): :class:`~npl_engine.causal.Effects`
        objects or their folders, one per outcome. ``None``: no servicer lever.
    costs
        Action costs (or a TOML file with a ``[costs]`` table); default: those of the first
        effects.

    Raises
    ------
    NplError
        If effects are on another outcome, two are on the same outcome, or only effects on the
        recovery rate are given.
    """
    if isinstance(model, StrategyModel):
        if effects is not None or costs is not None:
            msg = "a StrategyModel carries its effects and costs: give effects=None, costs=None"
            raise NplError(msg)
        return model
    recovery = model if isinstance(model, RecoveryModel) else RecoveryModel.load(model)
    if effects is None:
        items: list[Any] = []
    elif isinstance(effects, str | Path) or not isinstance(effects, Sequence):
        items = [effects]
    else:
        items = list(effects)
    bundles = [_as_effects(item) for item in items]
    by_outcome: dict[str, Effects] = {}
    for bundle in bundles:
        where = bundle.folder or "effects"
        outcome = bundle.outcome
        if outcome not in ("recovered", "recovery_rate"):
            msg = (
                f"{where}: effects on {outcome!r} cannot move p_recover or expected "
                "collections; give effects on 'recovered' (and 'recovery_rate')"
            )
            raise NplError(msg)
        if outcome in by_outcome:
            msg = f"two effects estimate effects on {outcome!r}; give one"
            raise NplError(msg)
        by_outcome[outcome] = bundle
    if by_outcome and "recovered" not in by_outcome:
        msg = (
            "the effects are on the recovery rate only; counterfactuals move p_recover: add "
            "effects on recovered (`npl effects --outcome recovered`)"
        )
        raise NplError(msg)
    chosen = None
    if costs is not None:
        from npl_engine.causal import ActionCosts, load_costs  # noqa: PLC0415

        chosen = costs if isinstance(costs, ActionCosts) else load_costs(costs)
    elif bundles:
        chosen = bundles[0].costs
    recovered, rate = by_outcome.get("recovered"), by_outcome.get("recovery_rate")
    return StrategyModel(
        recovery=recovery,
        effects=recovered.model if recovered else None,
        collection_effects=rate.model if rate else None,
        costs=chosen,
    )


def _loans(loans: pl.DataFrame | pl.LazyFrame | Dataset | str | Path) -> pl.DataFrame:
    if isinstance(loans, str | Path):
        loans = read_dataset(loans)
    if isinstance(loans, Dataset):
        return loans.loans.collect()
    return loans.collect() if isinstance(loans, pl.LazyFrame) else loans


def counterfactuals(
    model: RecoveryModel | StrategyModel | str | Path,
    loans: pl.DataFrame | pl.LazyFrame | Dataset | str | Path,
    loan_ids: Sequence[str],
    *,
    effects: Effects | str | Path | Sequence[Effects | str | Path] | None = None,
    costs: ActionCosts | str | Path | None = None,
    n: int = 3,
    target: float = 0.5,
    uplift: float | None = None,
    borrower_side: bool = False,
    discount_range: tuple[float, float] = (0.1, 0.5),
    sample_size: int = 300,
    candidates: int = 4,
    time_budget_seconds: float = 10.0,
    seed: int = 0,
    background_size: int = 200,
    progress: Callable[[int], None] | None = None,
) -> CounterfactualResult:
    """What would have to change for each loan to recover: what ``npl counterfactual`` does.

    DiCE proposes settings of the servicer's levers (the action, the settlement discount)
    and, with ``borrower_side``, of the borrower's situation; every proposal is re-scored by
    the engine and the ``n`` best that reach the target are kept (the closest ones when none
    does). See ``docs/counterfactuals.md``; the settings are those of
    :class:`CounterfactualSettings`.

    Parameters
    ----------
    model
        The recovery model or its folder (or a :class:`StrategyModel`, without ``effects``).
    loans
        The loans (a tape or a book's loans table, a dataset, or its folder).
    loan_ids
        The loans to explain.
    effects
        Effects on ``recovered`` and optionally on ``recovery_rate`` (objects or folders): the
        servicer's levers (see :func:`strategy_model`).
    costs
        Action costs (default: those of the effects).
    n, target, uplift, borrower_side, discount_range, sample_size, candidates
        What to look for (see :class:`CounterfactualSettings`).
    time_budget_seconds, seed, background_size
        How hard to look, the seed of DiCE's draws and its background sample.
    progress
        Called with the number of loans done after each loan.

    Returns
    -------
    CounterfactualResult
        One status row per loan and the counterfactuals (``write_result`` writes them).

    Examples
    --------
    >>> import npl_engine as npl
    >>> result = npl.counterfactuals("models/m1", "data/tape", ["T00000042"],
    ...                              effects="effects_recovered", n=3)  # doctest: +SKIP
    >>> result.counterfactuals.select("rank", "changes", "p_recover", "cost")  # doctest: +SKIP
    """
    settings = CounterfactualSettings(
        n=n,
        target=target,
        uplift=uplift,
        borrower_side=borrower_side,
        discount_range=(float(discount_range[0]), float(discount_range[1])),
        sample_size=sample_size,
        candidates=candidates,
        time_budget_seconds=time_budget_seconds,
        seed=seed,
        background_size=background_size,
    )
    strategy = strategy_model(model, effects, costs=costs)
    return search_counterfactuals(
        strategy, _loans(loans), list(loan_ids), settings, progress=progress
    )


def what_if(
    model: RecoveryModel | StrategyModel | str | Path,
    loans: pl.DataFrame | pl.LazyFrame | Dataset | str | Path,
    loan_id: str,
    changes: Mapping[str, Any],
    *,
    effects: Effects | str | Path | Sequence[Effects | str | Path] | None = None,
    costs: ActionCosts | str | Path | None = None,
    top: int = 3,
) -> WhatIf:
    """Re-score one loan with changed inputs: what ``npl what-if`` does.

    Parameters
    ----------
    model
        The recovery model or its folder (or a :class:`StrategyModel`, without ``effects``).
    loans
        The loans (a tape or a book's loans table, a dataset, or its folder); reason codes call
        a value low or high against this table's medians.
    loan_id
        The loan.
    changes
        Column → new value (``{"monthly_income": 2500}``) or, with effects, the levers
        ``action`` and ``settlement_discount``. Text values are read as ``--set`` reads them
        (see :func:`parse_changes`): checked against the data contract and typed.
    effects
        Effects on ``recovered`` and optionally on ``recovery_rate`` (objects or folders).
    costs
        Action costs (default: those of the effects).
    top
        Reason codes per output.

    Returns
    -------
    WhatIf
        ``p_recover``, expected collections and reason codes before and after.

    Examples
    --------
    >>> import npl_engine as npl
    >>> w = npl.what_if("models/m1", "data/tape", "T00000042",
    ...                 {"monthly_income": 4000.0})  # doctest: +SKIP
    >>> w.p_recover_after - w.p_recover_before  # doctest: +SKIP
    """
    strategy = strategy_model(model, effects, costs=costs)
    frame = _loans(loans)
    if frame.filter(pl.col("loan_id") == loan_id).height == 0:
        msg = f"loans: column loan_id has no row {loan_id!r}"
        raise NplError(msg)
    text = {k: v for k, v in changes.items() if isinstance(v, str)}
    typed = {**changes, **parse_changes(frame, loan_id, text)}
    return rescore(strategy, frame, loan_id, typed, top=top)
