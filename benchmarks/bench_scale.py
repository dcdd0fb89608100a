"""10,000,000 loans on one machine (issue 18): each step at 10M against the same step at 1M.

The issue's target: a 10,000,000-loan tape simulated, validated, scored with curves, valued
under 3 scenarios and planned on this machine (2 cores), with peak memory at most 8 GiB at
every step, and the time per loan at 10M within 1.2 times that at 1M. Each step is a whole
``npl`` command, run as its own process, once at 1,000,000 loans (the baseline) and once at
10,000,000 (quick mode: 20,000 and 200,000):

========  ==========================================================================
simulate  ``npl simulate --kind tape --loans N --seed 18`` (drawn and written 1M at a time)
validate  ``npl validate TAPE --kind tape``
score     ``npl score --model M --data TAPE --out S --no-audit`` (scores and curves;
          the command chunks a tape above 250,000 loans by itself)
value     ``npl value --model M --data TAPE --scenarios scenarios/eu_2026.toml --out V
          --no-audit`` (the file's 3 scenarios)
policy    ``npl policy --effects E --data TAPE --budget 1000000 --out P --no-audit``
========  ==========================================================================

``score``, ``value`` and ``policy`` work through a tape of more than 250,000 loans in chunks
by themselves (``--chunk-rows``, docs/scale.md), so they are run as a user runs them. Each step
is its own function (``--only bench_scale.scale_score``...), so the long ones can be run one at
a time.

How it is measured: the command runs under GNU ``/usr/bin/time -f "%e %U %S %M"``: wall time,
CPU as user + system seconds, and peak resident memory (``%M``, the ``ru_maxrss`` that
``time`` gets from waiting for the command: its own high-water mark, imports included). Not
``os.wait4`` on a child of this process: Linux keeps a process's high-water mark across
``exec``, so a command started from the benchmark's process reports at least that process's
own peak (a ``/bin/true`` started from a process holding 1 GiB reports 1 GiB); ``time`` is a
small process, so what it passes on is negligible. Both time per loan figures are reported:
wall (what a user waits) and CPU (steadier on a shared machine). The load average is read
before and after each command.

Inputs, cached in ``benchmarks/_data`` (git-ignored): the tapes ``scale_tape_N`` that the
simulate step writes (the later steps simulate them, unmeasured, if absent); the recovery
model of ``bench_valuation`` (50,000-loan book); the effects ``scale_effects_B`` of ``npl
effects --no-refutations`` on a simulated book of B = 50,000 loans, seed 5 (4,000 in quick
mode). The 10M tape and its truth take about 14 GB of disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _harness import MIB, BenchConfig, BenchmarkError, BenchResult, at_most, npl_env

NPL = str(Path(sys.executable).with_name("npl"))
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios" / "eu_2026.toml"
TAPE_SEED = 18
BUDGET = "1000000"
MAX_PEAK_BYTES = 8 * 2**30
#: GNU time: it waits for the command itself, so ``%M`` is that command's own peak.
TIME = "/usr/bin/time"
TIMEOUT_SECONDS = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Run:
    """One command's wall time, CPU time (user + system) and peak resident memory."""

    args: tuple[str, ...]
    n_loans: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    load_before: float
    load_after: float


def run_npl(*args: str, n_loans: int) -> Run:
    """Run ``npl ARGS`` under GNU ``/usr/bin/time`` and read its wall, CPU and peak memory.

    Raises
    ------
    BenchmarkError
        If the command exits with an error (the message holds the end of its stderr).
    """
    with tempfile.TemporaryDirectory() as tmp:
        report, err = Path(tmp) / "time.txt", Path(tmp) / "stderr.txt"
        load_before = os.getloadavg()[0]
        with err.open("wb") as stderr:
            done = subprocess.run(
                [TIME, "-o", str(report), "-f", "%e %U %S %M", NPL, *args],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=npl_env(OMP_WAIT_POLICY="PASSIVE"),
                check=False,
                timeout=TIMEOUT_SECONDS,
            )
        if done.returncode != 0:
            tail = err.read_text(errors="replace")[-2000:]
            msg = f"npl {' '.join(args)} exited with {done.returncode}:\n{tail}"
            raise BenchmarkError(msg)
        wall, user, system, max_rss_kib = report.read_text().split()[-4:]
    return Run(
        args=args,
        n_loans=n_loans,
        wall_seconds=float(wall),
        cpu_seconds=float(user) + float(system),
        peak_rss_bytes=int(max_rss_kib) * 1024,
        load_before=load_before,
        load_after=os.getloadavg()[0],
    )


def _sizes(config: BenchConfig) -> tuple[int, int]:
    return (20_000, 200_000) if config.quick else (1_000_000, 10_000_000)


def _tape_dir(config: BenchConfig, n: int) -> Path:
    return config.data_dir / f"scale_tape_{n}"


def _simulate_args(config: BenchConfig, n: int) -> tuple[str, ...]:
    out = str(_tape_dir(config, n))
    return ("simulate", "--out", out, "--loans", str(n), "--seed", str(TAPE_SEED),
            "--kind", "tape")  # fmt: skip


