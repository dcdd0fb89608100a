"""The mapping report of an EBA import: each contract column's source, and what was not mapped."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import polars as pl

from npl_engine.data.contract import LOANS
from npl_engine.data.eba._read import TemplateSet
from npl_engine.data.eba._templates import (
    COLLATERAL,
    COUNTERPARTY,
    ENFORCEMENT,
    LOAN,
    RELATIONSHIP_BORROWER_LOAN,
    RELATIONSHIP_LOAN_PROTECTION,
    Template,
    field_key,
)

__all__ = ["BorrowerKey", "ColumnMapping", "ImportReport", "build_report"]

BorrowerKey = Literal["counterparty", "group"]
"""Where ``borrower_id`` comes from: the Counterparty Identifier or the counterparty group."""


@dataclass(frozen=True, slots=True)
class ColumnMapping:
    """Where one contract column came from: the template fields, the rule, rows derived."""

    column: str
    source: str
    rule: str = ""
    rows_derived: int = 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import read, how each contract column was made, and what was not mapped.

    Parameters
    ----------
    source
        The template set (folder or workbook).
    n_loans
        Loans written.
    templates
        Per template read: its file or sheet, rows, fields read and fields not mapped.
    columns
        Per contract ``loans`` column that was filled: its source fields and rule.
    not_mapped
        Contract columns left empty, and why.
    tables
        Per other contract table (``payments``, ``actions``): why it was not written.
    notes
        Counts worth knowing (joint loans, shared protections, unlinked counterparties).
    ignored
        Files or sheets that are no template the importer reads.
    """

    source: str
    n_loans: int
    templates: list[dict[str, object]] = field(default_factory=list)
    columns: list[ColumnMapping] = field(default_factory=list)
    not_mapped: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The report as plain JSON-ready data."""
        return asdict(self)

    def to_markdown(self) -> str:
        """The report as a Markdown document a reviewer can read."""
        lines = [
            "# EBA template import",
            "",
            f"Source: `{self.source}`. Loans written: {self.n_loans:,}.",
            "",
            "## Contract columns and their source",
            "",
            "| contract column | source field(s) | rule | rows derived |",
            "|---|---|---|---:|",
        ]
        lines += [
            f"| {c.column} | {c.source} | {c.rule} | {c.rows_derived:,} |" for c in self.columns
        ]
        lines += ["", "## Contract columns not mapped", "", "| column | why |", "|---|---|"]
        lines += [f"| {column} | {why} |" for column, why in self.not_mapped.items()]
        lines += ["", "## Contract tables not written", ""]
        lines += [f"- `{table}`: {why}" for table, why in self.tables.items()]
        lines += ["", "## Templates read", ""]
        for t in self.templates:
            lines.append(f"- {t['title']} from `{t['source']}`: {t['rows']:,} rows")
            unmapped = t.get("fields_not_mapped") or []
            if unmapped:
                shown = ", ".join(f"`{f}`" for f in unmapped)  # type: ignore[attr-defined]
                lines.append(f"  - fields not mapped (not used by the data contract): {shown}")
        if self.ignored:
            lines += ["", "Files or sheets that are no template: " + ", ".join(self.ignored)]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def _source(template: Template, *numbers: str) -> str:
    names = [template.field(n).name for n in numbers]
    return f"{template.title}: " + "; ".join(names)


def _count(series: pl.Series) -> int:
    return int(series.sum())


def build_report(
    path: str | Path,
    templates: TemplateSet,
    frame: pl.DataFrame,
    *,
    loans: pl.DataFrame,
    borrowers: pl.DataFrame,
    borrower_id: BorrowerKey,
    passed: list[str],
    notes: list[str],
) -> ImportReport:
    """Say where every contract column came from and what could not be mapped."""
    derived_principal = _count(loans["origination_amount"].is_null())
    zero_interest = _count(loans["accrued_interest"].is_null())
    from_country = _count(borrowers["geographic_region"].is_null())
    if borrower_id == "group":
        borrower = ColumnMapping(
            "borrower_id",
            _source(COUNTERPARTY, "1.00", "1.02"),
            "the borrower's counterparty group, else the counterparty (--borrower-id group)",
        )
    else:
        borrower = ColumnMapping(
            "borrower_id",
            _source(RELATIONSHIP_BORROWER_LOAN, "2.00", "2.01"),
            "the counterparty linked to the loan whose role (1.05) is not protection provider;"
            " the first one listed for joint loans",
        )
    coll = f"{COLLATERAL.title} via {RELATIONSHIP_LOAN_PROTECTION.title}"
    columns = [
        ColumnMapping("loan_id", _source(LOAN, "3.01")),
        borrower,
        ColumnMapping(
            "segment",
            _source(LOAN, "3.05"),
            "(a) residential_mortgage, (b) commercial_real_estate, (c) Corporate: sme_secured"
            " when a protection is linked, else sme_unsecured, (d) auto, (e) consumer_unsecured,"
            " (f) credit_card",
        ),
        ColumnMapping("cutoff_date", _source(LOAN, "3.00")),
        ColumnMapping("origination_date", _source(LOAN, "3.02")),
        ColumnMapping("default_date", _source(LOAN, "3.23")),
        ColumnMapping(
            "original_principal",
            _source(LOAN, "Origination Amount", "3.09"),
            "the 2017 templates' Origination Amount; where absent, the principal balance 3.09"
            " (a lower bound)",
            derived_principal,
        ),
        ColumnMapping("outstanding_principal", _source(LOAN, "3.09")),
        ColumnMapping(
            "accrued_interest",
            _source(LOAN, "3.10"),
            "empty means 0 (the contract's default)",
            zero_interest,
        ),
        ColumnMapping("interest_rate", _source(LOAN, "3.14"), "percentage / 100"),
        ColumnMapping("days_past_due", _source(LOAN, "3.13")),
        ColumnMapping("last_payment_date", _source(LOAN, "3.21")),
        ColumnMapping(
            "collateral_type",
            f"{coll}: 4.01, 4.02, 4.13",
            "4.01 (a-c) Office, Retail, Industrial: commercial; (d) residential; (e) Other:"
            " land when its building area 4.13 is 0, else other; 4.02 (a-b) vehicles: vehicle,"
            " else other; no protection: none. Several protections: the largest",
        ),
        ColumnMapping(
            "collateral_value",
            f"{coll}: 4.19, else 4.23",
            "latest internal valuation, else external; summed over the loan's protections,"
            " a shared protection split by principal balance",
        ),
        ColumnMapping("collateral_valuation_date", f"{coll}: 4.20, else 4.24"),
        ColumnMapping("senior_liens", f"{coll}: 4.10", "split and summed as collateral_value"),
        ColumnMapping(
            "legal_stage",
            f"{COUNTERPARTY.title}: 1.32; {ENFORCEMENT.title}: 4.38, 4.40; {LOAN.title}: 3.24,"
            " 3.26",
            "insolvency when the borrower's 1.32 is (b) or (c); auction when a protection has"
            " a next or last auction date; legal proceedings: judgment from stage (c) notice of"
            " intention to sell on, else proceedings; out of court settlement: pre_legal;"
            " no action: none",
        ),
        ColumnMapping(
            "borrower_type",
            _source(COUNTERPARTY, "1.06"),
            "(c) Households: individual, else company",
        ),
        ColumnMapping(
            "region",
            _source(COUNTERPARTY, "Geographic Region of Registered Location", "1.17"),
            "the 2017 templates' region, else the country",
            from_country,
        ),
        ColumnMapping("age", _source(COUNTERPARTY, "1.07"), "whole years to the cut-off date"),
    ]
    columns += [
        ColumnMapping(field_key(h), f"{LOAN.title}: column {h!r} (not an EBA field)")
        for h in passed
    ]
    given = {c.column for c in columns}
    not_mapped = {
        c.name: "no field in the EBA templates" for c in LOANS.columns if c.name not in given
    }
    tables = {
        "payments": "the templates hold no collections after the cut-off date; Template 5"
        " (historical collections) is monthly cash before it, which the contract's payments"
        " table does not hold",
        "actions": "no template records dated collection actions",
    }
    summaries = []
    for table in templates.tables.values():
        passed_here = set(passed) if table.template is LOAN else set()
        summaries.append(
            {
                "template": table.template.name,
                "title": table.template.title,
                "source": table.source,
                "rows": table.frame.height,
                "fields_read": [
                    f.name for f in table.template.fields if f.label in table.frame.columns
                ],
                "fields_not_mapped": [h for h in table.unknown if h not in passed_here],
            }
        )
    if "historical_collections" in templates.tables:
        notes = [
            *notes,
            "Template 5 (historical collections) was read but not mapped: see tables.payments",
        ]
    return ImportReport(
        source=str(path),
        n_loans=frame.height,
        templates=summaries,
        columns=columns,
        not_mapped=not_mapped,
        tables=tables,
        notes=list(notes),
        ignored=list(templates.ignored),
    )
