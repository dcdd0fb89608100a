"""Per-loan (conditional) effect estimators behind one small interface.

:class:`~npl_engine.causal.ActionEffectModel` gets the average effects from its own doubly
robust learner and asks a :class:`CateEstimator` for each loan's effect and its interval. Any
object with ``fit`` / ``effect`` / ``effect_interval`` (the EconML ``BaseCateEstimator`` verbs)
will do: a new estimator is a new class, not an edit of the effect model.

- :class:`CausalForestEstimator` (the default): EconML's :class:`econml.dml.CausalForestDML`.
- :class:`DRLearnerEstimator`: EconML's :class:`econml.dr.ForestDRLearner`, an honest
  regression forest of the doubly robust pseudo-outcomes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt
from econml.dml import CausalForestDML
from econml.dr import ForestDRLearner
from lightgbm import LGBMClassifier, LGBMRegressor

from npl_engine.base import check_is_fitted
from npl_engine.causal._forest import compiled_forest

__all__ = ["CateEstimator", "CausalForestEstimator", "DRLearnerEstimator"]

Array = npt.NDArray[np.float64]

#: Rows per prediction call of a forest (see _by_block).
_BLOCK = 20_000


@runtime_checkable
class CateEstimator(Protocol):
    """What :class:`~npl_engine.causal.ActionEffectModel` needs of a per-loan effect estimator.

    ``arms`` passed to :meth:`fit` holds the control (``none``) first, then the actions; the
    columns of :meth:`effect` and :meth:`effect_interval` are the actions in that order, each
    the effect of the action against the control, in the outcome's unit.

    Optional, used when present:

    - ``effect_and_interval(X, *, alpha) -> (effect, low, high)``: both at once, when that is
      cheaper than :meth:`effect` then :meth:`effect_interval` (a forest walks its trees once);
    - ``for_validation() -> CateEstimator``: an unfitted estimator, called on the fitted one,
      that the out-of-sample validation fits on each half of the loans (default: a copy of the
      estimator as it was given, before fitting);
    - ``name`` and ``description`` (str): how ``effects.json`` names the estimator (default:
      the class name).

    Notes
    -----
    ``X`` may hold NaN (missing covariates): an estimator whose models take none must fill
    them. Fitted estimators are saved inside the effect model with joblib, so they must pickle.
    """

    def fit(
        self,
        y: Array,
        treatment: npt.NDArray[np.str_],
        X: Array,  # noqa: N803 - the usual name of a covariate matrix
        *,
        arms: tuple[str, ...],
    ) -> Self:
        """Learn per-loan effects from outcomes, treatment names and covariates."""
        ...

    def effect(self, X: Array) -> Array:  # noqa: N803
        """(n, actions) effect of each action against the control per row of X."""
        ...

    def effect_interval(self, X: Array, *, alpha: float = 0.05) -> tuple[Array, Array]:  # noqa: N803
        """Pointwise (1 - alpha) interval of :meth:`effect`: (low, high), each (n, actions)."""
        ...


def _lgbm_params(*, n_estimators: int, seed: int, n_jobs: int) -> dict[str, Any]:
    """Settings of every LightGBM nuisance model (small leaves of at least 50 loans)."""
    return {
        "n_estimators": n_estimators,
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_child_samples": 50,
        "subsample": 0.8,
        "subsample_freq": 1,
        "colsample_bytree": 0.8,
        "random_state": seed,
        "n_jobs": n_jobs,
        "verbose": -1,
    }


def _missing_fill(X: Array) -> Array:  # noqa: N803
    """Per column, a value below everything observed: a forest's stand-in for missing.

    EconML's forests take no NaN; a value below the observed range lets their splits separate
    missing from observed values, as LightGBM does natively.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-missing columns
        low = np.nanmin(X, axis=0)
    return np.where(np.isfinite(low), low - 1.0, -1.0)


