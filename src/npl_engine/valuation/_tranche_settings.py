"""Tranche settings: the tranche file's tables as typed models, and its TOML reader.

A tranche file (``--tranches FILE``, e.g. ``scenarios/gacs_tranches.toml``) holds an optional
``[structure]`` table with the senior fees, one ``[[tranche]]`` table per class of notes and an
optional ``[triggers]`` table of GACS deal triggers (:class:`Triggers`), tested against the
business plan every period, per scenario and per Monte Carlo path.
:func:`load_tranches` parses it once, at the edge, into a :class:`TrancheStructure`, which
:func:`~npl_engine.valuation.waterfall` runs. ``docs/tranches.md`` explains the structure, the
order of payments and how to read the output.

Every problem with a file becomes a :class:`~npl_engine.errors.SettingsError` naming the file
and the key, for example ``scenarios/gacs.toml: tranche[2].coupon (tranche 'mezzanine'):
must be at least 0.0, got -0.01``. Indices in key paths count ``[[tranche]]`` tables from 1,
in file order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from npl_engine.errors import SettingsError

# The scenario files' error wording (key paths, values as the user wrote them, TOML syntax
# errors, "did you mean") is reused so that every settings file reads the same.
from npl_engine.settings import describe_error, key_path, parse_toml, read_settings

__all__ = [
    "SIZE_KEYS",
    "TRIGGER_NAMES",
    "StructureTerms",
    "Tranche",
    "TrancheStructure",
    "Triggers",
    "load_tranches",
    "parse_tranches",
]

SIZE_KEYS: tuple[str, ...] = ("size_pct_gbv", "size_pct_price", "amount")
"""The ways a class's size can be given; a class that is not the residual gives exactly one."""

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class StructureTerms(BaseModel):
    """The ``[structure]`` table: senior fees, paid before any class of notes.

    Parameters
    ----------
    senior_fees_share
        Share of each month's (positive) net collections paid as senior fees, in ``[0, 1)``;
        default 0.
    senior_fees_fixed_per_year
        Fixed senior costs in the portfolio's currency per year, charged as one twelfth each
        month; ``>= 0``; default 0.

    Examples
    --------
    >>> StructureTerms(senior_fees_share=0.015).senior_fees_fixed_per_year
    0.0
    """

    model_config = _MODEL_CONFIG

    senior_fees_share: float = Field(default=0.0, strict=True, ge=0.0, lt=1.0)
    senior_fees_fixed_per_year: float = Field(default=0.0, strict=True, ge=0.0)


TRIGGER_NAMES: tuple[str, ...] = (
    "collection_ratio",
    "pv_ratio",
    "senior_interest_cover",
    "subordination",
    "servicer_fee_deferral",
)
"""Triggers a waterfall reports: the three tests, ``subordination`` (any of them hit) and
the servicer fee deferral."""


