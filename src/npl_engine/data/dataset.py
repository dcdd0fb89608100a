"""The in-memory form of a dataset: up to three lazily read contract tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import polars as pl

__all__ = ["Dataset", "DatasetKind"]

DatasetKind = Literal["book", "tape"]


@dataclass(frozen=True, slots=True)
class Dataset:
    """A book or a tape: ``loans`` always, ``actions`` and ``payments`` where present.

    Frames are lazy so that a large tape is scanned, not copied. A dataset returned by
    :func:`npl_engine.data.read_dataset` has passed validation: contract columns carry their
    contract types, optional columns the contract gives a default for are filled, and
    unknown extra columns are kept as they came.

    Parameters
    ----------
    loans, actions, payments
        The tables; ``actions`` and ``payments`` are ``None`` when the folder has no such file.
    as_of_date
        The day the history was extracted (books): given by the user, else the latest date in
        ``payments`` and ``actions``; ``None`` for a tape.
    source
        Folder the dataset was read from, if any.
    """

    loans: pl.LazyFrame
    actions: pl.LazyFrame | None = None
    payments: pl.LazyFrame | None = None
    as_of_date: date | None = None
    source: Path | None = None
