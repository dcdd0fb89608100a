"""The engine and recording processes: messages, failures, and the service when one dies."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from npl_engine.errors import NplError
from npl_engine.service import ServiceSettings, _process
from npl_engine.service._process import EngineProcess, _Recording, _Scoring
from npl_engine.service._schema import Job, Outcome
from service._server import as_json, start_server


@dataclass
class FakeEngine:
    """Answers each loan with its id, or fails on demand."""

    fail_score: Exception | None = None

    def score(self, jobs: list[Job]) -> Outcome:
        """One body per job (its loan ids) and one run per job, with a decision per loan."""
        if self.fail_score is not None:
            raise self.fail_score
        bodies = [{"results": [loan["loan_id"] for loan in job.loans]} for job in jobs]
        return _outcome(bodies, [f"record of {b['results']}" for b in bodies], jobs)

    def recommend(self, job: Job) -> Outcome:
        """Always a call."""
        body = {"action": "call", "loan_id": job.loans[0]["loan_id"]}
        return _outcome([body], ["record of a call"], [job])


def _outcome(bodies: list[dict[str, Any]], runs: list[str], jobs: list[Job]) -> Outcome:
    """Runs named by what they record, and one decision row per loan of each job."""
    decisions = [loan["loan_id"] for job in jobs for loan in job.loans]
    sizes = [len(job.loans) for job in jobs]
    return Outcome(
        bodies,
        pl.DataFrame({"run": runs, "n_loans": sizes}),
        pl.DataFrame({"loan_id": decisions}),
    )


@dataclass
class FakeStore:
    """Keeps the records of each transaction, fails on demand, may hold a commit until released."""

    fail: Exception | None = None
    hold: threading.Event | None = None
    committing: threading.Event = field(default_factory=threading.Event)
    transactions: list[list[Any]] = field(default_factory=list)
    closed: bool = False

    def append_rows(self, runs: pl.DataFrame, decisions: pl.DataFrame) -> None:
        """One transaction: all runs at once, with their decisions in one frame."""
        self.committing.set()
        if self.hold is not None:
            self.hold.wait(timeout=30)
        if self.fail is not None:
            raise self.fail
        assert runs["n_loans"].sum() == decisions.height
        self.transactions.append(runs["run"].to_list())

    def close(self) -> None:
        """Remember that the store was closed."""
        self.closed = True


def _job(*loan_ids: str) -> Job:
    return Job(loans=[{"loan_id": i} for i in loan_ids], reasons=False, caller="t", fingerprint="f")


def _drain(conn: Connection) -> list[tuple[Any, ...]]:
    received = []
    while conn.poll():
        try:
            received.append(conn.recv())
        except EOFError:  # the other end was closed
            break
    return received


def _run(
    engine: FakeEngine, store: FakeStore | None, *messages: Any
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Run the scoring and recording loops on pipes until told to stop.

    Returns what the HTTP process would receive from the engine and from the recording loop.
    """
    http, engine_end = multiprocessing.Pipe()
    outcomes_in, outcomes_out = multiprocessing.Pipe(duplex=False)
    answers, recording_end = multiprocessing.Pipe(duplex=False)
    for message in messages:
        http.send(message)
    http.send(None)
    loops = [
        threading.Thread(target=_Scoring(engine_end, outcomes_out, engine).run),
        threading.Thread(target=_Recording(outcomes_in, recording_end, store).run),  # type: ignore[arg-type]
    ]
    for loop in loops:
        loop.start()
    for loop in loops:
        loop.join(timeout=30)
        assert not loop.is_alive()
    return _drain(http), _drain(answers)


def test_the_engine_is_free_once_scored_and_answers_leave_after_the_commit() -> None:
    """Scored: the parent may send the next batch. Done: after the commit. Then both stop."""
    store = FakeStore()
    messages = [("score", 1, [_job("a"), _job("b", "c")]), ("recommend", 2, [_job("d")])]
    scored, answered = _run(FakeEngine(), store, *messages)
    assert scored == [("scored", 1), ("scored", 2)]
    assert answered == [
        ("done", 1, [{"results": ["a"]}, {"results": ["b", "c"]}]),
        ("done", 2, [{"action": "call", "loan_id": "d"}]),
    ]
    records = [r for t in store.transactions for r in t]
    assert records == ["record of ['a']", "record of ['b', 'c']", "record of a call"]
    assert store.closed


