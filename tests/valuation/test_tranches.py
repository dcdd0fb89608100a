"""Tranches: hand-worked waterfalls, yields against numpy-financial, invariants, bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import numpy_financial as npf
import pytest
import pyxirr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from npl_engine.errors import SettingsError
from npl_engine.valuation import (
    StructureTerms,
    Tranche,
    TrancheStructure,
    load_tranches,
    parse_tranches,
    tranche_report,
    value_portfolio,
    waterfall,
)
from valuation.builders import base, make_portfolio, scenario_set

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scenarios"

#: An annual coupon whose monthly rate is exactly 1 %: (1 + c) ** (1 / 12) - 1 = 0.01.
ONE_PCT_A_MONTH = 1.01**12 - 1


def structure(
    *classes: tuple[str, float, float],
    fees_share: float = 0.0,
    fees_fixed_per_year: float = 0.0,
) -> TrancheStructure:
    """Classes given as (name, size_pct_price, coupon), most senior first, then a junior."""
    tranches = [
        Tranche(name=name, order=i + 1, size_pct_price=size, coupon=coupon)
        for i, (name, size, coupon) in enumerate(classes)
    ]
    tranches.append(Tranche(name="junior", order=len(classes) + 1, residual=True))
    terms = StructureTerms(
        senior_fees_share=fees_share, senior_fees_fixed_per_year=fees_fixed_per_year
    )
    return TrancheStructure(terms=terms, tranches=tranches)


# --------------------------------------------------------------------------------------------
# Hand-worked waterfalls


def test_hand_worked_two_classes_three_months() -> None:
    """Fees, then senior interest and principal, then the junior: every flow as worked by hand.

    Working: price 100 = senior 60 (size_pct_price 0.6, monthly rate 1 %) + junior 40; fees
    10 % of collections + 12 a year (1 a month); net 21, 31, 81.
    Month 1: fees 2.1 + 1 = 3.1, cash 17.9; senior interest 60 × 1 % = 0.6, principal 17.3,
    balance 42.7; junior 0.
    Month 2: fees 3.1 + 1 = 4.1, cash 26.9; interest 0.427, principal 26.473, balance 16.227.
    Month 3: fees 8.1 + 1 = 9.1, cash 71.9; interest 0.16227, principal 16.227 (repaid);
    junior 71.9 − 16.38927 = 55.51073: principal 40, return 15.51073.
    Check: fees 16.3 + senior 61.18927 + junior 55.51073 = 133 = 21 + 31 + 81.
    Senior repaid with all interest: yield = its coupon. WAL = (17.3 × 1 + 26.473 × 2 +
    16.227 × 3) / 60 / 12 = 118.927 / 720 years. Junior: MOIC 55.51073 / 40; yield
    (55.51073 / 40) ** (12 / 3) − 1 (one flow, three months after paying 40).
    """
    s = structure(("senior", 0.6, ONE_PCT_A_MONTH), fees_share=0.1, fees_fixed_per_year=12.0)
    r = waterfall(np.array([21.0, 31.0, 81.0]), s, gbv=400.0, price=100.0)
    senior, junior = r.tranche("senior"), r.tranche("junior")
    np.testing.assert_allclose(r.fees, [3.1, 4.1, 9.1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(senior.interest, [0.6, 0.427, 0.16227], rtol=0, atol=1e-9)
    np.testing.assert_allclose(senior.principal, [17.3, 26.473, 16.227], rtol=0, atol=1e-9)
    np.testing.assert_allclose(junior.principal, [0.0, 0.0, 40.0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(junior.interest, [0.0, 0.0, 15.51073], rtol=0, atol=1e-9)
    assert (senior.amount, junior.amount) == (60.0, 40.0)
    assert float(senior.loss) == 0.0
    assert float(junior.loss) == 0.0
    assert float(senior.interest_unpaid) == pytest.approx(0.0, abs=1e-12)
    assert float(senior.irr) == pytest.approx(ONE_PCT_A_MONTH, rel=1e-9)
    assert float(senior.wal_years) == pytest.approx(118.927 / 720, rel=1e-9)
    assert float(junior.moic) == pytest.approx(55.51073 / 40, rel=1e-9)
    assert float(junior.irr) == pytest.approx((55.51073 / 40) ** 4 - 1, rel=1e-9)
    assert float(r.fees_unpaid) == 0.0


def test_shortfalls_capitalise_interest_and_carry_fees_and_deficits() -> None:
    """Unpaid interest bears interest; unpaid fees and a negative month are owed senior.

    Working: senior 100 (amount, monthly rate 1 %), junior 10, price 110; fixed fees 1 a month;
    net −2, 0.5, 5.
    Month 1: nothing collected; owed = 1 fee + 2 deficit = 3; fees line = −2 (the deficit);
    senior interest due 1.00, unpaid: arrears 1.00.
    Month 2: 0.5 collected; owed 3 + 1 = 4, paid 0.5, still owed 3.5; fees line 0.5; interest
    due 1.00 × 1.01 + 1.00 = 2.01, unpaid.
    Month 3: 5 collected; owed 3.5 + 1 = 4.5, paid; 0.5 left; interest due
    2.01 × 1.01 + 1.00 = 3.0301, paid 0.5, arrears 2.5301; no principal; junior nothing.
    Check: fees −2 + 0.5 + 4.5 = 3, senior 0.5; 3.5 = −2 + 0.5 + 5. Senior loses all 100,
    junior all 10 (yield −100 %).
    """
    s = TrancheStructure(
        terms=StructureTerms(senior_fees_fixed_per_year=12.0),
        tranches=[
            Tranche(name="senior", order=1, amount=100.0, coupon=ONE_PCT_A_MONTH),
            Tranche(name="junior", order=2, residual=True),
        ],
    )
    r = waterfall(np.array([-2.0, 0.5, 5.0]), s, gbv=400.0, price=110.0)
    senior, junior = r.tranche("senior"), r.tranche("junior")
    np.testing.assert_allclose(r.fees, [-2.0, 0.5, 4.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(senior.interest, [0.0, 0.0, 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(senior.principal, [0.0, 0.0, 0.0], rtol=0, atol=0)
    assert float(senior.interest_unpaid) == pytest.approx(2.5301, abs=1e-9)
    assert float(r.fees_unpaid) == pytest.approx(0.0, abs=1e-12)
    assert float(senior.loss) == 100.0
    assert float(senior.loss_share) == 1.0
    assert float(junior.loss) == 10.0
    assert float(junior.irr) == -1.0
    assert math.isnan(float(senior.wal_years))


def test_zero_collections_lose_everything_and_leave_the_fixed_fees_unpaid() -> None:
    """With no collections no class is paid, every class loses its amount, fees stay owed."""
    s = structure(("senior", 0.7, 0.03), ("mezzanine", 0.2, 0.08), fees_fixed_per_year=120.0)
    r = waterfall(np.zeros((4, 24)), s, gbv=1000.0, price=300.0)
    assert np.all(r.fees == 0.0)
    np.testing.assert_allclose(r.fees_unpaid, 120.0 * 2, rtol=1e-12)
    for t in r.tranches:
        assert np.all(t.cash == 0.0)
        np.testing.assert_array_equal(t.loss, t.amount)
        np.testing.assert_array_equal(t.irr, -1.0)


def test_yields_agree_with_numpy_financial_and_pyxirr() -> None:
    """Each class's yield equals npf.irr (and pyxirr.irr) of its monthly flows, annualised.

    Working: yield = (1 + m) ** 12 − 1 where m is the monthly IRR of [−amount, cash_1..H].
    """
    rng = np.random.default_rng(7)
    net = rng.gamma(2.0, 6.0, size=(3, 48))
    s = structure(("senior", 0.6, 0.035), ("mezzanine", 0.15, 0.09), fees_share=0.02)
    r = waterfall(net, s, gbv=1000.0, price=300.0)
    for t in r.tranches:
        for i in range(3):
            flows = np.concatenate(([-t.amount], t.cash[i]))
            expected = (1.0 + npf.irr(flows)) ** 12 - 1.0
            assert t.irr[i] == pytest.approx(expected, rel=1e-9)
            assert t.irr[i] == pytest.approx((1.0 + pyxirr.irr(flows)) ** 12 - 1.0, rel=1e-9)


def test_a_class_repaid_in_full_yields_its_coupon() -> None:
    """Senior and mezzanine repaid with all interest yield exactly their coupons.

    Working: the balance B_t = B_(t−1) (1 + m) − cash_t ends at 0, so Σ cash_t (1 + m) ** −t
    = amount: m is the monthly IRR and (1 + m) ** 12 − 1 the coupon.
    """
    net = np.concatenate((np.full(30, 4.0), np.full(6, 80.0)))
    s = structure(("senior", 0.6, 0.035), ("mezzanine", 0.15, 0.09))
    r = waterfall(net, s, gbv=1000.0, price=300.0)
    for name, coupon in (("senior", 0.035), ("mezzanine", 0.09)):
        t = r.tranche(name)
        assert float(t.loss) == 0.0
        assert float(t.interest_unpaid) == pytest.approx(0.0, abs=1e-12)
        assert float(t.irr) == pytest.approx(coupon, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Invariants


@st.composite
def structures(draw: st.DrawFn) -> TrancheStructure:
    """1 to 4 classes above a junior, sized by GBV, price or amount, with random fees."""
    n = draw(st.integers(0, 4))
    budget = 0.95  # sizes drawn as shares of price, kept below 1 in total
    tranches = []
    for i in range(n):
        share = draw(st.floats(0.01, budget / n))
        how = draw(st.sampled_from(["size_pct_price", "size_pct_gbv", "amount"]))
        # gbv = 1000 and price = 400 in these tests: convert the share of price to each basis.
        size = {"size_pct_price": share, "size_pct_gbv": share * 0.4, "amount": share * 400.0}
        tranches.append(
            Tranche(name=f"c{i}", order=i + 1, coupon=draw(st.floats(0.0, 0.3)), **{how: size[how]})
        )
    tranches.append(Tranche(name="junior", order=n + 1, residual=True))
    terms = StructureTerms(
        senior_fees_share=draw(st.floats(0.0, 0.3)),
        senior_fees_fixed_per_year=draw(st.floats(0.0, 100.0)),
    )
    return TrancheStructure(terms=terms, tranches=draw(st.permutations(tranches)))


def nets(*, negative: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Net collections of 1 to 3 runs over 1 to 36 months; some months negative if asked."""
    low = -20.0 if negative else 0.0
    return st.tuples(st.integers(1, 3), st.integers(1, 36)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=st.floats(low, 200.0))
    )


