"""Why the recovery model scores a loan as it does: SHAP values, reason codes, global importance.

Everything here computes; nothing prints or reads files (the CLI formats, see ``npl explain``).
The method and its conventions are in ``docs/explanations.md``; in short:

- **p_recover.** TreeSHAP values of the classifier booster, in log-odds: per loan they add up
  to the booster's raw margin minus its expected value (the base margin). The calibrated
  probability is a monotone map of the margin, so the change from the base probability
  ``p_base = calibrator(sigmoid(base margin))`` to ``p_recover`` is shared out across features
  in proportion to their log-odds values. The point contributions add up to
  ``p_recover - p_base`` exactly.
- **expected collections.** TreeSHAP values of the two Poisson horizon-total boosters
  (borrower payments, collateral sales), in log space: per loan they add up to each booster's
  raw log output minus its expected value. Per channel, the change from the base collections
  ``exposure × exp(expected value)`` to the predicted collections is shared out the same
  proportional way, and the money contributions are summed over the channels. A loan with no
  collateral value left after senior liens gets no collateral collections (the model's gate);
  the whole of that channel's change, ``0 - base``, is attributed to ``net_collateral_cover``,
  the feature the gate reads. The money contributions add up to
  ``expected_collections - base`` exactly.

SHAP values are exact path-dependent TreeSHAP values, the numbers of LightGBM's
``Booster.predict(..., pred_contrib=True)`` and of ``shap.TreeExplainer`` (which delegates to
it for LightGBM models). For many loans they come from :mod:`npl_engine.treeshap`, which
rearranges the same sums into per-leaf tables and runs about four times faster.
"""

from __future__ import annotations

import math
import tempfile
import weakref
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow.parquet as pq

from npl_engine.data import loan_chunks
from npl_engine.errors import NplError
from npl_engine.features import (
    CATEGORICAL_FEATURES,
    FEATURE_FAMILIES,
    FEATURE_LABELS,
    FeatureMatrix,
)
from npl_engine.scoring import CHANNELS, RecoveryModel, has_collateral
from npl_engine.treeshap import CompiledTrees, compile_booster, tree_shap

__all__ = [
    "TARGETS",
    "Attribution",
    "LoanExplanations",
    "explain_collections",
    "explain_loans",
    "explain_p_recover",
    "format_value",
    "global_importance",
    "plot_importance",
    "prepare_explanations",
    "reason_codes",
    "reason_columns",
    "reference_medians",
]

FloatArray = npt.NDArray[np.float64]
Target = Literal["p_recover", "expected_collections"]

#: What can be explained: the calibrated probability of recovery, and expected collections.
TARGETS: Final[tuple[Target, ...]] = ("p_recover", "expected_collections")

#: Rows from which building the compiled TreeSHAP tables pays for itself (see _tree_shap).
_COMPILE_FROM_ROWS = 2000

#: Feature whose value gates the collateral channel (no net collateral, no sale cash).
_GATE_FEATURE = "net_collateral_cover"

#: How each feature's value reads: sets the number format and the unit in the sentences.
_KINDS: dict[str, str] = {
    "debt_to_income": "ratio",
    "liquidity": "ratio",
    "income_to_exposure": "ratio",
    "monthly_income": "money",
    "collateral_cover": "ratio",
    "net_collateral_cover": "ratio",
    "senior_lien_share": "ratio",
    "on_time_payment_rate": "ratio",
    "min_payment_share": "ratio",
    "delinquencies_24m": "count",
    "months_since_last_payment": "months",
    "days_past_due": "count",
    "credit_score": "count",
    "account_age_months": "months",
    "credit_inquiries_12m": "count",
    "negative_records": "count",
    "employment_years": "years",
    "residence_years": "years",
    "age": "years",
    "exposure": "money",
    "log_exposure": "log_money",
    "interest_rate": "rate",
    "accrued_interest_share": "ratio",
    "amortised_share": "ratio",
    "months_since_default": "months",
    "loan_age_months": "months",
    "valuation_age_months": "months",
    **dict.fromkeys(CATEGORICAL_FEATURES, "category"),
}

_OUTPUT_WORDS: dict[str, str] = {
    "p_recover": "the recovery probability",
    "expected_collections": "expected collections",
}


