"""Readers and writers: files in, typed lazy frames out; atomic writes; CSV equals Parquet."""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from data.builders import CUTOFF, make_loans, write_book, write_tape
from npl_engine.data import (
    infer_kind,
    read_dataset,
    summarize,
    validate_dataset,
    write_dataset,
)
from npl_engine.data.contract import (
    ACTIONS,
    BORROWER_TYPES,
    COLLATERAL_TYPES,
    EMPLOYMENT_STATUSES,
    GENDERS,
    LEGAL_STAGES,
    LOANS,
    PAYMENTS,
    SEGMENTS,
)
from npl_engine.data.writers import atomic_folder, write_tables
from npl_engine.errors import NplError

# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_frames_are_lazy_and_typed_per_contract(fmt: str, tmp_path: Path) -> None:
    """Every table comes back as a LazyFrame whose contract columns have contract dtypes."""
    dataset = read_dataset(write_book(tmp_path / "b", fmt=fmt))
    for frame, spec in (
        (dataset.loans, LOANS),
        (dataset.actions, ACTIONS),
        (dataset.payments, PAYMENTS),
    ):
        assert isinstance(frame, pl.LazyFrame)
        assert dict(frame.collect_schema()) == spec.schema
    assert dataset.source == tmp_path / "b"


def test_csv_and_parquet_books_read_the_same(tmp_path: Path) -> None:
    """The same book written as CSV and as Parquet reads to equal frames."""
    from_csv = read_dataset(write_book(tmp_path / "c", fmt="csv"))
    from_parquet = read_dataset(write_book(tmp_path / "p", fmt="parquet"))
    for name in ("loans", "actions", "payments"):
        assert_frame_equal(getattr(from_csv, name).collect(), getattr(from_parquet, name).collect())
    assert from_csv.as_of_date == from_parquet.as_of_date


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_extra_columns_are_kept_after_contract_columns(fmt: str, tmp_path: Path) -> None:
    """Unknown columns pass through unchanged, after the contract columns, in file order."""
    loans = make_loans(seller_ref=["a", "b", None, "d"], pool=["p1", "p1", "p2", "p2"])
    df = read_dataset(write_tape(tmp_path / "t", loans=loans, fmt=fmt)).loans.collect()
    assert df.columns == [*LOANS.names, "seller_ref", "pool"]
    assert df["seller_ref"].to_list() == ["a", "b", None, "d"]
    assert df["pool"].to_list() == ["p1", "p1", "p2", "p2"]


