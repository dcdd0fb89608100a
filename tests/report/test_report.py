"""`npl report`: one self-contained HTML file, checked in a real browser (headless Chromium)."""

from __future__ import annotations

import os
import re
import shutil
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result

import _small_model
from _browser import chromium, render
from npl_engine.cli import main
from npl_engine.data.simulator import write_simulation
from npl_engine.report import _plots
from npl_engine.report._build import _backtest_section
from npl_engine.report._html import _backtest
from npl_engine.valuation import backtest, portfolio_business_plan
from valuation.builders import make_portfolio, scenario_set

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The shared small model (4,000-loan book) saved, its book and a 2,500-loan tape on disk."""
    root = tmp_path_factory.mktemp("report")
    _small_model.trained_model().save(root / "model")
    write_simulation(_small_model.book(), root / "book")
    write_simulation(_small_model.explain_tape(), root / "tape")
    return root / "model", root / "book", root / "tape"


@pytest.fixture(scope="module")
def report(folders: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the tape: fairness checked on the book, 200 Monte Carlo paths, monitoring."""
    model, book, tape = folders
    out = tmp_path_factory.mktemp("report_out") / "report.html"
    monitored = _npl("monitor", "--model", model, "--data", tape, "--no-audit",
                     "--out", out.parent / "monitor")  # fmt: skip
    assert monitored.exit_code == 0, monitored.output
    result = _npl(
        "report", "--model", model, "--data", tape, "--scenarios", SCENARIOS / "eu_2026.toml",
        "--fairness-book", book, "--simulations", "200", "--out", out,
        "--monitor", out.parent / "monitor",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    return out


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_report_is_one_file_that_refers_to_nothing_outside(report: Path) -> None:
    """Every src and href is inline (data:) or an anchor; a CSP forbids any other request."""
    html = report.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs
    assert all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs]
    assert "<script" not in html
    assert "default-src 'none'" in html
    assert len(re.findall(r'<img class="chart" src="data:image/svg\+xml;base64,', html)) == 8
    for anchor in ("portfolio", "collections", "price", "bid", "drivers", "effects", "fairness",
                   "monitoring", "model"):  # fmt: skip
        assert f'<section id="{anchor}">' in html
    assert "No flags: the book looks like the one the model learned from." in html
    # The bid grid and the tornado, with its table of the ten shocks.
    assert "Bid grid and sensitivities" in html
    assert "servicing fee" in html
    assert "+6 months" in html
    # Without --effects the section says so; fairness is there; so is the model card.
    assert "Not included: this report was built without <code>--effects" in html
    assert "No flag raised" in html or "four-fifths rule" in html
    assert "Lombardia" in html
    assert "lightgbm (calibrated)" in html


def test_report_opens_in_chromium_without_errors_or_requests(report: Path, tmp_path: Path) -> None:
    """Headless Chromium shows the page with no console message and no network request."""
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI installs it")
    shot = tmp_path / "report.png"
    seen = render(report, shot, height=6400)
    assert seen.console == []
    assert seen.requests == []
    assert shot.stat().st_size > 50_000  # a blank page is a few kB
    keep = os.environ.get("NPL_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")


def test_the_browser_check_catches_errors_and_requests(tmp_path: Path) -> None:
    """The check itself can fail: a console error and an outside image are both seen."""
    if chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing on CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed here (apt-get install chromium); CI installs it")
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><script>console.error("boom")</script>'
        '<img src="http://127.0.0.1:9/x.png"></body></html>'
    )
    seen = render(page, tmp_path / "bad.png", height=300)
    assert any("boom" in m for m in seen.console)
    assert seen.requests == ["http://127.0.0.1:9/x.png"]


def test_effects_chart_and_section_render() -> None:
    """The effects chart draws average effects, per-loan effects and policy values."""
    rng = np.random.default_rng(0)
    ates = [
        {"action": "letter", "ate": 0.01, "ci_low": 0.0, "ci_high": 0.02},
        {"action": "settlement_offer", "ate": 0.1, "ci_low": 0.08, "ci_high": 0.12},
    ]
    policies = pl.DataFrame(
        {"policy": ["plan", "no action", "letter for all"], "expected_net": [5e6, 0.0, 1e6]}
    )
    uri = _plots.effects(
        ates,
        {"letter": rng.normal(0.01, 0.01, 200), "settlement_offer": rng.normal(0.1, 0.05, 200)},
        policies,
        unit="share of exposure",
    )
    assert uri.startswith("data:image/svg+xml;base64,")
    assert len(uri) > 10_000