@settings(max_examples=100, deadline=None)
@given(net=nets(negative=False), s=structures())
def test_class_flows_and_fees_add_up_to_net_collections(
    net: np.ndarray, s: TrancheStructure
) -> None:
    """For non-negative collections, fees + every class's cash equal net each month."""
    r = waterfall(net, s, gbv=1000.0, price=400.0)
    total = r.fees + sum(t.cash for t in r.tranches)
    np.testing.assert_allclose(total, net, rtol=0, atol=1e-9 * max(1.0, np.abs(net).max()))
    assert np.all(r.fees >= 0.0)
    for t in r.tranches:
        assert np.all(t.interest >= 0.0)
        assert np.all(t.principal >= 0.0)


@settings(max_examples=100, deadline=None)
@given(net=nets(), s=structures())
def test_flows_add_up_even_with_negative_months(net: np.ndarray, s: TrancheStructure) -> None:
    """With deficits the monthly identity holds and the totals add up to Σ net."""
    r = waterfall(net, s, gbv=1000.0, price=400.0)
    total = r.fees + sum(t.cash for t in r.tranches)
    scale = max(1.0, np.abs(net).sum())
    np.testing.assert_allclose(total, net, rtol=0, atol=1e-9 * scale)
    assert np.all(r.fees_unpaid >= 0.0)


