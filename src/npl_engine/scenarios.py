"""Pricing assumptions and stress scenarios, as typed settings read from ``scenarios/*.toml``.

A scenario file holds one ``[pricing]`` table and one or more ``[[scenario]]`` tables (see the
data contract, "Scenario files"). :func:`load_scenarios` parses it once, at the edge, into a
:class:`ScenarioSet`; valuation code takes that object and never a path or a loose dict.

Every problem with a file (missing, not TOML, unknown or misspelt key, wrong type, value out of
range, weights not adding up to 1, duplicate names) becomes a
:class:`~npl_engine.errors.SettingsError` whose message names the file and the key, for example
``scenarios/eu.toml: scenario[2].weight: must be greater than 0, got -0.1``. Indices in key
paths count ``[[scenario]]`` tables from 1, in file order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from npl_engine.errors import SettingsError
from npl_engine.settings import (
    describe_error,
    key_path,
    parse_toml,
    read_settings,
    toml_value,
)

__all__ = [
    "BASE_SCENARIO",
    "LEGAL_COST_STAGES",
    "MAX_HORIZON_MONTHS",
    "WEIGHT_TOLERANCE",
    "PricingAssumptions",
    "Scenario",
    "ScenarioSet",
    "dump_scenarios",
    "load_scenarios",
    "parse_scenarios",
]

LEGAL_COST_STAGES: tuple[str, ...] = ("proceedings", "judgment", "auction", "insolvency")
"""``legal_stage`` values on which :attr:`PricingAssumptions.legal_cost_share` is charged."""

WEIGHT_TOLERANCE = 1e-9
"""How far the weights of a :class:`ScenarioSet` may add up away from 1."""

MAX_HORIZON_MONTHS = 600
"""Longest valuation horizon accepted (50 years)."""

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class PricingAssumptions(BaseModel):
    """How expected collections turn into a price: discount rate, horizon and costs.

    The first three keys are the data contract's; the others are the project's additions, and
    their defaults (all 0) leave the contract's meanings unchanged.

    Parameters
    ----------
    target_irr
        Buyer's required return, a decimal per year (> -1). A cash flow in month ``t`` after the
        cut-off date is discounted by ``(1 + target_irr) ** (t / 12)``.
    servicing_fee
        Share of gross collections paid to the servicer, in ``[0, 1)``.
    horizon_months
        Valuation horizon in months after the cut-off date, 1 to 600; collections later than
        this are not valued.
    cost_per_loan_per_year
        Fixed servicing cost of each loan on the tape, in the dataset's currency per year,
        charged as one twelfth in every month of the horizon. ``>= 0``; default 0.
    legal_cost_share
        Legal costs as a share of gross collections on loans whose ``legal_stage`` is one of
        :data:`LEGAL_COST_STAGES` (proceedings, judgment, auction, insolvency), in ``[0, 1)``;
        default 0.
    collateral_sale_cost
        Costs of selling collateral (auction fees, agents, taxes) as a share of collateral-sale
        proceeds, in ``[0, 1)``; default 0.

    Notes
    -----
    Every share is taken of *gross* collections, so the deductions add up and do not depend on
    the order they are applied in: on a loan in a legal stage a collateral sale of 100 with
    ``servicing_fee`` 0.08, ``legal_cost_share`` 0.05 and ``collateral_sale_cost`` 0.04 nets
    ``100 * (1 - 0.08 - 0.05 - 0.04) = 83``. Their sum must stay below 1, so that no collection
    is worth less than nothing.

    Examples
    --------
    >>> p = PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    >>> p.cost_per_loan_per_year, p.legal_cost_share, p.collateral_sale_cost
    (0.0, 0.0, 0.0)
    """

    model_config = _MODEL_CONFIG

    target_irr: float = Field(strict=True, gt=-1.0)
    servicing_fee: float = Field(strict=True, ge=0.0, lt=1.0)
    horizon_months: int = Field(strict=True, ge=1, le=MAX_HORIZON_MONTHS)
    cost_per_loan_per_year: float = Field(default=0.0, strict=True, ge=0.0)
    legal_cost_share: float = Field(default=0.0, strict=True, ge=0.0, lt=1.0)
    collateral_sale_cost: float = Field(default=0.0, strict=True, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _deductions_below_one(self) -> PricingAssumptions:
        total = self.servicing_fee + self.legal_cost_share + self.collateral_sale_cost
        if total >= 1.0:
            raise PydanticCustomError(
                "deductions_too_large",
                "servicing_fee + legal_cost_share + collateral_sale_cost must be below 1, "
                "got {total} (a collection would be worth nothing or less)",
                {"total": repr(total)},
            )
        return self


class Scenario(BaseModel):
    """One stress scenario: shocks applied to the business-as-usual collection forecast.

    Parameters
    ----------
    name
        Label shown in results; 1 to 64 printable characters without leading or trailing
        spaces, unique (ignoring case) within a :class:`ScenarioSet`.
    weight
        Probability given to the scenario, in ``(0, 1]``; the weights of a set add up to 1.
    collateral_value_change
        Relative change applied to every ``collateral_value`` (-0.2 = a 20 % fall); > -1.
    collections_multiplier
        Scale on expected collections that do not come from collateral sales; >= 0.
    delay_months
        Extra whole months before every expected collection; >= 0.

    Examples
    --------
    >>> s = Scenario(name="adverse", weight=0.3, collateral_value_change=-0.15,
    ...              collections_multiplier=0.85, delay_months=6)
    >>> s.is_unshocked, BASE_SCENARIO.is_unshocked
    (False, True)
    """

    model_config = _MODEL_CONFIG

    name: str = Field(strict=True, min_length=1, max_length=64)
    weight: float = Field(strict=True, gt=0.0, le=1.0)
    collateral_value_change: float = Field(strict=True, gt=-1.0)
    collections_multiplier: float = Field(strict=True, ge=0.0)
    delay_months: int = Field(strict=True, ge=0)

    @field_validator("name")
    @classmethod
    def _readable_name(cls, name: str) -> str:
        if name != name.strip() or not name.isprintable():
            raise PydanticCustomError(
                "scenario_name",
                "must be printable text without leading or trailing spaces, got {name}",
                {"name": repr(name)},
            )
        return name

    @property
    def is_unshocked(self) -> bool:
        """Whether the scenario leaves the business-as-usual forecast unchanged."""
        return (
            self.collateral_value_change == 0.0
            and self.collections_multiplier == 1.0
            and self.delay_months == 0
        )


BASE_SCENARIO = Scenario(
    name="base",
    weight=1.0,
    collateral_value_change=0.0,
    collections_multiplier=1.0,
    delay_months=0,
)
"""The scenario with no shocks and all the weight: valuing with it is the unshocked run."""


class ScenarioSet(BaseModel):
    """The content of a scenario file: pricing assumptions and weighted scenarios.

    Parameters
    ----------
    pricing
        The ``[pricing]`` table.
    scenarios
        The ``[[scenario]]`` tables in file order: at least one, names unique (ignoring case),
        weights adding up to 1 within :data:`WEIGHT_TOLERANCE`.

    Examples
    --------
    >>> pricing = PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    >>> s = ScenarioSet(pricing=pricing, scenarios=[BASE_SCENARIO])
    >>> s.names
    ('base',)
    >>> s.unshocked() == s
    True
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    pricing: PricingAssumptions
    # The file spells the array ``[[scenario]]`` (one table per scenario).
    scenarios: tuple[Scenario, ...] = Field(validation_alias="scenario")

    @field_validator("scenarios")
    @classmethod
    def _check_scenarios(cls, scenarios: tuple[Scenario, ...]) -> tuple[Scenario, ...]:
        if not scenarios:
            raise PydanticCustomError("no_scenarios", "at least one [[scenario]] table is required")
        seen: dict[str, int] = {}  # casefolded name -> 1-based position, as in key paths
        for i, s in enumerate(scenarios):
            key = s.name.casefold()
            if key in seen:
                raise PydanticCustomError(
                    "duplicate_scenario_name",
                    "duplicate scenario name {name} (scenario[{first}] has the same name; "
                    "names are compared ignoring case)",
                    {"name": repr(s.name), "first": seen[key], "loc_suffix": (i, "name")},
                )
            seen[key] = i + 1
        total = math.fsum(s.weight for s in scenarios)
        if abs(total - 1.0) > WEIGHT_TOLERANCE:
            terms = " + ".join(f"{s.weight!r} ({s.name})" for s in scenarios)
            raise PydanticCustomError(
                "weights_sum",
                "the weights must add up to 1, got {total} = {terms}",
                {"total": repr(total), "terms": terms, "loc_suffix": ("*", "weight")},
            )
        return scenarios

    @property
    def names(self) -> tuple[str, ...]:
        """Scenario names in file order."""
        return tuple(s.name for s in self.scenarios)

    def unshocked(self) -> ScenarioSet:
        """Return the same pricing with :data:`BASE_SCENARIO` as the only scenario."""
        return ScenarioSet(pricing=self.pricing, scenarios=(BASE_SCENARIO,))


