"""`npl counterfactual` and `npl what-if` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from npl_engine.audit import AuditStore
from npl_engine.cli import main


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_counterfactual_one_loan_prints_and_writes_json(
    folders: dict[str, Path], low_ids: list[str], tmp_path: Path
) -> None:
    """One loan: a table labelled by kind, and a JSON file with summary and rows."""
    out = tmp_path / "cf.json"
    code, text = _run(
        "counterfactual", "--model", str(folders["model"]), "--effects", str(folders["effects"]),
        "--effects", str(folders["rate"]), "--data", str(folders["tape"]),
        "--loan-id", low_ids[1], "--borrower-side", "--uplift", "0.05", "--out", str(out),
    )  # fmt: skip
    assert code == 0, text
    assert f"loan {low_ids[1]}" in text
    assert "servicer levers" in text
    assert "borrower-side what-ifs" in text
    body = json.loads(out.read_text())
    assert set(body) == {"settings", "summary", "loans", "counterfactuals"}
    assert body["loans"][0]["loan_id"] == low_ids[1]
    assert all(r["meets_target"] for r in body["counterfactuals"])


def test_counterfactual_batch_writes_parquet_and_summary(
    folders: dict[str, Path], low_ids: list[str], tmp_path: Path
) -> None:
    """--loan-ids FILE: a summary table and the rows as Parquet."""
    ids = tmp_path / "ids.txt"
    ids.write_text("loan_id\n" + "\n".join(low_ids[:4]) + "\n")
    out = tmp_path / "cf.parquet"
    code, text = _run(
        "counterfactual", "--model", str(folders["model"]), "--effects", str(folders["effects"]),
        "--data", str(folders["tape"]), "--loan-ids", str(ids), "--uplift", "0.05",
        "--out", str(out), "--audit-db", str(tmp_path / "audit.duckdb"),
    )  # fmt: skip
    assert code == 0, text
    assert "with a servicer lever" in text
    frame = pl.read_parquet(out)
    assert set(frame["loan_id"].to_list()) <= set(low_ids[:4])
    assert frame["collections_change"].is_null().all()  # no effects on the recovery rate given
    with AuditStore(tmp_path / "audit.duckdb", read_only=True) as store:
        runs = store.runs(command="counterfactual")
        assert runs.height == 1
        decisions = store.decisions(runs["run_id"][0])
    assert sorted(decisions["loan_id"].to_list()) == sorted(low_ids[:4])
    outputs = [json.loads(o) for o in decisions["outputs"]]
    assert all(o["status"] for o in outputs)


def test_counterfactual_bad_input_names_the_problem_and_writes_nothing(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """An unknown loan id or a bad id file exits 2 with table, column and id; no file written."""
    out = tmp_path / "cf.json"
    base = ["counterfactual", "--model", str(folders["model"]), "--effects",
            str(folders["effects"]), "--data", str(folders["tape"]), "--out", str(out)]  # fmt: skip
    code, text = _run(*base, "--loan-id", "NOPE")
    assert code == 2
    assert "loans: column loan_id" in text
    assert "NOPE" in text
    ids = tmp_path / "ids.txt"
    ids.write_text("T00000001\nT00000001\n")
    code, text = _run(*base, "--loan-ids", str(ids))
    assert code == 2
    assert "line 2 repeats loan_id 'T00000001'" in text
    code, text = _run(*base[:-2], "--out", str(tmp_path / "cf.txt"), "--loan-id", "T00000001")
    assert code == 2
    assert not out.exists()
    assert not (tmp_path / "cf.txt").exists()


def test_what_if_shows_the_change_and_refuses_bad_values(
    folders: dict[str, Path], low_ids: list[str]
) -> None:
    """--set re-scores the loan; a value breaking the contract names table, column and loan."""
    base = ["what-if", "--model", str(folders["model"]), "--effects", str(folders["effects"]),
            "--data", str(folders["tape"]), "--loan-id", low_ids[0]]  # fmt: skip
    code, text = _run(*base, "--set", "monthly_income=9000", "--set", "action=call")
    assert code == 0, text
    assert "p_recover" in text
    assert "top p_recover reasons after" in text
    code, text = _run(*base, "--set", "monthly_income=-5")
    assert code == 2
    assert f"loans: column monthly_income, loan {low_ids[0]}" in text
    code, text = _run(*base, "--set", "segment=boat")
    assert code == 2
    assert "segment" in text
    code, text = _run(*base, "--set", "action=prayer")
    assert code == 2
    assert "unknown action" in text
