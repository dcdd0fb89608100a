"""Fixtures for data tests: valid books and tapes on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.builders import write_book, write_tape


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A valid book (loans, actions, payments) in Parquet."""
    return write_book(tmp_path / "book")


@pytest.fixture
def tape(tmp_path: Path) -> Path:
    """A valid tape (loans only) in Parquet."""
    return write_tape(tmp_path / "tape")
