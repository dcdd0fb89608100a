"""The engine process: its message protocol, its failures, and the service when it dies."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from npl_engine.errors import NplError
from npl_engine.service import ServiceSettings
from npl_engine.service._process import EngineProcess, _EngineLoop
from npl_engine.service._schema import Job
from npl_engine.service._scorer import Outcome
from service._server import as_json, start_server


@dataclass
class FakeEngine:
    """Answers each loan with its id; fails on demand; remembers what it recorded."""

    fail_score: Exception | None = None
    fail_record: Exception | None = None
    recorded: list[list[Any]] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    closed: bool = False

    def score(self, jobs: list[Job]) -> Outcome:
        """One body per job: its loan ids."""
        if self.fail_score is not None:
            raise self.fail_score
        self.batches.append([loan["loan_id"] for job in jobs for loan in job.loans])
        bodies = [{"results": [loan["loan_id"] for loan in job.loans]} for job in jobs]
        return Outcome(bodies, [f"record of {b['results']}" for b in bodies])  # type: ignore[misc]

    def recommend(self, job: Job) -> Outcome:
        """Always a call."""
        return Outcome([{"action": "call", "loan_id": job.loans[0]["loan_id"]}], [])

    def record(self, outcomes: list[Outcome]) -> None:
        """Keep the records of one transaction, or fail."""
        if self.fail_record is not None:
            raise self.fail_record
        self.recorded.append([r for o in outcomes for r in o.records])

    def close_store(self) -> None:
        """Remember that the store was closed."""
        self.closed = True


def _job(*loan_ids: str) -> Job:
    return Job(loans=[{"loan_id": i} for i in loan_ids], reasons=False, caller="t", fingerprint="f")


def _run(engine: FakeEngine, *messages: Any) -> list[tuple[Any, ...]]:
    """Queue messages for the engine loop, run it on one end of a pipe until told to stop."""
    parent, child = multiprocessing.Pipe()
    for message in messages:
        parent.send(message)
    parent.send(None)
    loop = threading.Thread(target=_EngineLoop(child, engine).run)  # type: ignore[arg-type]
    loop.start()
    loop.join(timeout=30)
    assert not loop.is_alive()
    received = []
    while parent.poll():
        try:
            received.append(parent.recv())
        except EOFError:  # the loop closed its end
            break
    return received


def test_a_batch_is_free_to_follow_once_scored_and_answered_once_recorded() -> None:
    """Scored: the parent may send the next batch. Done: after the commit. Then it stops."""
    engine = FakeEngine()
    received = _run(
        engine, ("score", 1, [_job("a"), _job("b", "c")]), ("recommend", 2, [_job("d")])
    )
    done = {m[1]: m[2] for m in received if m[0] == "done"}
    assert done == {
        1: [{"results": ["a"]}, {"results": ["b", "c"]}],
        2: [{"action": "call", "loan_id": "d"}],
    }
    assert received.index(("scored", 1)) < received.index(("done", 1, done[1]))
    assert [r for t in engine.recorded for r in t] == ["record of ['a']", "record of ['b', 'c']"]
    assert engine.closed


def test_engine_errors_and_bugs_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    """NplError: its message (503). Anything else: only the type (500); the trace is logged."""
    with caplog.at_level(logging.ERROR, logger="npl_engine.service"):
        bug = _run(FakeEngine(fail_score=ValueError("secret detail")), ("score", 7, [_job("a")]))
        known = _run(FakeEngine(fail_score=NplError("cannot score")), ("score", 8, [_job("a")]))
    assert bug == [("failed", 7, "internal", "ValueError")]
    assert known == [("failed", 8, "engine", "cannot score")]
    traced = [r for r in caplog.records if r.exc_info]
    assert traced
    assert "secret detail" in str(traced[0].exc_info[1])  # type: ignore[index]


def test_a_failed_commit_answers_no_request_of_it() -> None:
    """The batch was scored, but with no record there is no answer: it fails as a whole."""
    engine = FakeEngine(fail_record=NplError("disk full"))
    received = _run(engine, ("score", 1, [_job("a")]))
    assert ("scored", 1) in received
    assert ("failed", 1, "engine", "disk full") in received
    assert not [m for m in received if m[0] == "done"]


def test_requests_queued_while_the_engine_scores_form_the_next_batch() -> None:
    """The parent sends a batch when the engine is free: all queued, up to max_loans loans."""

    async def scenario() -> tuple[list[list[str]], list[Any]]:
        engine = EngineProcess(Path("unused"), max_loans=4)
        parent, child = multiprocessing.Pipe()
        engine._conn = parent  # the test plays the engine process on the other end
        await engine.attach()
        batches: list[list[str]] = []
        pending = [asyncio.create_task(engine.score(_job(f"l{i}", f"m{i}"))) for i in range(5)]
        while len([loan for b in batches for loan in b]) < 10:
            await asyncio.sleep(0)
            if not child.poll(0.01):
                continue
            kind, batch_id, jobs = child.recv()
            assert kind == "score"
            batches.append([loan["loan_id"] for job in jobs for loan in job.loans])
            child.send(("scored", batch_id))
            child.send(("done", batch_id, [{"first": job.loans[0]["loan_id"]} for job in jobs]))
        answers = await asyncio.gather(*pending)
        child.close()
        await engine.stop(timeout=1)
        return batches, answers

    batches, answers = asyncio.run(scenario())
    # Whole requests of 2 loans while a batch holds fewer than 4; the next only once "scored".
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [loan for b in batches for loan in b] == [f"{p}{i}" for i in range(5) for p in "lm"]
    assert answers == [{"first": f"l{i}"} for i in range(5)]


def test_a_model_folder_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    """The engine's own message reaches the parent before anything listens."""
    engine = EngineProcess(tmp_path / "no_model")
    with pytest.raises(NplError, match="no_model"):
        engine.start()


def test_when_the_engine_process_dies_requests_get_503_and_health_fails(
    models: Path, tape: pl.DataFrame
) -> None:
    """Requests are answered 503, never hang; /healthz and /readyz say so to the supervisor."""
    running = start_server(ServiceSettings(model_dir=models / "model"))
    try:
        with running.client(headers={}) as client:
            assert client.post("/v1/score", json=as_json(tape.head(1))[0]).status_code == 200
            engine = running.app.app.state.engine  # inside the request-id layer
            engine._process.kill()
            engine._process.join(10)
            after = client.post("/v1/score", json=as_json(tape.head(1))[0])
            health = client.get("/healthz")
            ready = client.get("/readyz")
    finally:
        running.stop()
    assert after.status_code == 503
    assert health.status_code == 503
    assert ready.status_code == 503