# --------------------------------------------------------------------------------------------
# Reading and writing TOML


_TOP_LEVEL_KEYS = ("pricing", "scenario")
_PRICING_KEYS = tuple(PricingAssumptions.model_fields)
_SCENARIO_KEYS = tuple(Scenario.model_fields)


def load_scenarios(path: str | Path) -> ScenarioSet:
    """Read and validate a scenario file.

    Parameters
    ----------
    path
        A TOML file in the contract's format (``[pricing]`` and ``[[scenario]]`` tables).

    Returns
    -------
    ScenarioSet
        The validated settings.

    Raises
    ------
    SettingsError
        If the file cannot be read, is not valid TOML or breaks any rule of the models; the
        message names the file and the key path of every problem found.

    Examples
    --------
    >>> s = load_scenarios("scenarios/eu_2026.toml")  # doctest: +SKIP
    >>> s.names  # doctest: +SKIP
    ('base', 'adverse', 'severe')
    """
    return parse_scenarios(read_settings(path, "scenario file"), source=str(path))


def parse_scenarios(text: str, *, source: str = "<string>") -> ScenarioSet:
    """Parse and validate the text of a scenario file.

    Parameters
    ----------
    text
        TOML text in the contract's format.
    source
        Name of the file (or other origin) used in error messages.

    Returns
    -------
    ScenarioSet
        The validated settings.

    Raises
    ------
    SettingsError
        As :func:`load_scenarios`.

    Examples
    --------
    >>> text = '''
    ... [pricing]
    ... target_irr = 0.12
    ... servicing_fee = 0.08
    ... horizon_months = 60
    ... [[scenario]]
    ... name = "base"
    ... weight = 1.0
    ... collateral_value_change = 0.0
    ... collections_multiplier = 1.0
    ... delay_months = 0
    ... '''
    >>> parse_scenarios(text).scenarios == (BASE_SCENARIO,)
    True
    """
    # The model also accepts its Python field name ``scenarios``: a file must spell the array
    # ``[[scenario]]``, so unknown top-level keys are caught before it.
    known, problems = parse_toml(text, source, _TOP_LEVEL_KEYS)
    try:
        scenario_set = ScenarioSet.model_validate(known)
    except ValidationError as exc:
        problems += [
            f"{source}: {key_path(e, known, named=('scenario',))}: "
            f"{describe_error(e, allowed=_allowed, missing=_MISSING)}"
            for e in exc.errors()
        ]
    if problems:
        raise SettingsError("\n".join(problems))
    return scenario_set