def test_extra_columns_keep_their_parquet_type(tmp_path: Path) -> None:
    """An extra numeric column in Parquet keeps its type and values."""
    loans = make_loans(score_v2=[0.1, 0.2, 0.3, 0.4])
    df = read_dataset(write_tape(tmp_path / "t", loans=loans)).loans.collect()
    assert df.schema["score_v2"] == pl.Float64
    assert df["score_v2"].to_list() == [0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_defaults_fill_absent_columns(fmt: str, tmp_path: Path) -> None:
    """accrued_interest, collateral_value and senior_liens default to 0 when absent."""
    loans = make_loans(collateral_type=["none"] * 4).drop("accrued_interest", "collateral_value")
    df = read_dataset(write_tape(tmp_path / "t", loans=loans, fmt=fmt)).loans.collect()
    for name in ("accrued_interest", "collateral_value", "senior_liens"):
        assert df[name].to_list() == [0.0] * 4


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_defaults_fill_nulls(fmt: str, tmp_path: Path) -> None:
    """Nulls in columns with a contract default become that default; other values stay."""
    loans = make_loans(accrued_interest=[None, 5.0, None, 7.0], senior_liens=[None, 1.0, 2.0, None])
    df = read_dataset(write_tape(tmp_path / "t", loans=loans, fmt=fmt)).loans.collect()
    assert df["accrued_interest"].to_list() == [0.0, 5.0, 0.0, 7.0]
    assert df["senior_liens"].to_list() == [0.0, 1.0, 2.0, 0.0]


def test_absent_optional_columns_without_default_are_null(tmp_path: Path) -> None:
    """An optional column with no default that the file lacks is added, typed, all null."""
    df = read_dataset(write_tape(tmp_path / "t")).loans.collect()
    assert df["gender"].dtype == pl.Enum(list(GENDERS))
    assert df["gender"].null_count() == 4
    assert df["monthly_income"].null_count() == 4


def test_parquet_datetimes_and_categoricals_are_accepted(tmp_path: Path) -> None:
    """Datetime columns read as their date; Categorical text reads as the contract enum."""
    loans = make_loans().with_columns(
        pl.col("cutoff_date").cast(pl.Datetime("ns")),
        pl.col("segment").cast(pl.Categorical),
    )
    df = read_dataset(write_tape(tmp_path / "t", loans=loans)).loans.collect()
    assert df["cutoff_date"].to_list() == [CUTOFF] * 4
    assert df["segment"].dtype == pl.Enum(list(SEGMENTS))


def test_csv_ids_keep_leading_zeros(tmp_path: Path) -> None:
    """CSV values are read as text first, so loan_id 007 stays '007'."""
    loans = make_loans(loan_id=["007", "008", "009", "010"])
    df = read_dataset(write_tape(tmp_path / "t", loans=loans, fmt="csv")).loans.collect()
    assert df["loan_id"].to_list() == ["007", "008", "009", "010"]


def test_numeric_loan_ids_in_parquet_match_across_tables(tmp_path: Path) -> None:
    """Integer loan_ids in Parquet read as text and still link payments to loans."""
    loans = make_loans(loan_id=[1, 2, 3, 4])
    folder = write_book(tmp_path / "b", loans=loans)
    dataset = read_dataset(folder)
    assert dataset.loans.collect()["loan_id"].to_list() == ["1", "2", "3", "4"]


def test_infer_kind(book: Path, tape: Path, tmp_path: Path) -> None:
    """A folder with actions or payments is a book, with loans only a tape."""
    assert infer_kind(book) == "book"
    assert infer_kind(tape) == "tape"
    assert infer_kind(tmp_path / "missing") == "tape"


def test_missing_file_message_lists_what_the_folder_holds(tmp_path: Path) -> None:
    """When loans is missing, the message lists the files found (a misnamed file shows)."""
    folder = write_tape(tmp_path / "t")
    (folder / "loans.parquet").rename(folder / "Loans.parquet")
    (problem,) = validate_dataset(folder)
    assert problem.table == "loans"
    assert "Loans.parquet" in problem.rule


def test_a_file_is_not_a_dataset(tmp_path: Path) -> None:
    """Pointing at a file instead of a folder is a dataset problem, not a crash."""
    path = tmp_path / "loans.csv"
    path.write_text("loan_id\n")
    (problem,) = validate_dataset(path)
    assert problem.table == "dataset"
    assert "not a folder" in problem.rule


def test_unknown_kind_is_a_programming_error(tape: Path) -> None:
    """A kind other than book or tape raises ValueError."""
    with pytest.raises(ValueError, match="kind must be"):
        read_dataset(tape, kind="portfolio")  # type: ignore[arg-type]


def test_empty_csv_is_reported(tmp_path: Path) -> None:
    """A zero-byte CSV is a problem naming the file, not a crash."""
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "loans.csv").write_text("")
    (problem,) = validate_dataset(folder)
    assert (problem.table, problem.column) == ("loans", None)
    assert "loans.csv" in problem.rule


def test_non_utf8_csv_is_reported(tmp_path: Path) -> None:
    """A CSV in Latin-1 with accented text is reported, not a crash."""
    folder = write_tape(tmp_path / "t", loans=make_loans(region=["Île", "Nord", "Sud", "Est"]))
    frame = make_loans(region=["Île", "Nord", "Sud", "Est"])
    (folder / "loans.parquet").unlink()
    (folder / "loans.csv").write_bytes(frame.write_csv().encode("latin-1"))
    problems = validate_dataset(folder)
    assert [(p.table, p.column) for p in problems] == [("loans", None)]
    assert "cannot read loans.csv" in problems[0].rule


# --- summary -------------------------------------------------------------------------------


