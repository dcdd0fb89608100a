"""Simulated books and tapes: the truth matches realisations; the data keeps the contract."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npl_engine.data.simulator import (
    SIMULATED_ACTIONS,
    WORKOUT_MONTHS,
    Simulation,
    SimulationSettings,
    simulate,
    simulate_chunks,
    true_outcomes,
)
from npl_engine.errors import SettingsError


@pytest.fixture(scope="module")
def book() -> Simulation:
    """A 40,000-loan book with the default world."""
    return simulate(SimulationSettings(n_loans=40_000, seed=11))


def _z(observed: float, expected: float, se: float) -> float:
    return abs(observed - expected) / se


def test_realised_recovery_rate_matches_mean_true_probability(book: Simulation) -> None:
    """Over 40,000 loans the realised recovery share is within 4 standard errors of mean p."""
    p = book.truth["p_recover"].to_numpy()
    realised = book.truth["realised_recovered"].to_numpy()
    se = math.sqrt((p * (1 - p)).sum()) / p.size
    assert _z(realised.mean(), p.mean(), se) < 4


@pytest.mark.parametrize("action", SIMULATED_ACTIONS)
def test_truth_under_each_action_matches_loans_given_that_action(
    book: Simulation, action: str
) -> None:
    """Loans drawn with an action realise that action's recovery probability and collections."""
    group = book.truth.filter(pl.col("treatment") == action)
    p = group[f"p_recover_{action}"].to_numpy()
    recovered = group["realised_recovered"].to_numpy()
    assert _z(recovered.mean(), p.mean(), math.sqrt((p * (1 - p)).sum()) / p.size) < 4
    expected = group[f"expected_collections_{action}"].to_numpy() / group["exposure"].to_numpy()
    realised = group["realised_collections_60m"].to_numpy() / group["exposure"].to_numpy()
    se = (realised - expected).std() / math.sqrt(p.size)
    assert _z(realised.mean(), expected.mean(), se) < 4


