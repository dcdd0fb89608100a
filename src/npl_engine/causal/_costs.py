"""What each collection action costs the servicer, per loan, and what a settlement waives.

A cost rule is ``fixed + per_exposure × exposure``, at most ``cap`` when one is given. Each
action has a base rule and may override it for loans of a segment (``by_segment``) or at a
legal stage (``by_legal_stage``); when both match, the legal stage's rule wins (a court fee
depends more on the stage than on the product). A settlement offer also states the share of
the claim it waives (``discount``; default :data:`DEFAULT_SETTLEMENT_DISCOUNT`).

Costs come from a book (:func:`estimate_costs`, written by ``npl effects`` to ``costs.json``) or
from a TOML file (:func:`load_costs`)::

    [costs]
    letter = 4.0
    call = 18
    legal_action = { fixed = 1200, per_exposure = 0.01, cap = 16200 }

    [costs.settlement_offer]
    fixed = 90
    discount = 0.3

    [costs.legal_action.by_legal_stage]
    auction = { fixed = 400 }

    [costs.call.by_segment]
    sme_unsecured = { fixed = 35 }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from npl_engine.data import Dataset
from npl_engine.data.contract import ACTION_TYPES, LEGAL_STAGES, SEGMENTS
from npl_engine.errors import NplError, SettingsError
from npl_engine.settings import describe_value, parse_toml, read_settings, unknown_key

__all__ = [
    "COSTS_RECORD",
    "DEFAULT_SETTLEMENT_DISCOUNT",
    "ActionCosts",
    "CostRule",
    "estimate_costs",
    "load_costs",
    "parse_costs",
]

#: The costs ``npl effects`` records beside its model, in an effects folder.
COSTS_RECORD = "costs.json"

Array = npt.NDArray[np.float64]

#: Share of the claim a settlement offer waives when the costs do not say: the middle of the
#: 20-40 % discounts that NPL servicers commonly offer for a lump sum.
DEFAULT_SETTLEMENT_DISCOUNT = 0.3

Money = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Action = Literal[ACTION_TYPES]  # type: ignore[valid-type]
Segment = Literal[SEGMENTS]  # type: ignore[valid-type]
LegalStage = Literal[LEGAL_STAGES]  # type: ignore[valid-type]


class CostRule(BaseModel):
    """Cost of an action for one loan: ``min(fixed + per_exposure × exposure, cap)``.

    Parameters
    ----------
    fixed
        Money per loan.
    per_exposure
        Money per unit of exposure (outstanding principal plus accrued interest).
    cap
        Most the action costs for one loan (``None``: no cap).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fixed: Money = 0.0
    per_exposure: Money = 0.0
    cap: Money | None = None

    def of(self, exposure: Array) -> Array:
        """Cost for loans with these exposures."""
        cost = self.fixed + self.per_exposure * exposure
        return cost if self.cap is None else np.minimum(cost, self.cap)


class ActionCost(CostRule):
    """An action's base rule, its overrides by segment and legal stage, and its discount."""

    by_segment: dict[Segment, CostRule] = Field(default_factory=dict)
    by_legal_stage: dict[LegalStage, CostRule] = Field(default_factory=dict)
    discount: float | None = Field(default=None, ge=0.0, lt=1.0, allow_inf_nan=False)


def _as_rule(value: Any) -> Any:
    """A bare number is a fixed cost per loan."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"fixed": value}
    return value


class _CostsFile(BaseModel):
    """The ``[costs]`` table of a costs file: one entry per known action."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    costs: dict[Action, ActionCost]

    @field_validator("costs", mode="before")
    @classmethod
    def _numbers_are_fixed(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _as_rule(v) for k, v in value.items()}
        return value


