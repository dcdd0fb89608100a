"""`--cluster local:2` against the in-process run (issue 18), 2-core machine.

- ``npl score`` (scores and curves) on a 1,000,000-loan tape with ``--cluster local:2`` (two
  worker processes started by npl). Baseline: the same command in process. The ratio is the
  cost of the cluster end to end on one machine: starting the workers and importing the engine
  in each, sending the partitions and the model, gathering the rows back. On a 2-core machine
  two workers cannot beat one process by much; the point of ``--cluster`` is more machines.

Both runs are whole ``npl`` commands in subprocesses (a LocalCluster cannot start worker
processes from the harness's measuring process, which is a daemon), so the figures are wall
times; memory is not reported (the workers are other processes). The model is the one
``bench_valuation`` trains (50,000-loan book), cached in ``benchmarks/_data``.

Run once (2026-12-06, shared 2-core machine, load average 6 to 9): 1,000,000 loans, 338.5 s on
local:2 against 172.2 s in process (1.97×); quick run, 50,000 loans: 3.7×.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _harness import BenchConfig, BenchResult, measure
from bench_valuation import _model_dir

NPL = str(Path(sys.executable).with_name("npl"))


def _tape(data_dir: Path, n: int) -> Path:
    from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation

    folder = data_dir / f"distributed_tape_{n}"
    if not (folder / "loans.parquet").exists():
        write_simulation(simulate(SimulationSettings(n_loans=n, seed=18, kind="tape")), folder)
    return folder


def _score(model: str, tape: str, out: str, *cluster: str) -> None:
    subprocess.run(
        [NPL, "score", "--model", model, "--data", tape, "--out", out, "--no-audit", *cluster],
        check=True,
        capture_output=True,
    )


def _score_in_process(args: tuple[str, str, str]) -> None:
    _score(*args)


def _score_on_local_cluster(args: tuple[str, str, str]) -> None:
    _score(*args, "--cluster", "local:2")


def _args(model: str, tape: str, out: str) -> tuple[str, str, str]:
    return model, tape, out


def cluster_overhead(config: BenchConfig) -> list[BenchResult]:
    """`npl score` with --cluster local:2 against the same command in process."""
    n = 50_000 if config.quick else 1_000_000
    model = str(_model_dir(config.data_dir))
    tape = str(_tape(config.data_dir, n))
    out = str(config.data_dir / "distributed_out")
    local = measure(_score_in_process, model, tape, out + "_a", setup=_args)
    remote = measure(_score_on_local_cluster, model, tape, out + "_b", setup=_args)
    return [
        BenchResult(
            name=f"npl score {n:,} loans with curves, --cluster local:2: wall time",
            value=remote.wall_seconds,
            unit="s",
            target=None,
            baseline_name="the same command in process",
            baseline_value=local.wall_seconds,
            notes="whole command incl. reading, validation, writing; 2 worker processes",
        )
    ]


BENCHMARKS = [cluster_overhead]
