"""Expected collections: a horizon total per channel, spread over months by knot models.

Per channel (borrower payments, collateral sales), a LightGBM model predicts the share of
exposure collected within the horizon (H = 60 months by default), trained on loans observed for
the whole horizon. The timing comes from one model per knot month k (3, 6, …, 60) that predicts
the collections between the previous knot and k, trained on the loans observed through k, so
censored loans inform every knot they reached and none they did not. Each loan's cumulative
knot increments are scaled to end at its total, interpolated linearly to months 1..H and
differenced into a monthly curve.

Why this shape: the total is one model, so its SHAP values explain a loan's expected collections
exactly (an explanation of 24 knot models would cost 24 times as much). Increments rather than
cumulative amounts for the timing: a running maximum over noisy cumulative predictions biased
totals upwards by 4 % on the simulator. Only loans whose collateral is worth something after
senior liens train (and get) a collateral part, and the collateral models are monotone in
collateral cover (more collateral never predicts less sale cash), so a collateral-value shock
moves them the way it should.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from npl_engine.features import FeatureMatrix
from npl_engine.scoring._classifier import lgb_dataset, subset
from npl_engine.scoring._compiled import predict_booster, predict_boosters

__all__ = [
    "CHANNELS",
    "MIN_OBSERVED",
    "CollectionsModel",
    "default_knots",
    "has_collateral",
    "segment_calibration",
]

FloatArray = npt.NDArray[np.float64]

CHANNELS: tuple[str, ...] = ("borrower", "collateral")

#: Poisson loss (log link): shrinkage from early stopping is then multiplicative, towards each
#: group's own level; with squared error it pulled fast-selling segments (autos) 30 % towards the
#: portfolio mean on the simulator. The Poisson deviance is a proper loss for a non-negative
#: mean, so predictions remain expected collections.
_PARAMS: dict[str, Any] = {
    "objective": "poisson",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 300,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
}
#: The knot models only shape the timing (each loan's curve is rescaled to its total), and
#: timing is smooth in the features: smaller trees and a faster rate give the same curves with
#: about a third of the trees, and prediction cost is proportional to trees (scoring 1M loans).
_TIMING_PARAMS: dict[str, Any] = {
    **_PARAMS,
    "learning_rate": 0.15,
    "num_leaves": 15,
    "min_data_in_leaf": 500,
}
_MONOTONE_UP = ("collateral_cover", "net_collateral_cover")
_MONOTONE_DOWN = ("senior_lien_share",)


def has_collateral(x: FeatureMatrix) -> npt.NDArray[np.bool_]:
    """Loans with collateral worth something after senior liens: the only ones a sale can pay."""
    cover = x.values[:, x.names.index("net_collateral_cover")]
    return np.nan_to_num(cover) > 0


def _segment_codes(x: FeatureMatrix) -> npt.NDArray[np.int64]:
    """Code of each row's segment (-1 where missing or unknown)."""
    codes = x.values[:, x.names.index("segment")]
    out: npt.NDArray[np.int64] = np.where(np.isnan(codes), -1, np.nan_to_num(codes)).astype(
        np.int64
    )
    return out