class ActionCosts(BaseModel):
    """Cost of each action per loan, and the discount of a settlement offer.

    Parameters
    ----------
    fixed
        Action → base cost per loan, in money.
    per_exposure
        Action → base cost per unit of exposure (0 where absent).
    cap
        Action → most the action costs one loan (no cap where absent).
    by_segment, by_legal_stage
        Action → segment (legal stage) → the rule that replaces the base for those loans.
    settlement_discount
        Share of the claim a settlement offer waives.

    Examples
    --------
    >>> costs = ActionCosts(fixed={"legal_action": 1200.0}, per_exposure={"legal_action": 0.01})
    >>> costs.of("legal_action", np.array([10_000.0])).tolist()
    [1300.0]
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fixed: dict[str, float]
    per_exposure: dict[str, float] = Field(default_factory=dict)
    cap: dict[str, float] = Field(default_factory=dict)
    by_segment: dict[str, dict[str, CostRule]] = Field(default_factory=dict)
    by_legal_stage: dict[str, dict[str, CostRule]] = Field(default_factory=dict)
    settlement_discount: float = Field(default=DEFAULT_SETTLEMENT_DISCOUNT, ge=0.0, lt=1.0)

    def of(
        self,
        action: str,
        exposure: Array,
        *,
        segment: npt.NDArray[Any] | None = None,
        legal_stage: npt.NDArray[Any] | None = None,
    ) -> Array:
        """Cost of ``action`` for loans with these exposures (and segments, legal stages)."""
        if action not in self.fixed:
            msg = f"no cost known for action {action!r}; add it to the costs file"
            raise NplError(msg)
        exposure = np.asarray(exposure, dtype=np.float64)
        base = CostRule(
            fixed=self.fixed[action],
            per_exposure=self.per_exposure.get(action, 0.0),
            cap=self.cap.get(action),
        )
        cost = base.of(exposure)
        for values, rules in ((segment, self.by_segment), (legal_stage, self.by_legal_stage)):
            if values is None:
                continue
            for key, rule in rules.get(action, {}).items():
                rows = values == key
                cost = np.where(rows, rule.of(exposure), cost)
        return cost

    def matrix(
        self,
        actions: tuple[str, ...],
        exposure: Array,
        *,
        segment: npt.NDArray[Any] | None = None,
        legal_stage: npt.NDArray[Any] | None = None,
    ) -> Array:
        """(n, k) cost of each action (columns in ``actions`` order) for each loan."""
        columns = [self.of(a, exposure, segment=segment, legal_stage=legal_stage) for a in actions]
        return np.column_stack(columns) if columns else np.zeros((exposure.size, 0))

    def to_dict(self) -> dict[str, Any]:
        """Plain form, for JSON (``costs.json``); :meth:`from_dict` reads it back."""
        return self.model_dump()

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ActionCosts:
        """Read the plain form of :meth:`to_dict`."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            msg = f"costs.json is not a costs record: {exc.errors()[0]['msg']}"
            raise SettingsError(msg) from exc

    def save_record(self, folder: str | Path) -> Path:
        """Write ``costs.json`` into an effects folder (what :meth:`read_record` reads)."""
        path = Path(folder) / COSTS_RECORD
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def read_record(cls, folder: str | Path) -> ActionCosts:
        """The costs ``npl effects`` recorded in its folder (``costs.json``).

        Raises
        ------
        NplError
            If the folder holds no ``costs.json`` (not an effects folder, or an old one).
        """
        path = Path(folder) / COSTS_RECORD
        if not path.is_file():
            msg = f"{folder} holds no {COSTS_RECORD}: rerun `npl effects --out {folder}`"
            raise NplError(msg)
        return cls.from_dict(json.loads(path.read_text()))


def estimate_costs(book: Dataset) -> ActionCosts:
    """Cost per action type from a book's actions: least squares of cost on exposure.

    Notes
    -----
    A straight line in the loan's exposure per action type (a constant when exposures do not
    vary): a flat mean would under-cost legal action on the big loans it is taken on. The
    settlement discount is :data:`DEFAULT_SETTLEMENT_DISCOUNT` (a book records no discounts).
    """
    if book.actions is None:
        msg = "the dataset has no actions table to estimate action costs from; pass --costs"
        raise NplError(msg)
    rows = (
        book.actions.join(
            book.loans.select(
                "loan_id", exposure=pl.col("outstanding_principal") + pl.col("accrued_interest")
            ),
            on="loan_id",
        )
        .select(pl.col("action_type").cast(pl.String), "cost", "exposure")
        .collect()
    )
    fixed, slope = {}, {}
    for (action,), group in rows.group_by("action_type"):
        x, y = group["exposure"].to_numpy(), group["cost"].to_numpy()
        b = float(np.cov(x, y, ddof=0)[0, 1] / x.var()) if x.size > 1 and x.var() > 0 else 0.0
        b = max(b, 0.0)
        fixed[str(action)] = max(float(y.mean() - b * x.mean()), 0.0)
        slope[str(action)] = b
    return ActionCosts(fixed=fixed, per_exposure=slope)


