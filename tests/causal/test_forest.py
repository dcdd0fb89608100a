"""The compiled causal forest gives EconML's per-loan effects and intervals (issue 18)."""

from __future__ import annotations

import copy
import re
import threading
import warnings
from pathlib import Path

import econml
import joblib
import numpy as np
import pytest

from npl_engine.causal import MODEL_FILE, ActionEffectModel
from npl_engine.causal._forest import (
    TESTED_ECONML_VERSIONS,
    CompiledForest,
    _each_chunk,
    compiled_forest,
)
from npl_engine.data.simulator import SimulationSettings, simulate
from npl_engine.errors import NplError

Array = np.ndarray

#: Relative tolerance against EconML. Bounds also get 1e-12 absolute: a bound near zero is a
#: difference of two numbers of the size of the interval's half-width, where the two codes'
#: different order of a few sums moves the last bit (seen: 8e-16 absolute).
RTOL = 1e-9
ATOL_BOUND = 1e-12


@pytest.fixture(scope="module")
def model() -> ActionEffectModel:
    """A small effect model (four actions, 40 trees) fitted on a 3,000-loan simulator book."""
    book = simulate(SimulationSettings(n_loans=3000, seed=11, kind="book")).dataset()
    fitted = ActionEffectModel(n_estimators=30, n_trees=40, n_jobs=1).fit(book)
    assert len(fitted.actions_) == 4
    return fitted


@pytest.fixture(scope="module")
def tape_x(model: ActionEffectModel) -> Array:
    """Covariates of a 4,000-loan tape, with missing values, filled as the model feeds them."""
    tape = simulate(SimulationSettings(n_loans=4000, seed=12, kind="tape")).dataset()
    raw = model.covariates(tape.loans)
    assert np.isnan(raw).any(), "the check should cover filled missing values"
    return model.estimator_._filled(raw)


def _econml(model: ActionEffectModel, x: Array, alpha: float) -> tuple[Array, Array, Array]:
    k = len(model.actions_)
    inference = model.estimator_.model_.const_marginal_effect_inference(x)
    low, high = inference.conf_int(alpha=alpha)
    return tuple(np.reshape(v, (-1, k)) for v in (inference.point_estimate, low, high))  # type: ignore[return-value]


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_effect_and_interval_equal_econml(
    model: ActionEffectModel, tape_x: Array, alpha: float
) -> None:
    """Point estimate and conf_int equal const_marginal_effect_inference's to 1e-9 relative."""
    effect, low, high = CompiledForest.from_econml(model.estimator_.model_).effect_and_interval(
        tape_x, alpha=alpha
    )
    want_effect, want_low, want_high = _econml(model, tape_x, alpha)
    np.testing.assert_allclose(effect, want_effect, rtol=RTOL, atol=0)
    np.testing.assert_allclose(low, want_low, rtol=RTOL, atol=ATOL_BOUND)
    np.testing.assert_allclose(high, want_high, rtol=RTOL, atol=ATOL_BOUND)
    assert (high - low).min() > 0, "intervals should have width, or the check says little"


def test_effect_equals_const_marginal_effect(model: ActionEffectModel, tape_x: Array) -> None:
    """The point estimate alone equals EconML's const_marginal_effect."""
    effect = CompiledForest.from_econml(model.estimator_.model_).effect(tape_x)
    want = np.reshape(model.estimator_.model_.const_marginal_effect(tape_x), effect.shape)
    np.testing.assert_allclose(effect, want, rtol=RTOL, atol=0)


