"""Scenario files: the shipped files load, every malformed file is a clear SettingsError."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from npl_engine.errors import SettingsError
from npl_engine.scenarios import (
    BASE_SCENARIO,
    PricingAssumptions,
    Scenario,
    ScenarioSet,
    dump_scenarios,
    load_scenarios,
    parse_scenarios,
)

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"

VALID = """\
[pricing]
target_irr = 0.12
servicing_fee = 0.08
horizon_months = 60

[[scenario]]
name = "base"
weight = 0.5
collateral_value_change = 0.0
collections_multiplier = 1.0
delay_months = 0

[[scenario]]
name = "adverse"
weight = 0.3
collateral_value_change = -0.15
collections_multiplier = 0.85
delay_months = 6

[[scenario]]
name = "severe"
weight = 0.2
collateral_value_change = -0.30
collections_multiplier = 0.70
delay_months = 12
"""


# --------------------------------------------------------------------------------------------
# Shipped files


def test_base_file_is_one_unshocked_scenario() -> None:
    """scenarios/base.toml loads as a single unshocked scenario with the contract's pricing."""
    s = load_scenarios(SCENARIO_DIR / "base.toml")
    assert s.pricing == PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    assert s.scenarios == (BASE_SCENARIO,)
    assert s.unshocked() == s


def test_eu_2026_file_has_base_adverse_severe() -> None:
    """scenarios/eu_2026.toml loads with the documented shocks and weights adding up to 1."""
    s = load_scenarios(SCENARIO_DIR / "eu_2026.toml")
    assert s.names == ("base", "adverse", "severe")
    assert math.isclose(math.fsum(x.weight for x in s.scenarios), 1.0, abs_tol=1e-12)
    shocks = [
        (x.collateral_value_change, x.collections_multiplier, x.delay_months) for x in s.scenarios
    ]
    assert shocks == [(0.0, 1.0, 0), (-0.15, 0.85, 6), (-0.30, 0.70, 12)]
    assert s.scenarios[0].is_unshocked
    assert not s.scenarios[1].is_unshocked


def test_every_shipped_file_loads() -> None:
    """Every scenario file in scenarios/ (all but the tranche examples) is a valid scenario set."""
    files = sorted(p for p in SCENARIO_DIR.glob("*.toml") if not p.stem.endswith("tranches"))
    assert len(files) >= 2
    for path in files:
        assert load_scenarios(path).scenarios


def test_project_keys_default_to_no_cost() -> None:
    """Leaving out the project's cost keys gives zero costs, the contract's meaning."""
    p = parse_scenarios(VALID).pricing
    assert (p.cost_per_loan_per_year, p.legal_cost_share, p.collateral_sale_cost) == (0, 0, 0)


def test_project_keys_are_read() -> None:
    """The project's cost keys are read from [pricing] when given."""
    text = VALID.replace(
        "horizon_months = 60",
        "horizon_months = 60\ncost_per_loan_per_year = 150.0\nlegal_cost_share = 0.05\n"
        "collateral_sale_cost = 0.04",
    )
    p = parse_scenarios(text).pricing
    assert (p.cost_per_loan_per_year, p.legal_cost_share, p.collateral_sale_cost) == (
        150.0,
        0.05,
        0.04,
    )


# --------------------------------------------------------------------------------------------
# Malformed files: (edit of VALID, key path the message must name, words it must contain)

