"""Reading decision records while the service writes them: a socket beside the database.

DuckDB lets one process open a database file, and the recording process of ``npl serve`` holds
its file while it runs. So that ``npl audit`` still works, that process also answers reading
queries on a Unix socket beside the file, ``<database>.sock``, from a connection of its own to
the database (a DuckDB cursor: it sees committed transactions only, so whole runs). The socket
is the file's stand-in: it takes the file's read permissions (owner always; group and others
where they may read the file), so it lets in exactly whom the file would. Who may read the
records does not change while the service runs, and no API key of the collections platform
reads them.

Protocol, one query per connection: the client sends one JSON line ``{"query": name, "args":
{...}}`` (a query of :func:`~._store.read_query`); the server answers one JSON line, ``{}`` or
``{"error": message}``, then, without error, the rows as an Arrow IPC stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from npl_engine.audit._store import (
    LOCK_WAIT_SECONDS,
    AuditReader,
    AuditStore,
    DatabaseInUse,
)
from npl_engine.errors import NplError

__all__ = ["ReaderSocket", "open_reader", "serve_readers", "socket_path"]

_log = logging.getLogger("npl_engine.audit")

#: Longest request line a reader may send (bytes).
_MAX_REQUEST = 64 * 1024
#: How long the server waits for a reader's request, or to send it a batch (seconds).
_IO_SECONDS = 30.0
#: Longest socket path the operating system takes (bytes, with room to spare).
_MAX_ADDRESS = 100
#: What the reader of a running service says it reads through (``npl audit`` prints it).
VIA_SERVICE = "the running service"


def socket_path(db: str | Path) -> Path:
    """Where the service holding audit database ``db`` answers readers: ``<db>.sock``."""
    db = Path(db).expanduser()
    return db.with_name(f"{db.name}.sock")


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits the socket address limit.

    A long path is reached through its folder's open descriptor (``/proc/self/fd/N/name``).
    """
    if len(os.fsencode(path)) <= _MAX_ADDRESS:
        yield str(path)
        return
    if not Path("/proc/self/fd").is_dir():
        msg = f"the path {path} is too long for a socket on this system"
        raise NplError(msg)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


def _socket_mode(db: Path) -> int:
    """Read permission on the database file becomes permission to connect to its socket."""
    mode = db.stat().st_mode
    return (
        stat.S_IRUSR
        | stat.S_IWUSR
        | (stat.S_IRGRP | stat.S_IWGRP if mode & stat.S_IRGRP else 0)
        | (stat.S_IROTH | stat.S_IWOTH if mode & stat.S_IROTH else 0)
    )


