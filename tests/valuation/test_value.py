"""npl.value, expected_loss, business_plan: one call each, saved and read back, as the CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import npl_engine as npl
from npl_engine.cli import main
from npl_engine.errors import NplError

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
EU = SCENARIOS / "eu_2026.toml"
TRANCHES = SCENARIOS / "gacs_tranches.toml"
OPTIONS = {
    "simulations": 40,
    "seed": 5,
    "price": 50_000_000.0,
    "irr_grid": (0.10, 0.12, 0.15),
    "sensitivities": True,
    "tranches": TRANCHES,
}


@pytest.fixture(scope="module")
def valuation(small_model_and_tape: tuple[Path, Path]) -> npl.Valuation:
    """The small tape valued with every option: grid, tornado, 40 paths, tranches, a price."""
    model, tape = small_model_and_tape
    return npl.value(model, tape, EU, **OPTIONS)  # type: ignore[arg-type]


def _same(a: npl.Valuation, b: npl.Valuation) -> None:
    assert a.to_dict() == b.to_dict()
    assert_frame_equal(a.cash_flows, b.cash_flows)
    for name in ("price_grid", "sensitivities", "paths"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert_frame_equal(x, y)


def test_value_saves_and_loads_back_the_same_valuation(
    valuation: npl.Valuation, tmp_path: Path
) -> None:
    """Valuation.load(v.save(folder)) holds the same frames and dicts; saved again, same bytes."""
    folder = valuation.save(tmp_path / "v")
    assert sorted(p.name for p in folder.iterdir()) == sorted(npl.valuation.VALUE_FILES)
    loaded = npl.Valuation.load(folder)
    _same(loaded, valuation)
    assert loaded.portfolio is None
    again = loaded.save(tmp_path / "again")
    assert (again / "valuation.json").read_bytes() == (folder / "valuation.json").read_bytes()
    # The options asked for are all there.
    assert valuation.price_grid is not None
    assert valuation.price_grid["target_irr"].unique().len() == 3
    assert valuation.paths is not None
    assert valuation.paths.height == 40
    assert valuation.tranches is not None
    assert valuation.tranches["price"] == OPTIONS["price"]


def test_by_scenario_is_one_row_per_scenario_then_the_weighted_one(
    valuation: npl.Valuation,
) -> None:
    """Each scenario's figures in the file's order, the weighted row last.

    The weighted price prices the weight-averaged cash flows, so it lies between the scenarios'.
    """
    table = valuation.by_scenario
    names = [s.name for s in valuation.scenarios]
    assert table["name"].to_list() == [*names, valuation.weighted.name]
    assert table.row(0, named=True) == valuation.scenarios[0].to_dict()
    assert table.row(-1, named=True) == valuation.weighted.to_dict()
    prices = table["price"].head(len(names))
    assert prices.min() <= table["price"][-1] <= prices.max()


def test_value_writes_what_npl_value_writes(
    valuation: npl.Valuation, small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """The library's folder and workbook equal those of `npl value` with the same options."""
    model, tape = small_model_and_tape
    out, xlsx = tmp_path / "cli", tmp_path / "cli.xlsx"
    result = CliRunner().invoke(
        main,
        ["value", "--model", str(model), "--data", str(tape), "--scenarios", str(EU),
         "--out", str(out), "--simulations", "40", "--seed", "5", "--price", "50000000",
         "--irr-grid", "0.10,0.12,0.15", "--sensitivities", "--tranches", str(TRANCHES),
         "--xlsx", str(xlsx), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    mine = valuation.save(tmp_path / "lib")
    assert (mine / "valuation.json").read_bytes() == (out / "valuation.json").read_bytes()
    for name in ("cashflows.parquet", "paths.parquet"):
        assert_frame_equal(pl.read_parquet(mine / name), pl.read_parquet(out / name))
    book = pl.read_excel(valuation.to_excel(tmp_path / "lib.xlsx"), sheet_id=0)
    theirs = pl.read_excel(xlsx, sheet_id=0)
    assert list(book) == list(theirs)
    for sheet, frame in book.items():
        assert_frame_equal(frame, theirs[sheet], check_exact=False, rel_tol=1e-12)


def test_a_loaded_valuations_workbook_has_every_sheet_but_the_strats(
    valuation: npl.Valuation, tmp_path: Path
) -> None:
    """A valuation read from a folder has no tape: its workbook leaves out only the strats."""
    loaded = npl.Valuation.load(valuation.save(tmp_path / "v"))
    sheets = pl.read_excel(loaded.to_excel(tmp_path / "loaded.xlsx"), sheet_id=0)
    full = pl.read_excel(valuation.to_excel(tmp_path / "full.xlsx"), sheet_id=0)
    assert set(full) - set(sheets) == {"strats"}
    with pytest.raises(NplError, match="per-loan"):
        loaded.loan_values()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"simulations": -1}, "simulations"),
        ({"irr_grid": (0.1, -2.0)}, "irr_grid"),
        ({"target_irr": -1.5}, "target_irr"),
        ({"price": 0.0}, "price must be positive"),
        ({"tranches": 42}, "tranches: expected"),
        ({"sensitivities": "yes"}, "sensitivities: expected"),
    ],
)
def test_value_refuses_a_bad_argument_with_a_clear_error(
    small_model_and_tape: tuple[Path, Path], options: dict[str, object], message: str
) -> None:
    """Each bad argument raises NplError naming it, before any scoring."""
    model, tape = small_model_and_tape
    with pytest.raises(NplError, match=message):
        npl.value(model, tape, EU, **options)  # type: ignore[arg-type]


