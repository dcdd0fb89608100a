"""Tranches: a sequential (GACS-style) waterfall of net collections over classes of notes.

A tranche file (``--tranches FILE``, e.g. ``scenarios/gacs_tranches.toml``) holds an optional
``[structure]`` table with the senior fees, one ``[[tranche]]`` table per class of notes and an
optional ``[triggers]`` table of GACS deal triggers (:class:`Triggers`), tested against the
business plan every period, per scenario and per Monte Carlo path.
:func:`load_tranches` parses it once, at the edge, into a :class:`TrancheStructure`;
:func:`waterfall` takes that object, the net collections of one scenario (shape ``(H,)``) or of
many runs (shape ``(..., H)``: scenarios, Monte Carlo paths) and returns each class's cash flows
and metrics as a :class:`TrancheResults`. ``docs/tranches.md`` explains the structure, the
order of payments and how to read the output.

Every problem with a file becomes a :class:`~npl_engine.errors.SettingsError` naming the file
and the key, for example ``scenarios/gacs.toml: tranche[2].coupon (tranche 'mezzanine'):
must be at least 0.0, got -0.01``. Indices in key paths count ``[[tranche]]`` tables from 1,
in file order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from npl_engine.errors import SettingsError

# The scenario files' error wording (key paths, values as the user wrote them, TOML syntax
# errors, "did you mean") is reused so that every settings file reads the same.
from npl_engine.settings import describe_error, key_path, parse_toml, read_settings
from npl_engine.valuation._finance import (
    annual_irr,
    discount_factors,
    moic,
    weighted_average_life,
)

if TYPE_CHECKING:
    from npl_engine.valuation._montecarlo import MonteCarloResult
    from npl_engine.valuation._pricing import ScenarioValues as Valuation

__all__ = [
    "PERCENTILES",
    "SIZE_KEYS",
    "TRIGGER_NAMES",
    "StructureTerms",
    "Tranche",
    "TrancheFlows",
    "TrancheResults",
    "TrancheStructure",
    "TriggerOutcome",
    "Triggers",
    "load_tranches",
    "parse_tranches",
    "tranche_report",
    "waterfall",
]

FloatArray = npt.NDArray[np.float64]

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
"""Percentiles of yield and loss reported by :meth:`TrancheResults.summary`."""

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


# --------------------------------------------------------------------------------------------
# The waterfall


@dataclass(frozen=True, slots=True)
class TrancheFlows:
    """One class's cash flows and metrics over every run of a waterfall.

    Arrays have the leading shape ``S`` of the net collections given to :func:`waterfall`
    (``()`` for one scenario, ``(paths,)`` for Monte Carlo paths); flows add the month axis.

    Parameters
    ----------
    name, order, coupon, residual
        As in the :class:`Tranche`.
    amount
        Size in currency, issued at par at month 0.
    interest
        Interest paid at months 1..H, shape ``(*S, H)``. For the residual class: the cash it
        receives beyond its amount (its return), since it has no coupon.
    principal
        Principal repaid at months 1..H, shape ``(*S, H)``.
    principal_outstanding
        Principal not repaid by month H, shape ``S``: the class's loss.
    interest_unpaid
        Interest due but unpaid at month H (including interest on arrears), shape ``S``.
    irr
        Annual yield at par: IRR of ``-amount`` at month 0 and ``interest + principal`` at
        months 1..H (:func:`~npl_engine.valuation._finance.annual_irr`), shape ``S``. -1 where
        the class received nothing; NaN only where the IRR cannot be found.
    wal_years
        Weighted-average life in years of the principal repaid, shape ``S``; NaN where no
        principal was repaid.
    moic
        Total cash received / amount, shape ``S``.
    """

    name: str
    order: int
    amount: float
    coupon: float | None
    residual: bool
    interest: FloatArray
    principal: FloatArray
    principal_outstanding: FloatArray
    interest_unpaid: FloatArray
    irr: FloatArray
    wal_years: FloatArray
    moic: FloatArray

    @property
    def cash(self) -> FloatArray:
        """Cash received each month, interest + principal, shape ``(*S, H)``."""
        out: FloatArray = self.interest + self.principal
        return out

    @property
    def loss(self) -> FloatArray:
        """Principal lost: amount less principal repaid by month H (>= 0), shape ``S``."""
        return self.principal_outstanding

    @property
    def loss_share(self) -> FloatArray:
        """Loss as a share of the amount, in [0, 1], shape ``S``."""
        out: FloatArray = self.principal_outstanding / self.amount
        return out


@dataclass(frozen=True, slots=True)
class TriggerOutcome:
    """Which triggers each run hit, at which test date, and the servicer fees deferred.

    Parameters
    ----------
    terms
        The ``[triggers]`` table that was run.
    test_months
        The test dates (months ``period_months``, ``2 × period_months``, ... up to H).
    hits
        For each name of :data:`TRIGGER_NAMES`, whether the run failed that test at each test
        date, shape ``(*S, tests)``; ``subordination`` is any of the three mezzanine tests.
    servicer_deferred, servicer_repaid
        Servicer fees kept in the waterfall each month, and deferred fees paid back to the
        servicer (after the rated classes), shape ``(*S, H)``.
    servicer_unpaid
        Deferred servicer fees still owed at month H, shape ``S``.
    """

    terms: Triggers
    test_months: npt.NDArray[np.int64]
    hits: dict[str, npt.NDArray[np.bool_]]
    servicer_deferred: FloatArray
    servicer_repaid: FloatArray
    servicer_unpaid: FloatArray

    def first_hit_month(self, name: str) -> FloatArray:
        """Month of the first test date at which ``name`` was hit, per run (NaN: never)."""
        hit = self.hits[name]
        first = np.argmax(hit, axis=-1)
        out: FloatArray = np.where(hit.any(axis=-1), self.test_months[first], np.nan)
        return out

    def summary(self) -> pl.DataFrame:
        """One row per trigger: share of runs that hit it and when they first did.

        Returns
        -------
        polars.DataFrame
            ``trigger``, ``tested`` (whether the file sets it), ``threshold``, ``p_hit`` (share
            of runs hit at least once), ``p_hit_first_test`` (at the first test date),
            ``first_month_mean``, ``first_month_p5``, ``first_month_p50``,
            ``first_month_p95`` (over the runs that hit it; NaN if none did).
        """
        limits = {
            "collection_ratio": self.terms.cumulative_collection_ratio,
            "pv_ratio": self.terms.pv_profitability_ratio,
            "senior_interest_cover": self.terms.senior_interest_cover,
            "subordination": None,
            "servicer_fee_deferral": self.terms.servicer_fee_deferral_ratio,
        }
        rows = []
        for name in TRIGGER_NAMES:
            hit = self.hits[name].reshape(-1, self.test_months.size)
            first = self.first_hit_month(name).reshape(-1)
            seen = first[np.isfinite(first)]
            tested = limits[name] is not None or (
                name == "subordination" and any(v is not None for v in list(limits.values())[:3])
            )
            rows.append(
                {
                    "trigger": name,
                    "tested": tested,
                    "threshold": limits[name],
                    "p_hit": float(hit.any(axis=1).mean()) if hit.size else 0.0,
                    "p_hit_first_test": float(hit[:, 0].mean()) if hit.size else 0.0,
                    "first_month_mean": float(seen.mean()) if seen.size else math.nan,
                    **{
                        f"first_month_p{q}": float(np.percentile(seen, q))
                        if seen.size
                        else math.nan
                        for q in (5, 50, 95)
                    },
                }
            )
        return pl.DataFrame(rows, schema_overrides={"threshold": pl.Float64})


@dataclass(frozen=True, slots=True)
class TrancheResults:
    """The outcome of a waterfall: fees and each class's flows over every run.

    Parameters
    ----------
    structure
        The structure that was run.
    gbv, price
        The portfolio's gross book value and the price paid (the classes add up to it).
    net
        The net collections given, shape ``(*S, H)``.
    fees
        Senior fees and costs each month, shape ``(*S, H)``: what was paid in fees (including
        arrears of fees and deficits of earlier months) **less** the deficit of a month whose
        net collections are negative. ``fees + Σ class cash == net`` every month.
    fees_unpaid
        Fees and deficits still owed at month H, shape ``S`` (lost by whoever advanced them).
    tranches
        One :class:`TrancheFlows` per class, most senior first.
    triggers
        With a ``[triggers]`` table: the :class:`TriggerOutcome`. Then
        ``fees + Σ class cash + servicer_repaid − servicer_deferred == net`` every month.
    """

    structure: TrancheStructure
    gbv: float
    price: float
    net: FloatArray
    fees: FloatArray
    fees_unpaid: FloatArray
    tranches: tuple[TrancheFlows, ...]
    triggers: TriggerOutcome | None = None

    @property
    def run_shape(self) -> tuple[int, ...]:
        """Leading shape ``S`` of the runs (``()`` for a single scenario)."""
        return tuple(self.net.shape[:-1])

    @property
    def n_runs(self) -> int:
        """Number of runs (scenarios or paths): the product of :attr:`run_shape`."""
        return math.prod(self.run_shape)

    def tranche(self, name: str) -> TrancheFlows:
        """The class called ``name`` (compared ignoring case)."""
        for t in self.tranches:
            if t.name.casefold() == name.casefold():
                return t
        known = ", ".join(map(repr, self.structure.names))
        msg = f"no tranche named {name!r}; the classes are {known}"
        raise KeyError(msg)

    def classes(self) -> pl.DataFrame:
        """One row per class: name, order, residual, coupon, amount, its share of GBV and price."""
        return pl.DataFrame(
            {
                "tranche": [t.name for t in self.tranches],
                "order": [t.order for t in self.tranches],
                "residual": [t.residual for t in self.tranches],
                "coupon": [t.coupon for t in self.tranches],
                "amount": [t.amount for t in self.tranches],
                "amount_pct_gbv": [t.amount / self.gbv for t in self.tranches],
                "amount_pct_price": [t.amount / self.price for t in self.tranches],
            },
            schema_overrides={"coupon": pl.Float64},
        )

    def metrics(self, *, labels: Sequence[str] | None = None) -> pl.DataFrame:
        """One row per run and class: totals, loss, yield, WAL and MOIC.

        Parameters
        ----------
        labels
            A name for each run (e.g. scenario names), in the C order of :attr:`run_shape`;
            adds a ``label`` column.

        Returns
        -------
        polars.DataFrame
            ``run`` (flat index), [``label``], ``tranche``, ``order``, ``interest``,
            ``principal``, ``cash`` (sums over months), ``interest_unpaid``, ``loss``,
            ``loss_share``, ``irr``, ``wal_years``, ``moic``.
        """
        n = self.n_runs
        frames = []
        for t in self.tranches:
            columns: dict[str, Any] = {"run": np.arange(n)}
            if labels is not None:
                columns["label"] = self._labels(labels)
            columns |= {
                "tranche": [t.name] * n,
                "order": np.full(n, t.order),
                "interest": t.interest.reshape(n, -1).sum(axis=1),
                "principal": t.principal.reshape(n, -1).sum(axis=1),
                "cash": t.cash.reshape(n, -1).sum(axis=1),
                "interest_unpaid": t.interest_unpaid.reshape(n),
                "loss": t.loss.reshape(n),
                "loss_share": t.loss_share.reshape(n),
                "irr": t.irr.reshape(n),
                "wal_years": t.wal_years.reshape(n),
                "moic": t.moic.reshape(n),
            }
            frames.append(pl.DataFrame(columns))
        return pl.concat(frames).sort("run", "order", maintain_order=True)

    def summary(self, *, percentiles: Sequence[float] = PERCENTILES) -> pl.DataFrame:
        """One row per class: yield and loss over the runs (mean and percentiles).

        Runs count equally (Monte Carlo paths are already drawn by scenario weight); NaN values
        (an IRR that cannot be found, the WAL of a class that repaid nothing) are left out.

        Parameters
        ----------
        percentiles
            Percentiles (0 to 100) of ``irr`` and ``loss_share`` to report.

        Returns
        -------
        polars.DataFrame
            ``tranche``, ``order``, ``amount``, ``n_runs``, ``irr_mean``, ``irr_p<q>``...,
            ``loss_mean``, ``loss_share_mean``, ``loss_share_p<q>``..., ``p_loss`` (share of
            runs where the class loses principal), ``wal_years_mean``, ``moic_mean``,
            ``interest_unpaid_mean``.
        """
        rows = []
        for t in self.tranches:
            row: dict[str, Any] = {
                "tranche": t.name,
                "order": t.order,
                "amount": t.amount,
                "n_runs": self.n_runs,
            }
            for key, values in (("irr", t.irr), ("loss_share", t.loss_share)):
                finite = values[np.isfinite(values)]
                row[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
                if key == "loss_share":
                    row["loss_mean"] = row["loss_share_mean"] * t.amount
                for q in percentiles:
                    value = float(np.percentile(finite, q)) if finite.size else math.nan
                    row[f"{key}_p{q:g}"] = value
            row["p_loss"] = float(np.mean(t.loss > 0.0))
            for key, values in (("wal_years", t.wal_years), ("moic", t.moic)):
                finite = values[np.isfinite(values)]
                row[f"{key}_mean"] = float(finite.mean()) if finite.size else math.nan
            row["interest_unpaid_mean"] = float(t.interest_unpaid.mean())
            rows.append(row)
        return pl.DataFrame(rows)

    def cash_flows(self, *, labels: Sequence[str] | None = None) -> pl.DataFrame:
        """Monthly flows, one row per run and month: net, fees and each class's flows.

        Returns
        -------
        polars.DataFrame
            ``run``, [``label``], ``month`` (1..H), ``net``, ``fees``, then
            ``<class>_interest`` and ``<class>_principal`` for each class, most senior first.
        """
        n, h = self.n_runs, self.net.shape[-1]
        columns: dict[str, Any] = {"run": np.repeat(np.arange(n), h)}
        if labels is not None:
            columns["label"] = np.repeat(np.asarray(self._labels(labels), dtype=object), h)
        columns |= {
            "month": np.tile(np.arange(1, h + 1), n),
            "net": self.net.reshape(-1),
            "fees": self.fees.reshape(-1),
        }
        for t in self.tranches:
            columns[f"{t.name}_interest"] = t.interest.reshape(-1)
            columns[f"{t.name}_principal"] = t.principal.reshape(-1)
        return pl.DataFrame(columns)

    def to_dict(self, *, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes None).

        Holds the structure (``classes``, senior fees), the ``summary`` over runs and, when
        ``labels`` are given (a few named runs such as scenarios), each run's figures under
        ``runs``. Monte Carlo paths are only summarised.
        """
        terms = self.structure.terms
        out: dict[str, Any] = {
            "gbv": self.gbv,
            "price": self.price,
            "price_pct_gbv": self.price / self.gbv,
            "senior_fees_share": terms.senior_fees_share,
            "senior_fees_fixed_per_year": terms.senior_fees_fixed_per_year,
            "classes": self.classes().to_dicts(),
            "n_runs": self.n_runs,
            "fees_mean": float(self.fees.reshape(self.n_runs, -1).sum(axis=1).mean()),
            "fees_unpaid_mean": float(self.fees_unpaid.mean()),
            "summary": self.summary().to_dicts(),
        }
        if labels is not None:
            metrics = self.metrics(labels=labels)
            fees = self.fees.reshape(self.n_runs, -1).sum(axis=1)
            unpaid = self.fees_unpaid.reshape(self.n_runs)
            out["runs"] = [
                {
                    "label": label,
                    "fees": float(fees[i]),
                    "fees_unpaid": float(unpaid[i]),
                    "tranches": metrics.filter(pl.col("run") == i).drop("run", "label").to_dicts(),
                }
                for i, label in enumerate(self._labels(labels))
            ]
        if self.triggers is not None:
            out["triggers"] = self.triggers.terms.model_dump() | {
                "test_months": self.triggers.test_months.tolist(),
                "servicer_deferred_mean": float(
                    self.triggers.servicer_deferred.reshape(self.n_runs, -1).sum(axis=1).mean()
                ),
                "servicer_unpaid_mean": float(self.triggers.servicer_unpaid.mean()),
                "summary": self.triggers.summary().to_dicts(),
            }
            if labels is not None:
                firsts = {
                    name: self.triggers.first_hit_month(name).reshape(self.n_runs)
                    for name in TRIGGER_NAMES
                }
                for i, run in enumerate(out["runs"]):
                    run["trigger_first_hit_month"] = {
                        name: float(firsts[name][i]) for name in TRIGGER_NAMES
                    }
        ready: dict[str, Any] = _json_ready(out)
        return ready

    def _labels(self, labels: Sequence[str]) -> list[str]:
        if len(labels) != self.n_runs:
            msg = f"{len(labels)} labels given for {self.n_runs} runs"
            raise ValueError(msg)
        return list(labels)


