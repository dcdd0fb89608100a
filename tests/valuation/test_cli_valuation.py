"""`npl value` and `npl expected-loss` end to end on a small simulated tape."""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from npl_engine.cli import main
from npl_engine.cli._valuation import _PathBar

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def model_and_tape(small_model_and_tape: tuple[Path, Path]) -> tuple[Path, Path]:
    """The shared small model (6,000-loan book) and its 1,500-loan tape."""
    return small_model_and_tape


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_value_writes_prices_paths_and_tranches(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """valuation.json holds the contract's keys; cash flows and paths are written."""
    model, tape = model_and_tape
    out = tmp_path / "v"
    result = _npl(
        "value", "--model", model, "--data", tape, "--scenarios", SCENARIOS / "eu_2026.toml",
        "--out", out, "--price", "50000000", "--simulations", "60", "--seed", "3",
        "--tranches", SCENARIOS / "gacs_tranches.toml",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    v = json.loads((out / "valuation.json").read_text())
    for key in ("gbv", "target_irr", "scenarios", "weighted", "irr_at_price", "moic"):
        assert key in v
    assert [s["name"] for s in v["scenarios"]] == ["base", "adverse", "severe"]
    for s in v["scenarios"]:
        for key in ("name", "weight", "gross_collections", "net_collections", "price",
                    "price_pct_gbv", "irr_at_price", "moic"):  # fmt: skip
            assert key in s
    base, adverse, severe = (s["price"] for s in v["scenarios"])
    assert base > adverse > severe > 0
    assert set(v["simulation"]["percentiles"]["price"]) == {"p5", "p25", "p50", "p75", "p95"}
    assert "tranches" in v
    flows = pl.read_parquet(out / "cashflows.parquet")
    assert set(flows.columns) >= {"scenario", "month", "gross", "costs", "net",
                                  "discount_factor", "present_value"}  # fmt: skip
    assert pl.read_parquet(out / "paths.parquet").height == 60
    assert "weighted" in result.output


def test_value_with_a_bad_scenario_file_exits_2_and_writes_nothing(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """A misspelt key is reported with the file and key; no output folder appears."""
    model, tape = model_and_tape
    bad = tmp_path / "bad.toml"
    text = (SCENARIOS / "eu_2026.toml").read_text().replace("delay_months = 6", "delay_month = 6")
    bad.write_text(text)
    out = tmp_path / "v"
    result = _npl("value", "--model", model, "--data", tape, "--scenarios", bad, "--out", out)
    assert result.exit_code == 2
    assert "delay_month" in result.output
    assert not out.exists()


def test_value_refuses_a_horizon_beyond_the_model(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """A 72-month scenario horizon with a 60-month model is a clear error, exit 2."""
    model, tape = model_and_tape
    long = tmp_path / "long.toml"
    long.write_text((SCENARIOS / "base.toml").read_text().replace("60", "72"))
    result = _npl("value", "--model", model, "--data", tape, "--scenarios", long,
                  "--out", tmp_path / "v")  # fmt: skip
    assert result.exit_code == 2
    assert "72" in result.output
    assert "60" in result.output


def test_expected_loss_writes_loans_and_summaries(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """EL = LGD × EAD per loan; per scenario and by five groupings; CSV, Excel and a record."""
    model, tape = model_and_tape
    out = tmp_path / "el"
    db = tmp_path / "audit.duckdb"
    result = _npl("expected-loss", "--model", model, "--data", tape, "--audit-db", db,
                  "--scenarios", SCENARIOS / "eu_2026.toml", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    el = pl.read_parquet(out / "expected_loss.parquet")
    assert el.height == 1_500
    assert el["lgd"].is_between(0, 1).all()
    assert ((el["el"] - el["lgd"] * el["ead"]).abs() < 1e-6).all()
    for column in ("region", "default_vintage", "months_since_default", "el_base", "el_adverse"):
        assert column in el.columns
    assert pl.read_csv(out / "expected_loss.csv").height == 1_500
    summary = json.loads((out / "summary.json").read_text())
    for key in ("segment", "legal_stage", "region", "default_vintage", "months_since_default_band"):
        assert summary[f"by_{key}"][-1][key] == "total"
        assert summary[f"by_{key}"][-1]["el"] == pytest.approx(el["el"].sum(), rel=1e-9)
    weighted = summary["by_scenario"][-1]
    assert weighted["scenario"] == "weighted"
    assert weighted["el"] == pytest.approx(
        sum(r["weight"] * r["el"] for r in summary["by_scenario"][:-1]), rel=1e-9
    )
    assert summary["discounting"] == {"basis": "contractual", "rate": None}
    sheets = pl.read_excel(out / "expected_loss.xlsx", sheet_id=0)
    assert list(sheets)[:3] == ["by_scenario", "segment", "legal_stage"]
    assert sheets["loans"].height == 1_500
    assert sheets["by_scenario"]["el"].to_list() == pytest.approx(
        [r["el"] for r in summary["by_scenario"]], rel=1e-12
    )
    listed = _npl("audit", "list", "--audit-db", db)
    assert listed.exit_code == 0, listed.output
    assert "expected-loss" in listed.output


def test_expected_loss_basel_rate_raises_lgd_of_low_rate_loans(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """--discount-rate 0.5 (far above every contractual rate) gives a higher EL, basis stated."""
    model, tape = model_and_tape
    runs = {}
    for name, extra in (("ifrs", []), ("basel", ["--discount-rate", "0.5"])):
        result = _npl("expected-loss", "--model", model, "--data", tape, "--no-audit",
                      "--scenarios", SCENARIOS / "eu_2026.toml", "--out", tmp_path / name,
                      *extra)  # fmt: skip
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())
    assert runs["basel"]["discounting"] == {"basis": "basel_workout", "rate": 0.5}
    assert runs["basel"]["by_scenario"][-1]["el"] > runs["ifrs"]["by_scenario"][-1]["el"]
    assert "Basel workout" in result.output


def test_value_bid_grid_sensitivities_tranches_and_workbook(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """The grid falls with the IRR and its 15 % point is `npl value --target-irr 0.15`.

    valuation.json gains price_grid and sensitivities; the tornado and the tranches are
    printed; the workbook opens and holds every sheet.
    """
    model, tape = model_and_tape
    out, xlsx = tmp_path / "v", tmp_path / "bid.xlsx"
    result = _npl(
        "value", "--model", model, "--data", tape, "--scenarios", SCENARIOS / "eu_2026.toml",
        "--out", out, "--irr-grid", "0.08:0.20:0.01", "--sensitivities", "--xlsx", xlsx,
        "--tranches", SCENARIOS / "gacs_tranches.toml", "--no-audit",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    v = json.loads((out / "valuation.json").read_text())
    grid = pl.DataFrame(v["price_grid"])
    assert grid["target_irr"].unique().len() == 13
    for name in ("base", "adverse", "severe", "weighted"):
        prices = grid.filter(pl.col("scenario") == name).sort("target_irr")["price"]
        assert (prices.diff().drop_nulls() < 0).all()
    single = tmp_path / "single"
    again = _npl("value", "--model", model, "--data", tape, "--scenarios",
                 SCENARIOS / "eu_2026.toml", "--out", single, "--target-irr", "0.15",
                 "--no-audit")  # fmt: skip
    assert again.exit_code == 0, again.output
    at_15 = json.loads((single / "valuation.json").read_text())
    point = grid.filter(pl.col("target_irr") == 0.15)
    assert point["price"].to_list() == [s["price"] for s in at_15["scenarios"]] + [
        at_15["weighted"]["price"]
    ]
    shocks = {(s["driver"], s["direction"]): s["change"] for s in v["sensitivities"]["shocks"]}
    assert len(shocks) == 10
    assert shocks[("collections", "down")] < 0 < shocks[("collections", "up")]
    assert shocks[("discount_rate", "down")] > 0 > shocks[("discount_rate", "up")]
    assert shocks[("delay", "down")] > 0 > shocks[("delay", "up")]
    assert shocks[("servicing_fee", "down")] > 0 > shocks[("servicing_fee", "up")]
    assert "Bid grid" in result.output
    assert "Sensitivities" in result.output
    assert "mezzanine" in result.output  # the tranche table
    assert "WAL" in result.output
    sheets = pl.read_excel(xlsx, sheet_id=0)
    assert set(sheets) == {"valuation", "price_grid", "sensitivities", "cash_flows", "strats",
                           "tranches"}  # fmt: skip
    assert sheets["price_grid"].height == 13
    assert sheets["tranches"].height == 3 * 4  # three classes × (3 scenarios + weighted)
    assert sheets["cash_flows"].height == 4 * 60


def test_value_refuses_a_repeated_target_irr_and_a_bad_grid(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """Two --target-irr, a bad --irr-grid or --xlsx, an unwritable workbook: exit 2, no output."""
    model, tape = model_and_tape
    common = ["value", "--model", model, "--data", tape, "--scenarios",
              SCENARIOS / "eu_2026.toml", "--out", tmp_path / "v", "--no-audit"]  # fmt: skip
    for extra, message in (
        (["--target-irr", "0.1", "--target-irr", "0.12"], "--irr-grid 0.1,0.12"),
        (["--irr-grid", "0.2:0.1:0.01"], "stop >= start"),
        (["--irr-grid", "ten"], "START:STOP:STEP"),
        (["--xlsx", tmp_path / "bid.csv"], ".xlsx"),
    ):
        result = _npl(*common, *extra)
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / "v").exists()
    # A workbook that cannot be written (its folder is a file) fails the run: no folder either.
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = _npl(*common, "--xlsx", blocker / "bid.xlsx")
    assert result.exit_code == 2, result.output
    assert "cannot write the workbook" in result.output
    assert not (tmp_path / "v").exists()


def test_strats_with_a_model_adds_expected_recovery(
    model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl strats --model` adds p_recover and expected collections that add up to the tape's."""
    model, tape = model_and_tape
    out = tmp_path / "s"
    result = _npl("strats", "--data", tape, "--out", out, "--model", model, "--by", "segment")
    assert result.exit_code == 0, result.output
    table = pl.read_parquet(out / "segment.parquet")
    groups, total = table.head(-1), table.row(-1, named=True)
    assert groups["expected_collections"].sum() == pytest.approx(total["expected_collections"])
    assert 0 < total["expected_recovery"] < 1
    assert table["p_recover"].is_between(0, 1).all()
    assert "exp. recovery" in result.output


def test_the_monte_carlo_bar_counts_the_paths_of_every_chunk() -> None:
    """One bar for a tape valued in 3 chunks: 3 × 100 paths, never restarting at 0."""
    with _PathBar(Console(file=io.StringIO()), rounds=3) as bar:
        seen = []
        for _chunk in range(3):
            for done in (40, 80, 100):
                bar(done, 100)
                seen.append(bar._bar.tasks[0].completed)
        task = bar._bar.tasks[0]
        assert task.total == 300
        assert task.description == "Monte Carlo, 100 paths in each of 3 chunks"
    assert seen == [40, 80, 100, 140, 180, 200, 240, 280, 300]
