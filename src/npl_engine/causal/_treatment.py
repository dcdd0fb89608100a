"""Treatment, outcome and covariates of each loan of a book, for causal estimation.

The treatment of a loan is the most intensive collection action taken within
``treatment_window_days`` after its cut-off date (:data:`ACTION_INTENSITY` gives the order), or
``none``. Actions later than the window are not the treatment: they are part of what happens
afterwards, whatever the treatment was. The outcome window starts at the cut-off date (month t is
the interval (cut-off + (t - 1) months, cut-off + t months], as in scoring); a loan whose outcome
window is not fully observed before the book's ``as_of_date`` is excluded and counted, never
given a zero outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data import Dataset, month_after_cutoff, months_observed
from npl_engine.errors import NplError
from npl_engine.features import FeatureMatrix, build_features, feature_matrix

__all__ = [
    "ACTION_INTENSITY",
    "CONTROL",
    "OUTCOMES",
    "CausalData",
    "CausalSettings",
    "Outcome",
    "build_causal_data",
    "covariates",
]

#: Control arm: no action within the treatment window.
CONTROL = "none"

#: Collection actions from least to most intensive; a loan with several actions in the window is
#: treated with the last one of this order it received (a reminder letter before a call is a call).
ACTION_INTENSITY: tuple[str, ...] = (
    CONTROL,
    "sms",
    "letter",
    "call",
    "field_visit",
    "settlement_offer",
    "restructuring",
    "legal_action",
)

Outcome = Literal["recovery_rate", "recovered", "net_collections"]
OUTCOMES: tuple[str, ...] = ("recovery_rate", "recovered", "net_collections")


@dataclass(frozen=True, slots=True)
class CausalSettings:
    """What is estimated: the outcome, its window and the treatment window.

    Parameters
    ----------
    outcome
        ``recovery_rate``: collections within ``horizon_months`` after cut-off / exposure;
        ``recovered``: 1 if collections within ``recovery_horizon_months`` reach
        ``recovery_threshold`` × exposure (the contract's definition), else 0;
        ``net_collections``: collections within ``horizon_months`` minus the cost of the actions
        taken within the treatment window, in money.
    horizon_months
        Outcome window of ``recovery_rate`` and ``net_collections`` (default 60).
    treatment_window_days
        Actions taken on days 0 .. this many days after cut-off make the treatment (default 90).
    recovery_horizon_months, recovery_threshold
        The contract's recovery definition (defaults 24 months, 0.5).
    """

    outcome: Outcome = "recovery_rate"
    horizon_months: int = 60
    treatment_window_days: int = 90
    recovery_horizon_months: int = 24
    recovery_threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            msg = f"outcome must be one of {', '.join(OUTCOMES)}, not {self.outcome!r}"
            raise ValueError(msg)
        if not 1 <= self.horizon_months <= 600:
            msg = f"horizon_months must be between 1 and 600, got {self.horizon_months}"
            raise ValueError(msg)
        if not 1 <= self.treatment_window_days <= 3650:
            msg = (
                "treatment_window_days must be between 1 and 3650, "
                f"got {self.treatment_window_days}"
            )
            raise ValueError(msg)
        if not 0.0 < self.recovery_threshold <= 1.0:
            msg = f"recovery_threshold must be in (0, 1], got {self.recovery_threshold}"
            raise ValueError(msg)

    @property
    def window_months(self) -> int:
        """Months after cut-off that must be observed for the outcome to be known."""
        if self.outcome == "recovered":
            return self.recovery_horizon_months
        return self.horizon_months


@dataclass(frozen=True, slots=True)
class CausalData:
    """One row per analysed loan: treatment, outcome and covariates.

    Parameters
    ----------
    frame
        ``loan_id``, ``treatment`` (action name), ``outcome``, ``exposure``, ``collections``
        (within the outcome window), ``action_cost`` (actions within the treatment window),
        in the order of the loans table (censored loans removed).
    covariates
        Scoring features of the same loans (see :func:`covariates`).
    settings
        What was built.
    excluded_censored
        Loans dropped because their outcome window ends after ``as_of_date``.
    """

    frame: pl.DataFrame
    covariates: FeatureMatrix
    settings: CausalSettings
    excluded_censored: int

    @property
    def treatment(self) -> npt.NDArray[np.str_]:
        """Treatment of each loan, as strings."""
        return self.frame["treatment"].to_numpy().astype(str)

    @property
    def outcome(self) -> npt.NDArray[np.float64]:
        """Outcome of each loan, as float64."""
        return self.frame["outcome"].cast(pl.Float64).to_numpy()


def covariates(loans: pl.LazyFrame, vocabularies: dict[str, tuple[str, ...]]) -> FeatureMatrix:
    """Scoring features known at cut-off as a numeric matrix (categorical columns as codes).

    Parameters
    ----------
    loans
        A validated contract ``loans`` table.
    vocabularies
        Categorical vocabularies (see :func:`npl_engine.features.learn_vocabularies`).
    """
    return feature_matrix(build_features(loans).collect(), vocabularies)


def treatments(actions: pl.LazyFrame, loans: pl.LazyFrame, *, window_days: int) -> pl.LazyFrame:
    """Treatment and cost of the actions within the window, per loan (``none`` without any)."""
    rank = {name: i for i, name in enumerate(ACTION_INTENSITY)}
    days = (pl.col("action_date") - pl.col("cutoff_date")).dt.total_days()
    in_window = (
        actions.join(loans.select("loan_id", "cutoff_date"), on="loan_id")
        .filter((days >= 0) & (days <= window_days))
        .with_columns(
            intensity=pl.col("action_type")
            .cast(pl.String)
            .replace_strict(rank, default=len(rank), return_dtype=pl.Int32)
        )
    )
    per_loan = in_window.group_by("loan_id").agg(
        treatment=pl.col("action_type").cast(pl.String).sort_by("intensity").last(),
        action_cost=pl.col("cost").sum(),
    )
    return loans.select("loan_id").join(per_loan, on="loan_id", how="left", maintain_order="left")


def build_causal_data(
    dataset: Dataset,
    settings: CausalSettings,
    vocabularies: dict[str, tuple[str, ...]],
) -> CausalData:
    """Treatment, outcome and covariates of each loan of a book whose outcome is observed.

    Parameters
    ----------
    dataset
        A validated book: ``actions`` and ``payments`` and an ``as_of_date`` are needed.
    settings
        Outcome and windows.
    vocabularies
        Categorical vocabularies of the covariates.

    Returns
    -------
    CausalData
        Analysed loans, in the order of the loans table, and the number excluded as censored.

    Raises
    ------
    NplError
        If the dataset is not a book, or no loan has a fully observed outcome window.

    Notes
    -----
    Collections are all payments (borrower, collateral sale, guarantor) in months
    1 .. window after the cut-off; a loan is observed through month k when month k has ended by
    ``as_of_date`` (:func:`npl_engine.data.months_observed`).
    """
    if dataset.actions is None or dataset.payments is None or dataset.as_of_date is None:
        msg = (
            "causal estimation needs a book: loans, actions and payments "
            "(the dataset lacks actions or payments)"
        )
        raise NplError(msg)
    window = settings.window_months
    loans = dataset.loans.select(
        "loan_id",
        "cutoff_date",
        exposure=pl.col("outstanding_principal") + pl.col("accrued_interest"),
        months_observed=months_observed(pl.col("cutoff_date"), pl.lit(dataset.as_of_date)),
    )
    paid = (
        dataset.payments.join(loans.select("loan_id", "cutoff_date"), on="loan_id")
        .filter(month_after_cutoff(pl.col("payment_date"), pl.col("cutoff_date")) <= window)
        .group_by("loan_id")
        .agg(collections=pl.col("amount").sum())
    )
    treated = treatments(dataset.actions, loans, window_days=settings.treatment_window_days)
    full = (
        loans.join(paid, on="loan_id", how="left", maintain_order="left")
        .join(treated, on="loan_id", how="left", maintain_order="left")
        .with_columns(
            pl.col("collections").fill_null(0.0),
            pl.col("action_cost").fill_null(0.0),
            pl.col("treatment").fill_null(CONTROL),
            observed=pl.col("months_observed") >= window,
        )
        .collect()
    )
    keep = full["observed"]
    excluded = int((~keep).sum())
    if excluded == full.height:
        msg = (
            f"no loan has its {window}-month outcome window observed before as_of_date "
            f"{dataset.as_of_date}: shorten --horizon-months or use a longer history"
        )
        raise NplError(msg)
    if settings.outcome == "recovery_rate":
        outcome = pl.col("collections") / pl.col("exposure")
    elif settings.outcome == "recovered":
        outcome = (pl.col("collections") >= settings.recovery_threshold * pl.col("exposure")).cast(
            pl.Float64
        )
    else:
        outcome = pl.col("collections") - pl.col("action_cost")
    frame = full.filter(keep).select(
        "loan_id", "treatment", outcome.alias("outcome"), "exposure", "collections", "action_cost"
    )
    matrix = covariates(dataset.loans, vocabularies)
    mask = keep.to_numpy()
    kept = FeatureMatrix(
        values=matrix.values[mask], names=matrix.names, categorical=matrix.categorical
    )
    return CausalData(frame=frame, covariates=kept, settings=settings, excluded_censored=excluded)
