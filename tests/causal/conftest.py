import polars as pl
import pytest

from npl_engine.data import Dataset
from npl_engine.data.simulator import Simulation, SimulationSettings, simulate


def true_effects(sim: Simulation, loan_ids: pl.Series, action: str) -> pl.Series:
    """True per-loan effect of an action on the 60-month recovery rate, for these loans."""
    truth = pl.DataFrame({"loan_id": loan_ids}).join(sim.truth, on="loan_id", how="left")
    return (truth[f"expected_collections_{action}"] - truth["expected_collections_none"]) / truth[
        "exposure"
    ]


@pytest.fixture(scope="session")
def small_sim() -> Simulation:
    """A confounded simulator book of 6,000 loans."""
    return simulate(SimulationSettings(n_loans=6000, seed=11, kind="book"))


@pytest.fixture(scope="session")
def small_book(small_sim: Simulation) -> Dataset:
    """The 6,000-loan simulator book as a Dataset."""
    return small_sim.dataset()
