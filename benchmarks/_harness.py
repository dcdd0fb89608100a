"""What benchmark modules use: result rows, targets, and isolated measurement of time and memory.

A benchmark module ``benchmarks/bench_*.py`` defines ``BENCHMARKS``, a list of callables. Each
takes no argument or one :class:`BenchConfig`, and returns one :class:`BenchResult` or an
iterable of them. ``benchmarks/run.py`` runs them and writes the table.

Measuring memory
----------------
:func:`measure` runs the measured function in a fresh interpreter (``multiprocessing`` "spawn"
context), so neither the harness, earlier benchmarks nor the parent's imports count. In that
child it

1. runs ``setup`` (if given) and imports whatever ``fn`` needs: not measured;
2. records the resident set size (``VmRSS``) and resets the kernel's high-water mark
   (``VmHWM``) by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0);
3. runs ``fn`` ``repeat`` times, timing each call with ``time.perf_counter``;
4. reads ``VmHWM``: the peak RSS while ``fn`` ran.

``peak_rss_bytes`` is that peak for the whole child (interpreter, imports and set-up data
included); ``peak_rss_delta_bytes`` is the peak minus the RSS just before the work, i.e. the
memory the work itself needed on top of its inputs. Where the high-water mark cannot be reset
(not Linux, or ``clear_refs`` not writable), the child falls back to ``ru_maxrss``, which also
covers set-up; ``Measurement.peak_method`` says which was used.

The parent does not use ``getrusage(RUSAGE_CHILDREN).ru_maxrss``: it is the largest peak of
*any* child waited for so far, so after one big benchmark every later one would report the big
one's figure.
"""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import pickle
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

__all__ = [
    "MIB",
    "BenchConfig",
    "BenchResult",
    "BenchmarkError",
    "Measurement",
    "Target",
    "at_least",
    "at_most",
    "between",
    "format_number",
    "measure",
]

MIB = 2**20
"""Bytes in a mebibyte: memory is reported in MiB."""


# --------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class Target:
    """An acceptable range for a value, or for its ratio to the baseline.

    Build one with :func:`at_most`, :func:`at_least` or :func:`between`.

    Parameters
    ----------
    lo, hi
        Inclusive bounds; ``None`` means unbounded on that side.
    ratio
        If true the bounds apply to ``value / baseline_value`` rather than to ``value``.
    """

    lo: float | None = None
    hi: float | None = None
    ratio: bool = False

    def met_by(self, x: float) -> bool:
        """Whether ``x`` (the value, or the ratio if ``ratio``) lies within the bounds."""
        if math.isnan(x):
            return False
        return (self.lo is None or x >= self.lo) and (self.hi is None or x <= self.hi)

    def describe(self, unit: str) -> str:
        """Render the target for the table, e.g. ``≤ 2 s`` or ``≤ 3× baseline``."""
        suffix = "× baseline" if self.ratio else f" {unit}".rstrip()
        if self.lo is not None and self.hi is not None:
            return f"{format_number(self.lo)} to {format_number(self.hi)}{suffix}"
        if self.hi is not None:
            return f"≤ {format_number(self.hi)}{suffix}"
        if self.lo is not None:
            return f"≥ {format_number(self.lo)}{suffix}"
        return "—"


#: The project's sources, put first on PYTHONPATH for commands run as their own process.
SRC = Path(__file__).resolve().parent.parent / "src"
_NPL = "from npl_engine.cli import main; main()"


def npl_env(**extra: str) -> dict[str, str]:
    """The environment of an `npl` process: this one's, with the project's sources first."""
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def npl_command(*args: str) -> int:
    """Run ``npl ARGS`` as its own process; return the largest peak RSS of any child so far.

    For commands measured as a user runs them: the measuring process is a daemon, and joblib
    runs on one core in a daemon (the random-forest baseline of `npl train`, the causal forest
    of `npl effects`). Call it once per measuring process, so the peak is this command's.
    """
    subprocess.run(
        [sys.executable, "-c", _NPL, *args], check=True, capture_output=True, env=npl_env()
    )
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def at_most(bound: float, *, ratio: bool = False) -> Target:
    """Target ``value <= bound`` (or ``value / baseline_value <= bound`` with ``ratio=True``)."""
    return Target(hi=bound, ratio=ratio)


def at_least(bound: float, *, ratio: bool = False) -> Target:
    """Target ``value >= bound`` (or the ratio to the baseline with ``ratio=True``)."""
    return Target(lo=bound, ratio=ratio)


