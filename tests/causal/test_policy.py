import math
from fractions import Fraction

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from npl_engine.causal import _policy as policy_module
from npl_engine.causal._policy import (
    ActionCosts,
    PlanColumns,
    PolicyInputs,
    _exact_sum,
    _plan_spend,
    _PriceSchedule,
    gain_curve,
    parse_budgets,
    plan_actions,
    plan_frame,
    plan_price,
    plan_shadow_price,
    settlement_economics,
    solve_plan,
)
from npl_engine.errors import SettingsError

ACTIONS = ("letter", "call", "settlement_offer", "legal_action")


def _book(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Uplift and cost of four actions priced like the simulator's (some uplifts negative)."""
    rng = np.random.default_rng(seed)
    exposure = rng.lognormal(10, 1, n)
    cost = np.column_stack(
        [np.full(n, 4.0), np.full(n, 18.0), np.full(n, 90.0), 1200 + 0.01 * exposure]
    )
    effect = rng.normal([0.002, 0.01, 0.03, 0.04], [0.01, 0.02, 0.03, 0.05], (n, 4))
    return effect * exposure[:, None], cost


def _bisection(uplift: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:  # type: ignore[type-arg]
    """The solver before the price schedule: bisection with a full pass per price."""

    def choose(price: float) -> tuple[np.ndarray, float]:  # type: ignore[type-arg]
        score = uplift - (1.0 + price) * cost
        best = score.argmax(axis=1)
        rows = np.arange(score.shape[0])
        take = score[rows, best] > 0
        return np.where(take, best, -1), float(cost[rows, best][take].sum())

    pick, spent = choose(0.0)
    if spent <= budget:
        return pick
    lo, hi = 0.0, float(max((uplift / cost).max(), 1.0))
    best_pick = choose(hi)[0]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        pick, spent = choose(mid)
        if spent <= budget:
            hi, best_pick = mid, pick
        else:
            lo = mid
    return best_pick


def test_price_schedule_plans_equal_the_bisection_over_every_pass() -> None:
    """The sorted-switch solver chooses what the full-pass bisection chose, at many budgets."""
    uplift, cost = _book(3000, 1)
    for budget in (0.0, 500.0, 5_000.0, 50_000.0, 300_000.0, 1e9):
        assert (solve_plan(uplift, cost, budget=budget) == _bisection(uplift, cost, budget)).all()


def test_the_schedule_in_small_blocks_of_loans_is_the_same_schedule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Searching each loan's next switch 7 loans at a time gives the same curve and picks."""
    uplift, cost = _book(3000, 4)
    budgets = parse_budgets("0:400000:25")
    whole = gain_curve(uplift, cost, ACTIONS, budgets=budgets)
    monkeypatch.setattr("npl_engine.causal._policy._SWITCH_BLOCK", 7)
    blocks = gain_curve(uplift, cost, ACTIONS, budgets=budgets)
    assert_frame_equal(blocks.curve, whole.curve, check_exact=True)
    assert (blocks.picks == whole.picks).all()
    assert len(np.unique(whole.picks.sum(axis=1))) > 20  # the budgets give different plans


def test_each_curve_point_is_the_plan_at_that_budget() -> None:
    """At each budget the curve's gain, band and spend are exactly the plan_actions plan's sums."""
    uplift, cost = _book(2000, 2)
    width = np.abs(uplift) * 0.3
    low, high = uplift - width, uplift + 2 * width
    budgets = parse_budgets("0:200000:9")
    result = gain_curve(uplift, cost, ACTIONS, budgets=budgets, uplift_low=low, uplift_high=high)
    ids = pl.Series("loan_id", [f"L{i}" for i in range(2000)])
    plans = PlanColumns(
        ACTIONS,
        {"expected_uplift": uplift, "cost": cost, "uplift_low": low, "uplift_high": high},
        loan_ids=ids,
    )
    for i, row in enumerate(result.curve.iter_rows(named=True)):
        plan = plan_actions(
            ids, uplift, cost, ACTIONS, budget=row["budget"], uplift_low=low, uplift_high=high
        ).plan
        # the plan the curve writes at this budget is the single-budget plan, value for value
        assert_frame_equal(plans.frame(result.picks[i]), plan, check_exact=True)
        assert row["expected_gain"] == plan["expected_uplift"].sum()
        assert row["gain_low"] == plan["uplift_low"].sum()
        assert row["gain_high"] == plan["uplift_high"].sum()
        assert row["spend"] == plan["cost"].sum()
        assert row["spend"] <= row["budget"] + 1e-6
        mix = plan.group_by("action").len()
        for action in ACTIONS:
            got = mix.filter(pl.col("action") == action)["len"].sum()
            assert row[f"loans_{action}"] == got


def _plan_frame_by_rows(
    ids: pl.Series,
    pick: np.ndarray,  # type: ignore[type-arg]
    actions: tuple[str, ...],
    columns: dict[str, np.ndarray | None],  # type: ignore[type-arg]
) -> pl.DataFrame:
    """The plan frame as built before PlanColumns: per-row selection, names as numpy strings."""
    rows = np.arange(pick.size)
    taken = pick >= 0
    col = np.maximum(pick, 0)
    names = np.array(["none", *actions], dtype=object)
    values = {
        name: np.where(taken, array[rows, col], 0.0) if array.shape[1] else np.zeros(pick.size)
        for name, array in columns.items()
        if array is not None
    }
    return pl.DataFrame({"loan_id": ids, "action": names[pick + 1].astype(str), **values})


def test_plan_columns_build_the_same_frame_as_a_per_row_selection() -> None:
    """PlanColumns.frame equals the per-row selection, with no action, no interval, no actions."""
    uplift, cost = _book(500, 7)
    ids = pl.Series("loan_id", [f"L{i}" for i in range(500)])
    pick = np.random.default_rng(7).integers(-1, len(ACTIONS), 500)
    columns = {"expected_uplift": uplift, "cost": cost, "uplift_low": None}
    for chosen in (pick, np.full(500, -1), pick.astype(np.int8)):
        expected = _plan_frame_by_rows(ids, chosen.astype(np.int64), ACTIONS, columns)
        got = PlanColumns(ACTIONS, columns, loan_ids=ids).frame(chosen)
        assert_frame_equal(got, expected, check_exact=True)
        assert_frame_equal(plan_frame(ids, chosen.astype(np.int64), ACTIONS, columns), expected)
    empty = {"expected_uplift": np.zeros((500, 0)), "cost": np.zeros((500, 0))}
    none = np.full(500, -1)
    assert_frame_equal(
        PlanColumns((), empty, loan_ids=ids).frame(none),
        _plan_frame_by_rows(ids, none, (), empty),
        check_exact=True,
    )


def test_the_curve_never_decreases_and_stops_at_the_unconstrained_spend() -> None:
    """Gain, net and spend rise with the budget; past the saturation spend nothing changes."""
    uplift, cost = _book(3000, 3)
    result = gain_curve(uplift, cost, ACTIONS, budgets=parse_budgets("0:2000000:40"))
    curve = result.curve
    for column in ("expected_gain", "spend", "expected_net"):
        assert (np.diff(curve[column].to_numpy()) >= -1e-6).all(), column
    last = curve.row(-1, named=True)
    assert last["spend"] == pytest.approx(result.saturation_spend)
    assert last["shadow_price"] == 0.0
    assert (curve["shadow_price"].to_numpy()[:-1] >= 0).all()


def test_band_brackets_the_gain() -> None:
    """The band brackets the gain: gain_low <= expected_gain <= gain_high at every budget."""
    uplift, cost = _book(2000, 4)
    width = np.abs(uplift) * 0.5
    curve = gain_curve(
        uplift,
        cost,
        ACTIONS,
        budgets=parse_budgets("0:100000:11"),
        uplift_low=uplift - width,
        uplift_high=uplift + width,
    ).curve
    assert (curve["gain_low"] <= curve["expected_gain"]).all()
    assert (curve["expected_gain"] <= curve["gain_high"]).all()


def test_unconstrained_plan_nets_at_least_any_single_action() -> None:
    """With budget to spare, the plan nets at least what each action alone would net."""
    uplift, cost = _book(2000, 5)
    curve = gain_curve(uplift, cost, ACTIONS, budgets=np.array([1e12])).curve.row(0, named=True)
    for j, action in enumerate(ACTIONS):
        worth = uplift[:, j] > cost[:, j]
        alone = float((uplift[worth, j] - cost[worth, j]).sum())
        assert curve[f"gain_only_{action}"] == pytest.approx(uplift[worth, j].sum())
        assert curve["expected_net"] >= alone - 1e-6


def test_single_action_curve_by_hand() -> None:
    """One action, uplifts 10, 6, 1 at cost 2: budgets 0, 2, 3, 9 buy 0, 10, 10, 16."""
    up = np.array([[10.0], [6.0], [1.0]])
    curve = gain_curve(up, np.full((3, 1), 2.0), ("call",), budgets=np.array([0, 2, 3, 9.0]))
    assert curve.curve["expected_gain"].to_list() == [0.0, 10.0, 10.0, 16.0]
    assert curve.curve["gain_only_call"].to_list() == [0.0, 10.0, 10.0, 16.0]
    assert curve.curve["marginal_return"].to_list()[1:] == [5.0, None, 3.0]


def test_budgets_are_parsed_or_refused() -> None:
    """START:STOP:COUNT and comma lists parse; a negative or garbled budget is refused."""
    assert parse_budgets("0:100:3").tolist() == [0.0, 50.0, 100.0]
    assert parse_budgets("500,20").tolist() == [20.0, 500.0]
    for bad in ("0:100", "a,b", "-5", ""):
        with pytest.raises(SettingsError, match="budgets"):
            parse_budgets(bad)


def test_settlement_economics_by_hand() -> None:
    """Without 1,000, uplift 500: with 1,500; waived at 30 % = 0.3/0.7 x 1,500 = 642.86."""
    inputs = PolicyInputs(
        loan_ids=pl.Series("loan_id", ["A"]),
        exposure=np.array([10_000.0]),
        uplift=np.array([[500.0]]),
        cost=np.array([[90.0]]),
        collections_without=np.array([1000.0]),
    )
    costs = ActionCosts(fixed={"settlement_offer": 90.0}, settlement_discount=0.3)
    row = settlement_economics(inputs, ("settlement_offer",), costs).row(0, named=True)
    assert row["collections_with_offer"] == 1500.0
    assert row["amount_waived"] == pytest.approx(0.3 / 0.7 * 1500.0)


@pytest.mark.slow
def test_the_curve_band_covers_the_true_gain_on_a_20000_loan_book() -> None:
    """At >= 90 % of 20 budgets the 95 % band holds the plan's true gain (simulator truth).

    Effects fitted on a 20,000-loan book (seed 4); plans for a 5,000-loan tape (seed 5), from
    nothing to past the saturation spend. True gain of a plan: Σ over its loans of the true
    60-month expected collections under the chosen action minus under none.
    """
    from npl_engine.causal import (  # noqa: PLC0415 - slow test only
        ActionEffectModel,
        estimate_costs,
        policy_inputs,
    )
    from npl_engine.data.simulator import SimulationSettings, simulate  # noqa: PLC0415

    book = simulate(SimulationSettings(n_loans=20_000, seed=4, kind="book")).dataset()
    tape = simulate(SimulationSettings(n_loans=5_000, seed=5, kind="tape"))
    model = ActionEffectModel(seed=0, n_jobs=2).fit(book)
    inputs = policy_inputs(
        model, tape.loans.lazy(), estimate_costs(book), with_bau=False, with_interval=True
    )
    truth = pl.DataFrame({"loan_id": inputs.loan_ids}).join(
        tape.truth, on="loan_id", how="left", maintain_order="left"
    )
    none = truth["expected_collections_none"].to_numpy()
    true_uplift = np.column_stack(
        [truth[f"expected_collections_{a}"].to_numpy() - none for a in model.actions_]
    )
    top = gain_curve(inputs.uplift, inputs.cost, model.actions_, budgets=np.zeros(1))
    budgets = np.linspace(0, 1.2 * top.saturation_spend, 21)[1:]
    result = gain_curve(
        inputs.uplift,
        inputs.cost,
        model.actions_,
        budgets=budgets,
        uplift_low=inputs.uplift_low,
        uplift_high=inputs.uplift_high,
    )
    rows = np.arange(true_uplift.shape[0])
    covered = []
    for i, row in enumerate(result.curve.iter_rows(named=True)):
        pick = result.picks[i].astype(np.int64)
        true_gain = float(np.where(pick >= 0, true_uplift[rows, np.maximum(pick, 0)], 0.0).sum())
        covered.append(row["gain_low"] <= true_gain <= row["gain_high"])
    assert np.mean(covered) >= 0.9, covered


def _tied_book(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[type-arg]
    """Small whole-number uplifts and costs: many loans switch at the same prices (ties)."""
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 6, (n, 3)).astype(np.float64)
    uplift = rng.integers(-2, 12, (n, 3)).astype(np.float64)
    uplift[: n // 4] = uplift[n // 4 : 2 * (n // 4)]  # identical loans
    cost[: n // 4] = cost[n // 4 : 2 * (n // 4)]
    return uplift, cost


def _edge_budgets(uplift: np.ndarray, cost: np.ndarray, rng: np.random.Generator) -> list[float]:  # type: ignore[type-arg]
    """0, beyond the unconstrained spend, the spend right after events, and random budgets."""
    schedule = _PriceSchedule(uplift, cost)
    after = schedule.spend0 + schedule.cum_change
    at_events = rng.choice(after, min(after.size, 25), replace=False) if after.size else []
    between = rng.uniform(0, schedule.spend0, 10)
    return [
        0.0,
        schedule.spend0,
        schedule.spend0 * 2 + 1,
        float(np.nextafter(schedule.spend0, 0.0)),
        *map(float, at_events),
        *map(float, np.nextafter(at_events, np.inf)),
        *map(float, between),
    ]


@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("book", ["floats", "ties"])
def test_the_partitioned_search_is_the_whole_plan_bit_for_bit(parts: int, book: str) -> None:
    """Schedules of 1, 3 or 7 partitions give the one-schedule price, shadow price and picks.

    Only scalars cross: ``each`` runs a query on every partition's schedule in process.
    """
    rng = np.random.default_rng(parts)
    uplift, cost = _book(2000, 7) if book == "floats" else _tied_book(2000, 7)
    whole = _PriceSchedule(uplift, cost)
    owner = rng.integers(0, parts, uplift.shape[0])
    rows = [np.flatnonzero(owner == i) for i in range(parts)]
    schedules = [_PriceSchedule(uplift[r], cost[r]) for r in rows]

    def each(query):  # type: ignore[no-untyped-def]
        return [query(s) for s in schedules]

    for budget in _edge_budgets(uplift, cost, rng):
        price, pick = whole.plan_for(budget)
        assert plan_price(budget, each) == price, budget
        assert plan_shadow_price(price, each) == whole.shadow_price(price)
        joined = np.empty_like(pick)
        for r, s in zip(rows, schedules, strict=True):
            joined[r] = s.pick_at(price)
        assert np.array_equal(joined, pick), budget
        assert np.array_equal(pick, solve_plan(uplift, cost, budget=budget))
        assert cost[np.arange(pick.size), pick][pick >= 0].sum() <= budget + 1e-9 * budget


def test_a_tie_rounded_the_other_way_takes_the_next_step_in_every_partition() -> None:
    """Events that say a plan fits where the pass over loans says not: the same next step.

    Loans whose lines cross at prices a rounding apart (found by a random search): at this
    budget the first midpoint checked spends too much, so the search moves on a step, with
    the loans in one schedule or split in two or three.
    """
    uplift = np.array(
        [[0.11428571428571428, 0.05714285714285714], [0.3428571428571428, 0.1714285714285714],
         [1.2571428571428571, 0.6285714285714286], [0.1142857142857143, 0.05714285714285715],
         [0.011428571428571429, 0.005714285714285714], [1.0, 0.5]]
    )  # fmt: skip
    cost = np.array([[0.1, 0.01], [0.3, 0.2], [1.1, 0.1], [0.1, 0.01], [0.01, 0.2], [0.7, 0.3]])
    budget = 0.11999999999999988
    whole = _PriceSchedule(uplift, cost)
    checks: list[float] = []

    def each_whole(query):  # type: ignore[no-untyped-def]
        if getattr(query, "func", None) is _plan_spend:
            checks.append(query.keywords["price"])
        return [query(whole)]

    price = plan_price(budget, each_whole)
    assert len(checks) >= 2  # the first midpoint did not fit
    assert price == whole.plan_for(budget)[0]
    for split in ([0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2], [2, 1, 0, 0, 1, 2]):
        owner = np.array(split)
        parts = [np.flatnonzero(owner == i) for i in range(max(split) + 1)]
        schedules = [_PriceSchedule(uplift[r], cost[r]) for r in parts]
        assert plan_price(budget, lambda q, s=schedules: [q(x) for x in s]) == price
        joined = np.empty(uplift.shape[0], dtype=np.int64)
        for r, s in zip(parts, schedules, strict=True):
            joined[r] = s.pick_at(price)
        assert np.array_equal(joined, solve_plan(uplift, cost, budget=budget))


def test_exact_sums_do_not_depend_on_order_or_grouping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Σ of floats as rationals: any order and any split give the same sum, fsum's rounding."""
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 5000) * 10.0 ** rng.integers(-12, 12, 5000)
    total = _exact_sum(values)
    assert float(total) == math.fsum(values)
    assert _exact_sum(rng.permutation(values)) == total
    assert _exact_sum(values[:1234]) + _exact_sum(values[1234:]) == total
    assert _exact_sum(np.array([0.1, 0.2, -0.3])) == Fraction(0.1) + Fraction(0.2) - Fraction(0.3)
    # Across blocks (a few values per block here): the same sum, exactly.
    monkeypatch.setattr(policy_module, "_EXACT_BLOCK", 7)
    assert _exact_sum(values) == total == sum(map(Fraction, values.tolist()), Fraction(0))
    with pytest.raises(ValueError, match="finite"):
        _exact_sum(np.array([1.0, np.nan]))
