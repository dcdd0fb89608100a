"""The one place the engine calls DiCE (dice-ml 0.12): candidate levers for one loan.

DiCE sees a small frame of lever columns only (the action, the settlement discount and, for
borrower-side what-ifs, income, debt-to-income and liquid assets); everything else about the
loan is held inside the classifier it is given, so immutable facts cannot move and DiCE never
meets the missing values it refuses. The path is fixed and tested (``tests/counterfactuals``):

- ``method="random"`` with ``desired_class=1`` passed explicitly: ``"opposite"`` is slow and
  fails on numpy >= 2.4; the genetic method's initialisation loops until it finds valid
  points, which never ends when none exists; the KD-tree is slow and ``from_json`` fails on
  pandas 3. Nothing here uses them.
- The classifier reports a rescaled probability whose 0.5 is the engine's target: DiCE's
  random method silently raises a stopping threshold below 0.5 to 0.75, so the target is
  always passed to it as 0.5.
- DiCE's post-hoc sparsity pass is off (it moves a lever towards the loan's value, which can
  leave the permitted range); the engine does its own (``_search.py``).
- DiCE draws from the global ``random`` and ``numpy.random`` states: both are seeded before
  and restored after each call, so a seed gives the same candidates and the caller's random
  state is untouched. Its ``print`` and ``tqdm`` output are swallowed.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["OUTCOME", "LeverSpace", "dice_candidates", "to_dice_scale"]

FloatArray = npt.NDArray[np.float64]
#: Name of DiCE's outcome column.
OUTCOME = "recovers"


def to_dice_scale(p: FloatArray, target: float) -> FloatArray:
    """Map probabilities monotonically so that ``target`` lands on 0.5.

    ``p >= target`` exactly when the result is ``>= 0.5``: piecewise linear, 0 → 0,
    target → 0.5, 1 → 1.
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    low = 0.5 * p / target
    high = 0.5 + 0.5 * (p - target) / (1.0 - target)
    out: FloatArray = np.where(p >= target, high, low)
    return out


@dataclass(frozen=True, slots=True)
class LeverSpace:
    """The levers DiCE may move and where.

    Parameters
    ----------
    categorical
        Lever name → allowed values (the loan's own value need not be one of them).
    continuous
        Lever name → (low, high) permitted range, inclusive.
    precision
        Decimals of each continuous lever.
    """

    categorical: Mapping[str, tuple[str, ...]]
    continuous: Mapping[str, tuple[float, float]]
    precision: Mapping[str, int]

    @property
    def names(self) -> tuple[str, ...]:
        """Every lever, categorical first."""
        return (*self.categorical, *self.continuous)


class _LeverClassifier:
    """What DiCE calls: class probabilities of lever frames, for one loan."""

    def __init__(self, score: Callable[[pd.DataFrame], FloatArray], target: float) -> None:
        self._score = score
        self._target = target

    def predict_proba(self, frame: pd.DataFrame) -> FloatArray:
        s = to_dice_scale(self._score(frame), self._target)
        out: FloatArray = np.column_stack([1.0 - s, s])
        return out

    def predict(self, frame: pd.DataFrame) -> npt.NDArray[np.int64]:
        out: npt.NDArray[np.int64] = (self.predict_proba(frame)[:, 1] >= 0.5).astype(np.int64)
        return out


@contextlib.contextmanager
def _seeded_and_quiet(seed: int) -> Iterator[None]:
    """Seed the global random states DiCE uses, silence it, restore everything after."""
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    np.random.seed(seed)  # noqa: NPY002 - DiCE 0.12 samples from the global state
    random.seed(seed)
    try:
        # DiCE prints "No Counterfactuals found" and draws a tqdm bar on stderr per call
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def dice_data(background: pd.DataFrame, space: LeverSpace) -> Any:
    """DiCE's data interface over a small background frame of lever columns and outcome."""
    import dice_ml  # noqa: PLC0415 - about a second to import; only counterfactuals need it

    continuous = list(space.continuous)
    return dice_ml.Data(
        dataframe=background[[*space.names, OUTCOME]],
        continuous_features=continuous,
        outcome_name=OUTCOME,
        continuous_features_precision={k: space.precision[k] for k in continuous},
    )


def dice_candidates(
    data: Any,
    space: LeverSpace,
    query: pd.DataFrame,
    score: Callable[[pd.DataFrame], FloatArray],
    *,
    target: float,
    features_to_vary: Sequence[str],
    total: int,
    sample_size: int,
    seed: int,
) -> pd.DataFrame:
    """Candidate lever settings for one loan that DiCE believes reach ``target``.

    Parameters
    ----------
    data
        From :func:`dice_data` (built once per run).
    space
        Levers and their permitted values.
    query
        One row: the loan's current lever values (columns ``space.names``, no missing value).
    score
        The engine's probability of recovery for a frame of lever values of this loan.
    target
        Probability to reach.
    features_to_vary
        Levers DiCE may change (the others keep the query's value).
    total
        Candidates asked for.
    sample_size
        Random draws per round of DiCE's random method.
    seed
        Seed of DiCE's draws.

    Returns
    -------
    pandas.DataFrame
        Up to ``total`` rows of lever values (columns ``space.names``); empty if none found.
        DiCE's own probabilities are dropped: the caller re-scores every row.
    """
    import dice_ml  # noqa: PLC0415 - see dice_data
    from raiutils.exceptions import UserConfigValidationException  # noqa: PLC0415

    model = dice_ml.Model(
        model=_LeverClassifier(score, target), backend="sklearn", model_type="classifier"
    )
    explainer = dice_ml.Dice(data, model, method="random")
    permitted: dict[str, list[Any]] = {k: list(v) for k, v in space.categorical.items()}
    permitted |= {k: [lo, hi] for k, (lo, hi) in space.continuous.items()}
    with _seeded_and_quiet(seed):
        try:
            found = explainer.generate_counterfactuals(
                query[list(space.names)],
                total_CFs=total,
                desired_class=1,
                features_to_vary=list(features_to_vary),
                permitted_range={k: v for k, v in permitted.items() if k in features_to_vary},
                stopping_threshold=0.5,
                posthoc_sparsity_param=None,
                sample_size=sample_size,
                random_seed=seed,
            )
        except UserConfigValidationException:  # DiCE's way of saying it found none
            return pd.DataFrame(columns=list(space.names))
    frame = found.cf_examples_list[0].final_cfs_df
    if frame is None or len(frame) == 0:
        return pd.DataFrame(columns=list(space.names))
    out: pd.DataFrame = frame[list(space.names)].reset_index(drop=True)
    return out
