"""A budgeted action plan: at most one action per loan, maximising expected net collections.

Each loan's expected uplift of action a in money is its conditional effect on collections
(effect on the recovery rate × exposure, or the effect on net collections directly) and its net
uplift is that minus the action's cost. The plan solves the multiple-choice knapsack

    maximise Σ_i Σ_a x_ia (uplift_ia − cost_ia)  s.t.  Σ x_ia cost_ia ≤ budget, Σ_a x_ia ≤ 1

through its Lagrangian: for a price λ ≥ 0 on the budget every loan takes the action maximising
uplift − (1 + λ) × cost when that is positive; λ is the smallest price whose plan fits the
budget. This is the LP relaxation's solution up to the loans at the margin, vectorised over
loans and actions. As λ rises each loan's choice moves to cheaper actions at known prices (the
upper envelope of its lines uplift − (1 + λ) × cost); these switches, sorted once, give the plan
at every budget, so the whole gain curve (:func:`gain_curve`) costs one pass over the loans per
budget and each of its points is the plan :func:`plan_actions` makes at that budget.

λ is the shadow price of the budget: one more unit of budget buys about λ of expected net
collections (1 + λ gross). It is 0 once the budget exceeds what the unconstrained plan spends:
past that point every further action would cost more than it brings.

The loans may be split into partitions, each with its own switches (:class:`PolicyPart`, one
per task on a cluster): :func:`plan_price` finds the budget's price from scalars every
partition answers, and compares spends with the budget exactly (sums as rationals), so the
plan does not depend on the split; the in-process plan is the search over one partition.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.causal._costs import ActionCosts, estimate_costs, load_costs
from npl_engine.causal._treatment import CONTROL
from npl_engine.data import count_loans, loan_chunks
from npl_engine.errors import NplError, SettingsError
from npl_engine.scoring import chunk_rows_for

__all__ = [
    "BAU_SAMPLE",
    "ActionCosts",
    "ActionTotals",
    "BusinessAsUsual",
    "GainCurve",
    "PartitionMap",
    "PlanColumns",
    "PlanResult",
    "PolicyInputs",
    "PolicyPart",
    "estimate_costs",
    "gain_curve",
    "load_costs",
    "parse_budgets",
    "plan_actions",
    "plan_comparison",
    "plan_frame",
    "plan_price",
    "plan_shadow_price",
    "policy_inputs",
    "settlement_economics",
    "solve_plan",
]

Array = npt.NDArray[np.float64]


class _PriceSchedule:
    """Every loan's choice as the budget's price λ rises, summarised as sorted events.

    At price λ a loan takes the action maximising ``net − λ × cost`` (``net`` = uplift − cost)
    when positive, i.e. the upper envelope of one line per action and the line 0 (no action).
    As λ rises the envelope moves to cheaper actions; each move is an event (price, change in
    spend). Sorted once, the events give the plan's spend at any price by a binary search, so
    a bisection for the price of a budget costs no pass over the loans.

    A schedule may hold some of the loans only (a partition): :func:`plan_price` finds the
    budget's price over several schedules from their sums and their event prices.
    """

    def __init__(self, uplift: Array, cost: Array) -> None:
        self.uplift = np.ascontiguousarray(uplift, dtype=np.float64)
        self.cost = np.ascontiguousarray(cost, dtype=np.float64)
        n, k = uplift.shape
        # one pass per price reuses these: a score buffer and each loan's flat offset
        self._score = np.empty((n, k))
        self._offset = np.arange(n, dtype=np.int64) * k
        self._last: tuple[float, npt.NDArray[np.int64]] | None = None
        net = uplift - cost
        self.pick0, self.spend0_exact = self.choose(0.0)
        self.spend0 = float(self.spend0_exact)
        current = self.pick0.copy()
        prices: list[Array] = []
        gains: list[Array] = []  # the cost of the action a loan moves to (0: none)
        drops: list[Array] = []  # and of the action it leaves
        rows = np.nonzero(current >= 0)[0]
        for _ in range(k):
            if rows.size == 0:
                break
            a = current[rows]
            at = np.empty(rows.size)
            nxt = np.empty(rows.size, dtype=np.int64)
            # in blocks of loans: the (rows, k) temporaries follow the block, not the tape
            for start in range(0, rows.size, _SWITCH_BLOCK):
                block = slice(start, start + _SWITCH_BLOCK)
                at[block], nxt[block] = _next_switch(rows[block], a[block], cost, net)
            moves = np.isfinite(at)
            rows, a, at, nxt = rows[moves], a[moves], at[moves], nxt[moves]
            c_next = np.where(nxt >= 0, cost[rows, np.maximum(nxt, 0)], 0.0)
            prices.append(at)
            gains.append(c_next)
            drops.append(cost[rows, a])
            current[rows] = nxt
            rows = rows[nxt >= 0]
        price = np.concatenate([np.zeros(0), *prices])
        order = np.argsort(price, kind="stable")
        self.prices = price[order]
        # each move is to a cheaper action, so spend falls at every event; kept apart, the
        # costs gained and dropped sum exactly (their float difference may round)
        self.gains = np.concatenate([np.zeros(0), *gains])[order]
        self.drops = np.concatenate([np.zeros(0), *drops])[order]
        self.cum_change = np.cumsum(self.gains - self.drops)
        self._rough_change = np.concatenate([[0.0], self.cum_change])  # 0: no event yet

    def choose(self, price: float) -> tuple[npt.NDArray[np.int64], Fraction]:
        """Each loan's action at ``price`` (-1: none) and the plan's spend, exactly."""
        score = np.multiply(self.cost, 1.0 + price, out=self._score)
        np.subtract(self.uplift, score, out=score)  # uplift − (1 + price) × cost
        best = score.argmax(axis=1)
        at = self._offset + best
        take = score.ravel().take(at) > 0
        pick = np.where(take, best, -1).astype(np.int64)
        spent = _exact_sum(self.cost.ravel().take(at)[take])
        self._last = (price, pick)
        return pick, spent

    def pick_at(self, price: float) -> npt.NDArray[np.int64]:
        """Each loan's action at ``price`` (the last pass's, when it was at that price)."""
        if price == 0.0:
            return self.pick0
        if self._last is not None and self._last[0] == price:
            return self._last[1]
        return self.choose(price)[0]

    def shadow_price(self, price: float) -> float:
        """The budget's price λ for a plan at ``price``: the last switch at or below it."""
        return plan_shadow_price(price, lambda query: [query(self)])

    def plan_for(self, budget: float) -> tuple[float, npt.NDArray[np.int64]]:
        """The cheapest-priced plan that fits ``budget``: its price (0 if all fit) and choice.

        See :func:`plan_price`: this schedule is its only partition.
        """
        price = plan_price(budget, lambda query: [query(self)])
        return price, self.pick_at(price)


