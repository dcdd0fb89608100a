"""Compiled boosters (lleaves' code generator) predict what LightGBM predicts, to the bit."""

from __future__ import annotations

import re
import warnings
import weakref
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from polars.testing import assert_frame_equal

import _small_model
from npl_engine.features import FeatureMatrix
from npl_engine.scoring import RecoveryModel, _compiled
from npl_engine.scoring._compiled import (
    TESTED_LLEAVES_VERSIONS,
    compile_booster,
    predict_booster,
    predict_boosters,
)


def _boosters(model: RecoveryModel) -> dict[str, lgb.Booster]:
    col = model.collections_
    return {
        "classifier": model.classifier_.booster_,
        **{f"{c}_total": b for c, b in col.totals_.items()},
        **{f"{c}_{k}": b for (c, k), b in col.boosters_.items()},
    }


def _awkward_rows(x: FeatureMatrix) -> np.ndarray:
    """The tape's rows, then copies with the inputs where tree rules differ most.

    NaN everywhere a column can be missing, unseen and negative category codes, a fractional
    code, zeros and values LightGBM reads as zero (1e-40): every branch of LightGBM's
    NumericalDecision and CategoricalDecision.
    """
    v = x.values
    rng = np.random.default_rng(0)
    cat = list(x.categorical)
    variants = [v]
    nan = v.copy()
    nan[rng.random(v.shape) < 0.3] = np.nan
    variants.append(nan)
    codes = v.copy()
    odd_codes = [-1.0, 0.0, 1.5, 2.0, 99.0, 1e6, np.nan]
    codes[:, cat] = rng.choice(odd_codes, size=(v.shape[0], len(cat)))
    variants.append(codes)
    tiny = v.copy()
    numeric = [j for j in range(v.shape[1]) if j not in cat]
    mask = rng.random((v.shape[0], len(numeric))) < 0.3
    zeros = rng.choice([0.0, 1e-40, -1e-40, -0.0], mask.shape)
    tiny[:, numeric] = np.where(mask, zeros, v[:, numeric])
    variants.append(tiny)
    return np.vstack(variants)


def test_compiled_boosters_predict_what_lightgbm_predicts(tmp_path: Path) -> None:
    """Every booster of the model, compiled, agrees with Booster.predict to 1e-9 on odd inputs."""
    model = _small_model.trained_model()
    _, x = model.features(_small_model.tape().loans.lazy())
    rows = _awkward_rows(x)
    for name, booster in _boosters(model).items():
        compiled = compile_booster(booster, cache=tmp_path)
        want = booster.predict(rows, num_iteration=booster.best_iteration)
        # The trees are summed in LightGBM's order: equal to the bit.
        np.testing.assert_array_equal(compiled.predict(rows), want, err_msg=name)
        # Fortran order and a slice of rows are read as LightGBM reads them.
        np.testing.assert_array_equal(compiled.predict(np.asfortranarray(rows[::3])), want[::3])
    assert compiled.predict(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="columns"):
        compiled.predict(rows[:, :5])


