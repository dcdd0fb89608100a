"""Monitoring a newer book: no flag in the same world, the right flags in shifted ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from npl_engine.cli import main
from npl_engine.data import Dataset, read_dataset, write_dataset
from npl_engine.data.simulator import SimulationSettings, simulate
from npl_engine.monitoring import MonitorReport, monitor
from npl_engine.scoring import RecoveryModel
from npl_engine.stability import ReferenceProfile


@pytest.fixture(scope="module")
def model(small_model_and_tape: tuple[Path, Path]) -> RecoveryModel:
    """The shared small model, trained on a 6,000-loan book of the default world."""
    return RecoveryModel.load(small_model_and_tape[0])


@pytest.fixture(scope="module")
def tape() -> pl.DataFrame:
    """A 3,000-loan tape of the same world as the model's book."""
    return simulate(SimulationSettings(n_loans=3_000, seed=41, kind="tape")).loans


@pytest.fixture(scope="module")
def later_book() -> Dataset:
    """A 4,000-loan book of the same world, with realised payments."""
    return simulate(SimulationSettings(n_loans=4_000, seed=42)).dataset()


def _shifted(report: MonitorReport) -> set[str]:
    return set(report.stability.filter(status="shift")["variable"].to_list())


def test_model_keeps_its_training_books_profile(model: RecoveryModel) -> None:
    """The saved model carries a profile of its 6,000 training loans, every feature and p."""
    assert isinstance(model.reference_, ReferenceProfile)
    assert model.reference_.n_loans == 6_000
    assert {"monthly_income", "segment", "region", "p_recover"} <= set(model.reference_.variables)


def test_a_tape_from_the_same_world_raises_no_flag(
    model: RecoveryModel, tape: pl.DataFrame
) -> None:
    """Same world: every PSI below the watch level (0.10), no flag, no calibration section."""
    report = monitor(model, Dataset(loans=tape.lazy()))
    assert report.flags == []
    assert report.stability["psi"].max() < 0.10
    assert report.recovery_calibration is None
    assert report.collections_calibration is None


def test_an_income_shift_flags_exactly_income(model: RecoveryModel, tape: pl.DataFrame) -> None:
    """Incomes 60 % higher: monthly_income is flagged and no other variable is."""
    shifted = tape.with_columns(pl.col("monthly_income") * 1.6)
    report = monitor(model, Dataset(loans=shifted.lazy()))
    assert _shifted(report) == {"monthly_income"}
    assert len(report.flags) == 1
    assert report.flags[0].startswith("monthly_income: PSI")


def test_a_segment_mix_shift_is_flagged_and_measured(
    model: RecoveryModel, tape: pl.DataFrame
) -> None:
    """Only secured segments kept: segment flagged; the mix table shows the tape's own shares."""
    secured = tape.filter(
        pl.col("segment").is_in(["residential_mortgage", "commercial_real_estate", "sme_secured"])
    )
    report = monitor(model, Dataset(loans=secured.lazy()))
    assert "segment" in _shifted(report)
    mix = {r["segment"]: r for r in report.segment_mix.iter_rows(named=True)}
    want = secured["segment"].cast(pl.String).value_counts(normalize=True)
    for row in want.iter_rows(named=True):
        assert mix[row["segment"]]["current_share"] == pytest.approx(row["proportion"])
    assert mix["consumer_unsecured"]["current_share"] == 0.0
    assert mix["consumer_unsecured"]["change_pp"] == pytest.approx(
        -100 * mix["consumer_unsecured"]["reference_share"]
    )


def test_a_later_book_of_the_same_world_is_calibrated(
    model: RecoveryModel, later_book: Dataset
) -> None:
    """Realised recovery and collections of a same-world book raise no flag."""
    report = monitor(model, later_book)
    assert report.flags == []
    assert report.recovery_calibration is not None
    assert report.collections_calibration is not None
    total = report.recovery_calibration.filter(band="total").row(0, named=True)
    assert total["loans"] == 4_000
    assert abs(total["realised_rate"] - total["expected_rate"]) < 0.03


def test_borrowers_paying_less_than_the_model_expects_are_flagged(
    model: RecoveryModel, later_book: Dataset
) -> None:
    """Every payment cut to 60 %: collections flagged from month 12 on; no feature moved."""
    assert later_book.payments is not None
    weaker = Dataset(
        loans=later_book.loans,
        actions=later_book.actions,
        payments=later_book.payments.with_columns(pl.col("amount") * 0.6),
        as_of_date=later_book.as_of_date,
    )
    report = monitor(model, weaker)
    assert _shifted(report) == set()
    months = {int(f.split("month ")[1].split(":")[0]) for f in report.flags if "month" in f}
    assert {12, 24, 36} <= months
    calib = report.collections_calibration
    assert calib is not None
    assert (calib["ratio"].filter(calib["month"] >= 12) < 0.8).all()


def test_npl_monitor_writes_prints_and_records(
    small_model_and_tape: tuple[Path, Path], tape: pl.DataFrame, tmp_path: Path
) -> None:
    """`npl monitor` writes monitor.json/.xlsx and stability files, prints the flag, records."""
    model_dir, _ = small_model_and_tape
    data = tmp_path / "shifted"
    write_dataset(data, loans=tape.with_columns(pl.col("monthly_income") * 1.6))
    db = tmp_path / "audit.duckdb"
    out = tmp_path / "monitor"
    result = CliRunner().invoke(
        main,
        ["monitor", "--model", str(model_dir), "--data", str(data), "--out", str(out),
         "--audit-db", str(db)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 flag(s)" in result.output
    assert "monthly_income: PSI" in result.output
    summary = json.loads((out / "monitor.json").read_text())
    assert [f.split(":")[0] for f in summary["flags"]] == ["monthly_income"]
    assert summary["thresholds"]["psi_shift"] == 0.25
    assert (
        pl.read_csv(out / "stability.csv").height
        == pl.read_parquet(out / "stability.parquet").height
    )
    sheets = pl.read_excel(out / "monitor.xlsx", sheet_id=0)
    assert list(sheets) == ["stability", "segment_mix", "flags"]
    loaded = MonitorReport.load(out)
    assert loaded.flags == summary["flags"]
    listed = CliRunner().invoke(main, ["audit", "list", "--audit-db", str(db)])
    assert "monitor" in listed.output
    assert np.isclose(loaded.stability["psi"].max(), summary["stability"][0]["psi"])
    assert read_dataset(data).loans.collect().height == 3_000


def test_npl_monitor_refuses_what_is_not_a_model(tmp_path: Path) -> None:
    """A folder without a model is a clear error, exit 2, nothing written."""
    (tmp_path / "data").mkdir()
    result = CliRunner().invoke(
        main, ["monitor", "--model", str(tmp_path), "--data", str(tmp_path / "data"),
               "--out", str(tmp_path / "m"), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "not a model folder" in result.output
    assert not (tmp_path / "m").exists()
