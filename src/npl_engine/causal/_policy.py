"""A budgeted action plan: at most one action per loan, maximising expected net collections.

Each loan's expected uplift of action a in money is its conditional effect on collections
(effect on the recovery rate × exposure, or the effect on net collections directly) and its net
uplift is that minus the action's cost. The plan solves the multiple-choice knapsack

    maximise Σ_i Σ_a x_ia (uplift_ia − cost_ia)  s.t.  Σ x_ia cost_ia ≤ budget, Σ_a x_ia ≤ 1

through its Lagrangian: for a price λ ≥ 0 on the budget every loan takes the action maximising
uplift − (1 + λ) × cost when that is positive; λ is the smallest price (found by bisection)
whose plan fits the budget. This is the LP relaxation's solution up to the loans at the margin,
vectorised over loans and actions.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.causal._treatment import CONTROL
from npl_engine.data import Dataset
from npl_engine.errors import NplError, SettingsError

__all__ = [
    "BAU_SAMPLE",
    "ActionCosts",
    "BusinessAsUsual",
    "PlanResult",
    "estimate_costs",
    "load_costs",
    "plan_actions",
    "policy_inputs",
    "solve_plan",
]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ActionCosts:
    """Cost of each action for a loan: ``fixed[a] + per_exposure[a] × exposure``.

    Parameters
    ----------
    fixed
        Action → cost per loan, in money.
    per_exposure
        Action → cost per unit of exposure (0 where absent).
    """

    fixed: dict[str, float]
    per_exposure: dict[str, float] = field(default_factory=dict)

    def of(self, action: str, exposure: Array) -> Array:
        """Cost of ``action`` for loans with these exposures."""
        if action not in self.fixed:
            msg = f"no cost known for action {action!r}; add it to the costs file"
            raise NplError(msg)
        return self.fixed[action] + self.per_exposure.get(action, 0.0) * exposure

    def to_dict(self) -> dict[str, Any]:
        """Plain form, for JSON."""
        return {"fixed": dict(self.fixed), "per_exposure": dict(self.per_exposure)}


def estimate_costs(book: Dataset) -> ActionCosts:
    """Cost per action type from a book's actions: least squares of cost on exposure.

    Notes
    -----
    A straight line in the loan's exposure per action type (a constant when exposures do not
    vary): a flat mean would under-cost legal action on the big loans it is taken on.
    """
    if book.actions is None:
        msg = "the dataset has no actions table to estimate action costs from; pass --costs"
        raise NplError(msg)
    rows = (
        book.actions.join(
            book.loans.select(
                "loan_id", exposure=pl.col("outstanding_principal") + pl.col("accrued_interest")
            ),
            on="loan_id",
        )
        .select(pl.col("action_type").cast(pl.String), "cost", "exposure")
        .collect()
    )
    fixed, slope = {}, {}
    for (action,), group in rows.group_by("action_type"):
        x, y = group["exposure"].to_numpy(), group["cost"].to_numpy()
        b = float(np.cov(x, y, ddof=0)[0, 1] / x.var()) if x.size > 1 and x.var() > 0 else 0.0
        b = max(b, 0.0)
        fixed[str(action)] = max(float(y.mean() - b * x.mean()), 0.0)
        slope[str(action)] = b
    return ActionCosts(fixed=fixed, per_exposure=slope)


def load_costs(path: str | Path) -> ActionCosts:
    """Read action costs from TOML: ``[costs]`` with ``action = amount`` or a table.

    Examples
    --------
    A file may say ``letter = 4.0`` or ``legal_action = {fixed = 1200, per_exposure = 0.01}``
    under ``[costs]``.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        msg = f"{path}: cannot read the costs file: {exc}"
        raise SettingsError(msg) from exc
    table = raw.get("costs")
    if not isinstance(table, dict) or not table:
        msg = f"{path}: expected a [costs] table with one entry per action"
        raise SettingsError(msg)
    fixed, slope = {}, {}
    for action, spec in table.items():
        if isinstance(spec, int | float) and spec >= 0:
            fixed[action], slope[action] = float(spec), 0.0
        elif isinstance(spec, dict) and set(spec) <= {"fixed", "per_exposure"}:
            values = (spec.get("fixed", 0.0), spec.get("per_exposure", 0.0))
            if not all(isinstance(v, int | float) and v >= 0 for v in values):
                msg = f"{path}: costs.{action}: fixed and per_exposure must be numbers >= 0"
                raise SettingsError(msg)
            fixed[action], slope[action] = float(values[0]), float(values[1])
        else:
            msg = (
                f"{path}: costs.{action} must be a number >= 0 or a table with "
                "fixed and per_exposure"
            )
            raise SettingsError(msg)
    return ActionCosts(fixed=fixed, per_exposure=slope)


