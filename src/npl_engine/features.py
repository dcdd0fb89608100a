"""Features known at a loan's cut-off date, in the four families credit analysts use.

Everything here is a Polars expression over the ``loans`` table alone: nothing observed after the
cut-off (actions, payments) can become a feature, so a tape scores the same with or without
those tables. ``gender`` is never read.

Missing values stay missing (null → NaN): LightGBM learns on which side of each split a missing
value belongs, which is better than any fill for data missing at random and also right when
"not reported" itself carries information. The linear baseline imputes medians and adds an
indicator per column (see :mod:`npl_engine.scoring._baselines`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.contract import (
    BORROWER_TYPES,
    COLLATERAL_TYPES,
    EMPLOYMENT_STATUSES,
    LEGAL_STAGES,
    SEGMENTS,
)

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURE_FAMILIES",
    "FEATURE_LABELS",
    "NUMERIC_FEATURES",
    "FeatureMatrix",
    "build_features",
    "feature_matrix",
    "learn_vocabularies",
]

_DAYS_PER_MONTH = 365.25 / 12


def _exposure() -> pl.Expr:
    return pl.col("outstanding_principal") + pl.col("accrued_interest").fill_null(0.0)


def _ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
    """Return num / den, null where the denominator is not positive."""
    return pl.when(den > 0).then(num / den).otherwise(None)


def _months_between(later: str, earlier: str) -> pl.Expr:
    return (pl.col(later) - pl.col(earlier)).dt.total_days() / _DAYS_PER_MONTH


#: Numeric features: name → (family, expression over the contract's loans table).
_NUMERIC: dict[str, tuple[str, pl.Expr]] = {
    # Financial health
    "debt_to_income": ("financial health", pl.col("debt_to_income")),
    "liquidity": ("financial health", _ratio(pl.col("liquid_assets"), _exposure())),
    "income_to_exposure": (
        "financial health",
        _ratio(12 * pl.col("monthly_income"), _exposure()),
    ),
    "monthly_income": ("financial health", pl.col("monthly_income")),
    "collateral_cover": (
        "financial health",
        _ratio(pl.col("collateral_value").fill_null(0.0), _exposure()),
    ),
    "net_collateral_cover": (
        "financial health",
        _ratio(
            (
                pl.col("collateral_value").fill_null(0.0) - pl.col("senior_liens").fill_null(0.0)
            ).clip(lower_bound=0.0),
            _exposure(),
        ),
    ),
    "senior_lien_share": (
        "financial health",
        _ratio(pl.col("senior_liens").fill_null(0.0), pl.col("collateral_value")),
    ),
    # Repayment behaviour
    "on_time_payment_rate": ("repayment behaviour", pl.col("on_time_payment_rate")),
    "min_payment_share": ("repayment behaviour", pl.col("min_payment_share")),
    "delinquencies_24m": ("repayment behaviour", pl.col("delinquencies_24m")),
    "months_since_last_payment": (
        "repayment behaviour",
        _months_between("cutoff_date", "last_payment_date"),
    ),
    "days_past_due": ("repayment behaviour", pl.col("days_past_due")),
    # Credit history
    "credit_score": ("credit history", pl.col("credit_score")),
    "account_age_months": ("credit history", pl.col("account_age_months")),
    "credit_inquiries_12m": ("credit history", pl.col("credit_inquiries_12m")),
    "negative_records": ("credit history", pl.col("negative_records")),
    # Stability / social risk
    "employment_years": ("stability", pl.col("employment_years")),
    "residence_years": ("stability", pl.col("residence_years")),
    "age": ("stability", pl.col("age")),
    # The loan itself
    "exposure": ("loan", _exposure()),
    "log_exposure": ("loan", _exposure().clip(lower_bound=1.0).log()),
    "interest_rate": ("loan", pl.col("interest_rate")),
    "accrued_interest_share": (
        "loan",
        _ratio(pl.col("accrued_interest").fill_null(0.0), _exposure()),
    ),
    "amortised_share": (
        "loan",
        1 - _ratio(pl.col("outstanding_principal"), pl.col("original_principal")),
    ),
    "months_since_default": ("loan", _months_between("cutoff_date", "default_date")),
    "loan_age_months": ("loan", _months_between("cutoff_date", "origination_date")),
    "valuation_age_months": (
        "loan",
        _months_between("cutoff_date", "collateral_valuation_date"),
    ),
}

#: Categorical features and their fixed vocabularies (``region`` is learned at fit time).
_CATEGORICAL: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "segment": ("loan", SEGMENTS),
    "legal_stage": ("loan", LEGAL_STAGES),
    "collateral_type": ("loan", COLLATERAL_TYPES),
    "borrower_type": ("loan", BORROWER_TYPES),
    "employment_status": ("stability", EMPLOYMENT_STATUSES),
    "region": ("loan", None),
}

NUMERIC_FEATURES: tuple[str, ...] = tuple(_NUMERIC)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(_CATEGORICAL)
FEATURE_FAMILIES: dict[str, str] = {
    **{name: fam for name, (fam, _) in _NUMERIC.items()},
    **{name: fam for name, (fam, _) in _CATEGORICAL.items()},
}

#: Words a collector understands, for reason codes.
FEATURE_LABELS: dict[str, str] = {
    "debt_to_income": "debt-to-income ratio",
    "liquidity": "liquid assets relative to the debt",
    "income_to_exposure": "annual income relative to the debt",
    "monthly_income": "monthly income",
    "collateral_cover": "collateral value relative to the debt",
    "net_collateral_cover": "collateral cover after senior liens",
    "senior_lien_share": "share of the collateral taken by senior liens",
    "on_time_payment_rate": "on-time payment rate",
    "min_payment_share": "share of months paying only the minimum",
    "delinquencies_24m": "delinquencies in the last 24 months",
    "months_since_last_payment": "months since the last payment",
    "days_past_due": "days past due",
    "credit_score": "credit score",
    "account_age_months": "age of the oldest credit account (months)",
    "credit_inquiries_12m": "credit inquiries in the last 12 months",
    "negative_records": "public negative records",
    "employment_years": "years with the current employer",
    "residence_years": "years at the current address",
    "age": "borrower's age",
    "exposure": "exposure",
    "log_exposure": "size of the exposure",
    "interest_rate": "contractual interest rate",
    "accrued_interest_share": "share of the debt that is accrued interest",
    "amortised_share": "share of the original principal repaid",
    "months_since_default": "months since default",
    "loan_age_months": "loan age (months)",
    "valuation_age_months": "age of the collateral valuation (months)",
    "segment": "segment",
    "legal_stage": "legal stage",
    "collateral_type": "collateral type",
    "borrower_type": "borrower type",
    "employment_status": "employment status",
    "region": "region",
}


def build_features(loans: pl.LazyFrame) -> pl.LazyFrame:
    """Features of each loan at its cut-off date.

    Parameters
    ----------
    loans
        A validated contract ``loans`` table (see :func:`npl_engine.data.read_dataset`).

    Returns
    -------
    pl.LazyFrame
        ``loan_id``, the :data:`NUMERIC_FEATURES` as Float64 (null where unknown) and the
        :data:`CATEGORICAL_FEATURES` as strings.

    Notes
    -----
    Months are 365.25 / 12 days. Exposure is outstanding principal plus accrued interest.
    Ratios are null where their denominator is not positive (e.g. collateral cover of an
    unsecured loan is 0, but its senior-lien share is null).

    Examples
    --------
    >>> import datetime as dt
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> loans = simulate(SimulationSettings(n_loans=5, seed=1)).loans
    >>> build_features(loans.lazy()).collect().width
    34
    """
    return loans.select(_FEATURES)


#: The expressions of :func:`build_features`, built once: a service scoring small batches
#: would otherwise spend more time building them than Polars spends computing them.
_FEATURES: tuple[pl.Expr, ...] = (
    pl.col("loan_id"),
    *[expr.cast(pl.Float64).alias(name) for name, (_, expr) in _NUMERIC.items()],
    *[pl.col(name).cast(pl.String) for name in _CATEGORICAL],
)


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Features as a float matrix for the models, with categorical columns as codes.

    Parameters
    ----------
    values
        (n, p) float64: numeric features, then categorical codes (NaN = missing or unseen).
    names
        Column names in order.
    categorical
        Indices of categorical columns.
    """

    values: npt.NDArray[np.float64]
    names: tuple[str, ...]
    categorical: tuple[int, ...]