#: Runs a query on every partition's price schedule where it lives and returns the answers,
#: partition by partition (e.g. ``lambda query: [query(s) for s in schedules]``, or tasks on a
#: Dask cluster). Queries are module-level functions and partials of them, so they pickle.
PartitionMap = Callable[[Callable[[Any], Any]], Sequence[Any]]


def plan_price(budget: float, each: PartitionMap) -> float:
    """The price λ of the cheapest-priced plan that fits ``budget``, over partitioned loans.

    Spend falls in steps at the event prices of all partitions together; the price returned
    lies midway between the event after which the plan fits and the next one, where every
    loan's choice is clear of ties, and is checked by a pass over the loans (if a tie was
    rounded the other way, the next step is taken). Only scalars cross between the partitions
    and the caller: sums of spend, and the event prices next to a price.

    Parameters
    ----------
    budget
        Total cost allowed (≥ 0).
    each
        Runs a query on every partition's schedule (see :data:`PartitionMap`).

    Returns
    -------
    float
        The price; every loan's choice is its schedule's ``choose`` at that price.

    Notes
    -----
    Spends are compared with the budget exactly (sums of the costs as rationals, which no
    order of addition changes), so the price, hence the plan, is the same whatever the
    partitions: one partition of all loans is the in-process plan. A float approximation of
    the spend (each partition's sorted cumulative sum) brackets the event first, by bisection
    over the doubles between the lowest and highest event price; the exact sums then step
    to the first event whose plan fits (usually no step at all).
    """
    if budget < 0:
        msg = f"budget must be >= 0, got {budget}"
        raise ValueError(msg)
    if math.isinf(budget):
        return 0.0
    goal = Fraction(budget)
    if sum(each(_spend0), Fraction(0)) <= goal:
        return 0.0
    ends = [b for b in each(_price_range) if b is not None]
    if not ends:
        return 0.0
    price = _roughly_first_fitting(budget, each, min(b[0] for b in ends), max(b[1] for b in ends))
    return _checked_midpoint(goal, each, _first_fitting(goal, each, price))


#: Prices whose float spend one round of :func:`_roughly_first_fitting` asks every partition.
_ROUGH_PROBES = 32


