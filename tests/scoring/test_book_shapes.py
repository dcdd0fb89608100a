"""Books the simulator does not make: payment plans that end, no collateral sales, short history.

Each book is a small simulated one whose payments table is post-processed the way real books
differ from the simulator's (borrower payments stop at month 36 after the cut-off; no
collateral sale at all; cut-offs too recent to observe the 60-month horizon). Training,
scoring and valuation must all run, intervals with no collections must give exactly zero, and
the model card must say what was learnt as zero, dropped or cut short.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from npl_engine.cli import main
from npl_engine.data import Dataset, month_after_cutoff, write_dataset
from npl_engine.data.simulator import Simulation, SimulationSettings, simulate
from npl_engine.scoring import RecoveryModel

SMALL_GRID = ({"num_leaves": 15, "min_data_in_leaf": 50},)
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
STOP_MONTH = 36


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """A 3,000-loan simulated book."""
    return simulate(SimulationSettings(n_loans=3_000, seed=3))


@pytest.fixture(scope="module")
def tape() -> pl.DataFrame:
    """The loans of a 1,000-loan simulated tape."""
    return simulate(SimulationSettings(n_loans=1_000, seed=4, kind="tape")).loans


def _payments_with_month(sim: Simulation) -> pl.DataFrame:
    assert sim.payments is not None
    return sim.payments.join(sim.loans.select("loan_id", "cutoff_date"), on="loan_id").with_columns(
        month=month_after_cutoff(pl.col("payment_date"), pl.col("cutoff_date"))
    )


def _book(sim: Simulation, payments: pl.DataFrame) -> Dataset:
    assert sim.actions is not None
    assert sim.payments is not None
    return Dataset(
        loans=sim.loans.lazy(),
        actions=sim.actions.lazy(),
        payments=payments.select(sim.payments.columns).lazy(),
        as_of_date=sim.settings.as_of_date,
    )


def _fit(book: Dataset) -> RecoveryModel:
    return RecoveryModel(grid=SMALL_GRID, baselines=False).fit(book)


@pytest.fixture(scope="module")
def plans_end_book(sim: Simulation) -> Dataset:
    """The book with every borrower (and guarantor) payment after month 36 removed."""
    pays = _payments_with_month(sim)
    keep = (pl.col("source") == "collateral_sale") | (pl.col("month") <= STOP_MONTH)
    return _book(sim, pays.filter(keep))


@pytest.fixture(scope="module")
def plans_end_model(plans_end_book: Dataset) -> RecoveryModel:
    """The model trained on the book whose borrower payments stop at month 36."""
    return _fit(plans_end_book)


@pytest.fixture(scope="module")
def no_sale_model(sim: Simulation) -> RecoveryModel:
    """The model trained on the book with no collateral sale at all."""
    pays = _payments_with_month(sim)
    return _fit(_book(sim, pays.filter(pl.col("source") != "collateral_sale")))


def test_borrower_payments_ending_at_month_36_train_and_predict_zero_after(
    plans_end_model: RecoveryModel, tape: pl.DataFrame
) -> None:
    """Months 37-60 of the borrower part are learnt as zero and predicted as exactly zero."""
    model = plans_end_model
    assert model.collections_.zero_ == {("borrower", 48), ("borrower", 60)}
    assert model.horizon_months == 60
    scored = model.score(tape.lazy())
    late = scored.curves.filter(pl.col("month") > STOP_MONTH)
    assert (late["expected_borrower"] == 0.0).all()
    assert late["expected_collateral"].sum() > 0  # sales still run to month 60
    early = scored.curves.filter(pl.col("month") <= STOP_MONTH)["expected_borrower"]
    assert early.sum() > 0
    by_loan = scored.curves.group_by("loan_id").agg(pl.col("expected_borrower").sum())
    joined = scored.scores.join(by_loan, on="loan_id", suffix="_curve")
    assert np.allclose(joined["expected_borrower"], joined["expected_borrower_curve"], rtol=1e-9)


def test_model_card_names_the_intervals_learnt_as_zero(
    plans_end_model: RecoveryModel, tmp_path: Path
) -> None:
    """The card lists the zero intervals with the loans observed in each."""
    card = (plans_end_model.save(tmp_path / "m") / "model_card.md").read_text()
    observed = plans_end_model.metrics_["collections_observed"]
    line = (
        "- Channel borrower: learnt as zero (no loan collected anything) in months "
        f"37-48 ({observed['48']:,} loans observed), 49-60 ({observed['60']:,} loans observed)."
    )
    assert line in card


def test_a_model_with_zero_intervals_scores_identically_after_loading(
    plans_end_model: RecoveryModel, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """Saving writes no booster for a zero interval; loading restores the same scores."""
    folder = plans_end_model.save(tmp_path / "m")
    assert not (folder / "collections" / "borrower_048.txt").exists()
    loaded = RecoveryModel.load(folder)
    assert loaded.collections_.zero_ == plans_end_model.collections_.zero_
    before, after = plans_end_model.score(tape.lazy()), loaded.score(tape.lazy())
    assert before.scores.equals(after.scores)
    assert before.curves.equals(after.curves)


def test_a_book_without_collateral_sales_drops_the_channel(
    no_sale_model: RecoveryModel, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """No sale in the book: no collateral model, zero collateral cash, a line in the card."""
    assert set(no_sale_model.collections_.totals_) == {"borrower"}
    scored = no_sale_model.score(tape.lazy())
    assert (scored.scores["expected_collateral"] == 0.0).all()
    assert scored.scores["expected_borrower"].sum() > 0
    card = (no_sale_model.save(tmp_path / "m") / "model_card.md").read_text()
    assert "- Channel collateral dropped: none of the " in card
    assert "loans with collateral observed through month 60 collected anything" in card


@pytest.fixture(scope="module")
def short_model(sim: Simulation) -> RecoveryModel:
    """The model of the book's loans cut off from 2020 on, extracted on 2023-12-31."""
    as_of = date(2023, 12, 31)
    assert sim.actions is not None
    assert sim.payments is not None
    loans = sim.loans.filter(pl.col("cutoff_date") >= date(2020, 1, 1))
    ids = loans["loan_id"].implode()
    book = Dataset(
        loans=loans.lazy(),
        actions=sim.actions.filter(pl.col("loan_id").is_in(ids)).lazy(),
        payments=sim.payments.filter(
            pl.col("loan_id").is_in(ids) & (pl.col("payment_date") <= as_of)
        ).lazy(),
        as_of_date=as_of,
    )
    return _fit(book)


