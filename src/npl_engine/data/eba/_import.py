"""Mapping an EBA template set to the contract's ``loans`` table, with a report of every step."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from npl_engine.data.contract import LOANS
from npl_engine.data.dataset import DatasetKind
from npl_engine.data.eba._read import TemplateSet, TemplateTable, read_template_set
from npl_engine.data.eba._report import BorrowerKey, ImportReport, build_report
from npl_engine.data.eba._templates import (
    COLLATERAL,
    COUNTERPARTY,
    ENFORCEMENT,
    LOAN,
    RELATIONSHIP_BORROWER_LOAN,
    RELATIONSHIP_LOAN_PROTECTION,
    Field,
    code_position,
    field_key,
)
from npl_engine.data.validation import RawTable, parse_column, validate_tables
from npl_engine.data.writers import atomic_folder, write_tables
from npl_engine.errors import ContractError, NplError, where_in_rows

__all__ = [
    "REPORT_FILES",
    "EbaImport",
    "TemplateError",
    "TemplateProblem",
    "import_eba",
]

REPORT_FILES = ("import_report.json", "import_report.md")
"""The mapping report, written beside the imported dataset's tables."""


_MAX_EXAMPLES = 5
_SEGMENT_OF_ASSET_CLASS = {
    0: "residential_mortgage",
    1: "commercial_real_estate",
    3: "auto",
    4: "consumer_unsecured",
    5: "credit_card",
}
_CORPORATE, _LEASING, _OTHER_ASSET = 2, 6, 7
_HOUSEHOLDS = 2
_PROTECTION_PROVIDER = 0
_INSOLVENCY_STATUSES = (1, 2)  # judicial administration / receivership; bankruptcy / insolvency
_OUT_OF_COURT, _LEGAL_PROCEEDINGS, _NO_ACTION = 0, 1, 2
_JUDGMENT_STAGE = 2  # (c) notice of intention to sell secured assets, or later
_IMMOVABLE_TYPE = {0: "commercial", 1: "commercial", 2: "commercial", 3: "residential", 4: "other"}
_VEHICLES = (0, 1)


@dataclass(frozen=True, slots=True)
class TemplateProblem:
    """One way a template set cannot be mapped: template, field, rule, offending identifiers."""

    template: str
    field: str
    rule: str
    n_rows: int = 0
    examples: tuple[str, ...] = ()

    def __str__(self) -> str:
        rows = where_in_rows(self.n_rows, self.examples)
        return f"{self.template}, field {self.field}: {self.rule}{rows}"