def feature_matrix(
    features: pl.DataFrame, vocabularies: dict[str, tuple[str, ...]]
) -> FeatureMatrix:
    """Encode a :func:`build_features` frame as a :class:`FeatureMatrix`.

    Parameters
    ----------
    features
        Output of :func:`build_features`, collected.
    vocabularies
        Known values of each categorical feature; a value not in its vocabulary (e.g. a region
        never seen in training) is encoded as missing.
    """
    frame = features.select(_encoders(tuple((k, tuple(v)) for k, v in vocabularies.items())))
    values = frame.to_numpy().astype(np.float64, copy=False)
    names = (*NUMERIC_FEATURES, *vocabularies)
    categorical = tuple(range(len(NUMERIC_FEATURES), len(names)))
    return FeatureMatrix(values=values, names=names, categorical=categorical)


@functools.lru_cache(maxsize=8)
def _encoders(vocabularies: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[pl.Expr, ...]:
    """The columns of :func:`feature_matrix`: numeric features, then categorical codes.

    Built once per vocabulary (a model has one), not on every call.
    """
    codes = [
        pl.col(name)
        .replace_strict(list(vocab), list(range(len(vocab))), default=None, return_dtype=pl.Float64)
        .alias(name)
        for name, vocab in vocabularies
    ]
    return (*[pl.col(n) for n in NUMERIC_FEATURES], *codes)


def learn_vocabularies(features: pl.DataFrame) -> dict[str, tuple[str, ...]]:
    """Vocabularies of the categorical features: contract enums, and regions in ``features``."""
    return {
        name: fixed
        if fixed is not None
        else tuple(sorted(features[name].drop_nulls().unique().to_list()))
        for name, (_, fixed) in _CATEGORICAL.items()
    }