# -- per-loan attributions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribution:
    """How the features move one model output of each loan away from its base.

    Parameters
    ----------
    target
        ``"p_recover"`` or ``"expected_collections"``.
    output
        (n,) the output: the calibrated probability, or expected collections in currency.
    base
        (n,) the output at the base (the boosters' expected values): ``p_base`` for every loan,
        or ``exposure × Σ_channel exp(expected value)`` for collections.
    contributions
        (n, p) in the output's unit (probability, currency); each row adds up to
        ``output - base``.
    link_values
        Per booster (``"classifier"``, or ``"borrower"`` and ``"collateral"``): (n, p) SHAP
        values in the booster's raw space (log-odds, log). Each row adds up to the booster's raw
        output minus ``link_base``. Rows the booster does not score (collateral of loans with
        no net collateral) are NaN.
    link_base
        Per booster: its expected raw output (the TreeSHAP bias term).
    """

    target: Target
    output: FloatArray
    base: FloatArray
    contributions: FloatArray
    link_values: dict[str, FloatArray]
    link_base: dict[str, float]


@dataclass(frozen=True, slots=True)
class LoanExplanations:
    """Explanations of a set of loans.

    Parameters
    ----------
    features
        The loans' features as :func:`npl_engine.features.build_features` gives them (values in
        their own units, categories as text), one row per loan, ``loan_id`` first.
    matrix
        The same features encoded as the model sees them; columns as in ``names``.
    names
        Feature names, the columns of every ``contributions`` array.
    attributions
        Per explained target.
    reference
        Features of every loan passed to :func:`explain_loans` (explained or not): the
        population whose medians make a value "low" or "high" in :func:`reason_codes`.
    """

    features: pl.DataFrame
    matrix: FeatureMatrix
    names: tuple[str, ...]
    attributions: dict[Target, Attribution]
    reference: pl.DataFrame

    @property
    def loan_id(self) -> pl.Series:
        """Loan ids, in row order."""
        return self.features["loan_id"]

    def to_shap(self, target: Target = "p_recover", *, booster: str | None = None) -> Any:
        """The attributions of ``target`` as a ``shap.Explanation``, for shap's own plots.

        Parameters
        ----------
        target
            ``"p_recover"`` or ``"expected_collections"`` (explained by :func:`explain_loans`).
        booster
            ``None``: the contributions in the output's unit (probability, currency), whose
            rows add up to ``output - base``, the numbers of the reason codes. A booster's
            name (``"classifier"`` for ``p_recover``; ``"borrower"`` or ``"collateral"`` for
            collections): its raw TreeSHAP values (log-odds, log) and expected raw output,
            equal to ``shap.TreeExplainer``'s; loans a booster does not score are NaN.

        Returns
        -------
        shap.Explanation
            One row per loan (``instance_names`` the loan ids), the model's features as
            columns: ``data`` as the model sees them (categories as codes), ``display_data``
            as they read (categories as text).

        Raises
        ------
        NplError
            If ``target`` was not explained or ``booster`` is not one of its boosters.

        Notes
        -----
        ``shap.plots.waterfall(ex.to_shap("expected_collections")[0])`` draws the first loan's
        collections from the base to its prediction (``docs/explanations.md``).
        """
        import shap  # noqa: PLC0415 - heavy, and only for this

        attribution = self.attributions.get(target)
        if attribution is None:
            explained = ", ".join(self.attributions) or "nothing"
            msg = f"{target!r} was not explained (explained: {explained})"
            raise NplError(msg)
        if booster is None:
            values, base = attribution.contributions, attribution.base
        elif booster in attribution.link_values:
            values = attribution.link_values[booster]
            base = np.full(values.shape[0], attribution.link_base[booster])
        else:
            msg = (
                f"{target} has no booster {booster!r}: choose from "
                f"{', '.join(attribution.link_values)}, or none for the output's unit"
            )
            raise NplError(msg)
        return shap.Explanation(
            values=values,
            base_values=base,
            data=self.matrix.values,
            display_data=self.features.select(self.names).to_numpy(),
            feature_names=list(self.names),
            instance_names=self.loan_id.to_list(),
        )


