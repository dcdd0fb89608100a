"""What every estimator shares: the process's prediction threads."""

from __future__ import annotations

import os
import threading

from npl_engine.base import thread_pool


def test_a_pool_is_started_once_per_process_and_name() -> None:
    """The same threads serve every call; another name gets other threads."""
    pool = thread_pool("npl-test", 2)
    assert thread_pool("npl-test", 2) is pool
    assert thread_pool("npl-test-other", 2) is not pool
    names = set(pool.map(lambda _i: threading.current_thread().name, range(20)))
    assert names
    assert all(n.startswith("npl-test_") for n in names)


def test_a_forked_child_starts_its_own_pool() -> None:
    """The parent's pool has no threads in a forked child: the child's calls must not hang."""
    parent = thread_pool("npl-test-fork", 1)
    assert parent.submit(lambda: 1).result() == 1  # the parent's thread exists before the fork
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own pool answers
        child = thread_pool("npl-test-fork", 1)
        os._exit(
            0 if child is not parent and child.submit(lambda: 2).result(timeout=10) == 2 else 1
        )
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
