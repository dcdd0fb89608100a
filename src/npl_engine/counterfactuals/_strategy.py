"""The strategy-conditional recovery model: p_recover and collections under a collection lever.

A loan's score from :class:`~npl_engine.scoring.RecoveryModel` describes business as usual
(BAU): the actions the book's servicer took, mixed in their usual proportions. The per-loan
effects of :class:`~npl_engine.causal.ActionEffectModel` say what each action does against no
action. Together they give the outcome under any one action ``a``:

    p(a) = p_bau + tau_a − Σ_b pi_b tau_b          (tau_none = 0)

with ``tau`` the loan's effects on ``recovered`` and ``pi`` its BAU propensities (the effect
model's propensity model). Averaged over BAU's own mix of actions this gives back ``p_bau``
exactly, so the model agrees with the scoring model where the book has evidence, and with the
causal estimates on what changing the action does. Expected collections move the same way with
the effects on ``recovery_rate`` (times the exposure), when such a model is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.causal import CONTROL, ActionCosts, ActionEffectModel
from npl_engine.errors import NplError
from npl_engine.features import build_features, feature_matrix
from npl_engine.scoring import RecoveryModel

__all__ = ["BAU", "SETTLEMENT", "StrategyModel", "StrategyScores"]

FloatArray = npt.NDArray[np.float64]

#: Business as usual: no lever pulled, the loan is worked as the book's servicer works loans.
BAU = "business_as_usual"
#: The action whose terms include a settlement discount.
SETTLEMENT = "settlement_offer"


@dataclass(frozen=True, slots=True)
class StrategyScores:
    """Scores of loans, each under its own lever.

    Parameters
    ----------
    p_recover
        Probability of recovery under the lever (contract definition of the recovery model).
    p_recover_bau
        The same under business as usual (the scoring model's ``p_recover``).
    expected_collections, expected_collections_bau
        Expected gross collections over the valuation horizon under the lever and under BAU
        (money); ``expected_collections`` is NaN when no effect model on ``recovery_rate`` is
        known.
    cost
        Cost of the lever's action to the servicer (0 for BAU and ``none``; NaN when no cost
        table is known).
    exposure
        Exposure of each loan.
    """

    p_recover: FloatArray
    p_recover_bau: FloatArray
    expected_collections: FloatArray
    expected_collections_bau: FloatArray
    cost: FloatArray
    exposure: FloatArray


@dataclass(frozen=True, kw_only=True)
class StrategyModel:
    """Recovery probability and expected collections of a loan under a collection lever.

    Parameters
    ----------
    recovery
        The fitted scoring model (business as usual).
    effects
        Effects of the actions on ``recovered`` (same horizon and threshold as ``recovery``);
        ``None`` leaves only business as usual and borrower-side what-ifs.
    collection_effects
        Effects of the actions on ``recovery_rate``, to move expected collections; optional.
    costs
        Cost of each action (``costs.json`` of ``npl effects``, or a ``[costs]`` file).
    reference_discount
        The settlement discount at which the book's offers were made. The effect of an offer
        on collections is scaled by ``(1 − discount) / (1 − reference_discount)``.

    Notes
    -----
    Levers: business as usual, ``none`` and each action the effect model knows (a restructuring
    becomes a lever when the book holds restructurings), and for a settlement offer its
    discount. The effect models have no discount input, so the discount acts through
    accounting, not through an estimate: a settlement at discount ``d`` pays ``1 − d`` of the
    exposure, so when ``1 − d`` is below the recovery threshold an offer cannot produce a
    recovery and ``p`` falls back to that of no action; otherwise ``p`` is the offer's. See
    ``docs/counterfactuals.md``.

    Examples
    --------
    >>> model = StrategyModel(recovery=scoring, effects=on_recovered)  # doctest: +SKIP
    >>> model.score(loans, actions=["call"] * loans.height).p_recover  # doctest: +SKIP
    """

    recovery: RecoveryModel
    effects: ActionEffectModel | None = None
    collection_effects: ActionEffectModel | None = None
    costs: ActionCosts | None = None
    reference_discount: float = 0.3
    _threshold: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        definition = self.recovery.definition
        object.__setattr__(self, "_threshold", float(definition.threshold))
        if self.effects is not None:
            settings = self.effects.settings
            if settings is None or settings.outcome != "recovered":
                outcome = None if settings is None else settings.outcome
                msg = (
                    f"the effects model estimates effects on {outcome!r}; counterfactuals "
                    "move p_recover and need effects on 'recovered': run "
                    "`npl effects --outcome recovered`"
                )
                raise NplError(msg)
            if (settings.recovery_horizon_months, settings.recovery_threshold) != (
                definition.horizon_months,
                definition.threshold,
            ):
                msg = (
                    "the effects model defines recovery as "
                    f"{settings.recovery_threshold} of the exposure within "
                    f"{settings.recovery_horizon_months} months; the recovery model as "
                    f"{definition.threshold} within {definition.horizon_months} months"
                )
                raise NplError(msg)
        if self.collection_effects is not None:
            settings = self.collection_effects.settings
            if settings is None or settings.outcome != "recovery_rate":
                msg = "collection_effects must be effects on 'recovery_rate'"
                raise NplError(msg)
            if self.effects is not None and set(self.collection_effects.actions_) != set(
                self.effects.actions_
            ):
                msg = "the two effect models know different actions; fit both on the same book"
                raise NplError(msg)
        if not 0.0 <= self.reference_discount < 1.0:
            msg = f"reference_discount must be in [0, 1), got {self.reference_discount}"
            raise NplError(msg)

    @property
    def actions(self) -> tuple[str, ...]:
        """Levers on the action: business as usual, ``none`` and every action with effects."""
        if self.effects is None:
            return (BAU,)
        return (BAU, CONTROL, *self.effects.actions_)

    @property
    def threshold(self) -> float:
        """Share of the exposure collections must reach for a recovery."""
        return self._threshold

    def _effects(self, model: ActionEffectModel, frame: pl.DataFrame) -> FloatArray:
        """(n, arms) effect of each arm (``none`` first) minus the BAU-weighted effect."""
        x = feature_matrix(frame, model.vocabularies_).values
        tau = np.column_stack([np.zeros(x.shape[0]), model.effect(x)])
        propensity = model.propensity(x)
        bau = (propensity * tau).sum(axis=1)
        out: FloatArray = tau - bau[:, None]
        return out

    def _arm(
        self, model: ActionEffectModel, actions: npt.NDArray[np.str_]
    ) -> npt.NDArray[np.int64]:
        index = {a: i for i, a in enumerate(model.arms_)}
        unknown = sorted({a for a in actions.tolist() if a != BAU and a not in index})
        if unknown:
            msg = (
                f"unknown action(s) {', '.join(unknown)}; the levers are {', '.join(self.actions)}"
            )
            raise NplError(msg)
        return np.array([index.get(a, -1) for a in actions.tolist()], dtype=np.int64)

    def p_recover(
        self,
        loans: pl.DataFrame,
        *,
        actions: npt.ArrayLike | None = None,
        discounts: npt.ArrayLike | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """Probability of recovery of each loan under its lever, and under business as usual.

        Parameters
        ----------
        loans
            Contract ``loans`` rows (a row may repeat a loan with changed columns).
        actions
            One lever per row (:data:`BAU`, ``none`` or an action); default BAU for all.
        discounts
            Settlement discount per row (used where the action is a settlement offer).

        Returns
        -------
        p, p_bau
            Arrays of shape (n,).
        """
        frame = build_features(loans.lazy()).collect()
        p_bau = self.recovery.predict_proba(feature_matrix(frame, self.recovery.vocabularies_))
        acts = self._actions(actions, loans.height)
        if self.effects is None or (acts == BAU).all():
            self._check_bau_only(acts)
            return p_bau.copy(), p_bau
        shift = self._effects(self.effects, frame)
        arm = self._arm(self.effects, acts)
        rows = np.arange(loans.height)
        delta = np.where(arm >= 0, shift[rows, np.maximum(arm, 0)], 0.0)
        none = self.effects.arms_.index(CONTROL)
        too_deep = self._settles_below_threshold(acts, discounts)
        delta = np.where(too_deep, shift[:, none], delta)
        p: FloatArray = np.clip(p_bau + delta, 0.0, 1.0)
        return p, p_bau

    def score(
        self,
        loans: pl.DataFrame,
        *,
        actions: npt.ArrayLike | None = None,
        discounts: npt.ArrayLike | None = None,
    ) -> StrategyScores:
        """p_recover, expected collections and cost of each loan under its lever.

        Parameters
        ----------
        loans, actions, discounts
            As in :meth:`p_recover`.

        Notes
        -----
        Business-as-usual collections are the scoring model's ``expected_collections`` (its
        horizon totals, as ``npl score`` reports them). Under action ``a`` they move by
        ``exposure × (rate_a − Σ_b pi_b rate_b)``, with ``rate`` the effects on the recovery
        rate; a settlement offer's term is scaled by ``(1 − d) / (1 − reference_discount)``.
        """
        p, p_bau = self.p_recover(loans, actions=actions, discounts=discounts)
        frame, x = self.recovery.features(loans.lazy())
        exposure = frame["exposure"].to_numpy().astype(np.float64)
        # RecoveryModel.score's totals, without its column check: that check is about a whole
        # table (a column empty throughout), and a single loan may lack a value
        borrower, collateral = self.recovery.expected_totals(
            self.recovery.collections_.predict_total(x), exposure
        )
        bau = borrower + collateral
        acts = self._actions(actions, loans.height)
        disc = self._discounts(discounts, loans.height)
        collections = bau.copy()
        changed = acts != BAU
        if changed.any():
            if self.collection_effects is None:
                collections[changed] = np.nan
            else:
                shift = self._effects(self.collection_effects, frame)
                arm = self._arm(self.collection_effects, acts)
                rows = np.arange(loans.height)
                tau = np.where(arm >= 0, shift[rows, np.maximum(arm, 0)], 0.0)
                offer = acts == SETTLEMENT
                k = (
                    self.collection_effects.arms_.index(SETTLEMENT)
                    if SETTLEMENT in (self.collection_effects.arms_)
                    else None
                )
                if k is not None and offer.any():
                    none = self.collection_effects.arms_.index(CONTROL)
                    effect = shift[:, k] - shift[:, none]
                    scale = (1.0 - disc) / (1.0 - self.reference_discount)
                    tau = np.where(offer, shift[:, none] + effect * scale, tau)
                collections = np.where(changed, np.maximum(bau + exposure * tau, 0.0), bau)
        return StrategyScores(
            p_recover=p,
            p_recover_bau=p_bau,
            expected_collections=collections,
            expected_collections_bau=bau,
            cost=self.cost(acts, exposure),
            exposure=exposure,
        )

    def cost(self, actions: npt.ArrayLike, exposure: FloatArray) -> FloatArray:
        """Cost of each row's action (0 for BAU and ``none``; NaN without a cost table)."""
        acts = np.asarray(actions).astype(str)
        out = np.zeros(exposure.shape[0])
        for action in np.unique(acts).tolist():
            if action in (BAU, CONTROL):
                continue
            rows = acts == action
            if self.costs is None or action not in self.costs.fixed:
                out[rows] = np.nan
            else:
                out[rows] = self.costs.of(action, exposure[rows])
        return out

    # -- helpers -------------------------------------------------------------------------

    def _settles_below_threshold(
        self, actions: npt.NDArray[np.str_], discounts: npt.ArrayLike | None
    ) -> npt.NDArray[np.bool_]:
        disc = self._discounts(discounts, actions.shape[0])
        out: npt.NDArray[np.bool_] = (actions == SETTLEMENT) & (1.0 - disc < self._threshold)
        return out

    @staticmethod
    def _actions(actions: npt.ArrayLike | None, n: int) -> npt.NDArray[np.str_]:
        if actions is None:
            return np.full(n, BAU)
        out = np.asarray(actions).astype(str)
        if out.shape != (n,):
            msg = f"one action per loan row: got {out.shape[0]} for {n} rows"
            raise ValueError(msg)
        return out

    def _discounts(self, discounts: npt.ArrayLike | None, n: int) -> FloatArray:
        if discounts is None:
            return np.full(n, self.reference_discount)
        out = np.asarray(discounts, dtype=np.float64)
        out = np.where(np.isnan(out), self.reference_discount, out)
        if out.shape != (n,):
            msg = f"one discount per loan row: got {out.shape[0]} for {n} rows"
            raise ValueError(msg)
        return out

    def _check_bau_only(self, actions: npt.NDArray[np.str_]) -> None:
        if self.effects is None and (actions != BAU).any():
            other = sorted(set(actions.tolist()) - {BAU})
            msg = (
                f"action lever(s) {', '.join(other)} need the per-loan effects of the actions: "
                "pass --effects EFFECTS_DIR (written by `npl effects --outcome recovered`)"
            )
            raise NplError(msg)