def test_summary_figures(book: Path) -> None:
    """Loans, GBV (outstanding + accrued), segments, cut-offs, payments and actions add up.

    make_loans(4): outstanding 80,000 + 500 i and accrued 1,000 for i = 0..3, so GBV =
    4 × 81,000 + 500 × (0 + 1 + 2 + 3) = 327,000. Payments 500 + i: 2,006. Actions: four
    letters at 4 and one settlement offer at 90: 106.
    """
    s = summarize(read_dataset(book))
    assert s.n_loans == 4
    assert s.gbv == pytest.approx(327_000.0)
    assert [(x.segment, x.n_loans, x.gbv) for x in s.segments] == [
        ("residential_mortgage", 1, 81_000.0),
        ("commercial_real_estate", 1, 81_500.0),
        ("sme_secured", 1, 82_000.0),
        ("sme_unsecured", 1, 82_500.0),
    ]
    assert (s.cutoff_min, s.cutoff_max) == (CUTOFF, CUTOFF)
    assert (s.n_payments, s.payments_total) == (4, pytest.approx(2_006.0))
    assert (s.n_actions, s.actions_cost) == (5, pytest.approx(106.0))
    assert s.as_of_date == date(2024, 2, 9)


def test_summary_of_a_tape_has_no_events(tape: Path) -> None:
    """A tape's summary counts no payments or actions."""
    s = summarize(read_dataset(tape))
    assert (s.n_payments, s.payments_total, s.n_actions, s.actions_cost) == (0, 0.0, 0, 0.0)
    assert s.as_of_date is None


# --- writing -------------------------------------------------------------------------------


def test_write_replaces_an_existing_dataset(tmp_path: Path) -> None:
    """Writing CSV over a Parquet dataset leaves only the new files."""
    folder = write_book(tmp_path / "b")
    write_dataset(folder, loans=make_loans(2), fmt="csv")
    assert sorted(p.name for p in folder.iterdir()) == ["loans.csv"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails half-way leaves no target and no temporary folder."""
    bad = make_loans().with_columns(nested=pl.lit([1, 2]))  # lists cannot go to CSV
    with pytest.raises(pl.exceptions.PolarsError):
        write_dataset(tmp_path / "b", loans=make_loans(), payments=bad, fmt="csv")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_dataset(tmp_path: Path) -> None:
    """A failed rewrite leaves the dataset that was there untouched."""
    folder = write_tape(tmp_path / "t")
    before = (folder / "loans.parquet").read_bytes()
    bad = make_loans().with_columns(nested=pl.lit([1, 2]))
    with pytest.raises(pl.exceptions.PolarsError):
        write_dataset(folder, loans=bad, fmt="csv")
    assert (folder / "loans.parquet").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


def test_write_refuses_to_replace_a_folder_with_other_files(tmp_path: Path) -> None:
    """A folder holding non-dataset files is never replaced (nor its files deleted)."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(NplError, match=r"notes\.txt"):
        write_dataset(folder, loans=make_loans())
    assert (folder / "notes.txt").read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_atomic_folder_replaces_allowed_entries(tmp_path: Path) -> None:
    """An allowed extra entry (the simulator's truth/) does not stop a replacement."""
    folder = write_tape(tmp_path / "t")
    (folder / "truth").mkdir()
    with atomic_folder(folder, allowed=frozenset({"truth"})) as staging:
        write_tables(staging, loans=make_loans(2), fmt="csv")
    assert sorted(p.name for p in folder.iterdir()) == ["loans.csv"]
    (folder / "truth").mkdir()
    with pytest.raises(NplError, match="truth"):
        write_dataset(folder, loans=make_loans())


def test_atomic_folder_removes_staging_on_error(tmp_path: Path) -> None:
    """An error inside the block leaves neither target nor staging folder."""

    def write_then_fail() -> None:
        with atomic_folder(tmp_path / "t") as staging:
            write_tables(staging, loans=make_loans())
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_file_target(tmp_path: Path) -> None:
    """Writing a dataset where a file stands is an NplError."""
    (tmp_path / "f").write_text("")
    with pytest.raises(NplError, match="is a file"):
        write_dataset(tmp_path / "f", loans=make_loans())


def test_write_rejects_unknown_format(tmp_path: Path) -> None:
    """A fmt other than parquet or csv raises ValueError and writes nothing."""
    with pytest.raises(ValueError, match="fmt must be"):
        write_dataset(tmp_path / "b", loans=make_loans(), fmt="xlsx")
    assert list(tmp_path.iterdir()) == []


def test_write_streams_lazy_frames(tmp_path: Path) -> None:
    """A dataset read lazily can be written back and reads the same."""
    original = read_dataset(write_book(tmp_path / "a"))
    write_dataset(
        tmp_path / "b",
        loans=original.loans,
        actions=original.actions,
        payments=original.payments,
        fmt="csv",
    )
    copy = read_dataset(tmp_path / "b")
    assert_frame_equal(copy.loans.collect(), original.loans.collect())


# --- round trip ----------------------------------------------------------------------------

# Any text a CSV must quote: commas, quotes, newlines, spaces, non-ASCII letters.
_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1,
    max_size=8,
)
_MONEY = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)
_SHARE = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.none() | strategy


