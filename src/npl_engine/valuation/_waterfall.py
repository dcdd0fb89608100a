"""The waterfall: net collections paid out month by month over a structure's classes of notes.

:func:`waterfall` takes a :class:`~npl_engine.valuation.TrancheStructure` (read by
:func:`~npl_engine.valuation.load_tranches`), the net collections of one scenario (shape
``(H,)``) or of many runs (shape ``(..., H)``: scenarios, Monte Carlo paths) and returns each
class's cash flows and metrics as a :class:`~npl_engine.valuation.TrancheResults`, with the
structure's triggers tested every period against the business plan.
:func:`tranche_report` runs it on every scenario and path of a valuation (what
``npl value --tranches`` writes). ``docs/tranches.md`` explains the order of payments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.valuation._finance import (
    annual_irr,
    discount_factors,
    moic,
    weighted_average_life,
)
from npl_engine.valuation._tranche_results import TrancheFlows, TrancheResults, TriggerOutcome
from npl_engine.valuation._tranche_settings import TRIGGER_NAMES, TrancheStructure, Triggers

if TYPE_CHECKING:
    from npl_engine.valuation._montecarlo import MonteCarloResult
    from npl_engine.valuation._pricing import ScenarioValues as Valuation

__all__ = ["tranche_report", "waterfall"]

FloatArray = npt.NDArray[np.float64]


def waterfall(
    net: FloatArray,
    structure: TrancheStructure,
    *,
    gbv: float,
    price: float,
    plan: FloatArray | None = None,
    plan_discount_rate: float = 0.0,
    servicer_fees: FloatArray | None = None,
) -> TrancheResults:
    """Run a sequential waterfall over net collections, with the structure's triggers if any.

    Parameters
    ----------
    net
        Net collections at the end of months 1..H, shape ``(*S, H)``: ``(H,)`` for one
        scenario, ``(paths, H)`` for Monte Carlo paths, any leading shape in general. May be
        negative in a month (costs above collections).
    structure
        Senior fees and classes of notes (:func:`load_tranches`).
    gbv
        Gross book value of the portfolio (> 0), the base of ``size_pct_gbv``.
    price
        Price paid for the portfolio at month 0 (> 0). The classes are issued at par at month
        0 and add up to it (:meth:`TrancheStructure.amounts`).
    plan
        The business plan's net collections at months 1..H, shape ``(H,)``: what the trigger
        ratios compare each run with. Required when the structure has triggers; ignored
        otherwise.
    plan_discount_rate
        Annual rate of the PV profitability ratio (month t discounted by
        ``(1 + rate) ** (-t / 12)``).
    servicer_fees
        The servicer's fee each month, already out of ``net``, shape ``(*S, H)``; needed
        only for a servicer fee deferral (zero when not given).

    Returns
    -------
    TrancheResults
        Fees and each class's interest, principal, loss, yield, WAL and MOIC, per run; with
        triggers, which were hit and when (:class:`TriggerOutcome`).

    Raises
    ------
    SettingsError
        If the classes above the residual add up to the price or more.
    ValueError
        If ``net`` has no month axis or holds a non-finite value, or ``gbv`` or ``price`` is
        not a positive finite number.

    Notes
    -----
    Each month t = 1..H, every run independently and in this order (fully sequential, the
    order of GACS deals once a subordination event has occurred):

    1. **Senior fees**: ``senior_fees_share × max(net_t, 0) + senior_fees_fixed_per_year / 12``
       plus any fees unpaid earlier; a negative ``net_t`` is a deficit owed at the same rank.
       Paid as far as the month's positive net collections go; the rest is carried, without
       interest, and whatever is still owed at month H is reported as ``fees_unpaid``.
    2. For each class by seniority except the residual: **interest**, due at the monthly rate
       ``m = (1 + coupon) ** (1 / 12) - 1`` on the opening balance, which is principal
       outstanding plus interest arrears. Unpaid interest therefore capitalises (arrears bear
       interest at the coupon) and is paid before the class's principal. Then **principal**,
       as far as cash goes, until the class is repaid. Only then does the next class get
       anything.
    3. The **residual** class takes everything left: first as principal until its amount is
       repaid, the rest as its return (reported as ``interest``).

    With a ``[triggers]`` table (:class:`Triggers`), step 2 is preceded by the interest of
    every class in order of seniority (the order before a subordination event); at each test
    date the run's cumulative net collections (and their present value) are compared with
    the plan's, and the senior interest cover over the period with its threshold; a failed
    test subordinates the interest of every class below the senior to step 2 until the next
    test date, and a cumulative collection ratio below the deferral ratio keeps the deferred
    share of the servicer's fee in the waterfall, owed to the servicer after the rated
    classes and before the residual one. Without the table the order above holds every month
    and the results are those of the fully sequential waterfall, exactly.

    Cash is paid at month ends, the classes are bought at par at month 0, and an annual rate r
    is compounded monthly as ``(1 + r) ** (t / 12)`` (:mod:`npl_engine.valuation._finance`).
    As a consequence a class repaid in full with no interest unpaid yields exactly its coupon.

    The months are a loop (H <= 600); the runs, a NumPy axis. Yield, WAL and MOIC are computed
    per run with the scalar primitives of ``_finance``.

    Examples
    --------
    >>> from npl_engine.valuation import Tranche, TrancheStructure
    >>> s = TrancheStructure(tranches=[
    ...     Tranche(name="senior", order=1, amount=60.0, coupon=0.0),
    ...     Tranche(name="junior", order=2, residual=True),
    ... ])
    >>> r = waterfall(np.array([50.0, 70.0]), s, gbv=400.0, price=100.0)
    >>> r.tranche("senior").principal.tolist(), r.tranche("junior").cash.tolist()
    ([50.0, 10.0], [0.0, 60.0])
    """
    flows = np.asarray(net, dtype=np.float64)
    if flows.ndim < 1 or flows.shape[-1] < 1:
        msg = f"net collections need a month axis (shape (..., H) with H >= 1), got {flows.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(flows)):
        msg = "net collections must be finite numbers (found NaN or infinity)"
        raise ValueError(msg)
    amounts = np.asarray(structure.amounts(gbv=gbv, price=price))
    run_shape, h = flows.shape[:-1], flows.shape[-1]
    rows = flows.reshape(-1, h)
    inputs = None
    if structure.triggers is not None:
        inputs = _trigger_inputs(
            structure.triggers,
            rows,
            plan=plan,
            plan_discount_rate=plan_discount_rate,
            servicer_fees=servicer_fees,
        )
    alloc = _allocate(
        rows,
        amounts=amounts,
        monthly_rates=np.array([t.monthly_rate for t in structure.tranches]),
        fees_share=structure.terms.senior_fees_share,
        fees_monthly=structure.terms.senior_fees_fixed_per_year / 12.0,
        triggers=inputs,
    )
    tranches = []
    for k, t in enumerate(structure.tranches):
        cash = alloc.interest[k] + alloc.principal[k]
        irr, wal, multiple = _per_run_metrics(float(amounts[k]), cash, alloc.principal[k])
        tranches.append(
            TrancheFlows(
                name=t.name,
                order=t.order,
                amount=float(amounts[k]),
                coupon=t.coupon,
                residual=t.residual,
                interest=alloc.interest[k].reshape(flows.shape),
                principal=alloc.principal[k].reshape(flows.shape),
                principal_outstanding=alloc.balance[k].reshape(run_shape),
                interest_unpaid=alloc.arrears[k].reshape(run_shape),
                irr=irr.reshape(run_shape),
                wal_years=wal.reshape(run_shape),
                moic=multiple.reshape(run_shape),
            )
        )
    return TrancheResults(
        structure=structure,
        gbv=float(gbv),
        price=float(price),
        net=flows,
        fees=alloc.fees.reshape(flows.shape),
        fees_unpaid=alloc.fees_owed.reshape(run_shape),
        tranches=tuple(tranches),
        triggers=None
        if alloc.triggers is None or structure.triggers is None
        else TriggerOutcome(
            terms=structure.triggers,
            test_months=alloc.triggers.test_months,
            hits={name: hit.reshape(*run_shape, -1) for name, hit in alloc.triggers.hits.items()},
            servicer_deferred=alloc.triggers.servicer_deferred.reshape(flows.shape),
            servicer_repaid=alloc.triggers.servicer_repaid.reshape(flows.shape),
            servicer_unpaid=alloc.triggers.servicer_owed.reshape(run_shape),
        ),
    )


def _trigger_inputs(
    terms: Triggers,
    rows: FloatArray,
    *,
    plan: FloatArray | None,
    plan_discount_rate: float,
    servicer_fees: FloatArray | None,
) -> _TriggerInputs:
    """Cumulative ratios of each run to the plan, by month, and the servicer fees as rows."""
    runs, h = rows.shape
    if plan is None:
        msg = "the structure has [triggers]: give the business plan's net collections (plan=)"
        raise ValueError(msg)
    reference = np.asarray(plan, dtype=np.float64)
    if reference.shape != (h,) or not np.all(np.isfinite(reference)):
        msg = f"the plan must be {h} finite monthly net collections, got shape {reference.shape}"
        raise ValueError(msg)
    fees = np.zeros((runs, h))
    if servicer_fees is not None:
        fees = np.broadcast_to(np.asarray(servicer_fees, dtype=np.float64), (runs, h)).copy()
    elif terms.defers_servicer_fee:
        msg = "the structure defers servicer fees: give the servicer's fee each month"
        raise ValueError(msg)
    discount = discount_factors(h, plan_discount_rate)
    ratios = []
    for weight in (np.ones(h), discount):
        done = np.cumsum(rows * weight, axis=1)
        planned = np.cumsum(reference * weight)
        ratio = np.full((runs, h), np.nan)
        np.divide(done, planned, out=ratio, where=np.broadcast_to(planned > 0, (runs, h)))
        ratios.append(ratio)
    return _TriggerInputs(
        terms=terms, collection_ratio=ratios[0], pv_ratio=ratios[1], servicer_fees=fees
    )


@dataclass(frozen=True, slots=True)
class _Allocation:
    """Raw waterfall output over flat runs: (classes, runs, H) flows, (classes, runs) ends."""

    fees: FloatArray
    fees_owed: FloatArray
    interest: FloatArray
    principal: FloatArray
    balance: FloatArray
    arrears: FloatArray
    triggers: _TriggerState | None = None


@dataclass(frozen=True, slots=True)
class _TriggerInputs:
    """What the trigger tests need, over flat runs: ratios to plan by month, servicer fees."""

    terms: Triggers
    collection_ratio: FloatArray  # (runs, H), cumulative, NaN where the plan has nothing yet
    pv_ratio: FloatArray  # (runs, H)
    servicer_fees: FloatArray  # (runs, H)


@dataclass(frozen=True, slots=True)
class _TriggerState:
    """Raw trigger output over flat runs: hits (name -> (runs, tests)), deferred fees."""

    test_months: npt.NDArray[np.int64]
    hits: dict[str, npt.NDArray[np.bool_]]
    servicer_deferred: FloatArray  # (runs, H)
    servicer_repaid: FloatArray  # (runs, H)
    servicer_owed: FloatArray  # (runs,)


def _allocate(  # noqa: PLR0915 - the order of payments, month by month, read top to bottom
    net: FloatArray,
    *,
    amounts: FloatArray,
    monthly_rates: FloatArray,
    fees_share: float,
    fees_monthly: float,
    triggers: _TriggerInputs | None = None,
) -> _Allocation:
    """Allocate net collections of shape (runs, H) month by month; the last class is residual.

    Without triggers, each class in turn takes interest then principal (fully sequential).
    With triggers, every class's interest is paid first (the mezzanine's only while it is
    not subordinated), then the same sequential pass pays what is left of each class's
    interest and its principal; deferred servicer fees come after the rated classes.
    """
    runs, h = net.shape
    k = amounts.size
    interest = np.zeros((k, runs, h))
    principal = np.zeros((k, runs, h))
    fees = np.zeros((runs, h))
    balance = np.repeat(amounts[:, None], runs, axis=1)  # principal outstanding
    arrears = np.zeros((k, runs))  # interest due and unpaid, bearing interest at the coupon
    owed = np.zeros(runs)  # senior fees and deficits carried from earlier months
    due_now = np.zeros((k, runs))  # interest due this month and not yet paid
    if triggers is not None:
        terms = triggers.terms
        step = terms.period_months
        tests = np.arange(step, h + 1, step)
        hits = {name: np.zeros((runs, tests.size), dtype=bool) for name in TRIGGER_NAMES}
        subordinated = np.zeros(runs, dtype=bool)
        deferring = np.zeros(runs, dtype=bool)
        deferred = np.zeros((runs, h))
        repaid = np.zeros((runs, h))
        servicer_owed = np.zeros(runs)
        available = np.zeros(runs)  # funds after senior fees over the period
        senior_due = np.zeros(runs)  # senior interest due over the period
    for t in range(h):
        collected = np.maximum(net[:, t], 0.0)
        deficit = collected - net[:, t]
        due = owed + fees_share * collected + fees_monthly + deficit
        paid = np.minimum(due, collected)
        owed = due - paid
        fees[:, t] = paid - deficit
        cash = collected - paid
        for j in range(k - 1):
            due_now[j] = arrears[j] * (1.0 + monthly_rates[j]) + balance[j] * monthly_rates[j]
        if triggers is not None:
            held = np.where(deferring, terms.servicer_fee_deferred_share or 0.0, 0.0)
            deferred[:, t] = held * triggers.servicer_fees[:, t]
            servicer_owed += deferred[:, t]
            cash = cash + deferred[:, t]
            available += cash
            senior_due += due_now[0]
            for j in range(k - 1):
                interest_paid = np.minimum(due_now[j], cash)
                if j > 0:
                    interest_paid = np.where(subordinated, 0.0, interest_paid)
                cash = cash - interest_paid
                due_now[j] = due_now[j] - interest_paid
                interest[j, :, t] = interest_paid
        for j in range(k - 1):
            interest_paid = np.minimum(due_now[j], cash)
            cash = cash - interest_paid
            arrears[j] = due_now[j] - interest_paid
            principal_paid = np.minimum(balance[j], cash)
            cash = cash - principal_paid
            balance[j] = balance[j] - principal_paid
            interest[j, :, t] += interest_paid
            principal[j, :, t] = principal_paid
        if triggers is not None:
            repaid[:, t] = np.minimum(servicer_owed, cash)
            servicer_owed -= repaid[:, t]
            cash = cash - repaid[:, t]
            if (t + 1) % step == 0:
                i = (t + 1) // step - 1
                _test_date(triggers, hits, i, t, available=available, senior_due=senior_due)
                subordinated = hits["subordination"][:, i]
                deferring = hits["servicer_fee_deferral"][:, i]
                available, senior_due = np.zeros(runs), np.zeros(runs)
        principal_paid = np.minimum(balance[-1], cash)
        balance[-1] = balance[-1] - principal_paid
        principal[-1, :, t] = principal_paid
        interest[-1, :, t] = cash - principal_paid
    state = None
    if triggers is not None:
        state = _TriggerState(
            test_months=tests.astype(np.int64),
            hits=hits,
            servicer_deferred=deferred,
            servicer_repaid=repaid,
            servicer_owed=servicer_owed,
        )
    return _Allocation(
        fees=fees,
        fees_owed=owed,
        interest=interest,
        principal=principal,
        balance=balance,
        arrears=arrears,
        triggers=state,
    )


def _test_date(
    triggers: _TriggerInputs,
    hits: dict[str, npt.NDArray[np.bool_]],
    i: int,
    t: int,
    *,
    available: FloatArray,
    senior_due: FloatArray,
) -> None:
    """Run the tests of test date ``i`` (end of month index ``t``) into ``hits[...][:, i]``."""
    terms = triggers.terms
    ccr, pvr = triggers.collection_ratio[:, t], triggers.pv_ratio[:, t]
    for name, value, limit in (
        ("collection_ratio", ccr, terms.cumulative_collection_ratio),
        ("pv_ratio", pvr, terms.pv_profitability_ratio),
        ("servicer_fee_deferral", ccr, terms.servicer_fee_deferral_ratio),
    ):
        # NaN (no plan yet) compares False: no hit.
        hits[name][:, i] = (value < limit) if limit is not None else False
    if terms.senior_interest_cover is not None:
        cover = np.full(available.size, np.inf)
        np.divide(available, senior_due, out=cover, where=senior_due > 0)
        hits["senior_interest_cover"][:, i] = cover < terms.senior_interest_cover
    hits["subordination"][:, i] = (
        hits["collection_ratio"][:, i]
        | hits["pv_ratio"][:, i]
        | hits["senior_interest_cover"][:, i]
    )


def _per_run_metrics(
    amount: float, cash: FloatArray, principal: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Yield, WAL and MOIC of one class for each run (rows of ``cash`` and ``principal``)."""
    runs = cash.shape[0]
    irr, wal, multiple = np.empty(runs), np.empty(runs), np.empty(runs)
    received = np.any(cash > 0.0, axis=1)
    for i in range(runs):
        # A class that received nothing lost everything: an IRR of -100 %, the limit of the
        # IRR as its cash goes to 0 (annual_irr has no root to find and says NaN).
        irr[i] = annual_irr(amount, cash[i]) if received[i] else -1.0
        wal[i] = weighted_average_life(principal[i])
        multiple[i] = moic(amount, cash[i])
    return irr, wal, multiple


