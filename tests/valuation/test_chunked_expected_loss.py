"""Expected loss worked out in chunks of loans equals the in-memory run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

from npl_engine.audit import AuditStore
from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.scenarios import load_scenarios
from npl_engine.scoring import RecoveryModel
from npl_engine.valuation import ExpectedLoss, expected_loss

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "eu_2026.toml"


def assert_same_expected_loss(chunked: ExpectedLoss, whole: ExpectedLoss) -> None:
    """Per-loan rows identical; every sum within 1e-9 relative, group keys and counts exact."""
    assert_frame_equal(
        chunked.loans.lazy().collect(), whole.loans.lazy().collect(), check_exact=True
    )
    assert_frame_equal(chunked.by_scenario, whole.by_scenario, check_exact=False, rel_tol=1e-9)
    assert list(chunked.groups) == list(whole.groups)
    for by, table in whole.groups.items():
        assert chunked.groups[by][by].to_list() == table[by].to_list(), by
        assert chunked.groups[by]["loans"].to_list() == table["loans"].to_list(), by
        assert_frame_equal(chunked.groups[by], table, check_exact=False, rel_tol=1e-9)
    assert chunked.horizon_note == whole.horizon_note


@pytest.mark.parametrize("chunk_rows", [1500, 500, 215])
def test_expected_loss_in_1_3_and_7_chunks_equals_in_memory(
    small_model_and_tape: tuple[Path, Path], chunk_rows: int
) -> None:
    """1,500 loans in chunks of 1,500, 500 and 215 (1, 3 and 7 chunks): the in-memory result."""
    model = RecoveryModel.load(small_model_and_tape[0])
    tape = read_dataset(small_model_and_tape[1])
    scenarios = load_scenarios(SCENARIOS)
    whole = expected_loss(model, tape, scenarios)
    steps: list[str] = []
    chunked = expected_loss(model, tape, scenarios, chunk_rows=chunk_rows, progress=steps.append)
    assert isinstance(chunked.loans, pl.LazyFrame)
    assert chunked.n_loans == 1500
    assert_same_expected_loss(chunked, whole)
    chunks = -(-1500 // chunk_rows)
    assert sum(s.startswith("chunk ") for s in steps) == chunks
    assert f"chunk {chunks}/{chunks}: loans {(chunks - 1) * chunk_rows + 1:,} to 1,500" in steps


def test_basel_rate_in_chunks_equals_in_memory(small_model_and_tape: tuple[Path, Path]) -> None:
    """With one discount rate for every loan, chunks of 400 give the in-memory result."""
    model = RecoveryModel.load(small_model_and_tape[0])
    tape = read_dataset(small_model_and_tape[1])
    scenarios = load_scenarios(SCENARIOS)
    whole = expected_loss(model, tape, scenarios, discount_rate=0.08)
    chunked = expected_loss(model, tape, scenarios, discount_rate=0.08, chunk_rows=400)
    assert_same_expected_loss(chunked, whole)
    assert chunked.discount_basis == "basel_workout"


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_expected_loss_in_chunks_writes_the_in_memory_folder_and_record(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl expected-loss --chunk-rows 500` writes the in-memory files and decision rows."""
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    runs = {}
    for name, rows in (("whole", "0"), ("part", "500")):
        result = _npl("expected-loss", "--model", model, "--data", tape, "--audit-db", db,
                      "--scenarios", SCENARIOS, "--out", tmp_path / name,
                      "--chunk-rows", rows)  # fmt: skip
        assert result.exit_code == 0, result.output
        with AuditStore(db, read_only=True) as store:
            run = store.runs(limit=1).row(0, named=True)
            runs[name] = (result, run, store.decisions(run["run_id"]).drop("run_id"))
    assert "chunk 3/3: loans 1,001 to 1,500" in runs["part"][0].output
    assert "chunk 1/" not in runs["whole"][0].output
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert_frame_equal(
        pl.read_parquet(part / "expected_loss.parquet"),
        pl.read_parquet(whole / "expected_loss.parquet"),
        check_exact=True,
    )
    assert (part / "expected_loss.csv").read_bytes() == (whole / "expected_loss.csv").read_bytes()
    summaries = [json.loads((f / "summary.json").read_text()) for f in (part, whole)]
    assert summaries[0].keys() == summaries[1].keys()
    for key in summaries[1]:
        if key.startswith("by_"):
            for a, b in zip(summaries[0][key], summaries[1][key], strict=True):
                assert a.keys() == b.keys(), key
                for k, v in b.items():
                    assert a[k] == (v if isinstance(v, str) else pytest.approx(v, rel=1e-9))
        else:
            assert summaries[0][key] == summaries[1][key]
    sheets = [pl.read_excel(f / "expected_loss.xlsx", sheet_id=0) for f in (part, whole)]
    assert list(sheets[0]) == list(sheets[1])
    assert_frame_equal(sheets[0]["loans"], sheets[1]["loans"])
    assert_frame_equal(runs["part"][2], runs["whole"][2], check_exact=True)
    assert runs["part"][1]["n_loans"] == runs["whole"][1]["n_loans"] == 1500
    params = [json.loads(r[1]["parameters"]) for r in (runs["part"], runs["whole"])]
    assert params[0].pop("weighted_el") == pytest.approx(params[1].pop("weighted_el"), rel=1e-9)
    assert params[0] == params[1]
