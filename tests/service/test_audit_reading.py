"""`npl audit` on the database of a running service, while it answers requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import polars as pl
from click.testing import CliRunner

from npl_engine.cli import main
from service._server import Server, as_json


def test_audit_commands_read_the_records_of_a_running_service(
    server: Server, tape: pl.DataFrame, tmp_path: Path
) -> None:
    """list, show and export work mid-load and hold every run answered before they read."""
    db = server.settings.audit_db
    assert db is not None
    answered: list[str] = []
    failures: list[int] = []
    stop = threading.Event()

    def client(offset: int) -> None:
        with server.client() as http:
            i = offset
            while not stop.is_set():
                body = as_json(tape.slice(i % 290, 2))
                response = http.post("/v1/score", params={"reasons": "false"}, json=body)
                if response.status_code != 200:
                    failures.append(response.status_code)
                    return
                answered.append(response.json()["run_id"])
                i += 7

    clients = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    npl = CliRunner()
    out = tmp_path / "records.parquet"
    try:
        for thread in clients:
            thread.start()
        while len(answered) < 10 and not failures:
            time.sleep(0.05)
        before = list(answered)
        listed = npl.invoke(main, ["audit", "list", "--limit", "10000", "--audit-db", str(db)])
        shown = npl.invoke(main, ["audit", "show", f"{before[0]}:2", "--audit-db", str(db)])
        exported = npl.invoke(main, ["audit", "export", "--out", str(out), "--audit-db", str(db)])
        during = len(answered)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=60)
    assert not failures
    assert listed.exit_code == 0, listed.output
    assert "(read through the running service)" in listed.output
    assert all(run_id in listed.output for run_id in before)
    assert shown.exit_code == 0, shown.output
    assert f"{before[0]}:2" in shown.output
    assert exported.exit_code == 0, exported.output
    records = pl.read_parquet(out)
    assert set(before) <= set(records["run_id"])
    mine = records.filter(pl.col("run_id").is_in(before))
    assert (mine.group_by("run_id").len()["len"] == 2).all()  # whole runs
    assert during > len(before)  # the service kept answering while it was read
