"""Run the benchmarks in ``benchmarks/bench_*.py`` and write a markdown table of the results.

Usage::

    python benchmarks/run.py --out benchmarks/results.md [--only SUBSTRING] [--quick]

Each ``bench_*.py`` module defines ``BENCHMARKS``, a list of callables taking no argument or one
``BenchConfig`` and returning one ``BenchResult`` or an iterable of them (see ``_harness.py``
and ``docs/benchmarks.md``). ``--only`` keeps the callables whose id ``bench_module.function``
contains the substring. A benchmark that raises is reported as an ERROR row, the others still
run, and the exit code is 1; a missed target is reported as FAIL but does not change the exit
code, because timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

# Benchmark modules import ``_harness`` and ``npl_engine`` from the working tree; the measuring
# processes inherit this path, so they import the same code.
for _path in (REPO_DIR / "src", BENCH_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from _harness import BenchConfig, BenchResult, format_number  # noqa: E402

PACKAGES = (
    "npl_engine",
    "numpy",
    "polars",
    "pyarrow",
    "pandas",
    "scikit-learn",
    "lightgbm",
    "pydantic",
    "duckdb",
)

EXIT_OK, EXIT_BENCH_ERROR, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one benchmark callable produced: its rows, or the error it raised."""

    ident: str
    rows: tuple[BenchResult, ...]
    seconds: float
    error: str | None = None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run the selected benchmarks, write the table; return the exit code."""
    args = _parse_args(argv)
    selected, import_errors = _discover(BENCH_DIR, only=args.only)
    if not selected and not import_errors:
        print(f"error: no benchmark id contains {args.only!r}", file=sys.stderr)
        return EXIT_USAGE
    config = BenchConfig(quick=args.quick)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    outcomes = import_errors + _run_all(selected, config)
    machine = machine_info()
    command = " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])])
    text = render_markdown(outcomes, machine=machine, command=command, quick=args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    _print_summary(outcomes, out=args.out)
    return EXIT_BENCH_ERROR if any(o.error for o in outcomes) else EXIT_OK


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="markdown file to write")
    parser.add_argument(
        "--only", default="", metavar="SUBSTRING", help="run ids containing SUBSTRING"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small inputs, few repeats: checks, not figures"
    )
    return parser.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Discovery and running


def _discover(
    bench_dir: Path, *, only: str
) -> tuple[list[tuple[str, Callable[..., Any]]], list[Outcome]]:
    """Import every ``bench_*.py`` and list its benchmarks as ``(id, callable)``."""
    selected: list[tuple[str, Callable[..., Any]]] = []
    errors: list[Outcome] = []
    for path in sorted(bench_dir.glob("bench_*.py")):
        name = path.stem
        try:
            module = importlib.import_module(name)
            benchmarks = list(module.BENCHMARKS)
        except Exception as exc:  # one broken module must not stop the others
            if only in name:
                errors.append(Outcome(name, (), 0.0, f"cannot load: {type(exc).__name__}: {exc}"))
            continue
        for fn in benchmarks:
            ident = f"{name}.{getattr(fn, '__name__', repr(fn))}"
            if only in ident:
                selected.append((ident, fn))
    return selected, errors


def _run_all(selected: list[tuple[str, Callable[..., Any]]], config: BenchConfig) -> list[Outcome]:
    """Run the benchmarks one after the other under a progress display."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    outcomes: list[Outcome] = []
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("benchmarks", total=len(selected))
        for ident, fn in selected:
            progress.update(task, description=ident)
            outcomes.append(_run_one(ident, fn, config))
            status = "[red]error" if outcomes[-1].error else "[green]done"
            progress.console.print(f"{status}[/] {ident} ({outcomes[-1].seconds:.1f} s)")
            progress.advance(task)
    return outcomes


