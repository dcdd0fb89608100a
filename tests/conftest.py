"""Set-up shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

import _small_model
from npl_engine.data.simulator import write_simulation

#: Hypothesis checks what the code computes, never how fast: its default 200 ms deadline per
#: example failed a pricing property on a machine busy with other work (250 ms, load 13).
settings.register_profile(
    "npl", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("npl")


@pytest.fixture(scope="session", autouse=True)
def private_audit_and_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Decision records, API keys and compiled boosters go to a temporary folder, never home.

    Commands that record decisions (`npl score`, `npl value`, `npl policy`, ...) append to
    ``$NPL_AUDIT_DB``; each pytest worker gets its own database.
    """
    root = tmp_path_factory.mktemp("npl_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPL_AUDIT_DB", str(root / "audit.duckdb"))
        patch.setenv("NPL_API_KEYS_FILE", str(root / "api_keys.json"))
        patch.setenv("NPL_ENGINE_CACHE_DIR", str(root / "compiled"))  # compiled boosters
        patch.delenv("NPL_API_KEY", raising=False)
        yield


@pytest.fixture(scope="session", autouse=True)
def one_openmp_thread() -> Iterator[None]:
    """Run LightGBM (and any other OpenMP code) on one thread in every test.

    ``make test`` runs two pytest workers on a two-core machine. With two workers each starting
    two spinning OpenMP threads, LightGBM trained 10 to 50 times slower than on one thread
    (measured: 200 rounds on 20,000 loans took 0.5 s on one thread, 5 to 25 s on two while
    another process was busy). The thread count does not change what the tests check.
    """
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture(scope="session")
def small_model_and_tape(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shared small model (``tests/_small_model.py``) and its 1,500-loan tape, as folders.

    One trained model for the tests of every command that reads one; trained once per pytest
    worker.
    """
    root = tmp_path_factory.mktemp("small_model")
    _small_model.trained_model().save(root / "model")
    write_simulation(_small_model.tape(), root / "tape")
    return root / "model", root / "tape"