@st.composite
def _loan(draw: st.DrawFn, loan_id: str, cutoff: date) -> dict[str, object]:
    default = cutoff - timedelta(days=draw(st.integers(0, 3_000)))
    collateral = draw(st.sampled_from(COLLATERAL_TYPES))
    return {
        "loan_id": loan_id,
        "borrower_id": draw(_TEXT),
        "segment": draw(st.sampled_from(SEGMENTS)),
        "cutoff_date": cutoff,
        "origination_date": default - timedelta(days=draw(st.integers(0, 10_000))),
        "default_date": default,
        "original_principal": draw(st.floats(min_value=1e-6, max_value=1e12)),
        "outstanding_principal": draw(_MONEY),
        "accrued_interest": draw(_maybe(_MONEY)),
        "interest_rate": draw(st.floats(min_value=0.0, max_value=1.0)),
        "days_past_due": draw(st.integers(0, 10_000)),
        "last_payment_date": draw(_maybe(st.dates(date(1990, 1, 1), cutoff))),
        "collateral_type": collateral,
        "collateral_value": 0.0 if collateral == "none" else draw(_MONEY),
        "legal_stage": draw(st.sampled_from(LEGAL_STAGES)),
        "borrower_type": draw(st.sampled_from(BORROWER_TYPES)),
        "region": draw(_TEXT),
        "age": draw(_maybe(st.integers(18, 100))),
        "gender": draw(_maybe(st.sampled_from(GENDERS))),
        "employment_status": draw(_maybe(st.sampled_from(EMPLOYMENT_STATUSES))),
        "credit_score": draw(_maybe(st.integers(300, 850))),
        "on_time_payment_rate": draw(_maybe(_SHARE)),
        "seller_note": draw(_maybe(_TEXT)),
    }


@st.composite
def _loans(draw: st.DrawFn) -> pl.DataFrame:
    cutoff = draw(st.dates(date(2000, 1, 1), date(2030, 12, 31)))
    ids = draw(st.lists(_TEXT, min_size=1, max_size=6, unique=True))
    rows = [draw(_loan(loan_id, cutoff)) for loan_id in ids]
    return pl.DataFrame(rows, schema_overrides={"seller_note": pl.String})


@settings(max_examples=60, deadline=None)
@given(loans=_loans())
def test_csv_and_parquet_round_trip_to_the_same_frame(loans: pl.DataFrame) -> None:
    """Random valid loans written as CSV and as Parquet read back to equal frames."""
    with tempfile.TemporaryDirectory() as tmp:
        from_csv = read_dataset(write_tape(Path(tmp) / "c", loans=loans, fmt="csv"))
        from_parquet = read_dataset(write_tape(Path(tmp) / "p", loans=loans))
        expected = from_parquet.loans.collect()
        assert_frame_equal(from_csv.loans.collect(), expected)
    assert expected["loan_id"].to_list() == loans["loan_id"].to_list()
    assert expected["seller_note"].to_list() == loans["seller_note"].to_list()
    assert expected["outstanding_principal"].to_list() == loans["outstanding_principal"].to_list()
