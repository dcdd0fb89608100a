"""The workout process: how a defaulted loan pays, given its state and a collection action.

Each loan follows one of three resolution paths ("regimes"), drawn once after the action:

- ``payer``: the borrower starts an instalment plan after a geometric wait; the plan covers
  85 % of the exposure over ``D`` months and may break after any instalment.
- ``settler``: the borrower pays one lump (a share ``s`` of the exposure) after a geometric
  wait; a settlement offer sets ``s`` to one minus the offered discount.
- ``non_payer``: no agreement. Secured loans end in a collateral sale after a legal lag plus a
  geometric wait; the proceeds are the shocked, haircut collateral value less senior liens,
  capped at what is still owed. Unsecured loans only trickle.

Before a path resolves, willing borrowers make small, decaying "trickle" payments on a fixed
schedule. The workout ends at month :data:`WORKOUT_MONTHS`. All random quantities are
geometric or discrete, so expectations and recovery probabilities are computed exactly (sums of
finitely many terms), and realisations are drawn from the very same parameters.

:class:`ProcessSettings` changes the rules for a world of the family (payment plans that end,
no collateral sales, quieter or stronger actions); the truth follows the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.contract import SEGMENTS
from npl_engine.data.simulator._kernels import (
    TRICKLE_DECAY,
    expected_monthly_kernel,
    recovery_kernel,
)
from npl_engine.data.simulator._world import REGION_COURT_DELAY_MONTHS, REGIONS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: The workout ends (written off or sold on) after this many months.
WORKOUT_MONTHS = 60
#: Collection actions whose effect the simulator defines; "none" is the control.
SIMULATED_ACTIONS: tuple[str, ...] = ("none", "letter", "call", "settlement_offer", "legal_action")
REGIMES: tuple[str, ...] = ("payer", "settler", "non_payer")

#: Share of the exposure an instalment plan covers.
PLAN_COVER = 0.7
#: Collateral sale price multipliers (market luck) and their probabilities.
SALE_LUCK = np.array([0.8, 1.0, 1.2])
SALE_LUCK_P = np.array([0.25, 0.5, 0.25])

_SEG_PAYER = np.array([0.3, -0.3, 0.0, -0.2, 0.0, -0.2, 0.1])
_SEG_SETTLER = np.array([-0.3, 0.2, 0.1, 0.2, 0.1, 0.2, -0.2])
_HAIRCUT = {"none": 1.0, "residential": 0.35, "commercial": 0.45, "land": 0.55,
            "vehicle": 0.5, "other": 0.55}  # fmt: skip
#: Months from cut-off before a collateral sale can happen, by legal stage.
_STAGE_LAG = {"none": 20, "pre_legal": 17, "proceedings": 12, "judgment": 8, "auction": 3,
              "insolvency": 18}  # fmt: skip
_STAGE_PAYER = {"insolvency": -1.0}
_STAGE_SETTLER = {"insolvency": -0.5, "auction": 0.3}

#: Cost of one action to the servicer: fixed part and share of exposure (legal action), capped.
ACTION_COST_FIXED = {
    "letter": 4.0,
    "sms": 0.5,
    "call": 18.0,
    "field_visit": 120.0,
    "settlement_offer": 90.0,
    "restructuring": 250.0,
    "legal_action": 1200.0,
}
LEGAL_COST_SHARE = 0.01
LEGAL_COST_CAP = 15_000.0


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True, slots=True)
class LoanState:
    """What the process needs to know of each loan at cut-off (arrays of one length)."""

    exposure: FloatArray
    capacity: FloatArray
    willingness: FloatArray
    income: FloatArray
    segment: IntArray
    collateral_value: FloatArray
    senior_liens: FloatArray
    haircut: FloatArray
    secured: BoolArray
    vehicle: BoolArray
    stage_lag: IntArray
    stage_payer: FloatArray
    stage_settler: FloatArray
    court_delay: IntArray
    female: BoolArray

    @classmethod
    def from_frames(cls, loans: pl.DataFrame, latent: pl.DataFrame) -> LoanState:
        """Build the state from a contract ``loans`` frame and the simulator's latent frame."""
        df = loans.select(
            "loan_id",
            "outstanding_principal",
            "accrued_interest",
            "segment",
            "collateral_type",
            "collateral_value",
            "senior_liens",
            "legal_stage",
            "region",
            "gender",
        ).join(latent, on="loan_id", how="left", maintain_order="left")
        ctype = df["collateral_type"].cast(pl.String)
        stage = df["legal_stage"].cast(pl.String)
        value = df["collateral_value"].fill_null(0.0).to_numpy()
        return cls(
            exposure=(df["outstanding_principal"] + df["accrued_interest"].fill_null(0.0))
            .to_numpy()
            .astype(float),
            capacity=df["capacity"].to_numpy(),
            willingness=df["willingness"].to_numpy(),
            income=df["true_monthly_income"].to_numpy(),
            segment=df["segment"]
            .cast(pl.String)
            .replace_strict(list(SEGMENTS), list(range(len(SEGMENTS))), return_dtype=pl.Int64)
            .to_numpy(),
            collateral_value=value,
            senior_liens=df["senior_liens"].fill_null(0.0).to_numpy(),
            haircut=ctype.replace_strict(_HAIRCUT, return_dtype=pl.Float64).to_numpy(),
            secured=(ctype != "none").to_numpy() & (value > 0),
            vehicle=(ctype == "vehicle").to_numpy(),
            stage_lag=stage.replace_strict(_STAGE_LAG, return_dtype=pl.Int64).to_numpy(),
            stage_payer=stage.replace_strict(
                _STAGE_PAYER, default=0.0, return_dtype=pl.Float64
            ).to_numpy(),
            stage_settler=stage.replace_strict(
                _STAGE_SETTLER, default=0.0, return_dtype=pl.Float64
            ).to_numpy(),
            court_delay=df["region"]
            .replace_strict(
                list(REGIONS), REGION_COURT_DELAY_MONTHS.tolist(), default=3, return_dtype=pl.Int64
            )
            .to_numpy(),
            female=(df["gender"].cast(pl.String) == "female").fill_null(False).to_numpy(),
        )

    def take(self, rows: IntArray) -> LoanState:
        """The state of the loans at positions ``rows``."""
        return LoanState(**{f: getattr(self, f)[rows] for f in self.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class WorkoutParams:
    """Per-loan parameters of the process under one action (see the module docstring)."""

    exposure: FloatArray
    p_regime: FloatArray  # (n, 3): payer, settler, non_payer
    plan_start_hazard: FloatArray
    plan_months: IntArray
    instalment: FloatArray
    plan_break: FloatArray
    settle_hazard: FloatArray
    settle_share: FloatArray
    trickle_base: FloatArray  # trickle per month before decay; paid every `trickle_period`
    trickle_period: IntArray
    secured: BoolArray
    sale_lag: IntArray
    sale_hazard: FloatArray
    sale_price: FloatArray  # (n, 3): proceeds before the cap, per market-luck outcome
    borrower_months: int = WORKOUT_MONTHS  # the borrower pays nothing after this month


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    """How the workout behaves in a simulated world (see ``SimulationSettings``).

    The defaults are the default world; each knob changes the truth and the realisations alike.
    """

    group_effect: float = 0.0
    borrower_payment_months: int = WORKOUT_MONTHS
    collateral_sales: bool = True
    action_rate: float = 1.0
    action_effect_scale: float = 1.0


def _scaled(multiplier: float, scale: float) -> float:
    """A hazard multiplier with its effect scaled: ``1 + (multiplier - 1) × scale``.

    Exact at ``scale`` 1 (``multiplier - 1`` is exact for multipliers in [0.5, 2]), so the
    default world's parameters are bit for bit what they were before the knob existed.
    """
    return 1.0 + (multiplier - 1.0) * scale


def settlement_discount_offer(capacity: FloatArray) -> FloatArray:
    """Discount a settlement offer makes: larger for borrowers with less capacity."""
    return np.clip(np.round((0.3 - 0.08 * capacity) * 20) / 20, 0.1, 0.5)


def action_cost(action: str, exposure: FloatArray) -> FloatArray:
    """What one action costs the servicer for each loan."""
    if action == "none":
        return np.zeros_like(exposure)
    cost = np.full_like(exposure, ACTION_COST_FIXED[action])
    if action == "legal_action":
        cost = cost + np.minimum(LEGAL_COST_SHARE * exposure, LEGAL_COST_CAP)
    return np.round(cost, 2)


def bau_propensities(state: LoanState, *, action_rate: float = 1.0) -> FloatArray:
    """Business-as-usual probabilities of each simulated action, shape (n, 5).

    Confounded on purpose: lawyers go to big secured loans of unwilling payers, settlement
    offers to borrowers with little capacity, letters to small balances. A floor of 2 % per
    action keeps every action possible for every loan (overlap). ``action_rate`` multiplies
    the odds of every action against none (below 1: a quieter servicer).
    """
    size = np.log(state.exposure / 20_000.0)
    w, c = state.willingness, state.capacity
    u = np.stack(
        [
            np.zeros_like(size),
            0.6 - 0.35 * size,
            0.2 + 0.4 * w + 0.1 * size,
            -0.6 - 0.8 * c,
            -1.6 + 1.4 * state.secured + 0.5 * size - 0.3 * w,
        ],
        axis=1,
    )
    u[:, 1:] += np.log(action_rate)
    e = np.exp(u - u.max(axis=1, keepdims=True))
    propensity: FloatArray = 0.9 * e / e.sum(axis=1, keepdims=True) + 0.02
    return propensity


def workout_params(
    state: LoanState,
    action: str,
    *,
    collateral_value_change: float = 0.0,
    process: ProcessSettings = ProcessSettings(),
) -> WorkoutParams:
    """Parameters of every loan's workout if ``action`` is taken in the first 90 days.

    Parameters
    ----------
    state
        Loans at cut-off.
    action
        One of :data:`SIMULATED_ACTIONS`.
    collateral_value_change
        Relative change applied to every collateral value (-0.2 = 20 % fall).
    process
        The world's rules: ``group_effect`` shifts the payer log-odds of female borrowers (0 in
        a fair world; planted to test fairness monitoring), ``action_effect_scale`` scales
        every action's effect (a settlement offer's lump stays ``1 - discount``),
        ``borrower_payment_months`` ends borrower payments, ``collateral_sales`` False sells
        no collateral.
    """
    if action not in SIMULATED_ACTIONS:
        msg = f"unknown simulated action {action!r}; expected one of {SIMULATED_ACTIONS}"
        raise ValueError(msg)
    w, c, e = state.willingness, state.capacity, state.exposure
    z_payer = (
        -1.3
        + 0.8 * w
        + 0.6 * c
        + _SEG_PAYER[state.segment]
        + state.stage_payer
        + process.group_effect * state.female
    )
    z_settler = -1.5 + 0.3 * w - 0.4 * c + _SEG_SETTLER[state.segment] + state.stage_settler
    plan_start_hazard = np.full_like(e, 0.06)
    settle_hazard = np.full_like(e, 0.04)
    settle_share = 0.35 + 0.15 * _sigmoid(c)
    sale_lag = np.where(state.vehicle, 2, state.stage_lag + state.court_delay)
    sale_hazard = np.where(state.vehicle, 0.3, 0.07)

    # Each effect term is scaled on its own so that scale 1 repeats the default arithmetic.
    k = process.action_effect_scale
    if action == "letter":
        z_payer = z_payer + 0.35 * k
    elif action == "call":  # a call helps those willing to pay
        z_payer = z_payer + k * (1.2 * _sigmoid(2.0 * w)) - 0.1 * k
        plan_start_hazard = plan_start_hazard * _scaled(1.25, k)
    elif action == "settlement_offer":  # an offer helps those who cannot pay in full
        z_settler = z_settler + k * (1.8 * _sigmoid(-1.5 * c))
        settle_hazard = settle_hazard * _scaled(1.6, k)
        settle_share = 1.0 - settlement_discount_offer(c)
    elif action == "legal_action":  # lawyers speed up the sale; a threat to those who can pay
        sale_lag = np.maximum(sale_lag - round(8 * k), 1)
        sale_hazard = sale_hazard * _scaled(1.4, k)
        z_payer = z_payer + k * (1.0 * _sigmoid(2.0 * c)) - 0.2 * k

    z = np.stack([z_payer, z_settler, np.zeros_like(e)], axis=1)
    p_regime = np.exp(z - z.max(axis=1, keepdims=True))
    p_regime /= p_regime.sum(axis=1, keepdims=True)

    plan_months = np.clip(np.round(PLAN_COVER * e / (0.3 * state.income)), 6, 120).astype(np.int64)
    instalment = PLAN_COVER * e / plan_months
    plan_break = _sigmoid(-3.4 - 0.8 * w - 0.3 * c)

    # Trickle: every k months (k = 1, 2, 3 from most to least willing), decaying.
    trickle_base = 0.003 * e * _sigmoid(1.5 * w - 0.5)
    trickle_period = np.where(w > 0.5, 1, np.where(w > -0.5, 2, 3)).astype(np.int64)
    return WorkoutParams(
        exposure=e,
        p_regime=p_regime,
        plan_start_hazard=plan_start_hazard,
        plan_months=plan_months,
        instalment=instalment,
        plan_break=plan_break,
        settle_hazard=settle_hazard,
        settle_share=settle_share,
        trickle_base=trickle_base,
        trickle_period=trickle_period,
        secured=state.secured & process.collateral_sales,
        sale_lag=sale_lag.astype(np.int64),
        sale_hazard=sale_hazard,
        sale_price=sale_prices(state, collateral_value_change),
        borrower_months=process.borrower_payment_months,
    )


def sale_prices(state: LoanState, collateral_value_change: float) -> FloatArray:
    """Sale proceeds before the owed cap, per market-luck outcome, shape (n, 3).

    The collateral value is shocked by ``1 + collateral_value_change``, scaled by market luck,
    cut by the forced-sale haircut of its type, and reduced by senior liens (floored at 0).
    """
    value = state.collateral_value * (1.0 + collateral_value_change)
    price = np.maximum(
        value[:, None] * SALE_LUCK[None, :] * (1.0 - state.haircut)[:, None]
        - state.senior_liens[:, None],
        0.0,
    )
    price[~state.secured] = 0.0
    out: FloatArray = price
    return out


def with_collateral_change(params: WorkoutParams, state: LoanState, change: float) -> WorkoutParams:
    """The same parameters with collateral values scaled by ``1 + change``."""
    return replace(params, sale_price=sale_prices(state, change))


def trickle_monthly(params: WorkoutParams) -> FloatArray:
    """Trickle paid in month t (column t - 1) while a loan's path is unresolved, shape (n, 60)."""
    t = np.arange(1, WORKOUT_MONTHS + 1)[None, :]
    period = params.trickle_period[:, None]
    amount = (period * params.trickle_base[:, None]) * TRICKLE_DECAY ** (t - 1)
    out: FloatArray = np.where((t % period == 0) & (t <= params.borrower_months), amount, 0.0)
    return out


def trickle_cumulative(params: WorkoutParams) -> FloatArray:
    """Trickle paid by the end of month t (column t, column 0 = 0), shape (n, 61)."""
    out = np.zeros((params.exposure.size, WORKOUT_MONTHS + 1))
    np.cumsum(trickle_monthly(params), axis=1, out=out[:, 1:])
    return out


def expected_monthly(params: WorkoutParams) -> tuple[FloatArray, FloatArray]:
    """Exact expected collections per loan and month, months 1..60.

    Returns
    -------
    borrower, collateral
        Arrays of shape (n, 60): expected borrower payments and collateral-sale proceeds in
        month t (column t - 1).

    Notes
    -----
    Within a month, trickle and instalments are paid before a sale; a sale ends the workout.
    The plan-activity probability follows the recursion
    ``A_t = (1 - b) A_{t-1} + g_t - g_{t-D} (1 - b)^D`` with ``g_j`` the probability the plan
    starts in month j. Compiled with numba: a per-loan recursion over months, which in NumPy
    needed a dozen (n,)-sized temporaries per month and was 10 times slower.
    """
    n = params.exposure.size
    borrower = np.zeros((n, WORKOUT_MONTHS))
    collateral = np.zeros((n, WORKOUT_MONTHS))
    add_expected_monthly(params, np.ones(n), borrower, collateral)
    return borrower, collateral


def add_expected_monthly(
    params: WorkoutParams, weight: FloatArray, borrower: FloatArray, collateral: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Add ``weight`` × the expected monthly collections into ``borrower`` and ``collateral``.

    Used to mix actions with their business-as-usual propensities without materialising a
    curve per action. Returns the unweighted 60-month totals (borrower, collateral) per loan.
    """
    total_borrower = np.zeros(params.exposure.size)
    total_collateral = np.zeros(params.exposure.size)
    expected_monthly_kernel(
        *_kernel_args(params), weight, borrower, collateral, total_borrower, total_collateral
    )
    return total_borrower, total_collateral


def recovery_probability(
    params: WorkoutParams, *, horizon_months: int, threshold: float
) -> FloatArray:
    """Exact probability that collections within ``horizon_months`` reach ``threshold`` × exposure.

    Notes
    -----
    Sums, over the month a path resolves, the probability of resolving then times the
    probability the cash by the horizon reaches the threshold: for a plan started in month j
    that needs k instalments, ``(1 - b)^(k - 1)`` if k fits before the horizon, else 0.
    """
    out = np.zeros(params.exposure.size)
    recovery_kernel(
        *_kernel_args(params), min(horizon_months, WORKOUT_MONTHS), float(threshold), out
    )
    return np.clip(out, 0.0, 1.0)


def _kernel_args(params: WorkoutParams) -> tuple[npt.NDArray[Any] | int, ...]:
    return (
        params.exposure,
        np.ascontiguousarray(params.p_regime),
        params.plan_start_hazard,
        params.plan_months,
        params.instalment,
        params.plan_break,
        params.settle_hazard,
        params.settle_share,
        params.trickle_base,
        params.trickle_period,
        params.secured,
        params.sale_lag,
        params.sale_hazard,
        np.ascontiguousarray(params.sale_price),
        SALE_LUCK_P,
        params.borrower_months,
    )


@dataclass(frozen=True, slots=True)
class Draws:
    """One realisation of every loan's workout."""

    regime: IntArray
    plan_start: IntArray
    instalments_paid: IntArray
    settle_month: IntArray
    sale_month: IntArray
    luck: IntArray


def draw(params: WorkoutParams, rng: np.random.Generator) -> Draws:
    """Draw one workout per loan from ``params``."""
    n = params.exposure.size
    cum = params.p_regime.cumsum(axis=1)
    regime = (rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1).astype(np.int64)
    plan_start = rng.geometric(params.plan_start_hazard)
    breaks_after = rng.geometric(params.plan_break)
    settle_month = rng.geometric(params.settle_hazard)
    sale_month = params.sale_lag + rng.geometric(params.sale_hazard)
    luck = rng.choice(SALE_LUCK.size, size=n, p=SALE_LUCK_P)
    return Draws(
        regime=regime,
        plan_start=plan_start.astype(np.int64),
        instalments_paid=np.minimum(params.plan_months, breaks_after).astype(np.int64),
        settle_month=settle_month.astype(np.int64),
        sale_month=np.where(params.secured, sale_month, np.iinfo(np.int32).max).astype(np.int64),
        luck=luck.astype(np.int64),
    )


def trickle_end(draws: Draws) -> IntArray:
    """Last month in which a loan can trickle (the month before its path resolves)."""
    resolve = np.select(
        [draws.regime == 0, draws.regime == 1], [draws.plan_start, draws.settle_month],
        draws.sale_month,
    )  # fmt: skip
    end: IntArray = np.minimum(resolve - 1, WORKOUT_MONTHS).astype(np.int64)
    return end


def sale_amount(params: WorkoutParams, draws: Draws, trickled: FloatArray) -> FloatArray:
    """Proceeds of each loan's collateral sale if it happens (capped at what is owed).

    ``trickled`` is :func:`trickle_cumulative` of ``params``.
    """
    idx = np.arange(params.exposure.size)
    before = trickled[idx, np.minimum(draws.sale_month - 1, WORKOUT_MONTHS)]
    price = params.sale_price[idx, draws.luck]
    amount: FloatArray = np.minimum(price, np.maximum(params.exposure - before, 0.0))
    return amount


def realised_cumulative(
    params: WorkoutParams, draws: Draws, months: tuple[int, ...]
) -> list[FloatArray]:
    """Collections each loan realises by the end of each month in ``months``."""
    idx = np.arange(params.exposure.size)
    trickled = trickle_cumulative(params)
    end = trickle_end(draws)
    sale = sale_amount(params, draws, trickled)
    out = []
    for month in months:
        t = min(month, WORKOUT_MONTHS)
        t_borrower = min(t, params.borrower_months)
        instalments = params.instalment * np.clip(
            np.minimum(draws.instalments_paid, t_borrower - draws.plan_start + 1), 0, None
        )
        lump = params.settle_share * params.exposure * (draws.settle_month <= t_borrower)
        by_regime = np.select(
            [draws.regime == 0, draws.regime == 1],
            [instalments, lump],
            sale * (draws.sale_month <= t),
        )
        out.append(trickled[idx, np.minimum(end, t)] + by_regime)
    return out
