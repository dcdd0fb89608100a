import numpy as np
import pytest

from npl_engine.causal._refute import RefutationSettings, refute_action


def _linear(n: int, effect: float, seed: int = 1):  # type: ignore[no-untyped-def]
    """Confounded linear data: x0 drives both the action and the outcome."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    t = rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] - 0.5 * x[:, 1])))
    y = effect * t + x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    return x, t, y


@pytest.fixture(scope="module")
def known() -> dict:  # type: ignore[type-arg]
    """Refutations of a true effect of 0.3 (n = 3,000)."""
    x, t, y = _linear(3000, 0.3)
    return refute_action(x, t, y, RefutationSettings(num_simulations=10))


def test_estimate_covers_true_effect(known: dict) -> None:  # type: ignore[type-arg]
    """The back-door linear estimate is within 3 standard errors of 0.3."""
    assert abs(known["estimate"] - 0.3) <= 3 * known["standard_error"]


def test_placebo_effect_vanishes(known: dict) -> None:  # type: ignore[type-arg]
    """A permuted action has no effect: the placebo passes (|effect| within its noise)."""
    assert known["placebo"]["passed"]
    assert abs(known["placebo"]["new_effect"]) < 0.05


def test_random_common_cause_does_not_move(known: dict) -> None:  # type: ignore[type-arg]
    """An independent random covariate moves the estimate by far less than its error."""
    assert known["random_common_cause"]["passed"]
    assert abs(known["random_common_cause"]["shift"]) < 0.01


def test_data_subset_is_stable(known: dict) -> None:  # type: ignore[type-arg]
    """80 % subsets give on average the full-data estimate."""
    assert known["data_subset"]["passed"]


def test_sensitivity_passes_for_a_real_effect(known: dict) -> None:  # type: ignore[type-arg]
    """A 0.3 effect needs a hidden confounder with partial R2 above 2 % to explain it away."""
    assert known["sensitivity"]["passed"]
    assert known["sensitivity"]["robustness_value"] > 0.05


def test_sensitivity_fails_for_no_effect() -> None:
    """With no true effect the robustness value is tiny and the sensitivity check fails."""
    x, t, y = _linear(3000, 0.0, seed=2)
    result = refute_action(x, t, y, RefutationSettings(num_simulations=5))
    assert not result["sensitivity"]["passed"]
    assert not result["passed"]
