"""Tranches: a sequential (GACS-style) waterfall of net collections over classes of notes.

A tranche file (``--tranches FILE``, e.g. ``scenarios/gacs_tranches.toml``) holds an optional
``[structure]`` table with the senior fees and one ``[[tranche]]`` table per class of notes.
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
from npl_engine.valuation._finance import annual_irr, moic, weighted_average_life

if TYPE_CHECKING:
    from npl_engine.valuation._montecarlo import MonteCarloResult
    from npl_engine.valuation._pricing import Valuation

__all__ = [
    "PERCENTILES",
    "SIZE_KEYS",
    "StructureTerms",
    "Tranche",
    "TrancheFlows",
    "TrancheResults",
    "TrancheStructure",
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


_TOP_LEVEL_KEYS = ("structure", "tranche")
_STRUCTURE_KEYS = tuple(StructureTerms.model_fields)
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
    return _STRUCTURE_KEYS if loc[0] == "structure" else _TRANCHE_KEYS


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
    """

    structure: TrancheStructure
    gbv: float
    price: float
    net: FloatArray
    fees: FloatArray
    fees_unpaid: FloatArray
    tranches: tuple[TrancheFlows, ...]

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
) -> TrancheResults:
    """Run a sequential waterfall over net collections.

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

    Returns
    -------
    TrancheResults
        Fees and each class's interest, principal, loss, yield, WAL and MOIC, per run.

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
    alloc = _allocate(
        rows,
        amounts=amounts,
        monthly_rates=np.array([t.monthly_rate for t in structure.tranches]),
        fees_share=structure.terms.senior_fees_share,
        fees_monthly=structure.terms.senior_fees_fixed_per_year / 12.0,
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


def _allocate(
    net: FloatArray,
    *,
    amounts: FloatArray,
    monthly_rates: FloatArray,
    fees_share: float,
    fees_monthly: float,
) -> _Allocation:
    """Allocate net collections of shape (runs, H) month by month; the last class is residual."""
    runs, h = net.shape
    k = amounts.size
    interest = np.zeros((k, runs, h))
    principal = np.zeros((k, runs, h))
    fees = np.zeros((runs, h))
    balance = np.repeat(amounts[:, None], runs, axis=1)  # principal outstanding
    arrears = np.zeros((k, runs))  # interest due and unpaid, bearing interest at the coupon
    owed = np.zeros(runs)  # senior fees and deficits carried from earlier months
    for t in range(h):
        collected = np.maximum(net[:, t], 0.0)
        deficit = collected - net[:, t]
        due = owed + fees_share * collected + fees_monthly + deficit
        paid = np.minimum(due, collected)
        owed = due - paid
        fees[:, t] = paid - deficit
        cash = collected - paid
        for j in range(k - 1):
            interest_due = arrears[j] * (1.0 + monthly_rates[j]) + balance[j] * monthly_rates[j]
            interest_paid = np.minimum(interest_due, cash)
            cash = cash - interest_paid
            arrears[j] = interest_due - interest_paid
            principal_paid = np.minimum(balance[j], cash)
            cash = cash - principal_paid
            balance[j] = balance[j] - principal_paid
            interest[j, :, t] = interest_paid
            principal[j, :, t] = principal_paid
        principal_paid = np.minimum(balance[-1], cash)
        balance[-1] = balance[-1] - principal_paid
        principal[-1, :, t] = principal_paid
        interest[-1, :, t] = cash - principal_paid
    return _Allocation(
        fees=fees,
        fees_owed=owed,
        interest=interest,
        principal=principal,
        balance=balance,
        arrears=arrears,
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
    scenarios = waterfall(net, structure, gbv=valuation.gbv, price=price).to_dict(labels=labels)
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
    if paths is not None:
        simulated = waterfall(paths.net, structure, gbv=valuation.gbv, price=price).to_dict()
        out["simulation"] = {
            "n_paths": simulated["n_runs"],
            "fees_mean": simulated["fees_mean"],
            "fees_unpaid_mean": simulated["fees_unpaid_mean"],
            "summary": simulated["summary"],
        }
    return out
