"""Simulate a book or a tape, with the ground truth the engine's estimates are checked against."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.contract import ACTIONS, PAYMENTS, SEGMENTS
from npl_engine.data.dataset import Dataset
from npl_engine.data.simulator._process import (
    ACTION_COST_FIXED,
    REGIMES,
    SIMULATED_ACTIONS,
    WORKOUT_MONTHS,
    Draws,
    LoanState,
    ProcessSettings,
    WorkoutParams,
    action_cost,
    add_expected_monthly,
    bau_propensities,
    draw,
    realised_cumulative,
    recovery_probability,
    sale_amount,
    settlement_discount_offer,
    trickle_end,
    trickle_monthly,
    workout_params,
)
from npl_engine.data.simulator._world import SEGMENT_MIX, draw_world
from npl_engine.errors import SettingsError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Version of the simulated world; bump when a change alters what a seed produces.
SIMULATOR_VERSION = "1"


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    """What to simulate.

    Parameters
    ----------
    n_loans
        Number of loans.
    seed
        Seed of every random draw: the same settings give the same bytes.
    kind
        ``book`` (loans, actions, payments; cut-offs spread over ``book_cutoff_first`` ..
        ``book_cutoff_last``, history up to ``as_of_date``) or ``tape`` (loans only, one
        cut-off ``tape_cutoff_date``; its realised future goes to the truth only).
    missing_rate
        Share of values missing (at random) in each optional behavioural column.
    group_effect
        Shift of the payer log-odds for female borrowers. 0 (the default) is a world where
        gender has no effect; non-zero plants one, to test fairness monitoring.
    regional_court_delays
        Whether a region's courts add months before a collateral sale (the default). False
        gives a world where no group of borrowers differs in truth, to test fairness
        monitoring.
    recovery_horizon_months, recovery_threshold
        The recovery definition the truth's ``p_recover`` uses (contract defaults 24, 0.5).
    later_actions_per_loan
        Mean number of late actions (after day 120) that have no effect on collections.
    realised_months
        Tape only: also write the actions and payments of the tape's loans over this many
        months after the cut-off (the tape observed later, a book whose ``as_of_date`` is the
        last day of the N-th month), so that a business plan made on the tape can be
        backtested. 0 (the default) writes loans only. The loans and the truth do not depend
        on it: the payments are those of the realised outcomes the truth already records.
    segment_mix
        Share of each segment (normalised; segments left out get no loans), e.g.
        ``{"consumer_unsecured": 1.0}`` for a single-segment book or the three unsecured
        segments for an unsecured book. ``None`` (the default): the mixed book of
        ``docs/simulator.md``.
    borrower_payment_months
        Borrower payments (trickle, instalments, settlement lumps) stop after this many months
        from cut-off, as when payment plans have a fixed term; collateral sales still run to
        month 60. 0 means borrowers never pay. Default 60: no cap.
    collateral_sales
        False: no collateral is ever sold (the loans still carry their collateral); secured
        non-payers only trickle.
    guarantor_share
        Share of loans whose settlement lump is paid by a guarantor (payments with source
        ``guarantor``). 0 (the default): no guarantors.
    exposure_tail_index
        Pareto index of a heavy tail of exposures: each original principal is multiplied by a
        Pareto factor with this index, scaled to a median of 1 (1.5 puts about 1 loan in 1,000
        above 60 times its segment's typical size). ``None`` (the default): log-normal sizes.
    action_rate
        Multiplies the odds of every collection action against none under business as usual
        (0.2: a quiet servicer; 5: almost every loan gets an action). Every action keeps at
        least 2 % (overlap).
    action_effect_scale
        Scales every action's effect on the workout (log-odds shifts, hazard multipliers, the
        legal-lag cut); 0 is a world where actions change nothing but the settlement lump.
    chunk_loans
        Loans drawn at a time. A dataset of more loans is drawn in consecutive chunks of this
        many (the last one shorter), each from its own random streams derived from ``seed``,
        so that memory stays bounded (about 4 GiB per million loans, mostly the truth's
        monthly curves) and :func:`simulate_chunks` can write a large tape as it goes. The
        first chunk draws what a dataset of ``chunk_loans`` loans with the same seed draws,
        so a dataset of at most ``chunk_loans`` loans is unchanged by chunking; a larger one
        differs from what one piece would have drawn, by design (same distribution, other
        draws). Default 1,000,000.
    """

    n_loans: int = 10_000
    seed: int = 0
    kind: Literal["book", "tape"] = "book"
    book_cutoff_first: date = date(2016, 1, 31)
    book_cutoff_last: date = date(2022, 12, 31)
    as_of_date: date = date(2025, 12, 31)
    tape_cutoff_date: date = date(2026, 9, 30)
    missing_rate: float = 0.05
    group_effect: float = 0.0
    regional_court_delays: bool = True
    recovery_horizon_months: int = 24
    recovery_threshold: float = 0.5
    later_actions_per_loan: float = 1.0
    realised_months: int = 0
    segment_mix: Mapping[str, float] | None = None
    borrower_payment_months: int = WORKOUT_MONTHS
    collateral_sales: bool = True
    guarantor_share: float = 0.0
    exposure_tail_index: float | None = None
    action_rate: float = 1.0
    action_effect_scale: float = 1.0
    chunk_loans: int = 1_000_000

    def __post_init__(self) -> None:
        problems = self._problems()
        if problems:
            msg = "simulation settings: " + "; ".join(problems)
            raise SettingsError(msg)

    def _problems(self) -> list[str]:  # noqa: PLR0912 - one check per setting
        out: list[str] = []
        if self.n_loans < 1:
            out.append(f"n_loans must be at least 1, got {self.n_loans}")
        if self.chunk_loans < 1:
            out.append(f"chunk_loans must be at least 1, got {self.chunk_loans}")
        if self.kind not in ("book", "tape"):
            out.append(f"kind must be 'book' or 'tape', got {self.kind!r}")
        if not 0.0 <= self.missing_rate < 1.0:
            out.append(f"missing_rate must be in [0, 1), got {self.missing_rate}")
        if self.kind == "book" and self.book_cutoff_first > self.book_cutoff_last:
            out.append("book_cutoff_first must not be after book_cutoff_last")
        if self.kind == "book" and self.book_cutoff_last > self.as_of_date:
            out.append("book_cutoff_last must not be after as_of_date")
        if self.segment_mix is not None:
            unknown = sorted(set(self.segment_mix) - set(SEGMENTS))
            if unknown:
                out.append(f"segment_mix names unknown segments {unknown}; known: {SEGMENTS}")
            weights = list(self.segment_mix.values())
            if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
                out.append("segment_mix weights must be finite, non-negative and not all zero")
        if not 0 <= self.borrower_payment_months <= WORKOUT_MONTHS:
            out.append(
                f"borrower_payment_months must be in [0, {WORKOUT_MONTHS}], "
                f"got {self.borrower_payment_months}"
            )
        if not 0.0 <= self.guarantor_share <= 1.0:
            out.append(f"guarantor_share must be in [0, 1], got {self.guarantor_share}")
        if self.exposure_tail_index is not None and not self.exposure_tail_index >= 1.0:
            out.append(f"exposure_tail_index must be at least 1, got {self.exposure_tail_index}")
        if not (math.isfinite(self.action_rate) and self.action_rate > 0):
            out.append(f"action_rate must be positive, got {self.action_rate}")
        if not (math.isfinite(self.action_effect_scale) and self.action_effect_scale >= 0):
            out.append(f"action_effect_scale must be non-negative, got {self.action_effect_scale}")
        if self.realised_months < 0 or (self.realised_months and self.kind != "tape"):
            out.append(
                "realised_months must be >= 0 and is for tapes only (a book has its history), "
                f"got {self.realised_months} for a {self.kind}"
            )
        return out

    @property
    def observed_until(self) -> date | None:
        """The simulated dataset's ``as_of_date``: a book's, a tape's with realised months.

        For a tape with ``realised_months = N``: the last day of the N-th calendar month after
        the cut-off's month. ``None`` for a tape of loans only.
        """
        if self.kind == "book":
            return self.as_of_date
        if not self.realised_months:
            return None
        month = np.datetime64(self.tape_cutoff_date, "M") + self.realised_months + 1
        last_day: date = (month.astype("datetime64[D]") - np.timedelta64(1, "D")).item()
        return last_day

    def process(self) -> ProcessSettings:
        """The workout rules these settings give (what the truth is computed under)."""
        return ProcessSettings(
            group_effect=self.group_effect,
            borrower_payment_months=self.borrower_payment_months,
            collateral_sales=self.collateral_sales,
            action_rate=self.action_rate,
            action_effect_scale=self.action_effect_scale,
        )


@dataclass(frozen=True, slots=True)
class Simulation:
    """A simulated dataset and its ground truth.

    Parameters
    ----------
    loans, actions, payments
        The dataset in contract form (``actions`` and ``payments`` are ``None`` for a tape).
    truth
        One row per loan: latent traits, business-as-usual action probabilities and the
        drawn action, exact expectations under business as usual and under each simulated
        action, and the realised outcome (see ``docs/simulator.md``).
    curves
        Long form, one row per loan and month 1..60: exact expected borrower, collateral-sale
        and total collections under business as usual.
    settings
        What was simulated.
    """

    loans: pl.DataFrame
    actions: pl.DataFrame | None
    payments: pl.DataFrame | None
    truth: pl.DataFrame
    curves: pl.DataFrame
    settings: SimulationSettings = field(repr=False)

    def dataset(self) -> Dataset:
        """The simulated tables as the engine takes them (the truth left out).

        Returns
        -------
        Dataset
            Lazy ``loans``, ``actions`` and ``payments``; a book's ``as_of_date`` is the
            simulated one, a tape has none.

        Examples
        --------
        >>> sim = simulate(SimulationSettings(n_loans=200, seed=1))
        >>> book = sim.dataset()
        >>> book.as_of_date == sim.settings.as_of_date, book.loans.collect().height
        (True, 200)
        """
        return Dataset(
            self.loans.lazy(),
            self.actions.lazy() if self.actions is not None else None,
            self.payments.lazy() if self.payments is not None else None,
            as_of_date=self.settings.observed_until,
        )


def true_outcomes(
    loans: pl.DataFrame,
    latent: pl.DataFrame,
    *,
    collateral_value_change: float = 0.0,
    settings: SimulationSettings | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Exact expected outcomes of simulated loans, per action and under business as usual.

    Parameters
    ----------
    loans
        Contract ``loans`` rows of simulated loans.
    latent
        The simulator's latent columns (``loan_id``, ``capacity``, ``willingness``,
        ``true_monthly_income``), e.g. the ``truth`` table of a :class:`Simulation`.
    collateral_value_change
        Relative shock to every collateral value (-0.2 = 20 % fall), as in a scenario.
    settings
        The settings the loans were simulated with (``Simulation.settings``): the world's
        rules (group effect, court delays, payment months, collateral sales, actions) and the
        recovery definition for ``p_recover``. Default: the default world.

    Returns
    -------
    per_loan, curves
        ``per_loan``: ``loan_id``, ``exposure``, ``p_bau_<action>``, ``p_recover``,
        ``expected_collections``, ``expected_borrower``, ``expected_collateral`` (60 months,
        undiscounted, business as usual) and per action ``p_recover_<action>``,
        ``expected_collections_<action>``, ``cost_<action>``. ``curves``: ``loan_id``,
        ``month``, ``expected_borrower``, ``expected_collateral``, ``expected_collections``.

    Notes
    -----
    Business as usual mixes the actions with their propensities: an expectation under
    business as usual is the propensity-weighted sum of the expectations under each action.
    """
    s = settings or SimulationSettings()
    state = LoanState.from_frames(loans, latent.select(
        "loan_id", "capacity", "willingness", "true_monthly_income"))  # fmt: skip
    if not s.regional_court_delays:
        state = replace(state, court_delay=np.zeros_like(state.court_delay))
    return _true_outcomes(
        loans["loan_id"],
        state,
        collateral_value_change=collateral_value_change,
        process=s.process(),
        recovery_horizon_months=s.recovery_horizon_months,
        recovery_threshold=s.recovery_threshold,
    )


