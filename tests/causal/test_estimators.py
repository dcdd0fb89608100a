"""Per-loan effect estimators: the interface, the DR learner against the truth, a user's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pytest
from scipy.stats import spearmanr

import npl_engine as npl
from npl_engine.causal import (
    MODEL_FILE,
    ActionEffectModel,
    CateEstimator,
    CausalForestEstimator,
    DRLearnerEstimator,
    Effects,
)
from npl_engine.data import Dataset
from npl_engine.data.simulator import Simulation, SimulationSettings, simulate

from .conftest import true_effects

Array = npt.NDArray[np.float64]


class ConstantEffect:
    """A user's estimator: the same effect for every loan, per action, and a fixed band."""

    def __init__(self, *, values: dict[str, float], half_width: float = 0.01) -> None:
        self.values = values
        self.half_width = half_width

    def fit(
        self,
        y: Array,  # noqa: ARG002 - the interface's arguments
        treatment: npt.NDArray[np.str_],  # noqa: ARG002
        X: Array,  # noqa: ARG002, N803
        *,
        arms: tuple[str, ...],
    ) -> ConstantEffect:
        """Learn nothing: one row of the given effects, in the order of ``arms``' actions."""
        self.row_ = np.array([self.values[a] for a in arms[1:]])
        return self

    def effect(self, X: Array) -> Array:  # noqa: N803
        """The constants, one row per row of X."""
        return np.tile(self.row_, (np.asarray(X).shape[0], 1))

    def effect_interval(
        self,
        X: Array,  # noqa: N803
        *,
        alpha: float = 0.05,  # noqa: ARG002 - a fixed band whatever the level
    ) -> tuple[Array, Array]:
        """The constants plus and minus ``half_width``."""
        tau = self.effect(X)
        return tau - self.half_width, tau + self.half_width


VALUES = {"letter": 0.01, "call": 0.02, "settlement_offer": 0.03, "legal_action": 0.04}


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """A confounded 3,000-loan simulator book (about 2,150 loans analysed)."""
    return simulate(SimulationSettings(n_loans=3000, seed=3, kind="book"))


@pytest.fixture(scope="module")
def book(sim: Simulation) -> Dataset:
    """The 3,000-loan book."""
    return sim.dataset()


@pytest.fixture(scope="module")
def dr_model(book: Dataset) -> ActionEffectModel:
    """Effects on the book with the DR learner as the per-loan estimator (small models)."""
    estimator = DRLearnerEstimator(n_estimators=40, n_trees=100, n_jobs=2)
    return ActionEffectModel(n_estimators=40, n_jobs=2, estimator=estimator).fit(book)


@pytest.fixture(scope="module")
def forest_model(book: Dataset) -> ActionEffectModel:
    """The default estimator with small settings of the model's own."""
    model = ActionEffectModel(n_estimators=20, n_trees=40, seed=2, n_folds=2, n_jobs=2)
    return model.fit(book)


@pytest.fixture(scope="module")
def constant_effects(book: Dataset) -> Effects:
    """npl.estimate_effects with a user-written estimator, no refutations, small nuisance models."""
    return npl.estimate_effects(
        book, refutations=False, estimator=ConstantEffect(values=VALUES), n_estimators=40
    )


def test_the_shipped_estimators_and_a_users_class_satisfy_the_interface() -> None:
    """Both shipped estimators and a plain class with the three methods are CateEstimators."""
    for estimator in (CausalForestEstimator(), DRLearnerEstimator(), ConstantEffect(values={})):
        assert isinstance(estimator, CateEstimator)
    assert not isinstance(object(), CateEstimator)


