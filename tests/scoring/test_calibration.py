"""Expected collections calibrated by segment and channel, out of fold, against the truth."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from npl_engine.data import Dataset
from npl_engine.data.simulator import Simulation, SimulationSettings, simulate
from npl_engine.scoring import RecoveryModel
from npl_engine.scoring._collections import MIN_CALIBRATION_LOANS, segment_calibration

SMALL_GRID = ({"num_leaves": 15, "min_data_in_leaf": 50},)
#: The drifted segment: 6 in 10 of its loans' collateral sales never reach the book.
DRIFTED = "commercial_real_estate"
KEPT_SHARE = 0.4


def test_factor_is_the_ratio_shrunk_by_its_standard_error() -> None:
    """Hand-worked: ratio 1.3 with s.e. 0.0212 → factor 1.2985; a noisy 1.05 stays near 1.

    Segment 0: 100 loans predicted 1 each, realising 1.0 and 1.6 alternately: ratio 260/200
    = 1.3; residuals ±0.3, s.e. sqrt(200 × 0.09) / 200 = 0.02121; factor 1 + 0.3 × 0.09 /
    (0.09 + 0.00045) = 1.29851. Segment 1: 100 loans predicted 1, realising 0.05 and 2.05
    alternately: ratio 1.05, residuals ±1, s.e. sqrt(100) / 100 = 0.1; factor 1 + 0.05 ×
    0.0025 / (0.0025 + 0.01) = 1.01.
    """
    realised = np.r_[np.tile([1.0, 1.6], 100), np.tile([0.05, 2.05], 50)]
    rows = segment_calibration(
        realised=realised,
        predicted=np.ones(300),
        codes=np.repeat([0, 1], [200, 100]),
        n_segments=3,
    )
    assert rows[0]["ratio"] == pytest.approx(1.3)
    assert rows[0]["standard_error"] == pytest.approx(0.3 / np.sqrt(200))
    assert rows[0]["factor"] == pytest.approx(1.29851, abs=1e-5)
    assert rows[1]["ratio"] == pytest.approx(1.05)
    assert rows[1]["standard_error"] == pytest.approx(0.1)
    assert rows[1]["factor"] == pytest.approx(1.01)
    assert rows[2] == {"n_loans": 0, "realised": 0.0, "predicted": 0.0, "ratio": 1.0,
                       "standard_error": 0.0, "factor": 1.0}  # fmt: skip


def test_a_segment_that_collected_nothing_is_learnt_as_zero_and_a_tiny_one_is_left() -> None:
    """Ratio 0 with no residual gives factor 0; fewer than 50 loans keep factor 1."""
    few = MIN_CALIBRATION_LOANS - 1
    rows = segment_calibration(
        realised=np.r_[np.zeros(100), np.full(few, 3.0)],
        predicted=np.ones(100 + few),
        codes=np.repeat([0, 1], [100, few]),
        n_segments=2,
    )
    assert rows[0]["factor"] == 0.0
    assert rows[1]["ratio"] == pytest.approx(3.0)
    assert rows[1]["standard_error"] is None
    assert rows[1]["factor"] == 1.0


@pytest.fixture(scope="module")
def drifted() -> tuple[RecoveryModel, Simulation]:
    """A model of a 4,000-loan book in which most CRE sales are missing, and a 3,000-loan tape."""
    sim = simulate(SimulationSettings(n_loans=4_000, seed=21))
    assert sim.payments is not None
    assert sim.actions is not None
    drop = (
        (pl.col("segment") == DRIFTED)
        & (pl.col("source") == "collateral_sale")
        & (pl.col("loan_id").hash(7) % 10 < 10 * (1 - KEPT_SHARE))
    )
    payments = (
        sim.payments.join(sim.loans.select("loan_id", "segment"), on="loan_id")
        .filter(~drop)
        .select(sim.payments.columns)
    )
    book = Dataset(
        loans=sim.loans.lazy(),
        actions=sim.actions.lazy(),
        payments=payments.lazy(),
        as_of_date=sim.settings.as_of_date,
    )
    model = RecoveryModel(grid=SMALL_GRID, baselines=False).fit(book)
    return model, simulate(SimulationSettings(n_loans=3_000, seed=22, kind="tape"))


def _segment_errors(model: RecoveryModel, tape: Simulation) -> dict[str, float]:
    """Per segment: predicted / true expected collections - 1 (CRE's true sales × 0.4)."""
    truth = tape.truth.join(tape.loans.select("loan_id", "segment"), on="loan_id").select(
        "loan_id",
        "segment",
        true=pl.col("expected_borrower")
        + pl.when(pl.col("segment") == DRIFTED)
        .then(pl.col("expected_collateral") * KEPT_SHARE)
        .otherwise(pl.col("expected_collateral")),
    )
    scores = model.score(tape.loans.lazy()).scores.join(truth, on="loan_id")
    by_segment = scores.group_by("segment").agg(
        err=pl.col("expected_collections").sum() / pl.col("true").sum() - 1
    )
    return dict(zip(by_segment["segment"].cast(pl.String), by_segment["err"], strict=True))


def test_calibration_brings_a_drifted_segment_back_to_the_truth(
    drifted: tuple[RecoveryModel, Simulation],
) -> None:
    """CRE is +19 % off the truth before calibration, within ±8 % after; the rest improve.

    The book's ~200 CRE loans are fewer than a leaf's minimum (300) in the collateral model,
    which pools them with other secured loans; the out-of-fold ratio (0.60) finds the drift.
    Measured (book seed 21, tape seed 22): CRE +19.4 % → -0.2 %; mean absolute error over
    segments 6.8 % → 2.3 %; worst segment after: credit cards +8.0 %.
    """
    model, tape = drifted
    uncalibrated = copy.copy(model)
    uncalibrated.collections_ = copy.copy(model.collections_)
    uncalibrated.collections_.factors_ = {
        channel: np.ones_like(f) for channel, f in model.collections_.factors_.items()
    }
    before, after = _segment_errors(uncalibrated, tape), _segment_errors(model, tape)
    assert before[DRIFTED] > 0.15
    assert abs(after[DRIFTED]) <= 0.08
    assert np.mean(np.abs(list(after.values()))) < np.mean(np.abs(list(before.values())))
    assert all(abs(e) <= 0.10 for e in after.values()), after


def test_model_card_shows_the_out_of_fold_ratio_and_factor_of_each_segment(
    drifted: tuple[RecoveryModel, Simulation], tmp_path: Path
) -> None:
    """One card row per segment and channel; the drifted CRE sales show a ratio near 0.4."""
    model, _ = drifted
    card = (model.save(tmp_path / "m") / "model_card.md").read_text()
    rows = model.metrics_["collections_calibration"]
    assert {(r["segment"], r["channel"]) for r in rows} >= {
        (DRIFTED, "collateral"),
        ("credit_card", "borrower"),
    }
    assert not [r for r in rows if r["channel"] == "collateral" and r["segment"] == "credit_card"]
    for r in rows:
        assert (
            f"| {r['segment']} | {r['channel']} | {r['n_loans']:,} | {r['ratio']:.3f} | "
        ) in card
    (cre,) = [r for r in rows if (r["segment"], r["channel"]) == (DRIFTED, "collateral")]
    assert 0.4 <= cre["ratio"] <= 0.8
    assert cre["factor"] == pytest.approx(cre["ratio"], abs=0.1)
    assert RecoveryModel.load(tmp_path / "m").collections_.factors_.keys() == {
        "borrower",
        "collateral",
    }