def test_no_answer_leaves_before_its_commit_and_waiting_outcomes_share_one() -> None:
    """While a commit is held, nothing is answered; outcomes that queue meanwhile go together."""
    http, engine_end = multiprocessing.Pipe()
    outcomes_in, outcomes_out = multiprocessing.Pipe(duplex=False)
    answers, recording_end = multiprocessing.Pipe(duplex=False)
    store = FakeStore(hold=threading.Event())
    scoring = threading.Thread(target=_Scoring(engine_end, outcomes_out, FakeEngine()).run)
    recording = threading.Thread(target=_Recording(outcomes_in, recording_end, store).run)  # type: ignore[arg-type]
    scoring.start()
    recording.start()
    http.send(("score", 1, [_job("a")]))
    assert store.committing.wait(timeout=30)
    http.send(("score", 2, [_job("b")]))
    http.send(("score", 3, [_job("c")]))
    assert http.recv() == ("scored", 1)
    assert http.recv() == ("scored", 2)
    assert http.recv() == ("scored", 3)
    assert not answers.poll(0.2)  # batch 1 is scored but not yet committed
    assert store.hold is not None
    store.hold.set()
    assert answers.recv()[:2] == ("done", 1)
    assert [answers.recv()[:2] for _ in range(2)] == [("done", 2), ("done", 3)]
    http.send(None)
    scoring.join(timeout=30)
    recording.join(timeout=30)
    assert store.transactions == [["record of ['a']"], ["record of ['b']", "record of ['c']"]]


def test_engine_errors_and_bugs_are_told_apart(caplog: pytest.LogCaptureFixture) -> None:
    """NplError: its message (503). Anything else: only the type (500); the trace is logged."""
    with caplog.at_level(logging.ERROR, logger="npl_engine.service"):
        bug, _ = _run(
            FakeEngine(fail_score=ValueError("secret detail")), None, ("score", 7, [_job("a")])
        )
        known, _ = _run(
            FakeEngine(fail_score=NplError("cannot score")), None, ("score", 8, [_job("a")])
        )
    assert bug == [("failed", 7, "internal", "ValueError")]
    assert known == [("failed", 8, "engine", "cannot score")]
    traced = [r for r in caplog.records if r.exc_info]
    assert traced
    assert "secret detail" in str(traced[0].exc_info[1])  # type: ignore[index]


def test_a_failed_commit_answers_no_request_of_it() -> None:
    """The batch was scored, but with no record there is no answer: it fails as a whole."""
    scored, answered = _run(
        FakeEngine(), FakeStore(fail=NplError("disk full")), ("score", 1, [_job("a")])
    )
    assert scored == [("scored", 1)]
    assert answered == [("failed", 1, "engine", "disk full")]


def test_without_an_audit_database_answers_follow_the_scores() -> None:
    """No store: nothing is recorded, every outcome is answered."""
    _, answered = _run(FakeEngine(), None, ("score", 1, [_job("a")]))
    assert answered == [("done", 1, [{"results": ["a"]}])]


def test_requests_queued_while_the_engine_scores_form_the_next_batch() -> None:
    """The parent sends a batch when the engine is free: all queued, up to max_loans loans."""

    async def scenario() -> tuple[list[list[str]], list[Any]]:
        engine = EngineProcess(Path("unused"), max_loans=4)
        parent, child = multiprocessing.Pipe()
        answers, recording = multiprocessing.Pipe(duplex=False)
        # The test plays the engine and the recording process on the other ends.
        engine._conn, engine._answers = parent, answers
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
            recording.send(("done", batch_id, [{"first": job.loans[0]["loan_id"]} for job in jobs]))
        bodies = await asyncio.gather(*pending)
        child.close()
        recording.close()
        await engine.stop(timeout=1)
        return batches, bodies

    batches, answers = asyncio.run(scenario())
    # Whole requests of 2 loans while a batch holds fewer than 4; the next only once "scored".
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [loan for b in batches for loan in b] == [f"{p}{i}" for i in range(5) for p in "lm"]
    assert answers == [{"first": f"l{i}"} for i in range(5)]