def test_compiled_code_is_cached_by_the_boosters_text(tmp_path: Path) -> None:
    """A booster is compiled once: the second time its code is read from the cache folder."""
    booster = _small_model.trained_model().classifier_.booster_
    first = compile_booster(booster, cache=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1
    assert files[0].suffix == ".o"
    before = files[0].stat().st_mtime_ns
    second = compile_booster(booster, cache=tmp_path)
    assert sorted(tmp_path.iterdir()) == files
    assert files[0].stat().st_mtime_ns == before
    _, x = _small_model.trained_model().features(_small_model.tape().loans.lazy())
    np.testing.assert_array_equal(second.predict(x.values), first.predict(x.values))
    assert second.n_trees == booster.num_trees()


def test_scores_and_curves_equal_lightgbms(monkeypatch: pytest.MonkeyPatch) -> None:
    """RecoveryModel.score with compiled boosters gives LightGBM's scores and curves, exactly.

    A tape scored in chunks or partitions takes LightGBM's or the compiled path by the size of
    each piece, so both must give the same rows bit for bit.
    """
    model = _small_model.trained_model()
    loans = _small_model.tape().loans
    monkeypatch.setattr(_compiled, "MIN_ROWS", 10**12)  # LightGBM throughout
    want = model.score(loans)
    monkeypatch.setattr(_compiled, "MIN_ROWS", 1)
    monkeypatch.setattr(_compiled, "_COMPILED", weakref.WeakKeyDictionary())
    got = model.score(loans)
    compiled = list(_compiled._COMPILED.values())
    assert all(isinstance(c, _compiled.CompiledBooster) for c in compiled)
    assert len(compiled) == len(_boosters(model))
    assert_frame_equal(got.scores, want.scores, check_exact=True)
    assert_frame_equal(got.curves, want.curves, check_exact=True)


def test_boosters_predicted_together_equal_each_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """predict_boosters gives each booster's LightGBM predictions, to the bit, in order.

    Enough rows for several row ranges per booster, and one booster that cannot be compiled
    (it falls back to LightGBM within the same call).
    """
    model = _small_model.trained_model()
    _, x = model.features(_small_model.tape().loans.lazy())
    rows = np.tile(_awkward_rows(x), (max(1, -(-25_000 // (4 * x.values.shape[0]))), 1))
    assert rows.shape[0] >= 20_000
    boosters = list(_boosters(model).values())
    monkeypatch.setattr(_compiled, "_COMPILED", weakref.WeakKeyDictionary())
    _compiled._COMPILED[boosters[1]] = None  # as if compiling it had failed
    got = predict_boosters(boosters, rows)
    assert len(got) == len(boosters)
    for booster, predicted in zip(boosters, got, strict=True):
        want = booster.predict(rows, num_iteration=booster.best_iteration)
        np.testing.assert_array_equal(predicted, want)
    assert isinstance(_compiled._COMPILED[boosters[0]], _compiled.CompiledBooster)
    assert predict_boosters([], rows) == []


def test_few_rows_are_left_to_lightgbm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below MIN_ROWS nothing is compiled (the service scores one loan at a time)."""
    model = _small_model.trained_model()
    monkeypatch.setattr(_compiled, "_COMPILED", weakref.WeakKeyDictionary())
    _, x = model.features(_small_model.tape().loans.lazy())
    booster = model.classifier_.booster_
    got = predict_booster(booster, x.values[: _compiled.MIN_ROWS - 1])
    assert len(_compiled._COMPILED) == 0
    np.testing.assert_array_equal(got, booster.predict(x.values[: _compiled.MIN_ROWS - 1]))


def test_untested_lleaves_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under another lleaves version compiling refuses; prediction warns once and uses LightGBM."""
    model = _small_model.trained_model()
    monkeypatch.setattr(_compiled, "_lleaves_version", lambda: "9.9.9")
    monkeypatch.setattr(_compiled, "_COMPILED", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_compiled, "_WARNED", set())
    monkeypatch.setattr(_compiled, "MIN_ROWS", 1)
    booster = model.classifier_.booster_
    with pytest.raises(RuntimeError, match=re.escape("lleaves 9.9.9 is not a version")):
        compile_booster(booster)
    _, x = model.features(_small_model.tape().loans.lazy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = predict_booster(booster, x.values)
        predict_booster(model.collections_.totals_["borrower"], x.values)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1  # one line, once per reason
    assert "lleaves 9.9.9" in messages[0]
    assert "using LightGBM's predict" in messages[0]
    assert "\n" not in messages[0]
    np.testing.assert_array_equal(got, booster.predict(x.values))


def test_installed_lleaves_is_the_tested_one() -> None:
    """The installed and locked lleaves are versions the compiled prediction was checked with."""
    assert _compiled._lleaves_version() in TESTED_LLEAVES_VERSIONS
    lock = (Path(__file__).parents[2] / "requirements.lock").read_text()
    locked = re.search(r"^lleaves==(\S+)$", lock, flags=re.MULTILINE)
    assert locked is not None
    assert locked.group(1) in TESTED_LLEAVES_VERSIONS
