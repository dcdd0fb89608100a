"""A tape worked through in chunks of loans: the one way every out-of-core command slices it.

Scoring, explaining, valuing, expected loss, planning and decision records all read a large
tape a chunk at a time (``--chunk-rows``, docs/scale.md): each chunk is a slice of a lazy scan,
so a Parquet file reads only that chunk's row groups and memory follows the chunk, not the
tape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

__all__ = ["Chunk", "count_loans", "loan_chunks"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a tape: loans ``start`` to ``stop - 1`` (positions from 0).

    Parameters
    ----------
    index
        Position of the chunk, from 0.
    count
        Chunks in all.
    start, stop
        The loans' positions on the tape, ``stop`` excluded.
    loans
        The chunk's loans, lazily (a slice of the tape's scan).
    """

    index: int
    count: int
    start: int
    stop: int
    loans: pl.LazyFrame

    def describe(self) -> str:
        """``chunk i/n: loans a to b``, counted from 1, for progress lines.

        >>> Chunk(1, 4, 250_000, 500_000, pl.LazyFrame()).describe()
        'chunk 2/4: loans 250,001 to 500,000'
        """
        return f"chunk {self.index + 1}/{self.count}: loans {self.start + 1:,} to {self.stop:,}"


def count_loans(loans: pl.LazyFrame | pl.DataFrame) -> int:
    """Loans on a tape (a Parquet scan answers from its metadata)."""
    return int(loans.lazy().select(pl.len()).collect().item())


def loan_chunks(
    loans: pl.LazyFrame, chunk_rows: int, *, n_loans: int | None = None
) -> Iterator[Chunk]:
    """The tape's consecutive chunks of ``chunk_rows`` loans, the last one shorter.

    Parameters
    ----------
    loans
        The tape's loans, lazily (e.g. a Parquet scan).
    chunk_rows
        Loans per chunk (at least 1).
    n_loans
        Loans on the tape, if already counted (default: counted here).

    Yields
    ------
    Chunk
        In tape order. An empty tape gives one empty chunk (its columns, no rows), so a
        caller writing files still learns their schema.

    Examples
    --------
    >>> tape = pl.LazyFrame({"loan_id": [f"L{i}" for i in range(5)]})
    >>> [(c.start, c.stop) for c in loan_chunks(tape, 2)]
    [(0, 2), (2, 4), (4, 5)]
    """
    if chunk_rows < 1:
        msg = f"chunk_rows must be at least 1, got {chunk_rows}"
        raise ValueError(msg)
    n = count_loans(loans) if n_loans is None else n_loans
    count = max(-(-n // chunk_rows), 1)
    for index in range(count):
        start = index * chunk_rows
        yield Chunk(index, count, start, min(start + chunk_rows, n), loans.slice(start, chunk_rows))