@settings(max_examples=100, deadline=None)
@given(net=nets(), s=structures())
def test_no_class_is_paid_while_a_senior_class_is_outstanding(
    net: np.ndarray, s: TrancheStructure
) -> None:
    """In any month where a class still owes principal afterwards, the classes below get 0."""
    r = waterfall(net, s, gbv=1000.0, price=400.0)
    for k, senior in enumerate(r.tranches[:-1]):
        outstanding = senior.amount - np.cumsum(senior.principal, axis=-1) > 1e-9
        for junior in r.tranches[k + 1 :]:
            assert np.all(junior.cash[outstanding] == 0.0)
            # ...so a junior class's principal only ever starts after the senior is repaid.
            assert np.all(junior.principal[outstanding] == 0.0)


@settings(max_examples=100, deadline=None)
@given(net=nets(), s=structures())
def test_loss_is_unrepaid_principal_and_zero_when_repaid(
    net: np.ndarray, s: TrancheStructure
) -> None:
    """Loss = amount − principal repaid, within [0, amount]; the classes add up to the price."""
    r = waterfall(net, s, gbv=1000.0, price=400.0)
    assert math.isclose(sum(t.amount for t in r.tranches), 400.0, rel_tol=1e-12)
    for t in r.tranches:
        repaid = t.principal.sum(axis=-1)
        np.testing.assert_allclose(t.loss, t.amount - repaid, rtol=0, atol=1e-9 * t.amount)
        assert np.all((t.loss >= 0.0) & (t.loss <= t.amount))


