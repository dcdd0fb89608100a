"""The scoring issue's accuracy checks against the simulator's truth, on a large book (slow).

One model is trained as ``npl train`` trains it (full grid, baselines on) on a 100,000-loan
simulated book (seed 1) and scores a held-out 20,000-loan tape simulated with another seed
(99). Every figure is compared with the exact truth the simulator knows for that tape; the
bounds are the issue's own.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from npl_engine.data.simulator import Simulation, SimulationSettings, simulate, true_outcomes
from npl_engine.scoring import RecoveryModel

pytestmark = pytest.mark.slow

BOOK_LOANS = 100_000
TAPE_LOANS = 20_000
SECURED = ("residential_mortgage", "commercial_real_estate", "sme_secured", "auto")
SHOCK = -0.2


@pytest.fixture(scope="module")
def model() -> RecoveryModel:
    """The recovery model trained on a 100,000-loan book with the default settings."""
    sim = simulate(SimulationSettings(n_loans=BOOK_LOANS, seed=1))
    book = sim.dataset()
    return RecoveryModel(seed=0).fit(book)


@pytest.fixture(scope="module")
def tape() -> Simulation:
    """A 20,000-loan tape from another seed than the book."""
    return simulate(SimulationSettings(n_loans=TAPE_LOANS, seed=99, kind="tape"))


@pytest.fixture(scope="module")
def scored(model: RecoveryModel, tape: Simulation) -> pl.DataFrame:
    """Scores of the tape beside its truth (``true_`` columns) and segment."""
    truth = tape.truth.select(
        "loan_id",
        "realised_recovered",
        true_p="p_recover",
        true_collections="expected_collections",
        true_collateral="expected_collateral",
    )
    return (
        model.score(tape.loans.lazy())
        .scores.join(tape.loans.select("loan_id", "segment"), on="loan_id")
        .join(truth, on="loan_id")
    )


def test_p_recover_ranks_almost_as_well_as_the_true_probability(scored: pl.DataFrame) -> None:
    """AUC of p_recover against realised recovery ≥ 0.97 × the true probabilities' AUC.

    Measured: 0.731 against 0.741 (ratio 0.988).
    """
    realised = scored["realised_recovered"].to_numpy()
    auc = roc_auc_score(realised, scored["p_recover"].to_numpy())
    true_auc = roc_auc_score(realised, scored["true_p"].to_numpy())
    assert auc >= 0.97 * true_auc


def test_p_recover_is_close_to_the_true_probability_loan_by_loan(scored: pl.DataFrame) -> None:
    """Mean absolute error between p_recover and the true probability ≤ 0.04 (measured 0.033)."""
    mae = (scored["p_recover"] - scored["true_p"]).abs().mean()
    assert isinstance(mae, float)
    assert mae <= 0.04


def test_mean_p_recover_matches_the_mean_true_probability(scored: pl.DataFrame) -> None:
    """Mean p_recover is within 0.01 of the mean true probability (measured +0.0015)."""
    gap = scored.select(pl.col("p_recover").mean() - pl.col("true_p").mean()).item()
    assert abs(gap) <= 0.01


def test_total_expected_collections_match_the_truth(scored: pl.DataFrame) -> None:
    """Total expected collections are within ±3 % of the true total (measured +0.4 %)."""
    ratio = scored["expected_collections"].sum() / scored["true_collections"].sum()
    assert abs(ratio - 1) <= 0.03


def test_expected_collections_match_the_truth_in_every_large_segment(
    scored: pl.DataFrame,
) -> None:
    """Each segment with at least 500 loans is within ±8 % of its true total (measured ±2 %)."""
    by_segment = (
        scored.group_by("segment")
        .agg(
            n=pl.len(),
            ratio=pl.col("expected_collections").sum() / pl.col("true_collections").sum(),
        )
        .filter(pl.col("n") >= 500)
    )
    assert by_segment.height == 7  # the tape is large enough for every segment to count
    off = by_segment.filter((pl.col("ratio") - 1).abs() > 0.08)
    assert off.is_empty(), off


def test_collateral_part_responds_to_a_collateral_fall_as_the_truth_does(
    model: RecoveryModel, tape: Simulation, scored: pl.DataFrame
) -> None:
    """A 20 % fall in collateral values moves expected collateral cash as the truth moves.

    The predicted change of the collateral part (tape rescored with collateral_value × 0.8)
    must be within ±20 % of the true change (``true_outcomes(..., collateral_value_change=-0.2)``)
    for the tape and for each secured segment carrying at least 5 % of the true change: the
    accuracy the valuation issue asks of a scenario's effect on price. Autos carry under 1 %
    of it (cheap vehicles, sold fast): they must move the same way, by 50 % to 150 % of the
    truth. Measured: tape 0.90 of the true change; mortgages 0.98, CRE 0.87, SME secured 0.87,
    autos 0.70 (with book seed 2 and tape seed 98: 0.91; 0.99, 0.88, 0.86, 0.72).
    """
    shocked = tape.loans.with_columns(pl.col("collateral_value") * (1 + SHOCK))
    after = model.score(shocked.lazy()).scores.select(
        "loan_id", predicted_after="expected_collateral"
    )
    true_after, _ = true_outcomes(tape.loans, tape.truth, collateral_value_change=SHOCK)
    change = (
        scored.join(after, on="loan_id")
        .join(true_after.select("loan_id", true_after="expected_collateral"), on="loan_id")
        .select(
            "segment",
            predicted=pl.col("predicted_after") - pl.col("expected_collateral"),
            true=pl.col("true_after") - pl.col("true_collateral"),
        )
    )
    assert (change["predicted"] <= 1e-9).all()  # a fall never raises a loan's sale cash
    total_true = change["true"].sum()
    assert total_true < 0
    assert change["predicted"].sum() / total_true == pytest.approx(1.0, abs=0.20)
    by_segment = change.group_by("segment").agg(pl.col("predicted", "true").sum())
    for segment in SECURED:
        row = by_segment.filter(pl.col("segment") == segment).row(0, named=True)
        ratio = row["predicted"] / row["true"]
        material = row["true"] / total_true >= 0.05
        assert ratio == pytest.approx(1.0, abs=0.20 if material else 0.50), segment
    unsecured = by_segment.filter(~pl.col("segment").is_in(SECURED))
    assert (unsecured["predicted"] == 0).all()
    assert (unsecured["true"] == 0).all()


def test_lightgbm_beats_both_baselines_in_the_model_card(
    model: RecoveryModel, tmp_path: Path
) -> None:
    """The card's calibrated LightGBM row has a higher AUC and lower Brier than both baselines."""
    metrics = model.metrics_["classification"]
    lightgbm = metrics["lightgbm (calibrated)"]
    for baseline in ("logistic_regression", "random_forest"):
        assert lightgbm["auc"] > metrics[baseline]["auc"], baseline
        assert lightgbm["brier"] < metrics[baseline]["brier"], baseline
    card = (model.save(tmp_path / "model") / "model_card.md").read_text()
    for name, m in metrics.items():
        assert f"| {name} | {m['auc']:.4f} | {m['brier']:.4f} |" in card