def _min_leaf(n: int) -> int:
    """Loans per leaf of an effect forest: n / 400 within [5, 50].

    Each leaf estimates a local effect from its loans, so it needs enough of them in each
    arm; on a small sample, leaves of 50 would leave the forest almost constant.
    """
    return int(np.clip(n // 400, 5, 50))


class _PerArmRegressor:
    """Outcome model of a DR learner: one LightGBM regressor per arm (a T-learner).

    EconML passes the covariates followed by the one-hot treatment (control = all zeros); a
    single tree model on that matrix tends to ignore the few treatment columns and so to
    under-fit the effect heterogeneity, which leaves more work to the propensity weights.
    """

    def __init__(self, *, n_treatments: int, params: dict[str, Any] | None = None) -> None:
        self.n_treatments = n_treatments
        self.params = params

    def get_params(self, deep: bool = True) -> dict[str, Any]:  # noqa: ARG002 - sklearn API
        """Parameters, for sklearn's ``clone``."""
        return {"n_treatments": self.n_treatments, "params": self.params}

    def set_params(self, **params: Any) -> _PerArmRegressor:
        """Set parameters, for sklearn's ``clone``."""
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def _split(self, XT: Array) -> tuple[Array, npt.NDArray[np.int64]]:  # noqa: N803
        k = self.n_treatments
        onehot = XT[:, -k:]
        arm = np.where(onehot.max(axis=1) > 0.5, onehot.argmax(axis=1) + 1, 0)
        return XT[:, :-k], arm.astype(np.int64)

    def fit(self, XT: Array, y: Array, **_fit_params: Any) -> _PerArmRegressor:  # noqa: N803
        """Fit one regressor per arm on the rows of that arm."""
        X, arm = self._split(np.asarray(XT, dtype=np.float64))  # noqa: N806
        y = np.asarray(y, dtype=np.float64).ravel()
        self.models_ = [
            LGBMRegressor(**(self.params or {})).fit(X[arm == a], y[arm == a])
            for a in range(self.n_treatments + 1)
        ]
        return self

    def predict(self, XT: Array) -> Array:  # noqa: N803
        """Prediction of the model of each row's arm."""
        X, arm = self._split(np.asarray(XT, dtype=np.float64))  # noqa: N806
        out = np.empty(X.shape[0])
        for a, model in enumerate(self.models_):
            rows = arm == a
            if rows.any():
                out[rows] = model.predict(X[rows])
        return out

    def score(self, XT: Array, y: Array) -> float:  # noqa: N803
        """R² of the predictions (EconML records nuisance scores)."""
        pred = self.predict(XT)
        y = np.asarray(y, dtype=np.float64).ravel()
        return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


class _EconmlForest:
    """Prediction of a fitted EconML forest estimator, by block, on NaN-filled covariates.

    Subclasses set ``fill_``, ``arms_`` and ``model_`` (an EconML estimator with a discrete
    treatment whose first category is the control) in ``fit``.
    """

    fill_: Array
    arms_: tuple[str, ...]
    model_: Any

    def _fit_model(
        self,
        model: Any,
        y: Array,
        treatment: npt.NDArray[np.str_],
        X: Array,  # noqa: N803
        *,
        fill: Array,
        arms: tuple[str, ...],
    ) -> Self:
        """Fit the EconML ``model`` on X with its missing values filled; keep what predicts."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning)
            model.fit(y, treatment, X=np.where(np.isnan(X), fill[None, :], X))
        self.fill_ = fill
        self.arms_ = tuple(arms)
        self.model_ = model
        return self

    def _filled(self, X: Array) -> Array:  # noqa: N803
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=np.float64)  # noqa: N806
        if X.ndim != 2 or X.shape[1] != self.fill_.size:
            msg = f"X has shape {X.shape}; the estimator was fitted on {self.fill_.size} columns"
            raise ValueError(msg)
        return np.where(np.isnan(X), self.fill_[None, :], X)

    def _by_block(self, X: Array, predict: Callable[[Array], Any]) -> list[Any]:  # noqa: N803
        """``predict`` on blocks of rows of X (missing values filled).

        A forest sums per-tree statistics into per-row accumulators, which stay in cache for
        a block (1M rows at once: 30 s; in blocks: 21 s).
        """
        filled = self._filled(X)
        return [predict(filled[i : i + _BLOCK]) for i in range(0, filled.shape[0], _BLOCK)]

    def _stack(self, parts: list[Any]) -> Array:
        """Blocks of per-action values as one (n, actions) array (no block: no row)."""
        k = len(self.arms_) - 1
        blocks = (np.reshape(np.asarray(part), (-1, k)) for part in parts)
        return np.concatenate([np.zeros((0, k)), *blocks], dtype=np.float64)

    def effect(self, X: Array) -> Array:  # noqa: N803
        """Effect of each action against the control per row of X: (n, actions).

        Parameters
        ----------
        X
            (n, p) covariates as in :meth:`fit`; NaN allowed.

        Returns
        -------
        numpy.ndarray
            (n, actions) effects in the outcome's unit.
        """
        if (compiled := compiled_forest(self.model_)) is not None:  # _forest.py: compiled
            return compiled.effect(self._filled(X))
        return self._stack(self._by_block(X, self.model_.const_marginal_effect))

    def effect_interval(self, X: Array, *, alpha: float = 0.05) -> tuple[Array, Array]:  # noqa: N803
        """Pointwise (1 - alpha) interval of each row's effects: (low, high), each (n, actions).

        The forest's bootstrap-of-little-bags interval: it reflects sampling noise of the
        forest given the nuisance models, not model misspecification or unobserved
        confounding.
        """
        if (compiled := compiled_forest(self.model_)) is not None:
            _, low, high = compiled.effect_and_interval(self._filled(X), alpha=alpha)
            return low, high
        bounds = self._by_block(
            X, lambda block: self.model_.const_marginal_effect_interval(block, alpha=alpha)
        )
        return self._stack([b[0] for b in bounds]), self._stack([b[1] for b in bounds])

    def effect_and_interval(
        self,
        X: Array,  # noqa: N803
        *,
        alpha: float = 0.05,
    ) -> tuple[Array, Array, Array]:
        """Effect and its (1 - alpha) interval in one pass of the forest: (effect, low, high)."""
        if (compiled := compiled_forest(self.model_)) is not None:
            return compiled.effect_and_interval(self._filled(X), alpha=alpha)

        def predict(block: Array) -> tuple[Any, Any, Any]:
            inference = self.model_.const_marginal_effect_inference(block)
            low, high = inference.conf_int(alpha=alpha)
            return inference.point_estimate, low, high

        parts = self._by_block(X, predict)
        return (
            self._stack([p[0] for p in parts]),
            self._stack([p[1] for p in parts]),
            self._stack([p[2] for p in parts]),
        )


def _check_fit_inputs(
    y: Array,
    treatment: npt.NDArray[np.str_],
    X: Array,  # noqa: N803
    arms: tuple[str, ...],
) -> tuple[Array, npt.NDArray[np.str_], Array]:
    X = np.asarray(X, dtype=np.float64)  # noqa: N806
    treatment = np.asarray(treatment).astype(str)
    y = np.asarray(y, dtype=np.float64)
    if not (X.shape[0] == treatment.shape[0] == y.shape[0]):
        msg = "X, treatment and y must have the same number of rows"
        raise ValueError(msg)
    unknown = set(np.unique(treatment).tolist()) - set(arms)
    if len(arms) < 2 or unknown:
        msg = f"arms must list the control, then the actions, and every treatment: {arms}"
        raise ValueError(msg)
    return y, treatment, X


class CausalForestEstimator(_EconmlForest):
    """Per-loan effects from a causal forest: EconML's :class:`econml.dml.CausalForestDML`.

    An honest generalised random forest on residualised outcomes and treatments, with
    cross-fitted LightGBM nuisance models (outcome; propensity of each arm) and
    bootstrap-of-little-bags intervals. The default estimator of
    :class:`~npl_engine.causal.ActionEffectModel`.

    Parameters
    ----------
    n_trees
        Trees of the forest (a multiple of 4).
    n_estimators
        Boosting rounds of each LightGBM nuisance model.
    n_folds
        Cross-fitting folds of the nuisance models.
    seed
        Seed of the folds and the models.
    n_jobs
        Threads of each LightGBM model and of the forest (-1: all cores).
    validation_trees
        Trees of each half-sample forest of the effect model's validation.
    max_samples
        Share of the loans each tree is grown on (at most 0.5: the bootstrap-of-little-bags
        intervals need half-samples); half of them choose the splits, the other half estimate
        the leaves (honesty).
    min_samples_leaf
        Loans per leaf (default: :meth:`min_leaf` of the number of loans).
    missing_fill
        Per covariate, the value that stands in for missing (default: one below the lowest
        value seen in fitting).

    Notes
    -----
    On 20,000-loan simulator books the forest's effects rank-correlated with the true per-loan
    effects at 0.57-0.88 (Spearman) where a boosted regression of the doubly robust
    pseudo-outcomes reached 0.23-0.50: pseudo-outcomes are noisy (weighted by inverse
    propensities) and a boosted tree chases that noise.

    Cheaper settings were measured against the truth on a 50,000-loan and a 5,000-loan book
    (``benchmarks/forest_settings.py``): 200 trees halve the fit but rank worse for every
    action (legal action 0.64 to 0.62, 0.61 to 0.55 on two seeds); ``max_samples`` of 0.35
    down to 0.2 cut the fit by 25-60 % but enlarge the mean error and lower the coverage of
    the intervals; leaves of 100 loans cover 62-75 % of the true effects.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 3))
    >>> treatment = np.where(rng.random(600) < 0.5, "call", "none")
    >>> y = X[:, 0] + 0.3 * (treatment == "call") + rng.normal(scale=0.1, size=600)
    >>> forest = CausalForestEstimator(n_trees=40, n_estimators=20, n_jobs=1)
    >>> forest = forest.fit(y, treatment, X, arms=("none", "call"))
    >>> forest.effect(X[:2]).shape
    (2, 1)
    """

    name = "forest"
    description = "EconML CausalForestDML: per-loan effects with 95 % intervals"

    def __init__(
        self,
        *,
        n_trees: int = 400,
        n_estimators: int = 200,
        n_folds: int = 3,
        seed: int = 0,
        n_jobs: int = -1,
        validation_trees: int = 100,
        max_samples: float = 0.45,
        min_samples_leaf: int | None = None,
        missing_fill: Array | None = None,
    ) -> None:
        self.n_trees = n_trees
        self.n_estimators = n_estimators
        self.n_folds = n_folds
        self.seed = seed
        self.n_jobs = n_jobs
        self.validation_trees = validation_trees
        self.max_samples = max_samples
        self.min_samples_leaf = min_samples_leaf
        self.missing_fill = missing_fill

    @staticmethod
    def min_leaf(n: int) -> int:
        """Loans per leaf of the forest: n / 400 within [5, 50].

        Each leaf estimates a local effect from its loans, so it needs enough of them in each
        arm; on a small sample, leaves of 50 would leave the forest almost constant.

        >>> CausalForestEstimator.min_leaf(747), CausalForestEstimator.min_leaf(20_000)
        (5, 50)
        """
        return _min_leaf(n)

    def fit(
        self,
        y: Array,
        treatment: npt.NDArray[np.str_],
        X: Array,  # noqa: N803
        *,
        arms: tuple[str, ...],
    ) -> Self:
        """Fit the forest; ``arms`` lists the control first, then the actions.

        Returns
        -------
        CausalForestEstimator
            ``self``, fitted.
        """
        y, treatment, X = _check_fit_inputs(y, treatment, X, arms)  # noqa: N806
        fill = _missing_fill(X) if self.missing_fill is None else np.asarray(self.missing_fill)
        params = _lgbm_params(n_estimators=self.n_estimators, seed=self.seed, n_jobs=self.n_jobs)
        leaf = self.min_leaf(X.shape[0]) if self.min_samples_leaf is None else self.min_samples_leaf
        forest = CausalForestDML(
            model_y=LGBMRegressor(**params),
            model_t=LGBMClassifier(**params),
            discrete_treatment=True,
            categories=list(arms),
            n_estimators=self.n_trees,
            min_samples_leaf=leaf,
            max_samples=self.max_samples,
            cv=self.n_folds,
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        return self._fit_model(forest, y, treatment, X, fill=fill, arms=arms)

    def for_validation(self) -> CausalForestEstimator:
        """A smaller unfitted forest for the half-sample validation.

        It keeps this forest's stand-ins for missing values, so that a value observed in one
        half is never below the other half's stand-in and taken for missing.
        """
        check_is_fitted(self, "model_")
        return CausalForestEstimator(
            n_trees=self.validation_trees,
            n_estimators=self.n_estimators,
            n_folds=self.n_folds,
            seed=self.seed,
            n_jobs=self.n_jobs,
            validation_trees=self.validation_trees,
            max_samples=self.max_samples,
            min_samples_leaf=self.min_samples_leaf,
            missing_fill=self.fill_,
        )


class DRLearnerEstimator(_EconmlForest):
    """Per-loan effects from a doubly robust learner: EconML's :class:`econml.dr.ForestDRLearner`.

    Cross-fitted LightGBM nuisance models (propensity of each arm; one outcome regressor per
    arm) give each loan a doubly robust pseudo-outcome per action; an honest regression
    forest of these pseudo-outcomes on the covariates gives the per-loan effect and its
    bootstrap-of-little-bags interval (no refitting: the interval costs one more pass of the
    forest).

    Parameters
    ----------
    n_trees
        Trees of the final regression forest (a multiple of 4).
    n_estimators
        Boosting rounds of each LightGBM nuisance model.
    n_folds
        Cross-fitting folds of the nuisance models.
    min_propensity
        Propensities are clipped at this value in the pseudo-outcomes.
    seed
        Seed of the folds and the models.
    n_jobs
        Threads of each LightGBM model and of the forest (-1: all cores).

    Notes
    -----
    The interval is the forest's sampling interval given the nuisance models; it is honest
    (each tree estimates its leaves on loans it did not split on) but does not cover bias
    from the nuisance models or unobserved confounding. Pseudo-outcomes are noisier than the
    causal forest's residuals where propensities are small, so its intervals are wider.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(600, 3))
    >>> treatment = np.where(rng.random(600) < 0.5, "call", "none")
    >>> y = X[:, 0] + 0.3 * (treatment == "call") + rng.normal(scale=0.1, size=600)
    >>> dr = DRLearnerEstimator(n_trees=40, n_estimators=20, n_jobs=1)
    >>> dr.fit(y, treatment, X, arms=("none", "call")).effect(X[:2]).shape
    (2, 1)
    """

    name = "DR-learner"
    description = "EconML ForestDRLearner: per-loan effects with 95 % intervals"

    def __init__(
        self,
        *,
        n_trees: int = 400,
        n_estimators: int = 200,
        n_folds: int = 3,
        min_propensity: float = 0.01,
        seed: int = 0,
        n_jobs: int = -1,
    ) -> None:
        self.n_trees = n_trees
        self.n_estimators = n_estimators
        self.n_folds = n_folds
        self.min_propensity = min_propensity
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(
        self,
        y: Array,
        treatment: npt.NDArray[np.str_],
        X: Array,  # noqa: N803
        *,
        arms: tuple[str, ...],
    ) -> Self:
        """Fit the nuisance models and the forest; ``arms`` lists the control first.

        Returns
        -------
        DRLearnerEstimator
            ``self``, fitted.
        """
        y, treatment, X = _check_fit_inputs(y, treatment, X, arms)  # noqa: N806
        fill = _missing_fill(X)
        params = _lgbm_params(n_estimators=self.n_estimators, seed=self.seed, n_jobs=self.n_jobs)
        learner = ForestDRLearner(
            model_propensity=LGBMClassifier(**params),
            model_regression=_PerArmRegressor(n_treatments=len(arms) - 1, params=params),
            min_propensity=self.min_propensity,
            categories=list(arms),
            cv=self.n_folds,
            n_estimators=self.n_trees,
            min_samples_leaf=_min_leaf(X.shape[0]),
            random_state=self.seed,
            n_jobs=self.n_jobs,
        )
        return self._fit_model(learner, y, treatment, X, fill=fill, arms=arms)