def _tree_shap(
    booster: lgb.Booster, values: FloatArray, *, num_iteration: int | None
) -> tuple[FloatArray, float]:
    """Exact TreeSHAP values (n, p) and the booster's expected raw output.

    A booster prepared by :func:`prepare_explanations`, or many rows: the compiled per-leaf
    tables of :mod:`npl_engine.treeshap` (about 4 times faster than LightGBM once built). Few
    rows of another booster, or a booster too deep to tabulate: LightGBM.
    """
    n = values.shape[0]
    prepared = _PREPARED.get(booster, {})
    if n and num_iteration in prepared:
        trees = prepared[num_iteration]
    elif n >= _COMPILE_FROM_ROWS:
        trees = compile_booster(booster, num_iteration=num_iteration)
    else:
        trees = None
    if trees is not None:
        return tree_shap(trees, values), trees.expected_value
    rows = values if n else np.full((1, values.shape[1]), np.nan)
    contrib = np.asarray(
        booster.predict(rows, pred_contrib=True, num_iteration=num_iteration), dtype=np.float64
    )
    return contrib[:n, :-1], float(contrib[0, -1])


#: Compiled tables of the boosters given to :func:`prepare_explanations`, per
#: ``num_iteration`` (``None`` when a booster cannot be tabulated). Weak keys: the tables go
#: with their model.
_PREPARED: weakref.WeakKeyDictionary[lgb.Booster, dict[int | None, CompiledTrees | None]] = (
    weakref.WeakKeyDictionary()
)


def prepare_explanations(model: RecoveryModel) -> None:
    """Compile the TreeSHAP tables of the boosters that explanations of ``model`` use.

    For a process that explains a few loans at a time for a long while (the scoring service):
    its explanations then all use the tables, about 4 times faster than LightGBM's TreeSHAP,
    where otherwise only explanations of 2,000 loans or more compile them (each time). The
    values are the same TreeSHAP values up to floating-point rounding (``atol`` 1e-10 in the
    tests). Compiling a model takes about a second.
    """

    def prepare(booster: lgb.Booster, num_iteration: int | None) -> None:
        tables = _PREPARED.setdefault(booster, {})
        tables[num_iteration] = compile_booster(booster, num_iteration=num_iteration)

    prepare(model.classifier_.booster_, None)
    for channel in CHANNELS:
        booster = model.collections_.totals_.get(channel)
        if booster is not None:
            prepare(booster, booster.best_iteration)


def _share_out(link: FloatArray, change: FloatArray, *, slope_at_zero: FloatArray) -> FloatArray:
    """Split each row's ``change`` across features in proportion to its link-space values.

    Row i gets ``link[i] × change[i] / Σ link[i]``; where that sum is (numerically) zero the
    ratio is taken as its limit ``slope_at_zero[i]``, the derivative of the output map.
    """
    total = link.sum(axis=1)
    tiny = np.abs(total) < 1e-12
    scale = np.where(tiny, slope_at_zero, change / np.where(tiny, 1.0, total))
    out: FloatArray = link * scale[:, None]
    return out


def explain_p_recover(model: RecoveryModel, x: FeatureMatrix) -> Attribution:
    """Contributions of each feature to each loan's calibrated p_recover (encoded features).

    The classifier's TreeSHAP values on the log-odds scale, shared out onto the calibrated
    probability so that they add up to ``p_recover`` minus the base value.
    """
    clf = model.classifier_
    # num_iteration=None as in RecoveryClassifier.predict_raw, so the same trees are explained.
    link, base_margin = _tree_shap(clf.booster_, x.values, num_iteration=None)
    p = model.predict_proba(x)
    p_base = float(clf.calibrator_.predict(np.array([1.0 / (1.0 + math.exp(-base_margin))]))[0])
    change = p - p_base
    # A flat stretch of the isotonic map: no change to share, whatever the log-odds moved.
    points = _share_out(link, change, slope_at_zero=np.zeros(p.size))
    return Attribution(
        target="p_recover",
        output=p,
        base=np.full(p.size, p_base),
        contributions=points,
        link_values={"classifier": link},
        link_base={"classifier": base_margin},
    )


