"""Writing a simulation to disk: the dataset, and its truth in a separate ``truth/`` folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict
from itertools import chain
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from npl_engine.data.eba import TEMPLATE_FILES, write_template_files
from npl_engine.data.simulator._simulate import SIMULATOR_VERSION, Simulation
from npl_engine.data.writers import atomic_folder, write_tables
from npl_engine.errors import NplError

TRUTH_FOLDER = "truth"


def write_simulation(
    sim: Simulation | Iterable[Simulation], folder: str | Path, *, fmt: str = "parquet"
) -> Path:
    """Write ``sim`` to ``folder``: contract tables at the top, the truth under ``truth/``.

    Parameters
    ----------
    sim
        A simulation, or the chunks of one (:func:`simulate_chunks`), written as they come so
        that only one chunk is held in memory.
    folder
        Output folder; replaced as a whole if it holds only a previous simulation.
    fmt
        ``parquet`` or ``csv`` for the contract tables (the truth is always Parquet); ``eba``
        writes a tape's loans as an EBA NPL template set instead (one CSV file per template,
        see :func:`npl_engine.data.eba.write_template_files`).

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    NplError
        If ``fmt`` is ``eba`` and the simulation is a book, or no chunk is given.

    Notes
    -----
    ``truth/loans.parquet`` holds one row per loan, ``truth/curves.parquet`` the expected
    monthly collections, ``truth/simulation.json`` the settings. The engine's readers never
    look inside ``truth/``, so the folder is a valid dataset as it is. Everything is written
    into a staging folder first: an interrupted run leaves nothing behind. Chunks are appended
    to each file in turn, so the files hold the same rows as those of the whole simulation
    (the EBA templates are written at the end, from every chunk's loans).
    """
    folder = Path(folder)
    chunks = iter([sim] if isinstance(sim, Simulation) else sim)
    first = next(chunks, None)
    if first is None:
        msg = "write_simulation: no chunk of a simulation to write"
        raise NplError(msg)
    settings = first.settings
    if fmt == "eba" and settings.kind != "tape":
        msg = "the EBA templates describe a tape (loans at one cut-off): simulate with kind 'tape'"
        raise NplError(msg)
    with atomic_folder(folder, allowed=frozenset({TRUTH_FOLDER, *TEMPLATE_FILES})) as staging:
        truth = staging / TRUTH_FOLDER
        truth.mkdir()
        if isinstance(sim, Simulation):
            if fmt == "eba":
                write_template_files(sim.loans, staging)
            else:
                write_tables(
                    staging, loans=sim.loans, actions=sim.actions, payments=sim.payments, fmt=fmt
                )
            sim.truth.write_parquet(truth / "loans.parquet")
            sim.curves.write_parquet(truth / "curves.parquet", compression="lz4")
        else:
            _write_chunks(chain([first], chunks), staging, fmt=fmt)
        meta = {
            "simulator_version": SIMULATOR_VERSION,
            "settings": asdict(settings),
            "kind": settings.kind,
            "as_of_date": settings.observed_until,
            "recovery_definition": {
                "horizon_months": settings.recovery_horizon_months,
                "threshold": settings.recovery_threshold,
            },
        }
        (truth / "simulation.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder


def _write_chunks(chunks: Iterable[Simulation], staging: Path, *, fmt: str) -> None:
    """Append each chunk's tables and truth to their files, opened at the first chunk."""
    eba_loans: list[pl.DataFrame] = []
    with ExitStack() as stack:
        appenders: dict[Path, Callable[[pl.DataFrame], None]] = {}

        def append(path: Path, frame: pl.DataFrame, *, compression: str = "zstd") -> None:
            if path not in appenders:
                appenders[path] = _appender(stack, path, frame, compression=compression)
            appenders[path](frame)

        for chunk in chunks:
            tables = {"loans": chunk.loans, "actions": chunk.actions, "payments": chunk.payments}
            if fmt == "eba":
                eba_loans.append(chunk.loans)
                tables = {}
            for name, frame in tables.items():
                if frame is not None:
                    append(staging / f"{name}.{fmt}", frame)
            append(staging / TRUTH_FOLDER / "loans.parquet", chunk.truth)
            append(staging / TRUTH_FOLDER / "curves.parquet", chunk.curves, compression="lz4")
    if eba_loans:
        write_template_files(pl.concat(eba_loans), staging)


def _appender(
    stack: ExitStack, path: Path, first: pl.DataFrame, *, compression: str
) -> Callable[[pl.DataFrame], None]:
    """A function appending frames like ``first`` to a new Parquet or CSV file at ``path``."""
    if path.suffix == ".csv":
        handle = stack.enter_context(path.open("wb"))
        header = [True]

        def append_csv(frame: pl.DataFrame) -> None:
            frame.write_csv(handle, include_header=header[0])
            header[0] = False

        return append_csv
    writer = stack.enter_context(
        pq.ParquetWriter(path, first.to_arrow().schema, compression=compression)
    )

    def append_parquet(frame: pl.DataFrame) -> None:
        writer.write_table(frame.to_arrow())

    return append_parquet
