"""EBA template import: the synthetic set maps field by field; every error names its row."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import xlsxwriter
from click.testing import CliRunner, Result

from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.data.eba import (
    REPORT_FILES,
    TemplateError,
    field_key,
    import_eba,
    template_frames,
    write_template_files,
)
from npl_engine.data.simulator import SimulationSettings, simulate

TEMPLATES = Path(__file__).parent / "eba_templates"
CUTOFF = date(2026, 9, 30)


def _npl(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(TEMPLATES, folder)
    return folder


def _edit(folder: Path, template: str, edit: pl.Expr | None = None, **replace: str) -> None:
    """Rewrite one template CSV: apply ``edit`` (a filter) or set ``column=value`` on row 1."""
    path = folder / f"{template}.csv"
    frame = pl.read_csv(path, infer_schema=False)
    if edit is not None:
        frame = frame.filter(edit)
    for key, value in replace.items():
        column = next(c for c in frame.columns if field_key(c) == key.lower())
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.lit(value))
            .otherwise(pl.col(column))
            .alias(column)
        )
    frame.write_csv(path)


def test_synthetic_template_set_maps_field_by_field() -> None:
    """Each contract column takes the hand-worked value of its template fields (docs/import.md).

    L1: household born 1970-10-01 is 55 on 2026-09-30; 3.25 % is 0.0325. L2: land (immovable
    Other, building area 0) with an auction date: auction, though 3.26 says judgment. L3 and L4
    share P3 (300,000, liens 30,000) in proportion to principal 100,000 : 200,000, and L4 adds
    P4 (external value 50,000): 100,000 / 10,000 and 250,000 / 20,000; their borrower C3 is
    bankrupt (1.32 (c)): insolvency. L5: corporate without protection: sme_unsecured, no
    Origination Amount: original_principal = 3.09, region from the country. L6: the guarantor
    C7 listed first is skipped, borrower C5 turns 41 on the cut-off date; credit_score comes
    from the seller's own column. L8: 4.02 (a) vehicles.
    """
    loans = import_eba(TEMPLATES).loans
    expected = pl.DataFrame(
        {
            "loan_id": ["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8"],
            "borrower_id": ["C1", "C2", "C3", "C3", "C4", "C5", "C6", "C8"],
            "segment": [
                "residential_mortgage",
                "commercial_real_estate",
                "sme_secured",
                "sme_secured",
                "sme_unsecured",
                "consumer_unsecured",
                "credit_card",
                "auto",
            ],
            "original_principal": [180e3, 1e6, 150e3, 260e3, 50e3, 20e3, 5e3, 18e3],
            "outstanding_principal": [120e3, 800e3, 100e3, 200e3, 50e3, 15e3, 4200.75, 11e3],
            "accrued_interest": [3500.5, 0.0, 1200.0, 2400.0, 0.0, 300.0, 150.25, 100.0],
            "interest_rate": [0.0325, 0.055, 0.06, 0.06, 0.0725, 0.099, 0.185, 0.0675],
            "days_past_due": [400, 700, 250, 250, 120, 95, 200, 150],
            "collateral_type": [
                "residential",
                "land",
                "commercial",
                "commercial",
                "none",
                "none",
                "none",
                "vehicle",
            ],
            "collateral_value": [150e3, 500e3, 100e3, 250e3, 0.0, 0.0, 0.0, 9e3],
            "collateral_valuation_date": [
                date(2026, 6, 30),
                date(2026, 3, 31),
                date(2026, 5, 31),
                date(2026, 5, 31),
                None,
                None,
                None,
                date(2026, 8, 31),
            ],
            "senior_liens": [20e3, 0.0, 10e3, 20e3, 0.0, 0.0, 0.0, 0.0],
            "legal_stage": [
                "proceedings",
                "auction",
                "insolvency",
                "insolvency",
                "none",
                "pre_legal",
                "none",
                "none",
            ],
            "borrower_type": ["individual", "company", "company", "company", "company"]
            + ["individual"] * 3,
            "region": [
                "Lombardia",
                "Lazio",
                "Veneto",
                "Veneto",
                "DE",
                "Sicilia",
                "Sicilia",
                "Puglia",
            ],
            "age": [55, None, None, None, None, 41, 39, None],
            "credit_score": [None, None, None, None, None, 640, None, None],
        }
    )
    got = loans.select(expected.columns).with_columns(pl.col(pl.Enum).cast(pl.String))
    assert got.to_dicts() == expected.to_dicts()
    assert loans["cutoff_date"].unique().to_list() == [CUTOFF]
    assert loans["default_date"][1] == date(2024, 10, 10)
    assert loans["last_payment_date"][1] is None


def test_imported_dataset_validates_and_report_names_every_source(tmp_path: Path) -> None:
    """`npl import eba` writes a valid tape and a report: sources, derived rows, unmapped fields."""
    out = tmp_path / "tape"
    result = _npl("import", "eba", "--in", str(TEMPLATES), "--out", str(out), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(["loans.csv", *REPORT_FILES])
    assert read_dataset(out, kind="tape").loans.collect().height == 8
    report = import_eba(TEMPLATES).report
    by_column = {c.column: c for c in report.columns}
    assert "3.09 Principal balance" in by_column["outstanding_principal"].source
    assert by_column["original_principal"].rows_derived == 1  # L5 has no Origination Amount
    assert by_column["region"].rows_derived == 1  # C4 has a country only
    assert report.not_mapped["gender"] == "no field in the EBA templates"
    unmapped = {t["template"]: t["fields_not_mapped"] for t in report.templates}
    assert unmapped["counterparty"] == ["Name of Counterparty"]
    assert unmapped["loan"] == ["Governing Law of Loan Agreement"]
    assert "Template 5" in report.tables["payments"]
    markdown = (out / "import_report.md").read_text()
    assert "| interest_rate | Template 3: Loan: 3.14 Current interest rate |" in markdown


def test_workbook_reads_like_the_csv_folder(tmp_path: Path) -> None:
    """The same templates as sheets of one .xlsx workbook give the same loans."""
    path = tmp_path / "tape.xlsx"
    with xlsxwriter.Workbook(path) as workbook:
        for csv in sorted(TEMPLATES.glob("*.csv")):
            frame = pl.read_csv(csv, infer_schema=False)
            frame.write_excel(workbook, worksheet=csv.stem.title())
    assert import_eba(path).loans.equals(import_eba(TEMPLATES).loans)


def test_missing_mandatory_field_names_template_field_and_loan(tmp_path: Path) -> None:
    """A mandatory field absent from the header, or empty in a row, is named with its loan."""
    folder = _copy(tmp_path)
    _edit(folder, "loan", Current_interest_rate="")
    frame = pl.read_csv(folder / "counterparty.csv", infer_schema=False)
    frame.drop("Legal Type of Counterparty").write_csv(folder / "counterparty.csv")
    with pytest.raises(TemplateError) as info:
        import_eba(folder)
    text = str(info.value)
    assert (
        "Template 3: Loan, field 3.14 Current interest rate: must not be empty (1 row; e.g. L1)"
        in text
    )
    assert "Template 1: Counterparty, field 1.06 Legal Type of Counterparty: is missing" in text


def test_unknown_code_is_named_with_the_allowed_codes(tmp_path: Path) -> None:
    """A value outside the published code list is refused, listing the codes allowed."""
    folder = _copy(tmp_path)
    _edit(folder, "loan", Asset_class="Mortgage")
    with pytest.raises(TemplateError) as info:
        import_eba(folder)
    text = str(info.value)
    assert "field 3.05 Asset class: has unknown code(s) 'Mortgage'" in text
    assert "(a) Residential real estate" in text
    assert "e.g. L1" in text


def test_orphan_collateral_is_refused(tmp_path: Path) -> None:
    """A protection that no relationship links to a loan is an error, not silently dropped."""
    folder = _copy(tmp_path)
    _edit(folder, "relationship_loan_protection", pl.col("Protection Identifier") != "P5")
    with pytest.raises(TemplateError) as info:
        import_eba(folder)
    assert (
        "Template 4.1: Collateral and guarantees, field 4.00 Protection Identifier: orphan"
        in str(info.value)
    )
    assert "e.g. P5" in str(info.value)


def test_duplicate_identifier_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """A Loan Identifier twice is named; the command exits 2 and writes no dataset."""
    folder = _copy(tmp_path)
    _edit(folder, "loan", Loan_Identifier="L2")
    out = tmp_path / "out"
    result = _npl("import", "eba", "--in", str(folder), "--out", str(out))
    assert result.exit_code == 2
    assert "field 3.01 Loan Identifier: duplicate identifier" in result.output
    assert "e.g. L2" in result.output
    assert not out.exists()


def test_simulated_tape_round_trips_through_the_templates(tmp_path: Path) -> None:
    """Simulate → EBA templates → import gives back every contract column of every loan."""
    sim = simulate(SimulationSettings(n_loans=2_000, seed=3, kind="tape"))
    write_template_files(sim.loans, tmp_path)
    loans = import_eba(tmp_path, borrower_id="group").loans
    assert loans.equals(sim.loans.select(loans.columns))
    assert set(template_frames(sim.loans)) >= {"loan", "collateral", "enforcement"}


def test_cli_round_trip_from_simulate_format_eba(tmp_path: Path) -> None:
    """`npl simulate --format eba` then `npl import eba` gives the simulated tape's loans."""
    sim_dir, out = tmp_path / "eba", tmp_path / "tape"
    args = ("simulate", "--kind", "tape", "--loans", "300", "--seed", "5", "--format", "eba")
    assert _npl(*args, "--out", str(sim_dir)).exit_code == 0
    assert (sim_dir / "loan.csv").is_file()
    assert (sim_dir / "truth" / "loans.parquet").is_file()
    result = _npl(
        "import", "eba", "--in", str(sim_dir), "--out", str(out), "--borrower-id", "group"
    )
    assert result.exit_code == 0, result.output
    expected = simulate(SimulationSettings(n_loans=300, seed=5, kind="tape")).loans
    assert read_dataset(out).loans.collect().equals(expected)


def test_simulate_format_eba_refuses_a_book(tmp_path: Path) -> None:
    """The templates describe a tape: asking for a book in EBA form is a clear error."""
    result = _npl("simulate", "--out", str(tmp_path / "x"), "--format", "eba", "--loans", "10")
    assert result.exit_code == 2
    assert "--kind tape" in result.output