def _tape(config: BenchConfig, n: int) -> str:
    """The tape of ``n`` loans the simulate step writes; simulated now (unmeasured) if absent."""
    folder = _tape_dir(config, n)
    if not (folder / "loans.parquet").is_file():
        run_npl(*_simulate_args(config, n), n_loans=n)
    return str(folder)


def _model(config: BenchConfig) -> str:
    from bench_valuation import _model_dir

    return str(_model_dir(config.data_dir))


def _effects(config: BenchConfig) -> str:
    """Effects of a simulated book (50,000 loans; 4,000 in quick mode), cached."""
    n_book = 4_000 if config.quick else 50_000
    folder = config.data_dir / f"scale_effects_{n_book}"
    if not (folder / "effects.json").is_file():
        book = config.data_dir / f"scale_book_{n_book}"
        if not (book / "loans.parquet").is_file():
            run_npl("simulate", "--out", str(book), "--loans", str(n_book), "--seed", "5",
                    n_loans=n_book)  # fmt: skip
        run_npl("effects", "--data", str(book), "--out", str(folder), "--no-refutations",
                n_loans=n_book)  # fmt: skip
    return str(folder)


def _rows(step: str, small: Run, large: Run) -> list[BenchResult]:
    """Per-loan wall and CPU time at the large size against the small one, and peak memory."""
    args = " ".join(large.args[:1] + tuple(a for a in large.args[1:] if a.startswith("--")))
    load = (
        f"load average (1 min) {small.load_before:.1f}→{small.load_after:.1f} at "
        f"{small.n_loans:,}, {large.load_before:.1f}→{large.load_after:.1f} at {large.n_loans:,}"
    )
    name = f"{step}, {large.n_loans:,} loans"
    baseline = f"the same command on {small.n_loans:,} loans"
    return [
        BenchResult(
            name=f"{name}: wall time per loan",
            value=large.wall_seconds / large.n_loans * 1e6,
            unit="µs",
            target=at_most(1.2, ratio=True),
            baseline_name=baseline,
            baseline_value=small.wall_seconds / small.n_loans * 1e6,
            notes=f"npl {args}; {large.wall_seconds:,.1f} s against "
            f"{small.wall_seconds:,.1f} s; {load}",
        ),
        BenchResult(
            name=f"{name}: CPU time per loan",
            value=large.cpu_seconds / large.n_loans * 1e6,
            unit="µs",
            target=at_most(1.2, ratio=True),
            baseline_name=baseline,
            baseline_value=small.cpu_seconds / small.n_loans * 1e6,
            notes=f"user + system, {large.cpu_seconds:,.1f} CPU-s against {small.cpu_seconds:,.1f}",
        ),
        BenchResult(
            name=f"{name}: peak memory",
            value=large.peak_rss_bytes / MIB,
            unit="MiB",
            target=at_most(MAX_PEAK_BYTES / MIB),
            baseline_name=baseline,
            baseline_value=small.peak_rss_bytes / MIB,
            notes="the command's peak RSS (/usr/bin/time %M), imports included",
        ),
    ]


def scale_simulate(config: BenchConfig) -> list[BenchResult]:
    """`npl simulate --kind tape` at 1M and 10M loans (the tapes the later steps read)."""
    small, large = (run_npl(*_simulate_args(config, n), n_loans=n) for n in _sizes(config))
    return _rows("npl simulate --kind tape", small, large)


def scale_validate(config: BenchConfig) -> list[BenchResult]:
    """`npl validate` of the 1M and 10M tapes."""
    runs = [run_npl("validate", _tape(config, n), "--kind", "tape", n_loans=n)
            for n in _sizes(config)]  # fmt: skip
    return _rows("npl validate", *runs)


def scale_score(config: BenchConfig) -> list[BenchResult]:
    """`npl score` (scores and curves) of the 1M and 10M tapes."""
    model = _model(config)
    runs = []
    for n in _sizes(config):
        out = str(config.data_dir / f"scale_scores_{n}")
        runs.append(run_npl("score", "--model", model, "--data", _tape(config, n), "--out", out,
                            "--no-audit", n_loans=n))  # fmt: skip
    return _rows("npl score", *runs)


def scale_value(config: BenchConfig) -> list[BenchResult]:
    """`npl value` under the 3 scenarios of eu_2026.toml, 1M and 10M tapes."""
    model = _model(config)
    runs = []
    for n in _sizes(config):
        out = str(config.data_dir / f"scale_value_{n}")
        runs.append(run_npl("value", "--model", model, "--data", _tape(config, n), "--scenarios",
                            str(SCENARIOS), "--out", out, "--no-audit",
                            n_loans=n))  # fmt: skip
    return _rows("npl value (3 scenarios)", *runs)


def scale_policy(config: BenchConfig) -> list[BenchResult]:
    """`npl policy --budget 1000000` with a 50,000-loan book's effects, 1M and 10M tapes."""
    effects = _effects(config)
    runs = []
    for n in _sizes(config):
        out = str(config.data_dir / f"scale_plan_{n}.parquet")
        runs.append(run_npl("policy", "--effects", effects, "--data", _tape(config, n),
                            "--budget", BUDGET, "--out", out, "--no-audit",
                            n_loans=n))  # fmt: skip
    return _rows("npl policy --budget 1000000", *runs)


BENCHMARKS = [scale_simulate, scale_validate, scale_score, scale_value, scale_policy]
