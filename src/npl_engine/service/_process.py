"""The engine process: scoring and decision records beside the HTTP process, not inside it.

Why a process of its own: the event loop parsing requests is busy Python, and a thread that
scores or writes to DuckDB releases and re-takes the interpreter lock dozens of times per batch;
each time it may wait for the event loop's time slice (5 ms). Measured on the 2-core machine
(docs/service.md): a DuckDB transaction that takes 4 ms alone took 170 ms beside a busy Python
thread, and batches took twice as long under load as alone. In its own process the engine has
its own interpreter lock and the second core.

Parent (the HTTP process, :class:`EngineProcess`): requests queue on the event loop; whenever
the engine is free to score, everything queued (up to ``max_loans`` loans) goes to it as one
batch. Child (:func:`_engine_main`): a reader thread takes messages off the pipe at once, the
main thread scores batches one at a time, and a recording thread commits the decision records of
every scored batch waiting for it in one transaction, then sends their answers. A response
leaves only once its record is committed; if the commit fails, no request of it is answered.

Messages are pickled tuples over a :func:`multiprocessing.Pipe`:

- parent to child: ``("score", id, jobs)``, ``("recommend", id, [job])``, ``None`` (stop);
- child to parent: ``("ready", info)`` or ``("error", message)`` once at start, then per
  computation ``("scored", id)`` (the engine is free again) and ``("done", id, bodies)`` or
  ``("failed", id, kind, message)``, ``kind`` being ``"engine"`` (the request could not be
  computed or recorded: 503) or ``"internal"`` (a bug: 500, traceback in the child's log).
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
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from npl_engine.errors import NplError
from npl_engine.service._logging import ERROR_LOGGER, configure_logging

__all__ = ["EngineFailure", "EngineProcess"]

_errors = logging.getLogger(ERROR_LOGGER)

#: How long the engine process may take to load the models and open the audit database.
START_SECONDS = 600.0
#: Interpreter switch interval in the engine process: its scoring and recording threads hand
#: the lock over quickly, so a DuckDB commit does not wait behind a scoring step (default 5 ms).
_SWITCH_SECONDS = 0.0005
#: The engine process scores small batches: one thread each for LightGBM and Polars, whose
#: thread pools otherwise hand tiny tasks between cores that the HTTP process needs.
_ENGINE_ENV = {"OMP_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}


class EngineFailure(RuntimeError):  # noqa: N818 - names what failed, as NplError does
    """An unexpected error in the engine process (its traceback is in that process's log)."""


@dataclass(frozen=True, slots=True)
class _Settings:
    model_dir: Path
    effects_dir: Path | None
    audit_db: Path | None


class EngineProcess:
    """The engine in a process of its own, and the batching of requests for it.

    Parameters
    ----------
    model_dir, effects_dir, audit_db
        As in :class:`~._scorer.Engine`.
    max_loans
        Loans per batch at most (a single larger request still forms its own batch).

    Notes
    -----
    :meth:`start` blocks until the models are loaded (raising :class:`NplError` with the
    engine's message if they cannot be); :meth:`attach` and :meth:`stop` run on the event loop
    that serves requests. If the engine process dies, waiting and later requests fail with
    :class:`NplError` and :attr:`alive` turns false.
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
        self._process: Any = None
        self._conn: Connection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[dict[str, Any]]]] | None = None
        self._free: asyncio.Event | None = None
        self._scoring: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None
        self._dead = False
        self._stopping = False

    # -- life cycle ----------------------------------------------------------------------

    def start(self, timeout: float = START_SECONDS) -> None:
        """Start the engine process and wait until its models are loaded.

        Raises
        ------
        NplError
            If the models or the audit database cannot be opened (the engine's own message).
        """
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_engine_main, args=(child, self.settings), name="npl-engine", daemon=True
        )
        with _environment(_ENGINE_ENV):  # read by the child's imports, before any code of ours
            self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(timeout):
            self._kill()
            msg = f"the scoring engine did not load its models within {timeout:.0f} s"
            raise NplError(msg)
        try:
            message = parent.recv()
        except (EOFError, OSError):
            self._kill()
            msg = "the scoring engine process stopped while loading the models (see its log)"
            raise NplError(msg) from None
        if message[0] != "ready":
            self._kill()
            raise NplError(message[1])
        self.info = message[1]

    async def attach(self) -> None:
        """Start batching requests on the running event loop."""
        assert self._conn is not None, "start() first"
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._free = asyncio.Event()
        self._free.set()
        # A thread, not loop.add_reader: the loop would make the pipe non-blocking, and a large
        # answer then arrives in pieces that Connection.recv cannot wait for.
        self._reader = threading.Thread(
            target=self._read, args=(self._conn, self._loop), name="npl-answers", daemon=True
        )
        self._reader.start()
        self._task = asyncio.create_task(self._batches())

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop batching, let the engine close its audit database, and wait for it to exit."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._stopping = True
        if self._process is None:
            return
        if not self._dead and self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
        await asyncio.to_thread(self._process.join, timeout)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)
        self._kill()
        self._fail_all(NplError("the service is shutting down"))

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._dead = True

    @property
    def alive(self) -> bool:
        """Whether the engine process runs and batches are being sent to it."""
        return (
            not self._dead
            and self._process is not None
            and self._process.is_alive()
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
            n = len(batch[0][0].loans)
            while n < self.max_loans and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                n += len(item[0].loans)
            live = [(job, fut) for job, fut in batch if not fut.cancelled()]
            if not live:
                continue
            self._free.clear()
            task = asyncio.create_task(self._answer(live))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

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
        """On the answers thread: hand each message to the event loop."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError) as exc:
                with contextlib.suppress(RuntimeError):  # the loop may be closed
                    loop.call_soon_threadsafe(self._on_death, exc)
                return
            loop.call_soon_threadsafe(self._handle, message)

    def _handle(self, message: tuple[Any, ...]) -> None:
        assert self._free is not None
        kind, batch_id = message[0], message[1]
        if kind in {"scored", "failed"} and batch_id == self._scoring:
            self._scoring = None
            self._free.set()
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

    def _on_death(self, exc: BaseException | None = None) -> None:
        if self._dead or self._stopping:
            return
        code = self._process.exitcode if self._process is not None else None
        _errors.error(
            "the scoring engine process stopped",
            exc_info=exc,
            extra={"fields": {"exit_code": code}},
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


# -- the engine process ------------------------------------------------------------------


def _engine_main(conn: Connection, settings: _Settings) -> None:
    """Load the engine, then compute and record until told to stop."""
    configure_logging()
    from npl_engine.service._scorer import Engine  # noqa: PLC0415 - heavy, child only

    try:
        engine = Engine(settings.model_dir, settings.effects_dir, settings.audit_db)
        engine.open_store()
    except NplError as exc:
        conn.send(("error", str(exc)))
        return
    except Exception as exc:
        _errors.exception("the scoring engine could not start")
        conn.send(("error", f"the scoring engine could not start: {type(exc).__name__}"))
        return
    conn.send(("ready", engine.describe()))
    # Models and imports live as long as the process: keep them out of every collection.
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(_SWITCH_SECONDS)
    _EngineLoop(conn, engine).run()


class _EngineLoop:
    """The engine process's threads: read the pipe, score (this thread), record and answer."""

    def __init__(self, conn: Connection, engine: Any) -> None:
        self.conn = conn
        self.engine = engine
        self.send_lock = threading.Lock()
        self.work: queue.Queue[tuple[str, int, list[Any]] | None] = queue.Queue()
        self.scored: queue.Queue[tuple[int, Any] | None] = queue.Queue()

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock:
            self.conn.send(message)

    def run(self) -> None:
        reader = threading.Thread(target=self.read, name="npl-read", daemon=True)
        recorder = threading.Thread(target=self.record, name="npl-record")
        reader.start()
        recorder.start()
        try:
            while (message := self.work.get()) is not None:
                kind, batch_id, jobs = message
                try:
                    if kind == "score":
                        outcome = self.engine.score(jobs)
                    else:
                        outcome = self.engine.recommend(jobs[0])
                except Exception as exc:
                    self.send(("failed", batch_id, *_failure(exc, [batch_id])))
                    continue
                self.send(("scored", batch_id))
                self.scored.put((batch_id, outcome))
        finally:
            self.scored.put(None)
            recorder.join()
            self.engine.close_store()
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

    def record(self) -> None:
        """Commit every scored batch waiting, in one transaction; then send their answers."""
        while True:
            pending = [self.scored.get()]
            while pending[-1] is not None:
                try:
                    pending.append(self.scored.get_nowait())
                except queue.Empty:
                    break
            done = [p for p in pending if p is not None]
            try:
                self.engine.record([outcome for _, outcome in done])
            except Exception as exc:  # nothing of the transaction was kept: no answers
                kind, text = _failure(exc, [i for i, _ in done])
                for batch_id, _ in done:
                    self.send(("failed", batch_id, kind, text))
            else:
                for batch_id, outcome in done:
                    self.send(("done", batch_id, outcome.bodies))
            if len(done) < len(pending):  # told to stop: after the last commit
                return


def _failure(exc: Exception, batch_ids: Sequence[int]) -> tuple[str, str]:
    """How a failure is reported to the parent; unexpected ones are logged with their trace."""
    if isinstance(exc, NplError):
        _errors.error("engine error: %s", exc, extra={"fields": {"batches": list(batch_ids)}})
        return "engine", str(exc)
    _errors.error(
        "unhandled engine error", exc_info=exc, extra={"fields": {"batches": list(batch_ids)}}
    )
    return "internal", type(exc).__name__
