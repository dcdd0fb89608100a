"""The benchmark harness: run.py writes its table, measure() isolates time and memory."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``benchmarks/_harness.py`` so that measuring processes can import it too."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    return importlib.import_module("_harness")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH_DIR / "run.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_run_quick_smoke_writes_table(tmp_path: Path) -> None:
    """run.py --quick --only smoke exits 0 and writes the machine header and every smoke row."""
    out = tmp_path / "results.md"
    done = _run("--out", str(out), "--only", "smoke", "--quick")
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    for key in ("**cpu**", "**cpus**", "**ram**", "**python**", "**packages**", "**date**"):
        assert key in text
    assert "| benchmark | value | unit | target | result | vs baseline | notes |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "self-check" in line]
    assert len(rows) == 3
    sum_row = next(r for r in rows if "numpy sum of 1,000,000 float64: wall time" in r)
    assert "× np.copyto of the same array" in sum_row
    # The memory rows have known answers; if they fail, measure() does not isolate the work.
    memory_rows = [r for r in rows if "peak memory" in r]
    assert len(memory_rows) == 2
    assert all("| pass |" in r for r in memory_rows), memory_rows


def test_run_without_match_is_a_usage_error(tmp_path: Path) -> None:
    """--only with a substring no benchmark id contains exits 2 and writes nothing."""
    out = tmp_path / "results.md"
    done = _run("--out", str(out), "--only", "no-such-benchmark")
    assert done.returncode == 2
    assert "no benchmark id contains" in done.stderr
    assert not out.exists()


def test_measure_isolates_allocation(harness: ModuleType) -> None:
    """Allocating 10M float64 (76.3 MiB) measures as that much extra peak memory, ±10 %."""
    m = harness.measure(np.ones, 10_000_000)
    assert m.peak_method == "VmHWM"
    assert m.peak_rss_delta_mib == pytest.approx(10_000_000 * 8 / 2**20, rel=0.1)
    assert m.peak_rss_bytes > m.peak_rss_delta_bytes
    assert m.result.shape == (10_000_000,)


def test_measure_excludes_setup_memory(harness: ModuleType) -> None:
    """An input built by setup does not count: summing a 76 MiB array needs under 2 MiB more."""
    m = harness.measure(np.sum, 10_000_000, setup=np.ones, repeat=3)
    assert m.result == 10_000_000
    assert m.peak_rss_delta_mib < 2.0
    assert m.peak_rss_mib > 76
    assert len(m.wall_seconds_all) == 3
    assert m.wall_seconds == min(m.wall_seconds_all)


def test_measure_reports_child_traceback(harness: ModuleType) -> None:
    """An exception in the measured function becomes a BenchmarkError holding its traceback."""
    with pytest.raises(harness.BenchmarkError, match="math domain error"):
        harness.measure(math.sqrt, -1.0)


def test_measure_rejects_lambdas(harness: ModuleType) -> None:
    """A function that cannot be sent to a fresh process is refused before starting one."""
    with pytest.raises(TypeError, match="picklable"):
        harness.measure(lambda: None)


def test_targets_and_ratios(harness: ModuleType) -> None:
    """Targets apply to the value or to the ratio to the baseline, bounds inclusive."""
    row = harness.BenchResult(
        name="x",
        value=3.0,
        unit="s",
        target=harness.at_most(1.5, ratio=True),
        baseline_name="b",
        baseline_value=2.0,
    )
    assert row.ratio == 1.5
    assert row.passed is True
    assert harness.BenchResult("y", 3.0, "s", harness.at_most(2.9)).passed is False
    assert harness.BenchResult("z", 3.0, "s", harness.between(3.0, 4.0)).passed is True
    assert harness.BenchResult("w", 3.0, "s", None).passed is None
    assert harness.at_least(10.0).describe("rows/s") == "≥ 10 rows/s"
    with pytest.raises(ValueError, match="ratio target needs a baseline"):
        harness.BenchResult("v", 1.0, "s", harness.at_most(2.0, ratio=True))


def _broken_benchmark() -> None:
    msg = "no data | at all"
    raise RuntimeError(msg)


def test_failing_benchmark_becomes_error_row(harness: ModuleType) -> None:
    """A benchmark that raises is an ERROR row in the table, its message escaped for markdown."""
    run = importlib.import_module("run")
    ok = run._run_one("bench_x.ok", lambda: harness.BenchResult("fine", 1.0, "s", None), None)
    broken = run._run_one("bench_x.broken", _broken_benchmark, harness.BenchConfig())
    assert ok.error is None
    assert broken.error == "RuntimeError: no data | at all"
    text = run.render_markdown([ok, broken], machine={"cpu": "test"}, command="run", quick=False)
    assert "| bench_x.broken | — |  |  | **ERROR** |  | RuntimeError: no data \\| at all |" in text
    assert "| fine | 1 | s | — | — |  |  |" in text
    assert "1 benchmark(s) raised an error" in text
