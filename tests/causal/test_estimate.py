"""The effects bundle: save and load round trip, the one clear error, plans equal the CLI's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal, assert_series_equal

from npl_engine.audit import AuditStore
from npl_engine.causal import ActionEffectModel, Effects, policy_inputs, settlement_economics
from npl_engine.cli import main
from npl_engine.data import Dataset, write_dataset
from npl_engine.data.simulator import SimulationSettings, simulate
from npl_engine.errors import NplError

_SETTLEMENT = ("collections_without_offer", "collections_with_offer", "amount_waived")


@pytest.fixture(scope="module")
def effects() -> Effects:
    """Effects on a 3,000-loan book, small nuisance models, no refutations."""
    book = simulate(SimulationSettings(n_loans=3000, seed=3)).dataset()
    model = ActionEffectModel(n_estimators=30, n_trees=40, seed=0).fit(book)
    return Effects.from_model(model, book, refutations=False)


@pytest.fixture(scope="module")
def folder(effects: Effects, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The effects saved as `npl effects --out` writes them."""
    return effects.save(tmp_path_factory.mktemp("effects") / "effects")


@pytest.fixture(scope="module")
def tape(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 400-loan tape folder."""
    sim = simulate(SimulationSettings(n_loans=400, seed=7, kind="tape"))
    root = tmp_path_factory.mktemp("tape") / "tape"
    write_dataset(root, loans=sim.loans)
    return root


def test_the_folder_holds_what_npl_effects_writes(effects: Effects, folder: Path) -> None:
    """effects.json, cate.parquet, costs.json and the model; the summary as written."""
    assert sorted(p.name for p in folder.iterdir()) == [
        "cate.parquet",
        "costs.json",
        "effect_model.joblib",
        "effect_model.json",
        "effects.json",
    ]
    summary = json.loads((folder / "effects.json").read_text())
    assert summary == json.loads(json.dumps(effects.summary))
    assert [a["action"] for a in summary["actions"]] == list(effects.actions)
    assert summary["refutations"] == {"skipped": "run without --no-refutations"}


def test_save_then_load_gives_the_same_effects(effects: Effects, folder: Path, tape: Path) -> None:
    """Summary, per-loan effects, costs and the model's predictions survive the round trip."""
    loaded = Effects.load(folder)
    assert loaded.summary == json.loads(json.dumps(effects.summary))
    assert loaded.cate.equals(effects.cate)
    assert loaded.costs == effects.costs
    assert loaded.actions == effects.actions
    loans = Dataset(loans=pl.read_parquet(tape / "loans.parquet").lazy()).loans
    assert np.allclose(
        loaded.model.effect(loaded.model.covariates(loans)),
        effects.model.effect(effects.model.covariates(loans)),
    )
    assert loaded.table["action"].to_list() == list(effects.actions)


@pytest.mark.parametrize(
    "name", ["effects.json", "cate.parquet", "costs.json", "effect_model.joblib"]
)
def test_a_missing_file_is_named_in_one_clear_error(
    folder: Path, tmp_path: Path, name: str
) -> None:
    """Loading a folder without one of its files names the folder and the file."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        if path.name != name:
            (broken / path.name).write_bytes(path.read_bytes())
    with pytest.raises(NplError, match=rf"{broken}.*{name} missing"):
        Effects.load(broken)


@pytest.mark.parametrize("name", ["effects.json", "cate.parquet", "effect_model.joblib"])
def test_a_corrupt_file_is_named_in_one_clear_error(
    folder: Path, tmp_path: Path, name: str
) -> None:
    """A file that cannot be read: the error names the folder and the file."""
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in folder.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / name).write_bytes(b"not what it should be")
    with pytest.raises(NplError, match=rf"{broken}: {name} cannot be read"):
        Effects.load(broken)


def test_no_folder_is_a_clear_error(tmp_path: Path) -> None:
    """A folder that does not exist: the error says so and how to make one."""
    with pytest.raises(NplError, match=r"no such effects folder"):
        Effects.load(tmp_path / "nope")


def test_the_plan_equals_the_one_npl_policy_writes(
    folder: Path, tape: Path, tmp_path: Path
) -> None:
    """Effects.plan(...).save gives the file `npl policy --budget` writes, value for value."""
    out = tmp_path / "plan.parquet"
    result = CliRunner().invoke(
        main,
        ["policy", "--effects", str(folder), "--data", str(tape), "--budget", "20000",
         "--out", str(out), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    plan = Effects.load(folder).plan(tape, 20_000)
    # the forest sums its trees in threads: equal to the last bits, not bit for bit
    assert_frame_equal(plan.plan, pl.read_parquet(out), rel_tol=1e-12, abs_tol=1e-9)
    assert plan.save(tmp_path / "mine.csv").is_file()
    assert pl.read_csv(tmp_path / "mine.csv")["loan_id"].to_list() == plan.plan["loan_id"].to_list()
    assert plan.plan["cost"].sum() <= 20_000
    assert plan.comparison["policy"][0] == "plan"


def test_the_gain_curve_equals_the_one_npl_policy_writes(
    folder: Path, tape: Path, tmp_path: Path
) -> None:
    """Effects.gain_curve(...).save writes the folder `npl policy --budgets` writes."""
    out = tmp_path / "curve"
    result = CliRunner().invoke(
        main,
        ["policy", "--effects", str(folder), "--data", str(tape), "--budgets", "0:20000:3",
         "--out", str(out), "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    mine = Effects.load(folder).gain_curve(tape, [0.0, 10_000.0, 20_000.0]).save(tmp_path / "mine")
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.name for p in mine.iterdir())
    assert "plan_20000.parquet" in names
    for name in names:
        if name.endswith(".parquet"):
            assert_frame_equal(
                pl.read_parquet(mine / name),
                pl.read_parquet(out / name),
                rel_tol=1e-12,
                abs_tol=1e-9,
            )


def test_settlement_columns_equal_those_of_every_loan_predicted_at_once(
    effects: Effects, tape: Path
) -> None:
    """The plan predicts no-action collections for the offered loans only (issue 18).

    Each offered loan's figures equal those of :func:`settlement_economics` on every loan's
    no-action collections, and the loans not offered a settlement have none.
    """
    plan = effects.plan(tape, 20_000).plan
    offered = plan["action"] == "settlement_offer"
    assert 0 < offered.sum() < plan.height
    others = plan.filter(~offered).select(_SETTLEMENT)
    assert others.null_count().row(0) == (others.height,) * len(_SETTLEMENT)
    loans = pl.scan_parquet(tape / "loans.parquet")
    everyone = policy_inputs(
        effects.model, loans, effects.costs, with_bau=False, with_baseline=True
    )
    expected = settlement_economics(everyone, effects.actions, effects.costs).filter(offered)
    mine = plan.filter(offered).select("loan_id", *_SETTLEMENT)
    # the boosters predict each row alone: the same bits whatever rows are predicted with it
    assert_series_equal(mine["collections_without_offer"], expected["collections_without_offer"])
    # the offer's uplift comes from the forest, which sums its trees in threads
    assert_frame_equal(mine, expected.select(mine.columns), rel_tol=1e-12, abs_tol=1e-9)


# -- in chunks (issue 18): the same plans, reading the tape a chunk at a time -----------------

#: Loans per chunk giving 1, 3 and 7 chunks of the 400-loan tape (the last one short).
_CHUNKS = [(400, 1), (134, 3), (58, 7)]


@pytest.fixture
def small_bau_sample(monkeypatch: pytest.MonkeyPatch) -> int:
    """A business-as-usual sample of 50 of the 400 loans, so it is drawn across chunks."""
    monkeypatch.setattr("npl_engine.causal._policy.BAU_SAMPLE", 50)
    return 50


@pytest.mark.parametrize(("chunk_rows", "chunks"), _CHUNKS)
def test_policy_inputs_in_chunks_equal_in_memory(
    effects: Effects, tape: Path, small_bau_sample: int, chunk_rows: int, chunks: int
) -> None:
    """Every per-loan array, the sample's rows and its propensities equal the in-memory ones."""
    loans = pl.scan_parquet(tape / "loans.parquet")
    options = {"with_bau": True, "with_interval": True, "with_baseline": True}
    whole = policy_inputs(effects.model, loans, effects.costs, chunk_rows=0, **options)
    said: list[str] = []
    part = policy_inputs(
        effects.model, loans, effects.costs, chunk_rows=chunk_rows, progress=said.append, **options
    )
    assert len(said) == (chunks if chunks > 1 else 0)
    assert_series_equal(part.loan_ids, whole.loan_ids)
    for name in ("exposure", "uplift", "cost", "uplift_low", "uplift_high", "collections_without"):
        np.testing.assert_array_equal(getattr(part, name), getattr(whole, name), err_msg=name)
    assert part.bau is not None
    assert whole.bau is not None
    assert part.bau.rows.size == small_bau_sample
    np.testing.assert_array_equal(part.bau.rows, whole.bau.rows)
    np.testing.assert_array_equal(part.bau.propensity, whole.bau.propensity)


@pytest.mark.parametrize(("chunk_rows", "chunks"), _CHUNKS)
def test_the_plan_in_chunks_equals_the_plan_in_memory(
    effects: Effects, tape: Path, small_bau_sample: int, chunk_rows: int, chunks: int
) -> None:
    """Per-loan rows (settlement columns included), comparison and totals equal in memory."""
    whole = effects.plan(tape, 20_000, chunk_rows=0)
    said: list[str] = []
    part = effects.plan(tape, 20_000, chunk_rows=chunk_rows, progress=said.append)
    assert len(said) == (chunks if chunks > 1 else 0)
    offered = part.plan["action"] == "settlement_offer"
    assert 0 < offered.sum() < part.plan.height
    assert set(_SETTLEMENT) <= set(part.plan.columns)
    assert_frame_equal(part.plan, whole.plan, check_exact=True)
    assert_frame_equal(part.comparison, whole.comparison, check_exact=True)
    assert part.band == whole.band


@pytest.mark.parametrize(("chunk_rows", "chunks"), _CHUNKS)
def test_the_gain_curve_in_chunks_equals_the_curve_in_memory(
    effects: Effects, tape: Path, tmp_path: Path, chunk_rows: int, chunks: int
) -> None:
    """The curve, every budget's choice per loan and every plan file equal in memory."""
    budgets = [0.0, 5_000.0, 20_000.0, 1e9]
    whole = effects.gain_curve(tape, budgets, chunk_rows=0)
    said: list[str] = []
    part = effects.gain_curve(tape, budgets, chunk_rows=chunk_rows, progress=said.append)
    assert len(said) == (chunks if chunks > 1 else 0)
    assert_frame_equal(part.curve, whole.curve, check_exact=True)
    np.testing.assert_array_equal(part.picks, whole.picks)
    assert part.saturation_spend == whole.saturation_spend
    mine, theirs = part.save(tmp_path / "part"), whole.save(tmp_path / "whole")
    names = sorted(p.name for p in theirs.iterdir())
    assert names == sorted(p.name for p in mine.iterdir())
    for name in names:
        if name.endswith(".parquet"):
            assert_frame_equal(
                pl.read_parquet(mine / name), pl.read_parquet(theirs / name), check_exact=True
            )


def _policy_run(folder: Path, tape: Path, out: Path, db: Path, *options: str) -> tuple[Any, dict]:
    """`npl policy` with an audit database; its output and the run's decision record."""
    result = CliRunner().invoke(
        main,
        ["policy", "--effects", str(folder), "--data", str(tape), "--out", str(out),
         "--audit-db", str(db), *options],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with AuditStore(db, read_only=True) as store:
        run = store.runs(limit=1).row(0, named=True)
        run["decisions"] = store.decisions(run["run_id"]).drop("run_id")
    return result, run


@pytest.mark.parametrize("what", [("--budget", "20000"), ("--budgets", "0:20000:3")])
def test_cli_policy_in_chunks_writes_the_in_memory_files_and_record(
    folder: Path, tape: Path, tmp_path: Path, what: tuple[str, str]
) -> None:
    """`npl policy --chunk-rows 58` (7 chunks) writes the files and record of --chunk-rows 0."""
    db = tmp_path / "audit.duckdb"
    suffix = ".parquet" if what[0] == "--budget" else ""
    whole_out, part_out = tmp_path / f"whole{suffix}", tmp_path / f"part{suffix}"
    whole, whole_run = _policy_run(folder, tape, whole_out, db, *what, "--chunk-rows", "0")
    part, part_run = _policy_run(folder, tape, part_out, db, *what, "--chunk-rows", "58")
    assert "chunk 7/7: loans 349 to 400" in part.output
    assert "chunk 1/" not in whole.output
    files = [("", part_out, whole_out)] if suffix else [
        (p.name, p, whole_out / p.name) for p in sorted(part_out.iterdir())
    ]  # fmt: skip
    assert len(files) == (1 if suffix else 5)  # curve.csv, curve.parquet and 3 plans
    for _, mine, theirs in files:
        if mine.suffix == ".parquet":
            assert_frame_equal(pl.read_parquet(mine), pl.read_parquet(theirs), check_exact=True)
        else:
            assert mine.read_text() == theirs.read_text()
    assert_frame_equal(part_run["decisions"], whole_run["decisions"], check_exact=True)
    assert part_run["n_loans"] == whole_run["n_loans"] == 400
    # what it prints is the same
    assert whole.stdout.split("wrote")[0] == part.stdout.split("wrote")[0]


@pytest.mark.parametrize("value", ["-1", "many"])
def test_cli_policy_bad_chunk_rows_is_a_clear_error(
    folder: Path, tape: Path, tmp_path: Path, value: str
) -> None:
    """A negative or non-numeric --chunk-rows: exit 2, the option named, nothing written."""
    out = tmp_path / "plan.parquet"
    result = CliRunner().invoke(
        main,
        ["policy", "--effects", str(folder), "--data", str(tape), "--budget", "1000",
         "--out", str(out), "--chunk-rows", value, "--no-audit"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--chunk-rows" in result.output
    assert not out.exists()


def test_a_negative_chunk_rows_is_refused(effects: Effects, tape: Path) -> None:
    """The library refuses a negative chunk size with a message naming it."""
    with pytest.raises(ValueError, match="chunk_rows must be 0"):
        effects.plan(tape, 1_000, chunk_rows=-1)
