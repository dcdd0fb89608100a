"""Commands that write one file refuse a folder as --out, before doing any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from npl_engine.cli import main


@pytest.mark.parametrize(
    "command", [["audit", "export"], ["policy"], ["counterfactual"], ["report"]]
)
def test_a_folder_is_not_a_file_to_write(tmp_path: Path, command: list[str]) -> None:
    """Exit code 2 and click's message naming --out; nothing is written into the folder."""
    folder = tmp_path / "existing"
    folder.mkdir()
    result = CliRunner().invoke(main, [*command, "--out", str(folder)])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--out'" in result.output
    assert "is a directory" in result.output
    assert list(folder.iterdir()) == []