# --------------------------------------------------------------------------------------------
# The report `npl value --tranches` writes


def tranche_report(
    structure: TrancheStructure,
    valuation: Valuation,
    paths: MonteCarloResult | None,
    *,
    price: float,
    servicing_fee: float = 0.0,
) -> dict[str, Any]:
    """Run the waterfall on every scenario (and Monte Carlo path) of a valuation.

    Parameters
    ----------
    structure
        Senior fees and classes of notes.
    valuation
        The portfolio's valuation; its monthly net collections per scenario and weighted are
        the waterfall's input.
    paths
        Monte Carlo paths, if any: each path's net collections run through the waterfall too.
    price
        The price paid at month 0, which the classes add up to.
    servicing_fee
        The scenario file's servicing fee (share of gross collections): the servicer's fee a
        trigger may defer. Used only with a servicer fee deferral.

    Returns
    -------
    dict
        JSON-ready: ``price``, ``price_pct_gbv``, the senior fees, ``classes`` (sizes),
        ``scenarios`` (one entry per scenario and ``weighted``, with each class's totals,
        loss, yield, WAL and MOIC) and, with paths, ``simulation`` (per class mean and
        percentiles of yield and loss over the paths).

    Notes
    -----
    ``weighted`` runs the waterfall on the weighted (expected) net collections, as the
    valuation's ``weighted`` row prices them: it is the outcome of the expected flows, not the
    expected outcome of the classes, which the Monte Carlo summary gives.

    With triggers, the business plan is the weighted net collections (what the deal is
    underwritten on, :func:`~npl_engine.valuation.business_plan`), discounted at the
    valuation's target IRR for the PV ratio; each scenario and path is tested against it.
    ``scenarios`` entries then carry ``trigger_first_hit_month`` and ``simulation`` a
    ``triggers`` summary (probability each trigger is hit, and when).
    """
    labels = [s.name for s in valuation.scenarios] + ["weighted"]
    h = valuation.horizon_months
    frame = valuation.cash_flows
    # The frame holds one block of months 1..H per scenario, in order, then the weighted block.
    expected = pl.DataFrame(
        {"scenario": np.repeat(labels, h), "month": np.tile(np.arange(1, h + 1), len(labels))}
    )
    if not frame.select("scenario", "month").equals(expected, null_equal=False):
        msg = "the valuation's cash flows are not one block of months 1..H per scenario"
        raise ValueError(msg)
    net = frame["net"].to_numpy().astype(np.float64).reshape(len(labels), h)
    gross = frame["gross"].to_numpy().astype(np.float64).reshape(len(labels), h)
    plan = {"plan": net[-1], "plan_discount_rate": valuation.target_irr}
    scenarios = waterfall(
        net, structure, gbv=valuation.gbv, price=price, servicer_fees=servicing_fee * gross, **plan
    ).to_dict(labels=labels)
    weights = [s.weight for s in valuation.scenarios] + [1.0]
    out: dict[str, Any] = {
        key: scenarios[key]
        for key in ("price", "price_pct_gbv", "senior_fees_share", "senior_fees_fixed_per_year")
    }
    out["classes"] = scenarios["classes"]
    out["scenarios"] = [
        {"name": run.pop("label"), "weight": weight} | run
        for run, weight in zip(scenarios["runs"], weights, strict=True)
    ]
    if "triggers" in scenarios:
        out["triggers"] = {k: v for k, v in scenarios["triggers"].items() if k != "summary"}
    if paths is not None:
        defers = structure.triggers is not None and structure.triggers.defers_servicer_fee
        fees = servicing_fee * paths.gross if defers and paths.gross is not None else None
        simulated = waterfall(
            paths.net, structure, gbv=valuation.gbv, price=price, servicer_fees=fees, **plan
        ).to_dict()
        out["simulation"] = {
            "n_paths": simulated["n_runs"],
            "fees_mean": simulated["fees_mean"],
            "fees_unpaid_mean": simulated["fees_unpaid_mean"],
            "summary": simulated["summary"],
        }
        if "triggers" in simulated:
            out["simulation"]["triggers"] = simulated["triggers"]["summary"]
    return out
