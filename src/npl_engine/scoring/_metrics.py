"""Classification metrics for recovery probabilities."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

__all__ = ["calibration_error", "classification_metrics"]

FloatArray = npt.NDArray[np.float64]


def calibration_error(y: FloatArray, p: FloatArray, *, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of predicted probability.

    The weighted mean, over ``bins`` bins holding equally many loans, of
    |mean predicted − share realised|.
    """
    order = np.argsort(p, kind="stable")
    err = 0.0
    for chunk in np.array_split(order, bins):
        if chunk.size:
            err += chunk.size * abs(float(p[chunk].mean()) - float(y[chunk].mean()))
    return err / p.size


def classification_metrics(y: FloatArray, p: FloatArray) -> dict[str, float]:
    """AUC, Brier score, log loss and calibration error of probabilities ``p`` for labels ``y``."""
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    return {
        "auc": float(roc_auc_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "calibration_error": calibration_error(y, p),
    }
