"""`npl simulate` and `npl demo`: valid datasets with their truth, byte-identical per seed."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.data.simulator import SimulationSettings, simulate


def _npl(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def test_simulated_book_is_a_valid_dataset_with_truth_beside_it(tmp_path: Path) -> None:
    """A simulated book passes validation; truth/ holds per-loan truth, curves and settings."""
    out = tmp_path / "book"
    result = _npl("simulate", "--out", str(out), "--loans", "300", "--seed", "4")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "actions.parquet",
        "loans.parquet",
        "payments.parquet",
        "truth",
    ]
    data = read_dataset(out, kind="book")
    truth = pl.read_parquet(out / "truth" / "loans.parquet")
    curves = pl.read_parquet(out / "truth" / "curves.parquet")
    assert truth["loan_id"].to_list() == data.loans.collect()["loan_id"].to_list()
    assert curves.height == 300 * 60
    assert (out / "truth" / "simulation.json").read_text().count('"seed": 4') == 1


def test_same_seed_writes_same_bytes(tmp_path: Path) -> None:
    """Two runs with one seed write byte-identical files; another seed writes different ones."""
    for name, seed in (("a", "9"), ("b", "9"), ("c", "10")):
        args = ("simulate", "--out", str(tmp_path / name), "--loans", "200", "--seed", seed)
        assert _npl(*args, "--format", "csv").exit_code == 0
    for file in ("loans.csv", "actions.csv", "payments.csv", "truth/loans.parquet"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "loans.csv").read_bytes() != (
        tmp_path / "c" / "loans.csv"
    ).read_bytes()


def test_simulated_tape_in_csv_has_loans_only(tmp_path: Path) -> None:
    """A tape is loans only, one cut-off, and reads back as a valid tape from CSV."""
    out = tmp_path / "tape"
    args = ("simulate", "--out", str(out), "--loans", "150", "--kind", "tape", "--format", "csv")
    assert _npl(*args).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["loans.csv", "truth"]
    loans = read_dataset(out, kind="tape").loans.collect()
    assert loans["cutoff_date"].n_unique() == 1


def test_simulate_never_deletes_a_users_files(tmp_path: Path) -> None:
    """Writing over a folder with foreign files fails with exit 2 and leaves them untouched."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _npl("simulate", "--out", str(out), "--loans", "10")
    assert result.exit_code == 2
    assert "notes.txt" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert not list(tmp_path.glob(".*tmp"))


def test_simulate_rewrites_a_previous_simulation(tmp_path: Path) -> None:
    """A folder holding an earlier simulation is replaced as a whole."""
    out = tmp_path / "sim"
    assert _npl("simulate", "--out", str(out), "--loans", "50", "--format", "csv").exit_code == 0
    assert _npl("simulate", "--out", str(out), "--loans", "60").exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "actions.parquet",
        "loans.parquet",
        "payments.parquet",
        "truth",
    ]
    assert pl.read_parquet(out / "loans.parquet").height == 60


@pytest.mark.slow
def test_demo_runs_every_step_end_to_end(tmp_path: Path) -> None:
    """The demo simulates, validates, trains, scores and values, and leaves every output."""
    out = tmp_path / "demo"
    result = _npl("demo", "--out", str(out), "--loans", "2000")
    assert result.exit_code == 0, result.output
    for step in ("simulate a historical book", "train the recovery model", "value the tape"):
        assert step in result.output
    read_dataset(out / "book", kind="book")
    read_dataset(out / "tape", kind="tape")
    assert (out / "model" / "model_card.md").is_file()
    assert (out / "scores" / "scores.parquet").is_file()
    assert "weighted" in json.loads((out / "valuation" / "valuation.json").read_text())


def test_demo_without_its_scenario_file_stops_before_writing(tmp_path: Path) -> None:
    """Run away from the repository's root, the demo names the missing file and writes nothing."""
    out = tmp_path / "demo"
    result = _npl("demo", "--out", str(out), "--scenarios", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2, result.output
    assert "nope.toml: no such scenario file" in result.output
    assert "make demo" in result.output
    assert not out.exists()


def test_world_options_shape_the_book_and_are_recorded(tmp_path: Path) -> None:
    """World options give one segment, plans ending at 12, no sales, one cut-off month."""
    out = tmp_path / "book"
    result = _npl(
        "simulate", "--out", str(out), "--loans", "400", "--segments", "auto",
        "--borrower-payment-months", "12", "--no-collateral-sales", "--cutoff-from",
        "2024-03-31", "--cutoff-to", "2024-03-31", "--as-of", "2026-06-30",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = read_dataset(out, kind="book")
    loans = data.loans.collect()
    assert loans["segment"].cast(pl.String).unique().to_list() == ["auto"]
    assert loans["cutoff_date"].unique().to_list() == [date(2024, 3, 31)]
    payments = data.payments.collect() if data.payments is not None else None
    assert payments is not None
    assert payments["source"].unique().to_list() == ["borrower"]
    assert payments["payment_date"].max() <= date(2025, 3, 31)  # type: ignore[operator]
    settings = json.loads((out / "truth" / "simulation.json").read_text())["settings"]
    assert settings["segment_mix"] == {"auto": 0.08}
    assert (settings["borrower_payment_months"], settings["collateral_sales"]) == (12, False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--segments", "gold_bars"), "--segments: unknown segment 'gold_bars'"),
        (("--segments", "auto=lots"), "--segments: weight of 'auto' is not a number"),
        (("--cutoff-from", "2023-01-31"), "book_cutoff_first must not be after"),
    ],
)
def test_bad_world_options_are_refused_with_an_error_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """A bad world option exits 2 with an error line naming it, and writes nothing."""
    out = tmp_path / "book"
    result = _npl("simulate", "--out", str(out), "--loans", "50", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(("kind", "fmt"), [("book", "parquet"), ("tape", "csv")])
def test_chunked_simulation_writes_what_simulate_returns(
    tmp_path: Path, kind: str, fmt: str
) -> None:
    """--chunk-loans writes chunk after chunk: the files hold simulate()'s tables and truth."""
    out = tmp_path / "sim"
    args = ("--loans", "250", "--seed", "6", "--kind", kind, "--chunk-loans", "100")
    result = _npl("simulate", "--out", str(out), "--format", fmt, *args)
    assert result.exit_code == 0, result.output
    expected = simulate(
        SimulationSettings(n_loans=250, seed=6, kind=kind, chunk_loans=100)  # type: ignore[arg-type]
    )
    data = read_dataset(out, kind=kind)  # type: ignore[arg-type]
    assert data.loans.collect().equals(expected.loans)
    for name in ("actions", "payments"):
        frame = getattr(data, name)
        assert (frame is None and getattr(expected, name) is None) or frame.collect().equals(
            getattr(expected, name)
        ), name
    assert pl.read_parquet(out / "truth" / "loans.parquet").equals(expected.truth)
    assert pl.read_parquet(out / "truth" / "curves.parquet").equals(expected.curves)
    settings = json.loads((out / "truth" / "simulation.json").read_text())["settings"]
    assert settings["chunk_loans"] == 100
    n_pay = 0 if expected.payments is None else expected.payments.height
    assert f"250 loans, {n_pay:,} payments" in result.output
