"""Simulator world knobs: each changes data and truth alike; the defaults change nothing."""

from __future__ import annotations

import hashlib
import math
from datetime import date
from typing import Any

import numpy as np
import polars as pl
import pytest

from npl_engine.data.simulator import (
    SIMULATED_ACTIONS,
    SIMULATOR_VERSION,
    WORKOUT_MONTHS,
    Simulation,
    SimulationSettings,
    simulate,
    true_outcomes,
)
from npl_engine.errors import SettingsError

#: sha256 of the CSV of every table (loans, actions, payments, truth, curves) of the default
#: 300-loan book with seed 0, at SIMULATOR_VERSION "1".
DEFAULT_WORLD_DIGEST = "98e880e0e2a41dd48a9c39df88f208c1e136bc3f50615585bce2af3f2c8ddd0e"

UNSECURED = {"sme_unsecured": 0.12, "consumer_unsecured": 0.25, "credit_card": 0.15}

#: Worlds whose realisations are checked against their truth (6,000 loans each).
WORLDS: dict[str, dict[str, Any]] = {
    "plans_end_at_18": {"borrower_payment_months": 18},
    "no_collateral_sales": {"collateral_sales": False},
    "one_segment": {"segment_mix": {"sme_secured": 1.0}},
    "unsecured_only": {"segment_mix": UNSECURED, "guarantor_share": 0.5},
    "heavy_tail": {"exposure_tail_index": 1.3},
    "quiet_servicer_weak_actions": {"action_rate": 0.2, "action_effect_scale": 0.3},
    "busy_servicer_strong_actions": {"action_rate": 5.0, "action_effect_scale": 2.0},
}


def _z(observed: float, expected: float, se: float) -> float:
    return abs(observed - expected) / se


def _month_after_cutoff(payments: pl.DataFrame, loans: pl.DataFrame) -> pl.DataFrame:
    return payments.join(loans.select("loan_id", "cutoff_date"), on="loan_id").with_columns(
        month=(pl.col("payment_date").dt.year() - pl.col("cutoff_date").dt.year()) * 12
        + pl.col("payment_date").dt.month()
        - pl.col("cutoff_date").dt.month()
    )


@pytest.fixture(scope="module", params=list(WORLDS))
def world(request: pytest.FixtureRequest) -> Simulation:
    """A 6,000-loan book of one world of the family."""
    return simulate(SimulationSettings(n_loans=6_000, seed=31, **WORLDS[request.param]))


def test_default_world_draws_what_it_always_drew() -> None:
    """The default settings give the same bytes as before the knobs existed.

    If this fails, the default world changed: bump SIMULATOR_VERSION and the digest together.
    """
    sim = simulate(SimulationSettings(n_loans=300, seed=0))
    digest = hashlib.sha256()
    for frame in (sim.loans, sim.actions, sim.payments, sim.truth, sim.curves):
        assert frame is not None
        digest.update(frame.write_csv().encode())
    assert (SIMULATOR_VERSION, digest.hexdigest()) == ("1", DEFAULT_WORLD_DIGEST)


def test_realised_outcomes_match_the_truth_in_every_world(world: Simulation) -> None:
    """Realised recovery and 60-month collections are within 4 SE of the world's own truth."""
    t = world.truth
    p = t["p_recover"].to_numpy()
    recovered = t["realised_recovered"].to_numpy()
    assert _z(recovered.mean(), p.mean(), math.sqrt((p * (1 - p)).sum()) / p.size) < 4
    expected = (t["expected_collections"] / t["exposure"]).to_numpy()
    realised = (t["realised_collections_60m"] / t["exposure"]).to_numpy()
    se = (realised - expected).std() / math.sqrt(p.size)
    assert _z(realised.mean(), expected.mean(), se) < 4


