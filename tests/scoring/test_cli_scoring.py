"""`npl train` and `npl score` end to end on small simulated data, and their refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

from npl_engine import __version__
from npl_engine.cli import main
from npl_engine.data import read_dataset, write_dataset
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.explain import explain_loans
from npl_engine.scoring import RecoveryModel

SCORE_COLUMNS = [
    "loan_id",
    "exposure",
    "p_recover",
    "expected_collections",
    "expected_borrower",
    "expected_collateral",
    "expected_recovery_rate",
]
CURVE_COLUMNS = [
    "loan_id",
    "month",
    "expected_collections",
    "expected_borrower",
    "expected_collateral",
]
MODELS = (
    "lightgbm (calibrated)",
    "lightgbm (uncalibrated)",
    "logistic_regression",
    "random_forest",
)
N_TAPE = 800


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(".*tmp*"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a simulated book (3,000 loans) and tape (800 loans)."""
    root = tmp_path_factory.mktemp("cli_scoring")
    write_simulation(simulate(SimulationSettings(n_loans=3_000, seed=21)), root / "book")
    tape = simulate(SimulationSettings(n_loans=N_TAPE, seed=22, kind="tape"))
    write_simulation(tape, root / "tape")
    return root


@pytest.fixture(scope="module")
def trained(work: Path) -> tuple[Path, Result]:
    """`npl train` on the book: the model folder and the command's result."""
    out = work / "model"
    return out, _npl("train", "--data", work / "book", "--out", out)


@pytest.fixture(scope="module")
def scored(work: Path, trained: tuple[Path, Result]) -> tuple[Path, Result]:
    """`npl score` of the tape with the trained model: the output folder and the result."""
    out = work / "scores"
    return out, _npl("score", "--model", trained[0], "--data", work / "tape", "--out", out)


def test_train_writes_a_model_with_its_card(trained: tuple[Path, Result]) -> None:
    """Training writes the model folder, and its card has a metrics row for every model."""
    folder, result = trained
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "classifier.txt",
        "collections",
        "model.json",
        "model_card.md",
    ]
    meta = json.loads((folder / "model.json").read_text())
    assert meta["info"]["engine_version"] == __version__
    assert "gender" not in meta["feature_names"]
    metrics = meta["metrics"]["classification"]
    assert tuple(metrics) == MODELS
    card = (folder / "model_card.md").read_text()
    assert "| model | AUC | Brier | log loss | calibration error |" in card
    for name, m in metrics.items():
        row = (
            f"| {name} | {m['auc']:.4f} | {m['brier']:.4f} | {m['log_loss']:.4f} | "
            f"{m['calibration_error']:.4f} |"
        )
        assert row in card
        assert name in result.output
    assert f"wrote model {folder}" in result.output


def test_score_writes_scores_and_curves(
    work: Path, trained: tuple[Path, Result], scored: tuple[Path, Result]
) -> None:
    """Scoring writes one row per loan and per loan-month, as the model computes them."""
    out, result = scored
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["curves.parquet", "scores.parquet"]
    scores = pl.read_parquet(out / "scores.parquet")
    curves = pl.read_parquet(out / "curves.parquet")
    assert scores.columns == SCORE_COLUMNS
    assert curves.columns == CURVE_COLUMNS
    assert scores.height == N_TAPE
    assert curves.height == N_TAPE * 60
    expected = RecoveryModel.load(trained[0]).score(read_dataset(work / "tape").loans)
    assert_frame_equal(scores, expected.scores)
    assert_frame_equal(curves, expected.curves)
    assert "total" in result.output
    assert "residential_mortgage" in result.output


def test_train_refuses_a_book_without_payments(work: Path, tmp_path: Path) -> None:
    """A book with no payments file cannot train: exit 2, the reason, no model folder."""
    book = read_dataset(work / "book")
    write_dataset(tmp_path / "book", loans=book.loans, actions=book.actions)
    out = tmp_path / "model"
    result = _npl("train", "--data", tmp_path / "book", "--out", out)
    assert result.exit_code == 2, result.output
    assert "payments: file is missing" in result.output
    _assert_nothing_written(out)


def test_train_refuses_a_book_with_an_empty_payments_table(work: Path, tmp_path: Path) -> None:
    """A book whose payments table has no rows cannot train: exit 2, no model folder."""
    book = read_dataset(work / "book")
    assert book.payments is not None
    assert book.actions is not None
    loans = book.loans.head(600).collect()  # enough to get past the checks on sizes
    actions = book.actions.join(loans.lazy().select("loan_id"), on="loan_id", how="semi")
    write_dataset(tmp_path / "book", loans=loans, actions=actions, payments=book.payments.head(0))
    out = tmp_path / "model"
    result = _npl("train", "--data", tmp_path / "book", "--out", out)
    assert result.exit_code == 2, result.output
    assert "payments" in result.output
    _assert_nothing_written(out)