def _run_one(ident: str, fn: Callable[..., Any], config: BenchConfig) -> Outcome:
    start = time.perf_counter()
    try:
        produced = fn(config) if _takes_config(fn) else fn()
        rows = _as_rows(produced)
    except Exception as exc:  # reported as an ERROR row; the run goes on
        return Outcome(ident, (), time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
    return Outcome(ident, rows, time.perf_counter() - start)


def _takes_config(fn: Callable[..., Any]) -> bool:
    params = inspect.signature(fn).parameters.values()
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _as_rows(produced: object) -> tuple[BenchResult, ...]:
    """Accept one BenchResult or an iterable of them; refuse anything else."""
    if isinstance(produced, BenchResult):
        return (produced,)
    items = list(produced) if isinstance(produced, Iterable) else [produced]
    rows = tuple(item for item in items if isinstance(item, BenchResult))
    if len(rows) != len(items) or not rows:
        kinds = ", ".join(sorted({type(item).__name__ for item in items})) or "nothing"
        msg = f"a benchmark must return one or more BenchResult rows, got {kinds}"
        raise TypeError(msg)
    return rows


# --------------------------------------------------------------------------------------------
# Machine and report


def machine_info() -> dict[str, str]:
    """Describe the machine and software the figures were measured on."""
    import psutil

    mem = psutil.virtual_memory()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpus": f"{os.cpu_count()} logical, {usable} usable by this process",
        "ram": f"{mem.total / 2**30:.1f} GiB total, {mem.available / 2**30:.1f} GiB available",
        "load average (1, 5, 15 min)": load,
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
        "git commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        if package == "npl_engine":
            try:
                project = tomllib.loads((REPO_DIR / "pyproject.toml").read_text(encoding="utf-8"))
                return f"{project['project']['version']} (source tree, not installed)"
            except (OSError, KeyError, tomllib.TOMLDecodeError):
                pass
        return "not installed"


def _git_commit() -> str:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "none (not a commit)"


def render_markdown(
    outcomes: Sequence[Outcome], *, machine: dict[str, str], command: str, quick: bool
) -> str:
    """Render the results as a markdown page: machine, summary, then one row per figure."""
    rows = [r for o in outcomes for r in o.rows]
    n_pass = sum(r.passed is True for r in rows)
    n_fail = sum(r.passed is False for r in rows)
    n_error = sum(o.error is not None for o in outcomes)
    lines = [
        "# Benchmark results",
        "",
        f"`{command}`" + (" — **quick mode: small inputs, not figures to quote**" if quick else ""),
        "",
        *(f"- **{key}**: {value}" for key, value in machine.items()),
        "",
        f"{len(rows)} figures: {n_pass} pass, {n_fail} fail, "
        f"{len(rows) - n_pass - n_fail} without target; {n_error} benchmark(s) raised an error.",
        "Ratios compare with a baseline measured in the same run (see docs/benchmarks.md).",
        "",
        "| benchmark | value | unit | target | result | vs baseline | notes |",
        "|---|--:|---|---|---|---|---|",
    ]
    for outcome in outcomes:
        if outcome.error is not None:
            cells = [outcome.ident, "—", "", "", "**ERROR**", "", outcome.error]
            lines.append(_table_row(cells))
        for r in outcome.rows:
            result = {True: "pass", False: "**FAIL**", None: "—"}[r.passed]
            target = r.target.describe(r.unit) if r.target is not None else "—"
            versus = ""
            if r.ratio is not None:
                base = f"{format_number(r.baseline_value or 0.0)} {r.unit}".rstrip()
                versus = f"{format_number(r.ratio)}× {r.baseline_name} ({base})"
            cells = [r.name, format_number(r.value), r.unit, target, result, versus, r.notes]
            lines.append(_table_row(cells))
    return "\n".join(lines) + "\n"


def _table_row(cells: Sequence[str]) -> str:
    escaped = (c.replace("|", "\\|").replace("\n", " ") for c in cells)
    return "| " + " | ".join(escaped) + " |"


def _print_summary(outcomes: Sequence[Outcome], *, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Benchmarks (written to {out})")
    for col in ("benchmark", "value", "unit", "result", "vs baseline"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for outcome in outcomes:
        if outcome.error is not None:
            table.add_row(outcome.ident, "—", "", "[red]ERROR", outcome.error)
        for r in outcome.rows:
            result = {True: "[green]pass", False: "[red]FAIL", None: "—"}[r.passed]
            ratio = f"{format_number(r.ratio)}×" if r.ratio is not None else ""
            table.add_row(r.name, format_number(r.value), r.unit, result, ratio)
    Console(stderr=True).print(table)


if __name__ == "__main__":
    sys.exit(main())
