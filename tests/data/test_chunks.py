"""A tape's chunks: every loan once, in order, whatever the chunk size."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from npl_engine.data import count_loans, loan_chunks


@pytest.mark.parametrize(("n", "rows", "bounds"), [
    (5, 2, [(0, 2), (2, 4), (4, 5)]),
    (6, 3, [(0, 3), (3, 6)]),
    (4, 10, [(0, 4)]),
    (1, 1, [(0, 1)]),
])  # fmt: skip
def test_chunks_cover_the_tape_once_in_order(
    n: int, rows: int, bounds: list[tuple[int, int]]
) -> None:
    """Consecutive slices, the last one shorter; together they are the tape."""
    tape = pl.LazyFrame({"loan_id": [f"L{i}" for i in range(n)], "x": list(range(n))})
    chunks = list(loan_chunks(tape, rows))
    assert [(c.start, c.stop) for c in chunks] == bounds
    assert [c.index for c in chunks] == list(range(len(bounds)))
    assert {c.count for c in chunks} == {len(bounds)}
    assert_frame_equal(pl.concat([c.loans.collect() for c in chunks]), tape.collect())
    assert (
        chunks[-1].describe()
        == f"chunk {len(bounds)}/{len(bounds)}: loans {bounds[-1][0] + 1:,} to {n:,}"
    )


def test_an_empty_tape_is_one_empty_chunk_with_its_columns() -> None:
    """A writer working through an empty tape still learns the files' schema."""
    tape = pl.LazyFrame({"loan_id": [], "x": []}, schema={"loan_id": pl.String, "x": pl.Int64})
    (chunk,) = loan_chunks(tape, 100)
    assert (chunk.start, chunk.stop, chunk.count) == (0, 0, 1)
    assert chunk.loans.collect().schema == tape.collect_schema()


def test_a_count_given_is_used_and_chunk_rows_below_one_refused() -> None:
    """A caller that counted already passes its count; a chunk of no loans is refused."""
    tape = pl.LazyFrame({"loan_id": ["a", "b", "c"]})
    assert count_loans(tape) == count_loans(tape.collect()) == 3
    assert [(c.start, c.stop) for c in loan_chunks(tape, 2, n_loans=3)] == [(0, 2), (2, 3)]
    with pytest.raises(ValueError, match="at least 1"):
        list(loan_chunks(tape, 0))