class Triggers(BaseModel):
    """The ``[triggers]`` table: GACS-style performance triggers, tested every period.

    A structure with a ``[triggers]`` table pays in the order GACS deals use before a
    subordination event (every class's interest, then principal by seniority); at each test
    date it compares the run's collections with the business plan and, if a test fails,
    subordinates the interest of the classes below the senior (the mezzanine) to the senior
    principal until a later test date passes. Without the table the waterfall is fully
    sequential throughout (as if the event had always occurred).

    Parameters
    ----------
    period_months
        Months between test dates, 1 to 12 (default 6: GACS notes pay semi-annually). Tests
        run at the end of months ``period_months``, ``2 × period_months``, ...; the outcome
        applies to the months up to the next test date.
    cumulative_collection_ratio
        Cumulative net collections over the plan's cumulative net collections, to the test
        date; below it, mezzanine interest is subordinated. Published deals use about
        0.85-0.90. Omitted: not tested.
    pv_profitability_ratio
        The same ratio of present values, at the plan's discount rate; below it, mezzanine
        interest is subordinated (about 0.85-0.90 in published deals). Omitted: not tested.
    senior_interest_cover
        Funds available after senior fees over senior interest due, both summed over the
        period ending at the test date; below it, mezzanine interest is subordinated
        (e.g. 1.0-1.5). Omitted: not tested.
    servicer_fee_deferral_ratio, servicer_fee_deferred_share
        When the cumulative collection ratio is below ``servicer_fee_deferral_ratio``, the
        share ``servicer_fee_deferred_share`` (in (0, 1]) of the servicer's fee (the scenario
        file's ``servicing_fee`` on gross collections, already out of net collections) is not
        paid in the months to the next test date: it stays in the waterfall and is owed to
        the servicer after the rated classes, before the junior. Both or neither.

    Examples
    --------
    >>> Triggers(cumulative_collection_ratio=0.9).period_months
    6
    """

    model_config = _MODEL_CONFIG

    period_months: int = Field(default=6, strict=True, ge=1, le=12)
    cumulative_collection_ratio: float | None = Field(default=None, strict=True, gt=0.0)
    pv_profitability_ratio: float | None = Field(default=None, strict=True, gt=0.0)
    senior_interest_cover: float | None = Field(default=None, strict=True, gt=0.0)
    servicer_fee_deferral_ratio: float | None = Field(default=None, strict=True, gt=0.0)
    servicer_fee_deferred_share: float | None = Field(default=None, strict=True, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _deferral_pair(self) -> Triggers:
        pair = ("servicer_fee_deferral_ratio", "servicer_fee_deferred_share")
        given = [key for key in pair if getattr(self, key) is not None]
        if len(given) == 1:
            other = pair[1 - pair.index(given[0])]
            raise PydanticCustomError(
                "deferral_pair",
                "servicer fee deferral needs both servicer_fee_deferral_ratio and "
                "servicer_fee_deferred_share; {other} is missing",
                {"other": other, "loc_suffix": (other,)},
            )
        return self

    @property
    def defers_servicer_fee(self) -> bool:
        """Whether the servicer fee deferral is set."""
        return self.servicer_fee_deferred_share is not None


class Tranche(BaseModel):
    """One class of notes: a ``[[tranche]]`` table.

    Parameters
    ----------
    name
        Label shown in results; 1 to 64 printable characters without leading or trailing
        spaces, unique (ignoring case) within a structure.
    order
        Seniority, 1 = most senior; unique within a structure; the residual class has the
        largest.
    size_pct_gbv, size_pct_price, amount
        The class's size (face value, issued at par at month 0), given as exactly one of: a
        share of the portfolio's gross book value in ``(0, 1]``, a share of the price paid in
        ``(0, 1)``, or an amount in the portfolio's currency ``> 0``. The residual class gives
        none: its size is the price less the other classes.
    coupon
        Annual interest rate, a decimal in ``[0, 1)``, paid monthly at the equivalent monthly
        rate ``(1 + coupon) ** (1 / 12) - 1`` on the class's outstanding balance. Required for
        every class except the residual, which has none.
    residual
        Whether the class takes whatever is left (the junior notes); exactly one class is.

    Examples
    --------
    >>> Tranche(name="senior", order=1, size_pct_gbv=0.24, coupon=0.035).residual
    False
    >>> Tranche(name="junior", order=3, residual=True).coupon is None
    True
    """

    model_config = _MODEL_CONFIG

    name: str = Field(strict=True, min_length=1, max_length=64)
    order: int = Field(strict=True, ge=1)
    size_pct_gbv: float | None = Field(default=None, strict=True, gt=0.0, le=1.0)
    size_pct_price: float | None = Field(default=None, strict=True, gt=0.0, lt=1.0)
    amount: float | None = Field(default=None, strict=True, gt=0.0)
    coupon: float | None = Field(default=None, strict=True, ge=0.0, lt=1.0)
    residual: bool = Field(default=False, strict=True)

    @field_validator("name")
    @classmethod
    def _readable_name(cls, name: str) -> str:
        if name != name.strip() or not name.isprintable():
            raise PydanticCustomError(
                "tranche_name",
                "must be printable text without leading or trailing spaces, got {name}",
                {"name": repr(name)},
            )
        return name

    @model_validator(mode="after")
    def _size_and_coupon(self) -> Tranche:
        given = [key for key in SIZE_KEYS if getattr(self, key) is not None]
        if self.residual:
            if given:
                raise PydanticCustomError(
                    "residual_size",
                    "the residual class takes the price less the classes above it, so it has "
                    "no size of its own; remove {key}",
                    {"key": given[0], "loc_suffix": (given[0],)},
                )
            if self.coupon is not None:
                raise PydanticCustomError(
                    "residual_coupon",
                    "the residual class receives everything left after the classes above it, "
                    "so it has no coupon; remove coupon",
                    {"loc_suffix": ("coupon",)},
                )
            return self
        if len(given) != 1:
            got = " and ".join(given) if given else "none"
            raise PydanticCustomError(
                "tranche_size",
                "give the class's size as exactly one of size_pct_gbv, size_pct_price or "
                "amount (or mark it residual = true), got {got}",
                {"got": got, "loc_suffix": (given[-1],) if given else ()},
            )
        if self.coupon is None:
            raise PydanticCustomError(
                "tranche_coupon",
                "missing: every class but the residual needs a coupon (annual, decimal; 0 for "
                "a note that pays no interest)",
                {"loc_suffix": ("coupon",)},
            )
        return self

    @property
    def monthly_rate(self) -> float:
        """The coupon as a monthly rate, ``(1 + coupon) ** (1 / 12) - 1`` (0 without one)."""
        rate: float = (1.0 + (self.coupon or 0.0)) ** (1.0 / 12.0) - 1.0
        return rate

    def size_source(self) -> str:
        """How the size was given, as written in the file (``"size_pct_gbv = 0.24"``)."""
        for key in SIZE_KEYS:
            value = getattr(self, key)
            if value is not None:
                return f"{key} = {value!r}"
        return "residual = true"


class TrancheStructure(BaseModel):
    """The content of a tranche file: senior fees and the classes of notes.

    Parameters
    ----------
    terms
        The ``[structure]`` table (optional in the file; no senior fees without it).
    triggers
        The ``[triggers]`` table, if any (:class:`Triggers`); without it the waterfall is
        fully sequential.
    tranches
        The ``[[tranche]]`` tables, at least one, kept **in seniority order** (by ``order``,
        whatever their order in the file). Names and orders are unique; exactly one class is
        the residual and it comes last; the ``size_pct_price`` of the other classes add up to
        less than 1.

    Examples
    --------
    >>> s = TrancheStructure(tranches=[
    ...     Tranche(name="junior", order=2, residual=True),
    ...     Tranche(name="senior", order=1, size_pct_price=0.8, coupon=0.04),
    ... ])
    >>> s.names
    ('senior', 'junior')
    >>> s.amounts(gbv=1000.0, price=250.0)
    (200.0, 50.0)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # The file spells the tables ``[structure]`` and ``[[tranche]]`` (one table per class).
    terms: StructureTerms = Field(default_factory=StructureTerms, validation_alias="structure")
    tranches: tuple[Tranche, ...] = Field(validation_alias="tranche")
    triggers: Triggers | None = Field(default=None, validation_alias="triggers")

    @field_validator("tranches")
    @classmethod
    def _check_tranches(cls, tranches: tuple[Tranche, ...]) -> tuple[Tranche, ...]:
        if not tranches:
            raise PydanticCustomError("no_tranches", "at least one [[tranche]] table is required")
        names: dict[str, int] = {}  # casefolded name -> 1-based position, as in key paths
        orders: dict[int, int] = {}
        for i, t in enumerate(tranches):
            if t.name.casefold() in names:
                raise PydanticCustomError(
                    "duplicate_tranche_name",
                    "duplicate tranche name {name} (tranche[{first}] has the same name; names "
                    "are compared ignoring case)",
                    {
                        "name": repr(t.name),
                        "first": names[t.name.casefold()],
                        "loc_suffix": (i, "name"),
                    },
                )
            if t.order in orders:
                raise PydanticCustomError(
                    "duplicate_tranche_order",
                    "duplicate order {order} (tranche[{first}] has the same order; each class "
                    "needs its own rank, 1 = most senior)",
                    {"order": t.order, "first": orders[t.order], "loc_suffix": (i, "order")},
                )
            names[t.name.casefold()] = orders[t.order] = i + 1
        residual = [i for i, t in enumerate(tranches) if t.residual]
        if not residual:
            raise PydanticCustomError(
                "no_residual",
                "one class must be marked residual = true (the junior notes, which take what is "
                "left after the other classes)",
                {"loc_suffix": ("*", "residual")},
            )
        if len(residual) > 1:
            raise PydanticCustomError(
                "two_residuals",
                "only one class can be residual (tranche[{first}] already is)",
                {"first": residual[0] + 1, "loc_suffix": (residual[1], "residual")},
            )
        last = max(tranches, key=lambda t: t.order)
        res = tranches[residual[0]]
        if last is not res:
            raise PydanticCustomError(
                "residual_not_last",
                "the residual class must come last in order: it has order {order} but "
                "{other} has order {other_order}",
                {
                    "order": res.order,
                    "other": repr(last.name),
                    "other_order": last.order,
                    "loc_suffix": (residual[0], "order"),
                },
            )
        share = math.fsum(t.size_pct_price or 0.0 for t in tranches)
        if share >= 1.0:
            raise PydanticCustomError(
                "size_pct_price_sum",
                "the classes' size_pct_price add up to {share}; they must stay below 1 so that "
                "the residual class (price less the others) has a positive size",
                {"share": repr(share), "loc_suffix": ("*", "size_pct_price")},
            )
        return tuple(sorted(tranches, key=lambda t: t.order))

    @property
    def names(self) -> tuple[str, ...]:
        """Class names, most senior first."""
        return tuple(t.name for t in self.tranches)

    def amounts(self, *, gbv: float, price: float) -> tuple[float, ...]:
        """Each class's size in currency, most senior first, for a portfolio and a price.

        Parameters
        ----------
        gbv
            Gross book value of the portfolio (> 0), the base of ``size_pct_gbv``.
        price
            Price paid for the portfolio at month 0 (> 0), the base of ``size_pct_price``;
            the classes add up to it.

        Returns
        -------
        tuple of float
            ``size_pct_gbv × gbv``, ``size_pct_price × price`` or ``amount`` for each class,
            and ``price`` less all of those for the residual class.

        Raises
        ------
        SettingsError
            If the classes other than the residual reach or exceed the price, which would
            leave the residual class with nothing (or less); the message lists each class's
            size and the key it came from.
        ValueError
            If ``gbv`` or ``price`` is not a positive finite number.
        """
        for label, value in (("gbv", gbv), ("price", price)):
            if not (math.isfinite(value) and value > 0):
                msg = f"{label} must be a positive finite number, got {value!r}"
                raise ValueError(msg)
        sizes = [
            (t.size_pct_gbv * gbv if t.size_pct_gbv is not None else 0.0)
            + (t.size_pct_price * price if t.size_pct_price is not None else 0.0)
            + (t.amount or 0.0)
            for t in self.tranches[:-1]  # the residual class comes last
        ]
        rated = math.fsum(sizes)
        if rated >= price:
            terms = " + ".join(
                f"{t.name} {size:,.2f} ({t.size_source()})"
                for t, size in zip(self.tranches[:-1], sizes, strict=True)
            )
            junior = self.tranches[-1].name
            msg = (
                f"tranche sizes: the classes above the residual add up to {rated:,.2f} = {terms}, "
                f"which is not below the price paid {price:,.2f} ({price / gbv:.2%} of GBV "
                f"{gbv:,.2f}); the residual class {junior!r} takes the price less the others "
                "and would have nothing. Lower the sizes or give them as size_pct_price."
            )
            raise SettingsError(msg)
        return (*sizes, price - rated)


# --------------------------------------------------------------------------------------------
# Reading TOML


_TOP_LEVEL_KEYS = ("structure", "tranche", "triggers")
_STRUCTURE_KEYS = tuple(StructureTerms.model_fields)
_TRIGGER_KEYS = tuple(Triggers.model_fields)
_TRANCHE_KEYS = tuple(Tranche.model_fields)


def load_tranches(path: str | Path) -> TrancheStructure:
    """Read and validate a tranche file.

    Parameters
    ----------
    path
        A TOML file with an optional ``[structure]`` table and ``[[tranche]]`` tables.

    Returns
    -------
    TrancheStructure
        The validated structure, classes in seniority order.

    Raises
    ------
    SettingsError
        If the file cannot be read, is not valid TOML or breaks any rule of the models; the
        message names the file and the key path of every problem found.

    Examples
    --------
    >>> s = load_tranches("scenarios/gacs_tranches.toml")  # doctest: +SKIP
    >>> s.names  # doctest: +SKIP
    ('senior', 'mezzanine', 'junior')
    """
    return parse_tranches(read_settings(path, "tranche file"), source=str(path))


def parse_tranches(text: str, *, source: str = "<string>") -> TrancheStructure:
    """Parse and validate the text of a tranche file.

    Parameters
    ----------
    text
        TOML text: an optional ``[structure]`` table and ``[[tranche]]`` tables.
    source
        Name of the file (or other origin) used in error messages.

    Returns
    -------
    TrancheStructure
        The validated structure, classes in seniority order.

    Raises
    ------
    SettingsError
        As :func:`load_tranches`.

    Examples
    --------
    >>> text = '''
    ... [structure]
    ... senior_fees_share = 0.02
    ... [[tranche]]
    ... name = "senior"
    ... order = 1
    ... size_pct_gbv = 0.24
    ... coupon = 0.035
    ... [[tranche]]
    ... name = "junior"
    ... order = 2
    ... residual = true
    ... '''
    >>> parse_tranches(text).names
    ('senior', 'junior')
    """
    # The model also accepts its Python field names (terms, tranches); a file must use the
    # table names, so unknown top-level keys are caught before it.
    known, problems = parse_toml(text, source, _TOP_LEVEL_KEYS)
    try:
        structure = TrancheStructure.model_validate(known)
    except ValidationError as exc:
        problems += [
            f"{source}: {_tranche_key_path(e, known)}: {_describe(e)}" for e in exc.errors()
        ]
    if problems:
        raise SettingsError("\n".join(problems))
    return structure


def _tranche_key_path(error: ErrorDetails, data: Mapping[str, Any]) -> str:
    """Key path of an error, with the class's name: ``tranche[2].coupon (tranche 'mezz')``."""
    return key_path(error, data, named=("tranche",))


_MISSING: dict[tuple[int | str, ...], str] = {
    ("tranche",): "missing: the file needs at least one [[tranche]] table"
}


def _allowed(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    return {"structure": _STRUCTURE_KEYS, "triggers": _TRIGGER_KEYS}.get(str(loc[0]), _TRANCHE_KEYS)


def _describe(error: ErrorDetails) -> str:
    """Reword one pydantic error for someone editing a tranche file."""
    return describe_error(error, allowed=_allowed, missing=_MISSING)
