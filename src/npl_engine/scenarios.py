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

import difflib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from npl_engine.errors import SettingsError

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
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


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
    return parse_scenarios(_read_settings(path, "scenario file"), source=str(path))


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
    known, problems = _top_level(text, source, _TOP_LEVEL_KEYS)
    try:
        scenario_set = ScenarioSet.model_validate(known)
    except ValidationError as exc:
        problems += [f"{source}: {_key_path(e, known)}: {_describe_error(e)}" for e in exc.errors()]
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
    lines += [f"{key} = {_toml_value(getattr(scenario_set.pricing, key))}" for key in _PRICING_KEYS]
    for scenario in scenario_set.scenarios:
        lines += ["", "[[scenario]]"]
        lines += [f"{key} = {_toml_value(getattr(scenario, key))}" for key in _SCENARIO_KEYS]
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    """Format a str, int or finite float as a TOML value."""
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):  # bool is an int: keep it out of the int branch
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    msg = f"cannot write {type(value).__name__} as TOML"
    raise TypeError(msg)


def _toml_string(value: str) -> str:
    """Quote ``value`` as a TOML basic string, escaping what TOML requires."""
    out = ['"']
    for ch in value:
        if ch in {'"', "\\"}:
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(f"\\U{ord(ch):08X}")
    out.append('"')
    return "".join(out)


def _read_settings(path: str | Path, what: str) -> str:
    """The text of a settings file; SettingsError naming it if it cannot be read or decoded."""
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        msg = f"{source}: cannot read the {what}: {reason}"
        raise SettingsError(msg) from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        msg = f"{source}: not UTF-8 text (TOML files are UTF-8): byte {exc.start} is invalid"
        raise SettingsError(msg) from exc


def _top_level(text: str, source: str, allowed: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse a settings file's TOML: its allowed top-level tables, and a problem per other key.

    Raises
    ------
    SettingsError
        If the text is not valid TOML (with the line and its text).
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(_toml_syntax_message(source, text, exc)) from exc
    problems = [
        f"{source}: {key}: {_unknown_key(key, allowed)}" for key in data if key not in allowed
    ]
    return {key: value for key, value in data.items() if key in allowed}, problems


def _toml_syntax_message(source: str, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """Describe a TOML syntax error with its line, and the line's text where known."""
    reason = _TOML_POSITION.sub("", str(exc)).strip()
    match = _TOML_POSITION.search(str(exc))
    if match is None:
        return f"{source}: invalid TOML: {reason}"
    line_no, col_no = int(match.group(1)), int(match.group(2))
    lines = text.splitlines()
    shown = f": {lines[line_no - 1].strip()!r}" if 0 < line_no <= len(lines) else ""
    return f"{source}: line {line_no}, column {col_no}: invalid TOML ({reason}){shown}"


def _key_path(error: ErrorDetails, data: Mapping[str, Any]) -> str:
    """Render a pydantic error location as a key path: ``scenario[2].weight``."""
    loc: tuple[int | str, ...] = tuple(error["loc"])
    suffix = (error.get("ctx") or {}).get("loc_suffix")
    if suffix is not None:
        loc += tuple(suffix)
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part + 1}]")
        elif part == "*":
            parts.append("[*]")
        else:
            parts.append(f".{part}" if parts else part)
    path = "".join(parts) or "(file)"
    # Name the scenario as well as its position, which is easy to miscount in a long file.
    if len(loc) > 2 and loc[0] == "scenario" and loc[2] != "name":
        index, scenarios = loc[1], data.get("scenario")
        if isinstance(index, int) and isinstance(scenarios, list) and index < len(scenarios):
            entry = scenarios[index]
            if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
                path += f" (scenario {entry['name']!r})"
    return path


_EXPECTED = {
    "float_type": "expected a number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "string_type": "expected a string",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "dict_type": "expected a table",
    "tuple_type": "expected an array of [[scenario]] tables",
    "list_type": "expected an array of [[scenario]] tables",
    "finite_number": "must be a finite number",
    "string_too_short": "must be 1 to 64 characters long",
    "string_too_long": "must be 1 to 64 characters long",
}
_BOUNDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}
_MISSING: dict[tuple[int | str, ...], str] = {
    ("pricing",): "missing: the file needs a [pricing] table",
    ("scenario",): "missing: the file needs at least one [[scenario]] table",
}


def _describe_error(error: ErrorDetails) -> str:
    """Reword one pydantic error for someone editing a TOML file."""
    kind = error["type"]
    loc = tuple(error["loc"])
    got = _describe_value(error.get("input"))
    if kind == "missing":
        return _MISSING.get(loc, "missing required key")
    if kind == "extra_forbidden":
        allowed = _PRICING_KEYS if loc[0] == "pricing" else _SCENARIO_KEYS
        return _unknown_key(str(loc[-1]), allowed)
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {got}"
    if kind in _BOUNDS:
        ctx_key, words = _BOUNDS[kind]
        return f"{words} {(error.get('ctx') or {}).get(ctx_key)}, got {got}"
    # Custom errors (weights, duplicates, deductions, names) carry a finished sentence.
    return str(error["msg"])


def _describe_value(value: object) -> str:
    """Show a TOML value as the user wrote it, with its TOML type where that helps."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{_toml_string(value)} (a string)"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, Sequence):
        return "an array"
    return f"a {type(value).__name__}"


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    """Say a key is not allowed, suggesting the closest allowed key."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"
