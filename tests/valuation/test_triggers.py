"""Deal triggers in the waterfall: hand-worked three-month waterfalls, and no change without them.

Every hand-worked case uses the same notes: senior 100 at 1 % a month, mezzanine 50 at 2 % a
month, junior the rest of a price of 200 (so 50), no senior fees, triggers tested every month
(``period_months = 1``), whose outcome applies from the next month.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npl_engine.errors import SettingsError
from npl_engine.valuation import (
    Tranche,
    TrancheStructure,
    Triggers,
    load_tranches,
    parse_tranches,
    waterfall,
)
from npl_engine.valuation._waterfall import _allocate

FloatArray = npt.NDArray[np.float64]

SENIOR_COUPON = 1.01**12 - 1  # 1 % a month
MEZZ_COUPON = 1.02**12 - 1  # 2 % a month


def notes(triggers: Triggers | None) -> TrancheStructure:
    """Senior 100 (1 %/month), mezzanine 50 (2 %/month), junior residual; the given triggers."""
    return TrancheStructure(
        tranches=[
            Tranche(name="senior", order=1, amount=100.0, coupon=SENIOR_COUPON),
            Tranche(name="mezzanine", order=2, amount=50.0, coupon=MEZZ_COUPON),
            Tranche(name="junior", order=3, residual=True),
        ],
        triggers=triggers,
    )


def test_collection_ratio_trigger_subordinates_mezzanine_interest_hand_worked() -> None:
    """Net 40, 30, 30 against a plan of 40, 40, 30 with a 90 % cumulative collection ratio.

    Month 1 (no test yet, interest first): interest due senior 100 × 1 % = 1, mezzanine
    50 × 2 % = 1, both paid; senior principal 40 − 2 = 38 (balance 62).
    End of month 1: ratio 40 / 40 = 1, passes.
    Month 2: interest senior 62 × 1 % = 0.62, mezzanine 1; senior principal 30 − 1.62 = 28.38
    (balance 33.62). End of month 2: ratio 70 / 80 = 0.875 < 0.9: hit.
    Month 3 (subordinated): senior interest 33.62 × 1 % = 0.3362, then senior principal
    30 − 0.3362 = 29.6638 (balance 3.9562); nothing is left for the mezzanine's interest of
    1, which stays as arrears. End of month 3: ratio 100 / 110 = 0.909, passes (cured).
    Without the subordination, month 3 would pay the mezzanine's 1 before senior principal.
    """
    net, plan = np.array([40.0, 30.0, 30.0]), np.array([40.0, 40.0, 30.0])
    triggers = Triggers(period_months=1, cumulative_collection_ratio=0.9)
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan)
    senior, mezz, junior = r.tranches
    np.testing.assert_allclose(senior.interest, [1.0, 0.62, 0.3362], atol=1e-9)
    np.testing.assert_allclose(senior.principal, [38.0, 28.38, 29.6638], atol=1e-9)
    np.testing.assert_allclose(mezz.interest, [1.0, 1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mezz.principal, [0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mezz.interest_unpaid, 1.0, atol=1e-9)
    np.testing.assert_allclose(senior.principal_outstanding, 3.9562, atol=1e-9)
    np.testing.assert_allclose(junior.cash, [0.0, 0.0, 0.0], atol=1e-9)
    assert r.triggers is not None
    assert r.triggers.hits["collection_ratio"].tolist() == [False, True, False]
    assert r.triggers.hits["subordination"].tolist() == [False, True, False]
    assert r.triggers.first_hit_month("collection_ratio") == 2
    assert np.isnan(r.triggers.first_hit_month("pv_ratio"))
    unhit = waterfall(net, notes(Triggers(period_months=1)), gbv=1000.0, price=200.0, plan=plan)
    np.testing.assert_allclose(unhit.tranche("mezzanine").interest, [1.0, 1.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(unhit.tranche("senior").principal_outstanding, 4.9562, atol=1e-9)


def test_servicer_fee_deferral_hand_worked() -> None:
    """Net 40, 30, 30, plan 40, 40, 30, servicer fees 4, 3, 3; half deferred below 90 %.

    Months 1 and 2 as in the collection-ratio case (no deferral yet; the ratio fails at the end
    of month 2, 0.875). Month 3: half the servicer's fee, 1.5, stays in the waterfall: cash
    31.5; interest senior 0.3362 and mezzanine 1 (no subordination test is set); senior
    principal 31.5 − 1.3362 = 30.1638 (balance 3.4562); nothing is left to repay the
    servicer, who is owed 1.5 at the end. Each month fees + classes' cash + servicer repaid −
    deferred = net.
    """
    net, plan = np.array([40.0, 30.0, 30.0]), np.array([40.0, 40.0, 30.0])
    triggers = Triggers(
        period_months=1, servicer_fee_deferral_ratio=0.9, servicer_fee_deferred_share=0.5
    )
    fees = np.array([4.0, 3.0, 3.0])
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan, servicer_fees=fees)
    senior, mezz, _ = r.tranches
    assert r.triggers is not None
    np.testing.assert_allclose(r.triggers.servicer_deferred, [0.0, 0.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(r.triggers.servicer_unpaid, 1.5, atol=1e-12)
    np.testing.assert_allclose(senior.principal, [38.0, 28.38, 30.1638], atol=1e-9)
    np.testing.assert_allclose(mezz.interest, [1.0, 1.0, 1.0], atol=1e-9)
    classes = sum(t.cash for t in r.tranches)
    balance = r.fees + classes + r.triggers.servicer_repaid - r.triggers.servicer_deferred
    np.testing.assert_allclose(balance, net, atol=1e-9)
    assert r.triggers.hits["subordination"].tolist() == [False, False, False]


def test_servicer_is_repaid_after_the_rated_classes() -> None:
    """Net 40, 40, 200: the deferred fee of month 3 (2) is repaid in month 3 before the junior.

    Ratio at month 2: 80 / 120 < 0.9, so month 3 defers half of its fee of 4. Month 3's 202 of
    cash repay the senior's 100 − 38 − 38.62 = 23.38 (after its interest), the mezzanine's
    interest and 50, then the servicer's 2; the junior takes the rest.
    """
    net, plan = np.array([40.0, 40.0, 200.0]), np.array([40.0, 80.0, 80.0])
    triggers = Triggers(
        period_months=1, servicer_fee_deferral_ratio=0.9, servicer_fee_deferred_share=0.5
    )
    fees = np.array([4.0, 4.0, 4.0])
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan, servicer_fees=fees)
    assert r.triggers is not None
    np.testing.assert_allclose(r.triggers.servicer_repaid, [0.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(r.triggers.servicer_unpaid, 0.0, atol=1e-12)
    assert r.tranche("senior").loss == 0.0
    assert r.tranche("mezzanine").loss == 0.0
    junior_cash = 202.0 - 2.0 - r.tranche("senior").cash[2] - r.tranche("mezzanine").cash[2]
    np.testing.assert_allclose(r.tranche("junior").cash[2], junior_cash, atol=1e-9)


def test_senior_interest_cover_trigger_hand_worked() -> None:
    """Net 40, 30, 30 with a senior interest cover of 50 (no ratio test).

    Month 1: funds 40 over senior interest 1: cover 40 < 50, hit; both interests paid (1, 1),
    senior principal 38 (balance 62). Month 2 (subordinated): senior interest 0.62, senior
    principal 29.38 (balance 32.62); the mezzanine's 1 is unpaid (arrears 1). Cover
    30 / 0.62 = 48.4 < 50, hit. Month 3 (subordinated): senior interest 0.3262, principal
    29.6738 (balance 2.9462); the mezzanine is owed 1 × 1.02 + 1 = 2.02 and gets nothing.
    Cover 30 / 0.3262 = 92, passes.
    """
    net, plan = np.array([40.0, 30.0, 30.0]), np.array([40.0, 40.0, 30.0])
    triggers = Triggers(period_months=1, senior_interest_cover=50.0)
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan)
    senior, mezz, _ = r.tranches
    assert r.triggers is not None
    assert r.triggers.hits["senior_interest_cover"].tolist() == [True, True, False]
    np.testing.assert_allclose(senior.interest, [1.0, 0.62, 0.3262], atol=1e-9)
    np.testing.assert_allclose(senior.principal, [38.0, 29.38, 29.6738], atol=1e-9)
    np.testing.assert_allclose(mezz.interest, [1.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(mezz.interest_unpaid, 2.02, atol=1e-9)


def test_pv_ratio_trigger_catches_late_collections() -> None:
    """Net 0, 80, 40 against 40, 40, 40 at 12 %: cumulative ratio 1 at month 2, PV ratio not.

    PV ratio at month 2 = 80 d2 / (40 d1 + 40 d2) with d_t = 1.12 ** (-t / 12):
    2 × 0.981289 / (0.990600 + 0.981289) = 0.99528 < 0.999; at month 1 it is 0.
    At month 3: (80 d2 + 40 d3) / 40 (d1 + d2 + d3) = 0.99685 < 0.999.
    """
    net, plan = np.array([0.0, 80.0, 40.0]), np.array([40.0, 40.0, 40.0])
    triggers = Triggers(period_months=1, pv_profitability_ratio=0.999)
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan, plan_discount_rate=0.12)
    assert r.triggers is not None
    assert r.triggers.hits["pv_ratio"].tolist() == [True, True, True]
    d = 1.12 ** (-np.arange(1, 4) / 12)
    assert 2 * d[1] / (d[0] + d[1]) == pytest.approx(0.99528, abs=1e-5)
    loose = Triggers(period_months=1, pv_profitability_ratio=0.99)
    r = waterfall(net, notes(loose), gbv=1000.0, price=200.0, plan=plan, plan_discount_rate=0.12)
    assert r.triggers is not None
    assert r.triggers.hits["pv_ratio"].tolist() == [True, False, False]


def test_triggers_per_path_and_period() -> None:
    """4 paths, tests every 6 months: paths 20 % below plan are hit at month 6, others never."""
    plan = np.full(12, 10.0)
    net = np.stack([plan, 0.8 * plan, plan * 1.1, 0.8 * plan])
    triggers = Triggers(period_months=6, cumulative_collection_ratio=0.85)
    r = waterfall(net, notes(triggers), gbv=1000.0, price=200.0, plan=plan)
    assert r.triggers is not None
    assert r.triggers.test_months.tolist() == [6, 12]
    assert r.triggers.hits["collection_ratio"].tolist() == [
        [False, False], [True, True], [False, False], [True, True]
    ]  # fmt: skip
    first = r.triggers.first_hit_month("collection_ratio")
    assert np.isnan(first[0])
    assert first[1:].tolist()[::2] == [6, 6]
    row = r.triggers.summary().row(0, named=True)
    assert row["trigger"] == "collection_ratio"
    assert row["p_hit"] == 0.5
    assert row["first_month_p50"] == 6


def test_triggers_need_a_plan() -> None:
    """A structure with triggers and no plan is refused with a clear message."""
    with pytest.raises(ValueError, match="plan"):
        waterfall(np.ones(3), notes(Triggers()), gbv=1000.0, price=200.0)


def test_a_deferral_ratio_without_its_share_is_a_settings_error() -> None:
    """The file names the missing key of the deferral pair."""
    text = """