def between(lo: float, hi: float, *, ratio: bool = False) -> Target:
    """Target ``lo <= value <= hi`` (or the ratio to the baseline with ``ratio=True``)."""
    return Target(lo=lo, hi=hi, ratio=ratio)


@dataclass(frozen=True, slots=True)
class BenchResult:
    """One row of the results table.

    Parameters
    ----------
    name
        What was measured, e.g. ``"validate 1M-loan tape: wall time"``.
    value
        The measured figure, in ``unit``.
    unit
        ``"s"``, ``"MiB"``, ``"rows/s"``...
    target
        The acceptable range, or ``None`` for a figure reported without a target.
    baseline_name, baseline_value
        A reference measured in the same run and in the same unit (e.g. "polars reads the same
        Parquet file"); the table shows ``value / baseline_value``. Ratios survive a shared,
        noisy machine far better than absolute figures.
    notes
        Anything a reader needs: data size, repeats, caveats.
    """

    name: str
    value: float
    unit: str
    target: Target | None
    baseline_name: str | None = None
    baseline_value: float | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        if (self.baseline_name is None) != (self.baseline_value is None):
            msg = f"{self.name}: give both baseline_name and baseline_value, or neither"
            raise ValueError(msg)
        if self.target is not None and self.target.ratio and self.baseline_value is None:
            msg = f"{self.name}: a ratio target needs a baseline"
            raise ValueError(msg)

    @property
    def ratio(self) -> float | None:
        """``value / baseline_value``, or ``None`` without a baseline."""
        if self.baseline_value is None:
            return None
        if self.baseline_value == 0:
            return math.inf if self.value > 0 else math.nan
        return self.value / self.baseline_value

    @property
    def passed(self) -> bool | None:
        """Whether the target is met; ``None`` if there is no target."""
        if self.target is None:
            return None
        x = self.ratio if self.target.ratio else self.value
        return self.target.met_by(math.nan if x is None else x)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What ``run.py`` passes to a benchmark callable that takes an argument.

    Parameters
    ----------
    quick
        Run small inputs and few repeats: for checking that benchmarks work, not for figures.
    data_dir
        Folder (git-ignored) where a benchmark may cache generated input data between runs.
    """

    quick: bool = False
    data_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parent / "_data")


# --------------------------------------------------------------------------------------------
# Measurement


class BenchmarkError(RuntimeError):
    """The measured function failed, timed out, or its process died."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """Time and memory of one isolated run of a function (see the module docstring).

    Parameters
    ----------
    wall_seconds
        Fastest of the ``repeat`` calls: the least disturbed by other work on the machine.
    wall_seconds_all
        Every call's wall time, in order.
    peak_rss_bytes
        Peak resident memory of the child process while the calls ran.
    rss_before_bytes
        Resident memory of the child just before the first call (inputs and imports loaded).
    peak_method
        ``"VmHWM"`` (high-water mark reset before the work) or ``"ru_maxrss"`` (fallback: peak
        since the child started, set-up included).
    result
        What the last call returned, sent back by pickling; keep it small.
    """

    wall_seconds: float
    wall_seconds_all: tuple[float, ...]
    peak_rss_bytes: int
    rss_before_bytes: int
    peak_method: str
    result: Any = None

    @property
    def peak_rss_delta_bytes(self) -> int:
        """Memory the work needed on top of what the process held before it started."""
        return max(0, self.peak_rss_bytes - self.rss_before_bytes)

    @property
    def peak_rss_mib(self) -> float:
        """``peak_rss_bytes`` in MiB."""
        return self.peak_rss_bytes / MIB

    @property
    def peak_rss_delta_mib(self) -> float:
        """``peak_rss_delta_bytes`` in MiB."""
        return self.peak_rss_delta_bytes / MIB


def measure(
    fn: Callable[..., Any],
    *args: Any,
    setup: Callable[..., Any] | None = None,
    repeat: int = 1,
    timeout: float = 1800.0,
) -> Measurement:
    """Run ``fn`` in a fresh process and measure its wall time and peak memory.

    Parameters
    ----------
    fn
        A module-level function (it is pickled by reference into the child).
    *args
        Passed to ``setup`` if given, else to ``fn``. Pickled into the child.
    setup
        Optional module-level function run in the child before measuring; ``fn`` then receives
        its return value as sole argument. Use it to build inputs whose memory must not count.
    repeat
        Calls of ``fn`` in the same child; the fastest is reported, the peak covers all. The
        previous call's result is dropped before the next call starts.
    timeout
        Seconds to wait for the child before killing it.

    Returns
    -------
    Measurement
        Times, peak memory and the last call's result.

    Raises
    ------
    BenchmarkError
        If ``fn`` or ``setup`` raised (the message holds the child's traceback), the child died
        (for instance killed for lack of memory) or ran out of time.
    TypeError
        If ``fn``, ``setup`` or ``args`` cannot be pickled (lambdas, nested functions).
    """
    if repeat < 1:
        msg = f"repeat must be at least 1, got {repeat}"
        raise ValueError(msg)
    payload = (fn, args, setup, repeat)
    try:
        pickle.dumps(payload)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        msg = (
            "measure() runs the work in a fresh process: fn, setup and args must be picklable "
            f"(module-level functions, no lambdas): {exc}"
        )
        raise TypeError(msg) from exc

    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child_main, args=(sender, *payload), daemon=True)
    process.start()
    sender.close()  # so that the parent sees end-of-file if the child dies
    try:
        if not receiver.poll(timeout):
            process.kill()
            msg = f"{_qualname(fn)} did not finish within {timeout:g} s"
            raise BenchmarkError(msg)
        try:
            status, body = receiver.recv()
        except EOFError:
            process.join()
            msg = (
                f"{_qualname(fn)}: its process died with exit code {process.exitcode} "
                "(a negative code is a signal; -9 often means it ran out of memory)"
            )
            raise BenchmarkError(msg) from None
    finally:
        process.join(timeout=60)
        receiver.close()
    if status == "error":
        msg = f"{_qualname(fn)} failed in its benchmark process:\n{body}"
        raise BenchmarkError(msg)
    return Measurement(**body)


def npl_cli(*args: str) -> None:
    """Run ``npl ARGS`` in this process, through click (an error raises instead of exiting)."""
    from npl_engine.cli import main

    main.main(args=list(args), standalone_mode=False)


def _write_simulation(folder: str, n: int, seed: int, kind: str) -> None:
    from npl_engine.data import write_dataset
    from npl_engine.data.simulator import SimulationSettings, simulate

    sim = simulate(SimulationSettings(n_loans=n, seed=seed, kind=kind))
    write_dataset(folder, loans=sim.loans, actions=sim.actions, payments=sim.payments)


def simulated_dataset(config: BenchConfig, prefix: str, n: int, seed: int, kind: str) -> Path:
    """A simulated book or tape (contract tables only, no truth), cached between runs.

    Written once, in a child process, to ``data_dir/PREFIX_KIND_N_seedSEED``; the simulator
    is deterministic by seed, so a cached folder holds the same data.
    """
    folder = config.data_dir / f"{prefix}_{kind}_{n}_seed{seed}"
    if not (folder / "loans.parquet").is_file():
        measure(_write_simulation, str(folder), n, seed, kind, timeout=3600.0)
    return folder


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def _child_main(
    conn: Connection,
    fn: Callable[..., Any],
    args: Sequence[Any],
    setup: Callable[..., Any] | None,
    repeat: int,
) -> None:
    """Body of the measuring process: set up, reset the peak, run, report."""
    try:
        call_args = (setup(*args),) if setup is not None else tuple(args)
        del args
        gc.collect()
        rss_before = _status_bytes("VmRSS")
        peak_method = "VmHWM" if _reset_peak() else "ru_maxrss"
        times: list[float] = []
        result: Any = None
        for _ in range(repeat):
            result = None  # the previous result must not add to this call's peak
            gc.collect()
            start = time.perf_counter()
            result = fn(*call_args)
            times.append(time.perf_counter() - start)
        peak = _status_bytes("VmHWM") if peak_method == "VmHWM" else _ru_maxrss_bytes()
        body = {
            "wall_seconds": min(times),
            "wall_seconds_all": tuple(times),
            "peak_rss_bytes": peak if peak is not None else 0,
            "rss_before_bytes": rss_before if rss_before is not None else 0,
            "peak_method": peak_method,
            "result": result,
        }
        conn.send(("ok", body))
    except BaseException:  # every failure must reach the parent as text
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _status_bytes(key: str) -> int | None:
    """Read a ``kB`` field of ``/proc/self/status`` in bytes, or ``None`` if unavailable."""
    try:
        with Path("/proc/self/status").open(encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if key == "VmRSS":
        return _psutil_rss()
    return None


def _psutil_rss() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.Process().memory_info().rss)


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; ``False`` where not possible."""
    try:
        with Path("/proc/self/clear_refs").open("w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # macOS: bytes; else kB


def format_number(x: float) -> str:
    """Format a bound or figure compactly: 4 significant digits, thousands separated."""
    if not math.isfinite(x):
        return str(x)
    if abs(x) >= 10_000:
        return f"{x:,.0f}"
    return f"{x:.4g}"