def test_business_as_usual_truth_mixes_actions_by_propensity(book: Simulation) -> None:
    """p_recover and expected collections mix the per-action truth by propensity."""
    t = book.truth
    mix_p = sum(t[f"p_bau_{a}"] * t[f"p_recover_{a}"] for a in SIMULATED_ACTIONS)
    mix_c = sum(t[f"p_bau_{a}"] * t[f"expected_collections_{a}"] for a in SIMULATED_ACTIONS)
    np.testing.assert_allclose(t["p_recover"].to_numpy(), mix_p.to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(t["expected_collections"].to_numpy(), mix_c.to_numpy(), rtol=1e-9)
    weights = sum(t[f"p_bau_{a}"] for a in SIMULATED_ACTIONS).to_numpy()
    np.testing.assert_allclose(weights, 1.0, rtol=1e-12)


def test_payments_table_adds_up_to_the_realised_collections(book: Simulation) -> None:
    """Payments of a loan fully observed by as_of sum to its realised 60-month cash."""
    assert book.payments is not None
    as_of = book.settings.as_of_date
    observed = book.loans.filter(
        pl.col("cutoff_date").dt.offset_by(f"{WORKOUT_MONTHS + 1}mo") <= as_of
    ).select("loan_id")
    paid = book.payments.group_by("loan_id").agg(pl.col("amount").sum())
    both = (
        observed.join(book.truth.select("loan_id", "realised_collections_60m"), on="loan_id")
        .join(paid, on="loan_id", how="left")
        .with_columns(pl.col("amount").fill_null(0.0))
    )
    assert both.height > 10_000
    gap = (both["amount"] - both["realised_collections_60m"]).abs()
    assert gap.max() < 1.0, "per-loan rounding to cents only"


def test_expected_curve_matches_realised_monthly_collections(book: Simulation) -> None:
    """Cumulative cash by months 6, 12, 24, 36 and 60 matches the truth curve within 4 SE."""
    assert book.payments is not None
    as_of = book.settings.as_of_date
    observed = book.loans.filter(
        pl.col("cutoff_date").dt.offset_by(f"{WORKOUT_MONTHS + 1}mo") <= as_of
    ).select("loan_id", "cutoff_date")
    months_after = book.payments.join(observed, on="loan_id").with_columns(
        month=(pl.col("payment_date").dt.year() - pl.col("cutoff_date").dt.year()) * 12
        + pl.col("payment_date").dt.month()
        - pl.col("cutoff_date").dt.month()
    )
    for horizon in (6, 12, 24, 36, 60):
        realised = (
            observed.join(
                months_after.filter(pl.col("month") <= horizon)
                .group_by("loan_id")
                .agg(pl.col("amount").sum()),
                on="loan_id",
                how="left",
            )
            .fill_null(0.0)
            .sort("loan_id")["amount"]
            .to_numpy()
        )
        expected = (
            book.curves.filter(pl.col("month") <= horizon)
            .group_by("loan_id")
            .agg(pl.col("expected_collections").sum())
            .join(observed, on="loan_id")
            .sort("loan_id")["expected_collections"]
            .to_numpy()
        )
        se = (realised - expected).std() / math.sqrt(realised.size)
        assert _z(realised.mean(), expected.mean(), se) < 4, horizon


def test_collections_never_exceed_exposure(book: Simulation) -> None:
    """No loan is expected or realised to pay more than it owes at cut-off."""
    t = book.truth
    assert (t["expected_collections"] <= t["exposure"] * (1 + 1e-12)).all()
    assert (t["realised_collections_60m"] <= t["exposure"] + 0.01).all()


def test_recovery_levels_are_plausible(book: Simulation) -> None:
    """Recovery rates sit in the 30-50 % band, secured above unsecured, most cash by year 3."""
    t = book.truth.join(book.loans.select("loan_id", "collateral_type"), on="loan_id")
    rate = t["expected_collections"].sum() / t["exposure"].sum()
    assert 0.30 <= rate <= 0.50
    secured = t.filter(pl.col("collateral_type") != "none")
    unsecured = t.filter(pl.col("collateral_type") == "none")
    r_sec = secured["expected_collections"].sum() / secured["exposure"].sum()
    r_uns = unsecured["expected_collections"].sum() / unsecured["exposure"].sum()
    assert r_sec > r_uns + 0.1
    curve = book.curves.group_by("month").agg(pl.col("expected_collections").sum()).sort("month")
    by_36 = curve.filter(pl.col("month") <= 36)["expected_collections"].sum()
    assert by_36 / curve["expected_collections"].sum() > 0.75


def test_naive_comparison_of_legal_action_is_confounded(book: Simulation) -> None:
    """Lawyers go to big secured loans: the naive legal-vs-none gap overstates the effect."""
    t = book.truth.with_columns(rr=pl.col("realised_collections_60m") / pl.col("exposure"))
    naive = (
        t.filter(pl.col("treatment") == "legal_action")["rr"].mean()
        - t.filter(pl.col("treatment") == "none")["rr"].mean()
    )
    true_ate = (
        (t["expected_collections_legal_action"] - t["expected_collections_none"]) / t["exposure"]
    ).mean()
    assert naive - true_ate > 0.05  # type: ignore[operator]


def test_gender_has_no_effect_unless_planted() -> None:
    """With group_effect 0 the truth is identical for both genders; a planted effect shows up."""
    fair = simulate(SimulationSettings(n_loans=4_000, seed=3))
    planted = simulate(SimulationSettings(n_loans=4_000, seed=3, group_effect=-1.0))
    female = fair.loans["gender"] == "female"
    # Same world, same draws of everything but the outcome model: only women's truth changes.
    same = fair.truth.filter(~female)["p_recover"] == planted.truth.filter(~female)["p_recover"]
    assert same.all()
    assert (
        planted.truth.filter(female)["p_recover"].mean()  # type: ignore[operator]
        < fair.truth.filter(female)["p_recover"].mean() - 0.02
    )


def test_true_outcomes_respond_to_a_collateral_fall(book: Simulation) -> None:
    """A 20 % collateral fall lowers expected sale proceeds and never raises collections."""
    loans = book.loans.head(5_000)
    latent = book.truth.head(5_000)
    base, _ = true_outcomes(loans, latent)
    shocked, _ = true_outcomes(loans, latent, collateral_value_change=-0.2)
    assert (shocked["expected_collections"] <= base["expected_collections"] + 1e-9).all()
    assert shocked["expected_collateral"].sum() < 0.9 * base["expected_collateral"].sum()
    np.testing.assert_allclose(
        base["expected_collections"].to_numpy(),
        book.truth.head(5_000)["expected_collections"].to_numpy(),
        rtol=1e-12,
    )


def test_tape_has_one_cutoff_and_no_future_tables() -> None:
    """A tape holds loans only, all at one cut-off; its realised future is in the truth."""
    tape = simulate(SimulationSettings(n_loans=2_000, seed=5, kind="tape"))
    assert tape.actions is None
    assert tape.payments is None
    assert tape.loans["cutoff_date"].n_unique() == 1
    assert tape.truth["realised_collections_60m"].sum() > 0


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), kind=st.sampled_from(["book", "tape"])
)
def test_same_seed_gives_same_data(seed: int, n: int, kind: str) -> None:
    """Two runs with one seed give identical tables; every loan stays within what it owes."""
    s = SimulationSettings(n_loans=n, seed=seed, kind=kind)  # type: ignore[arg-type]
    a, b = simulate(s), simulate(s)
    for name in ("loans", "actions", "payments", "truth", "curves"):
        fa, fb = getattr(a, name), getattr(b, name)
        assert (fa is None and fb is None) or fa.equals(fb), name
    assert (a.truth["realised_collections_60m"] <= a.truth["exposure"] + 0.01).all()
    owed_plus_collateral = (
        a.loans["outstanding_principal"]
        + a.loans["accrued_interest"]
        + (a.loans["collateral_value"])
    )
    assert (a.truth["expected_collections"] <= owed_plus_collateral).all()


