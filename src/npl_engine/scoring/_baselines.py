"""Simpler baselines, evaluated on the same folds as LightGBM."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from npl_engine.features import FeatureMatrix

__all__ = ["baseline_oof_predictions"]

FloatArray = npt.NDArray[np.float64]


def _logistic(x: FeatureMatrix, seed: int) -> Pipeline:
    numeric = [i for i in range(len(x.names)) if i not in x.categorical]
    prep = ColumnTransformer(
        [
            (
                "numeric",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                list(x.categorical),
            ),
        ]
    )
    return make_pipeline(prep, LogisticRegression(C=1.0, max_iter=2000, random_state=seed))


def _forest(seed: int) -> Pipeline:
    return make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True),
        RandomForestClassifier(
            n_estimators=150,
            max_depth=12,
            min_samples_leaf=20,
            max_samples=0.5,
            n_jobs=-1,
            random_state=seed,
        ),
    )


def baseline_oof_predictions(
    x: FeatureMatrix, y: FloatArray, folds: npt.NDArray[np.int64], *, seed: int = 0
) -> dict[str, FloatArray]:
    """Out-of-fold probabilities of a logistic regression and a random forest.

    The logistic regression imputes medians with a missing-indicator per column, standardises,
    and one-hot encodes categories; the forest fills missing values with -1 and uses
    categorical codes as numbers. Both are fitted fold by fold on the LightGBM folds; a fold
    whose training part has one outcome only predicts that outcome's rate.
    """
    out = {}
    for name, make in (
        ("logistic_regression", lambda: _logistic(x, seed)),
        ("random_forest", lambda: _forest(seed)),
    ):
        oof = np.empty(y.size)
        for f in np.unique(folds):
            train, valid = folds != f, folds == f
            if np.unique(y[train]).size < 2:  # one outcome only: nothing to separate
                oof[valid] = y[train].mean()
                continue
            model = make().fit(x.values[train], y[train])  # type: ignore[no-untyped-call]
            oof[valid] = model.predict_proba(x.values[valid])[:, 1]
        out[name] = oof
    return out
