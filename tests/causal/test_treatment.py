import polars as pl
import pytest

from npl_engine.causal import CausalData, CausalSettings, build_causal_data
from npl_engine.data import Dataset
from npl_engine.data.simulator import Simulation
from npl_engine.errors import NplError
from npl_engine.features import build_features, learn_vocabularies


def _data(sim: Simulation, **kw: object) -> CausalData:
    book = sim.dataset()
    vocab = learn_vocabularies(build_features(book.loans).collect())
    return build_causal_data(book, CausalSettings(**kw), vocab)  # type: ignore[arg-type]


def test_treatment_is_the_simulated_action(small_sim: Simulation) -> None:
    """The most intensive action within 90 days is the action the simulator drew."""
    data = _data(small_sim)
    joined = data.frame.join(small_sim.truth.select("loan_id", "treatment"), on="loan_id")
    assert (joined["treatment"] == joined["treatment_right"]).all()


def test_censored_loans_are_excluded_and_counted(small_sim: Simulation) -> None:
    """Loans cut off after 2020-12-31 lack 60 observed months: excluded, never zero."""
    data = _data(small_sim)
    late = small_sim.loans.filter(pl.col("cutoff_date") > pl.date(2020, 12, 31)).height
    assert data.excluded_censored == late
    assert data.frame.height == small_sim.loans.height - late
    short = _data(small_sim, outcome="recovered")
    assert short.excluded_censored < data.excluded_censored


def test_recovery_rate_is_realised_60m_collections(small_sim: Simulation) -> None:
    """The outcome equals the simulator's realised 60-month collections over exposure."""
    data = _data(small_sim)
    truth = data.frame.join(small_sim.truth, on="loan_id")
    expected = truth["realised_collections_60m"] / truth["exposure"]
    assert (truth["outcome"] - expected).abs().max() < 1e-4  # payments are in cents


def test_actions_after_the_window_are_not_the_treatment(small_sim: Simulation) -> None:
    """With a 2-day window only day-0..2 actions count, so almost every loan is untreated."""
    data = _data(small_sim, treatment_window_days=2)
    assert (data.frame["treatment"] == "none").mean() > 0.95


def test_net_collections_subtracts_action_cost(small_sim: Simulation) -> None:
    """net_collections = collections - cost of the actions taken within the window."""
    data = _data(small_sim, outcome="net_collections")
    diff = data.frame["collections"] - data.frame["action_cost"] - data.frame["outcome"]
    assert diff.abs().max() < 1e-9
    assert (data.frame.filter(pl.col("treatment") == "legal_action")["action_cost"] >= 1200).all()


def test_a_tape_is_refused(small_sim: Simulation) -> None:
    """Causal data needs actions and payments: a loans-only dataset is an NplError."""
    with pytest.raises(NplError, match="needs a book"):
        _data_from(Dataset(small_sim.loans.lazy()))


def _data_from(dataset: Dataset) -> None:
    vocab = learn_vocabularies(build_features(dataset.loans).collect())
    build_causal_data(dataset, CausalSettings(), vocab)
