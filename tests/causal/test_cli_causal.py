import json
import zipfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

import npl_engine.causal
from npl_engine.causal import DRLearnerEstimator
from npl_engine.cli import main
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.errors import NplError


def test_effects_then_policy_on_a_tape(tmp_path: Path) -> None:
    """`npl effects` writes effects.json, cate.parquet and a model; `npl policy` plans a tape."""
    book, tape, out = tmp_path / "book", tmp_path / "tape", tmp_path / "eff"
    write_simulation(simulate(SimulationSettings(n_loans=4000, seed=3, kind="book")), book)
    write_simulation(simulate(SimulationSettings(n_loans=500, seed=4, kind="tape")), tape)
    runner = CliRunner()
    res = runner.invoke(
        main, ["effects", "--data", str(book), "--out", str(out), "--no-refutations"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads((out / "effects.json").read_text())
    assert report["outcome"] == "recovery_rate"
    assert report["horizon_months"] == 60
    assert report["excluded_censored"] > 0
    assert [a["action"] for a in report["actions"]] == [
        "letter", "call", "settlement_offer", "legal_action"
    ]  # fmt: skip
    assert {"ate", "ci_low", "ci_high", "naive_difference", "n"} <= set(report["actions"][0])
    for action in ("letter", "call", "settlement_offer", "legal_action"):
        checks = report["validation"][action]
        assert {"groups", "slope"} <= set(checks["calibration"])
        assert len(checks["toc"]["toc"]) == len(checks["toc"]["shares"])
        low, high = checks["toc"]["autoc_ci"]
        assert low <= high
    cate = pl.read_parquet(out / "cate.parquet")
    assert cate.height == 4000
    assert {"cate_call", "cate_call_low", "cate_call_high"} <= set(cate.columns)
    plan_file = tmp_path / "plan.parquet"
    res = runner.invoke(
        main,
        ["policy", "--effects", str(out), "--data", str(tape), "--budget", "5000",
         "--out", str(plan_file)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    plan = pl.read_parquet(plan_file)
    assert plan.columns[:6] == [
        "loan_id", "action", "expected_uplift", "cost", "uplift_low", "uplift_high"
    ]  # fmt: skip
    assert (plan["uplift_low"] <= plan["expected_uplift"]).all()
    assert (plan["expected_uplift"] <= plan["uplift_high"]).all()
    assert plan.height == 500
    assert plan["cost"].sum() <= 5000 + 1e-6
    assert "business as usual" in res.output
    _check_plan_formats(runner, out, tape, plan, tmp_path)
    # The gain curve: a folder whose point at 5,000 is the plan above.
    curve_dir = tmp_path / "curve"
    res = runner.invoke(
        main,
        ["policy", "--effects", str(out), "--data", str(tape), "--budgets", "0,5000,1e9",
         "--out", str(curve_dir), "--no-audit"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "spending stops paying past" in res.output
    curve = pl.read_parquet(curve_dir / "curve.parquet")
    assert {"budget", "spend", "expected_gain", "gain_low", "gain_high"} <= set(curve.columns)
    point = curve.filter(pl.col("budget") == 5000).row(0, named=True)
    assert point["expected_gain"] == pytest.approx(plan["expected_uplift"].sum())
    assert pl.read_parquet(curve_dir / "plan_5000.parquet")["action"].equals(plan["action"])
    assert (curve["expected_gain"].diff().drop_nulls() >= 0).all()


def _check_plan_formats(
    runner: CliRunner, out: Path, tape: Path, plan: pl.DataFrame, tmp_path: Path
) -> None:
    """The same plan written as .csv, .json and .xlsx holds the Parquet plan's rows."""
    for suffix in (".csv", ".json", ".xlsx"):  # the suffix names the format written
        other = tmp_path / f"plan{suffix}"
        res = runner.invoke(
            main,
            ["policy", "--effects", str(out), "--data", str(tape), "--budget", "5000",
             "--out", str(other), "--no-audit"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        if suffix == ".csv":
            assert_frame_equal(pl.read_csv(other, schema=plan.schema), plan)
        elif suffix == ".json":
            assert_frame_equal(
                pl.DataFrame(json.loads(other.read_text()), schema=plan.schema), plan
            )
        else:
            with zipfile.ZipFile(other) as book:  # an Office Open XML workbook
                assert "xl/worksheets/sheet1.xml" in book.namelist()
                sheet = book.read("xl/worksheets/sheet1.xml").decode()
            assert sheet.count("<row ") == plan.height + 1


@pytest.mark.parametrize(("choice", "expected"), [("causal-forest", None), ("dr-learner", 7)])
def test_effects_estimator_option_reaches_estimate_effects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, choice: str, expected: int | None
) -> None:
    """--estimator dr-learner passes a DR learner seeded with --seed; the default passes none."""
    seen: dict[str, Any] = {}

    def fake(book: object, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise NplError("stopped after the arguments")

    monkeypatch.setattr(npl_engine.causal, "estimate_effects", fake)
    book = tmp_path / "book"
    write_simulation(simulate(SimulationSettings(n_loans=200, seed=3, kind="book")), book)
    res = CliRunner().invoke(
        main,
        ["effects", "--data", str(book), "--out", str(tmp_path / "e"), "--seed", "7",
         "--estimator", choice],
    )  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "stopped after the arguments" in res.output
    estimator = seen["estimator"]
    if expected is None:
        assert estimator is None
    else:
        assert isinstance(estimator, DRLearnerEstimator)
        assert estimator.seed == expected