def test_an_unsecured_book_trains_and_scores_without_a_collateral_part(
    work: Path, tmp_path: Path
) -> None:
    """A book with no collateral (a consumer portfolio) trains; its collateral part is zero.

    No collateral boosters are written, and the loaded model scores and explains the tape.
    """
    book = read_dataset(work / "book")
    assert book.payments is not None
    assert book.actions is not None
    loans = (
        book.loans.filter(pl.col("segment").is_in(["consumer_unsecured", "sme_unsecured"]))
        .with_columns(collateral_value=0.0, senior_liens=0.0)
        .collect()
    )
    keep = loans.lazy().select("loan_id")
    payments = book.payments.join(keep, on="loan_id", how="semi").filter(
        pl.col("source") != "collateral_sale"
    )
    actions = book.actions.join(keep, on="loan_id", how="semi")
    write_dataset(tmp_path / "book", loans=loans, actions=actions, payments=payments)
    out = tmp_path / "model"
    result = _npl("train", "--data", tmp_path / "book", "--out", out)
    assert result.exit_code == 0, result.output
    assert not list((out / "collections").glob("collateral_*"))
    model = RecoveryModel.load(out)
    tape = read_dataset(work / "tape").loans
    scores = model.score(tape).scores
    assert scores.height == N_TAPE
    assert scores["expected_collateral"].abs().max() == 0.0
    assert scores["expected_borrower"].sum() > 0.0
    explained = explain_loans(model, tape, loan_ids=scores["loan_id"].head(5).to_list())
    money = explained.attributions["expected_collections"]
    assert money.output.sum() > 0.0
    assert money.base + money.contributions.sum(axis=1) == pytest.approx(money.output)


def test_score_refuses_a_missing_model_folder(work: Path, tmp_path: Path) -> None:
    """Scoring with a model folder that does not exist: exit 2, a pointer to npl train."""
    out = tmp_path / "scores"
    result = _npl("score", "--model", tmp_path / "nowhere", "--data", work / "tape", "--out", out)
    assert result.exit_code == 2, result.output
    assert "is not a model folder (no model.json); train one with `npl train`" in result.output
    _assert_nothing_written(out)


def test_score_refuses_a_model_from_another_engine_version(
    work: Path, trained: tuple[Path, Result], tmp_path: Path
) -> None:
    """A model written by another engine version is refused: exit 2, both versions named."""
    model = shutil.copytree(trained[0], tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    meta["info"]["engine_version"] = "0.0.1-other"
    (model / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "scores"
    result = _npl("score", "--model", model, "--data", work / "tape", "--out", out)
    assert result.exit_code == 2, result.output
    assert "0.0.1-other" in result.output
    assert f"this is npl_engine {__version__}" in result.output
    _assert_nothing_written(out)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("segment", "loans.segment"),  # required by the contract
        ("credit_score", "column(s) credit_score are absent or empty"),  # optional, model used it
    ],
)
def test_score_refuses_an_invalid_tape(
    work: Path, trained: tuple[Path, Result], tmp_path: Path, column: str, message: str
) -> None:
    """A tape lacking a column is refused naming it: exit 2, no scores written."""
    loans = pl.read_parquet(work / "tape" / "loans.parquet").drop(column)
    write_dataset(tmp_path / "tape", loans=loans)
    out = tmp_path / "scores"
    result = _npl("score", "--model", trained[0], "--data", tmp_path / "tape", "--out", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    _assert_nothing_written(out)


def test_validate_with_the_model_refuses_what_score_refuses(
    work: Path, trained: tuple[Path, Result], tmp_path: Path
) -> None:
    """A tape without credit_score passes `validate`, fails `validate --model` as `score` does."""
    loans = pl.read_parquet(work / "tape" / "loans.parquet").drop("credit_score")
    write_dataset(tmp_path / "tape", loans=loans)
    assert _npl("validate", tmp_path / "tape").exit_code == 0
    result = _npl("validate", tmp_path / "tape", "--model", trained[0])
    assert result.exit_code == 2, result.output
    assert f"not for the model {trained[0]}" in result.output
    assert "column(s) credit_score are absent or empty" in result.output
    assert result.stderr.startswith(f"error: {tmp_path / 'tape'} is a valid tape, but")
    ok = _npl("validate", work / "tape", "--model", trained[0])
    assert ok.exit_code == 0, ok.output
    assert "holds every column the model" in ok.output


def test_score_says_what_it_assumed_for_an_absent_column(
    work: Path, trained: tuple[Path, Result], tmp_path: Path
) -> None:
    """Without accrued_interest a note on stderr says it was taken as 0; exposure = principal."""
    loans = pl.read_parquet(work / "tape" / "loans.parquet").drop("accrued_interest")
    write_dataset(tmp_path / "tape", loans=loans)
    out = tmp_path / "scores"
    result = _npl("score", "--model", trained[0], "--data", tmp_path / "tape", "--out", out)
    assert result.exit_code == 0, result.output
    note = (
        f"note: {tmp_path / 'tape'}: loans has no accrued_interest column: taken as 0 for every "
        "loan (exposure = outstanding_principal)"
    )
    assert note in result.stderr
    scores = pl.read_parquet(out / "scores.parquet").join(loans, on="loan_id")
    assert (scores["exposure"] == scores["outstanding_principal"]).all()


def test_failed_score_leaves_earlier_scores_untouched(
    work: Path, trained: tuple[Path, Result], scored: tuple[Path, Result], tmp_path: Path
) -> None:
    """Scoring a bad tape into a folder of earlier scores fails and keeps them byte for byte."""
    out = shutil.copytree(scored[0], tmp_path / "scores")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    loans = pl.read_parquet(work / "tape" / "loans.parquet").drop("segment")
    write_dataset(tmp_path / "tape", loans=loans)
    result = _npl("score", "--model", trained[0], "--data", tmp_path / "tape", "--out", out)
    assert result.exit_code == 2, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
