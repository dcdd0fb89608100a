"""Column maps: a seller's CSV in its own spelling reads as the contract, errors name the map."""

from __future__ import annotations

from pathlib import Path

import click
import polars as pl
import pytest
from click.testing import CliRunner

from data.builders import make_loans
from npl_engine.cli import main
from npl_engine.data import read_dataset, validate_dataset, write_dataset
from npl_engine.data.columns import load_column_map, parse_column_map
from npl_engine.errors import ContractError, SettingsError

MAP = """
date_format = "%d/%m/%Y"
decimal = "."
thousands = ","

[loans.columns]
loan_id = "Loan ID"
outstanding_principal = "Outstanding Balance"
cutoff_date = "Cut-off"

[loans.codes.segment]
"Mortgage" = "residential_mortgage"
"""


def _seller_tape(folder: Path) -> pl.DataFrame:
    """The builders' loans, then as a seller writes them: own names, dd/mm/yyyy, 20,820.27."""
    loans = make_loans(4, outstanding_principal=[20_820.27, 1_234_567.5, 80.0, 999.99])
    dates = [c for c, t in loans.schema.items() if t == pl.Date]
    seller = loans.with_columns(
        *[pl.col(c).dt.strftime("%d/%m/%Y") for c in dates],
        pl.col("outstanding_principal").map_elements(lambda x: f"{x:,.2f}", return_dtype=pl.String),
        pl.col("segment").replace({"residential_mortgage": "Mortgage"}),
    ).rename(
        {
            "loan_id": "Loan ID",
            "outstanding_principal": "Outstanding Balance",
            "cutoff_date": "Cut-off",
        }
    )
    folder.mkdir()
    seller.write_csv(folder / "loans.csv")
    return loans


def test_seller_csv_reads_as_the_contract_through_the_map(tmp_path: Path) -> None:
    """`Outstanding Balance`, `30/09/2026`-style dates and `20,820.27` read as contract values."""
    expected = _seller_tape(tmp_path / "seller")
    (tmp_path / "map.toml").write_text(MAP)
    text = (tmp_path / "seller" / "loans.csv").read_text()
    assert '"20,820.27"' in text
    assert "Outstanding Balance" in text
    loans = read_dataset(tmp_path / "seller", columns=load_column_map(tmp_path / "map.toml"))
    write_dataset(tmp_path / "plain", loans=expected)
    assert loans.loans.collect().equals(read_dataset(tmp_path / "plain").loans.collect())


def test_npl_validate_accepts_the_column_map(tmp_path: Path) -> None:
    """`npl validate --columns MAP.toml` passes a seller's tape that fails without it."""
    _seller_tape(tmp_path / "seller")
    (tmp_path / "map.toml").write_text(MAP)
    runner = CliRunner()
    plain = runner.invoke(main, ["validate", str(tmp_path / "seller")])
    assert plain.exit_code == 2
    mapped = runner.invoke(
        main, ["validate", str(tmp_path / "seller"), "--columns", str(tmp_path / "map.toml")]
    )
    assert mapped.exit_code == 0, mapped.output
    assert "is a valid tape" in mapped.output


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
        else:
            found.append((prefix + name, command))
    return found


def test_every_command_reading_data_offers_columns() -> None:
    """Every command with --data (and `npl validate`) also takes --columns."""
    readers = []
    for name, command in _commands(main):
        options = {o for p in command.params for o in p.opts}
        if "--data" in options or name == "validate":
            readers.append(name)
            assert "--columns" in options, f"npl {name} reads data but has no --columns"
    assert {"validate", "score", "value", "train"} <= set(readers)


def test_unknown_contract_column_names_the_file_and_key() -> None:
    """A key that is no contract column is refused with the file and the key path."""
    with pytest.raises(SettingsError) as info:
        parse_column_map('[loans.columns]\nbalance = "Balance"', source="map.toml")
    assert str(info.value) == (
        "map.toml: loans.columns.balance: not a column of the contract's loans table"
    )


