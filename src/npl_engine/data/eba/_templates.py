"""The EBA NPL data templates as code: the templates, fields and code lists the importer reads.

Field numbers and names follow Commission Implementing Regulation (EU) 2023/2083 (the EBA's
implementing technical standards on NPL transaction data templates), Annex I; code lists follow
its data glossary (Annex II) as modelled by the openNPL project. A few fields of the earlier,
voluntary EBA templates (2017) that the regulation dropped but sellers still send are read too;
their number is empty.

Only the fields that feed the data contract are listed; any other field of a template file is
reported as not mapped (see :mod:`npl_engine.data.eba`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["TEMPLATES", "Field", "Template", "code_position", "field_key"]

FieldKind = Literal["text", "date", "number", "code", "codes"]

_NUMBER_PREFIX = re.compile(r"^\s*\d+\s*[.,]\s*\d+\s*[-:.]?\s*")
_NON_WORD = re.compile(r"[^0-9a-z]+")
_CODE_LETTER = re.compile(r"^\(?([a-z])\)\s*")


def field_key(text: str) -> str:
    """How headers and code values are compared: no field number, lower case, words joined by _.

    Examples
    --------
    >>> field_key("3.09 Principal balance")
    'principal_balance'
    >>> field_key("Non-financial corporations - SMEs")
    'non_financial_corporations_smes'
    """
    text = _NUMBER_PREFIX.sub("", text).lower()
    return _NON_WORD.sub("_", text).strip("_")


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a template.

    Parameters
    ----------
    number
        Field number in the regulation (``"3.09"``); empty for a field of the 2017 templates.
    label
        Field name as published.
    kind
        ``text``, ``date`` (ISO ``YYYY-MM-DD``), ``number`` (``.`` decimal), ``code`` (one
        value of ``codes``) or ``codes`` (several, separated by ``;``).
    codes
        The code list in published order: ``(a)`` is the first.
    aliases
        Other spellings sellers use for the header (openNPL's, the 2017 templates').
    """

    number: str
    label: str
    kind: FieldKind = "text"
    codes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Number and label, as messages and the mapping report name the field."""
        return f"{self.number} {self.label}" if self.number else f"{self.label} (2017 template)"

    @property
    def keys(self) -> tuple[str, ...]:
        """Normalised header spellings that mean this field."""
        return tuple(dict.fromkeys(field_key(s) for s in (self.label, *self.aliases)))

    def code_index(self) -> dict[str, int]:
        """Normalised code spellings -> position in the code list.

        A code may be given as its letter (``b`` or ``(b)``), its text, or both
        (``(b) Commercial real estate``).
        """
        index: dict[str, int] = {}
        for i, label in enumerate(self.codes):
            letter = chr(ord("a") + i)
            index[letter] = i
            index[field_key(label)] = i
            index[field_key(f"{letter} {label}")] = i
        return index


def code_position(fld: Field, value: str) -> int | None:
    """Position of ``value`` in the field's code list, or ``None`` if it is not one of them."""
    text = value.strip().lower()
    letter = _CODE_LETTER.match(text)
    if letter and len(text) <= 3:
        text = letter.group(1)
    return fld.code_index().get(field_key(text) or text)


@dataclass(frozen=True, slots=True)
class Template:
    """One template (one sheet of a workbook, or one CSV file of a folder).

    ``key`` is the number of the field that identifies a row (its first field by default).
    """

    name: str
    title: str
    fields: tuple[Field, ...]
    aliases: tuple[str, ...] = ()
    key: str = ""

    @property
    def key_field(self) -> Field:
        """The field that identifies a row, as messages quote it."""
        return self.field(self.key) if self.key else self.fields[0]

    def field(self, number_or_label: str) -> Field:
        """The field with this number (``"3.09"``) or label."""
        for fld in self.fields:
            if number_or_label in {fld.number, fld.label}:
                return fld
        msg = f"{self.title} has no field {number_or_label!r}"
        raise KeyError(msg)

    @property
    def keys(self) -> tuple[str, ...]:
        """Normalised sheet or file names that mean this template."""
        return tuple(dict.fromkeys(field_key(s) for s in (self.name, self.title, *self.aliases)))


COUNTERPARTY = Template(
    "counterparty",
    "Template 1: Counterparty",
    (
        Field("1.00", "Counterparty Group Identifier"),
        Field("1.02", "Counterparty Identifier"),
        Field("1.05", "Role of the counterparty", "code", ("Protection provider", "Borrower")),
        Field(
            "1.06",
            "Legal Type of Counterparty",
            "code",
            (
                "Non-financial corporations - SMEs",
                "Non-financial corporations - other than SMEs",
                "Households",
            ),
        ),
        Field("1.07", "Date of birth", "date"),
        Field(
            "1.17", "Country of Counterparty", "text", aliases=("Country of Registered Location",)
        ),
        Field(
            "1.32",
            "Status of legal proceedings",
            "code",
            (
                "No legal action taken",
                "Under judicial administration, receivership or similar measures",
                "Bankruptcy/insolvency",
                "Other legal measures",
            ),
        ),
        Field("", "Geographic Region of Registered Location", aliases=("Geographic Region",)),
    ),
    aliases=("template 1", "counterparties"),
    key="1.02",
)

