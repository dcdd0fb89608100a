"""50,000 loans scored, valued and planned in memory, in chunks and on a cluster: same numbers.

Issue 18's equality check. In chunks: scoring with :func:`score_in_chunks` (files written as
it goes), expected loss with ``expected_loss(chunk_rows=...)``, the portfolio built chunk by
chunk (:meth:`Portfolio.concat`), the Monte Carlo as the sum of each chunk's path flows, and
the plan from per-loan effects predicted a chunk at a time (the business-as-usual sample is a
sample of the tape, not of a chunk, so it is the in-memory one). On a cluster: the
:mod:`npl_engine.distributed` functions on a 2-worker ``LocalCluster`` of worker processes.
Per-loan rows must be identical; sums (paths, totals) and the causal forest's effects (its
trees are summed in an order that depends on the rows predicted together) agree to 1e-9
relative.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from distributed import Client, LocalCluster
from polars.testing import assert_frame_equal

from npl_engine import distributed
from npl_engine.causal import (
    ActionCosts,
    ActionEffectModel,
    PolicyInputs,
    plan_actions,
    policy_inputs,
)
from npl_engine.data import read_dataset
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.scenarios import load_scenarios
from npl_engine.scoring import RecoveryModel, score_in_chunks
from npl_engine.valuation import (
    ExpectedLoss,
    MonteCarloSettings,
    Portfolio,
    build_portfolio,
    collateral_grid_for,
    draw_paths,
    expected_loss,
    path_flows,
    paths_from_flows,
    simulate_paths,
    value_portfolio,
)

pytestmark = pytest.mark.slow

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "eu_2026.toml"
N_LOANS = 50_000
PRICE = 1e9
#: Loans per chunk giving 1, 3 and 7 chunks of the 50,000.
CHUNKS = {1: 50_000, 3: 16_667, 7: 7_143}
PARTITIONS = (1, 3, 7)


@dataclass
class World:
    """The inputs and the in-memory results every other run is compared with."""

    model: RecoveryModel
    tape: Path
    loans: pl.DataFrame
    effects: ActionEffectModel
    costs: ActionCosts
    budget: float
    scores: Any
    portfolio: Portfolio
    value: dict[str, Any]
    paths: Any
    el: ExpectedLoss
    inputs: Any
    plan: Any


SETTINGS = MonteCarloSettings(n_paths=200, seed=11)


@pytest.fixture(scope="module")
def world(
    small_model_and_tape: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> World:
    """A 50,000-loan tape (seed 51), the small model, an effects model, in-memory results."""
    root = tmp_path_factory.mktemp("equality_50k")
    write_simulation(simulate(SimulationSettings(n_loans=N_LOANS, seed=51, kind="tape")), root)
    model = RecoveryModel.load(small_model_and_tape[0])
    loans = read_dataset(root).loans.collect()
    book = simulate(SimulationSettings(n_loans=3000, seed=43, kind="book")).dataset()
    effects = ActionEffectModel(n_estimators=40, seed=0).fit(book)
    costs = ActionCosts(
        fixed=dict.fromkeys(effects.actions_, 20.0),
        per_exposure=dict.fromkeys(effects.actions_, 0.001),
    )
    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    portfolio = build_portfolio(model, loans, collateral_grid=grid)
    threshold = model.definition.threshold
    inputs = policy_inputs(effects, loans.lazy(), costs)
    budget = 0.3 * float(inputs.cost.max(axis=1).sum())
    return World(
        model=model,
        tape=root,
        loans=loans,
        effects=effects,
        costs=costs,
        budget=budget,
        scores=model.score(loans.lazy()),
        portfolio=portfolio,
        value=value_portfolio(portfolio, scenarios, price=PRICE).to_dict(),
        paths=simulate_paths(
            portfolio, scenarios, SETTINGS, recovery_threshold=threshold, price=PRICE
        ),
        el=expected_loss(model, read_dataset(root), scenarios),
        inputs=inputs,
        plan=_plan(effects, inputs, inputs.bau, budget),
    )


def _plan(effects: ActionEffectModel, inputs: Any, bau: Any, budget: float) -> Any:
    return plan_actions(
        inputs.loan_ids, inputs.uplift, inputs.cost, effects.actions_, budget=budget, bau=bau
    )


def _assert_same_portfolio(portfolio: Portfolio, world: World) -> None:
    assert portfolio.loan_id.equals(world.portfolio.loan_id)
    for name in ("exposure", "p_recover", "borrower", "collateral", "collateral_response",
                 "interest_rate", "recovery_horizon_share"):  # fmt: skip
        assert np.array_equal(getattr(portfolio, name), getattr(world.portfolio, name)), name


def _assert_same_paths(paths: Any, world: World) -> None:
    assert np.array_equal(paths.scenario, world.paths.scenario)
    np.testing.assert_allclose(paths.net, world.paths.net, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(paths.price, world.paths.price, rtol=1e-9)
    np.testing.assert_allclose(paths.irr_at_price, world.paths.irr_at_price, rtol=1e-9)


def _assert_same_el(el: ExpectedLoss, world: World) -> None:
    assert_frame_equal(el.loans.lazy().collect(), world.el.loans.lazy().collect(), check_exact=True)
    assert_frame_equal(el.by_scenario, world.el.by_scenario, check_exact=False, rel_tol=1e-9)
    for by, table in world.el.groups.items():
        assert el.groups[by][by].to_list() == table[by].to_list(), by
        assert_frame_equal(el.groups[by], table, check_exact=False, rel_tol=1e-9)


def _assert_same_plan(inputs: Any, world: World) -> None:
    assert inputs.loan_ids.equals(world.inputs.loan_ids)
    np.testing.assert_allclose(inputs.uplift, world.inputs.uplift, rtol=1e-9, atol=1e-9)
    assert np.array_equal(inputs.cost, world.inputs.cost)
    plan = _plan(world.effects, inputs, world.inputs.bau, world.budget)
    assert plan.plan["action"].equals(world.plan.plan["action"])
    assert_frame_equal(plan.plan, world.plan.plan, rel_tol=1e-9, abs_tol=1e-9)
    assert_frame_equal(plan.comparison, world.plan.comparison, rel_tol=1e-9, abs_tol=1e-9)


@pytest.mark.parametrize("n_chunks", sorted(CHUNKS))
def test_50k_in_chunks_equals_in_memory(world: World, n_chunks: int, tmp_path: Path) -> None:
    """Scores, curves, portfolio, value, 200 paths, expected loss and plan in 1, 3, 7 chunks."""
    rows = CHUNKS[n_chunks]
    starts = range(0, N_LOANS, rows)
    assert len(starts) == n_chunks
    n = score_in_chunks(
        world.model,
        read_dataset(world.tape).loans,
        scores_path=tmp_path / "scores.parquet",
        curves_path=tmp_path / "curves.parquet",
        chunk_rows=rows,
    )
    assert n == N_LOANS
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert_frame_equal(scores, world.scores.scores, check_exact=True)
    curves = pl.read_parquet(tmp_path / "curves.parquet")
    assert_frame_equal(curves, world.scores.curves, check_exact=True)

    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    chunks = [world.loans.slice(start, rows) for start in starts]
    pieces = [build_portfolio(world.model, chunk, collateral_grid=grid) for chunk in chunks]
    portfolio = Portfolio.concat(pieces)
    _assert_same_portfolio(portfolio, world)
    assert value_portfolio(portfolio, scenarios, price=PRICE).to_dict() == world.value

    draws = draw_paths(scenarios, SETTINGS)
    threshold = world.model.definition.threshold
    flows = sum(
        path_flows(piece, scenarios, SETTINGS, draws, recovery_threshold=threshold)
        for piece in pieces
    )
    paths = paths_from_flows(flows, scenarios, SETTINGS, draws, n_loans=N_LOANS, price=PRICE)
    _assert_same_paths(paths, world)

    el = expected_loss(world.model, read_dataset(world.tape), scenarios, chunk_rows=rows)
    _assert_same_el(el, world)

    parts = [policy_inputs(world.effects, c.lazy(), world.costs, with_bau=False) for c in chunks]
    inputs = PolicyInputs(
        loan_ids=pl.concat([p.loan_ids for p in parts]),
        exposure=np.concatenate([p.exposure for p in parts]),
        uplift=np.concatenate([p.uplift for p in parts]),
        cost=np.concatenate([p.cost for p in parts]),
    )
    _assert_same_plan(inputs, world)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A LocalCluster of 2 worker processes, one thread each."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.mark.parametrize("n", PARTITIONS)
def test_50k_on_a_2_worker_cluster_equals_in_memory(world: World, client: Client, n: int) -> None:
    """Scores, portfolio, value, 200 paths, expected loss and plan in 1, 3 and 7 partitions."""
    cluster = distributed.Cluster(client=client, partitions=n)
    remote = distributed.score(cluster, world.model, world.loans)
    assert_frame_equal(remote.scores, world.scores.scores, check_exact=True)
    assert_frame_equal(remote.curves, world.scores.curves, check_exact=True)

    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    book = distributed.portfolio(cluster, world.model, world.loans, collateral_grid=grid)
    _assert_same_portfolio(book.portfolio, world)
    assert value_portfolio(book.portfolio, scenarios, price=PRICE).to_dict() == world.value
    paths = distributed.simulate_paths(
        cluster,
        book,
        scenarios,
        SETTINGS,
        recovery_threshold=world.model.definition.threshold,
        price=PRICE,
    )
    _assert_same_paths(paths, world)

    el = expected_loss(world.model, read_dataset(world.tape), scenarios, cluster=cluster)
    _assert_same_el(el, world)

    inputs = distributed.policy_inputs(cluster, world.effects, world.loans, world.costs)
    assert np.array_equal(inputs.bau.propensity, world.inputs.bau.propensity)
    _assert_same_plan(inputs, world)
