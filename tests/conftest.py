"""Set-up shared by every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def private_audit_and_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Decision records and API keys go to a temporary folder, never to the user's home.

    Commands that record decisions (`npl score`, `npl value`, `npl policy`, ...) append to
    ``$NPL_AUDIT_DB``; each pytest worker gets its own database.
    """
    root = tmp_path_factory.mktemp("npl_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPL_AUDIT_DB", str(root / "audit.duckdb"))
        patch.setenv("NPL_API_KEYS_FILE", str(root / "api_keys.json"))
        patch.delenv("NPL_API_KEY", raising=False)
        yield
