import numpy as np
import pytest

from npl_engine.causal._refute import RefutationSettings, refute_action, refute_effects


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


def test_refuting_several_actions_in_parallel_gives_the_serial_results() -> None:
    """refute_effects (worker processes) returns, per action, what refute_action returns."""
    x, t, y = _linear(1500, 0.3, seed=3)
    rng = np.random.default_rng(4)
    treatment = np.where(t, rng.choice(["letter", "call"], size=t.size), "none")
    settings = RefutationSettings(num_simulations=3)
    together = refute_effects(x, treatment, y, ("letter", "call"), settings)
    for action in ("letter", "call"):
        rows = (treatment == action) | (treatment == "none")
        alone = refute_action(x[rows], treatment[rows] == action, y[rows], settings)
        # the estimand's printout names DoWhy's internal variables, which vary by process
        together[action].pop("estimand_detail")
        alone.pop("estimand_detail")
        assert _rounded(together[action]) == _rounded(alone)


def _rounded(value: object) -> object:
    """Floats to 9 significant digits (processes may differ in the last bits of BLAS sums)."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value
