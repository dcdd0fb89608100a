"""A simulated NPL world with known truth: books and tapes in contract form.

See ``docs/simulator.md`` for the structural causal model.
"""

from npl_engine.data.simulator._io import TRUTH_FOLDER, write_simulation
from npl_engine.data.simulator._process import SIMULATED_ACTIONS, WORKOUT_MONTHS
from npl_engine.data.simulator._simulate import (
    SIMULATOR_VERSION,
    Simulation,
    SimulationSettings,
    simulate,
    simulate_chunks,
    true_outcomes,
)
from npl_engine.data.simulator._world import SEGMENT_MIX

__all__ = [
    "SEGMENT_MIX",
    "SIMULATED_ACTIONS",
    "SIMULATOR_VERSION",
    "TRUTH_FOLDER",
    "WORKOUT_MONTHS",
    "Simulation",
    "SimulationSettings",
    "simulate",
    "simulate_chunks",
    "true_outcomes",
    "write_simulation",
]