def test_value_refuses_a_model_that_is_not_one(small_model_and_tape: tuple[Path, Path]) -> None:
    """A model argument of the wrong type is an NplError, not a traceback from inside."""
    _, tape = small_model_and_tape
    with pytest.raises(NplError, match="model: expected a RecoveryModel"):
        npl.value(3, tape, EU)  # type: ignore[arg-type]


def test_loading_a_folder_that_is_not_a_valuation_says_so(tmp_path: Path) -> None:
    """Valuation.load and ExpectedLoss.load of an empty folder name the missing file."""
    with pytest.raises(NplError, match=r"valuation\.json is missing"):
        npl.Valuation.load(tmp_path)
    with pytest.raises(NplError, match=r"summary\.json is missing"):
        npl.ExpectedLoss.load(tmp_path)


def test_expected_loss_saves_loads_and_equals_the_cli(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """npl.expected_loss(...).save writes what `npl expected-loss` writes; load reads it back."""
    model, tape = small_model_and_tape
    el = npl.expected_loss(model, tape, EU, discount_rate=0.08)
    folder = el.save(tmp_path / "lib")
    loaded = npl.ExpectedLoss.load(folder)
    assert loaded.summary() == el.summary()
    assert_frame_equal(loaded.loans, el.loans)
    assert_frame_equal(loaded.by_scenario, el.by_scenario)
    assert list(loaded.groups) == list(el.groups)
    for key, frame in el.groups.items():
        assert_frame_equal(loaded.groups[key], frame)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        ["expected-loss", "--model", str(model), "--data", str(tape), "--scenarios", str(EU),
         "--out", str(out), "--discount-rate", "0.08", "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # Per loan, byte for byte; the group sums of Polars' parallel group-by may differ in
    # their last bit from run to run, so those are compared to 1e-12.
    assert (folder / "expected_loss.csv").read_bytes() == (out / "expected_loss.csv").read_bytes()
    theirs = npl.ExpectedLoss.load(out)
    assert_frame_equal(theirs.by_scenario, el.by_scenario, check_exact=False, rel_tol=1e-12)
    for key, frame in el.groups.items():
        assert_frame_equal(theirs.groups[key], frame, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(
        pl.read_parquet(folder / "expected_loss.parquet"),
        pl.read_parquet(out / "expected_loss.parquet"),
    )
    assert json.loads((folder / "summary.json").read_text())["discounting"] == {
        "basis": "basel_workout",
        "rate": 0.08,
    }


def test_expected_loss_refuses_a_rate_not_above_minus_one(
    small_model_and_tape: tuple[Path, Path],
) -> None:
    """discount_rate=-1 is an NplError naming the argument."""
    model, tape = small_model_and_tape
    with pytest.raises(NplError, match="discount_rate"):
        npl.expected_loss(model, tape, EU, discount_rate=-1.0)


def test_business_plan_saves_loads_and_equals_npl_plan(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """business_plan saves what `npl plan` writes, loads back, and backtest reads the folder."""
    model, _ = small_model_and_tape
    tape = tmp_path / "tape"
    npl.write_simulation(
        npl.simulate(
            npl.SimulationSettings(n_loans=2_000, seed=5, kind="tape", realised_months=12)
        ),
        tape,
    )
    plan = npl.business_plan(model, tape, EU, simulations=20, seed=1)
    folder = plan.save(tmp_path / "lib")
    loaded = npl.BusinessPlan.load(folder)
    assert loaded.to_dict() == plan.to_dict()
    assert_frame_equal(loaded.periods, plan.periods)
    assert plan.bands is not None
    assert loaded.bands is not None
    assert_frame_equal(loaded.bands, plan.bands)
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        main,
        ["plan", "--model", str(model), "--data", str(tape), "--scenarios", str(EU),
         "--out", str(out), "--simulations", "20", "--seed", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for name in ("plan.parquet", "bands.parquet", "loans.parquet"):
        assert_frame_equal(pl.read_parquet(folder / name), pl.read_parquet(out / name))
    theirs = json.loads((out / "plan.json").read_text())
    mine = json.loads((folder / "plan.json").read_text())
    assert {k: v for k, v in mine.items() if k != "settings"} == {
        k: v for k, v in theirs.items() if k != "settings"
    }
    checked = npl.backtest(folder, npl.read_dataset(tape), as_of=date(2027, 9, 30))
    assert checked.total["period"].to_list() == [1, 2, 3, 4]


def test_business_plan_and_backtest_refuse_bad_inputs_clearly(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """Many cut-off dates, a negative path count, a tape without payments: clear NplErrors."""
    model, tape = small_model_and_tape
    with pytest.raises(NplError, match="simulations"):
        npl.business_plan(model, tape, EU, simulations=-5)
    book = tmp_path / "book"
    npl.write_simulation(npl.simulate(npl.SimulationSettings(n_loans=2_000, seed=7)), book)
    with pytest.raises(NplError, match="one common cut-off date"):
        npl.business_plan(model, book, EU)
    plan = npl.business_plan(model, tape, EU)
    with pytest.raises(NplError, match="no payments table"):
        npl.backtest(plan, npl.read_dataset(tape))


def test_the_reports_valuation_is_npl_values(small_model_and_tape: tuple[Path, Path]) -> None:
    """gather() prices, bids and stresses the tape with npl.value: the same figures."""
    from npl_engine.report import gather  # noqa: PLC0415 - only this test needs the report

    model_dir, tape_dir = small_model_and_tape
    model, tape, scenarios = (
        npl.RecoveryModel.load(model_dir),
        npl.read_dataset(tape_dir),
        npl.load_scenarios(EU),
    )
    page = gather(model, tape, scenarios, title="t", simulations=30, seed=2, irr_grid=(0.1, 0.2))
    mine = npl.value(
        model, tape, scenarios, simulations=30, seed=2, irr_grid=(0.1, 0.2), sensitivities=True
    )
    assert page.valuation == mine.prices.to_dict() | {
        "price_grid": mine.to_dict()["price_grid"],
        "sensitivities": mine.to_dict()["sensitivities"]["shocks"],
    }
    assert page.simulation == mine.simulation
    assert page.facts["n_loans"] == mine.n_loans