def _roughly_first_fitting(budget: float, each: PartitionMap, low: float, high: float) -> float:
    """The first event price whose plan fits by the float spends (a search over the doubles).

    Each round asks every partition its spend at :data:`_ROUGH_PROBES` prices evenly spaced
    (as doubles are ordered) in the bracket, so a round cuts the bracket 33-fold.
    """

    def fits(keys: list[int]) -> npt.NDArray[np.bool_]:
        prices = [_from_order_key(key) for key in keys]
        spend: Array = sum(each(partial(_rough_spend, prices=prices)))  # type: ignore[assignment]
        return np.asarray(spend <= budget)

    if not fits([_order_key(high)])[0]:
        return high
    lo, hi = _order_key(low) - 1, _order_key(high)  # fits at hi, not below lo + 1
    while hi - lo > 1:
        step = max((hi - lo) // (_ROUGH_PROBES + 1), 1)
        keys = list(range(lo + step, hi, step))[:_ROUGH_PROBES]
        fit = fits(keys)
        first = int(fit.argmax()) if fit.any() else len(keys)
        if first < len(keys):
            hi = keys[first]
        if first > 0:
            lo = keys[first - 1]
    return _from_order_key(hi)


def _first_fitting(goal: Fraction, each: PartitionMap, price: float) -> float:
    """The first event price whose plan fits exactly, stepping from the event ``price``."""

    def fits(price: float) -> bool:
        return sum(each(partial(_events_spend, price=price)), Fraction(0)) <= goal

    if fits(price):
        while (before := _neighbour(each, _price_before, price)) is not None and fits(before):
            price = before
        return price
    # after the last event nothing is spent, which fits any budget ≥ 0
    while (after := _neighbour(each, _price_after, price)) is not None:
        price = after
        if fits(price):
            break
    return price


def _checked_midpoint(goal: Fraction, each: PartitionMap, price: float) -> float:
    """The price midway past the event ``price`` whose pass over the loans fits the budget."""
    while True:
        after = _neighbour(each, _price_after, price)
        nxt = after if after is not None else 2 * price + 1
        mid = float(0.5 * (price + nxt))
        if sum(each(partial(_plan_spend, price=mid)), Fraction(0)) <= goal:
            return mid
        if after is None:
            return float(2 * price + 1)
        price = after  # a tie rounded the other way: take the next step


def plan_shadow_price(price: float, each: PartitionMap) -> float:
    """The budget's price λ for a plan at ``price``: the last switch at or below it, or 0."""
    found = [p for p in each(partial(_price_at_or_before, price=price)) if p is not None]
    return max(found) if found else 0.0


def _neighbour(
    each: PartitionMap, query: Callable[..., float | None], price: float
) -> float | None:
    """The nearest event price before (``_price_before``) or after ``price`` over partitions."""
    found: list[float] = [p for p in each(partial(query, price=price)) if p is not None]
    if not found:
        return None
    return max(found) if query is _price_before else min(found)


def _spend0(schedule: _PriceSchedule) -> Fraction:
    return schedule.spend0_exact


def _price_range(schedule: _PriceSchedule) -> tuple[float, float] | None:
    if schedule.prices.size == 0:
        return None
    return float(schedule.prices[0]), float(schedule.prices[-1])


def _rough_spend(schedule: _PriceSchedule, prices: list[float]) -> Array:
    """Float spend once the events at or below each price happened (for bracketing only)."""
    i = np.searchsorted(schedule.prices, prices, side="right")
    spend: Array = schedule.spend0 + schedule._rough_change[i]
    return spend


def _events_spend(schedule: _PriceSchedule, price: float) -> Fraction:
    """Exact spend once the events at or below ``price`` happened."""
    i = int(np.searchsorted(schedule.prices, price, side="right"))
    return schedule.spend0_exact + _exact_sum(schedule.gains[:i]) - _exact_sum(schedule.drops[:i])


def _plan_spend(schedule: _PriceSchedule, price: float) -> Fraction:
    """Exact spend of the plan at ``price``, from a pass over the loans."""
    return schedule.choose(price)[1]


def _price_before(schedule: _PriceSchedule, price: float) -> float | None:
    i = int(np.searchsorted(schedule.prices, price, side="left"))
    return float(schedule.prices[i - 1]) if i else None


def _price_at_or_before(schedule: _PriceSchedule, price: float) -> float | None:
    i = int(np.searchsorted(schedule.prices, price, side="right"))
    return float(schedule.prices[i - 1]) if i else None


def _price_after(schedule: _PriceSchedule, price: float) -> float | None:
    i = int(np.searchsorted(schedule.prices, price, side="right"))
    return float(schedule.prices[i]) if i < schedule.prices.size else None


def _order_key(x: float) -> int:
    """An integer that orders doubles as they compare (bisection over the doubles)."""
    bits: int = struct.unpack("<q", struct.pack("<d", x))[0]
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF)


def _from_order_key(key: int) -> float:
    bits = key if key >= 0 else -key - 2**63
    value: float = struct.unpack("<d", struct.pack("<q", bits))[0]
    return value


#: Values summed at a time by :func:`_exact_sum`: its float partial sums of 27-bit integers
#: stay below 2**53, so they are exact, and its temporaries follow the block (a few tens of MB),
#: not the tape.
_EXACT_BLOCK = 2**20