@pytest.mark.parametrize("fast", [True, False])
def test_the_next_batch_waits_a_moment_for_the_clients_of_the_last(
    monkeypatch: pytest.MonkeyPatch, fast: bool
) -> None:
    """After a fast batch, requests that keep coming join the next one; a lone one is not held.

    After a slow batch (reason codes: per-loan work dominates) the engine starts at once.
    """
    monkeypatch.setattr(_process, "_GATHER_GAP_SECONDS", 0.2)  # generous: a busy machine
    monkeypatch.setattr(_process, "_GATHER_SECONDS", 5.0)
    monkeypatch.setattr(_process, "_GATHER_AFTER_SECONDS", 60.0 if fast else 0.0)

    async def scenario() -> list[list[str]]:
        engine = EngineProcess(Path("unused"))
        parent, child = multiprocessing.Pipe()
        answers, recording = multiprocessing.Pipe(duplex=False)
        engine._conn, engine._answers = parent, answers
        await engine.attach()
        batches: list[list[str]] = []

        async def engine_side() -> None:
            while not child.poll():
                await asyncio.sleep(0.001)
            _, batch_id, jobs = child.recv()
            batches.append([loan["loan_id"] for job in jobs for loan in job.loans])
            child.send(("scored", batch_id))
            recording.send(("done", batch_id, [{} for _ in jobs]))

        first = [asyncio.create_task(engine.score(_job(f"a{i}"))) for i in range(3)]
        await engine_side()
        await asyncio.gather(*first)
        # Its three clients come back one by one, 20 ms apart: one batch, not three.
        second = []
        for i in range(3):
            second.append(asyncio.create_task(engine.score(_job(f"b{i}"))))
            await asyncio.sleep(0.02)
        await engine_side()
        if not fast:  # b0 went alone; b1 and b2 came while it was scored
            await engine_side()
        await asyncio.gather(*second)
        if fast:  # one request and nobody else: sent after one silent gap, not the window
            lone = asyncio.create_task(engine.score(_job("c0")))
            started = asyncio.get_running_loop().time()
            await engine_side()
            await lone
            assert asyncio.get_running_loop().time() - started < 2.0
        child.close()
        recording.close()
        await engine.stop(timeout=1)
        return batches

    batches = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    if fast:
        assert batches == [["a0", "a1", "a2"], ["b0", "b1", "b2"], ["c0"]]
    else:
        assert batches == [["a0", "a1", "a2"], ["b0"], ["b1", "b2"]]


async def _attached(**kwargs: Any) -> tuple[EngineProcess, Connection, Connection]:
    """A batching EngineProcess whose engine and recording ends the test plays."""
    engine = EngineProcess(Path("unused"), **kwargs)
    parent, child = multiprocessing.Pipe()
    answers, recording = multiprocessing.Pipe(duplex=False)
    engine._conn, engine._answers = parent, answers
    await engine.attach()
    return engine, child, recording


async def _batch(child: Connection, seconds: float = 5.0) -> tuple[int, list[str]] | None:
    """The next batch sent to the engine (id and loan ids), or None if none comes in time."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not child.poll():
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(0.001)
    _, batch_id, jobs = child.recv()
    return batch_id, [loan["loan_id"] for job in jobs for loan in job.loans]


def test_after_a_fast_batch_the_next_waits_for_its_answer_and_its_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests queued while a fast batch is recorded wait for its clients: one batch, not two.

    Sending them as soon as the batch is scored splits the clients into two groups that take
    turns, each paying a batch's fixed costs.
    """
    monkeypatch.setattr(_process, "_GATHER_GAP_SECONDS", 0.2)  # generous: a busy machine
    monkeypatch.setattr(_process, "_GATHER_SECONDS", 5.0)
    monkeypatch.setattr(_process, "_GATHER_AFTER_SECONDS", 60.0)

    async def scenario() -> tuple[list[str], bool, list[str] | None]:
        engine, child, recording = await _attached()
        first = [asyncio.create_task(engine.score(_job(f"a{i}"))) for i in range(3)]
        sent = await _batch(child)
        assert sent is not None
        first_id, first_batch = sent
        child.send(("scored", first_id))
        # Two other clients ask while the first batch is being recorded.
        others = [asyncio.create_task(engine.score(_job(f"b{i}"))) for i in range(2)]
        early = await _batch(child, seconds=0.5)
        recording.send(("done", first_id, [{} for _ in first]))
        await asyncio.gather(*first)
        # The three clients of the first batch come back one by one.
        back = []
        for i in range(3):
            back.append(asyncio.create_task(engine.score(_job(f"c{i}"))))
            await asyncio.sleep(0.02)
        second = await _batch(child)
        assert second is not None
        child.send(("scored", second[0]))
        recording.send(("done", second[0], [{} for _ in range(5)]))
        await asyncio.gather(*others, *back)
        child.close()
        recording.close()
        await engine.stop(timeout=1)
        return first_batch, early is not None, second[1]

    first, sent_early, second = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert first == ["a0", "a1", "a2"]
    assert not sent_early
    assert second == ["b0", "b1", "c0", "c1", "c2"]


