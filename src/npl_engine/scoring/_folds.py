"""Cross-validation folds split by cut-off date."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["cutoff_folds", "loan_folds"]


def cutoff_folds(cutoff_month: npt.NDArray[np.int64], n_folds: int) -> npt.NDArray[np.int64]:
    """Fold of each loan: contiguous blocks of cut-off months holding about equal loan counts.

    Loans sharing a cut-off month always fall in the same fold, so a model is never validated
    on loans whose cut-off it saw in training, and later folds hold later cut-offs.

    Parameters
    ----------
    cutoff_month
        Cut-off as a month number (e.g. year × 12 + month) per loan.
    n_folds
        Number of folds (fewer if there are fewer distinct cut-off months).
    """
    months, counts = np.unique(cutoff_month, return_counts=True)
    k = min(n_folds, months.size)
    if k < 2:
        msg = "cross-validation by cut-off date needs loans with at least two cut-off months"
        raise ValueError(msg)
    total = counts.sum()
    block = np.empty(months.size, dtype=np.int64)
    fold, filled = 0, 0
    for i, count in enumerate(counts):  # few distinct months: a plain loop is clearest
        block[i] = fold
        filled += count
        months_left, folds_left = months.size - i - 1, k - fold - 1
        # Move on when this fold has its share, or when every later fold needs a month now.
        if folds_left > 0 and (filled >= total * (fold + 1) / k or months_left == folds_left):
            fold += 1
    out: npt.NDArray[np.int64] = block[np.searchsorted(months, cutoff_month)]
    return out


def loan_folds(n_loans: int, n_folds: int, *, seed: int = 0) -> npt.NDArray[np.int64]:
    """Fold of each loan drawn at random, about equal sizes: for a book with one cut-off month.

    Parameters
    ----------
    n_loans
        Number of loans.
    n_folds
        Number of folds (fewer if there are fewer loans).
    seed
        Seed of the draw.
    """
    k = max(1, min(n_folds, n_loans))
    out: npt.NDArray[np.int64] = np.random.default_rng(seed).permutation(n_loans) % k
    return out