def segment_calibration(
    *,
    realised: FloatArray,
    predicted: FloatArray,
    codes: npt.NDArray[np.int64],
    n_segments: int,
) -> list[dict[str, Any]]:
    """Per segment code: the ratio of realised to out-of-fold predicted money and its factor.

    Parameters
    ----------
    realised, predicted
        Per loan, collections realised and predicted out of fold (currency).
    codes
        Segment code of each loan (-1 = missing: not calibrated).
    n_segments
        Number of codes.

    Returns
    -------
    list of dict
        One row per code 0..n_segments-1: ``n_loans``, ``realised``, ``predicted``, ``ratio``
        (realised / predicted; 1 when nothing was predicted), ``standard_error`` of that ratio
        (None when too few loans) and ``factor`` (1 for fewer than
        :data:`MIN_CALIBRATION_LOANS` loans).

    Notes
    -----
    The factor shrinks the ratio towards 1 by how well it is measured: with d = ratio - 1 and
    se its standard error (from the loans' residuals ``realised - ratio × predicted``), the
    factor is ``1 + d × d² / (d² + se²)``. A drift several standard errors wide is corrected
    almost fully; one within the noise hardly at all, so a segment the model already gets
    right is not disturbed by the noise of its own measurement. A segment that collected
    nothing out of fold (ratio 0, no residual) gets factor 0: learnt as zero.

    Examples
    --------
    Segment 0 collects 1.0 or 1.6 where 1 was predicted (30 % more, clearly); segment 1
    collects nothing:

    >>> rows = segment_calibration(
    ...     realised=np.r_[np.tile([1.0, 1.6], 100), np.zeros(200)],
    ...     predicted=np.ones(400),
    ...     codes=np.repeat([0, 1], 200),
    ...     n_segments=2,
    ... )
    >>> [round(r["ratio"], 3) for r in rows], [round(r["factor"], 3) for r in rows]
    ([1.3, 0.0], [1.299, 0.0])
    """
    out = []
    for code in range(n_segments):
        mask = codes == code
        r, p = realised[mask], predicted[mask]
        total_r, total_p = float(r.sum()), float(p.sum())
        se: float | None
        if not total_p > 0:
            ratio, se, factor = 1.0, 0.0, 1.0
        elif mask.sum() < MIN_CALIBRATION_LOANS:  # too few to say anything: left as fitted
            ratio, se, factor = total_r / total_p, None, 1.0
        else:
            ratio = total_r / total_p
            se = float(np.sqrt(np.sum((r - ratio * p) ** 2)) / total_p)
            d = ratio - 1.0
            factor = 1.0 + d * (d * d / (d * d + se * se)) if d != 0 else 1.0
        out.append(
            {
                "n_loans": int(mask.sum()),
                "realised": total_r,
                "predicted": total_p,
                "ratio": ratio,
                "standard_error": se,
                "factor": factor,
            }
        )
    return out


def default_knots(horizon_months: int) -> tuple[int, ...]:
    """Knot months up to the horizon: quarterly (year one), half-yearly (year two), yearly."""
    base = (3, 6, 9, 12, 18, 24, 36, 48, 60)
    extra = tuple(range(72, horizon_months + 1, 12))
    return tuple(sorted({k for k in (*base, *extra) if k < horizon_months} | {horizon_months}))


def interpolation_matrix(knots: tuple[int, ...], horizon: int) -> FloatArray:
    """Weights W (len(knots), horizon) with cumulative-by-month = cumulative-at-knots @ W.

    Month 0 has cumulative 0; months between knots are interpolated linearly.
    """
    xs = np.array((0, *knots), dtype=float)
    w = np.zeros((len(knots), horizon))
    for j in range(len(knots)):
        unit = np.zeros(len(knots) + 1)
        unit[j + 1] = 1.0
        w[j] = np.interp(np.arange(1, horizon + 1), xs, unit)
    return w


#: Fewest loans observed through a knot (and eligible) for that knot to be learnt at all.
MIN_OBSERVED = 50
#: Fewest loans of a segment (with out-of-fold predictions) for its collections to be rescaled.
MIN_CALIBRATION_LOANS = 50
#: Rounds of a booster fitted without a validation part (too few cut-offs to hold one out).
_ROUNDS_WITHOUT_VALIDATION = 100