[triggers]
servicer_fee_deferral_ratio = 0.9
[[tranche]]
name = "senior"
order = 1
amount = 10.0
coupon = 0.03
[[tranche]]
name = "junior"
order = 2
residual = true
"""
    with pytest.raises(SettingsError, match=r"triggers\.servicer_fee_deferred_share"):
        parse_tranches(text, source="deal.toml")
    with pytest.raises(SettingsError, match="did you mean 'pv_profitability_ratio'"):
        parse_tranches(text.replace("servicer_fee_deferral_ratio", "pv_profitabilty_ratio"))


def _sequential_reference(
    net: FloatArray,
    *,
    amounts: FloatArray,
    monthly_rates: FloatArray,
    fees_share: float,
    fees_monthly: float,
) -> tuple[FloatArray, ...]:
    """Allocate net collections of shape (runs, H) month by month; the last class is residual."""
    runs, h = net.shape
    k = amounts.size
    interest = np.zeros((k, runs, h))
    principal = np.zeros((k, runs, h))
    fees = np.zeros((runs, h))
    balance = np.repeat(amounts[:, None], runs, axis=1)  # principal outstanding
    arrears = np.zeros((k, runs))  # interest due and unpaid, bearing interest at the coupon
    owed = np.zeros(runs)  # senior fees and deficits carried from earlier months
    for t in range(h):
        collected = np.maximum(net[:, t], 0.0)
        deficit = collected - net[:, t]
        due = owed + fees_share * collected + fees_monthly + deficit
        paid = np.minimum(due, collected)
        owed = due - paid
        fees[:, t] = paid - deficit
        cash = collected - paid
        for j in range(k - 1):
            interest_due = arrears[j] * (1.0 + monthly_rates[j]) + balance[j] * monthly_rates[j]
            interest_paid = np.minimum(interest_due, cash)
            cash = cash - interest_paid
            arrears[j] = interest_due - interest_paid
            principal_paid = np.minimum(balance[j], cash)
            cash = cash - principal_paid
            balance[j] = balance[j] - principal_paid
            interest[j, :, t] = interest_paid
            principal[j, :, t] = principal_paid
        principal_paid = np.minimum(balance[-1], cash)
        balance[-1] = balance[-1] - principal_paid
        principal[-1, :, t] = principal_paid
        interest[-1, :, t] = cash - principal_paid
    return fees, owed, interest, principal, balance, arrears


@settings(max_examples=60, deadline=None)
@given(
    net=arrays(np.float64, (3, 18), elements=st.floats(-5.0, 60.0)),
    fees_share=st.floats(0.0, 0.2),
)
def test_without_triggers_the_waterfall_is_exactly_todays(
    net: FloatArray, fees_share: float
) -> None:
    """No [triggers] table: every flow equals the fully sequential waterfall's, bit for bit.

    The reference is the allocation as it was before triggers existed (commit 3a4706a),
    copied above unchanged.
    """
    amounts = np.array([100.0, 50.0, 50.0])
    rates = np.array([0.01, 0.02, 0.0])
    new = _allocate(net, amounts=amounts, monthly_rates=rates, fees_share=fees_share,
                    fees_monthly=1.0)  # fmt: skip
    old = _sequential_reference(net, amounts=amounts, monthly_rates=rates,
                                fees_share=fees_share, fees_monthly=1.0)  # fmt: skip
    for got, want in zip(
        (new.fees, new.fees_owed, new.interest, new.principal, new.balance, new.arrears),
        old,
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    assert new.triggers is None


def test_shipped_trigger_file_sets_every_trigger_in_the_published_ranges() -> None:
    """scenarios/gacs_trigger_tranches.toml: ratios at 85-90 %, semi-annual tests, GACS classes."""
    s = load_tranches(Path(__file__).resolve().parents[2] / "scenarios/gacs_trigger_tranches.toml")
    assert s.names == ("senior", "mezzanine", "junior")
    t = s.triggers
    assert t is not None
    assert t.period_months == 6
    for ratio in (t.cumulative_collection_ratio, t.pv_profitability_ratio):
        assert ratio is not None
        assert 0.85 <= ratio <= 0.90
    assert t.senior_interest_cover is not None
    assert t.defers_servicer_fee