def solve_plan(uplift: Array, cost: Array, *, budget: float) -> npt.NDArray[np.int64]:
    """Choose at most one action per loan maximising Σ (uplift − cost) with Σ cost ≤ budget.

    Parameters
    ----------
    uplift
        (n, k) expected gross uplift in money of each action per loan.
    cost
        (n, k) cost of each action per loan (≥ 0).
    budget
        Total cost allowed (≥ 0).

    Returns
    -------
    numpy.ndarray
        (n,) index of the chosen action, -1 for no action.

    Examples
    --------
    >>> solve_plan(np.array([[10.0], [5.0]]), np.array([[2.0], [2.0]]), budget=2.0).tolist()
    [0, -1]
    """
    if budget < 0:
        msg = f"budget must be >= 0, got {budget}"
        raise ValueError(msg)

    def choose(price: float) -> tuple[npt.NDArray[np.int64], float]:
        score = uplift - (1.0 + price) * cost
        best = score.argmax(axis=1)
        take = score[np.arange(score.shape[0]), best] > 0
        pick = np.where(take, best, -1).astype(np.int64)
        spent = float(cost[np.arange(cost.shape[0]), best][take].sum())
        return pick, spent

    pick, spent = choose(0.0)
    if spent <= budget or uplift.shape[0] == 0:
        return pick
    ratio = np.where(cost > 0, uplift / np.maximum(cost, 1e-12), 0.0)
    lo, hi = 0.0, float(max(ratio.max(), 1.0))
    best_pick, _ = choose(hi)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        pick, spent = choose(mid)
        if spent <= budget:
            hi, best_pick = mid, pick
        else:
            lo = mid
    return best_pick


@dataclass(frozen=True, slots=True)
class BusinessAsUsual:
    """What the servicer would do as usual: propensities of ``none`` then each action.

    Parameters
    ----------
    propensity
        (m, k + 1) probabilities for the loans at ``rows``.
    rows
        Positions of those loans: all n loans, or a seeded random sample whose sums are scaled
        to all n (an unbiased estimate of the portfolio totals).
    """

    propensity: Array
    rows: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class PlanResult:
    """An action plan and how it compares with simple policies.

    Parameters
    ----------
    plan
        ``loan_id``, ``action`` (``none`` where no action), ``expected_uplift`` (money, gross
        of cost) and ``cost``.
    comparison
        ``policy`` (plan, business as usual, no action, best single action for all),
        ``loans_acted``, ``cost``, ``expected_uplift`` and ``expected_net`` (uplift − cost),
        all against no action.
    """

    plan: pl.DataFrame
    comparison: pl.DataFrame


