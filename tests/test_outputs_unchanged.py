"""Every command's output on the demo data is the one recorded before the library refactor.

The CLI became a thin shell over the public API (issue 15). This test runs the demo's commands
(and a counterfactual and a gain curve, which the demo does not run) on a 1,000-loan book and
compares every file they write with the copy in ``tests/golden/demo``, recorded with the code
as it was before the refactor: Parquet, CSV and Excel frames value by value (numbers to a
relative 1e-12), JSON field by field (numbers to 1e-12; run times, paths and timestamps are not
results and are left out), text files byte for byte.

After a change that is meant to change results, re-record with
``NPL_UPDATE_GOLDEN=1 pytest tests/test_outputs_unchanged.py`` and say why in the commit.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner

from npl_engine.cli import main

GOLDEN = Path(__file__).parent / "golden" / "demo"

#: Inputs and artefacts that are not results: simulated data (pinned by the simulator's own
#: digest test), binary models, the audit database, the HTML report (its charts embed fonts).
SKIP_PARTS = {"book", "tape_eba", "tape_later", "collections"}
SKIP_NAMES = {
    "audit.duckdb",
    "audit.duckdb.wal",
    "report.html",
    "effect_model.joblib",
    "classifier.txt",
    "loans.parquet",
    "actions.parquet",
    "payments.parquet",
}
#: JSON keys whose values are not results (when, where, how long, which version).
VOLATILE_KEYS = {
    "created",
    "created_at",
    "written_at",
    "timestamp",
    "elapsed_seconds",
    "seconds",
    "runtime_seconds",
    "duration_seconds",
    "version",
    "npl_engine_version",
    "path",
    "source",
    "model_dir",
    "data_dir",
    "effects_dir",
    "folder",
    "out",
}

RTOL = 1e-12


def _volatile(key: str) -> bool:
    return key in VOLATILE_KEYS or "seconds" in key or key.endswith("_at")


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _run_everything(out: Path) -> None:
    """The demo, then a counterfactual batch and a policy gain curve on its outputs."""
    _run(["demo", "--loans", "1000", "--out", str(out)])
    _run(
        ["effects", "--data", str(out / "book"), "--out", str(out / "effects_recovered"),
         "--outcome", "recovered", "--no-refutations"]
    )  # fmt: skip
    ids = pl.read_parquet(out / "scores" / "scores.parquet").sort("p_recover")["loan_id"][:3]
    (out / "ids.txt").write_text("\n".join(ids) + "\n")
    _run(
        ["counterfactual", "--model", str(out / "model"), "--effects",
         str(out / "effects_recovered"), "--data", str(out / "tape"), "--loan-ids",
         str(out / "ids.txt"), "--n", "2", "--time-budget", "600",
         "--out", str(out / "counterfactuals.json")]
    )  # fmt: skip
    _run(
        ["policy", "--effects", str(out / "effects"), "--data", str(out / "tape"),
         "--budgets", "0:200000:5", "--out", str(out / "curve")]
    )  # fmt: skip


def _results(root: Path) -> list[Path]:
    return sorted(
        p.relative_to(root)
        for p in root.rglob("*")
        if p.is_file()
        and p.name not in SKIP_NAMES
        and not SKIP_PARTS.intersection(p.relative_to(root).parts[:-1])
        and p.name != "ids.txt"
    )


def _close(a: Any, b: Any, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a = {k for k in a if not _volatile(k)}
        keys_b = {k for k in b if not _volatile(k)}
        assert keys_a == keys_b, f"{where}: keys differ: {sorted(keys_a ^ keys_b)}"
        for k in sorted(keys_a):
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items, recorded {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float), f"{where}: {a!r} {b!r}"
        assert isinstance(b, int | float), f"{where}: {a!r} {b!r}"
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a), f"{where}: {a} vs recorded {b}"
            assert math.isnan(b), f"{where}: {a} vs recorded {b}"
        else:
            assert math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-9), f"{where}: {a} vs recorded {b}"
    else:
        assert a == b, f"{where}: {a!r} vs recorded {b!r}"


def _frames_equal(a: pl.DataFrame, b: pl.DataFrame, where: str) -> None:
    assert a.columns == b.columns, f"{where}: columns {a.columns} vs recorded {b.columns}"
    assert a.height == b.height, f"{where}: {a.height} rows vs recorded {b.height}"
    for name in a.columns:
        x, y = a[name], b[name]
        if x.dtype.is_float() or y.dtype.is_float():
            ok = pl.DataFrame({"x": x.cast(pl.Float64), "y": y.cast(pl.Float64)}).select(
                (
                    (pl.col("x").is_nan() & pl.col("y").is_nan())
                    | (pl.col("x").is_null() & pl.col("y").is_null())
                    | (
                        (pl.col("x") - pl.col("y")).abs()
                        <= 1e-9 + RTOL * pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs())
                    )
                ).fill_null(False)
            )["x"]
            bad = (~ok).arg_true()
            assert bad.len() == 0, (
                f"{where}: column {name} row {bad[0]}: {x[bad[0]]} vs recorded {y[bad[0]]}"
            )
        else:
            assert x.dtype == y.dtype, f"{where}: column {name} {x.dtype} vs recorded {y.dtype}"
            assert x.equals(y, check_names=False), f"{where}: column {name} differs"


def _text(path: Path) -> str:
    """A text file without its timestamps (when it was written is not a result)."""
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*", "<time>", path.read_text())


def _compare(new: Path, old: Path, rel: Path) -> None:
    where = str(rel)
    suffix = rel.suffix
    if suffix == ".parquet":
        _frames_equal(pl.read_parquet(new), pl.read_parquet(old), where)
    elif suffix == ".csv":
        _frames_equal(
            pl.read_csv(new, infer_schema_length=None),
            pl.read_csv(old, infer_schema_length=None),
            where,
        )
    elif suffix == ".json":
        _close(json.loads(new.read_text()), json.loads(old.read_text()), where)
    elif suffix == ".xlsx":
        sheets_new = pl.read_excel(new, sheet_id=0)
        sheets_old = pl.read_excel(old, sheet_id=0)
        assert list(sheets_new) == list(sheets_old), f"{where}: sheets differ"
        for sheet in sheets_new:
            _frames_equal(sheets_new[sheet], sheets_old[sheet], f"{where}:{sheet}")
    elif suffix == ".md":
        assert _text(new) == _text(old), f"{where} differs"
    else:
        pytest.fail(f"{where}: no comparison for {suffix} files")


def test_every_command_writes_what_it_wrote_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Demo, counterfactual and gain-curve outputs equal the recorded ones (1e-12)."""
    # Run from a folder of its own with relative paths, so that the paths written into the
    # outputs are the same on every machine.
    shutil.copytree(Path(__file__).parents[1] / "scenarios", tmp_path / "scenarios")
    monkeypatch.chdir(tmp_path)
    out = Path("demo")
    _run_everything(out)
    produced = _results(out)
    if os.environ.get("NPL_UPDATE_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel in produced:
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / rel, GOLDEN / rel)
        pytest.skip("golden outputs re-recorded")
    recorded = _results(GOLDEN)
    assert produced == recorded, (
        f"files differ: new {sorted(set(produced) - set(recorded))}, "
        f"missing {sorted(set(recorded) - set(produced))}"
    )
    differences = []
    for rel in produced:
        try:
            _compare(out / rel, GOLDEN / rel, rel)
        except AssertionError as error:
            differences.append(str(error).splitlines()[0])
    assert not differences, "\n".join(differences)
