"""`npl explain` and `npl score --explain`: what they print and write, and how they refuse."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result
from polars.testing import assert_frame_equal

from _small_model import explain_tape as tape
from _small_model import trained_model
from npl_engine.cli import main
from npl_engine.data import write_dataset
from npl_engine.explain import explain_loans


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A saved model folder and a 300-loan tape folder."""
    root = tmp_path_factory.mktemp("explain_cli")
    model_dir = trained_model().save(root / "model")
    tape_dir = root / "tape"
    write_dataset(tape_dir, loans=tape().loans.head(300))
    return model_dir, tape_dir


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _at_base() -> pl.Series:
    """Loans of the tape whose calibrated p_recover equals the base (no p_recover reasons)."""
    ex = explain_loans(trained_model(), tape().loans.head(300), targets=("p_recover",))
    a = ex.attributions["p_recover"]
    return ex.loan_id.filter(pl.Series(a.output == a.base))


def _moved_loan() -> str:
    """A loan whose p_recover differs from the base."""
    ids = tape().loans.head(300)["loan_id"]
    return str(ids.filter(~ids.is_in(_at_base().implode()))[0])


def test_explain_one_loan_prints_outputs_bases_and_reasons(folders: tuple[Path, Path]) -> None:
    """The loan's p_recover and collections with their bases, then two tables of reasons."""
    model_dir, tape_dir = folders
    loan = _moved_loan()
    result = _npl("explain", "--model", model_dir, "--data", tape_dir, "--loan-id", loan)
    assert result.exit_code == 0, result.output
    ex = explain_loans(trained_model(), tape().loans.head(300), loan_ids=[loan])
    p = ex.attributions["p_recover"]
    out = result.stdout
    assert f"p_recover {p.output[0]:.3f}" in out
    assert f"(base {p.base[0]:.3f}" in out
    c = ex.attributions["expected_collections"]
    assert f"expected collections {c.output[0]:,.0f}" in out
    assert "p_recover: top 5 reasons" in out
    assert "expected_collections: top 5 reasons" in out
    assert out.count("the recovery probability by") == 5
    assert out.count("expected collections by") == 5
    assert f"{100 * (p.output[0] - p.base[0]):+.1f} pts" in out  # the row that sums them all
    assert "gender" not in out


def test_explain_top_sets_the_number_of_reasons(folders: tuple[Path, Path]) -> None:
    """--top 2 shows two reasons per output."""
    model_dir, tape_dir = folders
    result = _npl(
        "explain",
        "--model",
        model_dir,
        "--data",
        tape_dir,
        "--loan-id",
        _moved_loan(),
        "--top",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.count("the recovery probability by") == 2


def test_loan_at_the_base_says_why_it_has_no_p_recover_reason(
    folders: tuple[Path, Path],
) -> None:
    """A loan whose calibrated p_recover is the base gets a sentence instead of a table."""
    model_dir, tape_dir = folders
    at_base = _at_base()
    assert at_base.len() > 0
    result = _npl("explain", "--model", model_dir, "--data", tape_dir, "--loan-id", at_base[0])
    assert result.exit_code == 0, result.output
    assert "none: the calibrated probability is flat" in result.stdout
    assert result.stdout.count("the recovery probability by") == 0
    assert result.stdout.count("expected collections by") == 5


def test_unknown_loan_id_exits_2_with_a_clear_message(folders: tuple[Path, Path]) -> None:
    """A loan id absent from the data: exit code 2, the id in the message, no traceback."""
    model_dir, tape_dir = folders
    result = _npl("explain", "--model", model_dir, "--data", tape_dir, "--loan-id", "NOPE-7")
    assert result.exit_code == 2
    assert "error: loan_id 'NOPE-7' not found among the 300 loans" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "give either --loan-id ID (one loan) or --global"),
        (("--loan-id", "T00000001", "--global", "--out", "x"), "give either --loan-id"),
        (("--global",), "--global needs --out DIR"),
        (("--loan-id", "T00000001", "--out", "x"), "--out is for --global"),
    ],
)
def test_explain_needs_one_clear_mode(
    folders: tuple[Path, Path], extra: tuple[str, ...], message: str
) -> None:
    """Neither or both of --loan-id and --global, or --out in the wrong mode: exit 2."""
    model_dir, tape_dir = folders
    result = _npl("explain", "--model", model_dir, "--data", tape_dir, *extra)
    assert result.exit_code == 2
    assert message in result.output


def test_global_writes_importance_table_and_chart(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """--global writes importance.parquet (one row per feature) and a PNG, and prints them."""
    model_dir, tape_dir = folders
    out = tmp_path / "importance"
    result = _npl(
        "explain", "--model", model_dir, "--data", tape_dir, "--global", "--out", out,
        "--sample", "200", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["importance.parquet", "importance.png"]
    table = pl.read_parquet(out / "importance.parquet")
    assert table.height == 33
    assert table["p_recover_points"].is_sorted(descending=True)
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    assert str(table["label"][0]) in result.stdout
    assert "gender" not in table["feature"].to_list()
    assert not list(tmp_path.glob(".*tmp"))


def test_global_never_replaces_a_folder_with_other_files(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """An --out folder holding a user's file: exit 2, the file untouched, nothing written."""
    model_dir, tape_dir = folders
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _npl(
        "explain", "--model", model_dir, "--data", tape_dir, "--global", "--out", out,
        "--sample", "50",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "notes.txt" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_score_explain_adds_three_reason_columns_per_output(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl score --explain` writes the same scores plus three reason columns per output."""
    model_dir, tape_dir = folders
    plain, explained = tmp_path / "plain", tmp_path / "explained"
    assert _npl("score", "--model", model_dir, "--data", tape_dir, "--out", plain).exit_code == 0
    result = _npl(
        "score", "--model", model_dir, "--data", tape_dir, "--out", explained, "--explain"
    )
    assert result.exit_code == 0, result.output
    base = pl.read_parquet(plain / "scores.parquet")
    with_reasons = pl.read_parquet(explained / "scores.parquet")
    reasons = [f"{p}reason_{r}" for p in ("", "collections_") for r in (1, 2, 3)]
    assert with_reasons.columns == [*base.columns, *reasons]
    assert_frame_equal(with_reasons.select(base.columns), base)
    assert not [c for c in base.columns if "reason" in c]
    # Loans whose calibrated p_recover is exactly the base, and only they, have no p_recover
    # reason (a flat step of the isotonic calibrator: no change to share out).
    empty = with_reasons.filter(pl.col("reason_1").is_null())["loan_id"]
    assert sorted(empty.to_list()) == sorted(_at_base().to_list())
    assert empty.len() < 0.5 * with_reasons.height
    assert with_reasons["collections_reason_3"].is_not_null().all()
    first = with_reasons.filter(pl.col("reason_1").is_not_null()).row(0, named=True)
    assert first["reason_1"].endswith(" points")
    curves = [pl.read_parquet(folder / "curves.parquet") for folder in (plain, explained)]
    assert_frame_equal(*curves)