def test_payments_add_up_to_the_realised_collections_in_every_world(world: Simulation) -> None:
    """Payments of each fully observed loan sum to its realised 60-month collections."""
    assert world.payments is not None
    observed = world.loans.filter(
        pl.col("cutoff_date").dt.offset_by(f"{WORKOUT_MONTHS + 1}mo") <= world.settings.as_of_date
    ).select("loan_id")
    paid = world.payments.group_by("loan_id").agg(pl.col("amount").sum())
    both = (
        observed.join(world.truth.select("loan_id", "realised_collections_60m"), on="loan_id")
        .join(paid, on="loan_id", how="left")
        .with_columns(pl.col("amount").fill_null(0.0))
    )
    assert both.height > 2_000
    assert (both["amount"] - both["realised_collections_60m"]).abs().max() < 1.0


def test_true_outcomes_recomputed_with_the_settings_give_the_same_truth(
    world: Simulation,
) -> None:
    """true_outcomes(loans, truth, settings=sim.settings) reproduces the simulation's truth."""
    again, curves = true_outcomes(world.loans, world.truth, settings=world.settings)
    for column in ("p_recover", "expected_borrower", "expected_collateral"):
        np.testing.assert_allclose(again[column].to_numpy(), world.truth[column].to_numpy())
    assert curves.height == world.curves.height


def test_borrower_payments_stop_at_the_plan_end() -> None:
    """With plans ending at month 36, no borrower cash after 36 is paid or expected."""
    sim = simulate(SimulationSettings(n_loans=4_000, seed=32, borrower_payment_months=36))
    assert sim.payments is not None
    months = _month_after_cutoff(sim.payments, sim.loans)
    borrower = months.filter(pl.col("source") == "borrower")
    assert borrower["month"].max() == 36
    assert months.filter(pl.col("source") == "collateral_sale")["month"].max() > 36
    late = sim.curves.filter(pl.col("month") > 36)
    assert (late["expected_borrower"] == 0).all()
    assert (late["expected_collateral"] > 0).any()
    assert sim.curves.filter(pl.col("month") == 36)["expected_borrower"].sum() > 0
    default = simulate(SimulationSettings(n_loans=4_000, seed=32)).truth
    # The 24-month recovery probability ends before the plans do: it is unchanged.
    np.testing.assert_allclose(sim.truth["p_recover"], default["p_recover"], rtol=1e-12)
    assert sim.truth["expected_borrower"].sum() < 0.95 * default["expected_borrower"].sum()


def test_no_collateral_sales_means_no_sale_cash_paid_or_expected() -> None:
    """Without sales the payments hold borrower cash only and the truth no collateral part."""
    sim = simulate(SimulationSettings(n_loans=3_000, seed=33, collateral_sales=False))
    assert sim.payments is not None
    assert set(sim.payments["source"].unique()) == {"borrower"}
    assert (sim.truth["expected_collateral"] == 0).all()
    assert (sim.loans["collateral_value"] > 0).sum() > 1_000  # the loans keep their collateral


def test_segment_mix_picks_the_segments() -> None:
    """A single-segment mix gives one segment; an unsecured mix has no collateral at all."""
    one = simulate(SimulationSettings(n_loans=500, seed=34, segment_mix={"credit_card": 1.0}))
    assert one.loans["segment"].cast(pl.String).unique().to_list() == ["credit_card"]
    unsecured = simulate(SimulationSettings(n_loans=2_000, seed=34, segment_mix=UNSECURED))
    assert set(unsecured.loans["segment"].cast(pl.String).unique()) == set(UNSECURED)
    assert (unsecured.loans["collateral_type"].cast(pl.String) == "none").all()
    assert (unsecured.truth["expected_collateral"] == 0).all()


def test_guarantors_pay_the_settlements_of_guaranteed_loans() -> None:
    """Guarantor payments appear only for settlers, one lump per loan, and only when asked."""
    sim = simulate(SimulationSettings(n_loans=4_000, seed=35, guarantor_share=0.5))
    assert sim.payments is not None
    guarantor = sim.payments.filter(pl.col("source") == "guarantor")
    assert guarantor.height > 50
    assert guarantor["loan_id"].n_unique() == guarantor.height
    regimes = sim.truth.filter(pl.col("loan_id").is_in(guarantor["loan_id"].implode()))["regime"]
    assert set(regimes.unique()) == {"settler"}
    default = simulate(SimulationSettings(n_loans=4_000, seed=35))
    assert default.payments is not None
    assert "guarantor" not in set(default.payments["source"].unique())


