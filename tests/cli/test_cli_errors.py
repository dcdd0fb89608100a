"""Every error line of the command line starts the same way: ``error:``, on stderr, exit 2."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from npl_engine.cli import main

CASES = [
    (["valuee"], "No such command 'valuee'"),  # click: unknown command
    (["value", "--bogus"], "No such option '--bogus'"),  # click: unknown option
    (["score", "--data", "d", "--out", "o"], "Missing option '--model'"),  # click: required
    (["simulate", "--out", "o", "--kind", "boat"], "Invalid value for '--kind'"),  # click: choice
    (["simulate", "--out", "o", "--loans", "0"], "Invalid value for '--loans'"),  # click: range
    (["validate"], "Missing argument 'DATASET'"),  # click: argument
    (["audit", "show"], "Missing argument"),  # click, in a sub-group
    (["validate", "{tmp}/none"], "the dataset breaks the data contract"),  # the engine
    (["score", "--model", "{tmp}/none", "--data", "{tmp}/none", "--out", "{tmp}/o"], "{tmp}"),
    (["counterfactual", "--model", "m", "--data", "d"], "give either --loan-id"),  # the engine
    (["serve", "--model", "m", "--no-auth", "--no-audit", "--port", "{port}"], "cannot listen"),
]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_error_lines_start_with_error(
    tmp_path: Path, args: list[str], expected: str, busy_port: int
) -> None:
    """Click's usage errors and the engine's errors alike: exit 2, one line `error: ...`."""
    fill = {"tmp": str(tmp_path), "port": str(busy_port)}
    result = CliRunner().invoke(main, [a.format(**fill) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert sum(line.startswith("error: ") for line in lines) == 1, result.stderr
    assert not any(
        line.lower().startswith(("error", "warning"))
        for line in lines
        if not line.startswith("error: ")
    )
    assert expected.format(**fill) in result.stderr
    assert "Traceback" not in result.output


def test_help_and_version_are_not_errors() -> None:
    """--help, --version and a group without a command exit as click makes them, not as errors."""
    runner = CliRunner()
    assert runner.invoke(main, ["--help"]).exit_code == 0
    assert runner.invoke(main, ["--version"]).exit_code == 0
    keys = runner.invoke(main, ["keys"])
    assert "Commands:" in keys.output
    assert "error:" not in keys.output


@pytest.fixture
def busy_port() -> object:
    """A local port another socket is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]