def test_chunks_do_not_change_results(
    model: ActionEffectModel, tape_x: Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows predicted in chunks of 1,000 give what one chunk gives (per-row arithmetic)."""
    compiled = CompiledForest.from_econml(model.estimator_.model_)
    whole = compiled.effect_and_interval(tape_x)
    monkeypatch.setattr("npl_engine.causal._forest._CHUNK", 1000)
    for got, want in zip(compiled.effect_and_interval(tape_x), whole, strict=True):
        np.testing.assert_array_equal(got, want)


def test_predictions_reuse_the_same_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two predictions run on the same two threads, not fresh ones (issue 18).

    Fresh threads per call grew the process by about 1 KB per loan predicted (OpenBLAS and
    the allocator keep buffers per thread), which a tape predicted in chunks piled up.
    """
    monkeypatch.setattr("npl_engine.causal._forest._CHUNK", 10)
    monkeypatch.setattr("npl_engine.causal._forest.numba.get_num_threads", lambda: 2)
    # Each chunk waits for a second thread: both threads run chunks in every call, whichever
    # the scheduler would have picked (one idle pool thread could otherwise take them all).
    both = threading.Barrier(2, timeout=30)
    seen: list[set[threading.Thread]] = []
    for _ in range(2):
        used: set[threading.Thread] = set()

        def run(_rows: slice, used: set[threading.Thread] = used) -> None:
            used.add(threading.current_thread())
            both.wait()

        _each_chunk(100, run)
        seen.append(used)
    assert threading.main_thread() not in seen[0]
    assert seen[1] <= seen[0]


def test_model_methods_use_the_compiled_forest(model: ActionEffectModel, tape_x: Array) -> None:
    """ActionEffectModel's effect, effect_interval and effect_and_interval give EconML's numbers."""
    x = tape_x[:500]
    want_effect, want_low, want_high = _econml(model, x, 0.05)
    effect, low, high = model.effect_and_interval(x)
    assert compiled_forest(model.estimator_.model_) is compiled_forest(model.estimator_.model_), (
        "built once"
    )
    np.testing.assert_allclose(effect, want_effect, rtol=RTOL, atol=0)
    np.testing.assert_allclose(model.effect(x), want_effect, rtol=RTOL, atol=0)
    low2, high2 = model.effect_interval(x)
    for got, want in ((low, want_low), (high, want_high), (low2, want_low), (high2, want_high)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL_BOUND)
    assert model.effect_and_interval(x[:0])[0].shape == (0, len(model.actions_))


def test_saved_model_holds_no_compiled_forest(
    model: ActionEffectModel, tape_x: Array, tmp_path: Path
) -> None:
    """The compiled arrays are not saved; a loaded model compiles its own and predicts the same."""
    before = model.effect_and_interval(tape_x[:300])
    model.save(tmp_path)
    state = joblib.load(tmp_path / MODEL_FILE)
    assert not any(isinstance(v, CompiledForest) for v in state.values())
    assert not any(isinstance(v, CompiledForest) for v in vars(state["estimator_"]).values())
    loaded = ActionEffectModel.load(tmp_path)
    for got, want in zip(loaded.effect_and_interval(tape_x[:300]), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_untested_econml_version_is_refused(
    model: ActionEffectModel, tape_x: Array, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under another EconML version the compiler refuses, and the model warns and uses EconML."""
    monkeypatch.setattr(econml, "__version__", "0.99.0")
    with pytest.raises(NplError, match=re.escape("not 0.99.0")):
        CompiledForest.from_econml(model.estimator_.model_)
    fresh = copy.copy(model)
    fresh.estimator_ = copy.copy(model.estimator_)
    fresh.estimator_.model_ = copy.deepcopy(model.estimator_.model_)  # a forest not compiled yet
    x = tape_x[:300]
    with pytest.warns(UserWarning, match="EconML's own"):
        effect, low, high = fresh.effect_and_interval(x)
    assert compiled_forest(fresh.estimator_.model_) is None
    want_effect, want_low, want_high = _econml(model, x, 0.05)
    np.testing.assert_array_equal(effect, want_effect)
    np.testing.assert_array_equal(low, want_low)
    np.testing.assert_array_equal(high, want_high)


def test_installed_econml_is_the_tested_one() -> None:
    """The installed and locked EconML are versions the compiled forest was checked with."""
    assert econml.__version__ in TESTED_ECONML_VERSIONS
    lock = (Path(__file__).parents[2] / "requirements.lock").read_text()
    locked = re.search(r"^econml==(\S+)$", lock, flags=re.MULTILINE)
    assert locked is not None
    assert locked.group(1) in TESTED_ECONML_VERSIONS


def test_bad_input_is_refused(model: ActionEffectModel, tape_x: Array) -> None:
    """Wrong column count or a missing value (EconML refuses both) raise ValueError."""
    compiled = CompiledForest.from_econml(model.estimator_.model_)
    with pytest.raises(ValueError, match="columns"):
        compiled.effect(tape_x[:, :-1])
    bad = tape_x[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="missing"):
        compiled.effect_and_interval(bad)


def test_other_estimators_are_refused() -> None:
    """Anything but a CausalForestDML is refused, and left to EconML without a warning."""
    with pytest.raises(NplError, match="CausalForestDML"):
        CompiledForest.from_econml(object())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compiled_forest(object()) is None
