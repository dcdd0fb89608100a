"""The engine and recording processes: scoring and decision records beside the HTTP process.

Why processes of their own: Python code holds the interpreter lock, and every LightGBM, Polars
or DuckDB call releases it and takes it back. Beside the HTTP process's busy event loop, a
DuckDB transaction that takes 4 ms alone took 170 ms; beside each other in one process, scoring
a batch took 7.6 ms instead of 5.2 and committing its records 10.6 ms instead of 6.6 (measured
on the 2-core machine, docs/service.md). Each process has a lock of its own.

Three processes; the HTTP process (:class:`EngineProcess`) starts the other two:

- **HTTP**: requests queue on the event loop; whenever the engine is free to score, everything
  queued (up to ``max_loans`` loans) goes to it as one batch. After a batch that scored fast,
  the engine counts as free only once that batch is answered, and the clients of the last
  batch get a moment to come back (:meth:`EngineProcess._gather`).
- **Engine** (:class:`_Scoring`): a reader thread takes messages off the pipe at once; the main
  thread scores batches one at a time, tells the HTTP process it is free for the next, and
  hands the outcome to the recording process.
- **Recording** (:class:`_Recording`): commits the decision records of every outcome waiting
  for it in one transaction, then sends their answers to the HTTP process. A response leaves
  only once its record is committed; if the commit fails, no request of it is answered.
  A thread of it answers ``npl audit`` on the database's socket
  (:class:`~npl_engine.audit.ReaderSocket`), since no other process can open the file.

Messages are pickled tuples over :func:`multiprocessing.Pipe`:

- HTTP to engine: ``("score", id, jobs)``, ``("recommend", id, [job])``, ``None`` (stop);
- engine to HTTP: ``("ready", info)`` or ``("error", message)`` once at start, then
  ``("scored", id)`` (free for the next batch) or ``("failed", id, kind, message)``;
- engine to recording: ``(id, outcome)``, and ``None`` after the last (stop);
- recording to HTTP: ``("ready", None)`` or ``("error", message)`` once at start, then
  ``("done", id, bodies)`` or ``("failed", id, kind, message)``.

``kind`` is ``"engine"`` (the request could not be computed or recorded: 503) or ``"internal"``
(a bug: 500, its traceback in the log of the process where it happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from npl_engine.audit import AuditStore, ReaderSocket, serve_readers
from npl_engine.errors import NplError
from npl_engine.service._logging import ERROR_LOGGER, configure_logging
from npl_engine.service._schema import Outcome

__all__ = ["EngineFailure", "EngineProcess"]

_errors = logging.getLogger(ERROR_LOGGER)
_T = TypeVar("_T")

#: How long the engine process may take to load the models and open the audit database.
START_SECONDS = 600.0
#: The engine scores small batches: one thread each for LightGBM and Polars, whose thread
#: pools otherwise hand tiny tasks between cores that the other processes need.
_ENGINE_ENV = {"OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
#: Gathering a batch (see :meth:`EngineProcess._gather`): for this long at most, only while
#: requests keep arriving at least once per gap, and only after a batch scored this fast.
_GATHER_SECONDS = 0.008
_GATHER_GAP_SECONDS = 0.001
_GATHER_AFTER_SECONDS = 0.02


class EngineFailure(RuntimeError):  # noqa: N818 - names what failed, as NplError does
    """An unexpected error in the engine process (its traceback is in that process's log)."""


@dataclass(frozen=True, slots=True)
class _Settings:
    model_dir: Path
    effects_dir: Path | None
    audit_db: Path | None


class EngineProcess:
    """The engine and recording processes, and the batching of requests for them.

    Parameters
    ----------
    model_dir, effects_dir
        Recovery and effect model folders, as in :class:`~._scorer.Engine`.
    audit_db
        Audit database, or ``None`` to record nothing.
    max_loans
        Loans per batch at most (a single larger request still forms its own batch).

    Notes
    -----
    :meth:`start` blocks until the models are loaded and the audit database is open (raising
    :class:`NplError` with the child's message if they cannot be); :meth:`attach` and
    :meth:`stop` run on the event loop that serves requests. If either process dies, waiting
    and later requests fail with :class:`NplError` and :attr:`alive` turns false.
    """

    def __init__(
        self,
        model_dir: Path,
        effects_dir: Path | None = None,
        audit_db: Path | None = None,
        *,
        max_loans: int = 512,
    ) -> None:
        self.settings = _Settings(model_dir, effects_dir, audit_db)
        self.max_loans = max_loans
        self.info: dict[str, Any] = {}
        self._processes: list[Any] = []
        self._conn: Connection | None = None  # to and from the engine
        self._answers: Connection | None = None  # from the recording process
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[dict[str, Any]]]] | None = None
        self._free: asyncio.Event | None = None
        self._scoring: int | None = None
        self._last_batch = 0  # requests in the last batch sent
        self._expected = 0  # requests likely to come soon: see _release
        self._sent_at = 0.0  # when the batch being scored was sent
        self._last_seconds = 0.0  # how long the engine took to score the last batch
        self._task: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._readers: list[threading.Thread] = []
        self._dead = False
        self._stopping = False

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start both processes; wait until the audit database is open and the models loaded.

        Raises
        ------
        NplError
            If the models or the audit database cannot be opened (the child's own message).
        """
        context = multiprocessing.get_context("spawn")
        jobs, engine_jobs = context.Pipe()
        outcomes_in, outcomes_out = context.Pipe(duplex=False)
        answers, recording_answers = context.Pipe(duplex=False)
        recording = context.Process(
            target=_recording_main,
            args=(outcomes_in, recording_answers, self.settings.audit_db),
            name="npl-recording",
            daemon=True,
        )
        engine = context.Process(
            target=_engine_main,
            args=(engine_jobs, outcomes_out, self.settings),
            name="npl-engine",
            daemon=True,
        )
        with _environment(_ENGINE_ENV):  # read by the children's imports, before our code
            recording.start()
            engine.start()
        for end in (engine_jobs, outcomes_in, outcomes_out, recording_answers):
            end.close()  # the children hold them now; closed here so that death reads as EOF
        self._processes = [engine, recording]
        self._conn, self._answers = jobs, answers
        deadline = time.monotonic() + timeout
        try:
            _ready(answers, deadline, "the recording process (audit database)")
            self.info = _ready(jobs, deadline, "the scoring engine (models)")
        except NplError:
            self._kill()
            raise

    async def attach(self) -> None:
        """Start batching requests on the running event loop."""
        assert self._conn is not None, "start() first"
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._free = asyncio.Event()
        self._free.set()
        # Threads, not loop.add_reader: the loop would make the pipes non-blocking, and a large
        # answer then arrives in pieces that Connection.recv cannot wait for.
        self._readers = [
            threading.Thread(target=self._read, args=(conn, loop), name=name, daemon=True)
            for conn, name in ((self._conn, "npl-scored"), (self._answers, "npl-answers"))
            if conn is not None
        ]
        for reader in self._readers:
            reader.start()
        self._task = asyncio.create_task(self._batches())

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop batching, let the last records be committed, and wait for both processes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stopping = True
        if not self._dead and self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)  # the engine passes it on after its last outcome
        for process in self._processes:
            await asyncio.to_thread(process.join, timeout)
        for reader in self._readers:
            await asyncio.to_thread(reader.join, 5)
        self._kill()
        self._fail_all(NplError("the service is shutting down"))

    def _kill(self) -> None:
        for process in self._processes:
            if process.is_alive():
                process.kill()
                process.join(5)
        for conn in (self._conn, self._answers):
            if conn is not None:
                conn.close()
        self._conn = self._answers = None
        self._dead = True

    @property
    def alive(self) -> bool:
        """Whether both processes run and batches are being sent to the engine."""
        return (
            not self._dead
            and bool(self._processes)
            and all(p.is_alive() for p in self._processes)
            and self._task is not None
            and not self._task.done()
        )

    # -- requests ------------------------------------------------------------------------

    async def score(self, job: Any) -> dict[str, Any]:
        """Queue a scoring job; its response body once scored and recorded."""
        assert self._queue is not None, "attach() first"
        if self._dead:
            raise NplError("the scoring engine process has stopped")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await future

    async def recommend(self, job: Any) -> dict[str, Any]:
        """A recommendation for one loan (not batched), once recorded."""
        bodies = await self._send("recommend", [job])
        return bodies[0]

    async def _send(self, kind: str, jobs: Sequence[Any]) -> list[dict[str, Any]]:
        if self._dead or self._conn is None:
            raise NplError("the scoring engine process has stopped")
        batch_id = next(self._ids)
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[batch_id] = future
        if kind == "score":
            self._scoring = batch_id
            self._sent_at = time.monotonic()
        try:
            self._conn.send((kind, batch_id, list(jobs)))
        except OSError as exc:
            self._waiting.pop(batch_id, None)
            self._on_death(exc)
            raise NplError("the scoring engine process has stopped") from None
        return await future

    async def _batches(self) -> None:
        """Send whatever is queued as one batch each time the engine is free to score."""
        assert self._queue is not None
        assert self._free is not None
        while True:
            await self._free.wait()
            batch = [await self._queue.get()]
            if self._last_seconds < _GATHER_AFTER_SECONDS:
                await self._gather(self._expected - 1)
            n = len(batch[0][0].loans)
            while n < self.max_loans and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                n += len(item[0].loans)
            live = [(job, fut) for job, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self._free.clear()
            self._last_batch = len(live)
            task = asyncio.create_task(self._answer(live))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

    async def _gather(self, expected: int) -> None:
        """Wait a moment for more requests while fewer than ``expected`` are queued.

        Most clients of the last batch send their next request as soon as they have their
        answer; a batch formed the instant the engine is free holds only the few requests that
        came meanwhile, and the others wait a whole batch for it. A batch costs nearly the same
        for 2 requests as for 50, so with 50 clients batches then alternate (2, 48, 2, 48, ...)
        and half the engine's time is spent on a few requests. Waiting stops at the first gap
        of ``_GATHER_GAP_SECONDS`` without a new request, after ``_GATHER_SECONDS`` at most, or
        at once when only one request was expected (a lone client never waits).

        A gap counts only if the loop was free to read requests during it: right after a batch
        is answered the loop spends a few milliseconds writing the answers, and a request sent
        meanwhile is read only after them.

        Only after a batch that scored in under ``_GATHER_AFTER_SECONDS``, when the fixed cost
        of a batch dominates. Reason codes cost about 1.5 ms per loan (SHAP): there the engine
        had better start on the first requests back while the others come.
        """
        assert self._queue is not None
        deadline = time.monotonic() + _GATHER_SECONDS
        seen = self._queue.qsize()
        while seen < expected and time.monotonic() < deadline:
            asked = time.monotonic()
            await asyncio.sleep(_GATHER_GAP_SECONDS)
            busy = time.monotonic() - asked > 2 * _GATHER_GAP_SECONDS
            if self._queue.qsize() == seen and not busy:
                return
            seen = self._queue.qsize()

    async def _answer(self, live: list[tuple[Any, asyncio.Future[dict[str, Any]]]]) -> None:
        try:
            bodies = await self._send("score", [job for job, _ in live])
        except Exception as exc:  # every request of the batch learns of it
            _fail_futures([fut for _, fut in live], exc)
            return
        for (_, fut), body in zip(live, bodies, strict=True):
            if not fut.done():
                fut.set_result(body)

    # -- answers -------------------------------------------------------------------------

    def _read(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        """On a reader thread: hand each message of one child to the event loop."""
        while True:
            try:
                message = conn.recv()
            # TypeError: the connection was closed by the stopping service while this thread
            # waited in recv() (its handle is then None); seen at shutdown in the test suite
            except (EOFError, OSError, TypeError) as exc:
                with contextlib.suppress(RuntimeError):  # the loop may be closed
                    loop.call_soon_threadsafe(self._on_death, exc)
                return
            loop.call_soon_threadsafe(self._handle, message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind, batch_id = message[0], message[1]
        if batch_id == self._scoring:
            if kind == "scored":
                self._last_seconds = time.monotonic() - self._sent_at
            if kind != "scored" or self._last_seconds >= _GATHER_AFTER_SECONDS:
                self._release(answered=self._last_batch if kind == "done" else 0)
        if kind == "scored":
            return
        future = self._waiting.pop(batch_id, None)
        if future is None or future.done():
            return
        if kind == "done":
            future.set_result(message[2])
        elif message[2] == "engine":
            future.set_exception(NplError(message[3]))
        else:
            future.set_exception(EngineFailure(f"engine batch {batch_id}: {message[3]}"))

    def _release(self, answered: int) -> None:
        """The engine is free for the next batch (``answered``: requests just answered).

        After a slow batch (reason codes) the engine is free once it has scored, and scores
        the next batch while this one is recorded. After a fast one it is free only once this
        batch is answered: when scoring and recording both take a few milliseconds, doing them
        side by side saves little on two cores shared by three processes, while the clients of
        a batch that was answered come back together and are scored together. Otherwise the
        clients can split into two groups that take turns, each paying a batch's fixed costs
        (seen as batches of 25 and 25 instead of 50 once answers left faster, docs/service.md).

        The next batch waits for the requests queued now and for the clients just answered
        (:meth:`_gather`).
        """
        assert self._free is not None
        assert self._queue is not None
        self._scoring = None
        self._expected = self._queue.qsize() + answered
        self._free.set()

    def _on_death(self, exc: BaseException | None = None) -> None:
        if self._dead or self._stopping:
            return
        codes = {p.name: p.exitcode for p in self._processes}
        _errors.error(
            "a process of the scoring engine stopped",
            exc_info=exc,
            extra={"fields": {"exit_codes": codes}},
        )
        self._kill()
        self._fail_all(NplError("the scoring engine process has stopped"))

    def _fail_all(self, exc: Exception) -> None:
        _fail_futures(list(self._waiting.values()), exc)
        self._waiting.clear()
        if self._queue is not None:
            queued = []
            while not self._queue.empty():
                queued.append(self._queue.get_nowait()[1])
            _fail_futures(queued, exc)
        if self._free is not None:
            self._free.set()


def _ready(conn: Connection, deadline: float, what: str) -> Any:
    """Wait for a child's first message; its ``info``, or NplError with its message."""
    if not conn.poll(max(0.0, deadline - time.monotonic())):
        msg = f"{what} did not start in time"
        raise NplError(msg)
    try:
        message = conn.recv()
    except (EOFError, OSError):
        msg = f"{what} stopped while starting (see its log)"
        raise NplError(msg) from None
    if message[0] != "ready":
        raise NplError(message[1])
    return message[1]


def _fail_futures(futures: Sequence[asyncio.Future[Any]], exc: BaseException) -> None:
    """Give every future not yet answered the exception."""
    for future in futures:
        if not future.done():
            future.set_exception(exc)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a child about to start (a user's own values win)."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _failure(exc: Exception, batch_ids: Sequence[int]) -> tuple[str, str]:
    """How a failure is reported to the parent; unexpected ones are logged with their trace."""
    if isinstance(exc, NplError):
        _errors.error("engine error: %s", exc, extra={"fields": {"batches": list(batch_ids)}})
        return "engine", str(exc)
    _errors.error(
        "unhandled engine error", exc_info=exc, extra={"fields": {"batches": list(batch_ids)}}
    )
    return "internal", type(exc).__name__


def _open(conn: Connection, what: str, open_: Callable[[], _T]) -> tuple[_T] | None:
    """Open what a child process needs, or tell the parent why not (``None``).

    An :class:`NplError` (a model folder or audit database that cannot be opened) reaches the
    parent with its message; anything else only with its type, the traceback being logged.
    """
    try:
        return (open_(),)
    except NplError as exc:
        conn.send(("error", str(exc)))
    except Exception as exc:
        _errors.exception("%s could not start", what)
        conn.send(("error", f"{what} could not start: {type(exc).__name__}"))
    return None


def _settle() -> None:
    """What is loaded now lives as long as the process: keep it out of every collection."""
    gc.collect()
    gc.freeze()


# -- the engine process ------------------------------------------------------------------


def _engine_main(conn: Connection, outcomes: Connection, settings: _Settings) -> None:
    """Load the models, then score until told to stop."""
    configure_logging()
    from npl_engine.service._scorer import Engine  # noqa: PLC0415 - heavy, child only

    recording = settings.audit_db is not None
    opened = _open(
        conn,
        "the scoring engine",
        lambda: Engine(settings.model_dir, settings.effects_dir, recording=recording),
    )
    if opened is None:
        return
    (engine,) = opened
    conn.send(("ready", engine.describe()))
    _settle()
    _Scoring(conn, outcomes, engine).run()


class _Scoring:
    """The engine process's threads: read the pipe, and score (this thread)."""

    def __init__(self, conn: Connection, outcomes: Connection, engine: Any) -> None:
        self.conn = conn
        self.outcomes = outcomes
        self.engine = engine
        self.work: queue.Queue[tuple[str, int, list[Any]] | None] = queue.Queue()

    def run(self) -> None:
        threading.Thread(target=self.read, name="npl-read", daemon=True).start()
        try:
            while (message := self.work.get()) is not None:
                kind, batch_id, jobs = message
                try:
                    if kind == "score":
                        outcome = self.engine.score(jobs)
                    else:
                        outcome = self.engine.recommend(jobs[0])
                except Exception as exc:
                    self.conn.send(("failed", batch_id, *_failure(exc, [batch_id])))
                    continue
                self.conn.send(("scored", batch_id))
                self.outcomes.send((batch_id, outcome))
        finally:
            with contextlib.suppress(OSError):
                self.outcomes.send(None)
            self.outcomes.close()
            self.conn.close()

    def read(self) -> None:
        """Empty the pipe as messages come, so that the parent never blocks on a send."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = None
            self.work.put(message)
            if message is None:
                return


# -- the recording process ---------------------------------------------------------------


def _recording_main(outcomes: Connection, answers: Connection, audit_db: Path | None) -> None:
    """Open the audit database, then record and answer until the engine stops."""
    configure_logging()
    opened = _open(
        answers,
        "the recording process",
        lambda: AuditStore(audit_db) if audit_db is not None else None,
    )
    if opened is None:
        return
    (store,) = opened
    # `npl audit` reads the records through this process while it holds the file.
    readers = serve_readers(store) if store is not None else None
    answers.send(("ready", None))
    _settle()
    _Recording(outcomes, answers, store, readers).run()


class _Recording:
    """Commit the records of every outcome waiting, in one transaction; then answer them all.

    Parameters
    ----------
    outcomes
        From the engine: ``(id, Outcome)``, then ``None``.
    answers
        To the HTTP process.
    store
        The open audit database (closed when the engine stops), or ``None`` to record nothing.
    readers
        The socket answering ``npl audit`` from a thread of this process (closed before the
        store), if any.
    """

    def __init__(
        self,
        outcomes: Connection,
        answers: Connection,
        store: AuditStore | None,
        readers: ReaderSocket | None = None,
    ) -> None:
        self.outcomes = outcomes
        self.answers = answers
        self.store = store
        self.readers = readers

    def run(self) -> None:
        try:
            while True:
                pending = [self.next()]
                while pending[-1] is not None and self.outcomes.poll():
                    pending.append(self.next())
                done = [p for p in pending if p is not None]
                if done:
                    self.commit(done)
                if len(done) < len(pending):  # the engine has stopped: after the last commit
                    return
        finally:
            if self.readers is not None:
                self.readers.close()
            if self.store is not None:
                self.store.close()
            self.answers.close()

    def next(self) -> tuple[int, Outcome] | None:
        """The next outcome, or ``None`` once the engine has stopped (or died)."""
        try:
            message: tuple[int, Outcome] | None = self.outcomes.recv()
        except (EOFError, OSError):
            return None
        return message

    def commit(self, done: list[tuple[int, Outcome]]) -> None:
        try:
            _append(self.store, [outcome for _, outcome in done])
        except Exception as exc:  # nothing of the transaction was kept: no answers
            kind, text = _failure(exc, [i for i, _ in done])
            for batch_id, _ in done:
                self.answers.send(("failed", batch_id, kind, text))
        else:
            for batch_id, outcome in done:
                self.answers.send(("done", batch_id, outcome.bodies))


def _append(store: AuditStore | None, outcomes: Sequence[Outcome]) -> None:
    """Append the runs of outcomes to the audit database in one transaction."""
    rows = [(o.runs, o.decisions) for o in outcomes if o.runs is not None]
    if store is None or not rows:
        return
    runs = pl.concat([r for r, _ in rows], how="vertical")
    decisions = pl.concat([d for _, d in rows if d is not None], how="vertical")
    store.append_rows(runs, decisions)
