"""The service's requests: the loan schema (from the data contract) and the engine's jobs.

:class:`Job` is a validated request as the engine process receives it; :class:`Outcome` is what
the engine makes of it, as the recording process receives it.

:data:`Loan` is a pydantic model with one field per column of
:data:`npl_engine.data.contract.LOANS`: its type, whether it is required, its allowed values and
bounds. Rules tying columns together (date order, no collateral value without collateral) are
the contract's too; they are checked here per loan so that a 422 names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator

from npl_engine.data.contract import LOANS, ColumnSpec

__all__ = ["REASON_TOP", "Job", "Loan", "Outcome", "loans_frame"]

_PYTHON_TYPES: dict[str, Any] = {"string": str, "date": date, "float": float, "int": int}


def _annotation(spec: ColumnSpec) -> Any:
    kind = Literal[spec.values] if spec.kind == "enum" else _PYTHON_TYPES[spec.kind]
    return kind if spec.required else kind | None


def _field(spec: ColumnSpec) -> Any:
    extra: dict[str, Any] = {}
    if spec.kind == "float":
        extra["allow_inf_nan"] = False
    if spec.kind in {"float", "int"}:
        extra.update(ge=spec.ge, le=spec.le, gt=spec.gt)
    if spec.kind == "string" and spec.required:
        extra["min_length"] = 1
    default = ... if spec.required else None
    return Field(default, description=spec.description, **extra)


def _dates_in_order(value: date, info: ValidationInfo) -> date:
    """origination_date <= default_date <= cutoff_date (checked on default_date)."""
    origination = info.data.get("origination_date")
    cutoff = info.data.get("cutoff_date")
    if origination is not None and value < origination:
        msg = f"must be on or after origination_date ({origination.isoformat()})"
        raise ValueError(msg)
    if cutoff is not None and value > cutoff:
        msg = f"must be on or before cutoff_date ({cutoff.isoformat()})"
        raise ValueError(msg)
    return value


def _no_collateral_no_value(value: float | None, info: ValidationInfo) -> float | None:
    """collateral_value must be 0 (or absent) when collateral_type is none."""
    if info.data.get("collateral_type") == "none" and value not in (None, 0.0):
        msg = "must be 0 when collateral_type is none"
        raise ValueError(msg)
    return value


class _LoanBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Loan: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "Loan",
    __base__=_LoanBase,
    __doc__="One loan as it stood on its cut-off date (the data contract's `loans` table). "
    "Unknown fields are refused: a misspelt optional field would otherwise be scored as missing.",
    __validators__={
        "dates_in_order": field_validator("default_date")(_dates_in_order),
        "no_collateral_no_value": field_validator("collateral_value")(_no_collateral_no_value),
    },
    **{spec.name: (_annotation(spec), _field(spec)) for spec in LOANS.columns},
)


def loans_frame(loans: list[dict[str, Any]]) -> pl.DataFrame:
    """Validated loans (``Loan.model_dump()``) as a typed contract frame, defaults filled.

    The frame has every contract column in contract order with its contract dtype, as
    :func:`npl_engine.data.read_dataset` would give it.
    """
    return pl.from_dicts(loans, schema=_SCHEMA).with_columns(_DEFAULTS)


_SCHEMA = {spec.name: spec.dtype for spec in LOANS.columns}
_DEFAULTS = [
    pl.col(spec.name).fill_null(spec.default) for spec in LOANS.columns if spec.default is not None
]


#: Reason codes returned per output and loan.
REASON_TOP = 3


@dataclass(frozen=True, slots=True)
class Job:
    """One request's work: its validated loans and who asked.

    Parameters
    ----------
    loans
        ``Loan.model_dump()`` of each loan, in request order.
    reasons
        Whether to compute reason codes.
    caller
        API key id (or ``anonymous`` when the service runs without keys).
    fingerprint
        sha256 of the request body.
    """

    loans: list[dict[str, Any]]
    reasons: bool
    caller: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a computation answers: response bodies, and the records to commit before sending them.

    Parameters
    ----------
    bodies
        One response body per job, in job order.
    runs, decisions
        The decision records of those jobs, one run per job, as rows of the audit tables
        (:meth:`~npl_engine.audit.AuditStore.append_rows`); ``None`` when the service records
        nothing.
    """

    bodies: list[dict[str, Any]]
    runs: pl.DataFrame | None = None
    decisions: pl.DataFrame | None = None
