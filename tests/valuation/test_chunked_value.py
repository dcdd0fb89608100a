"""A tape valued in chunks of loans equals the in-memory valuation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

import npl_engine as npl
from npl_engine.audit import AuditStore
from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.errors import NplError
from npl_engine.scenarios import load_scenarios
from npl_engine.scoring import RecoveryModel

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
EU = SCENARIOS / "eu_2026.toml"
TRANCHES = SCENARIOS / "gacs_tranches.toml"
RTOL = 1e-9
#: Every option that sums over loans: 200 paths, a bid grid, the tornado, the tranches.
OPTIONS: dict[str, Any] = {
    "simulations": 200,
    "seed": 7,
    "irr_grid": (0.08, 0.10, 0.12, 0.15),
    "sensitivities": True,
    "tranches": TRANCHES,
}


def assert_close(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts and lists equal: strings, counts and None exactly, floats to 1e-9."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert list(a) == list(b), where
        for key in a:
            assert_close(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list), where
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9) or (
            math.isnan(a) and math.isnan(b)
        ), f"{where}: {a} vs {b}"
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def _cell(x: Any) -> Any:
    """A workbook cell as a number if it reads as one (a text column mixes labels and figures)."""
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return x
    return x


def assert_same_workbook(mine: Path, theirs: Path) -> None:
    """The same sheets, columns and labels; every figure within 1e-9 relative."""
    a, b = pl.read_excel(mine, sheet_id=0), pl.read_excel(theirs, sheet_id=0)
    assert list(a) == list(b)
    assert "strats" in a
    for sheet, frame in a.items():
        other = b[sheet]
        assert frame.columns == other.columns, sheet
        for column in frame.columns:
            assert_close(
                [_cell(x) for x in frame[column].to_list()],
                [_cell(x) for x in other[column].to_list()],
                f"{sheet}.{column}",
            )


def assert_same_valuation(chunked: npl.Valuation, whole: npl.Valuation) -> None:
    """Every figure within 1e-9 relative, every frame too, the per-loan values identical."""
    assert_close(chunked.to_dict(), whole.to_dict())
    assert_frame_equal(chunked.cash_flows, whole.cash_flows, check_exact=False, rel_tol=RTOL)
    for name in ("price_grid", "sensitivities", "paths"):
        x, y = getattr(chunked, name), getattr(whole, name)
        assert x is not None, name
        assert y is not None, name
        assert_frame_equal(x, y, check_exact=False, rel_tol=RTOL, abs_tol=1e-9)
    assert_frame_equal(
        chunked.loan_values().lazy().collect(),
        whole.loan_values().lazy().collect(),
        check_exact=True,
    )


@pytest.fixture(scope="module")
def inputs(
    small_model_and_tape: tuple[Path, Path],
) -> tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet]:
    """The shared small model, its 1,500-loan tape and the EU scenarios, read once."""
    model, tape = small_model_and_tape
    return RecoveryModel.load(model), read_dataset(tape), load_scenarios(EU)


@pytest.fixture(scope="module")
def whole(inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet]) -> npl.Valuation:
    """The tape valued in memory with every option."""
    return npl.value(*inputs, chunk_rows=0, **OPTIONS)


@pytest.mark.parametrize("chunk_rows", [1500, 500, 215])
def test_value_in_1_3_and_7_chunks_equals_in_memory(
    inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet],
    whole: npl.Valuation,
    chunk_rows: int,
) -> None:
    """1,500 loans in chunks of 1,500, 500 and 215: prices, grid, tornado, paths, tranches."""
    steps: list[str] = []
    chunked = npl.value(*inputs, chunk_rows=chunk_rows, progress=steps.append, **OPTIONS)
    assert chunked.portfolio is None
    assert isinstance(chunked.loan_values(), pl.LazyFrame)
    assert chunked.n_loans == 1500
    assert_same_valuation(chunked, whole)
    chunks = -(-1500 // chunk_rows)
    assert sum(s.startswith("chunk ") for s in steps) == chunks
    assert f"chunk {chunks}/{chunks}: loans {(chunks - 1) * chunk_rows + 1:,} to 1,500" in steps
    # The tranches and the Monte Carlo were really run, on every path.
    assert chunked.paths is not None
    assert chunked.paths.height == OPTIONS["simulations"]
    assert chunked.tranches is not None
    assert chunked.tranches["simulation"]["n_paths"] == OPTIONS["simulations"]


def test_one_chunk_gives_the_in_memory_figures_bit_for_bit(
    inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet], whole: npl.Valuation
) -> None:
    """A chunk as large as the tape adds nothing to anything: the same numbers exactly."""
    chunked = npl.value(*inputs, chunk_rows=10_000, **OPTIONS)
    assert chunked.to_dict() == whole.to_dict()


def test_the_default_values_a_small_tape_in_memory(
    inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet],
) -> None:
    """chunk_rows=None: a tape of no more than 250,000 loans is valued in memory."""
    v = npl.value(*inputs)
    assert v.portfolio is not None
    assert isinstance(v.loan_values(), pl.DataFrame)


def test_a_chunked_valuation_saves_and_writes_its_workbook(
    inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet],
    whole: npl.Valuation,
    tmp_path: Path,
) -> None:
    """A valuation in chunks saves, loads and writes its workbook, strats equal to in memory."""
    chunked = npl.value(*inputs, chunk_rows=400, **OPTIONS)
    folder = chunked.save(tmp_path / "v")
    assert_close(npl.Valuation.load(folder).to_dict(), whole.to_dict())
    assert_same_workbook(
        chunked.to_excel(tmp_path / "chunked.xlsx"), whole.to_excel(tmp_path / "whole.xlsx")
    )


@pytest.mark.parametrize("chunk_rows", [-1, 2.5, True])
def test_value_refuses_a_bad_chunk_size(
    inputs: tuple[RecoveryModel, npl.Dataset, npl.ScenarioSet], chunk_rows: object
) -> None:
    """A negative, fractional or boolean chunk_rows is refused, naming the argument."""
    with pytest.raises(NplError, match="chunk_rows"):
        npl.value(*inputs, chunk_rows=chunk_rows)  # type: ignore[arg-type]


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_value_in_chunks_writes_the_in_memory_folder_and_record(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl value --chunk-rows 400` writes the in-memory files, workbook and decision rows."""
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    runs = {}
    for name, rows in (("whole", "0"), ("part", "400")):
        result = _npl(
            "value", "--model", model, "--data", tape, "--scenarios", EU,
            "--out", tmp_path / name, "--xlsx", tmp_path / f"{name}.xlsx",
            "--simulations", "200", "--seed", "7", "--price", "50000000",
            "--irr-grid", "0.08:0.12:0.02", "--sensitivities", "--tranches", TRANCHES,
            "--audit-db", db, "--chunk-rows", rows,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        with AuditStore(db, read_only=True) as store:
            run = store.runs(limit=1).row(0, named=True)
            runs[name] = (result, run, store.decisions(run["run_id"]).drop("run_id"))
    assert "chunk 4/4: loans 1,201 to 1,500" in runs["part"][0].output
    assert "chunk 1/" not in runs["whole"][0].output
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in whole.iterdir())
    assert_close(
        json.loads((part / "valuation.json").read_text()),
        json.loads((whole / "valuation.json").read_text()),
    )
    for name in ("cashflows.parquet", "paths.parquet"):
        assert_frame_equal(
            pl.read_parquet(part / name),
            pl.read_parquet(whole / name),
            check_exact=False,
            rel_tol=RTOL,
            abs_tol=1e-9,
        )
    assert_same_workbook(tmp_path / "part.xlsx", tmp_path / "whole.xlsx")
    assert_frame_equal(runs["part"][2], runs["whole"][2], check_exact=True)
    assert runs["part"][1]["n_loans"] == runs["whole"][1]["n_loans"] == 1500
    params = [json.loads(r[1]["parameters"]) for r in (runs["part"], runs["whole"])]
    assert params[0].pop("weighted_price") == pytest.approx(
        params[1].pop("weighted_price"), rel=RTOL
    )
    assert params[0] == params[1]


@pytest.mark.parametrize("bad", ["-5", "many"])
def test_cli_value_refuses_a_bad_chunk_size(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path, bad: str
) -> None:
    """--chunk-rows -5 or 'many' stops with a message naming the option; nothing is written."""
    model, tape = small_model_and_tape
    out = tmp_path / "v"
    result = _npl("value", "--model", model, "--data", tape, "--scenarios", EU, "--out", out,
                  "--chunk-rows", bad, "--no-audit")  # fmt: skip
    assert result.exit_code != 0
    assert "--chunk-rows" in result.output
    assert not out.exists()
