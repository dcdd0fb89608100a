"""Writing a simulation to disk: the dataset, and its truth in a separate ``truth/`` folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from npl_engine.data.eba import TEMPLATE_FILES, write_template_files
from npl_engine.data.simulator._simulate import SIMULATOR_VERSION, Simulation, SimulationSettings
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
        If ``fmt`` is ``eba`` and the simulation is a book, or no chunk is given (nothing is
        written then).

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
    if isinstance(sim, Simulation):
        _check_format(sim.settings, fmt=fmt)
    with atomic_folder(folder, allowed=frozenset({TRUTH_FOLDER, *TEMPLATE_FILES})) as staging:
        truth = staging / TRUTH_FOLDER
        truth.mkdir()
        if isinstance(sim, Simulation):
            settings = sim.settings
            if fmt == "eba":
                write_template_files(sim.loans, staging)
            else:
                write_tables(
                    staging, loans=sim.loans, actions=sim.actions, payments=sim.payments, fmt=fmt
                )
            sim.truth.write_parquet(truth / "loans.parquet")
            sim.curves.write_parquet(truth / "curves.parquet", compression="lz4")
        else:
            settings = _write_chunks(iter(sim), staging, fmt=fmt)
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


def _check_format(settings: SimulationSettings, *, fmt: str) -> None:
    if fmt == "eba" and settings.kind != "tape":
        msg = "the EBA templates describe a tape (loans at one cut-off): simulate with kind 'tape'"
        raise NplError(msg)


def _write_chunks(chunks: Iterator[Simulation], staging: Path, *, fmt: str) -> SimulationSettings:
    """Append each chunk's tables and truth to their files, opened at the first chunk.

    Only the chunk being written is referenced here, so memory holds one chunk at a time.
    Returns the chunks' settings.
    """
    settings: SimulationSettings | None = None
    eba_loans: list[pl.DataFrame] = []
    with ExitStack() as stack:
        appenders: dict[Path, Callable[[pl.DataFrame], None]] = {}

        def append(path: Path, frame: pl.DataFrame | None, *, compression: str = "zstd") -> None:
            if frame is None:
                return
            if path not in appenders:
                appenders[path] = _appender(stack, path, frame, compression=compression)
            appenders[path](frame)

        for chunk in chunks:
            if settings is None:
                _check_format(chunk.settings, fmt=fmt)
                settings = chunk.settings
            if fmt == "eba":
                eba_loans.append(chunk.loans)
            else:
                append(staging / f"loans.{fmt}", chunk.loans)
                append(staging / f"actions.{fmt}", chunk.actions)
                append(staging / f"payments.{fmt}", chunk.payments)
            append(staging / TRUTH_FOLDER / "loans.parquet", chunk.truth)
            append(staging / TRUTH_FOLDER / "curves.parquet", chunk.curves, compression="lz4")
            # Released before the next chunk is drawn, which the loop does before rebinding.
            del chunk
    if settings is None:
        msg = "write_simulation: no chunk of a simulation to write"
        raise NplError(msg)
    if eba_loans:
        write_template_files(pl.concat(eba_loans), staging)
    return settings


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