RELATIONSHIP_BORROWER_LOAN = Template(
    "relationship_borrower_loan",
    "Template 2.1: Relationship borrower-loan",
    (Field("2.00", "Counterparty Identifier"), Field("2.01", "Loan Identifier")),
    aliases=("template 2.1", "relationship borrower loan", "relationship"),
)

RELATIONSHIP_LOAN_PROTECTION = Template(
    "relationship_loan_protection",
    "Template 2.3: Relationship loan-protection",
    (Field("2.01", "Loan Identifier"), Field("2.03", "Protection Identifier")),
    aliases=("template 2.3", "relationship loan protection", "relationship loan collateral"),
)

LOAN = Template(
    "loan",
    "Template 3: Loan",
    (
        Field("3.00", "Cut-off Date", "date"),
        Field("3.01", "Loan Identifier"),
        Field("3.02", "Inception date", "date", aliases=("Date of Origination",)),
        Field(
            "3.05",
            "Asset class",
            "code",
            (
                "Residential real estate",
                "Commercial real estate",
                "Corporate",
                "Automobile",
                "Consumer",
                "Credit card",
                "Leasing",
                "Other",
            ),
        ),
        Field("3.08", "Currency of the loan", aliases=("Loan Currency", "Currency")),
        Field("3.09", "Principal balance", "number"),
        Field(
            "3.10",
            "Accrued interest (on balance sheet)",
            "number",
            aliases=("Accrued Interest Balance (On Book)", "Accrued interest"),
        ),
        Field("3.13", "Days in past-due", "number", aliases=("Days in Past Due",)),
        Field("3.14", "Current interest rate", "number"),
        Field("3.21", "Date of last payment", "date", aliases=("Last Payment Date",)),
        Field("3.23", "Date of default", "date"),
        Field(
            "3.24",
            "Loan legal status",
            "code",
            (
                "Out of court settlement",
                "Legal proceedings",
                "No legal or out of court action taken",
            ),
        ),
        Field(
            "3.26",
            "Stage reached in legal proceedings",
            "codes",
            (
                "Initial stage",
                "Proof of claim filed",
                "Notice of intention to sell secured assets",
                "Distribution made to seller",
                "Notice of end of procedure",
            ),
        ),
        Field("", "Origination Amount", "number", aliases=("Original Principal Balance",)),
    ),
    aliases=("template 3", "loans"),
    key="3.01",
)

COLLATERAL = Template(
    "collateral",
    "Template 4.1: Collateral and guarantees",
    (
        Field("4.00", "Protection Identifier"),
        Field(
            "4.01",
            "Type of immovable property",
            "code",
            ("Office", "Retail", "Industrial", "Residential", "Other"),
            aliases=("Type of Property",),
        ),
        Field(
            "4.02",
            "Type of movable property, other collateral or guarantee",
            "code",
            (
                "Auto mobile vehicles",
                "Industrial and commercial vehicles",
                "Nautical vehicles and ships",
                "Aeroplanes",
                "Industrial equipment",
                "Office equipment",
                "Medical equipment",
                "Goods and inventory",
                "Other physical collateral",
                "Equity and debt securities",
                "Financial guarantees",
                "Life insurance policies pledged",
                "Gold, currency and deposits",
                "Other collateral",
            ),
            aliases=("Type of collateral",),
        ),
        Field("4.10", "Higher ranking loan", "number"),
        Field("4.13", "Building area (m2)", "number", aliases=("Building area m2",)),
        Field(
            "4.18",
            "Currency of the collateral or guarantee",
            aliases=("Currency of Property", "Currency"),
        ),
        Field(
            "4.19",
            "Latest internal valuation amount",
            "number",
            aliases=("Latest Valuation Amount",),
        ),
        Field(
            "4.20",
            "Date of latest internal valuation",
            "date",
            aliases=("Date of Latest Valuation",),
        ),
        Field("4.23", "Latest external valuation amount", "number"),
        Field("4.24", "Date of latest external valuation", "date"),
    ),
    aliases=("template 4.1", "template 4", "property collateral", "property_collateral"),
)

ENFORCEMENT = Template(
    "enforcement",
    "Template 4.1: Enforcement (fields 4.29-4.42)",
    (
        Field("4.00", "Protection Identifier"),
        Field("4.38", "Next auction date", "date"),
        Field("4.40", "Last auction date", "date"),
    ),
    aliases=("enforcements",),
)

HISTORICAL_COLLECTIONS = Template(
    "historical_collections",
    "Template 5: Historical collections",
    (Field("5.00", "Loan Identifier"),),
    aliases=("template 5", "historical collection", "historical repayments"),
)

TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        COUNTERPARTY,
        RELATIONSHIP_BORROWER_LOAN,
        RELATIONSHIP_LOAN_PROTECTION,
        LOAN,
        COLLATERAL,
        ENFORCEMENT,
        HISTORICAL_COLLECTIONS,
    )
}
"""The templates the importer reads, by name (the CSV file stem or the workbook sheet name)."""
