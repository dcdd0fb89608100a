"""What-if: re-score one loan with changed inputs and show what moves.

A what-if changes contract columns of one loan (``monthly_income=2500``,
``legal_stage=judgment``) and, with effect models, the collection lever (``action=call``,
``settlement_discount=0.2``). The loan is re-scored by the same models that scored it, and its
reason codes are computed again, so the collector sees the change in ``p_recover``, in
expected collections and in the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from npl_engine.counterfactuals._strategy import BAU, SETTLEMENT, StrategyModel
from npl_engine.data.contract import LOANS, ColumnSpec
from npl_engine.errors import NplError

__all__ = ["LEVER_COLUMNS", "WhatIf", "parse_changes", "rescore"]

#: Changes that are collection levers rather than loans columns.
LEVER_COLUMNS = ("action", "settlement_discount")
#: Identity columns a what-if cannot change.
_FIXED = ("loan_id", "borrower_id")


@dataclass(frozen=True, slots=True)
class WhatIf:
    """One loan before and after a change.

    Parameters
    ----------
    loan_id
        The loan.
    changes
        Column → (value before, value after), as text.
    p_recover_before, p_recover_after
        Probability of recovery (engine scores).
    expected_collections_before, expected_collections_after
        Expected gross collections over the valuation horizon; ``after`` is ``None`` when a
        lever was changed and no effect model on the recovery rate is known.
    cost
        Cost of the action chosen (0 without an action change; ``None`` without costs).
    reasons_before, reasons_after
        Top reason codes of the scoring model (long frame, see
        :func:`npl_engine.explain.reason_codes`) for ``p_recover`` and expected collections.
        They explain the business-as-usual score; an action's effect is not a reason code.
    """

    loan_id: str
    changes: dict[str, tuple[str, str]]
    p_recover_before: float
    p_recover_after: float
    expected_collections_before: float
    expected_collections_after: float | None
    cost: float | None
    reasons_before: pl.DataFrame
    reasons_after: pl.DataFrame


def _parse(spec: ColumnSpec, text: str, loan_id: str) -> Any:
    """A ``--set`` value as the column's type, checked against the contract's rules."""
    where = f"loans: column {spec.name}, loan {loan_id}"
    if text == "":
        if spec.required:
            msg = f"{where}: a required column cannot be emptied"
            raise NplError(msg)
        return None
    try:
        match spec.kind:
            case "float":
                value: Any = float(text)
            case "int":
                value = int(text)
            case "date":
                value = date.fromisoformat(text)
            case "enum":
                if text not in spec.values:
                    msg = f"{where}: {text!r} is not one of {', '.join(spec.values)}"
                    raise NplError(msg)
                value = text
            case _:
                value = text
    except ValueError as exc:
        msg = f"{where}: cannot read {text!r} as {spec.kind}"
        raise NplError(msg) from exc
    if isinstance(value, int | float):
        bad = (
            (spec.ge is not None and value < spec.ge)
            or (spec.le is not None and value > spec.le)
            or (spec.gt is not None and value <= spec.gt)
        )
        if bad:
            bounds = ", ".join(
                f"{op} {b:g}"
                for op, b in ((">=", spec.ge), ("<=", spec.le), (">", spec.gt))
                if b is not None
            )
            msg = f"{where}: {value:g} breaks the contract rule {bounds}"
            raise NplError(msg)
    return value


def parse_changes(loans: pl.DataFrame, loan_id: str, changes: Mapping[str, str]) -> dict[str, Any]:
    """Check and type ``column → text`` changes of one loan against the data contract.

    Raises
    ------
    NplError
        Naming the table, column and loan, for an unknown or fixed column, an unreadable value,
        or one that breaks a contract rule.
    """
    out: dict[str, Any] = {}
    for column, text in changes.items():
        if column in LEVER_COLUMNS:
            out[column] = _parse_lever(column, text, loan_id)
            continue
        if column in _FIXED:
            msg = f"loans: column {column} identifies loan {loan_id} and cannot be changed"
            raise NplError(msg)
        if column not in LOANS.names:
            msg = (
                f"loans: no contract column {column!r} to change for loan {loan_id} (levers: "
                f"{', '.join(LEVER_COLUMNS)}; columns: see docs/data-contract.md)"
            )
            raise NplError(msg)
        if column not in loans.columns:
            msg = f"loans: column {column} is absent from this dataset (loan {loan_id})"
            raise NplError(msg)
        out[column] = _parse(LOANS.column(column), text, loan_id)
    return out


def _parse_lever(column: str, text: str, loan_id: str) -> Any:
    if column == "action":
        return text
    try:
        value = float(text)
    except ValueError as exc:
        msg = f"actions: column settlement_discount, loan {loan_id}: cannot read {text!r}"
        raise NplError(msg) from exc
    if not 0.0 <= value <= 1.0:
        msg = f"actions: column settlement_discount, loan {loan_id}: {value:g} is not in [0, 1]"
        raise NplError(msg)
    return value


def rescore(
    model: StrategyModel,
    loans: pl.DataFrame,
    loan_id: str,
    changes: Mapping[str, Any],
    *,
    top: int = 3,
) -> WhatIf:
    """Re-score one loan with changed inputs.

    Parameters
    ----------
    model
        The strategy model (a :class:`StrategyModel` without effects re-scores loans columns
        only).
    loans
        Validated contract ``loans``; the loan is taken from here, and reason codes call a
        value low or high against this table's medians.
    loan_id
        The loan.
    changes
        Column → new value, typed (see :func:`parse_changes` for text), or the levers
        ``action`` and ``settlement_discount``.
    top
        Reason codes per output.

    Returns
    -------
    WhatIf
        Scores and reasons before and after.

    Examples
    --------
    >>> w = rescore(StrategyModel(recovery=model), loans, "T00000042",
    ...             {"monthly_income": 4000.0})  # doctest: +SKIP
    >>> w.p_recover_after - w.p_recover_before  # doctest: +SKIP
    """
    from npl_engine.explain import (  # noqa: PLC0415 - numba TreeSHAP: load only when asked
        explain_loans,
        reason_codes,
    )

    matches = loans.with_row_index("_row").filter(pl.col("loan_id") == loan_id)
    if matches.height == 0:
        msg = f"loans: column loan_id has no row {loan_id!r}"
        raise NplError(msg)
    if not changes:
        msg = "nothing to change: give at least one column=value"
        raise NplError(msg)
    model.recovery.check_columns(loans)
    position = int(matches["_row"][0])
    row = loans[position]
    columns = {k: v for k, v in changes.items() if k not in LEVER_COLUMNS}
    action = str(changes.get("action", BAU))
    discount = changes.get("settlement_discount")
    if discount is not None and action != SETTLEMENT:
        msg = f"settlement_discount needs action={SETTLEMENT} (loan {loan_id})"
        raise NplError(msg)
    changed = row.with_columns(pl.lit(v, dtype=row.schema[k]).alias(k) for k, v in columns.items())
    before = model.score(row)
    after = model.score(
        changed, actions=[action], discounts=[discount if discount is not None else float("nan")]
    )
    shown = {k: (str(row[k][0]), str(changed[k][0])) for k in columns}
    if "action" in changes:
        shown["action"] = (BAU, action)
    if discount is not None:
        shown["settlement_discount"] = ("-", f"{discount:g}")
    edited = pl.concat([loans[:position], changed, loans[position + 1 :]])
    reasons_before = reason_codes(explain_loans(model.recovery, loans, loan_ids=[loan_id]), top=top)
    reasons_after = reason_codes(explain_loans(model.recovery, edited, loan_ids=[loan_id]), top=top)
    collections_after = float(after.expected_collections[0])
    cost = float(after.cost[0])
    return WhatIf(
        loan_id=loan_id,
        changes=shown,
        p_recover_before=float(before.p_recover[0]),
        p_recover_after=float(after.p_recover[0]),
        expected_collections_before=float(before.expected_collections[0]),
        expected_collections_after=None if math.isnan(collections_after) else collections_after,
        cost=None if math.isnan(cost) else cost,
        reasons_before=reasons_before,
        reasons_after=reasons_after,
    )
