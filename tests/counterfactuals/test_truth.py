"""The levers counterfactuals pick, against the simulator's truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from npl_engine.counterfactuals import BAU, StrategyModel, counterfactuals
from npl_engine.data.simulator import Simulation


@pytest.mark.slow
def test_levers_agree_with_the_truth_more_often_than_chance(
    strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """The first servicer lever raises the true p_recover more than a lever drawn at random.

    For 150 tape loans below 0.3, the action of each loan's sparsest servicer counterfactual
    (target: p_recover + 0.05) is compared with the truth's p_recover under that action; chance
    is the mean over the actions of the true p_recover. Also, offers go to borrowers with less
    capacity than calls do (the simulator's offers help low capacity, calls willing payers).
    """
    p, _ = strategy.p_recover(tape_sim.loans)
    ids = tape_sim.loans.filter(pl.Series(p < 0.3))["loan_id"].head(150).to_list()
    res = counterfactuals(strategy, tape_sim.loans, ids, uplift=0.05)
    first = res.counterfactuals.filter(
        (pl.col("rank") == 1) & (pl.col("action") != BAU) & pl.col("meets_target")
    )
    assert first.height >= 50
    truth = first.select("loan_id", "action").join(tape_sim.truth, on="loan_id", how="left")
    actions = [a for a in strategy.actions if a != BAU]
    chosen = np.array([truth[f"p_recover_{a}"][i] for i, a in enumerate(truth["action"].to_list())])
    chance = truth.select(pl.mean_horizontal(f"p_recover_{a}" for a in actions)).to_series()
    best = truth.select(pl.max_horizontal(f"p_recover_{a}" for a in actions)).to_series()
    gain, random_gain = chosen - truth["p_recover_none"], chance - truth["p_recover_none"]
    print(  # the figures docs/counterfactuals.md quotes
        f"loans {truth.height}; true gain chosen {gain.mean():.4f}, "
        f"random {random_gain.mean():.4f};"
        f" chosen is the true best in {(np.isclose(chosen, best)).mean():.1%} "
        f"(chance {1 / len(actions):.1%})"
    )
    assert gain.mean() > random_gain.mean()
    assert np.isclose(chosen, best).mean() > 1 / len(actions)
    by_action = truth.group_by("action").agg(pl.col("capacity").mean(), pl.len())
    cap = dict(zip(by_action["action"].to_list(), by_action["capacity"].to_list(), strict=True))
    if "settlement_offer" in cap and "call" in cap:
        assert cap["settlement_offer"] < cap["call"]