def _json_ready(value: Any) -> Any:
    """Replace NaN floats by None, recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def waterfall(
    net: FloatArray,
    structure: TrancheStructure,
    *,
    gbv: float,
    price: float,
    plan: FloatArray | None = None,
    plan_discount_rate: float = 0.0,
    servicer_fees: FloatArray | None = None,
) -> TrancheResults:
    """Run a sequential waterfall over net collections, with the structure's triggers if any.

    Parameters
    ----------
    net
        Net collections at the end of months 1..H, shape ``(*S, H)``: ``(H,)`` for one
        scenario, ``(paths, H)`` for Monte Carlo paths, any leading shape in general. May be
        negative in a month (costs above collections).
    structure
        Senior fees and classes of notes (:func:`load_tranches`).
    gbv
        Gross book value of the portfolio (> 0), the base of ``size_pct_gbv``.
    price
        Price paid for the portfolio at month 0 (> 0). The classes are issued at par at month
        0 and add up to it (:meth:`TrancheStructure.amounts`).
    plan
        The business plan's net collections at months 1..H, shape ``(H,)``: what the trigger
        ratios compare each run with. Required when the structure has triggers; ignored
        otherwise.
    plan_discount_rate
        Annual rate of the PV profitability ratio (month t discounted by
        ``(1 + rate) ** (-t / 12)``).
    servicer_fees
        The servicer's fee each month, already out of ``net``, shape ``(*S, H)``; needed
        only for a servicer fee deferral (zero when not given).

    Returns
    -------
    TrancheResults
        Fees and each class's interest, principal, loss, yield, WAL and MOIC, per run; with
        triggers, which were hit and when (:class:`TriggerOutcome`).

    Raises
    ------
    SettingsError
        If the classes above the residual add up to the price or more.
    ValueError
        If ``net`` has no month axis or holds a non-finite value, or ``gbv`` or ``price`` is
        not a positive finite number.

    Notes
    -----
    Each month t = 1..H, every run independently and in this order (fully sequential, the
    order of GACS deals once a subordination event has occurred):

    1. **Senior fees**: ``senior_fees_share × max(net_t, 0) + senior_fees_fixed_per_year / 12``
       plus any fees unpaid earlier; a negative ``net_t`` is a deficit owed at the same rank.
       Paid as far as the month's positive net collections go; the rest is carried, without
       interest, and whatever is still owed at month H is reported as ``fees_unpaid``.
    2. For each class by seniority except the residual: **interest**, due at the monthly rate
       ``m = (1 + coupon) ** (1 / 12) - 1`` on the opening balance, which is principal
       outstanding plus interest arrears. Unpaid interest therefore capitalises (arrears bear
       interest at the coupon) and is paid before the class's principal. Then **principal**,
       as far as cash goes, until the class is repaid. Only then does the next class get
       anything.
    3. The **residual** class takes everything left: first as principal until its amount is
       repaid, the rest as its return (reported as ``interest``).

    With a ``[triggers]`` table (:class:`Triggers`), step 2 is preceded by the interest of
    every class in order of seniority (the order before a subordination event); at each test
    date the run's cumulative net collections (and their present value) are compared with
    the plan's, and the senior interest cover over the period with its threshold; a failed
    test subordinates the interest of every class below the senior to step 2 until the next
    test date, and a cumulative collection ratio below the deferral ratio keeps the deferred
    share of the servicer's fee in the waterfall, owed to the servicer after the rated
    classes and before the residual one. Without the table the order above holds every month
    and the results are those of the fully sequential waterfall, exactly.

    Cash is paid at month ends, the classes are bought at par at month 0, and an annual rate r
    is compounded monthly as ``(1 + r) ** (t / 12)`` (:mod:`npl_engine.valuation._finance`).
    As a consequence a class repaid in full with no interest unpaid yields exactly its coupon.

    The months are a loop (H <= 600); the runs, a NumPy axis. Yield, WAL and MOIC are computed
    per run with the scalar primitives of ``_finance``.

    Examples
    --------
    >>> s = TrancheStructure(tranches=[
    ...     Tranche(name="senior", order=1, amount=60.0, coupon=0.0),
    ...     Tranche(name="junior", order=2, residual=True),
    ... ])
    >>> r = waterfall(np.array([50.0, 70.0]), s, gbv=400.0, price=100.0)
    >>> r.tranche("senior").principal.tolist(), r.tranche("junior").cash.tolist()
    ([50.0, 10.0], [0.0, 60.0])
    """
    flows = np.asarray(net, dtype=np.float64)
    if flows.ndim < 1 or flows.shape[-1] < 1:
        msg = f"net collections need a month axis (shape (..., H) with H >= 1), got {flows.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(flows)):
        msg = "net collections must be finite numbers (found NaN or infinity)"
        raise ValueError(msg)
    amounts = np.asarray(structure.amounts(gbv=gbv, price=price))
    run_shape, h = flows.shape[:-1], flows.shape[-1]
    rows = flows.reshape(-1, h)
    inputs = None
    if structure.triggers is not None:
        inputs = _trigger_inputs(
            structure.triggers,
            rows,
            plan=plan,
            plan_discount_rate=plan_discount_rate,
            servicer_fees=servicer_fees,
        )
    alloc = _allocate(
        rows,
        amounts=amounts,
        monthly_rates=np.array([t.monthly_rate for t in structure.tranches]),
        fees_share=structure.terms.senior_fees_share,
        fees_monthly=structure.terms.senior_fees_fixed_per_year / 12.0,
        triggers=inputs,
    )
    tranches = []
    for k, t in enumerate(structure.tranches):
        cash = alloc.interest[k] + alloc.principal[k]
        irr, wal, multiple = _per_run_metrics(float(amounts[k]), cash, alloc.principal[k])
        tranches.append(
            TrancheFlows(
                name=t.name,
                order=t.order,
                amount=float(amounts[k]),
                coupon=t.coupon,
                residual=t.residual,
                interest=alloc.interest[k].reshape(flows.shape),
                principal=alloc.principal[k].reshape(flows.shape),
                principal_outstanding=alloc.balance[k].reshape(run_shape),
                interest_unpaid=alloc.arrears[k].reshape(run_shape),
                irr=irr.reshape(run_shape),
                wal_years=wal.reshape(run_shape),
                moic=multiple.reshape(run_shape),
            )
        )
    return TrancheResults(
        structure=structure,
        gbv=float(gbv),
        price=float(price),
        net=flows,
        fees=alloc.fees.reshape(flows.shape),
        fees_unpaid=alloc.fees_owed.reshape(run_shape),
        tranches=tuple(tranches),
        triggers=None
        if alloc.triggers is None or structure.triggers is None
        else TriggerOutcome(
            terms=structure.triggers,
            test_months=alloc.triggers.test_months,
            hits={name: hit.reshape(*run_shape, -1) for name, hit in alloc.triggers.hits.items()},
            servicer_deferred=alloc.triggers.servicer_deferred.reshape(flows.shape),
            servicer_repaid=alloc.triggers.servicer_repaid.reshape(flows.shape),
            servicer_unpaid=alloc.triggers.servicer_owed.reshape(run_shape),
        ),
    )


def _trigger_inputs(
    terms: Triggers,
    rows: FloatArray,
    *,
    plan: FloatArray | None,
    plan_discount_rate: float,
    servicer_fees: FloatArray | None,
) -> _TriggerInputs:
    """Cumulative ratios of each run to the plan, by month, and the servicer fees as rows."""
    runs, h = rows.shape
    if plan is None:
        msg = "the structure has [triggers]: give the business plan's net collections (plan=)"
        raise ValueError(msg)
    reference = np.asarray(plan, dtype=np.float64)
    if reference.shape != (h,) or not np.all(np.isfinite(reference)):
        msg = f"the plan must be {h} finite monthly net collections, got shape {reference.shape}"
        raise ValueError(msg)
    fees = np.zeros((runs, h))
    if servicer_fees is not None:
        fees = np.broadcast_to(np.asarray(servicer_fees, dtype=np.float64), (runs, h)).copy()
    elif terms.defers_servicer_fee:
        msg = "the structure defers servicer fees: give the servicer's fee each month"
        raise ValueError(msg)
    discount = discount_factors(h, plan_discount_rate)
    ratios = []
    for weight in (np.ones(h), discount):
        done = np.cumsum(rows * weight, axis=1)
        planned = np.cumsum(reference * weight)
        ratio = np.full((runs, h), np.nan)
        np.divide(done, planned, out=ratio, where=np.broadcast_to(planned > 0, (runs, h)))
        ratios.append(ratio)
    return _TriggerInputs(
        terms=terms, collection_ratio=ratios[0], pv_ratio=ratios[1], servicer_fees=fees
    )


@dataclass(frozen=True, slots=True)
class _Allocation:
    """Raw waterfall output over flat runs: (classes, runs, H) flows, (classes, runs) ends."""

    fees: FloatArray
    fees_owed: FloatArray
    interest: FloatArray
    principal: FloatArray
    balance: FloatArray
    arrears: FloatArray
    triggers: _TriggerState | None = None


@dataclass(frozen=True, slots=True)
class _TriggerInputs:
    """What the trigger tests need, over flat runs: ratios to plan by month, servicer fees."""

    terms: Triggers
    collection_ratio: FloatArray  # (runs, H), cumulative, NaN where the plan has nothing yet
    pv_ratio: FloatArray  # (runs, H)
    servicer_fees: FloatArray  # (runs, H)


@dataclass(frozen=True, slots=True)
class _TriggerState:
    """Raw trigger output over flat runs: hits (name -> (runs, tests)), deferred fees."""

    test_months: npt.NDArray[np.int64]
    hits: dict[str, npt.NDArray[np.bool_]]
    servicer_deferred: FloatArray  # (runs, H)
    servicer_repaid: FloatArray  # (runs, H)
    servicer_owed: FloatArray  # (runs,)


def _allocate(  # noqa: PLR0915 - the order of payments, month by month, read top to bottom
    net: FloatArray,
    *,
    amounts: FloatArray,
    monthly_rates: FloatArray,
    fees_share: float,
    fees_monthly: float,
    triggers: _TriggerInputs | None = None,
) -> _Allocation:
    """Allocate net collections of shape (runs, H) month by month; the last class is residual.

    Without triggers, each class in turn takes interest then principal (fully sequential).
    With triggers, every class's interest is paid first (the mezzanine's only while it is
    not subordinated), then the same sequential pass pays what is left of each class's
    interest and its principal; deferred servicer fees come after the rated classes.
    """
    runs, h = net.shape
    k = amounts.size
    interest = np.zeros((k, runs, h))
    principal = np.zeros((k, runs, h))
    fees = np.zeros((runs, h))
    balance = np.repeat(amounts[:, None], runs, axis=1)  # principal outstanding
    arrears = np.zeros((k, runs))  # interest due and unpaid, bearing interest at the coupon
    owed = np.zeros(runs)  # senior fees and deficits carried from earlier months
    due_now = np.zeros((k, runs))  # interest due this month and not yet paid
    if triggers is not None:
        terms = triggers.terms
        step = terms.period_months
        tests = np.arange(step, h + 1, step)
        hits = {name: np.zeros((runs, tests.size), dtype=bool) for name in TRIGGER_NAMES}
        subordinated = np.zeros(runs, dtype=bool)
        deferring = np.zeros(runs, dtype=bool)
        deferred = np.zeros((runs, h))
        repaid = np.zeros((runs, h))
        servicer_owed = np.zeros(runs)
        available = np.zeros(runs)  # funds after senior fees over the period
        senior_due = np.zeros(runs)  # senior interest due over the period
    for t in range(h):
        collected = np.maximum(net[:, t], 0.0)
        deficit = collected - net[:, t]
        due = owed + fees_share * collected + fees_monthly + deficit
        paid = np.minimum(due, collected)
        owed = due - paid
        fees[:, t] = paid - deficit
        cash = collected - paid
        for j in range(k - 1):
            due_now[j] = arrears[j] * (1.0 + monthly_rates[j]) + balance[j] * monthly_rates[j]
        if triggers is not None:
            held = np.where(deferring, terms.servicer_fee_deferred_share or 0.0, 0.0)
            deferred[:, t] = held * triggers.servicer_fees[:, t]
            servicer_owed += deferred[:, t]
            cash = cash + deferred[:, t]
            available += cash
            senior_due += due_now[0]
            for j in range(k - 1):
                interest_paid = np.minimum(due_now[j], cash)
                if j > 0:
                    interest_paid = np.where(subordinated, 0.0, interest_paid)
                cash = cash - interest_paid
                due_now[j] = due_now[j] - interest_paid
                interest[j, :, t] = interest_paid
        for j in range(k - 1):
            interest_paid = np.minimum(due_now[j], cash)
            cash = cash - interest_paid
            arrears[j] = due_now[j] - interest_paid
            principal_paid = np.minimum(balance[j], cash)
            cash = cash - principal_paid
            balance[j] = balance[j] - principal_paid
            interest[j, :, t] += interest_paid
            principal[j, :, t] = principal_paid
        if triggers is not None:
            repaid[:, t] = np.minimum(servicer_owed, cash)
            servicer_owed -= repaid[:, t]
            cash = cash - repaid[:, t]
            if (t + 1) % step == 0:
                i = (t + 1) // step - 1
                _test_date(triggers, hits, i, t, available=available, senior_due=senior_due)
                subordinated = hits["subordination"][:, i]
                deferring = hits["servicer_fee_deferral"][:, i]
                available, senior_due = np.zeros(runs), np.zeros(runs)
        principal_paid = np.minimum(balance[-1], cash)
        balance[-1] = balance[-1] - principal_paid
        principal[-1, :, t] = principal_paid
        interest[-1, :, t] = cash - principal_paid
    state = None
    if triggers is not None:
        state = _TriggerState(
            test_months=tests.astype(np.int64),
            hits=hits,
            servicer_deferred=deferred,
            servicer_repaid=repaid,
            servicer_owed=servicer_owed,
        )
    return _Allocation(
        fees=fees,
        fees_owed=owed,
        interest=interest,
        principal=principal,
        balance=balance,
        arrears=arrears,
        triggers=state,
    )


def _test_date(
    triggers: _TriggerInputs,
    hits: dict[str, npt.NDArray[np.bool_]],
    i: int,
    t: int,
    *,
    available: FloatArray,
    senior_due: FloatArray,
) -> None:
    """Run the tests of test date ``i`` (end of month index ``t``) into ``hits[...][:, i]``."""
    terms = triggers.terms
    ccr, pvr = triggers.collection_ratio[:, t], triggers.pv_ratio[:, t]
    for name, value, limit in (
        ("collection_ratio", ccr, terms.cumulative_collection_ratio),
        ("pv_ratio", pvr, terms.pv_profitability_ratio),
        ("servicer_fee_deferral", ccr, terms.servicer_fee_deferral_ratio),
    ):
        # NaN (no plan yet) compares False: no hit.
        hits[name][:, i] = (value < limit) if limit is not None else False
    if terms.senior_interest_cover is not None:
        cover = np.full(available.size, np.inf)
        np.divide(available, senior_due, out=cover, where=senior_due > 0)
        hits["senior_interest_cover"][:, i] = cover < terms.senior_interest_cover
    hits["subordination"][:, i] = (
        hits["collection_ratio"][:, i]
        | hits["pv_ratio"][:, i]
        | hits["senior_interest_cover"][:, i]
    )


def _per_run_metrics(
    amount: float, cash: FloatArray, principal: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Yield, WAL and MOIC of one class for each run (rows of ``cash`` and ``principal``)."""
    runs = cash.shape[0]
    irr, wal, multiple = np.empty(runs), np.empty(runs), np.empty(runs)
    received = np.any(cash > 0.0, axis=1)
    for i in range(runs):
        # A class that received nothing lost everything: an IRR of -100 %, the limit of the
        # IRR as its cash goes to 0 (annual_irr has no root to find and says NaN).
        irr[i] = annual_irr(amount, cash[i]) if received[i] else -1.0
        wal[i] = weighted_average_life(principal[i])
        multiple[i] = moic(amount, cash[i])
    return irr, wal, multiple