def explain_collections(
    model: RecoveryModel, x: FeatureMatrix, exposure: FloatArray
) -> Attribution:
    """Contributions of each feature to each loan's expected collections (currency).

    TreeSHAP values of the horizon-total models of each channel, scaled by the exposure;
    loans without collateral get no collateral part.
    """
    totals = model.collections_.predict_total(x)
    uncalibrated = model.collections_.predict_total(x, calibrated=False)
    secured = has_collateral(x)
    n, n_features = x.values.shape
    contributions = np.zeros((n, n_features))
    link_values: dict[str, FloatArray] = {}
    link_base: dict[str, float] = {}
    output = np.zeros(n)
    base = np.zeros(n)
    for channel in CHANNELS:
        booster = model.collections_.totals_.get(channel)
        if booster is None:  # an unsecured book's model: no collateral part to explain
            continue
        rows = np.ones(n, dtype=bool) if channel == "borrower" else secured
        link = np.full((n, n_features), np.nan)
        # best_iteration as in CollectionsModel.predict_total.
        link[rows], link_base[channel] = _tree_shap(
            booster, x.values[rows], num_iteration=booster.best_iteration
        )
        money = exposure * totals[channel]
        fitted = exposure * uncalibrated[channel]
        money_base = exposure * math.exp(link_base[channel])
        contributions[rows] += _share_out(
            link[rows], (fitted - money_base)[rows], slope_at_zero=money_base[rows]
        )
        if channel == "collateral":
            contributions[~rows, x.names.index(_GATE_FEATURE)] += (fitted - money_base)[~rows]
        # The segment's calibration factor (docs/models.md) is the segment's doing.
        contributions[:, x.names.index("segment")] += money - fitted
        link_values[channel] = link
        output += money
        base += money_base
    return Attribution(
        target="expected_collections",
        output=output,
        base=base,
        contributions=contributions,
        link_values=link_values,
        link_base=link_base,
    )


def explain_loans(
    model: RecoveryModel,
    loans: pl.LazyFrame | pl.DataFrame,
    *,
    loan_ids: Collection[str] | None = None,
    targets: Collection[Target] = TARGETS,
) -> LoanExplanations:
    """SHAP attributions of ``p_recover`` and expected collections, loan by loan.

    Parameters
    ----------
    model
        A fitted or loaded :class:`~npl_engine.scoring.RecoveryModel`.
    loans
        Validated contract ``loans`` (a tape, or a book's loans).
    loan_ids
        Explain only these loans (SHAP values cost far more than scores); ``None``: all. The
        other loans still form the reference population for "low" and "high".
    targets
        What to explain; leaving one out saves its cost (the collections part explains two
        boosters, ``p_recover`` one).

    Returns
    -------
    LoanExplanations
        Features, and per target the output, its base, contributions in the output's unit and
        the raw SHAP values.

    Raises
    ------
    NplError
        If a target or a loan id is unknown, there is no loan to explain, or the loans lack a
        column the model learned from.

    Notes
    -----
    Conventions (see the module docstring and ``docs/explanations.md``):

    - ``p_recover``: log-odds SHAP values ``φ`` of the classifier, shared out as probability
      ``φ_j × (p - p_base) / Σ φ``, with ``p_base`` the calibrated probability at the
      classifier's expected margin. Contributions keep the sign of ``φ_j`` (the calibrator is
      monotone) and add up to ``p - p_base``; where the calibrator is flat between the base and
      the loan's margin they are all zero.
    - expected collections: per channel, log SHAP values ``φ`` of the horizon-total booster
      shared out as ``φ_j × (C - C_base) / Σ φ`` with ``C = exposure × exp(raw)`` and
      ``C_base = exposure × exp(expected value)``; the channels are summed. For a loan with no
      net collateral the collateral channel's ``0 - C_base`` goes to ``net_collateral_cover``.
      ``C_base`` uses the geometric-mean-like ``exp(E[log])``, so it is below the book's
      average collections; it is a reference point, not a forecast.

    Examples
    --------
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> sim = simulate(SimulationSettings(n_loans=3000, seed=1))
    >>> book = sim.dataset()
    >>> model = RecoveryModel(baselines=False, grid=({"num_leaves": 15},)).fit(book)
    >>> ex = explain_loans(model, sim.loans.head(5), targets=("p_recover",))
    >>> a = ex.attributions["p_recover"]
    >>> bool(np.allclose(a.contributions.sum(axis=1), a.output - a.base))
    True
    """
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        msg = f"cannot explain {', '.join(unknown)}: choose from {', '.join(TARGETS)}"
        raise NplError(msg)
    frame = loans.collect() if isinstance(loans, pl.LazyFrame) else loans
    model.check_columns(frame)
    everyone, x = model.features(frame.lazy())
    features = everyone
    if loan_ids is not None:
        wanted = pl.Series("loan_id", list(loan_ids), dtype=pl.String)
        missing = wanted.filter(~wanted.is_in(everyone["loan_id"].implode()))
        if missing.len():
            shown = ", ".join(repr(i) for i in missing.head(5).to_list())
            msg = f"loan_id {shown} not found among the {frame.height:,} loans given"
            raise NplError(msg)
        rows = np.flatnonzero(everyone["loan_id"].is_in(wanted.implode()).to_numpy())
        features = everyone[rows]
        x = FeatureMatrix(values=x.values[rows], names=x.names, categorical=x.categorical)
    if features.height == 0:
        msg = "no loans to explain"
        raise NplError(msg)
    attributions: dict[Target, Attribution] = {}
    if "p_recover" in targets:
        attributions["p_recover"] = explain_p_recover(model, x)
    if "expected_collections" in targets:
        exposure = features["exposure"].to_numpy().astype(np.float64)
        attributions["expected_collections"] = explain_collections(model, x, exposure)
    return LoanExplanations(
        features=features,
        matrix=x,
        names=x.names,
        attributions=attributions,
        reference=everyone,
    )