MALFORMED = {
    "unknown key": (
        ("delay_months = 6", "delay_month = 6"),
        "scenario[2].delay_month",
        "did you mean 'delay_months'",
    ),
    "unknown pricing key": (("target_irr =", "target_ir ="), "pricing.target_ir", "unknown key"),
    "unknown top-level key": (("[[scenario]]", "[[scenarios]]"), "scenarios", "unknown key"),
    "missing key": (("weight = 0.3\n", ""), "scenario[2].weight", "missing"),
    "missing pricing key": (("servicing_fee = 0.08\n", ""), "pricing.servicing_fee", "missing"),
    "wrong type (string for number)": (
        ("weight = 0.3", 'weight = "0.3"'),
        "scenario[2].weight",
        "expected a number",
    ),
    "wrong type (fraction for months)": (
        ("delay_months = 6", "delay_months = 6.5"),
        "scenario[2].delay_months",
        "whole number",
    ),
    "wrong type (boolean for number)": (
        ("target_irr = 0.12", "target_irr = true"),
        "pricing.target_irr",
        "expected a number",
    ),
    "wrong type (number for name)": (('name = "severe"', "name = 3"), "scenario[3].name", "string"),
    "weights not summing to 1": (("weight = 0.3", "weight = 0.25"), "scenario[*].weight", "add up"),
    "negative multiplier": (
        ("collections_multiplier = 0.85", "collections_multiplier = -0.85"),
        "scenario[2].collections_multiplier",
        "at least 0",
    ),
    "collateral falls by 100 %": (
        ("collateral_value_change = -0.30", "collateral_value_change = -1.0"),
        "scenario[3].collateral_value_change",
        "greater than -1",
    ),
    "negative delay": (
        ("delay_months = 12", "delay_months = -1"),
        "scenario[3].delay_months",
        "at least 0",
    ),
    "zero weight": (("weight = 0.2\n", "weight = 0.0\n"), "scenario[3].weight", "greater than 0"),
    "duplicate names": (('name = "severe"', 'name = "Adverse"'), "scenario[3].name", "duplicate"),
    "blank name": (('name = "severe"', 'name = " "'), "scenario[3].name", "printable"),
    "target_irr at -100 %": (
        ("target_irr = 0.12", "target_irr = -1.0"),
        "pricing.target_irr",
        "greater than -1",
    ),
    "target_irr not a number": (
        ("target_irr = 0.12", "target_irr = nan"),
        "pricing.target_irr",
        "finite",
    ),
    "servicing fee of 100 %": (
        ("servicing_fee = 0.08", "servicing_fee = 1.0"),
        "pricing.servicing_fee",
        "less than 1",
    ),
    "horizon of zero months": (
        ("horizon_months = 60", "horizon_months = 0"),
        "pricing.horizon_months",
        "at least 1",
    ),
    "horizon beyond 50 years": (
        ("horizon_months = 60", "horizon_months = 601"),
        "pricing.horizon_months",
        "at most 600",
    ),
    "deductions eat every collection": (
        ("servicing_fee = 0.08", "servicing_fee = 0.5\nlegal_cost_share = 0.5"),
        "pricing",
        "below 1",
    ),
    "no scenarios": ((VALID[VALID.index("[[scenario]]") :], ""), "scenario", "[[scenario]]"),
    "empty scenario array": (
        (VALID[VALID.index("[[scenario]]") :], "scenario = []\n"),
        "scenario",
        "at least one",
    ),
    "scenario as a table": (
        (VALID[VALID.index("[[scenario]]") :], '[scenario]\nname = "x"\n'),
        "scenario",
        "array of [[scenario]] tables",
    ),
    "bad TOML": (("target_irr = 0.12", "target_irr = 0.12.3"), "line 2", "target_irr"),
}


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_file_names_file_and_key(case: str, tmp_path: Path) -> None:
    """Each malformed file raises SettingsError naming the file, the key path and the rule."""
    (old, new), key, words = MALFORMED[case]
    assert old in VALID, "the edit must change the valid file"
    path = tmp_path / "eu.toml"
    path.write_text(VALID.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load_scenarios(path)
    lines = str(info.value).splitlines()
    matching = [line for line in lines if line.startswith(f"{path}: {key}")]
    assert matching, f"no line names {key!r}: {lines}"
    assert any(words in line for line in matching), lines
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_missing_file_is_named() -> None:
    """A file that does not exist raises SettingsError naming it."""
    path = Path("scenarios/does_not_exist.toml")
    with pytest.raises(SettingsError, match=r"^scenarios/does_not_exist\.toml: cannot read"):
        load_scenarios(path)


def test_non_utf8_file_is_named(tmp_path: Path) -> None:
    """A file that is not UTF-8 raises SettingsError naming it, not a UnicodeDecodeError."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(VALID.replace('"base"', '"base é"').encode("latin-1"))
    with pytest.raises(SettingsError, match=r"latin1\.toml: not UTF-8"):
        load_scenarios(path)


def test_syntax_error_gives_line_and_its_text() -> None:
    """A TOML syntax error names the line number and shows the offending line."""
    text = VALID.replace("delay_months = 6", "delay_months = = 6")
    line_no = text.splitlines().index("delay_months = = 6") + 1
    with pytest.raises(SettingsError) as info:
        parse_scenarios(text, source="eu.toml")
    assert str(info.value).startswith(f"eu.toml: line {line_no}, column ")
    assert "'delay_months = = 6'" in str(info.value)


def test_all_problems_are_reported_at_once() -> None:
    """Several problems in one file are all listed, one line each."""
    text = VALID.replace("target_irr = 0.12", "target_irr = -2.0").replace(
        "delay_months = 6", "delay_months = -6"
    )
    with pytest.raises(SettingsError) as info:
        parse_scenarios(text, source="f.toml")
    lines = str(info.value).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "pricing.target_irr",
        "scenario[2].delay_months (scenario 'adverse')",
    ]


# --------------------------------------------------------------------------------------------
# The models themselves


def test_models_validate_when_built_in_python() -> None:
    """Constructing a bad ScenarioSet in code fails too, not only when loading a file."""
    pricing = PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    half = BASE_SCENARIO.model_copy(update={"weight": 0.5})
    with pytest.raises(ValidationError, match="add up to 1"):
        ScenarioSet(pricing=pricing, scenarios=[half])
    with pytest.raises(ValidationError, match="at least one"):
        ScenarioSet(pricing=pricing, scenarios=[])


def test_models_are_frozen() -> None:
    """Settings cannot be changed after parsing."""
    with pytest.raises(ValidationError, match="frozen"):
        BASE_SCENARIO.weight = 0.5  # type: ignore[misc]


def test_unshocked_keeps_pricing_and_drops_shocks() -> None:
    """ScenarioSet.unshocked() keeps the pricing and replaces the scenarios by BASE_SCENARIO."""
    s = parse_scenarios(VALID)
    u = s.unshocked()
    assert u.pricing == s.pricing
    assert u.scenarios == (BASE_SCENARIO,)
    assert all(x.is_unshocked for x in u.scenarios)


# --------------------------------------------------------------------------------------------
# Round trip

_NAME = st.text(
    alphabet=st.characters(categories=("L", "N", "P", "S"), include_characters=" "),
    min_size=1,
    max_size=64,
).filter(lambda s: s == s.strip() and s.isprintable())


def _finite(lo: float, hi: float, **kw: bool) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False, **kw)


@st.composite
def scenario_sets(draw: st.DrawFn) -> ScenarioSet:
    """Draw any valid ScenarioSet."""
    fee = draw(_finite(0.0, 1.0, exclude_max=True))
    legal = draw(_finite(0.0, 1.0, exclude_max=True))
    sale = draw(_finite(0.0, 1.0, exclude_max=True))
    assume(fee + legal + sale < 1.0)
    pricing = PricingAssumptions(
        target_irr=draw(_finite(-1.0, 1e6, exclude_min=True)),
        servicing_fee=fee,
        horizon_months=draw(st.integers(1, 600)),
        cost_per_loan_per_year=draw(_finite(0.0, 1e9)),
        legal_cost_share=legal,
        collateral_sale_cost=sale,
    )
    names = draw(st.lists(_NAME, min_size=1, max_size=6, unique_by=str.casefold))
    parts = draw(st.lists(st.integers(1, 1000), min_size=len(names), max_size=len(names)))
    scenarios = [
        Scenario(
            name=name,
            weight=part / sum(parts),
            collateral_value_change=draw(_finite(-1.0, 10.0, exclude_min=True)),
            collections_multiplier=draw(_finite(0.0, 10.0)),
            delay_months=draw(st.integers(0, 10_000)),
        )
        for name, part in zip(names, parts, strict=True)
    ]
    return ScenarioSet(pricing=pricing, scenarios=scenarios)


@given(scenario_sets())
def test_any_valid_set_round_trips_through_toml(scenario_set: ScenarioSet) -> None:
    """Writing any valid set as TOML text and parsing it back gives an equal set."""
    assert parse_scenarios(dump_scenarios(scenario_set)) == scenario_set