# --------------------------------------------------------------------------------------------
# The report `npl value --tranches` writes


def tranche_report(
    structure: TrancheStructure,
    valuation: Valuation,
    paths: MonteCarloResult | None,
    *,
    price: float,
    servicing_fee: float = 0.0,
) -> dict[str, Any]:
    """Run the waterfall on every scenario (and Monte Carlo path) of a valuation.

    Parameters
    ----------
    structure
        Senior fees and classes of notes.
    valuation
        The portfolio's valuation; its monthly net collections per scenario and weighted are
        the waterfall's input.
    paths
        Monte Carlo paths, if any: each path's net collections run through the waterfall too.
    price
        The price paid at month 0, which the classes add up to.
    servicing_fee
        The scenario file's servicing fee (share of gross collections): the servicer's fee a
        trigger may defer. Used only with a servicer fee deferral.

    Returns
    -------
    dict
        JSON-ready: ``price``, ``price_pct_gbv``, the senior fees, ``classes`` (sizes),
        ``scenarios`` (one entry per scenario and ``weighted``, with each class's totals,
        loss, yield, WAL and MOIC) and, with paths, ``simulation`` (per class mean and
        percentiles of yield and loss over the paths).

    Notes
    -----
    ``weighted`` runs the waterfall on the weighted (expected) net collections, as the
    valuation's ``weighted`` row prices them: it is the outcome of the expected flows, not the
    expected outcome of the classes, which the Monte Carlo summary gives.

    With triggers, the business plan is the weighted net collections (what the deal is
    underwritten on, :func:`~npl_engine.valuation.business_plan`), discounted at the
    valuation's target IRR for the PV ratio; each scenario and path is tested against it.
    ``scenarios`` entries then carry ``trigger_first_hit_month`` and ``simulation`` a
    ``triggers`` summary (probability each trigger is hit, and when).
    """
    labels = [s.name for s in valuation.scenarios] + ["weighted"]
    h = valuation.horizon_months
    frame = valuation.cash_flows
    # The frame holds one block of months 1..H per scenario, in order, then the weighted block.
    expected = pl.DataFrame(
        {"scenario": np.repeat(labels, h), "month": np.tile(np.arange(1, h + 1), len(labels))}
    )
    if not frame.select("scenario", "month").equals(expected, null_equal=False):
        msg = "the valuation's cash flows are not one block of months 1..H per scenario"
        raise ValueError(msg)
    net = frame["net"].to_numpy().astype(np.float64).reshape(len(labels), h)
    gross = frame["gross"].to_numpy().astype(np.float64).reshape(len(labels), h)
    plan = {"plan": net[-1], "plan_discount_rate": valuation.target_irr}
    scenarios = waterfall(
        net, structure, gbv=valuation.gbv, price=price, servicer_fees=servicing_fee * gross, **plan
    ).to_dict(labels=labels)
    weights = [s.weight for s in valuation.scenarios] + [1.0]
    out: dict[str, Any] = {
        key: scenarios[key]
        for key in ("price", "price_pct_gbv", "senior_fees_share", "senior_fees_fixed_per_year")
    }
    out["classes"] = scenarios["classes"]
    out["scenarios"] = [
        {"name": run.pop("label"), "weight": weight} | run
        for run, weight in zip(scenarios["runs"], weights, strict=True)
    ]
    if "triggers" in scenarios:
        out["triggers"] = {k: v for k, v in scenarios["triggers"].items() if k != "summary"}
    if paths is not None:
        defers = structure.triggers is not None and structure.triggers.defers_servicer_fee
        fees = servicing_fee * paths.gross if defers and paths.gross is not None else None
        simulated = waterfall(
            paths.net, structure, gbv=valuation.gbv, price=price, servicer_fees=fees, **plan
        ).to_dict()
        out["simulation"] = {
            "n_paths": simulated["n_runs"],
            "fees_mean": simulated["fees_mean"],
            "fees_unpaid_mean": simulated["fees_unpaid_mean"],
            "summary": simulated["summary"],
        }
        if "triggers" in simulated:
            out["simulation"]["triggers"] = simulated["triggers"]["summary"]
    return out