def load_costs(path: str | Path) -> ActionCosts:
    """Read action costs from a TOML file (see the module docstring for the format).

    Raises
    ------
    SettingsError
        Listing every problem of the file at once (unknown actions, segments, legal stages or
        keys; negative or non-numeric amounts), each with its key path.
    """
    return parse_costs(read_settings(path, "costs file"), source=str(path))


def parse_costs(text: str, *, source: str = "<string>") -> ActionCosts:
    r"""Parse the text of a costs file; see :func:`load_costs`.

    Examples
    --------
    >>> text = "[costs]\nletter = 4\nsettlement_offer = {fixed = 90, discount = 0.25}"
    >>> costs = parse_costs(text)
    >>> costs.fixed, costs.settlement_discount
    ({'letter': 4.0, 'settlement_offer': 90.0}, 0.25)
    """
    known, problems = parse_toml(text, source, ("costs",))
    table = known.get("costs")
    if table is None:
        problems.append(f"{source}: costs: missing: the file needs a [costs] table")
    elif isinstance(table, dict):
        if not table:
            problems.append(f"{source}: costs: expected one entry per action, got none")
        problems += [
            f"{source}: costs.{action}.discount: only a settlement_offer waives part of the claim"
            for action, spec in table.items()
            if isinstance(spec, dict) and "discount" in spec and action != "settlement_offer"
        ]
    parsed = None
    try:
        parsed = _CostsFile.model_validate(known) if table is not None else None
    except ValidationError as exc:
        problems += [f"{source}: {_path(e)}: {_describe(e)}" for e in exc.errors()]
    if problems or parsed is None:
        raise SettingsError("\n".join(dict.fromkeys(problems)))
    specs = parsed.costs
    offer = specs.get("settlement_offer")
    return ActionCosts(
        fixed={a: s.fixed for a, s in specs.items()},
        per_exposure={a: s.per_exposure for a, s in specs.items()},
        cap={a: s.cap for a, s in specs.items() if s.cap is not None},
        by_segment={a: dict(s.by_segment) for a, s in specs.items() if s.by_segment},
        by_legal_stage={a: dict(s.by_legal_stage) for a, s in specs.items() if s.by_legal_stage},
        settlement_discount=(
            offer.discount
            if offer is not None and offer.discount is not None
            else DEFAULT_SETTLEMENT_DISCOUNT
        ),
    )


_ALLOWED_KEYS = ("fixed", "per_exposure", "cap", "by_segment", "by_legal_stage", "discount")


def _path(error: ErrorDetails) -> str:
    """Key path of an error (``costs.legal_action.by_legal_stage.trial``)."""
    return ".".join(str(p) for p in error["loc"] if p != "[key]")


def _describe(error: ErrorDetails) -> str:
    """Reword one pydantic error for someone editing the costs file."""
    loc = tuple(error["loc"])
    kind = error["type"]
    got = describe_value(error.get("input"))
    if loc and loc[-1] == "[key]":
        allowed = (
            ACTION_TYPES if len(loc) == 3 else SEGMENTS if "by_segment" in loc else LEGAL_STAGES
        )
        what = {3: "action"}.get(len(loc), "segment" if "by_segment" in loc else "legal stage")
        return f"unknown {what} {loc[-2]!r} (allowed: {', '.join(allowed)})"
    if kind == "extra_forbidden":
        return unknown_key(str(loc[-1]), _ALLOWED_KEYS)
    bound = {"greater_than_equal": ("ge", "at least"), "less_than": ("lt", "less than")}.get(kind)
    if bound is not None:
        return f"must be {bound[1]} {(error.get('ctx') or {}).get(bound[0])}, got {got}"
    words = {
        "float_type": "expected a finite number",
        "float_parsing": "expected a finite number",
        "finite_number": "expected a finite number",
        "model_type": "expected a number or a table",
        "dict_type": "expected a number or a table",
        "model_attributes_type": "expected a number or a table",
    }.get(kind)
    return f"{words}, got {got}" if words else str(error["msg"])
