"""The valuation as one Excel workbook, and the tables it and the command line share."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from npl_engine.excel import Tables, write_workbook
from npl_engine.strats import Strats
from npl_engine.valuation._pricing import ScenarioValues

__all__ = ["grid_table", "tranche_table", "write_valuation_workbook"]


def grid_table(price_grid: pl.DataFrame) -> pl.DataFrame:
    """A bid grid as a buyer reads it: one row per target IRR, price and % GBV per scenario.

    Parameters
    ----------
    price_grid
        The long frame of :func:`~npl_engine.valuation.price_grid`.

    Returns
    -------
    polars.DataFrame
        ``target_irr``, then ``<scenario>_price`` and ``<scenario>_pct_gbv`` for each scenario
        in order, ``weighted`` last.
    """
    names = list(dict.fromkeys(price_grid["scenario"].to_list()))
    wide = price_grid.pivot(
        on="scenario", index="target_irr", values=["price", "price_pct_gbv"], maintain_order=True
    )
    columns = [pl.col("target_irr")]
    for name in names:
        columns += [
            pl.col(f"price_{name}").alias(f"{name}_price"),
            pl.col(f"price_pct_gbv_{name}").alias(f"{name}_pct_gbv"),
        ]
    return wide.select(columns)


def tranche_table(tranches: Mapping[str, Any]) -> pl.DataFrame:
    """Per scenario and class of notes: price (the class's size), yield, WAL, loss and MOIC.

    Parameters
    ----------
    tranches
        The ``tranches`` entry of ``valuation.json``
        (:func:`~npl_engine.valuation.tranche_report`).

    Returns
    -------
    polars.DataFrame
        ``scenario``, ``tranche``, ``order``, ``price``, ``price_share`` (of the price paid),
        ``yield`` (annual IRR of the class's cash), ``wal_years``, ``loss``, ``loss_share``
        (of the class's size), ``interest_unpaid``, ``moic``; scenarios in order, then
        ``weighted``, most senior class first.
    """
    amounts = {c["tranche"]: c for c in tranches["classes"]}
    rows = [
        {
            "scenario": run["name"],
            "tranche": t["tranche"],
            "order": t["order"],
            "price": amounts[t["tranche"]]["amount"],
            "price_share": amounts[t["tranche"]]["amount_pct_price"],
            "yield": t["irr"],
            "wal_years": t["wal_years"],
            "loss": t["loss"],
            "loss_share": t["loss_share"],
            "interest_unpaid": t["interest_unpaid"],
            "moic": t["moic"],
        }
        for run in tranches["scenarios"]
        for t in run["tranches"]
    ]
    schema = {"scenario": pl.String, "tranche": pl.String, "order": pl.Int64}
    floats = ("price", "price_share", "yield", "wal_years", "loss", "loss_share",
              "interest_unpaid", "moic")  # fmt: skip
    return pl.DataFrame(rows, schema=schema | dict.fromkeys(floats, pl.Float64))


def write_valuation_workbook(
    path: str | Path,
    valuation: ScenarioValues,
    *,
    price_grid: pl.DataFrame | None = None,
    sensitivities: pl.DataFrame | None = None,
    strats: Strats | None = None,
    tranches: Mapping[str, Any] | None = None,
    simulation: Mapping[str, Any] | None = None,
) -> Path:
    """Write a valuation as one workbook: the sheets a buyer's model links to.

    Sheets: ``valuation`` (per scenario and weighted: collections, costs, price, % GBV, and
    IRR and MOIC at a price), ``price_grid`` (:func:`grid_table`), ``sensitivities``,
    ``cash_flows`` (monthly, per scenario and weighted), ``strats`` (every table stacked),
    ``tranches`` (:func:`tranche_table`) and ``simulation`` (Monte Carlo percentiles); a
    sheet is left out when its input is ``None``.

    Returns
    -------
    Path
        ``path``.
    """
    rows = [s.to_dict() for s in (*valuation.scenarios, valuation.weighted)]
    summary = pl.DataFrame(
        rows,
        schema={
            "name": pl.String,
            "weight": pl.Float64,
            "gross_collections": pl.Float64,
            "costs": pl.Float64,
            "net_collections": pl.Float64,
            "price": pl.Float64,
            "price_pct_gbv": pl.Float64,
            "irr_at_price": pl.Float64,
            "moic": pl.Float64,
        },
    ).rename({"name": "scenario"})
    facts = pl.DataFrame(
        {
            "item": ["loans", "gbv", "target_irr", "horizon_months", "price_paid"],
            "value": [
                float(valuation.n_loans),
                valuation.gbv,
                valuation.target_irr,
                float(valuation.horizon_months),
                valuation.price,
            ],
        },
        schema={"item": pl.String, "value": pl.Float64},
    )
    sheets: dict[str, Tables] = {"valuation": [("valuation", facts), ("price", summary)]}
    if price_grid is not None:
        sheets["price_grid"] = grid_table(price_grid)
    if sensitivities is not None:
        sheets["sensitivities"] = sensitivities
    sheets["cash_flows"] = valuation.cash_flows
    if strats is not None:
        sheets["strats"] = list(strats.tables.items())
    if tranches is not None:
        sheets["tranches"] = tranche_table(tranches)
    if simulation is not None:
        q = simulation["percentiles"]
        sheets["simulation"] = pl.DataFrame(
            [{"figure": figure} | dict(values) for figure, values in q.items()]
        )
    return write_workbook(path, sheets)
