"""The data contract as code: tables, columns, types, units and allowed values.

This module is the single source of truth for ``../shared/spec/data-contract.md``. Readers,
validation, the simulator and the docs all derive from :data:`TABLES`; nothing else restates a
column list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import polars as pl

__all__ = [
    "ACTIONS",
    "ACTION_TYPES",
    "BORROWER_TYPES",
    "COLLATERAL_TYPES",
    "EMPLOYMENT_STATUSES",
    "GENDERS",
    "LEGAL_STAGES",
    "LOANS",
    "PAYMENTS",
    "PAYMENT_SOURCES",
    "SEGMENTS",
    "TABLES",
    "ColumnSpec",
    "TableSpec",
]

SEGMENTS: tuple[str, ...] = (
    "residential_mortgage",
    "commercial_real_estate",
    "sme_secured",
    "sme_unsecured",
    "consumer_unsecured",
    "credit_card",
    "auto",
)
COLLATERAL_TYPES: tuple[str, ...] = (
    "none",
    "residential",
    "commercial",
    "land",
    "vehicle",
    "other",
)
LEGAL_STAGES: tuple[str, ...] = (
    "none",
    "pre_legal",
    "proceedings",
    "judgment",
    "auction",
    "insolvency",
)
BORROWER_TYPES: tuple[str, ...] = ("individual", "company")
GENDERS: tuple[str, ...] = ("female", "male", "other", "unknown")
EMPLOYMENT_STATUSES: tuple[str, ...] = (
    "employed",
    "self_employed",
    "unemployed",
    "retired",
    "other",
    "unknown",
)
ACTION_TYPES: tuple[str, ...] = (
    "letter",
    "sms",
    "call",
    "field_visit",
    "settlement_offer",
    "restructuring",
    "legal_action",
)
PAYMENT_SOURCES: tuple[str, ...] = ("borrower", "collateral_sale", "guarantor")

Kind = Literal["string", "enum", "date", "float", "int"]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column of a contract table.

    Parameters
    ----------
    name
        Column name, exactly as it appears in users' files.
    kind
        Logical type: ``string``, ``enum``, ``date``, ``float`` or ``int``.
    required
        Whether the column must be present and non-null.
    description
        Meaning and unit, as in the contract.
    values
        Allowed values of an ``enum`` column.
    ge, le
        Inclusive bounds of a numeric column (``None`` = unbounded).
    gt
        Exclusive lower bound of a numeric column.
    default
        Value that fills an absent optional column or its nulls, where the contract gives one
        (for example ``accrued_interest`` defaults to 0).
    if_absent
        What taking the default means for the numbers, said to the user when the column is
        absent (for example ``exposure = outstanding_principal``).
    """

    name: str
    kind: Kind
    required: bool
    description: str
    values: tuple[str, ...] = ()
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    default: float | None = None
    if_absent: str = ""

    @property
    def dtype(self) -> pl.DataType:
        """Polars type the column is read into."""
        match self.kind:
            case "string":
                return pl.String()
            case "enum":
                return pl.Enum(list(self.values))
            case "date":
                return pl.Date()
            case "float":
                return pl.Float64()
            case "int":
                return pl.Int64()


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One contract table: its name, what a row is, and its columns."""

    name: str
    row: str
    columns: tuple[ColumnSpec, ...]

    def column(self, name: str) -> ColumnSpec:
        """Return the spec of column ``name``."""
        for col in self.columns:
            if col.name == name:
                return col
        msg = f"table {self.name!r} has no contract column {name!r}"
        raise KeyError(msg)

    @property
    def names(self) -> tuple[str, ...]:
        """Contract column names in contract order."""
        return tuple(c.name for c in self.columns)

    @property
    def required(self) -> tuple[str, ...]:
        """Names of required columns."""
        return tuple(c.name for c in self.columns if c.required)

    @property
    def schema(self) -> dict[str, pl.DataType]:
        """Polars schema of the contract columns."""
        return {c.name: c.dtype for c in self.columns}


def _c(name: str, kind: Kind, *, required: bool, description: str, **kw: object) -> ColumnSpec:
    return ColumnSpec(name, kind, required, description, **kw)  # type: ignore[arg-type]


LOANS = TableSpec(
    name="loans",
    row="loan, as it stood on its cut-off date",
    columns=(
        _c("loan_id", "string", required=True, description="unique within the dataset"),
        _c("borrower_id", "string", required=True, description="several loans may share one"),
        _c("segment", "enum", required=True, description="portfolio segment", values=SEGMENTS),
        _c("cutoff_date", "date", required=True, description="book: workout start; tape: common"),
        _c("origination_date", "date", required=True, description="<= default_date"),
        _c("default_date", "date", required=True, description="<= cutoff_date"),
        _c("original_principal", "float", required=True, description="> 0", gt=0.0),
        _c("outstanding_principal", "float", required=True, description=">= 0 at cut-off", ge=0.0),
        _c(
            "accrued_interest",
            "float",
            required=False,
            description=">= 0 at cut-off",
            ge=0.0,
            default=0.0,
            if_absent="exposure = outstanding_principal",
        ),
        _c("interest_rate", "float", required=True, description="contractual, annual", ge=0.0),
        _c("days_past_due", "int", required=True, description=">= 0 at cut-off", ge=0),
        _c("last_payment_date", "date", required=False, description="last payment before cut-off"),
        _c(
            "collateral_type",
            "enum",
            required=True,
            description="kind of collateral",
            values=COLLATERAL_TYPES,
        ),
        _c(
            "collateral_value",
            "float",
            required=False,
            description=">= 0, latest valuation; 0 when collateral_type is none",
            ge=0.0,
            default=0.0,
            if_absent="no collateral proceeds in any valuation",
        ),
        _c("collateral_valuation_date", "date", required=False, description="date of valuation"),
        _c(
            "senior_liens",
            "float",
            required=False,
            description=">= 0, claims on the collateral ranking ahead",
            ge=0.0,
            default=0.0,
            if_absent="no claims rank ahead of the loan on its collateral",
        ),
        _c("legal_stage", "enum", required=True, description="workout stage", values=LEGAL_STAGES),
        _c(
            "borrower_type",
            "enum",
            required=True,
            description="individual or company",
            values=BORROWER_TYPES,
        ),
        _c("region", "string", required=True, description="borrower's region"),
        _c("age", "int", required=False, description="borrower's age in years", ge=0, le=130),
        _c(
            "gender",
            "enum",
            required=False,
            description="fairness monitoring only, never a model input",
            values=GENDERS,
        ),
        _c("monthly_income", "float", required=False, description=">= 0", ge=0.0),
        _c(
            "employment_status",
            "enum",
            required=False,
            description="employment status",
            values=EMPLOYMENT_STATUSES,
        ),
        _c("employment_years", "float", required=False, description="years with employer", ge=0.0),
        _c("residence_years", "float", required=False, description="years at address", ge=0.0),
        _c("debt_to_income", "float", required=False, description="debt service / income", ge=0.0),
        _c("liquid_assets", "float", required=False, description=">= 0", ge=0.0),
        _c("credit_score", "int", required=False, description="bureau score", ge=300, le=850),
        _c("account_age_months", "int", required=False, description="oldest account age", ge=0),
        _c("credit_inquiries_12m", "int", required=False, description=">= 0", ge=0),
        _c("negative_records", "int", required=False, description="public derogatories", ge=0),
        _c(
            "on_time_payment_rate",
            "float",
            required=False,
            description="share of instalments paid on time",
            ge=0.0,
            le=1.0,
        ),
        _c(
            "min_payment_share",
            "float",
            required=False,
            description="share of months with only the minimum paid",
            ge=0.0,
            le=1.0,
        ),
        _c("delinquencies_24m", "int", required=False, description="30+ dpd events", ge=0),
    ),
)

ACTIONS = TableSpec(
    name="actions",
    row="collection action taken on a loan",
    columns=(
        _c("loan_id", "string", required=True, description="must exist in loans"),
        _c("action_date", "date", required=True, description="day of the action"),
        _c("action_type", "enum", required=True, description="kind", values=ACTION_TYPES),
        _c("cost", "float", required=True, description=">= 0, cost to the servicer", ge=0.0),
        _c(
            "settlement_discount",
            "float",
            required=False,
            description="share of exposure waived; settlement_offer only",
            ge=0.0,
            le=1.0,
        ),
    ),
)

PAYMENTS = TableSpec(
    name="payments",
    row="cash collected on a loan after its cut-off date",
    columns=(
        _c("loan_id", "string", required=True, description="must exist in loans"),
        _c("payment_date", "date", required=True, description="after the loan's cut-off date"),
        _c("amount", "float", required=True, description="> 0, gross cash collected", gt=0.0),
        _c("source", "enum", required=True, description="who paid", values=PAYMENT_SOURCES),
    ),
)

TABLES: dict[str, TableSpec] = {t.name: t for t in (LOANS, ACTIONS, PAYMENTS)}
