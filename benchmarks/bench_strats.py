"""Stratification benchmark (issue 16 target): `npl strats` on a 1,000,000-loan tape in < 10 s.

Timed as a user runs it, in-process through click: reading and validating the tape, the eight
standard tables, and writing them as Parquet, CSV and one Excel workbook (no model). Baseline:
polars scanning and collecting the same loans file, the least work any table of every loan
needs. The tape is simulated once and cached in ``benchmarks/_data``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from _harness import BenchConfig, BenchResult, at_most, measure, npl_cli, simulated_dataset

N_FULL = 1_000_000
N_QUICK = 20_000


def _strats(folder: str, out: str) -> None:
    npl_cli("strats", "--data", folder, "--out", out)


def _read_loans(folder: str) -> int:
    return pl.scan_parquet(Path(folder) / "loans.parquet").collect().height


def strats(config: BenchConfig) -> list[BenchResult]:
    """`npl strats` of a tape against polars reading its loans file."""
    n = N_QUICK if config.quick else N_FULL
    tape = simulated_dataset(config, "strats", n, 17, "tape")
    out = config.data_dir / f"strats_out_{n}"
    shutil.rmtree(out, ignore_errors=True)
    run = measure(_strats, str(tape), str(out), repeat=3)
    read = measure(_read_loans, str(tape), repeat=3)
    return [
        BenchResult(
            name=f"npl strats, {n:,}-loan tape: wall time",
            value=run.wall_seconds,
            unit="s",
            target=None if config.quick else at_most(10.0),
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.wall_seconds,
            notes=f"8 tables, validation and Parquet/CSV/xlsx included; best of 3; "
            f"peak memory {run.peak_rss_mib:,.0f} MiB",
        )
    ]


BENCHMARKS = [strats]
