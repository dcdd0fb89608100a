"""Shared set-up of the counterfactual tests: one small book, its models, and a tape."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

import _small_model
from npl_engine.causal import ActionEffectModel, CausalSettings, Effects, estimate_costs
from npl_engine.counterfactuals import StrategyModel
from npl_engine.data import write_dataset
from npl_engine.data.simulator import Simulation


@pytest.fixture(scope="package")
def book_sim() -> Simulation:
    """The shared 6,000-loan simulated book (``tests/_small_model.py``)."""
    return _small_model.book()


@pytest.fixture(scope="package")
def tape_sim() -> Simulation:
    """The shared 1,500-loan simulated tape, with its truth."""
    return _small_model.tape()


@pytest.fixture(scope="package")
def strategy(book_sim: Simulation, one_openmp_thread: None) -> StrategyModel:
    """The shared scoring model plus effects on recovered and on the recovery rate (the book)."""
    book = book_sim.dataset()
    recovery = _small_model.trained_model()
    on_recovered = ActionEffectModel(
        settings=CausalSettings(outcome="recovered"), n_estimators=60, n_trees=40
    ).fit(book)
    on_rate = ActionEffectModel(
        settings=CausalSettings(outcome="recovery_rate"), n_estimators=60, n_trees=40
    ).fit(book)
    return StrategyModel(
        recovery=recovery,
        effects=on_recovered,
        collection_effects=on_rate,
        costs=estimate_costs(book),
    )


@pytest.fixture(scope="package")
def low_ids(strategy: StrategyModel, tape_sim: Simulation) -> list[str]:
    """50 tape loans whose p_recover is below 0.3 (the issue's check)."""
    p, _ = strategy.p_recover(tape_sim.loans)
    ids = tape_sim.loans.filter(pl.Series(p < 0.3))["loan_id"].head(50).to_list()
    assert len(ids) == 50
    return ids


@pytest.fixture(scope="package")
def folders(
    strategy: StrategyModel, tape_sim: Simulation, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The models and the tape as folders, as the commands read them."""
    root = tmp_path_factory.mktemp("cf")
    strategy.recovery.save(root / "model")
    assert strategy.costs is not None
    for name, model in (("effects", strategy.effects), ("rate", strategy.collection_effects)):
        assert model is not None
        # the effects folder without refutations and validation, which these tests do not read
        summary = {
            "outcome": model.settings.outcome if model.settings else "recovery_rate",
            "actions": [{"action": e.action, "ate": e.ate} for e in model.effects_],
        }
        cate = model.cate(tape_sim.loans.lazy())
        Effects(model, summary, cate, strategy.costs).save(root / name)
    write_dataset(root / "tape", loans=tape_sim.loans)
    return {
        "model": root / "model",
        "effects": root / "effects",
        "rate": root / "rate",
        "tape": root / "tape",
    }
