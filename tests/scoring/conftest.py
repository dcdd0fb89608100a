"""Shared set-up of the scoring tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="package", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """Run LightGBM on one OpenMP thread while the scoring tests run.

    ``make test`` runs two pytest workers on a two-core machine. With two workers each starting
    two spinning OpenMP threads, LightGBM trained 10 to 50 times slower than on one thread
    (measured: 200 rounds on 20,000 loans took 0.5 s on one thread, 5 to 25 s on two while
    another process was busy). The thread count does not change what the tests check.
    """
    with threadpool_limits(limits=1, user_api="openmp"):
        yield