def test_heavy_tail_makes_a_few_loans_huge() -> None:
    """With a Pareto tail of index 1.2 the largest exposure dwarfs the default world's."""

    def spread(sim: Simulation) -> float:
        exposure = sim.truth["exposure"]
        return float(exposure.quantile(0.999) / exposure.median())  # type: ignore[operator]

    settings = SimulationSettings(n_loans=10_000, seed=36)
    tail = SimulationSettings(n_loans=10_000, seed=36, exposure_tail_index=1.2)
    assert spread(simulate(tail)) > 5 * spread(simulate(settings))


def test_action_rate_changes_how_often_actions_are_taken() -> None:
    """A rate of 0.2 leaves most loans without action; 5 leaves almost none without."""
    shares = {}
    for rate in (0.2, 1.0, 5.0):
        sim = simulate(SimulationSettings(n_loans=3_000, seed=37, action_rate=rate))
        shares[rate] = (sim.truth["treatment"] == "none").mean()
        assert abs(shares[rate] - sim.truth["p_bau_none"].mean()) < 0.05  # type: ignore[operator]
    assert shares[0.2] > 0.4 > shares[1.0] > 0.1 > shares[5.0]


def test_action_effect_scale_zero_makes_actions_change_nothing() -> None:
    """With effects scaled to 0, letters, calls and lawyers have exactly the truth of none."""
    sim = simulate(SimulationSettings(n_loans=1_000, seed=38, action_effect_scale=0.0))
    t = sim.truth
    for action in ("letter", "call", "legal_action"):
        for what in ("p_recover", "expected_collections"):
            np.testing.assert_allclose(t[f"{what}_{action}"], t[f"{what}_none"], rtol=1e-12)
    assert set(SIMULATED_ACTIONS) == {"none", "letter", "call", "settlement_offer", "legal_action"}
    stronger = simulate(SimulationSettings(n_loans=1_000, seed=38, action_effect_scale=2.0)).truth
    default = simulate(SimulationSettings(n_loans=1_000, seed=38)).truth
    gain = {
        name: (f["p_recover_call"] - f["p_recover_none"]).mean()
        for name, f in (("default", default), ("stronger", stronger))
    }
    assert gain["stronger"] > gain["default"] > 0  # type: ignore[operator]


def test_short_history_with_cutoffs_in_one_month() -> None:
    """Cut-offs in one month, history of 9 months: nothing is paid after as_of."""
    sim = simulate(
        SimulationSettings(
            n_loans=1_000,
            seed=39,
            book_cutoff_first=date(2025, 3, 31),
            book_cutoff_last=date(2025, 3, 31),
            as_of_date=date(2025, 12, 31),
        )
    )
    assert sim.payments is not None
    assert sim.loans["cutoff_date"].unique().to_list() == [date(2025, 3, 31)]
    assert sim.payments["payment_date"].max() <= date(2025, 12, 31)  # type: ignore[operator]
    assert sim.payments.height > 0


@pytest.mark.parametrize(
    ("settings", "names"),
    [
        ({"segment_mix": {"gold_bars": 1.0}}, "segment_mix names unknown segments"),
        ({"segment_mix": {"auto": 0.0}}, "segment_mix weights"),
        ({"borrower_payment_months": 61}, "borrower_payment_months"),
        ({"guarantor_share": 1.5}, "guarantor_share"),
        ({"exposure_tail_index": 0.5}, "exposure_tail_index"),
        ({"action_rate": 0.0}, "action_rate"),
        ({"action_effect_scale": -1.0}, "action_effect_scale"),
        ({"book_cutoff_first": date(2023, 1, 31)}, "book_cutoff_first"),
    ],
)
def test_bad_settings_are_refused_by_name(settings: dict[str, Any], names: str) -> None:
    """A setting out of range raises a SettingsError naming it."""
    with pytest.raises(SettingsError, match=names):
        SimulationSettings(**settings)