def test_dr_learner_recovers_the_simulators_effects(
    dr_model: ActionEffectModel, sim: Simulation
) -> None:
    """Per action: mean effect within 0.04 of the truth, truth inside >= 90 % of the intervals.

    Measured on this book (2,152 loans): errors of the mean 0.001 / 0.012 / 0.004 / 0.025
    (letter, call, settlement offer, legal action; legal action's AIPW average, 0.054, is as far
    from the truth, 0.020), coverage 0.98-0.99 (the intervals are wide on a book this small:
    the known-effect test below is the sharper coverage check), rank correlation with the true
    effects 0.58 call and 0.46 settlement offer, the two actions whose effects vary most: a
    swapped column or a sign error fails these checks.
    """
    X = dr_model.data_.covariates.values  # noqa: N806
    effect, low, high = dr_model.effect_and_interval(X)
    assert np.allclose(effect, dr_model.effect(X), rtol=0, atol=1e-12)
    assert (low <= effect).all()
    assert (effect <= high).all()
    ids = dr_model.data_.frame["loan_id"]
    for k, action in enumerate(dr_model.actions_):
        truth = true_effects(sim, ids, action).to_numpy()
        keep = dr_model.trim_mask_[action]
        assert abs(effect[keep, k].mean() - truth[keep].mean()) <= 0.04, action
        covered = ((low[:, k] <= truth) & (truth <= high[:, k])).mean()
        assert covered >= 0.9, (action, covered)
        if action in ("call", "settlement_offer"):
            assert spearmanr(effect[:, k], truth)[0] >= 0.3, action


def test_dr_learner_covers_a_known_heterogeneous_effect() -> None:
    """Confounded arrays with effect 0.2 + 0.2 x1: >= 85 % coverage, rank correlation >= 0.8.

    Measured: coverage 0.93, Spearman 0.93, error of the mean 0.006 (interval width 0.28). An
    estimate constant at the true mean with that width would cover only about half the loans.
    """
    rng = np.random.default_rng(5)
    n = 3000
    X = rng.normal(size=(n, 4))  # noqa: N806
    treated = rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))  # x0 confounds
    tau = 0.2 + 0.2 * X[:, 1]
    y = 0.5 * X[:, 0] + treated * tau + rng.normal(scale=0.3, size=n)
    treatment = np.where(treated, "call", "none")
    estimator = DRLearnerEstimator(n_estimators=60, n_trees=100, n_jobs=2)
    estimator.fit(y, treatment, X, arms=("none", "call"))
    low, high = estimator.effect_interval(X)
    effect = estimator.effect(X)[:, 0]
    assert ((low[:, 0] <= tau) & (tau <= high[:, 0])).mean() >= 0.85
    assert spearmanr(effect, tau)[0] >= 0.8
    assert abs(effect.mean() - tau.mean()) <= 0.03


def test_a_dr_learner_model_saves_and_loads(
    dr_model: ActionEffectModel, sim: Simulation, tmp_path: Path
) -> None:
    """The saved model with its DR learner gives the same effects and intervals on a tape."""
    loaded = ActionEffectModel.load(dr_model.save(tmp_path))
    assert isinstance(loaded.estimator_, DRLearnerEstimator)
    tape = simulate(SimulationSettings(n_loans=200, seed=5, kind="tape")).loans.lazy()
    a, b = dr_model.cate(tape), loaded.cate(tape)
    assert a["loan_id"].equals(b["loan_id"])
    # the forests sum their trees in threads: equal to the last bits only up to the order
    assert np.allclose(
        a.drop("loan_id").to_numpy(), b.drop("loan_id").to_numpy(), rtol=0, atol=1e-12
    )


def test_a_users_estimator_plugs_into_the_effect_model(constant_effects: Effects) -> None:
    """A class written outside npl_engine gives its constants back through effect()."""
    model = constant_effects.model
    X = model.data_.covariates.values[:50]  # noqa: N806
    expected = np.tile([VALUES[a] for a in model.actions_], (50, 1))
    assert np.array_equal(model.effect(X), expected)
    effect, low, high = model.effect_and_interval(X)
    assert np.array_equal(effect, expected)
    assert np.allclose(high - low, 0.02)
    assert isinstance(model.estimator_, ConstantEffect)
    assert not hasattr(model.estimator, "row_")  # the given estimator is left unfitted


def test_a_users_estimator_through_estimate_effects(
    constant_effects: Effects, book: Dataset, tmp_path: Path
) -> None:
    """npl.estimate_effects(estimator=) writes its constants per loan and survives save/load."""
    cate = constant_effects.cate
    assert cate.height == book.loans.collect().height
    assert constant_effects.model.n_estimators == 40  # the nuisance models' rounds reach the model
    for action, value in VALUES.items():
        assert (cate[f"cate_{action}"] == value).all()
        assert np.allclose(cate[f"cate_{action}_high"] - cate[f"cate_{action}_low"], 0.02)
    assert constant_effects.summary["method"].endswith(
        "ConstantEffect: per-loan effects with 95 % intervals"
    )
    assert "half-sample ConstantEffect effects" in constant_effects.summary["validation"]["method"]
    loaded = Effects.load(constant_effects.save(tmp_path / "effects"))
    assert loaded.cate.equals(cate)


