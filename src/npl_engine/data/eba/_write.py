"""Writing contract loans as an EBA template set: what `npl simulate --format eba` produces."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from npl_engine.data.contract import LOANS
from npl_engine.data.eba._import import _FROM_TEMPLATES
from npl_engine.data.eba._templates import (
    COLLATERAL,
    COUNTERPARTY,
    ENFORCEMENT,
    LOAN,
    RELATIONSHIP_BORROWER_LOAN,
    RELATIONSHIP_LOAN_PROTECTION,
    Template,
)
from npl_engine.errors import NplError

__all__ = ["TEMPLATE_FILES", "template_frames", "write_template_files"]

TEMPLATE_FILES = tuple(
    f"{t.name}.csv"
    for t in (
        COUNTERPARTY,
        RELATIONSHIP_BORROWER_LOAN,
        LOAN,
        COLLATERAL,
        RELATIONSHIP_LOAN_PROTECTION,
        ENFORCEMENT,
    )
)
"""The files :func:`write_template_files` writes."""

_ASSET_CLASS = {
    "residential_mortgage": "Residential real estate",
    "commercial_real_estate": "Commercial real estate",
    "sme_secured": "Corporate",
    "sme_unsecured": "Corporate",
    "consumer_unsecured": "Consumer",
    "credit_card": "Credit card",
    "auto": "Automobile",
}
_IMMOVABLE = {"residential": "Residential", "commercial": "Office", "land": "Other"}
_MOVABLE = {"vehicle": "Auto mobile vehicles", "other": "Other physical collateral"}
_LEGAL_STATUS = {
    "none": "No legal or out of court action taken",
    "pre_legal": "Out of court settlement",
}
_STAGE = {
    "proceedings": "Initial stage",
    "insolvency": "Initial stage",
    "judgment": "Notice of intention to sell secured assets",
    "auction": "Notice of intention to sell secured assets",
}
_CURRENCY = "EUR"
_COUNTRY = "IT"


def _label(template: Template, number: str) -> str:
    return template.field(number).label


def template_frames(loans: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The template tables that describe ``loans``, by template name.

    Parameters
    ----------
    loans
        A contract ``loans`` table (typed, as :func:`npl_engine.data.read_dataset` gives it).

    Returns
    -------
    dict[str, pl.DataFrame]
        Counterparty, the two relationship templates, loan, collateral and enforcement.
        Each loan gets its own counterparty (identifier ``C-`` + loan_id) whose counterparty
        group (1.00) is the loan's ``borrower_id``, and each secured loan one protection
        (``P-`` + loan_id). Contract columns with no EBA field are added to the loan template
        under their contract names, as a seller adds its own columns.

    Raises
    ------
    NplError
        If a loan in ``auction`` has no collateral: the templates record auctions per
        protection.

    Notes
    -----
    Amounts are written in EUR and the counterparty's country as IT (the simulator's
    regions are Italian). Interest rates are written as percentages.
    """
    secured = pl.col("collateral_type") != "none"
    bad = loans.filter((pl.col("legal_stage") == "auction") & ~secured)
    if bad.height:
        msg = (
            f"{bad.height:,} loans in legal_stage auction have no collateral (e.g."
            f" {', '.join(bad['loan_id'].head(3))}); the EBA templates record auctions per"
            " protection"
        )
        raise NplError(msg)
    cpty_id = pl.lit("C-") + pl.col("loan_id")
    prot_id = pl.lit("P-") + pl.col("loan_id")
    stage = pl.col("legal_stage").cast(pl.String)
    counterparty = loans.select(
        pl.col("borrower_id").alias(_label(COUNTERPARTY, "1.00")),
        cpty_id.alias(_label(COUNTERPARTY, "1.02")),
        pl.lit("Borrower").alias(_label(COUNTERPARTY, "1.05")),
        pl.when(pl.col("borrower_type") == "individual")
        .then(pl.lit("Households"))
        .otherwise(pl.lit("Non-financial corporations - SMEs"))
        .alias(_label(COUNTERPARTY, "1.06")),
        pl.col("cutoff_date")
        .dt.offset_by(pl.format("-{}y", pl.col("age")))
        .alias(_label(COUNTERPARTY, "1.07")),
        pl.lit(_COUNTRY).alias(_label(COUNTERPARTY, "1.17")),
        pl.when(stage == "insolvency")
        .then(pl.lit("Bankruptcy/insolvency"))
        .when(stage.is_in(["none", "pre_legal"]))
        .then(pl.lit("No legal action taken"))
        .otherwise(pl.lit("Other legal measures"))
        .alias(_label(COUNTERPARTY, "1.32")),
        pl.col("region").alias(_label(COUNTERPARTY, "Geographic Region of Registered Location")),
    )
    borrower_loan = loans.select(
        cpty_id.alias(_label(RELATIONSHIP_BORROWER_LOAN, "2.00")),
        pl.col("loan_id").alias(_label(RELATIONSHIP_BORROWER_LOAN, "2.01")),
    )
    extra = [c for c in LOANS.names if c not in _FROM_TEMPLATES and c in loans.columns]
    loan = loans.select(
        pl.col("cutoff_date").alias(_label(LOAN, "3.00")),
        pl.col("loan_id").alias(_label(LOAN, "3.01")),
        pl.col("origination_date").alias(_label(LOAN, "3.02")),
        pl.col("segment").cast(pl.String).replace_strict(_ASSET_CLASS).alias(_label(LOAN, "3.05")),
        pl.lit(_CURRENCY).alias(_label(LOAN, "3.08")),
        pl.col("outstanding_principal").alias(_label(LOAN, "3.09")),
        pl.col("accrued_interest").alias(_label(LOAN, "3.10")),
        pl.col("days_past_due").alias(_label(LOAN, "3.13")),
        (pl.col("interest_rate") * 100).round(8).alias(_label(LOAN, "3.14")),
        pl.col("last_payment_date").alias(_label(LOAN, "3.21")),
        pl.col("default_date").alias(_label(LOAN, "3.23")),
        stage.replace_strict(_LEGAL_STATUS, default="Legal proceedings").alias(
            _label(LOAN, "3.24")
        ),
        stage.replace_strict(_STAGE, default=None, return_dtype=pl.String).alias(
            _label(LOAN, "3.26")
        ),
        pl.col("original_principal").alias(_label(LOAN, "Origination Amount")),
        *[
            pl.col(c).cast(pl.String) if c in {"gender", "employment_status"} else pl.col(c)
            for c in extra
        ],
    )
    kind = pl.col("collateral_type").cast(pl.String)
    collateral = loans.filter(secured).select(
        prot_id.alias(_label(COLLATERAL, "4.00")),
        kind.replace_strict(_IMMOVABLE, default=None, return_dtype=pl.String).alias(
            _label(COLLATERAL, "4.01")
        ),
        kind.replace_strict(_MOVABLE, default=None, return_dtype=pl.String).alias(
            _label(COLLATERAL, "4.02")
        ),
        pl.col("senior_liens").alias(_label(COLLATERAL, "4.10")),
        pl.when(kind == "land").then(0.0).alias(_label(COLLATERAL, "4.13")),
        pl.lit(_CURRENCY).alias(_label(COLLATERAL, "4.18")),
        pl.col("collateral_value").alias(_label(COLLATERAL, "4.19")),
        pl.col("collateral_valuation_date").alias(_label(COLLATERAL, "4.20")),
    )
    loan_protection = loans.filter(secured).select(
        pl.col("loan_id").alias(_label(RELATIONSHIP_LOAN_PROTECTION, "2.01")),
        prot_id.alias(_label(RELATIONSHIP_LOAN_PROTECTION, "2.03")),
    )
    enforcement = loans.filter(pl.col("legal_stage") == "auction").select(
        prot_id.alias(_label(ENFORCEMENT, "4.00")),
        pl.col("cutoff_date").dt.offset_by("3mo").alias(_label(ENFORCEMENT, "4.38")),
    )
    return {
        COUNTERPARTY.name: counterparty,
        RELATIONSHIP_BORROWER_LOAN.name: borrower_loan,
        LOAN.name: loan,
        COLLATERAL.name: collateral,
        RELATIONSHIP_LOAN_PROTECTION.name: loan_protection,
        ENFORCEMENT.name: enforcement,
    }


def write_template_files(loans: pl.DataFrame, folder: str | Path) -> None:
    """Write ``loans`` as an EBA template set: one CSV file per template in ``folder``.

    Parameters
    ----------
    loans
        A contract ``loans`` table.
    folder
        An existing folder (typically the staging folder of
        :func:`npl_engine.data.writers.atomic_folder`).

    Notes
    -----
    Headers are the published field names; codes are written as their published text;
    dates as ISO ``YYYY-MM-DD``. See :func:`template_frames`.
    """
    for name, frame in template_frames(loans).items():
        frame.write_csv(Path(folder) / f"{name}.csv")
