"""Import benchmark: an EBA template set of 100,000 loans into the data contract (issue 16).

- ``npl import eba`` of a 100,000-loan template set (a folder of CSV files written by
  ``npl simulate --kind tape --format eba``): under 60 s. Baseline: polars reading the same
  CSV files, the least work any import of them needs.

Each figure comes from a fresh process (see ``_harness.measure``); the CLI is called in-process
through click so the figures include argument parsing, mapping, checks and writing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from _harness import BenchConfig, BenchResult, at_most, measure, npl_cli

N_FULL = 100_000
N_QUICK = 5_000


def _simulate(out: str, n: int) -> None:
    args = ("--loans", str(n), "--seed", "11", "--kind", "tape", "--format", "eba")
    npl_cli("simulate", "--out", out, *args)


def _import(source: str, out: str) -> None:
    npl_cli("import", "eba", "--in", source, "--out", out)


def _read_templates(source: str) -> int:
    return sum(pl.read_csv(p, infer_schema=False).height for p in Path(source).glob("*.csv"))


def import_eba_templates(config: BenchConfig) -> list[BenchResult]:
    """Import a simulated tape's EBA template set with the CLI, against reading its CSV files."""
    n = N_QUICK if config.quick else N_FULL
    source = config.data_dir / f"eba_{n}"
    out = config.data_dir / f"eba_{n}_imported"
    shutil.rmtree(source, ignore_errors=True)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    measure(_simulate, str(source), n)
    run = measure(_import, str(source), str(out), repeat=1 if config.quick else 2)
    read = measure(_read_templates, str(source), repeat=3)
    return [
        BenchResult(
            name=f"npl import eba, {n:,}-loan template set (CSV folder): wall time",
            value=run.wall_seconds,
            unit="s",
            target=at_most(60.0) if not config.quick else None,
            baseline_name="polars reads the template CSV files",
            baseline_value=read.wall_seconds,
            notes=f"6 templates; best of {1 if config.quick else 2}; peak memory"
            f" {run.peak_rss_mib:,.0f} MiB",
        ),
    ]


BENCHMARKS = [import_eba_templates]