def _exact_sum(values: npt.ArrayLike) -> Fraction:
    """The exact sum of finite floats as a rational: the same whatever their order or grouping.

    Each double is an integer of 53 bits times a power of two; the integers are split in two
    halves and summed per power of two (in float64, exactly: the sums stay below 2**53), and
    the per-power sums are added as Python integers, a block of values at a time.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(v).all():
        msg = "a plan's uplifts and costs must be finite (got NaN or infinity)"
        raise ValueError(msg)
    total = Fraction(0)
    for start in range(0, v.size, _EXACT_BLOCK):
        total += _exact_block(v[start : start + _EXACT_BLOCK])
    return total


def _exact_block(v: Array) -> Fraction:
    """:func:`_exact_sum` of at most :data:`_EXACT_BLOCK` finite values."""
    v = v[v != 0]
    if v.size == 0:
        return Fraction(0)
    mantissa, exponent = np.frexp(v)
    whole = (mantissa * 2.0**53).astype(np.int64)  # v = whole × 2 ** (exponent − 53), exactly
    bottom = int(exponent.min())
    slot = (exponent - bottom).astype(np.int64)
    sums_high = np.bincount(slot, weights=(whole >> 26).astype(np.float64))
    sums_low = np.bincount(slot, weights=(whole & (2**26 - 1)).astype(np.float64))
    total = 0
    for s in np.flatnonzero((sums_high != 0) | (sums_low != 0)):
        total += ((int(sums_high[s]) << 26) + int(sums_low[s])) << int(s)
    return Fraction(total) * Fraction(2) ** (bottom - 53)


#: Loans per block of the schedule's search for each loan's next switch (a few MB of temporaries).
_SWITCH_BLOCK = 65_536


def _next_switch(
    rows: npt.NDArray[np.int64], a: npt.NDArray[np.int64], cost: Array, net: Array
) -> tuple[Array, npt.NDArray[np.int64]]:
    """Price at which each loan in ``rows`` leaves its action ``a``, and its next action.

    The next action is the cheaper action (or none, -1) whose line crosses the current one
    first as the price rises; the price is ``inf`` where the loan never moves.
    """
    c_a, m_a = cost[rows, a], net[rows, a]
    c_b, m_b = cost[rows], net[rows]
    flatter = c_b < c_a[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = np.where(flatter, (m_a[:, None] - m_b) / (c_a[:, None] - c_b), np.inf)
        cross_none = np.where(c_a > 0, m_a / c_a, np.inf)
    nxt = cross.argmin(axis=1)
    at = cross[np.arange(rows.size), nxt]
    to_none = cross_none <= at
    return np.where(to_none, cross_none, at), np.where(to_none, -1, nxt)


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
    return _PriceSchedule(uplift, cost).plan_for(budget)[1]


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

    @classmethod
    def of(
        cls, model: Any, loans: pl.LazyFrame, *, n_loans: int, chunk_rows: int | None = None
    ) -> BusinessAsUsual:
        """The propensities of a tape's sample (:data:`BAU_SAMPLE`), read a chunk at a time.

        The sample's positions depend on the tape's height only, so they are those
        :func:`policy_inputs` draws, whoever predicts the effects.
        """
        rows = _bau_rows(n_loans)
        x = model.covariates(loans_at(loans, rows, n_loans=n_loans, chunk_rows=chunk_rows).lazy())
        return cls(propensity=model.propensity(x), rows=rows)


@dataclass(frozen=True, slots=True)
class PlanResult:
    """An action plan and how it compares with simple policies.

    Parameters
    ----------
    plan
        ``loan_id``, ``action`` (``none`` where no action), ``expected_uplift`` (money, gross
        of cost), ``cost`` and, when the inputs had them, ``uplift_low`` and ``uplift_high``
        (the 95 % interval of the loan's uplift, from its effect interval).
    comparison
        ``policy`` (plan, business as usual, no action, best single action for all),
        ``loans_acted``, ``cost``, ``expected_uplift`` and ``expected_net`` (uplift − cost),
        all against no action.
    """

    plan: pl.DataFrame
    comparison: pl.DataFrame


class PlanColumns:
    """The per-loan, per-action values plans pick from, laid out once for many plans.

    The plan of any choice per loan is one gather per column from the (n, k) arrays as given
    (no copy of them): writing a plan at each of many budgets rebuilds no per-loan frame and
    converts no action names per loan.

    Parameters
    ----------
    actions
        Action names.
    columns
        Output name → (n, k) values per action (``None``: column left out); 0 where no action.
    loan_ids
        (n,) loan ids, for :meth:`frame`.
    """

    def __init__(
        self,
        actions: tuple[str, ...],
        columns: dict[str, Array | None],
        *,
        loan_ids: pl.Series | None = None,
    ) -> None:
        given = [array for array in columns.values() if array is not None]
        n = given[0].shape[0] if given else (0 if loan_ids is None else loan_ids.len())
        k = len(actions)
        self.loan_ids = loan_ids
        self._names = pl.Series("action", [CONTROL, *actions], dtype=pl.String)
        self._first = np.arange(n, dtype=np.int64) * k  # flat position of each loan's action 0
        self._flat: dict[str, Array] = {
            name: np.ascontiguousarray(array, dtype=np.float64).reshape(-1)
            for name, array in columns.items()
            if array is not None
        }

    def values(self, name: str, pick: npt.NDArray[np.integer[Any]]) -> Array:
        """(n,) the chosen value of column ``name`` per loan (0 where ``pick`` is -1)."""
        none = pick < 0
        flat = self._flat[name]
        if flat.size == 0:  # no actions: every pick is none
            return np.zeros(pick.shape[0])
        chosen: Array = flat.take(self._first + np.where(none, 0, pick))
        chosen[none] = 0.0
        return chosen

    def totals(self, pick: npt.NDArray[np.integer[Any]]) -> dict[str, float]:
        """Σ of each column of the plan: the plan file's columns summed as polars sums them."""
        return {name: float(pl.Series(name, self.values(name, pick)).sum()) for name in self._flat}

    def frame(self, pick: npt.NDArray[np.integer[Any]]) -> pl.DataFrame:
        """The plan of a choice per loan (-1: none): ``loan_id``, ``action`` and the columns."""
        if self.loan_ids is None:
            msg = "PlanColumns.frame needs the loan ids"
            raise ValueError(msg)
        codes = pl.Series(pick.astype(np.int64) + 1, dtype=pl.UInt32)
        values = {name: self.values(name, pick) for name in self._flat}
        return pl.DataFrame(
            {"loan_id": self.loan_ids, "action": self._names.gather(codes), **values}
        )


def plan_frame(
    loan_ids: pl.Series,
    pick: npt.NDArray[np.int64],
    actions: tuple[str, ...],
    columns: dict[str, Array | None],
) -> pl.DataFrame:
    """The plan of a choice per loan (-1: none): its action and each column's chosen value.

    Parameters
    ----------
    loan_ids
        (n,) loan ids.
    pick
        (n,) index of the chosen action in ``actions``, -1 for none.
    actions
        Action names.
    columns
        Output name → (n, k) values per action (``None``: column left out); 0 where no action.

    Notes
    -----
    For many plans over the same loans, build one :class:`PlanColumns` and call its
    ``frame`` per plan.
    """
    return PlanColumns(actions, columns, loan_ids=loan_ids).frame(pick)


def plan_actions(
    loan_ids: pl.Series,
    uplift: Array,
    cost: Array,
    actions: tuple[str, ...],
    *,
    budget: float,
    bau: BusinessAsUsual | None = None,
    uplift_low: Array | None = None,
    uplift_high: Array | None = None,
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
    uplift_low, uplift_high
        (n, k) 95 % interval of each uplift; the plan gets ``uplift_low`` and ``uplift_high``.

    Returns
    -------
    PlanResult
        The plan and the comparison table.
    """
    pick = solve_plan(uplift, cost, budget=budget)
    columns = {
        "expected_uplift": uplift,
        "cost": cost,
        "uplift_low": uplift_low,
        "uplift_high": uplift_high,
    }
    plan = plan_frame(loan_ids, pick, actions, columns)
    sample = None if bau is None else (bau, uplift[bau.rows], cost[bau.rows])
    comparison = plan_comparison(plan, actions, ActionTotals.of(uplift, cost), bau=sample)
    return PlanResult(plan=plan, comparison=comparison)


@dataclass(frozen=True, slots=True)
class ActionTotals:
    """Exact sums over loans of each action's net uplift, uplift and cost: the "for all" lines.

    Sums of partitions add up to the sums of all loans exactly (rationals), so the lines are
    the same however the loans were split.

    Parameters
    ----------
    loans
        Number of loans summed.
    net, uplift, cost
        Per action, Σ (uplift − cost), Σ uplift and Σ cost.
    """

    loans: int
    net: tuple[Fraction, ...]
    uplift: tuple[Fraction, ...]
    cost: tuple[Fraction, ...]

    @classmethod
    def of(cls, uplift: Array, cost: Array) -> ActionTotals:
        """The sums of (n, k) uplift and cost."""
        k = uplift.shape[1]
        net = uplift - cost
        return cls(
            loans=uplift.shape[0],
            net=tuple(_exact_sum(net[:, j]) for j in range(k)),
            uplift=tuple(_exact_sum(uplift[:, j]) for j in range(k)),
            cost=tuple(_exact_sum(cost[:, j]) for j in range(k)),
        )

    def __add__(self, other: ActionTotals) -> ActionTotals:
        return ActionTotals(
            loans=self.loans + other.loans,
            net=tuple(a + b for a, b in zip(self.net, other.net, strict=True)),
            uplift=tuple(a + b for a, b in zip(self.uplift, other.uplift, strict=True)),
            cost=tuple(a + b for a, b in zip(self.cost, other.cost, strict=True)),
        )


def plan_comparison(
    plan: pl.DataFrame,
    actions: tuple[str, ...],
    totals: ActionTotals,
    *,
    bau: tuple[BusinessAsUsual, Array, Array] | None = None,
) -> pl.DataFrame:
    """The plan against business as usual, no action and the best single action for all.

    Parameters
    ----------
    plan
        The plan (:func:`plan_frame`) of all loans.
    actions
        Action names.
    totals
        Sums over all loans of each action's uplift and cost.
    bau
        Business-as-usual propensities with the (m, k) uplift and cost of their loans
        (``bau.rows``); the line is omitted if ``None``.
    """
    lines: list[dict[str, Any]] = [
        _line(
            "plan",
            int((plan["action"] != CONTROL).sum()),
            float(plan["expected_uplift"].sum()),
            float(plan["cost"].sum()),
        ),
    ]
    if bau is not None:
        usual, uplift_rows, cost_rows = bau
        scale = totals.loans / max(usual.rows.size, 1)
        p = usual.propensity[:, 1:]
        lines.append(
            _line(
                "business as usual",
                round(float(p.sum()) * scale),
                float((p * uplift_rows).sum()) * scale,
                float((p * cost_rows).sum()) * scale,
            )
        )
    lines.append(_line("no action", 0, 0.0, 0.0))
    best = int(np.argmax([float(net) for net in totals.net]))
    lines.append(
        _line(
            f"{actions[best]} for all",
            totals.loans,
            float(totals.uplift[best]),
            float(totals.cost[best]),
        )
    )
    return pl.DataFrame(lines)


class PolicyPart:
    """One partition's per-loan plan inputs and price schedule, kept where they were predicted.

    With the loans split into partitions (on a cluster, one task each), every part keeps its
    uplift and cost and builds its own :class:`_PriceSchedule`; :func:`plan_price` finds the
    budget's price from scalars asked of every part (:meth:`ask`), and each part then writes
    its own rows of the plan (:meth:`plan`). Its loans' whole arrays never leave it.

    Parameters
    ----------
    inputs
        The partition's :class:`PolicyInputs` (no business-as-usual propensities).
    """

    def __init__(self, inputs: PolicyInputs) -> None:
        self.inputs = inputs
        self.schedule = _PriceSchedule(inputs.uplift, inputs.cost)

    def ask(self, query: Callable[[Any], Any]) -> Any:
        """The answer of a :func:`plan_price` query on this part's schedule."""
        return query(self.schedule)

    def plan(self, price: float, actions: tuple[str, ...]) -> pl.DataFrame:
        """The part's rows of the plan at ``price`` (:func:`plan_frame`, loans in part order)."""
        pick = self.schedule.pick_at(price)
        return plan_frame(self.inputs.loan_ids, pick, actions, self.inputs.plan_columns())

    def totals(self) -> ActionTotals:
        """Exact sums of this part's uplift and cost per action."""
        return ActionTotals.of(self.inputs.uplift, self.inputs.cost)

    def rows(self, positions: npt.NDArray[np.int64]) -> PolicyInputs:
        """The inputs of some of this part's loans (by position in the part)."""
        return self.inputs.take(positions)


@dataclass(frozen=True, slots=True)
class GainCurve:
    """Expected gain of the best plan at each of several budgets, and the plans themselves.

    Parameters
    ----------
    curve
        One row per budget: ``budget``, ``spend``, ``expected_gain`` (Σ ``expected_uplift`` of
        the plan at that budget, gross of cost), ``gain_low`` and ``gain_high`` (its 95 %
        band), ``expected_net`` (gain − spend), ``shadow_price`` (expected net collections one
        more unit of budget buys), ``marginal_return`` (gross gain per unit of spend since the
        previous budget; NaN at the first), ``loans_<action>`` (the mix) and
        ``gain_only_<action>`` (a Qini-style curve: the best gain within the budget using that
        action alone, loans ranked by uplift per unit of cost).
    saturation_spend
        What the unconstrained plan spends: budget beyond it stays unspent, since every further
        action would cost more than it is expected to bring.
    picks
        (budgets, n) chosen action index per loan (-1: none), int8.
    """

    curve: pl.DataFrame
    saturation_spend: float
    picks: npt.NDArray[np.int8]


def gain_curve(
    uplift: Array,
    cost: Array,
    actions: tuple[str, ...],
    *,
    budgets: Array,
    uplift_low: Array | None = None,
    uplift_high: Array | None = None,
) -> GainCurve:
    """The cost-aware gain curve: the best plan's expected gain at each budget, in one pass.

    Parameters
    ----------
    uplift, cost
        (n, k) expected gross uplift in money and cost of each action.
    actions
        Action names (columns of ``uplift``).
    budgets
        Budgets (≥ 0) at which to plan.
    uplift_low, uplift_high
        (n, k) 95 % intervals of each uplift; without them the band equals the gain.

    Returns
    -------
    GainCurve
        The curve and the choice per loan at each budget.

    Notes
    -----
    The plan at each budget is exactly :func:`plan_actions` at that budget (same solver). The
    band sums the per-loan 95 % bounds of the chosen uplifts, i.e. it treats the loans' errors as
    perfectly correlated: conservative (wider than a band that assumes independent errors,
    which a forest's correlated errors would make too narrow).

    Examples
    --------
    >>> up = np.array([[10.0], [6.0], [1.0]])
    >>> gc = gain_curve(up, np.full((3, 1), 2.0), ("call",), budgets=np.array([0.0, 2.0, 9.0]))
    >>> gc.curve["expected_gain"].to_list(), gc.saturation_spend
    ([0.0, 10.0, 16.0], 4.0)
    """
    budgets = np.asarray(budgets, dtype=np.float64)
    if budgets.size and budgets.min() < 0:
        msg = "budgets must be >= 0"
        raise ValueError(msg)
    low = uplift if uplift_low is None else uplift_low
    high = uplift if uplift_high is None else uplift_high
    schedule = _PriceSchedule(uplift, cost)
    n, k = uplift.shape
    # the sums are those of the plan's own columns, so each point is the plan's total exactly
    plans = PlanColumns(
        actions, {"expected_uplift": uplift, "cost": cost, "uplift_low": low, "uplift_high": high}
    )
    picks = np.empty((budgets.size, n), dtype=np.int8)
    records: list[dict[str, Any]] = []
    for i, budget in enumerate(budgets):
        price, pick = schedule.plan_for(float(budget))
        picks[i] = pick
        total = plans.totals(pick)
        record: dict[str, Any] = {
            "budget": float(budget),
            "spend": total["cost"],
            "expected_gain": total["expected_uplift"],
            "gain_low": total["uplift_low"],
            "gain_high": total["uplift_high"],
            "shadow_price": schedule.shadow_price(price),
        }
        counts = np.bincount(pick + 1, minlength=k + 1)[1:]
        record |= {f"loans_{a}": int(counts[j]) for j, a in enumerate(actions)}
        records.append(record)
    curve = pl.DataFrame(records) if records else pl.DataFrame({"budget": budgets})
    if records:
        gain, spend = curve["expected_gain"].to_numpy(), curve["spend"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            marginal = np.diff(gain) / np.diff(spend)
        curve = curve.with_columns(
            expected_net=pl.col("expected_gain") - pl.col("spend"),
            marginal_return=pl.Series(np.concatenate([[np.nan], marginal])).fill_nan(None),
            **{
                f"gain_only_{a}": pl.Series(_single_action_gain(uplift[:, j], cost[:, j], budgets))
                for j, a in enumerate(actions)
            },
        )
    return GainCurve(curve=curve, saturation_spend=schedule.spend0, picks=picks)


def _single_action_gain(uplift: Array, cost: Array, budgets: Array) -> Array:
    """Best gain of one action within each budget: loans by uplift per unit of cost, greedily.

    Loans whose uplift does not exceed the cost are never taken (as in the plan).
    """
    worth = uplift > cost
    u, c = uplift[worth], cost[worth]
    with np.errstate(divide="ignore"):
        ratio = np.where(c > 0, u / np.where(c > 0, c, 1.0), np.inf)
    order = np.argsort(-ratio, kind="stable")
    spend = np.cumsum(c[order])
    gain = np.concatenate([[0.0], np.cumsum(u[order])])
    taken = np.searchsorted(spend, budgets, side="right")
    result: Array = gain[taken]
    return result


def parse_budgets(text: str) -> Array:
    """Budgets from ``start:stop:count`` (evenly spaced, both ends included) or ``a,b,c``.

    Examples
    --------
    >>> parse_budgets("0:1000:5").tolist(), parse_budgets("20000, 100000").tolist()
    ([0.0, 250.0, 500.0, 750.0, 1000.0], [20000.0, 100000.0])
    """
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            values = np.linspace(float(start), float(stop), int(count))
        else:
            values = np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError as exc:
        msg = f"budgets {text!r}: expected START:STOP:COUNT (e.g. 0:1000000:50) or a,b,c"
        raise SettingsError(msg) from exc
    if values.size == 0 or not np.isfinite(values).all() or values.min() < 0:
        msg = f"budgets {text!r}: expected at least one finite budget, all >= 0"
        raise SettingsError(msg)
    return np.sort(values)


#: Loans whose business-as-usual propensities are predicted for the plan's comparison line;
#: larger tapes use a seeded random sample of this size (the propensity models cost about 25 times
#: the effect forest per loan, and the line is a portfolio total).
BAU_SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class PolicyInputs:
    """What a plan needs per loan and action, in money.

    Parameters
    ----------
    loan_ids
        (n,) loan ids.
    exposure
        (n,) outstanding principal plus accrued interest.
    uplift, cost
        (n, k) expected gross uplift and cost of each action.
    bau
        Business-as-usual propensities (``None`` unless asked for).
    uplift_low, uplift_high
        (n, k) 95 % interval of each uplift (``None`` unless asked for).
    collections_without
        (n,) expected collections with no action, in money (``None`` unless asked for).
    """

    loan_ids: pl.Series
    exposure: Array
    uplift: Array
    cost: Array
    bau: BusinessAsUsual | None = None
    uplift_low: Array | None = None
    uplift_high: Array | None = None
    collections_without: Array | None = None

    def take(self, positions: npt.NDArray[np.integer[Any]]) -> PolicyInputs:
        """Ids, exposure, uplift and cost of the loans at ``positions``, in that order."""
        return PolicyInputs(
            loan_ids=self.loan_ids.gather(positions),
            exposure=self.exposure[positions],
            uplift=self.uplift[positions],
            cost=self.cost[positions],
        )

    def plan_columns(self) -> dict[str, Array | None]:
        """The per-action values a plan file picks from (:class:`PlanColumns`, plan_frame)."""
        return {
            "expected_uplift": self.uplift,
            "cost": self.cost,
            "uplift_low": self.uplift_low,
            "uplift_high": self.uplift_high,
        }


def policy_inputs(
    model: Any,
    loans: pl.LazyFrame,
    costs: ActionCosts,
    *,
    with_bau: bool = True,
    with_interval: bool = False,
    with_baseline: bool = False,
    chunk_rows: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> PolicyInputs:
    """Loan ids, gross uplift in money, cost, and optionally propensities and uplift intervals.

    The propensities (``None`` unless ``with_bau``) are for all loans, or for a seeded random
    sample of :data:`BAU_SAMPLE` of them on a larger tape. The uplift interval (``None`` unless
    ``with_interval``) is the loan's 95 % effect interval in money; the expected collections
    with no action (``None`` unless ``with_baseline``) come from the effect model's outcome
    model of the ``none`` arm.

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.causal.ActionEffectModel` whose outcome is
        ``recovery_rate`` (uplift = effect × exposure) or ``net_collections`` (uplift = effect
        + cost, the effect being net of the action's cost already).
    loans
        A validated loans table (a tape or a book), lazily: each chunk is a slice of it, so a
        Parquet scan reads one chunk's rows at a time.
    costs
        Cost of each action.
    chunk_rows
        Loans per chunk (see :func:`~npl_engine.scoring.chunk_rows_for`): ``None``, 250,000
        when the tape has more loans, else all at once; ``0``, all at once. Peak memory
        follows the chunk (its covariates and forest prediction) plus the per-loan arrays
        returned, tens of bytes per loan and action; the values are the same either way.
    progress
        Called with a short description before each chunk, when there is more than one.

    Raises
    ------
    NplError
        If the model's outcome is not in money or a rate of the exposure (``recovered``).
    ValueError
        If ``chunk_rows`` is negative.

    Notes
    -----
    Every value is a function of its loan alone, so a chunk's values are those of the same
    loans predicted with all the others; the business-as-usual sample is drawn by position
    from the tape's height and its rows taken from the chunks that hold them.
    """
    outcome = _money_outcome(model)
    n = count_loans(loans)
    k = len(model.actions_)
    uplift, cost = np.empty((n, k)), np.empty((n, k))
    exposure = np.empty(n)
    low = np.empty((n, k)) if with_interval else None
    high = np.empty((n, k)) if with_interval else None
    without = np.empty(n) if with_baseline else None
    sample = _bau_rows(n) if with_bau else None
    ids: list[pl.Series] = []
    sampled: list[Array] = []
    for piece in loan_chunks(loans, _chunk_size(n, chunk_rows), n_loans=n):
        start, end = piece.start, piece.stop
        if progress is not None and piece.count > 1:
            progress(f"predicting {piece.describe()}")
        part = piece.loans.collect().lazy()
        rows = slice(start, end)
        X = model.covariates(part)  # noqa: N806
        frame = part.select(
            "loan_id",
            pl.col("segment").cast(pl.String),
            pl.col("legal_stage").cast(pl.String),
            exposure=pl.col("outstanding_principal") + pl.col("accrued_interest").fill_null(0.0),
        ).collect()
        ids.append(frame["loan_id"])
        exposure[rows] = frame["exposure"].to_numpy().astype(np.float64)
        cost[rows] = costs.matrix(
            model.actions_,
            exposure[rows],
            segment=frame["segment"].to_numpy(),
            legal_stage=frame["legal_stage"].to_numpy(),
        )
        money = partial(_in_money, outcome=outcome, exposure=exposure[rows], cost=cost[rows])
        if low is not None and high is not None:
            effect, low_effect, high_effect = model.effect_and_interval(X)
            low[rows], high[rows] = money(low_effect), money(high_effect)
        else:
            effect = model.effect(X)
        uplift[rows] = money(effect)
        if without is not None:
            base = model.baseline(X)
            without[rows] = base * exposure[rows] if outcome == "recovery_rate" else base
        if sample is not None:
            lo, hi = np.searchsorted(sample, [start, end])
            sampled.append(X[sample[lo:hi] - start])
        del X, part
    inputs = PolicyInputs(
        loan_ids=pl.concat(ids) if len(ids) > 1 else ids[0],
        exposure=exposure,
        uplift=uplift,
        cost=cost,
        uplift_low=low,
        uplift_high=high,
        collections_without=without,
    )
    if sample is None:
        return inputs
    bau = BusinessAsUsual(propensity=model.propensity(np.concatenate(sampled)), rows=sample)
    return replace(inputs, bau=bau)


def _in_money(effect: Array, *, outcome: str, exposure: Array, cost: Array) -> Array:
    """Uplift in money of effects on ``outcome``: a rate of the exposure, or net of the cost."""
    if outcome == "recovery_rate":
        return effect * exposure[:, None]
    return effect + cost


def _money_outcome(model: Any) -> str:
    """The model's outcome, if a plan can use it: the effects must be in money or a rate."""
    outcome = model.settings.outcome if model.settings is not None else "recovery_rate"
    if outcome == "recovered":
        msg = (
            "a plan needs effects in money: run `npl effects --outcome recovery_rate` "
            "(or net_collections), not recovered"
        )
        raise NplError(msg)
    return str(outcome)


def _chunk_size(n: int, chunk_rows: int | None) -> int:
    """Loans per chunk of a tape of ``n`` loans: ``chunk_rows_for``, with 0 as all ``n``."""
    return chunk_rows_for(n, chunk_rows) or max(n, 1)


def _bau_rows(n: int) -> npt.NDArray[np.int64]:
    """Positions of the loans whose business-as-usual propensities are predicted, increasing.

    All ``n`` loans, or a seeded random sample of :data:`BAU_SAMPLE` of them: the same
    positions whatever the chunks, since they depend on the tape's height only.
    """
    if n <= BAU_SAMPLE:
        return np.arange(n, dtype=np.int64)
    rows = np.random.default_rng(0).choice(n, BAU_SAMPLE, replace=False)
    return np.sort(rows).astype(np.int64)


def collections_without(
    model: Any,
    loans: pl.LazyFrame,
    exposure: Array,
    rows: npt.NDArray[np.integer[Any]],
    *,
    chunk_rows: int | None = None,
) -> Array:
    """Expected collections with no action of some loans, in money.

    The same numbers as ``policy_inputs(..., with_baseline=True).collections_without[rows]``,
    predicted for those rows only: a plan needs them only for the loans it offers a
    settlement, and the outcome models cost per loan about 60 % of what the effect forest costs.

    Parameters
    ----------
    model
        The fitted :class:`~npl_engine.causal.ActionEffectModel` of :func:`policy_inputs`.
    loans
        The loans table given to :func:`policy_inputs`.
    exposure
        (n,) its exposures (:attr:`PolicyInputs.exposure`).
    rows
        Positions of the loans wanted in ``loans``, increasing.
    chunk_rows
        Loans read at a time to find those rows (as in :func:`policy_inputs`): only the chunks
        holding one are read, and only the wanted rows are kept.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return np.zeros(0, dtype=np.float64)
    _money_outcome(model)  # refuse a model not in money before reading the tape
    chosen = loans_at(loans, rows, n_loans=exposure.size, chunk_rows=chunk_rows)
    return _collections_without_rows(model, chosen, exposure[rows])


def loans_at(
    loans: pl.LazyFrame,
    rows: npt.NDArray[np.integer[Any]],
    *,
    n_loans: int,
    chunk_rows: int | None = None,
) -> pl.DataFrame:
    """The loans at positions ``rows`` (increasing), read a chunk at a time.

    Only the chunks holding a wanted loan are read, and only the wanted rows kept: a sample
    or the loans offered a settlement, without holding the tape.
    """
    if rows.size == 0:
        return loans.head(0).collect()
    parts = []
    for piece in loan_chunks(loans, _chunk_size(n_loans, chunk_rows), n_loans=n_loans):
        lo, hi = np.searchsorted(rows, [piece.start, piece.stop])
        if hi > lo:
            parts.append(piece.loans.collect()[rows[lo:hi] - piece.start])
    return pl.concat(parts) if len(parts) > 1 else parts[0]


def _collections_without_rows(model: Any, chosen: pl.DataFrame, exposure: Array) -> Array:
    """Expected collections with no action of the loans ``chosen`` (exposures ``exposure``)."""
    outcome = _money_outcome(model)
    base = model.baseline(model.covariates(chosen.lazy()))
    return np.asarray(base * exposure if outcome == "recovery_rate" else base)


def settlement_economics(
    inputs: PolicyInputs, actions: tuple[str, ...], costs: ActionCosts
) -> pl.DataFrame:
    """What a settlement offer gives up and brings, per loan, in money.

    Parameters
    ----------
    inputs
        From :func:`policy_inputs` with ``with_baseline=True``.
    actions
        The effect model's actions (must include ``settlement_offer``).
    costs
        Costs, for the offer's discount (share of the claim waived).

    Returns
    -------
    polars.DataFrame
        ``loan_id``, ``collections_without_offer`` (expected collections with no action),
        ``collections_with_offer`` (that plus the offer's expected uplift) and
        ``amount_waived``.

    Notes
    -----
    ``amount_waived`` is ``discount / (1 − discount) × collections_with_offer``: the face value
    given up if every collection under the offer came from an accepted settlement paying
    ``1 − discount`` of the claim. Part of those collections would come from other channels, so
    it is an upper bound of the expected amount waived.
    """
    if inputs.collections_without is None:
        msg = "settlement economics need policy_inputs(..., with_baseline=True)"
        raise ValueError(msg)
    k = actions.index("settlement_offer")
    without = inputs.collections_without
    with_offer = without + inputs.uplift[:, k]
    d = costs.settlement_discount
    return pl.DataFrame(
        {
            "loan_id": inputs.loan_ids,
            "collections_without_offer": without,
            "collections_with_offer": with_offer,
            "amount_waived": d / (1.0 - d) * np.maximum(with_offer, 0.0),
        }
    )


def _line(policy: str, acted: int, uplift: float, cost: float) -> dict[str, Any]:
    return {
        "policy": policy,
        "loans_acted": acted,
        "cost": float(cost),
        "expected_uplift": float(uplift),
        "expected_net": float(uplift - cost),
    }