def test_bad_settings_in_the_map_are_named() -> None:
    """Unknown keys, equal separators and codes to no contract value each name their key."""
    with pytest.raises(SettingsError) as info:
        parse_column_map('decimal = ","\nthousands = ","\ncolour = 1', source="m.toml")
    assert "m.toml: colour:" in str(info.value)
    with pytest.raises(SettingsError) as info:
        parse_column_map('[loans.codes.segment]\n"Mortgage" = "home"', source="m.toml")
    assert "m.toml: loans.codes.segment.Mortgage: 'home' is not a contract value" in str(info.value)


def test_unparseable_value_names_the_map_key_and_the_row(tmp_path: Path) -> None:
    """A date the map's format cannot read is named with the map file, its key and the row."""
    _seller_tape(tmp_path / "seller")
    path = tmp_path / "seller" / "loans.csv"
    frame = pl.read_csv(path, infer_schema=False)
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit("31/13/2023"))
        .otherwise(pl.col("Cut-off"))
        .alias("Cut-off")
    ).write_csv(path)
    (tmp_path / "map.toml").write_text(MAP)
    with pytest.raises(ContractError) as info:
        read_dataset(tmp_path / "seller", columns=load_column_map(tmp_path / "map.toml"))
    text = str(info.value)
    assert "loans.cutoff_date: cannot be read with the date_format '%d/%m/%Y'" in text
    assert "(loans.columns.cutoff_date = 'Cut-off')" in text
    assert str(tmp_path / "map.toml") in text
    assert "'31/13/2023'" in text
    assert "e.g. loans.csv row 4" in text
    assert "must not be empty" not in text


def test_mapped_column_missing_from_the_file_is_named(tmp_path: Path) -> None:
    """A map pointing at a column the file lacks says so, naming both."""
    _seller_tape(tmp_path / "seller")
    (tmp_path / "map.toml").write_text(MAP.replace('"Loan ID"', '"Loan Number"'))
    problems = validate_dataset(tmp_path / "seller", columns=load_column_map(tmp_path / "map.toml"))
    assert any(
        p.column == "loan_id" and "'Loan Number'" in p.rule and "loans.csv" in p.rule
        for p in problems
    )


@pytest.mark.parametrize(
    ("decimal", "thousands", "text", "value"),
    [
        (".", ",", "20,820.27", 20_820.27),
        (",", ".", "20.820,27", 20_820.27),
        (",", " ", "1 234 567,5", 1_234_567.5),
        (".", "'", "1'234.5", 1_234.5),
        (".", "", "-80", -80.0),
    ],
)
def test_number_formats_read_to_known_values(
    tmp_path: Path, decimal: str, thousands: str, text: str, value: float
) -> None:
    """Each separator pair reads the seller's text as the number it writes."""
    folder = tmp_path / "tape"
    loans = make_loans(1).with_columns(pl.col(pl.Float64).cast(pl.Int64).cast(pl.String))
    folder.mkdir()
    loans.with_columns(pl.lit(text).alias("accrued_interest")).write_csv(folder / "loans.csv")
    column_map = parse_column_map(f'decimal = "{decimal}"\nthousands = "{thousands}"')
    problems = validate_dataset(folder, columns=column_map)
    read = read_dataset(folder, columns=column_map) if not problems else None
    if value < 0:
        assert [p.column for p in problems] == ["accrued_interest"]  # ≥ 0 in the contract
        assert "must be ≥ 0" in problems[0].rule
    else:
        assert read is not None
        assert read.loans.collect()["accrued_interest"].to_list() == [value]


def test_misgrouped_number_is_refused_not_misread(tmp_path: Path) -> None:
    """With '.' as thousands separator, '100000.0' is an error naming the map, not a million."""
    folder = tmp_path / "tape"
    folder.mkdir()
    make_loans(1).write_csv(folder / "loans.csv")  # floats written as 100000.0
    column_map = parse_column_map('decimal = ","\nthousands = "."', source="m.toml")
    problems = validate_dataset(folder, columns=column_map)
    bad = next(p for p in problems if p.column == "original_principal")
    assert "decimal ',' and thousands '.' of m.toml" in bad.rule
    assert "'100000.0'" in bad.rule