def test_a_book_too_short_for_the_horizon_learns_the_knots_it_observes(
    short_model: RecoveryModel, sim: Simulation
) -> None:
    """Cut-offs from 2020 and as_of 2023-12-31: curves end at month 36, the card says why."""
    model = short_model
    assert model.horizon_months == 36
    assert model.collections_.knots_[-1] == 36
    scored = model.score(sim.loans.head(50).lazy())
    assert scored.curves["month"].max() == 36
    (note,) = model.metrics_["notes"]
    assert note.startswith("Collections are learnt up to month 36, not 60: loans observed")
    assert "48 (0)" in note
    assert "60 (0)" in note


def test_valuation_of_a_short_model_states_the_horizon_it_has(
    short_model: RecoveryModel, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """`npl value` with a 60-month scenario on a 36-month model values 36 months and says so."""
    short_model.save(tmp_path / "model")
    write_dataset(tmp_path / "tape", loans=tape)
    out = tmp_path / "v"
    result = CliRunner().invoke(
        main,
        ["value", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "tape"),
         "--scenarios", str(SCENARIOS / "eu_2026.toml"), "--out", str(out), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    v = json.loads((out / "valuation.json").read_text())
    assert v["horizon_months"] == 36
    assert v["horizon_note"].startswith("valued over 36 months, not the scenario file's 60")
    assert "horizon 36 months" in result.output
    assert "note: valued over 36 months" in result.output


def test_expected_loss_of_a_short_model_states_the_horizon_it_has(
    short_model: RecoveryModel, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """`npl expected-loss` on a 36-month model discounts 36 months and says so, as `npl value`."""
    short_model.save(tmp_path / "model")
    write_dataset(tmp_path / "tape", loans=tape)
    out = tmp_path / "el"
    result = CliRunner().invoke(
        main,
        ["expected-loss", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "tape"),
         "--scenarios", str(SCENARIOS / "eu_2026.toml"), "--out", str(out), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["horizon_note"].startswith("valued over 36 months, not the scenario file's 60")
    assert "note: valued over 36 months" in result.output


@pytest.mark.slow  # the CLI trains with the full grid: about a minute on one core
def test_npl_train_prints_what_the_book_could_not_teach(
    plans_end_book: Dataset, tmp_path: Path
) -> None:
    """`npl train` on the month-36 book succeeds and prints the zero intervals as notes."""
    write_dataset(
        tmp_path / "book",
        loans=plans_end_book.loans,
        actions=plans_end_book.actions,
        payments=plans_end_book.payments,
    )
    result = CliRunner().invoke(
        main,
        ["train", "--data", str(tmp_path / "book"), "--out", str(tmp_path / "model"),
         "--no-baselines"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        "note: Channel borrower: learnt as zero (no loan collected anything) in months 37-48"
        in (result.output.replace("\n", " "))
    )


def test_a_one_segment_book_cut_off_in_one_month_trains_and_says_how() -> None:
    """500 unsecured consumer loans, one cut-off date: folds by loan, no collateral model."""
    sim = simulate(
        SimulationSettings(
            n_loans=2_000,
            seed=5,
            book_cutoff_first=date(2019, 6, 30),
            book_cutoff_last=date(2019, 6, 30),
        )
    )
    assert sim.actions is not None
    assert sim.payments is not None
    loans = sim.loans.filter(pl.col("segment") == "consumer_unsecured")
    ids = loans["loan_id"].implode()
    book = Dataset(
        loans=loans.lazy(),
        actions=sim.actions.filter(pl.col("loan_id").is_in(ids)).lazy(),
        payments=sim.payments.filter(pl.col("loan_id").is_in(ids)).lazy(),
        as_of_date=sim.settings.as_of_date,
    )
    model = RecoveryModel(grid=SMALL_GRID, baselines=True).fit(book)
    notes = model.metrics_["notes"]
    assert notes[0].startswith(f"All {loans.height:,} loans share one cut-off month")
    assert "Channel collateral dropped: no loan has collateral worth anything" in notes[1]
    scores = model.score(loans.lazy()).scores
    assert scores["p_recover"].is_between(0, 1).all()
    assert (scores["expected_collateral"] == 0).all()
    assert scores["expected_borrower"].sum() > 0
