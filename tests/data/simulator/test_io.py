"""Writing a simulation chunk by chunk: one chunk in memory at a time, nothing on failure."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from npl_engine.data.simulator import (
    Simulation,
    SimulationSettings,
    simulate,
    simulate_chunks,
    write_simulation,
)
from npl_engine.errors import NplError


def test_chunks_are_written_one_at_a_time(tmp_path: Path) -> None:
    """When a chunk has been drawn, the writer holds no earlier chunk: memory is one chunk."""
    settings = SimulationSettings(n_loans=300, seed=2, kind="tape", chunk_loans=100)
    written: list[weakref.ref[pl.DataFrame]] = []
    held_when_drawn: list[int] = []

    def watched() -> Iterator[Simulation]:
        for chunk in simulate_chunks(settings):
            gc.collect()
            held_when_drawn.append(sum(ref() is not None for ref in written))
            written.append(weakref.ref(chunk.curves))
            yield chunk
            del chunk

    write_simulation(watched(), tmp_path / "tape")
    assert held_when_drawn == [0, 0, 0]
    curves = pl.read_parquet(tmp_path / "tape" / "truth" / "curves.parquet")
    assert curves.equals(simulate(settings).curves)


def test_no_chunk_writes_nothing(tmp_path: Path) -> None:
    """An empty run of chunks is refused and leaves no folder behind."""
    with pytest.raises(NplError, match="no chunk"):
        write_simulation(iter([]), tmp_path / "tape")
    assert list(tmp_path.iterdir()) == []


def test_a_book_is_refused_as_eba_templates_in_chunks(tmp_path: Path) -> None:
    """EBA templates describe a tape: chunks of a book are refused, nothing written."""
    settings = SimulationSettings(n_loans=30, seed=2, chunk_loans=10)
    with pytest.raises(NplError, match="EBA templates describe a tape"):
        write_simulation(simulate_chunks(settings), tmp_path / "book", fmt="eba")
    assert list(tmp_path.iterdir()) == []
