"""The one small trained recovery model the tests share (trained once per test process).

Every test that needs a fitted model uses this one, as an object (:func:`trained_model`) or as a
folder (the ``small_model_and_tape`` fixture of ``tests/conftest.py``): training takes most of
those tests' time, so it is cached for the process rather than per module or package.
"""

from __future__ import annotations

import functools

from threadpoolctl import threadpool_limits

from npl_engine.data.simulator import Simulation, SimulationSettings, simulate
from npl_engine.scoring import RecoveryModel

#: One small LightGBM setting; 4,000 loans is about the smallest book whose 60-month collateral
#: model learns something (smaller ones early-stop at one tree, which would test little).
GRID = ({"num_leaves": 15, "min_data_in_leaf": 50},)


@functools.cache
def book() -> Simulation:
    """A 6,000-loan simulated book (seed 31)."""
    return simulate(SimulationSettings(n_loans=6_000, seed=31))


@functools.cache
def tape() -> Simulation:
    """A 1,500-loan simulated tape (seed 32), with its truth."""
    return simulate(SimulationSettings(n_loans=1_500, seed=32, kind="tape"))


@functools.cache
def explain_tape() -> Simulation:
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
