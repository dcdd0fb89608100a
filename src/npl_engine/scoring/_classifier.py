"""The recovery classifier: LightGBM tuned by cross-validation, calibrated out of fold."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from npl_engine.features import FeatureMatrix
from npl_engine.scoring._compiled import predict_booster
from npl_engine.scoring._metrics import classification_metrics

__all__ = ["DEFAULT_GRID", "RecoveryClassifier"]

FloatArray = npt.NDArray[np.float64]

#: Candidate settings tried by cross-validation (the rest of the parameters are fixed).
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"num_leaves": 15, "min_data_in_leaf": 50},
    {"num_leaves": 31, "min_data_in_leaf": 100},
    {"num_leaves": 63, "min_data_in_leaf": 200},
)

_BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}


def lgb_dataset(x: FeatureMatrix, y: FloatArray, weight: FloatArray | None = None) -> lgb.Dataset:
    """A LightGBM dataset with the categorical columns declared."""
    return lgb.Dataset(
        x.values,
        label=y,
        weight=weight,
        feature_name=list(x.names),
        categorical_feature=list(x.categorical),
        free_raw_data=False,
    )


def subset(x: FeatureMatrix, rows: npt.NDArray[Any]) -> FeatureMatrix:
    """Rows of a feature matrix."""
    return FeatureMatrix(values=x.values[rows], names=x.names, categorical=x.categorical)


@dataclass(kw_only=True)
class RecoveryClassifier:
    """Calibrated probability of recovery.

    Parameters
    ----------
    grid
        Candidate LightGBM settings; the one with the lowest out-of-fold log loss wins.
    max_rounds, early_stopping_rounds
        Boosting rounds and patience on each fold's validation part.
    seed
        Seed of LightGBM's bagging and feature sampling.

    Attributes
    ----------
    booster_
        LightGBM model refitted on all loans with the tuned settings.
    calibrator_
        Isotonic map from the booster's raw probability to a calibrated one, fitted on the
        out-of-fold predictions of the tuned settings.
    params_, n_rounds_
        The tuned settings and the number of rounds (mean best iteration over folds).
    cv_results_
        Per candidate: settings, out-of-fold log loss, best iterations.
    oof_raw_, oof_calibrated_
        Out-of-fold predictions of the tuned settings before and after calibration (the
        calibrated ones are in-sample for the calibrator, so slightly optimistic).
    """

    grid: tuple[dict[str, Any], ...] = DEFAULT_GRID
    max_rounds: int = 1000
    early_stopping_rounds: int = 50
    seed: int = 0
    booster_: lgb.Booster = field(init=False, repr=False)
    calibrator_: IsotonicRegression = field(init=False, repr=False)
    params_: dict[str, Any] = field(init=False, repr=False)
    n_rounds_: int = field(init=False, repr=False)
    cv_results_: list[dict[str, Any]] = field(init=False, repr=False)
    oof_raw_: FloatArray = field(init=False, repr=False)

    def fit(
        self, x: FeatureMatrix, y: FloatArray, folds: npt.NDArray[np.int64]
    ) -> RecoveryClassifier:
        """Tune on ``folds``, calibrate out of fold, refit on everything."""
        results = []
        best: tuple[float, dict[str, Any], FloatArray, list[int]] | None = None
        for candidate in self.grid:
            params = {**_BASE_PARAMS, **candidate, "seed": self.seed}
            oof = np.empty(y.size)
            iters = []
            for f in np.unique(folds):
                train, valid = folds != f, folds == f
                booster = lgb.train(
                    params,
                    lgb_dataset(subset(x, train), y[train]),
                    num_boost_round=self.max_rounds,
                    valid_sets=[lgb_dataset(subset(x, valid), y[valid])],
                    callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
                )
                oof[valid] = booster.predict(x.values[valid], num_iteration=booster.best_iteration)
                iters.append(int(booster.best_iteration))
            loss = classification_metrics(y, oof)["log_loss"]
            results.append({"params": candidate, "oof_log_loss": loss, "best_iterations": iters})
            if best is None or loss < best[0]:
                best = (loss, params, oof, iters)
        assert best is not None
        _, self.params_, self.oof_raw_, iters = best
        self.cv_results_ = results
        self.n_rounds_ = max(1, int(np.mean(iters)))
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        self.calibrator_.fit(self.oof_raw_, y)
        self.booster_ = lgb.train(self.params_, lgb_dataset(x, y), num_boost_round=self.n_rounds_)
        return self

    @property
    def oof_calibrated_(self) -> FloatArray:
        """Out-of-fold predictions after calibration."""
        out: FloatArray = self.calibrator_.predict(self.oof_raw_)
        return out

    def predict_raw(self, x: FeatureMatrix) -> FloatArray:
        """The booster's uncalibrated probability (compiled for large inputs, to the bit)."""
        return predict_booster(self.booster_, x.values)

    def predict_proba(self, x: FeatureMatrix) -> FloatArray:
        """Calibrated probability of recovery."""
        out: FloatArray = self.calibrator_.predict(self.predict_raw(x))
        return out