def test_a_gap_while_the_loop_was_busy_does_not_end_the_gathering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests read late because the loop was busy (writing answers) still join the batch."""
    monkeypatch.setattr(_process, "_GATHER_GAP_SECONDS", 0.05)
    monkeypatch.setattr(_process, "_GATHER_SECONDS", 5.0)
    monkeypatch.setattr(_process, "_GATHER_AFTER_SECONDS", 60.0)

    async def scenario() -> list[str] | None:
        engine, child, recording = await _attached()
        loop = asyncio.get_running_loop()
        first = [asyncio.create_task(engine.score(_job(f"a{i}"))) for i in range(3)]
        sent = await _batch(child)
        assert sent is not None
        child.send(("scored", sent[0]))
        recording.send(("done", sent[0], [{} for _ in first]))
        await asyncio.gather(*first)
        back = [asyncio.create_task(engine.score(_job("c0")))]
        # The gathering for c0 starts; 10 ms later the loop is busy for four gaps. The other
        # two clients' requests are read after that, once the gathering's timer has fired
        # with nothing new queued.
        loop.call_later(0.01, time.sleep, 0.2)

        def arrive() -> None:
            back.extend(asyncio.create_task(engine.score(_job(f"c{i}"))) for i in (1, 2))

        loop.call_later(0.1, arrive)
        second = await _batch(child)
        assert second is not None
        child.send(("scored", second[0]))
        recording.send(("done", second[0], [{} for _ in range(3)]))
        await asyncio.gather(*back)
        child.close()
        recording.close()
        await engine.stop(timeout=1)
        return second[1]

    second = asyncio.run(asyncio.wait_for(scenario(), timeout=60))
    assert second == ["c0", "c1", "c2"]


def test_a_model_folder_that_cannot_load_stops_the_start(tmp_path: Path) -> None:
    """The engine's own message reaches the parent before anything listens."""
    engine = EngineProcess(tmp_path / "no_model")
    with pytest.raises(NplError, match="no_model"):
        engine.start()
    assert not any(p.is_alive() for p in engine._processes)


def test_an_audit_database_that_cannot_open_stops_the_start(models: Path, tmp_path: Path) -> None:
    """The recording process's message (naming the file) reaches the parent; nothing is left."""
    (tmp_path / "taken").mkdir()  # a folder where the database file should be
    engine = EngineProcess(models / "model", audit_db=tmp_path / "taken")
    with pytest.raises(NplError, match="taken"):
        engine.start()
    assert not any(p.is_alive() for p in engine._processes)


@pytest.mark.parametrize("process", ["npl-engine", "npl-recording"])
def test_when_a_child_process_dies_requests_get_503_and_health_fails(
    models: Path, tape: pl.DataFrame, tmp_path: Path, process: str
) -> None:
    """Requests are answered 503, never hang; /healthz and /readyz say so to the supervisor."""
    settings = ServiceSettings(model_dir=models / "model", audit_db=tmp_path / "audit.duckdb")
    running = start_server(settings)
    try:
        with running.client(headers={}) as client:
            assert client.post("/v1/score", json=as_json(tape.head(1))[0]).status_code == 200
            engine = running.app.app.state.engine  # inside the request-id layer
            (child,) = [p for p in engine._processes if p.name == process]
            child.kill()
            child.join(10)
            after = client.post("/v1/score", json=as_json(tape.head(1))[0])
            health = client.get("/healthz")
            ready = client.get("/readyz")
    finally:
        running.stop()
    assert after.status_code == 503
    assert health.status_code == 503
    assert ready.status_code == 503
    assert not any(p.is_alive() for p in engine._processes)