def test_realised_months_of_a_tape_leave_loans_and_truth_unchanged() -> None:
    """--realised-months adds the tape's own future: same loans and truth, payments that add up.

    Over 24 realised months each loan's payments add up to the truth's realised collections
    within the recovery horizon (24 months), to the cent rounding of each payment; the data
    ends on the last day of the 24th month, which is the dataset's as_of_date.
    """
    plain = simulate(SimulationSettings(n_loans=2_000, seed=5, kind="tape"))
    later = simulate(SimulationSettings(n_loans=2_000, seed=5, kind="tape", realised_months=24))
    assert later.loans.equals(plain.loans)
    assert later.truth.equals(plain.truth)
    assert plain.payments is None
    assert later.payments is not None
    assert later.actions is not None
    assert later.settings.observed_until == date(2028, 9, 30)
    assert later.dataset().as_of_date == date(2028, 9, 30)
    assert later.payments["payment_date"].max() <= date(2028, 9, 30)  # type: ignore[operator]
    assert later.payments["payment_date"].min() > date(2026, 9, 30)  # type: ignore[operator]
    paid = later.payments.group_by("loan_id").agg(pl.col("amount").sum(), pl.len())
    both = later.truth.join(paid, on="loan_id", how="left").fill_null(0)
    gap = (both["amount"] - both["realised_collections_recovery_horizon"]).abs()
    assert (gap <= 0.006 * both["len"] + 0.006).all()


def test_realised_months_are_for_tapes_only() -> None:
    """A book has its own history: asking for realised months of one is refused."""
    with pytest.raises(SettingsError, match="tapes only"):
        SimulationSettings(kind="book", realised_months=12)


def test_first_chunk_is_the_dataset_of_one_chunk() -> None:
    """A 250-loan book drawn 100 at a time starts with the 100-loan book of the same seed."""
    whole = simulate(SimulationSettings(n_loans=250, seed=3, chunk_loans=100))
    small = simulate(SimulationSettings(n_loans=100, seed=3))
    assert whole.loans.head(100).equals(small.loans)
    assert whole.truth.head(100).equals(small.truth)
    assert whole.curves.head(100 * WORKOUT_MONTHS).equals(small.curves)
    for name in ("actions", "payments"):
        first, alone = getattr(whole, name), getattr(small, name)
        of_small = pl.col("loan_id").is_in(small.loans["loan_id"].to_list())
        assert first.filter(of_small).equals(alone), name


def test_chunks_have_unique_ids_their_own_draws_and_their_own_truth() -> None:
    """Chunks number loans on, draw new loans, and each carries the truth of its own loans."""
    s = SimulationSettings(n_loans=250, seed=3, kind="tape", chunk_loans=100, realised_months=6)
    chunks = list(simulate_chunks(s))
    assert [c.loans.height for c in chunks] == [100, 100, 50]
    whole = simulate(s)
    ids = whole.loans["loan_id"]
    assert ids.n_unique() == 250
    assert ids.to_list() == [f"T{i:08d}" for i in range(1, 251)]
    assert whole.truth["loan_id"].equals(ids)
    assert whole.curves["loan_id"].unique(maintain_order=True).equals(ids)
    assert whole.payments is not None
    assert set(whole.payments["loan_id"]) <= set(ids)
    assert ids.is_sorted()
    capacity = [c.truth["capacity"].head(50).to_numpy() for c in chunks]
    assert not np.allclose(capacity[0], capacity[1])
    assert not np.allclose(capacity[1], capacity[2])
    for c in chunks:
        assert c.settings == s
        assert c.truth["loan_id"].equals(c.loans["loan_id"])


def test_chunk_size_must_be_positive() -> None:
    """A chunk of no loans is refused with a message naming the setting."""
    with pytest.raises(SettingsError, match="chunk_loans must be at least 1, got 0"):
        SimulationSettings(chunk_loans=0)