def dump_scenarios(scenario_set: ScenarioSet) -> str:
    """Write a scenario set as TOML text in the contract's format.

    Every key is written, defaults included, and floats are written with ``repr`` so that
    :func:`parse_scenarios` gives back an equal set.

    Parameters
    ----------
    scenario_set
        The settings to write.

    Returns
    -------
    str
        TOML text.

    Examples
    --------
    >>> pricing = PricingAssumptions(target_irr=0.12, servicing_fee=0.08, horizon_months=60)
    >>> s = ScenarioSet(pricing=pricing, scenarios=[BASE_SCENARIO])
    >>> parse_scenarios(dump_scenarios(s)) == s
    True
    """
    lines = ["[pricing]"]
    lines += [f"{key} = {toml_value(getattr(scenario_set.pricing, key))}" for key in _PRICING_KEYS]
    for scenario in scenario_set.scenarios:
        lines += ["", "[[scenario]]"]
        lines += [f"{key} = {toml_value(getattr(scenario, key))}" for key in _SCENARIO_KEYS]
    return "\n".join(lines) + "\n"


_MISSING: dict[tuple[int | str, ...], str] = {
    ("pricing",): "missing: the file needs a [pricing] table",
    ("scenario",): "missing: the file needs at least one [[scenario]] table",
}


def _allowed(loc: tuple[int | str, ...]) -> Sequence[str]:
    return _PRICING_KEYS if loc[0] == "pricing" else _SCENARIO_KEYS