def test_bad_scenario_file_exits_2_and_writes_nothing(
    folders: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A misspelt scenario key is named; no report file appears."""
    model, _, tape = folders
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (SCENARIOS / "base.toml").read_text().replace("collections_multiplier", "colections_mult")
    )
    out = tmp_path / "r.html"
    result = _npl("report", "--model", model, "--data", tape, "--scenarios", bad, "--out", out)
    assert result.exit_code == 2
    assert "colections_mult" in result.output
    assert not out.exists()


def test_out_must_be_an_html_file(folders: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """--out report.pdf is refused before any work."""
    model, _, tape = folders
    out = tmp_path / "r.pdf"
    result = _npl(
        "report", "--model", model, "--data", tape, "--scenarios", SCENARIOS / "base.toml",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 2
    assert ".html" in result.output
    assert not out.exists()


def test_backtest_section_renders_its_chart_and_flags(tmp_path: Path) -> None:
    """A backtest folder becomes a chart and a table that marks the period below threshold."""
    plan = portfolio_business_plan(
        make_portfolio(np.full((1, 6), 10.0)),
        scenario_set(horizon_months=6, target_irr=0.0),
        cutoff_date=date(2026, 9, 30),
    )
    pays = pl.DataFrame(
        {
            "loan_id": ["L0"] * 2,
            "payment_date": [date(2026, 10, 15), date(2027, 2, 15)],
            "amount": [30.0, 10.0],
            "source": ["borrower", "borrower"],
        }
    )
    backtest(plan, pays, as_of=date(2027, 3, 31)).save(tmp_path / "bt")
    section, chart = _backtest_section(tmp_path / "bt", lambda _: None)
    assert chart.startswith("data:image/svg+xml;base64,")
    assert [p["breach"] for p in section["periods"]] == [False, True]
    html = _backtest(SimpleNamespace(backtest=section, charts={"backtest": chart}))  # type: ignore[arg-type]
    assert "First period below 90% of plan: 2." in html
    assert html.count("below threshold") == 1


def test_effects_section_shows_checks_reasons_validation_and_the_curve() -> None:
    """The section separates 'against zero' from failed checks and shows reasons and curve."""
    from npl_engine.report._build import ReportData  # noqa: PLC0415
    from npl_engine.report._html import _effects  # noqa: PLC0415

    curve = pl.DataFrame(
        {"budget": [0.0, 1e4], "expected_gain": [0.0, 5e5], "gain_low": [0.0, 1e5],
         "gain_high": [0.0, 9e5], "gain_only_letter": [0.0, 2e5]}
    )  # fmt: skip
    checks = {
        "letter": {
            "effect": "not distinguishable from zero",
            "assumptions": "checks passed",
            "failures": [],
            "statuses": {
                "placebo": "pass",
                "random_common_cause": "pass",
                "data_subset": "pass",
                "sensitivity": "not applicable",
            },
        }
    }
    effects = {
        "outcome": "recovery_rate", "method": "m", "budget": 1e4, "comparison": [],
        "actions": [{"action": "letter", "ate": 0.001, "ci_low": -0.01, "ci_high": 0.012}],
        "checks": checks, "plan_band": [1e5, 9e5], "saturation_spend": 12_345.0,
        "validation": {"letter": {
            "calibration": {"groups": [{"group": 1, "predicted": 0.01, "doubly_robust": 0.02}],
                            "slope": 0.8},
            "toc": {"autoc": 0.004, "autoc_ci": [-0.001, 0.009]}}},
        "settlement": None,
    }  # fmt: skip
    chart = _plots.gain_curve(curve, ["letter"])
    data = ReportData(
        title="t", created="now", facts={}, valuation={}, simulation=None, effects=effects,
        fairness=None, fairness_groups=None, model={},
        charts={"effects": chart, "gain_curve": chart},
    )  # fmt: skip
    html = _effects(data)
    assert "not distinguishable from zero" in html
    assert "not applicable" in html
    assert "assumption check failed" not in html
    assert "+0.0040 [-0.0010, +0.0090]" in html
    assert "Spending stops paying past 12,345" in html