def _true_outcomes(
    loan_id: pl.Series,
    state: LoanState,
    *,
    collateral_value_change: float,
    process: ProcessSettings,
    recovery_horizon_months: int,
    recovery_threshold: float,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    propensity = bau_propensities(state, action_rate=process.action_rate)
    n = state.exposure.size
    bau_borrower = np.zeros((n, WORKOUT_MONTHS))
    bau_collateral = np.zeros((n, WORKOUT_MONTHS))
    p_bau = np.zeros(n)
    columns: dict[str, FloatArray] = {}
    for a, action in enumerate(SIMULATED_ACTIONS):
        params = workout_params(
            state,
            action,
            collateral_value_change=collateral_value_change,
            process=process,
        )
        w = propensity[:, a]
        borrower, collateral = add_expected_monthly(params, w, bau_borrower, bau_collateral)
        p = recovery_probability(
            params, horizon_months=recovery_horizon_months, threshold=recovery_threshold
        )
        p_bau += w * p
        columns[f"p_bau_{action}"] = w
        columns[f"p_recover_{action}"] = p
        columns[f"expected_collections_{action}"] = borrower + collateral
        columns[f"cost_{action}"] = action_cost(action, state.exposure)
    total_borrower = bau_borrower.sum(axis=1)
    total_collateral = bau_collateral.sum(axis=1)
    per_loan = pl.DataFrame(
        {
            "loan_id": loan_id,
            "exposure": state.exposure,
            "p_recover": p_bau,
            "expected_collections": total_borrower + total_collateral,
            "expected_borrower": total_borrower,
            "expected_collateral": total_collateral,
            **columns,
        }
    )
    # Long form via explode: repeating string ids in NumPy costs seconds on a million loans.
    curves = (
        pl.DataFrame(
            {
                "loan_id": loan_id,
                "expected_borrower": pl.Series(bau_borrower).cast(pl.List(pl.Float64)),
                "expected_collateral": pl.Series(bau_collateral).cast(pl.List(pl.Float64)),
            }
        )
        .with_columns(month=pl.int_ranges(1, WORKOUT_MONTHS + 1, dtype=pl.Int16))
        .explode("month", "expected_borrower", "expected_collateral")
        .select(
            "loan_id",
            "month",
            "expected_borrower",
            "expected_collateral",
            expected_collections=pl.col("expected_borrower") + pl.col("expected_collateral"),
        )
    )
    return per_loan, curves


def _payment_rows(
    params: WorkoutParams, draws: Draws, rows: IntArray, guaranteed: BoolArray
) -> tuple[IntArray, IntArray, FloatArray, IntArray]:
    """Payments of one action group: (loan row, month, amount, source code).

    Source codes: 0 borrower, 1 collateral sale, 2 guarantor (the lump of a guaranteed loan).
    """
    last = min(WORKOUT_MONTHS, params.borrower_months)
    t = np.arange(1, WORKOUT_MONTHS + 1)[None, :]
    end = trickle_end(draws)[:, None]
    trickle = trickle_monthly(params)
    li, mi = np.nonzero((t <= end) & (trickle > 0))
    parts = [(li, mi + 1, trickle[li, mi], np.zeros(li.size, np.int64))]

    start = draws.plan_start[:, None]
    plan = (
        (draws.regime[:, None] == 0)
        & (t >= start)
        & (t < start + draws.instalments_paid[:, None])
        & (t <= last)
    )
    li, mi = np.nonzero(plan)
    parts.append((li, mi + 1, params.instalment[li], np.zeros(li.size, np.int64)))

    li = np.nonzero((draws.regime == 1) & (draws.settle_month <= last))[0]
    lump = params.settle_share[li] * params.exposure[li]
    parts.append((li, draws.settle_month[li], lump, np.where(guaranteed[li], 2, 0)))

    proceeds = sale_amount(params, draws, np.cumsum(np.pad(trickle, ((0, 0), (1, 0))), axis=1))
    li = np.nonzero((draws.regime == 2) & (draws.sale_month <= WORKOUT_MONTHS) & (proceeds > 0))[0]
    parts.append((li, draws.sale_month[li], proceeds[li], np.ones(li.size, np.int64)))

    loan = np.concatenate([rows[p[0]] for p in parts])
    month = np.concatenate([p[1] for p in parts]).astype(np.int64)
    amount = np.concatenate([p[2] for p in parts])
    source = np.concatenate([p[3] for p in parts])
    return loan, month, amount, source


def simulate(settings: SimulationSettings) -> Simulation:
    """Simulate a dataset and its ground truth.

    Parameters
    ----------
    settings
        What to simulate.

    Returns
    -------
    Simulation
        Data in contract form plus the truth: the chunks of :func:`simulate_chunks` put
        together (one chunk unless ``settings.n_loans > settings.chunk_loans``).

    Examples
    --------
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> sim = simulate(SimulationSettings(n_loans=200, seed=1))
    >>> sim.loans.height, sim.truth["p_recover"].is_between(0, 1).all()
    (200, True)
    """
    chunks = list(simulate_chunks(settings))
    if len(chunks) == 1:
        return chunks[0]

    def stack(name: str) -> pl.DataFrame | None:
        frames = [frame for c in chunks if (frame := getattr(c, name)) is not None]
        return pl.concat(frames) if frames else None

    return Simulation(
        loans=pl.concat([c.loans for c in chunks]),
        actions=stack("actions"),
        payments=stack("payments"),
        truth=pl.concat([c.truth for c in chunks]),
        curves=pl.concat([c.curves for c in chunks]),
        settings=settings,
    )


def simulate_chunks(settings: SimulationSettings) -> Iterator[Simulation]:
    """Simulate a dataset chunk by chunk: ``settings.chunk_loans`` loans at a time.

    Parameters
    ----------
    settings
        What to simulate.

    Yields
    ------
    Simulation
        Consecutive chunks (loans ``T00000001`` onwards for a tape, ``L...`` for a book), each
        with its own tables and truth and the whole dataset's ``settings``. Put together they
        are :func:`simulate`'s result; :func:`write_simulation` writes them as they come, so
        only one chunk is in memory at a time.

    Notes
    -----
    Chunk 0 draws from ``SeedSequence(seed)``'s children 0 to 4, as a dataset of one chunk
    always has; chunk k >= 1 draws from the children of ``SeedSequence(seed)``'s child 4 + k,
    streams no other chunk uses. Loans are numbered on across chunks, so ids stay unique; a
    borrower holding two loans may hold the last loan of one chunk and the first of the next.

    Examples
    --------
    >>> settings = SimulationSettings(n_loans=250, seed=1, kind="tape", chunk_loans=100)
    >>> [chunk.loans.height for chunk in simulate_chunks(settings)]
    [100, 100, 50]
    """
    for k, first in enumerate(range(0, settings.n_loans, settings.chunk_loans)):
        root = (
            np.random.SeedSequence(settings.seed)
            if k == 0
            else np.random.SeedSequence(settings.seed, spawn_key=(4 + k,))
        )
        n = min(settings.chunk_loans, settings.n_loans - first)
        yield _simulate_chunk(settings, root, n_loans=n, first_number=first + 1)


def _simulate_chunk(
    settings: SimulationSettings,
    root: np.random.SeedSequence,
    *,
    n_loans: int,
    first_number: int,
) -> Simulation:
    """Simulate ``n_loans`` loans numbered from ``first_number``, drawing from ``root``."""
    s = settings
    # A fifth stream serves the knobs only, so the default world draws what it always drew.
    world_rng, action_rng, outcome_rng, date_rng, knob_rng = (
        np.random.default_rng(c) for c in root.spawn(5)
    )
    is_book = s.kind == "book"
    n = n_loans
    principal_factor = None
    if s.exposure_tail_index is not None:
        alpha = s.exposure_tail_index
        principal_factor = (1.0 - knob_rng.random(n)) ** (-1.0 / alpha) / 2.0 ** (1.0 / alpha)
    guaranteed = knob_rng.random(n) < s.guarantor_share
    world = draw_world(
        world_rng,
        n,
        cutoff_first=s.book_cutoff_first if is_book else s.tape_cutoff_date,
        cutoff_last=s.book_cutoff_last if is_book else s.tape_cutoff_date,
        missing_rate=s.missing_rate,
        id_prefix="L" if is_book else "T",
        segment_mix=SEGMENT_MIX if s.segment_mix is None else s.segment_mix,
        principal_factor=principal_factor,
        first_number=first_number,
    )
    loans = world.loans
    state = LoanState.from_frames(loans, world.latent)
    if not s.regional_court_delays:
        state = replace(state, court_delay=np.zeros_like(state.court_delay))
    per_loan, curves = _true_outcomes(
        loans["loan_id"],
        state,
        collateral_value_change=0.0,
        process=s.process(),
        recovery_horizon_months=s.recovery_horizon_months,
        recovery_threshold=s.recovery_threshold,
    )

    # Business as usual picks one action per loan; its outcome is drawn under that action.
    propensity = np.stack([per_loan[f"p_bau_{a}"].to_numpy() for a in SIMULATED_ACTIONS], 1)
    cum = propensity.cumsum(axis=1)
    treatment = (action_rng.random(n)[:, None] > cum[:, :-1]).sum(axis=1)
    regime = np.zeros(n, np.int64)
    realised_h = np.zeros(n)
    realised_60 = np.zeros(n)
    pay_parts: list[tuple[IntArray, IntArray, FloatArray, IntArray]] = []
    for a, action in enumerate(SIMULATED_ACTIONS):
        rows = np.nonzero(treatment == a)[0]
        if rows.size == 0:
            continue
        params = workout_params(state.take(rows), action, process=s.process())
        draws = draw(params, outcome_rng)
        regime[rows] = draws.regime
        realised_h[rows], realised_60[rows] = realised_cumulative(
            params, draws, (s.recovery_horizon_months, WORKOUT_MONTHS)
        )
        if is_book or s.realised_months:
            pay_parts.append(_payment_rows(params, draws, rows, guaranteed[rows]))

    actions_name = np.array(SIMULATED_ACTIONS, dtype=object)
    truth = world.latent.with_columns(
        regime=pl.Series(np.array(REGIMES, dtype=object)[regime], dtype=pl.String),
        treatment=pl.Series(actions_name[treatment], dtype=pl.String),
        settlement_discount_offer=settlement_discount_offer(state.capacity),
        realised_collections_recovery_horizon=np.round(realised_h, 2),
        realised_collections_60m=np.round(realised_60, 2),
        realised_recovered=realised_h >= s.recovery_threshold * state.exposure - 1e-6,
    ).join(per_loan, on="loan_id", how="left", maintain_order="left")
    actions = payments = None
    observed_until = s.observed_until
    if observed_until is not None:
        cutoff = loans["cutoff_date"].to_numpy().astype("datetime64[D]")
        payments = _payments_frame(loans, cutoff, pay_parts, date_rng, observed_until)
        actions = _actions_frame(
            loans=loans,
            cutoff=cutoff,
            exposure=state.exposure,
            capacity=state.capacity,
            treatment=treatment,
            rng=date_rng,
            s=s,
            as_of=observed_until,
        )
    return Simulation(
        loans=loans, actions=actions, payments=payments, truth=truth, curves=curves, settings=s
    )


def _payments_frame(
    loans: pl.DataFrame,
    cutoff: npt.NDArray[np.datetime64],
    parts: list[tuple[IntArray, IntArray, FloatArray, IntArray]],
    rng: np.random.Generator,
    as_of: date,
) -> pl.DataFrame:
    loan = np.concatenate([p[0] for p in parts])
    month = np.concatenate([p[1] for p in parts])
    amount = np.round(np.concatenate([p[2] for p in parts]), 2)
    source = np.concatenate([p[3] for p in parts])
    # Month t after a month-end cut-off is the calendar month cut-off + t; pay on days 1..28.
    first_day = (cutoff[loan].astype("datetime64[M]") + month).astype("datetime64[D]")
    paid_on = first_day + rng.integers(0, 28, size=loan.size).astype("timedelta64[D]")
    keep = (amount > 0) & (paid_on <= np.datetime64(as_of))
    order = np.lexsort((paid_on[keep], loan[keep]))
    return pl.DataFrame(
        {
            "loan_id": loans["loan_id"].to_numpy()[loan[keep]][order],
            "payment_date": paid_on[keep][order],
            "amount": amount[keep][order],
            "source": np.array(["borrower", "collateral_sale", "guarantor"], dtype=object)[
                source[keep]
            ][order],
        }
    ).cast(PAYMENTS.schema)  # type: ignore[arg-type]


def _actions_frame(
    *,
    loans: pl.DataFrame,
    cutoff: npt.NDArray[np.datetime64],
    exposure: FloatArray,
    capacity: FloatArray,
    treatment: IntArray,
    rng: np.random.Generator,
    s: SimulationSettings,
    as_of: date,
) -> pl.DataFrame:
    """The treatment action (days 5-85), a reminder letter before some, and late no-effect ones."""
    n = treatment.size
    ids = loans["loan_id"].to_numpy()
    names = np.array(SIMULATED_ACTIONS, dtype=object)
    treated = np.nonzero(treatment > 0)[0]
    day = rng.integers(5, 86, size=treated.size)
    kinds = names[treatment[treated]]
    cost = np.zeros(treated.size)
    for action in SIMULATED_ACTIONS[1:]:
        sel = kinds == action
        cost[sel] = action_cost(action, exposure[treated[sel]])
    discount = np.where(kinds == "settlement_offer", settlement_discount_offer(capacity[treated]),
                        np.nan)  # fmt: skip

    strong = treatment[treated] >= SIMULATED_ACTIONS.index("call")
    pre = treated[strong & (rng.random(treated.size) < 0.3)]

    n_late = rng.poisson(s.later_actions_per_loan, size=n)
    late = np.repeat(np.arange(n), n_late)
    late_kind = rng.choice(np.array(["letter", "sms", "call", "field_visit"], dtype=object),
                           size=late.size, p=[0.4, 0.3, 0.25, 0.05])  # fmt: skip
    late_cost = (
        pl.Series(late_kind, dtype=pl.String)
        .replace_strict(ACTION_COST_FIXED, return_dtype=pl.Float64)
        .to_numpy()
    )
    frame = pl.DataFrame(
        {
            "loan_id": np.concatenate([ids[treated], ids[pre], ids[late]]),
            "action_date": np.concatenate(
                [
                    cutoff[treated] + day.astype("timedelta64[D]"),
                    cutoff[pre] + np.timedelta64(3, "D"),
                    cutoff[late] + rng.integers(120, 1500, size=late.size).astype("timedelta64[D]"),
                ]
            ),
            "action_type": np.concatenate(
                [kinds, np.full(pre.size, "letter", dtype=object), late_kind]
            ),
            "cost": np.concatenate(
                [cost, np.full(pre.size, ACTION_COST_FIXED["letter"]), late_cost]
            ),
            "settlement_discount": np.concatenate(
                [discount, np.full(pre.size + late.size, np.nan)]
            ),
        },
        schema_overrides={"settlement_discount": pl.Float64},
    ).with_columns(pl.col("settlement_discount").fill_nan(None))
    frame = frame.filter(pl.col("action_date") <= as_of)
    return frame.sort("loan_id", "action_date").cast(ACTIONS.schema)  # type: ignore[arg-type]