def test_the_default_estimator_is_the_causal_forest_with_the_models_settings(
    forest_model: ActionEffectModel,
) -> None:
    """Without estimator=, the model fits a causal forest with its own trees, seed and folds."""
    forest = forest_model.estimator_
    assert isinstance(forest, CausalForestEstimator)
    assert (forest.n_trees, forest.n_estimators, forest.seed, forest.n_folds) == (40, 20, 2, 2)
    assert forest_model.estimator is None


def test_a_model_saved_before_the_interface_still_loads(
    forest_model: ActionEffectModel, tmp_path: Path
) -> None:
    """A saved model holding its forest as forest_ and fill_ loads and gives the same effects."""
    state: dict[str, Any] = {
        k: v for k, v in forest_model.__dict__.items() if k not in {"data_", "train_", "estimator"}
    }
    forest = state.pop("estimator_")
    state["forest_"], state["fill_"] = forest.model_, forest.fill_
    joblib.dump(state, tmp_path / MODEL_FILE)
    loaded = ActionEffectModel.load(tmp_path)
    X = forest_model.data_.covariates.values  # noqa: N806
    assert np.allclose(loaded.effect(X), forest_model.effect(X), rtol=0, atol=1e-12)
    for a, b in zip(loaded.effect_interval(X), forest_model.effect_interval(X), strict=True):
        assert np.allclose(a, b, rtol=0, atol=1e-12)


def _arrays(n: int = 300) -> tuple[Array, npt.NDArray[np.str_], Array]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))  # noqa: N806
    treatment = np.array(["none", "letter", "call"])[rng.integers(0, 3, n)]
    return X, treatment, X[:, 0] + rng.normal(size=n)


def test_an_object_without_the_methods_is_refused() -> None:
    """estimator= must have fit, effect and effect_interval; the error names what it got."""
    model = ActionEffectModel(n_estimators=5, estimator={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"CateEstimator.*got dict"):
        model.fit_arrays(*_arrays())


def test_an_estimator_of_the_wrong_shape_is_a_clear_error() -> None:
    """An estimator returning one column for two actions fails with the shapes named."""

    class OneColumn(ConstantEffect):
        def effect(self, X: Array) -> Array:  # noqa: N803
            return np.zeros((np.asarray(X).shape[0], 1))

    estimator = OneColumn(values={"letter": 0.0, "call": 0.0})
    model = ActionEffectModel(n_estimators=5, n_jobs=1, estimator=estimator)
    X, treatment, y = _arrays()  # noqa: N806
    model.fit_arrays(X, treatment, y)
    with pytest.raises(ValueError, match=r"OneColumn returned shape \(3, 1\); expected \(3, 2\)"):
        model.effect(X[:3])


def test_the_forests_sampling_and_leaf_settings_reach_econml_and_the_validation_forest() -> None:
    """max_samples and min_samples_leaf go to CausalForestDML, and on to for_validation()."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(800, 3))  # noqa: N806
    treatment = np.where(rng.random(800) < 0.5, "call", "none")
    y = X[:, 0] + 0.3 * (treatment == "call") + rng.normal(scale=0.1, size=800)
    forest = CausalForestEstimator(
        n_trees=8, n_estimators=10, n_jobs=1, max_samples=0.3, min_samples_leaf=12
    ).fit(y, treatment, X, arms=("none", "call"))
    assert (forest.model_.max_samples, forest.model_.min_samples_leaf) == (0.3, 12)
    half = forest.for_validation()
    assert (half.max_samples, half.min_samples_leaf) == (0.3, 12)
    default = CausalForestEstimator(n_trees=8, n_estimators=10, n_jobs=1).fit(
        y, treatment, X, arms=("none", "call")
    )
    assert (default.model_.max_samples, default.model_.min_samples_leaf) == (0.45, 5)