@dataclass(kw_only=True)
class CollectionsModel:
    """Expected monthly collections per channel.

    Parameters
    ----------
    knots
        Knot months asked for (the last is the curve's horizon). A book too short to observe
        a knot is learnt only up to the last knot it observes: see ``knots_``.
    max_rounds, early_stopping_rounds
        Boosting rounds and patience on the validation fold.
    seed
        LightGBM seed.
    weight_power
        Loans are weighted by exposure ** weight_power: 0 weighs loans equally, 1 by money.
    segments
        Names of the ``segment`` feature's codes (its vocabulary), for the calibration.
    calibrate
        Scale each channel's totals per segment by the out-of-fold ratio of realised to
        predicted collections (see :func:`segment_calibration`).

    Attributes
    ----------
    knots_
        The knots learnt: those at least :data:`MIN_OBSERVED` loans were observed through.
        ``knots_[-1]`` is the horizon of every prediction.
    boosters_
        ``{(channel, k): Booster}`` of the increment between the previous knot and k. An
        interval in which no loan of the channel collected anything has no booster: it is in
        ``zero_`` and predicts 0.
    totals_
        ``{channel: Booster}`` of the horizon total. A channel with no collections at all (an
        unsecured book's collateral sales) has none and predicts 0.
    zero_
        The ``(channel, k)`` intervals learnt as zero.
    notes_
        What was learnt as zero, dropped or not learnt, and why, in words (the model card's
        lines).
    factors_
        ``{channel: factor per segment code}`` multiplying the total model's predictions (1
        where not calibrated, and for a segment never seen in training).
    calibration_
        Per segment and channel: loans, realised and out-of-fold predicted collections (shares
        of exposure summed in money), their ratio and the factor applied.
    """

    knots: tuple[int, ...]
    max_rounds: int = 1000
    early_stopping_rounds: int = 100
    seed: int = 0
    weight_power: float = 0.5
    segments: tuple[str, ...] = ()
    calibrate: bool = True
    knots_: tuple[int, ...] = field(init=False, repr=False)
    boosters_: dict[tuple[str, int], lgb.Booster] = field(init=False, repr=False)
    totals_: dict[str, lgb.Booster] = field(init=False, repr=False)
    zero_: set[tuple[str, int]] = field(init=False, repr=False)
    notes_: list[str] = field(init=False, repr=False)
    factors_: dict[str, FloatArray] = field(init=False, repr=False)
    calibration_: list[dict[str, Any]] = field(init=False, repr=False)

    @property
    def horizon_months(self) -> int:
        """Months of every predicted curve: the last knot learnt."""
        return self.knots_[-1]

    def fit(
        self,
        x: FeatureMatrix,
        targets: dict[tuple[str, int], FloatArray],
        exposure: FloatArray,
        folds: npt.NDArray[np.int64],
    ) -> CollectionsModel:
        """Fit, per channel, the horizon total and one increment booster per knot.

        ``targets[(channel, k)]`` is the share of exposure collected by month k (NaN where not
        observed). Loans are weighted by ``exposure ** weight_power``. Early stopping uses the
        latest fold that has observations.

        Nothing about the book's shape is assumed: an interval in which no loan collected
        anything is learnt as zero, a channel that never collected is dropped, and knots
        observed for fewer than :data:`MIN_OBSERVED` loans are not learnt (the horizon is
        then the last knot learnt). Each is recorded in ``notes_``.

        Raises
        ------
        ValueError
            If not even the first knot is observed for :data:`MIN_OBSERVED` loans.
        """
        weight = np.maximum(exposure, 1.0) ** self.weight_power
        secured = has_collateral(x)
        self.boosters_, self.totals_, self.zero_, self.notes_ = {}, {}, set(), []
        self.factors_, self.calibration_ = {}, []
        observed = {k: int(np.sum(~np.isnan(targets[("borrower", k)]))) for k in self.knots}
        self.knots_ = tuple(k for k in self.knots if observed[k] >= MIN_OBSERVED)
        if not self.knots_:
            k = self.knots[0]
            msg = (
                f"only {observed[k]} loans are observed for {k} months after their cut-off "
                f"(at least {MIN_OBSERVED} are needed to learn collections that far out); "
                "the book's as_of_date is too close to its cut-off dates"
            )
            raise ValueError(msg)
        if self.knots_ != self.knots:
            missing = [k for k in self.knots if k not in self.knots_]
            self.notes_.append(
                f"Collections are learnt up to month {self.horizon_months}, not "
                f"{self.knots[-1]}: loans observed through months "
                + ", ".join(f"{k} ({observed[k]:,})" for k in missing)
                + f" are fewer than the {MIN_OBSERVED} needed; curves end at month "
                f"{self.horizon_months}."
            )
        horizon = self.horizon_months
        for channel in CHANNELS:
            params = {**_PARAMS, "seed": self.seed}
            eligible = np.ones(exposure.size, dtype=bool)
            if channel == "collateral":  # only loans with collateral can sell it
                eligible = secured
                params["monotone_constraints"] = [
                    1 if n in _MONOTONE_UP else -1 if n in _MONOTONE_DOWN else 0 for n in x.names
                ]
            total = targets[(channel, horizon)][eligible]
            if not np.any(eligible):
                self.notes_.append(
                    "Channel collateral dropped: no loan has collateral worth anything after "
                    "senior liens; it predicts 0."
                )
                continue
            if not np.nansum(total) > 0:  # e.g. an unsecured book: no sale to learn from
                self.notes_.append(
                    f"Channel {channel} dropped: none of the {int(np.sum(~np.isnan(total))):,} "
                    f"loans{' with collateral' if channel == 'collateral' else ''} observed "
                    f"through month {horizon} collected anything from it; it predicts 0."
                )
                continue
            self.totals_[channel] = self._fit_one(
                params, x, targets[(channel, horizon)], eligible, weight, folds
            )
            self._calibrate(channel, params, x, targets[(channel, horizon)], eligible, weight,
                            exposure, folds)  # fmt: skip
            timing = {**params, **_TIMING_PARAMS, "seed": self.seed}
            zero = []
            for prev, k in zip((0, *self.knots_[:-1]), self.knots_, strict=True):
                previous = targets[(channel, prev)] if prev else 0.0
                # Clip float noise (cumulative sums differ by -1e-17): increments are never < 0.
                y = np.maximum(targets[(channel, k)] - previous, 0.0)
                if not np.nansum(y[eligible]) > 0:
                    self.zero_.add((channel, k))
                    zero.append((prev, k, int(np.sum(~np.isnan(y[eligible])))))
                    continue
                self.boosters_[(channel, k)] = self._fit_one(timing, x, y, eligible, weight, folds)
            if zero:
                self.notes_.append(
                    f"Channel {channel}: learnt as zero (no loan collected anything) in months "
                    + ", ".join(f"{a + 1}-{b} ({n:,} loans observed)" for a, b, n in zero)
                    + "."
                )
        return self

    def _fit_one(  # noqa: PLR0917 - private helper, called in two places
        self,
        params: dict[str, Any],
        x: FeatureMatrix,
        y: FloatArray,
        eligible: npt.NDArray[np.bool_],
        weight: FloatArray,
        folds: npt.NDArray[np.int64],
    ) -> lgb.Booster:
        """One booster on the observed eligible rows (at least one of which collected).

        Early stopping on the latest fold; without one (all rows in one fold) or when the
        training part collected nothing (Poisson needs a positive label sum), a fixed number
        of rounds on all rows.
        """
        rows = np.flatnonzero(~np.isnan(y) & eligible)
        valid_fold = folds[rows].max()
        train, valid = rows[folds[rows] != valid_fold], rows[folds[rows] == valid_fold]
        if train.size == 0 or not np.sum(y[train]) > 0:
            return lgb.train(
                params,
                lgb_dataset(subset(x, rows), y[rows], weight[rows]),
                num_boost_round=_ROUNDS_WITHOUT_VALIDATION,
            )
        return lgb.train(
            params,
            lgb_dataset(subset(x, train), y[train], weight[train]),
            num_boost_round=self.max_rounds,
            valid_sets=[lgb_dataset(subset(x, valid), y[valid], weight[valid])],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )

    def _calibrate(  # noqa: PLR0917 - private helper, called in one place
        self,
        channel: str,
        params: dict[str, Any],
        x: FeatureMatrix,
        y: FloatArray,
        eligible: npt.NDArray[np.bool_],
        weight: FloatArray,
        exposure: FloatArray,
        folds: npt.NDArray[np.int64],
    ) -> None:
        """Out-of-fold totals of ``channel`` (refitted fold by fold) and its segment factors."""
        codes = _segment_codes(x)
        self.factors_[channel] = np.ones(len(self.segments))
        rows = np.flatnonzero(~np.isnan(y) & eligible)
        booster = self.totals_[channel]
        rounds = max(1, booster.best_iteration or booster.current_iteration())
        oof = np.full(y.size, np.nan)
        for f in np.unique(folds[rows]):
            train, valid = rows[folds[rows] != f], rows[folds[rows] == f]
            if train.size == 0 or not np.sum(y[train]) > 0:
                continue
            fold_booster = lgb.train(
                params,
                lgb_dataset(subset(x, train), y[train], weight[train]),
                num_boost_round=rounds,
            )
            # LightGBM itself: a fold's booster predicts once, compiling it would cost more.
            oof[valid] = fold_booster.predict(
                x.values[valid], num_iteration=fold_booster.best_iteration
            )
        done = rows[~np.isnan(oof[rows])]
        table = segment_calibration(
            realised=y[done] * exposure[done],
            predicted=oof[done] * exposure[done],
            codes=codes[done],
            n_segments=len(self.segments),
        )
        for code, row in enumerate(table):
            if row["n_loans"] == 0:
                continue
            if self.calibrate:
                self.factors_[channel][code] = row["factor"]
            self.calibration_.append(
                {
                    "segment": self.segments[code],
                    "channel": channel,
                    **row,
                    "factor": float(self.factors_[channel][code]),
                }
            )

    def _rows(self, x: FeatureMatrix, channel: str) -> npt.NDArray[np.intp] | None:
        """Rows a channel's boosters run on: all (None), or only loans with collateral."""
        return np.flatnonzero(has_collateral(x)) if channel == "collateral" else None

    @staticmethod
    def _predict(booster: lgb.Booster, values: FloatArray) -> FloatArray:
        """``booster.predict`` at its best iteration, compiled for large inputs."""
        return predict_booster(booster, values)

    def predict_total(
        self, x: FeatureMatrix, channels: tuple[str, ...] = CHANNELS, *, calibrated: bool = True
    ) -> dict[str, FloatArray]:
        """Expected collections over the horizon as a share of exposure, per channel: (n,).

        ``calibrated`` applies the segment factors (``factors_``); without, the total boosters'
        own predictions (what their SHAP values explain).

        Loans without collateral worth anything after senior liens get no collateral part; the
        collateral boosters are not even run on them (half the cost of scoring a mixed book).
        """
        out = {}
        for channel in channels:
            booster = self.totals_.get(channel)
            rows = self._rows(x, channel)
            if booster is None:  # channel not fitted (an unsecured book): nothing from it
                out[channel] = np.zeros(x.values.shape[0])
                continue
            if rows is None:
                out[channel] = self._predict(booster, x.values)
            else:
                out[channel] = np.zeros(x.values.shape[0])
                out[channel][rows] = self._predict(booster, x.values[rows])
            if calibrated:
                out[channel] *= self._factor(x, channel)
        return out

    def _factor(self, x: FeatureMatrix, channel: str) -> FloatArray:
        """Each row's calibration factor for ``channel`` (1 for an unknown segment)."""
        factors = self.factors_.get(channel)
        if factors is None or factors.size == 0:
            return np.ones(x.values.shape[0])
        codes = _segment_codes(x)
        known = (codes >= 0) & (codes < factors.size)
        return np.where(known, factors[np.where(known, codes, 0)], 1.0)

    def predict_cumulative(
        self, x: FeatureMatrix, totals: dict[str, FloatArray] | None = None
    ) -> dict[str, FloatArray]:
        """Cumulative share of exposure collected by each knot, per channel: (n, len(knots)).

        The horizon total comes from the total model (``totals``, if already predicted); the
        knot increments only give the timing (each loan's cumulative increments are scaled to
        end at its total).
        """
        out = {}
        totals = self.predict_total(x) if totals is None else totals
        n_knots = len(self.knots_)
        for channel in CHANNELS:
            rows = self._rows(x, channel)
            if channel not in self.totals_:
                out[channel] = np.zeros((x.values.shape[0], n_knots))
                continue
            values = x.values if rows is None else x.values[rows]
            fitted = [k for k in self.knots_ if (channel, k) not in self.zero_]
            predicted = dict(
                zip(
                    fitted,
                    predict_boosters([self.boosters_[(channel, k)] for k in fitted], values),
                    strict=True,
                )
            )
            increments = np.column_stack(
                [predicted.get(k, np.zeros(values.shape[0])) for k in self.knots_]
            )
            cum = np.cumsum(increments, axis=1)
            shape = cum / np.maximum(cum[:, -1:], 1e-12)
            if rows is None:
                out[channel] = shape * totals[channel][:, None]
            else:
                full = np.zeros((x.values.shape[0], n_knots))
                full[rows] = shape * totals[channel][rows, None]
                out[channel] = full
        return out

    def predict_monthly(
        self, x: FeatureMatrix, totals: dict[str, FloatArray] | None = None
    ) -> dict[str, FloatArray]:
        """Expected collections per month 1..H as a share of exposure, per channel: (n, H).

        Each loan's months add up to its horizon total (``predict_total``; pass ``totals`` if
        already predicted), up to rounding. Months of an interval learnt as zero are exactly 0.
        """
        w = interpolation_matrix(self.knots_, self.horizon_months)
        out = {}
        for channel, cum in self.predict_cumulative(x, totals).items():
            by_month = np.diff(cum @ w, axis=1, prepend=0.0)
            for prev, k in zip((0, *self.knots_[:-1]), self.knots_, strict=True):
                if (channel, k) in self.zero_:  # exactly 0, not rounding noise of the weights
                    by_month[:, prev:k] = 0.0
            out[channel] = by_month
        return out