@settings(max_examples=50, deadline=None)
@given(net=nets(), s=structures())
def test_classes_repaid_in_full_lose_nothing_and_yield_their_coupon(
    net: np.ndarray, s: TrancheStructure
) -> None:
    """A last month large enough to repay everyone: zero loss, no arrears, yield = coupon."""
    net = net.copy()
    net[..., -1] += 5e3  # > price 400 with 36 months of 30 % coupons and fees of 100 a year
    r = waterfall(net, s, gbv=1000.0, price=400.0)
    np.testing.assert_array_equal(r.fees_unpaid, 0.0)
    for t in r.tranches:
        np.testing.assert_array_equal(t.loss, 0.0)
        np.testing.assert_array_equal(t.interest_unpaid, 0.0)
        if not t.residual:
            # pyxirr stops within about 1e-10 of the root: a 0 % coupon may come back as -4e-11.
            np.testing.assert_allclose(t.irr, t.coupon, rtol=1e-8, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(
    net=arrays(np.float64, 24, elements=st.floats(0.0, 50.0)),
    s=structures(),
    month=st.integers(0, 23),
    extra=st.floats(0.0, 500.0),
)
def test_more_collections_never_raise_a_loss(
    net: np.ndarray, s: TrancheStructure, month: int, extra: float
) -> None:
    """Adding collections in any month leaves every class's loss the same or lower."""
    more = net.copy()
    more[month] += extra
    before = waterfall(net, s, gbv=1000.0, price=400.0)
    after = waterfall(more, s, gbv=1000.0, price=400.0)
    for b, a in zip(before.tranches, after.tranches, strict=True):
        assert float(a.loss) <= float(b.loss) + 1e-9 * b.amount


@settings(max_examples=50, deadline=None)
@given(net=nets(), s=structures())
def test_runs_are_independent_of_each_other(net: np.ndarray, s: TrancheStructure) -> None:
    """A stack of runs gives each run what it gets on its own."""
    stacked = waterfall(net, s, gbv=1000.0, price=400.0)
    for i in range(net.shape[0]):
        alone = waterfall(net[i], s, gbv=1000.0, price=400.0)
        np.testing.assert_array_equal(stacked.fees[i], alone.fees)
        for t, u in zip(stacked.tranches, alone.tranches, strict=True):
            np.testing.assert_array_equal(t.interest[i], u.interest)
            np.testing.assert_array_equal(t.principal[i], u.principal)
            np.testing.assert_array_equal(t.irr[i], u.irr)


# --------------------------------------------------------------------------------------------
# Sizes


def test_sizes_resolve_by_gbv_price_and_amount_and_the_junior_takes_the_rest() -> None:
    """24 % of GBV 1000 = 240, 10 % of price 400 = 40, amount 30; junior 400 − 310 = 90."""
    s = TrancheStructure(
        tranches=[
            Tranche(name="junior", order=9, residual=True),
            Tranche(name="b", order=2, size_pct_price=0.1, coupon=0.05),
            Tranche(name="a", order=1, size_pct_gbv=0.24, coupon=0.03),
            Tranche(name="c", order=5, amount=30.0, coupon=0.0),
        ]
    )
    assert s.names == ("a", "b", "c", "junior")
    assert s.amounts(gbv=1000.0, price=400.0) == pytest.approx((240.0, 40.0, 30.0, 90.0))


def test_classes_reaching_the_price_are_a_settings_error_naming_their_keys() -> None:
    """Senior 22 % + mezzanine 4 % of GBV cannot be bought with a price of 25 % of GBV."""
    s = load_tranches(SCENARIO_DIR / "gacs_tranches.toml")
    with pytest.raises(SettingsError) as info:
        waterfall(np.ones(12), s, gbv=1000.0, price=250.0)
    message = str(info.value)
    assert "size_pct_gbv = 0.22" in message
    assert "size_pct_gbv = 0.04" in message
    assert "'junior'" in message
    assert "260.00" in message


@pytest.mark.parametrize(("gbv", "price"), [(0.0, 100.0), (1000.0, -1.0), (1000.0, math.nan)])
def test_non_positive_gbv_or_price_is_refused(gbv: float, price: float) -> None:
    """A GBV or price that is not a positive number is a ValueError."""
    with pytest.raises(ValueError, match="positive finite"):
        waterfall(np.ones(3), structure(("senior", 0.5, 0.03)), gbv=gbv, price=price)


def test_non_finite_collections_are_refused() -> None:
    """NaN in the net collections is a ValueError, not a silent NaN waterfall."""
    with pytest.raises(ValueError, match="finite"):
        waterfall(np.array([1.0, np.nan]), structure(), gbv=10.0, price=5.0)


# --------------------------------------------------------------------------------------------
# Results


def test_summary_percentiles_are_those_of_the_runs() -> None:
    """Over 5 paths the summary's mean, P50 and P(loss) are those of the per-run metrics."""
    net = np.outer([0.2, 0.5, 1.0, 2.0, 4.0], np.full(36, 3.0))
    r = waterfall(net, structure(("senior", 0.7, 0.03)), gbv=500.0, price=100.0)
    senior = r.summary().row(0, named=True)
    t = r.tranche("senior")
    assert senior["n_runs"] == 5
    assert senior["irr_p50"] == pytest.approx(np.percentile(t.irr, 50), rel=1e-12)
    assert senior["loss_share_mean"] == pytest.approx(t.loss_share.mean(), rel=1e-12)
    assert senior["p_loss"] == pytest.approx(np.mean(t.loss > 0))
    assert 0.0 < senior["p_loss"] < 1.0


def test_to_dict_is_json_with_runs_by_label_and_no_nan() -> None:
    """to_dict serialises to JSON (NaN as null) and lists the labelled runs' classes."""
    net = np.array([[0.0] * 12, [10.0] * 12])
    r = waterfall(net, structure(("senior", 0.5, 0.03)), gbv=100.0, price=40.0)
    out = r.to_dict(labels=["bad", "good"])
    text = json.dumps(out, allow_nan=False)
    assert [run["label"] for run in out["runs"]] == ["bad", "good"]
    assert [c["tranche"] for c in out["runs"][0]["tranches"]] == ["senior", "junior"]
    assert out["runs"][0]["tranches"][0]["wal_years"] is None
    assert "NaN" not in text
    assert "runs" not in r.to_dict()


def test_cash_flows_frame_rebuilds_net() -> None:
    """The monthly frame's fees and class columns add up to its net column."""
    rng = np.random.default_rng(3)
    r = waterfall(rng.uniform(0, 20, (2, 10)), structure(("s", 0.6, 0.05)), gbv=90, price=50)
    frame = r.cash_flows(labels=["a", "b"])
    parts = frame["fees"] + sum(
        frame[c] for c in frame.columns if c.endswith(("_interest", "_principal"))
    )
    np.testing.assert_allclose(parts.to_numpy(), frame["net"].to_numpy(), atol=1e-9)
    assert frame.height == 20
    assert frame["label"].to_list()[:2] == ["a", "a"]


def test_tranche_report_runs_every_scenario_weighted_and_paths() -> None:
    """The report has each scenario and the weighted flows by name, and a path summary."""
    borrower = np.full((2, 12), 30.0)
    scenarios = scenario_set(base("base", 0.6), base("adverse", 0.4, collections_multiplier=0.5))
    valuation = value_portfolio(make_portfolio(borrower), scenarios)
    s = structure(("senior", 0.6, 0.035))
    paths = SimpleNamespace(net=np.vstack([np.full(12, 60.0), np.full(12, 20.0)]))
    report = tranche_report(s, valuation, paths, price=500.0)  # type: ignore[arg-type]
    json.dumps(report, allow_nan=False)
    assert [x["name"] for x in report["scenarios"]] == ["base", "adverse", "weighted"]
    assert [x["weight"] for x in report["scenarios"]] == [0.6, 0.4, 1.0]
    weighted_net = valuation.cash_flows.filter(scenario="weighted")["net"].to_numpy()
    alone = waterfall(weighted_net, s, gbv=valuation.gbv, price=500.0)
    senior = report["scenarios"][2]["tranches"][0]
    assert senior["irr"] == pytest.approx(float(alone.tranche("senior").irr), rel=1e-12)
    assert report["simulation"]["n_paths"] == 2
    assert [x["tranche"] for x in report["simulation"]["summary"]] == ["senior", "junior"]


# --------------------------------------------------------------------------------------------
# Files


def test_shipped_gacs_file_is_in_the_published_ranges() -> None:
    """scenarios/gacs_tranches.toml: senior 20-28 % and mezzanine 3-6 % of GBV, junior residual."""
    s = load_tranches(SCENARIO_DIR / "gacs_tranches.toml")
    senior, mezzanine, junior = s.tranches
    assert s.names == ("senior", "mezzanine", "junior")
    assert senior.size_pct_gbv is not None
    assert 0.20 <= senior.size_pct_gbv <= 0.28
    assert mezzanine.size_pct_gbv is not None
    assert 0.03 <= mezzanine.size_pct_gbv <= 0.06
    assert junior.residual
    assert (senior.coupon or 0.0) < (mezzanine.coupon or 0.0)
    assert s.amounts(gbv=1000.0, price=320.0) == pytest.approx((220.0, 40.0, 60.0))


TWO_CLASSES = """\
[structure]
senior_fees_share = 0.02

[[tranche]]
name = "senior"
order = 1
size_pct_gbv = 0.24
coupon = 0.035

[[tranche]]
name = "junior"
order = 2
residual = true
"""


def replace(old: str, new: str) -> str:
    """TWO_CLASSES with one line replaced."""
    assert old in TWO_CLASSES
    return TWO_CLASSES.replace(old, new, 1)


BAD_FILES = [
    pytest.param(replace("coupon = 0.035", "coupn = 0.035"), "tranche[1].coupn", id="typo"),
    pytest.param(replace("coupon = 0.035", ""), "tranche[1].coupon", id="no-coupon"),
    pytest.param(replace("coupon = 0.035", 'coupon = "3.5%"'), "tranche[1].coupon", id="str"),
    pytest.param(replace("coupon = 0.035", "coupon = -0.01"), "tranche[1].coupon", id="neg"),
    pytest.param(replace("size_pct_gbv = 0.24", ""), "tranche[1] (tranche 'senior')", id="nosize"),
    pytest.param(
        replace("size_pct_gbv = 0.24", "size_pct_gbv = 0.24\namount = 5.0"),
        "tranche[1].amount",
        id="two-sizes",
    ),
    pytest.param(replace("size_pct_gbv = 0.24", "size_pct_gbv = 1.5"), "size_pct_gbv", id="gbv>1"),
    pytest.param(
        replace("size_pct_gbv = 0.24", "size_pct_price = 1.0"),
        "tranche[1].size_pct_price",
        id="price=1",
    ),
    pytest.param(replace("residual = true", "residual = 1"), "tranche[2].residual", id="bool"),
    pytest.param(
        replace("residual = true", "amount = 5.0\ncoupon = 0.1"), "tranche[*].residual", id="none"
    ),
    pytest.param(
        replace("residual = true", "residual = true\ncoupon = 0.1"),
        "tranche[2].coupon",
        id="residual-coupon",
    ),
    pytest.param(
        replace("residual = true", "residual = true\namount = 3.0"),
        "tranche[2].amount",
        id="residual-size",
    ),
    pytest.param(replace("order = 2", "order = 1"), "tranche[2].order", id="dup-order"),
    pytest.param(replace('name = "junior"', 'name = "Senior"'), "tranche[2].name", id="dup-name"),
    pytest.param(replace("order = 2", "order = 0"), "tranche[2].order", id="order0"),
    pytest.param(
        replace("order = 1", "order = 3"), "tranche[2].order (tranche 'junior')", id="not-last"
    ),
    pytest.param(
        replace("senior_fees_share = 0.02", "senior_fee_share = 0.02"),
        "structure.senior_fee_share",
        id="fees-typo",
    ),
    pytest.param(
        replace("senior_fees_share = 0.02", "senior_fees_share = 1.0"),
        "structure.senior_fees_share",
        id="fees-share",
    ),
    pytest.param(TWO_CLASSES + "\n[pricing]\ntarget_irr = 0.1\n", "pricing", id="top-level"),
    pytest.param("[structure]\n", "tranche: missing", id="no-tranche"),
    pytest.param(replace("order = 2", "order = 2 2"), "line 12", id="toml-syntax"),
]


@pytest.mark.parametrize(("text", "key"), BAD_FILES)
def test_bad_files_are_settings_errors_naming_file_and_key(
    tmp_path: Path, text: str, key: str
) -> None:
    """Every broken rule is a SettingsError naming the file and the key path."""
    path = tmp_path / "deal.toml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_tranches(path)
    assert str(info.value).startswith(f"{path}: ")
    assert key in str(info.value)


def test_the_base_example_parses() -> None:
    """The text the bad cases are made from is itself valid."""
    s = parse_tranches(TWO_CLASSES)
    assert s.terms.senior_fees_share == 0.02
    assert s.names == ("senior", "junior")


def test_a_missing_file_is_a_settings_error_naming_it(tmp_path: Path) -> None:
    """A path that does not exist is a SettingsError naming it."""
    with pytest.raises(SettingsError, match=r"nope\.toml: cannot read the tranche file"):
        load_tranches(tmp_path / "nope.toml")