class ReaderSocket:
    """Answer reading queries on ``<database>.sock`` from a thread of the writing process.

    Parameters
    ----------
    store
        The open (writing) store. Queries run on a connection of their own, made here, one
        reader at a time; the store's own connection goes on writing.

    Notes
    -----
    The socket is bound in a private folder, given the database file's read permissions and
    then moved into place, so nobody else can connect in between. The process holding the
    database is the only one that may answer for it, so a socket left by a killed service is
    replaced.
    """

    def __init__(self, store: AuditStore) -> None:
        self.path = socket_path(store.path)
        self._reader = store.reader()  # made here: a connection's cursor, on this thread
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._bind(_socket_mode(store.path))
            self._sock.listen(8)
        except BaseException:
            self._sock.close()
            self._reader.close()
            raise
        self._inode = self.path.stat().st_ino
        self._thread = threading.Thread(target=self._serve, name="npl-audit-readers", daemon=True)
        self._thread.start()

    def _bind(self, mode: int) -> None:
        private = Path(tempfile.mkdtemp(prefix=".npl-", dir=self.path.parent))
        try:
            staged = private / "s"
            with _address(staged) as address:
                self._sock.bind(address)
            staged.chmod(mode)
            staged.replace(self.path)
        finally:
            with contextlib.suppress(OSError):
                (private / "s").unlink()
            private.rmdir()

    def close(self) -> None:
        """Stop answering and remove the socket (if it is still this one)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=_IO_SECONDS)
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._reader.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            with conn:
                try:
                    self._answer(conn)
                except OSError:  # the reader went away
                    continue
                except Exception:
                    _log.exception("could not answer a reader of the audit database")

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(_IO_SECONDS)
        with conn.makefile("rb") as incoming:
            line = incoming.readline(_MAX_REQUEST + 1)
        if not line:  # a probe: connected and left
            return
        with conn.makefile("wb") as out:
            try:
                if len(line) > _MAX_REQUEST:
                    msg = "request too long"
                    raise ValueError(msg)
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("args"), dict):
                    msg = 'a request is {"query": name, "args": {...}}'
                    raise ValueError(msg)
                batches = self._reader.batches(str(request.get("query")), request["args"])
            except (ValueError, duckdb.Error) as exc:
                out.write(json.dumps({"error": str(exc)}).encode() + b"\n")
                return
            out.write(b"{}\n")
            with pa.ipc.new_stream(out, batches.schema) as stream:
                for batch in batches:
                    stream.write_batch(batch)


def serve_readers(store: AuditStore) -> ReaderSocket | None:
    """Answer ``npl audit`` on ``<database>.sock`` while ``store`` holds the file.

    Returns
    -------
    ReaderSocket or None
        The socket (close it before the store), or ``None`` if it could not be made; the
        reason is logged, and records are still written, only not readable until the store
        is closed.
    """
    try:
        return ReaderSocket(store)
    except (OSError, NplError) as exc:
        _log.warning("npl audit cannot read %s while it is open here: %s", store.path, exc)
        return None


class _ServiceSource:
    """Reading queries sent to the socket of the service that holds the database."""

    def __init__(self, path: Path, db: Path) -> None:
        self.path = path
        self.db = db

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_IO_SECONDS)
        try:
            with _address(self.path) as address:
                sock.connect(address)
        except BaseException:
            sock.close()
            raise
        return sock

    def batches(self, query: str, args: dict[str, Any]) -> pa.RecordBatchReader:
        try:
            sock = self.connect()
        except OSError as exc:
            msg = f"the service holding {self.db} stopped answering: {exc}"
            raise NplError(msg) from exc
        try:
            sock.sendall(json.dumps({"query": query, "args": args}).encode() + b"\n")
            incoming = sock.makefile("rb")
            header = json.loads(incoming.readline() or b'{"error": "no answer"}')
            if "error" in header:
                msg = f"the service holding {self.db} could not read it: {header['error']}"
                raise NplError(msg)
            stream = pa.ipc.open_stream(incoming)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError | pa.ArrowException | json.JSONDecodeError):
                msg = f"reading {self.db} through the service that holds it failed: {exc}"
                raise NplError(msg) from exc
            raise

        def read() -> Iterator[pa.RecordBatch]:
            try:
                yield from stream
            except (OSError, pa.ArrowException) as exc:
                msg = f"reading {self.db} through the service that holds it failed: {exc}"
                raise NplError(msg) from exc
            finally:
                incoming.close()
                sock.close()

        return pa.RecordBatchReader.from_batches(stream.schema, read())


def _service(db: Path) -> _ServiceSource | None:
    """The source answering for ``db`` through its service's socket, if one answers."""
    path = socket_path(db)
    if not path.exists():
        return None
    source = _ServiceSource(path, db)
    try:
        source.connect().close()
    except OSError:  # a socket left by a service that was killed
        return None
    return source


def open_reader(db: str | Path, *, wait_seconds: float = LOCK_WAIT_SECONDS) -> AuditReader:
    """Open an audit database for reading, through the service if ``npl serve`` holds it.

    Parameters
    ----------
    db
        The database file.
    wait_seconds
        How long to wait while a process other than the service (say, ``npl score``) holds
        the file.

    Returns
    -------
    AuditReader
        Its :attr:`~AuditReader.via` is ``"the running service"`` when it reads through the
        service's socket, ``None`` when it reads the file. Close it when done.

    Raises
    ------
    NplError
        If there is no database at ``db``, or another process holds it past ``wait_seconds``.
    """
    db = Path(db).expanduser()
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            store = AuditStore(db, read_only=True, wait_seconds=0)
        except DatabaseInUse:
            source = _service(db)
            if source is not None:
                return AuditReader(source, db, via=VIA_SERVICE)
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
            continue
        reader = store.reader()

        def close(reader: AuditReader = reader, store: AuditStore = store) -> None:
            reader.close()
            store.close()

        return AuditReader(reader, db, on_close=close)
