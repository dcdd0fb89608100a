"""Counterfactuals on simulator loans: re-scored, in range, immutable, reproducible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest

from npl_engine.counterfactuals import (
    BAU,
    IMMUTABLE_COLUMNS,
    CounterfactualResult,
    CounterfactualSettings,
    StrategyModel,
    apply_counterfactuals,
    counterfactuals,
    summarize,
)
from npl_engine.counterfactuals._dice import LeverSpace, dice_candidates, dice_data, to_dice_scale
from npl_engine.data.simulator import Simulation
from npl_engine.errors import NplError

SETTINGS = {"borrower_side": True, "seed": 7, "sample_size": 150}


@pytest.fixture(scope="module")
def result(
    strategy: StrategyModel, tape_sim: Simulation, low_ids: list[str]
) -> CounterfactualResult:
    """Counterfactuals, borrower side included, for the 50 low-p_recover tape loans."""
    return counterfactuals(strategy, tape_sim.loans, low_ids, **SETTINGS)


def test_every_counterfactual_rescored_meets_the_target(
    result: CounterfactualResult, strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """Re-scoring a counterfactual's loans row gives its p_recover: >= target, or closest."""
    found = result.counterfactuals
    assert found.height >= 20, "too few counterfactuals to prove anything"
    rows = apply_counterfactuals(tape_sim.loans, found)
    scores = strategy.score(
        rows,
        actions=found["action"].to_numpy(),
        discounts=found["settlement_discount"].fill_null(np.nan).to_numpy(),
    )
    np.testing.assert_allclose(scores.p_recover, found["p_recover"].to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(
        scores.p_recover >= found["target"].to_numpy(), found["meets_target"].to_numpy()
    )
    assert found["meets_target"].sum() >= 20
    # a row short of the target is a closest servicer lever, never beside one that reaches it
    short = found.filter(~pl.col("meets_target"))
    assert set(short["kind"].to_list()) <= {"servicer"}
    reached = found.filter(pl.col("meets_target") & (pl.col("kind") == "servicer"))
    assert not set(short["loan_id"].to_list()) & set(reached["loan_id"].to_list())
    assert (found["p_recover"] > found["p_recover_before"]).all()


def test_immutable_columns_never_change(result: CounterfactualResult, tape_sim: Simulation) -> None:
    """Every column but the borrower-side levers is the loan's own, in every counterfactual."""
    found = result.counterfactuals
    rows = apply_counterfactuals(tape_sim.loans, found)
    original = found.select("loan_id").join(tape_sim.loans, on="loan_id", how="left")
    for column in IMMUTABLE_COLUMNS:
        assert rows[column].equals(original[column]), column
    servicer = found["kind"] == "servicer"
    for column in ("monthly_income", "debt_to_income", "liquid_assets"):
        assert rows.filter(servicer)[column].equals(original.filter(servicer)[column]), column


def test_levers_stay_in_their_permitted_ranges(
    result: CounterfactualResult, strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """Actions are known levers; discounts within the range; borrower levers within q05..q95."""
    found = result.counterfactuals
    assert set(found["action"].to_list()) <= set(strategy.actions)
    offers = found.filter(pl.col("action") == "settlement_offer")
    lo, hi = CounterfactualSettings().discount_range
    assert offers["settlement_discount"].is_between(lo, hi).all()
    assert (
        found.filter(pl.col("action") != "settlement_offer")["settlement_discount"].is_null().all()
    )
    borrower = found.filter(pl.col("kind") == "borrower_side")
    assert borrower.height > 0
    original = borrower.select("loan_id").join(tape_sim.loans, on="loan_id", how="left")
    for column in ("monthly_income", "debt_to_income", "liquid_assets"):
        q05, q95 = (tape_sim.loans[column].quantile(q) for q in (0.05, 0.95))
        moved = borrower[column] != original[column]
        values = borrower.filter(moved)[column]
        assert values.is_between(round(q05, 2) - 1, round(q95, 2) + 1).all(), column


def test_kinds_are_labelled_and_borrower_side_moves_the_borrower(
    result: CounterfactualResult, tape_sim: Simulation
) -> None:
    """Servicer rows change no borrower value; borrower-side rows change at least one."""
    found = result.counterfactuals
    original = found.select("loan_id").join(tape_sim.loans, on="loan_id", how="left")
    columns = ("monthly_income", "debt_to_income", "liquid_assets")
    moved = pl.DataFrame({c: (found[c] != original[c]).fill_null(False) for c in columns})
    moved_any = moved.select(pl.any_horizontal(pl.all())).to_series()
    assert not moved_any.filter(found["kind"] == "servicer").any()
    assert moved_any.filter(found["kind"] == "borrower_side").all()
    assert set(found["kind"].to_list()) <= {"servicer", "borrower_side"}
    assert moved_any.any()


def test_sparsity_and_diversity_are_reported(result: CounterfactualResult) -> None:
    """Each found loan reports its mean levers changed and the spread of its counterfactuals."""
    loans = result.loans
    assert loans.height == 50
    found = loans.filter(pl.col("status") == "found")
    assert found.height > 0
    assert found["sparsity"].is_not_null().all()
    assert (found["sparsity"] >= 1).all()
    assert found["diversity"].is_not_null().all()
    several = result.counterfactuals.group_by("loan_id", "kind").len().filter(pl.col("len") > 1)
    assert several.height > 0
    assert found["diversity"].max() > 0  # type: ignore[operator]
    none = loans.filter(pl.col("status") == "none_within_limits")
    assert none["message"].str.contains("no counterfactual reaches").all()
    summary = summarize(result)
    assert summary["n_loans"] == 50
    shares = summary["share_with_servicer_lever"] + summary["share_with_borrower_side_what_if"]
    assert shares > 0
    assert summary["mean_sparsity"] >= 1


def test_same_seed_same_counterfactuals(
    result: CounterfactualResult, strategy: StrategyModel, tape_sim: Simulation, low_ids: list[str]
) -> None:
    """Running again with the same seed gives the same levers and, to 1e-12, the same scores."""
    again = counterfactuals(strategy, tape_sim.loans, low_ids[:8], **SETTINGS)
    first = result.counterfactuals.filter(pl.col("loan_id").is_in(low_ids[:8]))
    assert again.counterfactuals.height > 0
    # The causal forest predicts on parallel threads: sums may differ in the last bit.
    scores = ["p_recover", "expected_collections", "collections_change"]
    assert again.counterfactuals.drop(scores).equals(first.drop(scores))
    for column in scores:
        np.testing.assert_allclose(
            again.counterfactuals[column].to_numpy(), first[column].to_numpy(), rtol=1e-12
        )
    assert again.loans.drop("seconds", "p_recover").equals(
        result.loans.head(8).drop("seconds", "p_recover")
    )


def test_unknown_loan_and_missing_levers_are_refused(
    strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """An unknown id names table, column and id; no effects and no borrower side is refused."""
    with pytest.raises(NplError, match=r"loans: column loan_id .* NOPE"):
        counterfactuals(strategy, tape_sim.loans, ["NOPE"])
    bare = StrategyModel(recovery=strategy.recovery)
    with pytest.raises(NplError, match="--effects"):
        counterfactuals(bare, tape_sim.loans, tape_sim.loans["loan_id"].head(1).to_list())


def test_uplift_target_finds_servicer_levers(
    strategy: StrategyModel, tape_sim: Simulation, low_ids: list[str]
) -> None:
    """With an uplift the target is p + uplift, and servicer levers reach it, re-scored."""
    res = counterfactuals(strategy, tape_sim.loans, low_ids[:10], uplift=0.05)
    np.testing.assert_allclose(res.loans["target"], res.loans["p_recover"] + 0.05)
    found = res.counterfactuals
    assert found.height > 0
    assert set(found["kind"].to_list()) == {"servicer"}
    assert (found["p_recover"] >= found["target"]).all()
    assert found.filter(pl.col("action") != BAU)["cost"].is_not_null().all()
    assert found["collections_change"].is_not_null().all()


def test_every_loan_a_lever_helps_gets_a_lever(
    strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """At the default target the 20 least likely loans get the best levers, re-scored.

    Each loan is re-scored under every action (an offer at the lowest permitted discount): a
    loan that any of them lifts must get at least one servicer lever, the first being the
    action that lifts it most; no target is reached, so the status is ``closest``.
    """
    p, _ = strategy.p_recover(tape_sim.loans)
    ids = tape_sim.loans["loan_id"].gather(np.argsort(p)[:20]).to_list()
    res = counterfactuals(strategy, tape_sim.loans, ids, seed=3)
    actions = [a for a in strategy.actions if a != BAU]
    best: dict[str, tuple[str, float]] = {}
    for loan_id in ids:
        row = tape_sim.loans.filter(pl.col("loan_id") == loan_id)
        discounts = np.where(np.array(actions) == "settlement_offer", 0.1, np.nan)
        p_a, _ = strategy.p_recover(
            pl.concat([row] * len(actions)), actions=np.array(actions), discounts=discounts
        )
        p0 = float(strategy.p_recover(row)[0][0])
        if p_a.max() > p0 + 1e-6:
            best[loan_id] = (actions[int(np.argmax(p_a))], float(p_a.max()))
    assert len(best) >= 15, "too few loans that some lever helps to prove anything"
    loans = res.loans.filter(pl.col("loan_id").is_in(list(best)))
    assert (loans["n_servicer"] >= 1).all()
    assert set(loans["status"].to_list()) <= {"found", "closest"}
    first = res.counterfactuals.filter((pl.col("kind") == "servicer") & (pl.col("rank") == 1))
    for r in first.filter(pl.col("loan_id").is_in(list(best))).iter_rows(named=True):
        if not r["meets_target"]:
            assert r["action"] == best[r["loan_id"]][0]
            assert r["p_recover"] == pytest.approx(best[r["loan_id"]][1], abs=1e-9)
    closest = res.loans.filter(pl.col("status") == "closest")
    assert closest.height > 0
    assert closest["message"].str.contains("closest servicer levers").all()
    assert summarize(res)["closest_only"] == closest.height


def test_a_loan_at_the_target_is_said_to_be(strategy: StrategyModel, tape_sim: Simulation) -> None:
    """A loan already above the target gets no counterfactual and a status saying why."""
    p, _ = strategy.p_recover(tape_sim.loans)
    high = tape_sim.loans.filter(pl.Series(p > 0.6))["loan_id"].head(1).to_list()
    res = counterfactuals(strategy, tape_sim.loans, high)
    assert res.counterfactuals.height == 0
    assert res.loans["status"].to_list() == ["already_meets_target"]


def test_to_dice_scale_puts_the_target_on_one_half() -> None:
    """P >= target exactly when the rescaled score >= 0.5; the map is monotone, 0→0, 1→1."""
    p = np.linspace(0, 1, 1001)
    for target in (0.05, 0.3, 0.5, 0.8):
        s = to_dice_scale(p, target)
        assert ((s >= 0.5) == (p >= target)).all()
        assert (np.diff(s) >= 0).all()
        assert s[0] == 0.0
        assert s[-1] == 1.0


def test_the_dice_path_works_on_pinned_numpy_and_pandas() -> None:
    """DiCE 0.12 random with desired_class=1 finds the known answer of a toy rule, seeded.

    The toy engine: p = 0.9 when action is "b" and x >= 0.6, else 0.1. Every candidate must
    be action "b" with x in [0.6, 0.9] (the permitted range), and a seed repeats the draw.
    """
    space = LeverSpace(
        categorical={"action": ("a", "b", "c")},
        continuous={"x": (0.0, 0.9)},
        precision={"x": 2},
    )
    background = pd.DataFrame(
        {"action": ["q", "a", "b", "c"] * 5, "x": np.linspace(0, 1, 20).round(2), "recovers": 0}
    )
    data = dice_data(background, space)

    def score(frame: pd.DataFrame) -> np.ndarray:
        ok = (frame["action"].astype(str) == "b") & (frame["x"].astype(float) >= 0.6)
        return np.where(ok, 0.9, 0.1)

    query = pd.DataFrame({"action": ["q"], "x": [0.1]})
    kwargs = {"target": 0.5, "features_to_vary": ["action", "x"], "total": 4,
              "sample_size": 200, "seed": 3}  # fmt: skip
    found = dice_candidates(data, space, query, score, **kwargs)  # type: ignore[arg-type]
    assert len(found) == 4
    assert (found["action"] == "b").all()
    assert found["x"].astype(float).between(0.6, 0.9).all()
    again = dice_candidates(data, space, query, score, **kwargs)  # type: ignore[arg-type]
    pd.testing.assert_frame_equal(found, again)
    state = np.random.get_state()[1][:5].copy()  # noqa: NPY002
    dice_candidates(data, space, query, score, **kwargs)  # type: ignore[arg-type]
    assert (np.random.get_state()[1][:5] == state).all()  # noqa: NPY002 - caller's state kept

    impossible = dice_candidates(
        data,
        space,
        query,
        lambda f: np.full(len(f), 0.1),
        **kwargs,  # type: ignore[arg-type]
    )
    assert len(impossible) == 0


def test_bau_lever_reproduces_the_scoring_model(
    strategy: StrategyModel, tape_sim: Simulation
) -> None:
    """Business as usual is the scoring model's p_recover and expected collections exactly."""
    loans = tape_sim.loans.head(200)
    scores = strategy.score(loans)
    reference = strategy.recovery.score(loans.lazy()).scores
    np.testing.assert_array_equal(scores.p_recover, reference["p_recover"].to_numpy())
    np.testing.assert_allclose(
        scores.expected_collections, reference["expected_collections"].to_numpy(), rtol=1e-12
    )
    assert (scores.cost == 0).all()
    assert strategy.actions[0] == BAU