class TemplateError(NplError):
    """A template set cannot be mapped to the data contract; carries every problem found."""

    def __init__(self, problems: list[TemplateProblem]) -> None:
        self.problems = list(problems)
        lines = [f"the EBA template set cannot be imported ({len(self.problems)} problem(s)):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, slots=True)
class EbaImport:
    """The result of :func:`import_eba`: the contract ``loans`` table and the mapping report."""

    loans: pl.DataFrame
    report: ImportReport

    def save(self, folder: str | Path, *, fmt: str = "parquet") -> Path:
        """Write the dataset (``loans``) and the report (JSON and Markdown), atomically.

        Parameters
        ----------
        folder
            Dataset folder to write; replaced as a whole if it holds only a dataset and a
            previous report.
        fmt
            ``parquet`` or ``csv`` for the ``loans`` table.

        Returns
        -------
        Path
            ``folder``.
        """
        folder = Path(folder)
        with atomic_folder(folder, allowed=frozenset(REPORT_FILES)) as staging:
            write_tables(staging, loans=self.loans, fmt=fmt)
            text = json.dumps(self.report.to_dict(), indent=2, default=str) + "\n"
            (staging / REPORT_FILES[0]).write_text(text)
            (staging / REPORT_FILES[1]).write_text(self.report.to_markdown())
        return folder


# -- parsing template fields -----------------------------------------------------------------


class _Fields:
    """Parses template fields into typed series and collects every problem on the way."""

    def __init__(self) -> None:
        self.problems: list[TemplateProblem] = []

    def problem(
        self, table: TemplateTable, fld: Field, rule: str, mask: pl.Series | None = None
    ) -> None:
        n_rows, examples = 0, ()
        if mask is not None:
            n_rows = int(mask.sum())
            ids = _ids(table).filter(mask).unique(maintain_order=True)
            examples = tuple(ids.head(_MAX_EXAMPLES).to_list())
        self.problems.append(
            TemplateProblem(table.template.title, fld.name, rule, n_rows, examples)
        )

    def get(self, table: TemplateTable, number: str, *, required: bool) -> pl.Series | None:
        """The field as a typed series (codes as their position), ``None`` when absent."""
        fld = table.template.field(number)
        frame = table.frame
        if fld.label not in frame.columns:
            if required:
                where = f"the header of {table.source}"
                self.problems.append(
                    TemplateProblem(
                        table.template.title,
                        fld.name,
                        f"is missing: no column of {where} is this field",
                    )
                )
            return None
        raw = frame[fld.label]
        parsed = self._parse(table, fld, raw)
        if required:
            missing = raw.is_null()
            if missing.any():
                self.problem(table, fld, "must not be empty", missing)
        return parsed

    def _parse(self, table: TemplateTable, fld: Field, raw: pl.Series) -> pl.Series:
        match fld.kind:
            case "text":
                return raw
            case "date":
                parsed = raw.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
                what = "a date in the form YYYY-MM-DD"
            case "number":
                number = raw.cast(pl.Float64, strict=False)
                parsed = pl.select(pl.when(number.is_finite()).then(number)).to_series()
                what = "a number with '.' as decimal separator"
            case "code" | "codes":
                return self._codes(table, fld, raw)
        bad = raw.is_not_null() & parsed.is_null()
        if bad.any():
            found = ", ".join(repr(v) for v in raw.filter(bad).unique(maintain_order=True).head(3))
            self.problem(table, fld, f"cannot be read as {what} (found {found})", bad)
        return parsed.alias(fld.label)

    def _codes(self, table: TemplateTable, fld: Field, raw: pl.Series) -> pl.Series:
        """Codes as their position in the code list; for ``codes``, the furthest one given."""
        positions: dict[str, int] = {}
        unknown: list[str] = []
        for value in raw.drop_nulls().unique(maintain_order=True).to_list():
            parts = [p for p in value.split(";") if p.strip()] if fld.kind == "codes" else [value]
            found = [code_position(fld, p) for p in parts]
            if any(f is None for f in found) or not found:
                unknown.append(value)
            else:
                positions[value] = max(f for f in found if f is not None)
        if unknown:
            bad = raw.is_in(unknown)
            allowed = "; ".join(f"({chr(ord('a') + i)}) {c}" for i, c in enumerate(fld.codes))
            shown = ", ".join(repr(v) for v in unknown[:3])
            self.problem(table, fld, f"has unknown code(s) {shown}; allowed: {allowed}", bad)
        return raw.replace_strict(positions, default=None, return_dtype=pl.Int64).alias(fld.label)

    def unique(self, table: TemplateTable, keys: list[pl.Series]) -> None:
        """A problem when an identifier (or a pair of them) appears more than once."""
        frame = pl.DataFrame(keys)
        complete = frame.select(pl.all_horizontal(pl.all().is_not_null())).to_series()
        duplicated = frame.is_duplicated() & complete
        if duplicated.any():
            fld = table.template.field(keys[0].name)
            rule = "duplicate identifier: these appear more than once"
            if len(keys) > 1:
                rule = "duplicate identifier pair: these links appear more than once"
            self.problem(table, fld, rule, duplicated)

    def orphans(self, table: TemplateTable, ids: pl.Series, known: pl.Series, *, rule: str) -> None:
        """A problem for identifiers that the template they point to does not hold."""
        bad = ids.is_not_null() & ~ids.is_in(known.drop_nulls().implode())
        if bad.any():
            fld = table.template.field(ids.name)
            found = ", ".join(repr(v) for v in ids.filter(bad).unique(maintain_order=True).head(3))
            self.problem(table, fld, f"{rule} (found {found})", bad)

    def raise_if_any(self) -> None:
        if self.problems:
            raise TemplateError(self.problems)


def _ids(table: TemplateTable) -> pl.Series:
    """What an example row is called: its first identifier field, else its row number."""
    key = table.template.key_field.label
    rows = pl.Series([f"{table.source} row {i + 2}" for i in range(table.frame.height)])
    if key not in table.frame.columns:
        return rows
    ids = table.frame[key]
    return pl.select(pl.when(ids.is_not_null()).then(ids).otherwise(rows)).to_series()


# -- the mapping -----------------------------------------------------------------------------


def _required(templates: TemplateSet, fields: _Fields) -> None:
    for template in (LOAN, COUNTERPARTY, RELATIONSHIP_BORROWER_LOAN):
        if template.name not in templates.tables:
            fields.problems.append(
                TemplateProblem(
                    template.title,
                    "-",
                    f"is missing: expected a file {template.name}.csv (or a sheet"
                    f" {template.name!r}) in the template set",
                )
            )
    if (
        RELATIONSHIP_LOAN_PROTECTION.name in templates.tables
        and COLLATERAL.name not in templates.tables
    ):
        fields.problems.append(
            TemplateProblem(
                COLLATERAL.title,
                "-",
                f"is missing, but {RELATIONSHIP_LOAN_PROTECTION.title} links loans to protections",
            )
        )
    fields.raise_if_any()


def import_eba(path: str | Path, *, borrower_id: BorrowerKey = "counterparty") -> EbaImport:
    """Map an EBA NPL template set to the contract's ``loans`` table.

    Parameters
    ----------
    path
        A folder of template CSV files or an ``.xlsx`` workbook (see docs/import.md for the
        file and sheet names and every field read).
    borrower_id
        ``counterparty``: a loan's ``borrower_id`` is its borrower's Counterparty Identifier
        (1.02); ``group``: its Counterparty Group Identifier (1.00), where given, else 1.02.

    Returns
    -------
    EbaImport
        The ``loans`` table, typed and valid against the data contract, and the report.

    Raises
    ------
    TemplateError
        Listing every problem found: a mandatory field missing or empty, a value that cannot
        be read, an unknown code, a duplicate identifier, an orphan row (a link or collateral
        that points to nothing, or that nothing points to), a code with no contract value.
        Each names the template, the field and example identifiers.
    ContractError
        If the mapped loans still break a rule of the data contract (for example a default
        date before the origination date).
    NplError
        If the set cannot be read at all.

    Notes
    -----
    Interest rates in the templates are percentages (4.5 = 4.5 %); the contract's are
    decimals. Amounts are in the loans' currency; a set with several currencies is refused.

    Examples
    --------
    The hand-made set of the tests (run from the repository's root):

    >>> result = import_eba("tests/data/eba/eba_templates")
    >>> result.loans.select("loan_id", "segment", "legal_stage").head(3).rows()
    [('L1', 'residential_mortgage', 'proceedings'), ('L2', 'commercial_real_estate', 'auction'), ('L3', 'sme_secured', 'insolvency')]
    >>> result.report.not_mapped["gender"]
    'no field in the EBA templates'
    """  # noqa: E501 - doctest output is one line
    templates = read_template_set(path)
    fields = _Fields()
    _required(templates, fields)
    t = templates.tables
    loan, cpty, rel_bl = t[LOAN.name], t[COUNTERPARTY.name], t[RELATIONSHIP_BORROWER_LOAN.name]
    coll, rel_lp, enf = (
        t.get(COLLATERAL.name),
        t.get(RELATIONSHIP_LOAN_PROTECTION.name),
        t.get(ENFORCEMENT.name),
    )

    loans = _loan_fields(loan, fields)
    parties = _counterparty_fields(cpty, fields)
    links = _pairs(rel_bl, "2.00", "2.01", fields)
    protections = _collateral_fields(coll, fields) if coll is not None else None
    secured = _pairs(rel_lp, "2.01", "2.03", fields) if rel_lp is not None else None
    auctions = _enforcement_fields(enf, fields) if enf is not None else None
    _check_links(fields, loan=loan, cpty=cpty, rel_bl=rel_bl, coll=coll, rel_lp=rel_lp, enf=enf)
    _check_codes(fields, loan, loans)
    _check_currency(fields, loan=loan, coll=coll, loans=loans, protections=protections)
    fields.raise_if_any()

    borrowers, notes = _borrowers(
        loans, parties, links=links, borrower_id=borrower_id, fields=fields, rel_bl=rel_bl
    )
    fields.raise_if_any()
    collateral, coll_notes = _collateral(loans, protections, secured, auctions)
    frame = _assemble(loans, borrowers, collateral)
    frame, passed = _pass_through(frame, loan, fields)
    fields.raise_if_any()
    _validate(frame)

    report = build_report(
        path, templates, frame, loans=loans, borrowers=borrowers, borrower_id=borrower_id,
        passed=passed, notes=notes + coll_notes,
    )  # fmt: skip
    return EbaImport(loans=frame, report=report)


def _loan_fields(table: TemplateTable, fields: _Fields) -> pl.DataFrame:
    get = fields.get
    loan_id = get(table, "3.01", required=True)
    if loan_id is not None:
        fields.unique(table, [loan_id])
    columns = {
        "loan_id": loan_id,
        "cutoff_date": get(table, "3.00", required=True),
        "origination_date": get(table, "3.02", required=True),
        "asset_class": get(table, "3.05", required=True),
        "currency": get(table, "3.08", required=False),
        "outstanding_principal": get(table, "3.09", required=True),
        "accrued_interest": get(table, "3.10", required=False),
        "days_past_due": get(table, "3.13", required=True),
        "interest_pct": get(table, "3.14", required=True),
        "last_payment_date": get(table, "3.21", required=False),
        "default_date": get(table, "3.23", required=True),
        "legal_status": get(table, "3.24", required=True),
        "legal_stage_reached": get(table, "3.26", required=False),
        "origination_amount": get(table, "Origination Amount", required=False),
    }
    return _frame(columns, table.frame.height)


def _counterparty_fields(table: TemplateTable, fields: _Fields) -> pl.DataFrame:
    get = fields.get
    cpty_id = get(table, "1.02", required=True)
    if cpty_id is not None:
        fields.unique(table, [cpty_id])
    columns = {
        "counterparty_id": cpty_id,
        "group_id": get(table, "1.00", required=False),
        "role": get(table, "1.05", required=False),
        "legal_type": get(table, "1.06", required=True),
        "birth_date": get(table, "1.07", required=False),
        "country": get(table, "1.17", required=False),
        "legal_proceedings": get(table, "1.32", required=False),
        "geographic_region": get(table, "Geographic Region of Registered Location", required=False),
    }
    return _frame(columns, table.frame.height)


def _collateral_fields(table: TemplateTable, fields: _Fields) -> pl.DataFrame:
    get = fields.get
    protection = get(table, "4.00", required=True)
    if protection is not None:
        fields.unique(table, [protection])
    columns = {
        "protection_id": protection,
        "immovable": get(table, "4.01", required=False),
        "movable": get(table, "4.02", required=False),
        "higher_ranking": get(table, "4.10", required=False),
        "building_area": get(table, "4.13", required=False),
        "currency": get(table, "4.18", required=False),
        "internal_value": get(table, "4.19", required=False),
        "internal_date": get(table, "4.20", required=False),
        "external_value": get(table, "4.23", required=False),
        "external_date": get(table, "4.24", required=False),
    }
    frame = _frame(columns, table.frame.height)
    no_type = frame["immovable"].is_null() & frame["movable"].is_null()
    if no_type.any():
        fields.problem(
            table,
            COLLATERAL.field("4.01"),
            "must not be empty: every protection needs 4.01 or 4.02 (its type)",
            no_type,
        )
    no_value = frame["internal_value"].is_null() & frame["external_value"].is_null()
    if no_value.any():
        fields.problem(
            table,
            COLLATERAL.field("4.19"),
            "must not be empty: every protection needs 4.19 or 4.23 (a valuation)",
            no_value,
        )
    return frame


def _enforcement_fields(table: TemplateTable, fields: _Fields) -> pl.DataFrame:
    get = fields.get
    protection = get(table, "4.00", required=True)
    if protection is not None:
        fields.unique(table, [protection])
    columns = {
        "protection_id": protection,
        "next_auction": get(table, "4.38", required=False),
        "last_auction": get(table, "4.40", required=False),
    }
    return _frame(columns, table.frame.height)


def _pairs(table: TemplateTable, left: str, right: str, fields: _Fields) -> pl.DataFrame:
    a = fields.get(table, left, required=True)
    b = fields.get(table, right, required=True)
    if a is None or b is None:
        return pl.DataFrame()
    fields.unique(table, [a, b])
    return pl.DataFrame([a.alias("a"), b.alias("b")])


def _frame(columns: dict[str, pl.Series | None], height: int) -> pl.DataFrame:
    """Named series as a frame; an absent field is a column of nulls."""
    return pl.DataFrame(
        [
            s.alias(name) if s is not None else pl.Series(name, [None] * height)
            for name, s in columns.items()
        ]
    )


def _check_links(
    fields: _Fields,
    *,
    loan: TemplateTable,
    cpty: TemplateTable,
    rel_bl: TemplateTable,
    coll: TemplateTable | None,
    rel_lp: TemplateTable | None,
    enf: TemplateTable | None,
) -> None:
    """Orphans: links to identifiers that do not exist, collateral that secures no loan.

    A check is skipped where one of its identifier fields is missing: that is reported already.
    """
    loan_ids = _column(loan, "3.01")
    cpty_ids = _column(cpty, "1.02")
    linked_cpty, linked_loan = _column(rel_bl, "2.00"), _column(rel_bl, "2.01")
    if linked_cpty is not None and cpty_ids is not None:
        rule = f"orphan link: no row of {COUNTERPARTY.title} has this Counterparty Identifier"
        fields.orphans(rel_bl, linked_cpty, cpty_ids, rule=rule)
    if linked_loan is not None and loan_ids is not None:
        rule = f"orphan link: no row of {LOAN.title} has this Loan Identifier"
        fields.orphans(rel_bl, linked_loan, loan_ids, rule=rule)
    if coll is None:
        return
    protection_ids = _column(coll, "4.00")
    linked: pl.Series | None = pl.Series(dtype=pl.String)
    if rel_lp is not None:
        secured_loan, linked = _column(rel_lp, "2.01"), _column(rel_lp, "2.03")
        if secured_loan is not None and loan_ids is not None:
            rule = f"orphan link: no row of {LOAN.title} has this Loan Identifier"
            fields.orphans(rel_lp, secured_loan, loan_ids, rule=rule)
        if linked is not None and protection_ids is not None:
            rule = f"orphan link: no row of {COLLATERAL.title} has this Protection Identifier"
            fields.orphans(rel_lp, linked, protection_ids, rule=rule)
    if protection_ids is None:
        return
    if linked is not None:
        rule = f"orphan collateral: {RELATIONSHIP_LOAN_PROTECTION.title} links it to no loan"
        fields.orphans(coll, protection_ids, linked, rule=rule)
    enforced = None if enf is None else _column(enf, "4.00")
    if enf is not None and enforced is not None:
        rule = f"orphan enforcement: no row of {COLLATERAL.title} has this Protection Identifier"
        fields.orphans(enf, enforced, protection_ids, rule=rule)


def _column(table: TemplateTable, number: str) -> pl.Series | None:
    """A field's raw column, ``None`` when the template lacks it."""
    label = table.template.field(number).label
    return table.frame[label] if label in table.frame.columns else None


def _check_codes(fields: _Fields, loan: TemplateTable, loans: pl.DataFrame) -> None:
    """Codes that are valid in the templates but have no value in the contract."""
    asset = loans["asset_class"]
    bad = asset.is_in([_LEASING, _OTHER_ASSET]).fill_null(value=False)
    if bad.any():
        fld = LOAN.field("3.05")
        rule = (
            "(g) Leasing and (h) Other have no segment in the data contract; remove these"
            " loans or give them an asset class the contract knows"
        )
        fields.problem(loan, fld, rule, bad)


def _check_currency(
    fields: _Fields,
    *,
    loan: TemplateTable,
    coll: TemplateTable | None,
    loans: pl.DataFrame,
    protections: pl.DataFrame | None,
) -> None:
    """One currency per dataset: the contract has no exchange rates."""
    currencies = loans["currency"].drop_nulls().unique(maintain_order=True)
    if currencies.len() > 1:
        common = loans["currency"].mode().sort()[0]
        bad = loans["currency"].is_not_null() & (loans["currency"] != common)
        rule = (
            f"holds {currencies.len()} currencies ({', '.join(currencies.head(5))}); a dataset"
            f" is in one currency (most loans are in {common})"
        )
        fields.problem(loan, LOAN.field("3.08"), rule, bad)
    elif currencies.len() == 1 and protections is not None and coll is not None:
        loan_currency = currencies[0]
        bad = protections["currency"].is_not_null() & (protections["currency"] != loan_currency)
        if bad.any():
            rule = (
                f"must be the loans' currency {loan_currency}; converting values is not supported"
            )
            fields.problem(coll, COLLATERAL.field("4.18"), rule, bad)


def _borrowers(
    loans: pl.DataFrame,
    parties: pl.DataFrame,
    *,
    links: pl.DataFrame,
    borrower_id: BorrowerKey,
    fields: _Fields,
    rel_bl: TemplateTable,
) -> tuple[pl.DataFrame, list[str]]:
    """Each loan's borrower: the first counterparty linked to it that is not only a guarantor."""
    links = links.rename({"a": "counterparty_id", "b": "loan_id"}).with_row_index("order")
    joined = links.join(parties, on="counterparty_id", how="left").filter(
        pl.col("role").is_null() | (pl.col("role") != _PROTECTION_PROVIDER)
    )
    counts = joined.group_by("loan_id").len()
    first = joined.sort("order").group_by("loan_id", maintain_order=True).first().drop("order")
    missing = ~loans["loan_id"].is_in(first["loan_id"].implode())
    if missing.any():
        fld = RELATIONSHIP_BORROWER_LOAN.field("2.00")
        examples = tuple(loans["loan_id"].filter(missing).head(_MAX_EXAMPLES).to_list())
        fields.problems.append(
            TemplateProblem(
                rel_bl.template.title,
                fld.name,
                "must not be empty: these loans have no borrower (a counterparty whose role is"
                " not protection provider)",
                int(missing.sum()),
                examples,
            )
        )
    key = pl.col("counterparty_id")
    if borrower_id == "group":
        key = pl.coalesce("group_id", "counterparty_id")
    first = first.with_columns(key.alias("borrower_id"))
    notes = []
    joint = int((counts["len"] > 1).sum())
    if joint:
        notes.append(
            f"{joint:,} loans have more than one borrower (joint counterparties); borrower_id and"
            " the borrower's fields come from the first one listed in Template 2.1"
        )
    unlinked = int((~parties["counterparty_id"].is_in(links["counterparty_id"].implode())).sum())
    if unlinked:
        notes.append(
            f"{unlinked:,} counterparties are linked to no loan in Template 2.1 (guarantors and"
            " other protection providers): not mapped"
        )
    return first, notes


def _collateral(
    loans: pl.DataFrame,
    protections: pl.DataFrame | None,
    secured: pl.DataFrame | None,
    auctions: pl.DataFrame | None,
) -> tuple[pl.DataFrame, list[str]]:
    """Per loan: collateral type, value, valuation date, senior liens and an auction flag.

    A protection securing several loans is shared among them in proportion to their principal
    balances (equally where those are all zero).
    """
    empty = pl.DataFrame(
        schema={
            "loan_id": pl.String,
            "collateral_type": pl.String,
            "collateral_value": pl.Float64,
            "collateral_valuation_date": pl.Date,
            "senior_liens": pl.Float64,
            "in_auction": pl.Boolean,
            "n_protections": pl.UInt32,
        }
    )
    if protections is None or secured is None or secured.is_empty():
        return empty, []
    kind = (
        pl.when(pl.col("immovable").is_not_null())
        .then(
            pl.when((pl.col("immovable") == 4) & (pl.col("building_area") == 0))
            .then(pl.lit("land"))
            .otherwise(pl.col("immovable").replace_strict(_IMMOVABLE_TYPE, default="other"))
        )
        .otherwise(
            pl.when(pl.col("movable").is_in(_VEHICLES))
            .then(pl.lit("vehicle"))
            .otherwise(pl.lit("other"))
        )
    )
    prot = protections.select(
        "protection_id",
        kind.alias("collateral_type"),
        pl.coalesce("internal_value", "external_value").alias("value"),
        pl.when(pl.col("internal_value").is_not_null())
        .then(pl.col("internal_date"))
        .otherwise(pl.col("external_date"))
        .alias("valuation_date"),
        pl.col("higher_ranking").fill_null(0.0).alias("liens"),
    )
    if auctions is not None:
        flagged = auctions.filter(
            pl.col("next_auction").is_not_null() | pl.col("last_auction").is_not_null()
        ).select("protection_id", pl.lit(True).alias("in_auction"))
        prot = prot.join(flagged, on="protection_id", how="left")
    else:
        prot = prot.with_columns(pl.lit(None, dtype=pl.Boolean).alias("in_auction"))
    links = secured.rename({"a": "loan_id", "b": "protection_id"}).join(
        loans.select("loan_id", "outstanding_principal"), on="loan_id", how="left"
    )
    balance = pl.col("outstanding_principal").fill_null(0.0)
    total = balance.sum().over("protection_id")
    n = pl.len().over("protection_id")
    share = pl.when(total > 0).then(balance / total).otherwise(1.0 / n)
    per_link = links.join(prot, on="protection_id", how="left").with_columns(
        share.alias("share"), n.alias("n_loans")
    )
    out = (
        per_link.with_columns(
            (pl.col("value") * pl.col("share")).alias("value"),
            (pl.col("liens") * pl.col("share")).alias("liens"),
        )
        .sort(["loan_id", "value"], descending=[False, True], maintain_order=True)
        .group_by("loan_id", maintain_order=True)
        .agg(
            pl.col("collateral_type").first(),
            pl.col("value").sum().alias("collateral_value"),
            pl.col("valuation_date").first().alias("collateral_valuation_date"),
            pl.col("liens").sum().alias("senior_liens"),
            pl.col("in_auction").any().alias("in_auction"),
            pl.len().alias("n_protections"),
        )
    )
    notes = []
    shared = per_link.filter(pl.col("n_loans") > 1)["protection_id"].n_unique()
    if shared:
        notes.append(
            f"{shared:,} protections secure more than one loan: their value and higher-ranking"
            " claims are shared among those loans in proportion to principal balance"
        )
    several = int((out["n_protections"] > 1).sum())
    if several:
        notes.append(
            f"{several:,} loans have more than one protection: collateral_value and senior_liens"
            " are summed; collateral_type and the valuation date are those of the largest"
        )
    return out.select(empty.columns), notes


def _legal_stage() -> pl.Expr:
    status, stage = pl.col("legal_status"), pl.col("legal_stage_reached")
    return (
        pl.when(pl.col("legal_proceedings").is_in(_INSOLVENCY_STATUSES))
        .then(pl.lit("insolvency"))
        .when(pl.col("in_auction").fill_null(value=False))
        .then(pl.lit("auction"))
        .when((status == _LEGAL_PROCEEDINGS) & (stage >= _JUDGMENT_STAGE).fill_null(value=False))
        .then(pl.lit("judgment"))
        .when(status == _LEGAL_PROCEEDINGS)
        .then(pl.lit("proceedings"))
        .when(status == _OUT_OF_COURT)
        .then(pl.lit("pre_legal"))
        .otherwise(pl.lit("none"))
    )


def _month_day(day: pl.Expr) -> pl.Expr:
    """Month and day as one comparable number (930 for 30 September).

    Polars gives both as Int8, which ``month * 100`` would overflow: they are widened first.
    """
    return day.dt.month().cast(pl.Int32) * 100 + day.dt.day().cast(pl.Int32)


def _assemble(
    loans: pl.DataFrame, borrowers: pl.DataFrame, collateral: pl.DataFrame
) -> pl.DataFrame:
    """The contract's loans table from the parsed template fields."""
    frame = loans.join(borrowers, on="loan_id", how="left", maintain_order="left").join(
        collateral, on="loan_id", how="left", maintain_order="left"
    )
    asset = pl.col("asset_class")
    segment = (
        pl.when(asset == _CORPORATE)
        .then(
            pl.when(pl.col("collateral_type").is_not_null())
            .then(pl.lit("sme_secured"))
            .otherwise(pl.lit("sme_unsecured"))
        )
        .otherwise(asset.replace_strict(_SEGMENT_OF_ASSET_CLASS, default=None))
    )
    cutoff, birth = pl.col("cutoff_date"), pl.col("birth_date")
    before_birthday = _month_day(cutoff) < _month_day(birth)
    age = cutoff.dt.year() - birth.dt.year() - before_birthday.cast(pl.Int32)
    exprs = {
        "loan_id": pl.col("loan_id"),
        "borrower_id": pl.col("borrower_id"),
        "segment": segment,
        "cutoff_date": cutoff,
        "origination_date": pl.col("origination_date"),
        "default_date": pl.col("default_date"),
        "original_principal": pl.coalesce("origination_amount", "outstanding_principal"),
        "outstanding_principal": pl.col("outstanding_principal"),
        "accrued_interest": pl.col("accrued_interest").fill_null(0.0),
        "interest_rate": (pl.col("interest_pct") / 100).round(10),
        "days_past_due": pl.col("days_past_due").cast(pl.Int64, strict=False),
        "last_payment_date": pl.col("last_payment_date"),
        "collateral_type": pl.col("collateral_type").fill_null("none"),
        "collateral_value": pl.col("collateral_value").fill_null(0.0),
        "collateral_valuation_date": pl.col("collateral_valuation_date"),
        "senior_liens": pl.col("senior_liens").fill_null(0.0),
        "legal_stage": _legal_stage(),
        "borrower_type": pl.when(pl.col("legal_type") == _HOUSEHOLDS)
        .then(pl.lit("individual"))
        .otherwise(pl.lit("company")),
        "region": pl.coalesce("geographic_region", "country"),
        "age": age.cast(pl.Int64),
    }
    typed = [
        expr.cast(LOANS.column(name).dtype, strict=False).alias(name)
        for name, expr in exprs.items()
    ]
    missing = [c for c in LOANS.columns if c.name not in exprs]
    typed += [pl.lit(None, dtype=c.dtype).alias(c.name) for c in missing]
    return frame.select(typed).select(LOANS.names)


def _pass_through(
    frame: pl.DataFrame, loan: TemplateTable, fields: _Fields
) -> tuple[pl.DataFrame, list[str]]:
    """Contract columns the seller added to the loan template under their contract names."""
    passed: list[str] = []
    for header in loan.unknown:
        name = field_key(header)
        if name not in LOANS.names or name in _FROM_TEMPLATES:
            continue
        spec = LOANS.column(name)
        raw = loan.frame[header]
        parsed = pl.DataFrame([raw.alias(name)]).select(parse_column(spec, pl.String()))[name]
        bad = raw.is_not_null() & parsed.is_null()
        if bad.any():
            found = ", ".join(repr(v) for v in raw.filter(bad).unique(maintain_order=True).head(3))
            fld = Field("", header)
            fields.problem(
                loan,
                fld,
                f"cannot be read as the contract's {name} ({spec.kind}) (found {found})",
                bad,
            )
            continue
        frame = frame.with_columns(parsed)
        passed.append(header)
    return frame, passed


_FROM_TEMPLATES = frozenset(
    {
        "loan_id", "borrower_id", "segment", "cutoff_date", "origination_date", "default_date",
        "original_principal", "outstanding_principal", "accrued_interest", "interest_rate",
        "days_past_due", "last_payment_date", "collateral_type", "collateral_value",
        "collateral_valuation_date", "senior_liens", "legal_stage", "borrower_type", "region",
        "age",
    }
)  # fmt: skip
"""Contract columns that the importer fills from template fields."""


def _validate(frame: pl.DataFrame) -> None:
    """The mapped loans must meet every rule of the data contract."""
    kind: DatasetKind = "tape" if frame["cutoff_date"].n_unique() <= 1 else "book"
    table = RawTable(frame=frame.lazy(), schema=frame.schema, source="the imported loans")
    result = validate_tables({"loans": table}, kind=kind)
    if result.problems:
        raise ContractError(result.problems)