# -- reason codes ----------------------------------------------------------------------------


def _money(value: float) -> str:
    return f"{value:,.0f}"


def format_value(feature: str, value: Any) -> str:
    """A feature's value as a collector reads it.

    Parameters
    ----------
    feature
        Feature name (see :data:`npl_engine.features.FEATURE_LABELS`).
    value
        Its value as :func:`~npl_engine.features.build_features` gives it; ``None`` or NaN is
        missing.

    Returns
    -------
    str
        Ratios and shares to two decimals (``0.42``), money with thousands separators
        (``12,300``; the exposure size from ``log_exposure`` too), counts as integers, months
        and years with their unit, the interest rate in percent, categories as text, and
        ``missing`` when unknown.

    Examples
    --------
    >>> format_value("on_time_payment_rate", 0.4213), format_value("monthly_income", 12300.4)
    ('0.42', '12,300')
    >>> format_value("legal_stage", "pre_legal"), format_value("credit_score", None)
    ('pre legal', 'missing')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    kind = _KINDS.get(feature, "ratio")
    if kind == "category":
        return str(value).replace("_", " ")
    return _format_number(kind, float(value))


def _format_number(kind: str, v: float) -> str:
    if kind in ("money", "log_money"):
        return _money(math.exp(v) if kind == "log_money" else v)
    if kind in ("months", "years"):
        text = f"{v:.0f}" if kind == "months" or v >= 10 or v == round(v) else f"{v:.1f}"
        return f"{text} {kind.removesuffix('s')}" + ("" if text == "1" else "s")
    return {"count": "{:,.0f}", "rate": "{:.2%}"}.get(kind, "{:.2f}").format(v)


def _format_amount(target: Target, contribution: float) -> str:
    if target == "p_recover":
        points = abs(contribution) * 100
        return f"{points:.0f} points" if points >= 9.95 else f"{points:.1f} points"
    return _money(abs(contribution))


def _describe(feature: str, value: Any, shown: str, median: float | None) -> str:
    """``low on-time payment rate (0.42)``: label, value, and low/high against the median."""
    label = FEATURE_LABELS.get(feature, feature.replace("_", " ")).removesuffix(" (months)")
    if value is None or _KINDS.get(feature) == "category" or median is None:
        return f"{label} ({shown})"
    level = "low " if value < median else "high " if value > median else ""
    return f"{level}{label} ({shown})"


def reason_codes(
    explanations: LoanExplanations,
    *,
    top: int = 3,
    medians: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """The top drivers of each loan's explained outputs, in words.

    Parameters
    ----------
    explanations
        From :func:`explain_loans`.
    top
        Reason codes per loan and target: the features with the largest absolute contribution
        (features contributing exactly nothing are left out, so a loan may have fewer).
    medians
        The medians that make a value "low" or "high", by feature; ``None``: those of
        ``explanations.reference``. For a tape explained in chunks, the whole tape's
        (:func:`reference_medians`), so each chunk's codes are the whole tape's.

    Returns
    -------
    pl.DataFrame
        Long form, one row per loan, target and rank: ``loan_id``, ``target``, ``rank``
        (1 = largest), ``feature``, ``label``, ``value`` (formatted text), ``contribution``
        (in the target's unit: probability for ``p_recover``, so 0.09 = 9 points; currency for
        ``expected_collections``), ``direction`` (``raises`` or ``lowers``) and ``text``, e.g.
        "low on-time payment rate (0.42) lowers the recovery probability by 9.1 points".

    Notes
    -----
    "low" / "high" mean below / above the median of the loans given to :func:`explain_loans`
    (``LoanExplanations.reference``: the tape, not only the explained loans); a value equal to
    the median gets neither. They say where the value sits, not why the model reacts to it:
    SHAP says how much a value moved this loan's output away from the base, and a "high" value
    can lower an output when the model learned so. Formatting runs over the selected cells only
    (n × top × targets), not over every feature of every loan.

    Examples
    --------
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> sim = simulate(SimulationSettings(n_loans=3000, seed=1))
    >>> book = sim.dataset()
    >>> model = RecoveryModel(baselines=False, grid=({"num_leaves": 15},)).fit(book)
    >>> codes = reason_codes(explain_loans(model, sim.loans.head(4)), top=2)
    >>> codes.columns[:4]
    ['loan_id', 'target', 'rank', 'feature']
    >>> codes.filter(pl.col("target") == "expected_collections").height
    8
    """
    if top < 1:
        msg = f"top must be at least 1, not {top}"
        raise NplError(msg)
    if medians is None:
        ref = explanations.reference
        numeric = _numeric(explanations.names, ref.columns)
        medians = ref.select(pl.col(numeric).median()).row(0, named=True) if numeric else {}
    parts = [
        _reason_rows(
            explanations, target, attribution.contributions, top=top, medians=dict(medians)
        )
        for target, attribution in explanations.attributions.items()
    ]
    target_order = pl.Enum(list(TARGETS))
    if not parts:
        return _REASON_SCHEMA.clear()
    return pl.concat(parts).sort("_row", pl.col("target").cast(target_order), "rank").drop("_row")


def _numeric(names: Collection[str], columns: Collection[str]) -> list[str]:
    """The features compared with a median: not categories, and held by the reference."""
    return [n for n in names if _KINDS.get(n) != "category" and n in columns]


def reference_medians(
    model: RecoveryModel, loans: pl.LazyFrame, *, chunk_rows: int = 250_000
) -> dict[str, Any]:
    """The median of every numeric feature over ``loans``, ``chunk_rows`` loans at a time.

    What :func:`reason_codes` compares a value with when the loans given to
    :func:`explain_loans` are the whole tape, computed without holding the tape: each chunk's
    features go to a temporary Parquet file, then each feature's median is taken from it, one
    column at a time.

    Parameters
    ----------
    model
        A fitted recovery model.
    loans
        Validated contract ``loans``, lazily (e.g. a Parquet scan).
    chunk_rows
        Loans whose features are built at a time.

    Returns
    -------
    dict[str, Any]
        Feature name to median (``None`` for a feature that is always missing).
    """
    with tempfile.TemporaryDirectory(prefix="npl-medians-") as tmp:
        path = Path(tmp) / "features.parquet"
        writer: pq.ParquetWriter | None = None
        numeric: list[str] = []
        try:
            for piece in loan_chunks(loans, chunk_rows):
                chunk = piece.loans.collect()
                if chunk.is_empty():
                    break
                model.check_columns(chunk)
                features, x = model.features(chunk.lazy())
                numeric = _numeric(x.names, features.columns)
                table = features.select(numeric).to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema)
                writer.write_table(table)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            return {}
        scan = pl.scan_parquet(path)
        return {name: scan.select(pl.col(name).median()).collect().item() for name in numeric}


_REASON_SCHEMA = pl.DataFrame(
    schema={
        "loan_id": pl.String,
        "target": pl.String,
        "rank": pl.Int32,
        "feature": pl.String,
        "label": pl.String,
        "value": pl.String,
        "contribution": pl.Float64,
        "direction": pl.String,
        "text": pl.String,
    }
)


def _reason_rows(
    explanations: LoanExplanations,
    target: Target,
    contributions: FloatArray,
    *,
    top: int,
    medians: dict[str, Any],
) -> pl.DataFrame:
    """Reason rows of one target; ``_row`` keeps the loan's position for sorting."""
    names = explanations.names
    k = min(top, contributions.shape[1])
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")[:, :k]
    chosen = np.take_along_axis(contributions, order, axis=1)
    # Zeros sort last, so the kept ranks of each loan are 1..m without gaps.
    rows, ranks = np.nonzero(chosen != 0.0)
    feature_index = order[rows, ranks]
    amount = chosen[rows, ranks]
    value = np.empty(rows.size, dtype=object)
    described = np.empty(rows.size, dtype=object)
    for j in np.unique(feature_index):
        cells = np.flatnonzero(feature_index == j)
        name = names[j]
        raw = explanations.features[name].gather(rows[cells]).to_list()
        unseen = np.isnan(explanations.matrix.values[rows[cells], j])
        for cell, v, new in zip(cells, raw, unseen, strict=True):
            shown = format_value(name, v)
            if name in CATEGORICAL_FEATURES and new and v is not None:
                # A category the model never saw in training is read as missing.
                shown += ", not seen in training"
            value[cell] = shown
            described[cell] = _describe(name, v, shown, medians.get(name))
    direction = np.where(amount > 0, "raises", "lowers")
    words = _OUTPUT_WORDS[target]
    text = [
        f"{d} {verb} {words} by {_format_amount(target, a)}"
        for d, verb, a in zip(described, direction, amount, strict=True)
    ]
    feature_names = np.asarray(names, dtype=object)[feature_index]
    return pl.DataFrame(
        {
            "loan_id": explanations.loan_id.gather(rows),
            "target": pl.Series([target] * rows.size, dtype=pl.String),
            "rank": pl.Series(ranks + 1, dtype=pl.Int32),
            "feature": pl.Series(feature_names.tolist(), dtype=pl.String),
            "label": pl.Series(
                [FEATURE_LABELS.get(n, n) for n in feature_names.tolist()], dtype=pl.String
            ),
            "value": pl.Series(value.tolist(), dtype=pl.String),
            "contribution": pl.Series(amount, dtype=pl.Float64),
            "direction": pl.Series(direction.tolist(), dtype=pl.String),
            "text": pl.Series(text, dtype=pl.String),
            "_row": pl.Series(rows, dtype=pl.Int64),
        }
    )


