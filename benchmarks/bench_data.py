"""Foundation benchmarks: simulate and validate a 1,000,000-loan tape (issue targets).

- ``npl simulate --kind tape --loans 1000000``: under 30 s. Baseline: polars writing the same
  loans table to Parquet (a floor no simulator can beat, measured in the same run).
- ``npl validate`` of that tape (Parquet): under 5 s and 2 GB peak memory. Baseline: polars
  scanning the same file and collecting it, the least work any check of every row needs.

Each figure comes from a fresh process (see ``_harness.measure``); the CLI is called in-process
through click so the figures include argument parsing, validation and printing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from _harness import BenchConfig, BenchResult, at_most, measure, npl_cli

N_FULL = 1_000_000
N_QUICK = 20_000


def _simulate(out: str, n: int) -> None:
    npl_cli("simulate", "--out", out, "--loans", str(n), "--seed", "7", "--kind", "tape")


def _validate(folder: str) -> None:
    npl_cli("validate", folder, "--kind", "tape")


def _write_loans(folder: str) -> None:
    pl.read_parquet(Path(folder) / "loans.parquet").write_parquet(Path(folder) / "copy.parquet")


def _read_loans(folder: str) -> int:
    return pl.scan_parquet(Path(folder) / "loans.parquet").collect().height


def _warm_numba(n: int) -> None:
    # numba compiles the truth kernels once and caches them on disk; keep that out of timings.
    from npl_engine.data.simulator import SimulationSettings, simulate

    simulate(SimulationSettings(n_loans=n, seed=0, kind="tape"))


def simulate_and_validate(config: BenchConfig) -> list[BenchResult]:
    """Simulate a tape with the CLI, then validate it; each against a polars I/O baseline."""
    n = N_QUICK if config.quick else N_FULL
    folder = config.data_dir / f"tape_{n}"
    shutil.rmtree(folder, ignore_errors=True)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    measure(_warm_numba, 100)
    sim = measure(_simulate, str(folder), n)
    write = measure(_write_loans, str(folder))
    (folder / "copy.parquet").unlink()
    val = measure(_validate, str(folder), repeat=3)
    read = measure(_read_loans, str(folder), repeat=3)
    return [
        BenchResult(
            name=f"npl simulate --kind tape, {n:,} loans: wall time",
            value=sim.wall_seconds,
            unit="s",
            target=at_most(30.0) if not config.quick else None,
            baseline_name="polars writes the loans table",
            baseline_value=write.wall_seconds,
            notes=f"truth included; peak memory {sim.peak_rss_mib:,.0f} MiB",
        ),
        BenchResult(
            name=f"npl validate (Parquet tape), {n:,} loans: wall time",
            value=val.wall_seconds,
            unit="s",
            target=at_most(5.0) if not config.quick else None,
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.wall_seconds,
            notes="best of 3",
        ),
        BenchResult(
            name=f"npl validate (Parquet tape), {n:,} loans: peak memory",
            value=val.peak_rss_mib,
            unit="MiB",
            target=at_most(2048.0) if not config.quick else None,
            baseline_name="polars scans and collects the loans file",
            baseline_value=read.peak_rss_mib,
            notes=f"whole process incl. imports; method {val.peak_method}",
        ),
    ]


BENCHMARKS = [simulate_and_validate]
