"""A trained model and a running service on loopback, shared by the service tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from npl_engine.causal import ActionEffectModel, Effects
from npl_engine.data.simulator import SimulationSettings, simulate
from npl_engine.service import ApiKeys, ServiceSettings, create_key
from service._server import Server, start_server


@pytest.fixture(scope="package")
def models(
    tmp_path_factory: pytest.TempPathFactory, small_model_and_tape: tuple[Path, Path]
) -> Path:
    """The shared small recovery model and an effect model (with costs) of a 3,000-loan book."""
    root = tmp_path_factory.mktemp("service_models")
    shutil.copytree(small_model_and_tape[0], root / "model")
    book = simulate(SimulationSettings(n_loans=3000, seed=41)).dataset()
    effect_model = ActionEffectModel(n_estimators=30).fit(book)
    Effects.from_model(effect_model, book, refutations=False).save(root / "effects")
    return root


@pytest.fixture(scope="package")
def tape() -> pl.DataFrame:
    """A 300-loan tape, as the contract's loans table."""
    return simulate(SimulationSettings(n_loans=300, seed=42, kind="tape")).loans


@pytest.fixture(scope="package")
def server(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The service with both models, one API key and its own audit database."""
    root = tmp_path_factory.mktemp("service")
    key_id, key = create_key(root / "keys.json", name="tests")
    settings = ServiceSettings(
        model_dir=models / "model",
        effects_dir=models / "effects",
        audit_db=root / "audit.duckdb",
        keys=ApiKeys.load(root / "keys.json"),
        max_loans=500,
        max_body_bytes=1_000_000,
    )
    running = start_server(settings, key=key, key_id=key_id)
    yield running
    running.stop()