def plan_actions(
    loan_ids: pl.Series,
    uplift: Array,
    cost: Array,
    actions: tuple[str, ...],
    *,
    budget: float,
    bau: BusinessAsUsual | None = None,
) -> PlanResult:
    """Plan at most one action per loan within a budget, and compare with simple policies.

    Parameters
    ----------
    loan_ids
        (n,) loan ids.
    uplift, cost
        (n, k) expected gross uplift in money and cost of each action (columns in ``actions``
        order).
    actions
        Action names.
    budget
        Total cost allowed.
    bau
        Business-as-usual propensities, for the business-as-usual line (expected uplift and
        cost weighted by them); the line is omitted if ``None``.

    Returns
    -------
    PlanResult
        The plan and the comparison table.
    """
    pick = solve_plan(uplift, cost, budget=budget)
    rows = np.arange(uplift.shape[0])
    taken = pick >= 0
    col = np.maximum(pick, 0)
    plan_uplift = np.where(taken, uplift[rows, col], 0.0)
    plan_cost = np.where(taken, cost[rows, col], 0.0)
    names = np.array([CONTROL, *actions], dtype=object)
    plan = pl.DataFrame(
        {
            "loan_id": loan_ids,
            "action": names[pick + 1].astype(str),
            "expected_uplift": plan_uplift,
            "cost": plan_cost,
        }
    )
    lines: list[dict[str, Any]] = [
        _line("plan", int(taken.sum()), plan_uplift.sum(), plan_cost.sum()),
    ]
    if bau is not None:
        rows_bau = bau.rows
        scale = uplift.shape[0] / max(rows_bau.size, 1)
        p = bau.propensity[:, 1:]
        lines.append(
            _line(
                "business as usual",
                round(float(p.sum()) * scale),
                float((p * uplift[rows_bau]).sum()) * scale,
                float((p * cost[rows_bau]).sum()) * scale,
            )
        )
    lines.append(_line("no action", 0, 0.0, 0.0))
    totals = (uplift - cost).sum(axis=0)
    best = int(totals.argmax())
    lines.append(
        _line(
            f"{actions[best]} for all",
            uplift.shape[0],
            float(uplift[:, best].sum()),
            float(cost[:, best].sum()),
        )
    )
    return PlanResult(plan=plan, comparison=pl.DataFrame(lines))


#: Loans whose business-as-usual propensities are predicted for the plan's comparison line;
#: larger tapes use a seeded random sample of this size (the propensity models cost about 25 times
#: the effect forest per loan, and the line is a portfolio total).
BAU_SAMPLE = 20_000


def policy_inputs(
    model: Any, loans: pl.LazyFrame, costs: ActionCosts, *, with_bau: bool = True
) -> tuple[pl.Series, Array, Array, BusinessAsUsual | None]:
    """Loan ids, gross uplift in money, cost and business-as-usual propensities for a plan.

    The propensities (``None`` unless ``with_bau``) are for all loans, or for a seeded random
    sample of :data:`BAU_SAMPLE` of them on a larger tape.

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.causal.ActionEffectModel` whose outcome is
        ``recovery_rate`` (uplift = effect × exposure) or ``net_collections`` (uplift = effect
        + cost, the effect being net of the action's cost already).
    loans
        A validated loans table (a tape or a book).
    costs
        Cost of each action.

    Raises
    ------
    NplError
        If the model's outcome is not in money or a rate of the exposure (``recovered``).
    """
    outcome = model.settings.outcome if model.settings is not None else "recovery_rate"
    if outcome == "recovered":
        msg = (
            "a plan needs effects in money: run `npl effects --outcome recovery_rate` "
            "(or net_collections), not recovered"
        )
        raise NplError(msg)
    frame = loans.select(
        "loan_id", exposure=pl.col("outstanding_principal") + pl.col("accrued_interest")
    ).collect()
    exposure = frame["exposure"].to_numpy().astype(np.float64)
    X = model.covariates(loans)  # noqa: N806
    cate = model.effect(X)
    cost = np.column_stack([costs.of(a, exposure) for a in model.actions_])
    uplift = cate * exposure[:, None] if outcome == "recovery_rate" else cate + cost
    if not with_bau:
        return frame["loan_id"], uplift, cost, None
    n = exposure.size
    rows = np.arange(n)
    if n > BAU_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(n, BAU_SAMPLE, replace=False))
    bau = BusinessAsUsual(propensity=model.propensity(X[rows]), rows=rows)
    return frame["loan_id"], uplift, cost, bau


def _line(policy: str, acted: int, uplift: float, cost: float) -> dict[str, Any]:
    return {
        "policy": policy,
        "loans_acted": acted,
        "cost": float(cost),
        "expected_uplift": float(uplift),
        "expected_net": float(uplift - cost),
    }
