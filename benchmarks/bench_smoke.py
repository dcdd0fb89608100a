"""HARNESS SELF-CHECK, not a benchmark of npl_engine.

These rows prove that ``benchmarks/run.py`` and ``_harness.measure`` work on this machine:

- a timing row with a baseline from the same run (summing an array vs copying it), so the
  ratio column and ratio targets are exercised;
- two memory rows with known answers: allocating N float64 must peak at about N × 8 bytes, and
  summing an array built in ``setup`` must need next to nothing, which shows that set-up memory
  and the harness's own memory are kept out of the figure.

If a memory row fails, the memory figures of every other benchmark are suspect.
"""

from __future__ import annotations

import numpy as np

from _harness import MIB, BenchConfig, BenchResult, at_most, between, measure

N_FULL = 10_000_000
N_QUICK = 1_000_000
NOTE = "harness self-check"


def _random_array(n: int) -> np.ndarray:
    return np.random.default_rng(0).random(n)


def _array_and_buffer(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = _random_array(n)
    out = np.ones_like(a)  # touched now, so copying into it does not page-fault
    return a, out


def _sum(a: np.ndarray) -> float:
    return float(a.sum())


def _copy(state: tuple[np.ndarray, np.ndarray]) -> None:
    a, out = state
    np.copyto(out, a)


def _allocate_ones(n: int) -> int:
    # Return only the size: sending the array back would cost the parent memory for nothing.
    return int(np.ones(n).nbytes)


def numpy_sum(config: BenchConfig) -> list[BenchResult]:
    """Sum of N float64 against copying the same array (memory-bandwidth baseline)."""
    n = N_QUICK if config.quick else N_FULL
    repeat = 3 if config.quick else 10
    summed = measure(_sum, n, setup=_random_array, repeat=repeat)
    copied = measure(_copy, n, setup=_array_and_buffer, repeat=repeat)
    return [
        BenchResult(
            name=f"numpy sum of {n:,} float64: wall time",
            value=summed.wall_seconds,
            unit="s",
            # Summing reads the array once; copying reads it and writes as much again.
            target=at_most(2.0, ratio=True),
            baseline_name="np.copyto of the same array",
            baseline_value=copied.wall_seconds,
            notes=f"{NOTE}; best of {repeat}",
        ),
        BenchResult(
            name=f"numpy sum of {n:,} float64: extra peak memory",
            value=summed.peak_rss_delta_mib,
            unit="MiB",
            # The input is built in setup and must not count; the sum allocates nothing.
            target=at_most(2.0),
            notes=f"{NOTE}; input ({n * 8 / MIB:.0f} MiB) built in setup, excluded; "
            f"method {summed.peak_method}",
        ),
    ]


def numpy_allocate(config: BenchConfig) -> BenchResult:
    """Peak memory of allocating N float64 against the N × 8 bytes it must take."""
    n = N_QUICK if config.quick else N_FULL
    m = measure(_allocate_ones, n)
    return BenchResult(
        name=f"np.ones({n:,}): extra peak memory",
        value=m.peak_rss_delta_mib,
        unit="MiB",
        target=between(0.9, 1.2, ratio=True),
        baseline_name="N × 8 bytes",
        baseline_value=n * 8 / MIB,
        notes=f"{NOTE}; method {m.peak_method}; whole process peak {m.peak_rss_mib:.0f} MiB",
    )


BENCHMARKS = [numpy_sum, numpy_allocate]
