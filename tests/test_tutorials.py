"""The tutorials of docs/tutorials run from the first cell to the last (issue 15).

Each tutorial is a jupytext percent script; the test turns it into a notebook and runs it in a
fresh ``python3`` kernel of this environment, as a reader opening it in Jupyter would, so a
change of the library's API that breaks a tutorial fails the default test run.
"""

from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

TUTORIALS = Path(__file__).resolve().parent.parent / "docs" / "tutorials"
SCRIPTS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))

#: Seconds one cell may take on a busy 2-core machine (the slowest fits a causal model).
CELL_TIMEOUT = 600


def _run(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run ``script`` as a notebook in a fresh kernel; fail with the error of a cell that raises.

    The kernel's working folder is ``tmp_path/cwd`` and its temporary folders land in
    ``tmp_path/tmp``; the run must leave the first empty and no ``npl_*`` folder in the second.
    """
    notebook = jupytext.read(script)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells, f"{script.name} has no code"
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir(parents=True)
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # the kernel inherits the environment
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{script.name}: a cell raised\n{exc}", pytrace=False)
    assert all(c.execution_count is not None for c in code_cells)
    assert [o for c in code_cells for o in c.outputs if o.output_type == "error"] == []
    assert list(cwd.iterdir()) == []
    assert [p.name for p in tmp.iterdir() if p.name.startswith("npl_")] == []


def test_the_three_tutorials_are_there() -> None:
    """A buyer, a strategy team and a risk officer each have their tutorial, listed in README."""
    assert [p.name for p in SCRIPTS] == [
        "01_buyer_prices_a_tape.py",
        "02_strategy_team_plans_actions.py",
        "03_risk_officer_expected_loss.py",
    ]
    readme = (TUTORIALS / "README.md").read_text(encoding="utf-8")
    assert all(p.name in readme for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_tutorial_runs(script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cell runs without error; the tutorial writes only into its temporary folder."""
    _run(script, tmp_path, monkeypatch)


def test_a_cell_that_raises_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tutorial whose second cell raises fails, and the message shows that cell's error."""
    script = tmp_path / "broken.py"
    script.write_text("# %%\nx = 1\n\n# %%\nx / 0\n", encoding="utf-8")
    with pytest.raises(pytest.fail.Exception, match=r"broken\.py: a cell raised[\s\S]*x / 0"):
        _run(script, tmp_path / "run", monkeypatch)