def reason_columns(codes: pl.DataFrame, *, top: int = 3) -> pl.DataFrame:
    """Reason codes in wide form, to add to a scores table.

    Parameters
    ----------
    codes
        From :func:`reason_codes`.
    top
        Columns per target.

    Returns
    -------
    pl.DataFrame
        ``loan_id``, ``reason_1`` .. ``reason_{top}`` (the text of the ``p_recover`` codes) and,
        if collections were explained, ``collections_reason_1`` .. ``collections_reason_{top}``.
        Loans with no code at a rank get null; loans with none at all are absent (join on
        ``loan_id``).
    """
    prefixes = {"p_recover": "reason_", "expected_collections": "collections_reason_"}
    present = [t for t in TARGETS if t in set(codes["target"].unique().to_list())]
    wanted = [f"{prefixes[t]}{r}" for t in present for r in range(1, top + 1)]
    keyed = codes.filter(pl.col("rank") <= top).select(
        "loan_id",
        "text",
        column=pl.col("target").replace_strict(prefixes, return_dtype=pl.String)
        + pl.col("rank").cast(pl.String),
    )
    if keyed.height == 0:
        return pl.DataFrame(schema={"loan_id": pl.String, **dict.fromkeys(wanted, pl.String)})
    wide = keyed.pivot(on="column", index="loan_id", values="text")
    return wide.select(
        "loan_id",
        *[pl.col(c) if c in wide.columns else pl.lit(None, pl.String).alias(c) for c in wanted],
    )


