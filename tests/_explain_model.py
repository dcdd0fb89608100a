"""The small trained model the explanation tests share (trained once per test process).

``test_explain.py`` and ``test_cli_explain.py`` both need a fitted model; training takes most of
their time, so it is cached for the process rather than per module.
"""

from __future__ import annotations

import functools

from threadpoolctl import threadpool_limits

from npl_engine.data.simulator import Simulation, SimulationSettings, simulate
from npl_engine.scoring import RecoveryModel

#: One small LightGBM setting; 4,000 loans is the smallest book whose 60-month collateral
#: model learns something (smaller ones early-stop at one tree, which would test little).
GRID = ({"num_leaves": 15, "min_data_in_leaf": 50},)


@functools.cache
def book() -> Simulation:
    """A 4,000-loan simulated book."""
    return simulate(SimulationSettings(n_loans=4_000, seed=3))


@functools.cache
def tape() -> Simulation:
    """A 2,500-loan simulated tape: enough rows for the compiled TreeSHAP path."""
    return simulate(SimulationSettings(n_loans=2_500, seed=4, kind="tape"))


@functools.cache
def trained_model() -> RecoveryModel:
    """The recovery model fitted on :func:`book` (one OpenMP thread: see tests/scoring)."""
    sim = book()
    data = sim.dataset()
    with threadpool_limits(limits=1, user_api="openmp"):
        model = RecoveryModel(baselines=False, grid=GRID).fit(data)
    # Every booster must have something to explain, or the tests below prove little.
    assert model.classifier_.booster_.num_trees() > 10
    assert all(b.num_trees() > 10 for b in model.collections_.totals_.values())
    return model
