"""npl.counterfactuals and npl.what_if take models and effects as objects or folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

import npl_engine as npl
from npl_engine.causal import Effects
from npl_engine.counterfactuals import StrategyModel, strategy_model
from npl_engine.data.simulator import Simulation
from npl_engine.errors import NplError


def test_folders_give_the_counterfactuals_of_the_objects(
    strategy: StrategyModel, folders: dict[str, Path], tape_sim: Simulation, low_ids: list[str]
) -> None:
    """Model and effects folders give the rows the in-memory strategy model gives."""
    ids = low_ids[:2]
    from_folders = npl.counterfactuals(
        folders["model"], folders["tape"], ids, effects=folders["effects"], n=2, seed=3
    )
    in_memory = npl.counterfactuals(strategy, tape_sim.loans, ids, n=2, seed=3)
    assert from_folders.loans.select("loan_id", "status").equals(
        in_memory.loans.select("loan_id", "status")
    )
    # the folders' models predict what the objects predict, to rounding (a saved LightGBM
    # model and the in-memory one may differ in the last bit)
    assert_frame_equal(
        from_folders.counterfactuals.select("loan_id", "kind", "rank", "changes", "p_recover"),
        in_memory.counterfactuals.select("loan_id", "kind", "rank", "changes", "p_recover"),
        rel_tol=1e-12,
        abs_tol=1e-15,
    )


def test_what_if_reads_text_like_set_and_typed_values(
    folders: dict[str, Path], tape_sim: Simulation, low_ids: list[str]
) -> None:
    """`"4000"` as --set reads it and `4000.0` give the same re-score."""
    effects = [Effects.load(folders["effects"]), folders["rate"]]
    text = npl.what_if(
        folders["model"], tape_sim.loans, low_ids[0], {"monthly_income": "4000", "action": "call"},
        effects=effects,
    )  # fmt: skip
    typed = npl.what_if(
        folders["model"], tape_sim.loans, low_ids[0], {"monthly_income": 4000.0, "action": "call"},
        effects=effects,
    )  # fmt: skip
    # equal to rounding: the two routes build the one-row frame differently
    assert text.p_recover_after == pytest.approx(typed.p_recover_after, rel=1e-12)
    assert text.p_recover_after != text.p_recover_before
    assert text.expected_collections_after is not None  # effects on the rate move collections


def test_effects_on_the_rate_alone_or_twice_are_refused(folders: dict[str, Path]) -> None:
    """Counterfactuals move p_recover: effects on recovered are needed, once."""
    with pytest.raises(NplError, match="recovery rate only"):
        strategy_model(folders["model"], folders["rate"])
    with pytest.raises(NplError, match="two effects"):
        strategy_model(folders["model"], [folders["effects"], folders["effects"]])
    with pytest.raises(NplError, match="no such effects folder"):
        strategy_model(folders["model"], folders["model"].parent / "nope")


def test_an_unknown_loan_is_named(folders: dict[str, Path], tape_sim: Simulation) -> None:
    """what_if on a loan the table does not hold: the error names it."""
    with pytest.raises(NplError, match="NOPE"):
        npl.what_if(folders["model"], tape_sim.loans, "NOPE", {"monthly_income": 1.0})