# -- global importance ----------------------------------------------------------------------


def global_importance(
    model: RecoveryModel,
    loans: pl.LazyFrame | pl.DataFrame,
    *,
    sample: int = 2000,
    seed: int = 0,
) -> pl.DataFrame:
    """Mean absolute SHAP contribution of every feature, on a sample of loans.

    Parameters
    ----------
    model
        A fitted or loaded :class:`~npl_engine.scoring.RecoveryModel`.
    loans
        Validated contract ``loans``.
    sample
        Loans drawn at random without replacement (all of them if there are fewer).
    seed
        Seed of the draw: the same seed draws the same loans.

    Returns
    -------
    pl.DataFrame
        One row per feature, most important for ``p_recover`` first: ``feature``, ``label``,
        ``family``, ``p_recover_points`` (mean absolute contribution in percentage points),
        ``p_recover_log_odds`` (mean absolute SHAP value of the classifier),
        ``collections_money`` (mean absolute contribution to expected collections, currency)
        and ``collections_share`` (the same per unit of exposure).

    Notes
    -----
    Mean absolute SHAP measures how much a feature moves the model's outputs on these loans,
    in either direction; it is not a causal effect and depends on the sample (a feature that
    is the same for every loan of a tape has no importance on that tape).
    """
    if sample < 1:
        msg = f"sample must be at least 1, not {sample}"
        raise NplError(msg)
    frame = loans.collect() if isinstance(loans, pl.LazyFrame) else loans
    ids = frame["loan_id"]
    if frame.height > sample:
        ids = ids.gather(
            np.sort(np.random.default_rng(seed).choice(frame.height, sample, replace=False))
        )
    ex = explain_loans(model, frame, loan_ids=ids.to_list())
    p = ex.attributions["p_recover"]
    money = ex.attributions["expected_collections"].contributions
    exposure = ex.features["exposure"].to_numpy().astype(np.float64)
    share = money / np.where(exposure > 0, exposure, np.nan)[:, None]
    return pl.DataFrame(
        {
            "feature": list(ex.names),
            "label": [FEATURE_LABELS.get(n, n) for n in ex.names],
            "family": [FEATURE_FAMILIES.get(n, "") for n in ex.names],
            "p_recover_points": 100 * np.abs(p.contributions).mean(axis=0),
            "p_recover_log_odds": np.abs(p.link_values["classifier"]).mean(axis=0),
            "collections_money": np.abs(money).mean(axis=0),
            "collections_share": np.nanmean(np.abs(share), axis=0),
        }
    ).sort("p_recover_points", descending=True, maintain_order=True)


def plot_importance(importance: pl.DataFrame, path: str | Path, *, top: int = 15) -> Path:
    """Write a bar chart of global importance as a PNG.

    Parameters
    ----------
    importance
        From :func:`global_importance`.
    path
        File to write.
    top
        Features shown per panel, the most important first.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Two panels: mean absolute contribution to ``p_recover`` (percentage points) and to expected
    collections (percent of exposure). Bars are labelled with the words of
    :data:`~npl_engine.features.FEATURE_LABELS`. Drawn with matplotlib's object interface and
    the Agg renderer: no window, no global pyplot state.
    """
    # Imported here: matplotlib takes about a second to import and only the chart needs it.
    from matplotlib.figure import Figure  # noqa: PLC0415

    panels = (
        ("p_recover_points", "p_recover", "percentage points", 1.0),
        ("collections_share", "expected collections", "% of exposure", 100.0),
    )
    n = min(top, importance.height)
    fig = Figure(figsize=(13, 1.2 + 0.32 * n), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (column, title, unit, scale) in zip(axes, panels, strict=True):
        best = importance.sort(column, descending=True).head(n).reverse()
        ax.barh(best["label"].to_list(), (best[column] * scale).to_list(), color="#3a6ea5")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(f"mean |contribution|, {unit}", fontsize=9)
        ax.tick_params(axis="y", labelsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("What drives the recovery model (mean |SHAP| on a sample of loans)", fontsize=11)
    out = Path(path)
    fig.savefig(out, dpi=120)
    return out
