"""Stratification tables of a tape: the tables a buyer's first memo shows.

:func:`stratify` groups a tape's loans by segment, region, legal stage, GBV band, default
vintage, months since default, collateral cover band and borrower type (or by any column of the
loans table) and gives each group's loans, GBV, share of GBV, average and GBV-weighted average
balance, collateral cover and, with scores from a recovery model, the model's expected
collections. :class:`Strats` holds the tables and is the one writer and reader of a strats
folder (Parquet, CSV and one Excel workbook).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from npl_engine.errors import NplError

__all__ = [
    "STANDARD_STRATS",
    "TOTAL",
    "StratBands",
    "Strats",
    "stratify",
]

STANDARD_STRATS: tuple[str, ...] = (
    "segment",
    "region",
    "legal_stage",
    "gbv_band",
    "default_vintage",
    "months_since_default",
    "collateral_cover_band",
    "borrower_type",
)
"""The tables :func:`stratify` makes by default, in the order a memo shows them."""

TOTAL = "total"
"""Label of the last row of every table: the whole tape."""

MISSING = "(missing)"
"""Label of the group of loans whose value of a ``--by`` column is null."""

_SCORE_COLUMNS = ("p_recover", "expected_collections")
_FILES_JSON = "strats.json"
_WORKBOOK = "strats.xlsx"


@dataclass(frozen=True, slots=True)
class StratBands:
    """Band edges of the banded tables; each band includes its lower edge.

    Parameters
    ----------
    gbv
        Edges of ``gbv_band`` in the tape's currency (exposure = outstanding principal +
        accrued interest), increasing and positive.
    months_since_default
        Edges of ``months_since_default`` in whole calendar months, increasing and positive.
    collateral_cover
        Edges of ``collateral_cover_band`` as a share of the loan's GBV, increasing and
        positive. Loans without collateral form the band ``unsecured``.
    """

    gbv: tuple[float, ...] = (
        25_000.0,
        50_000.0,
        100_000.0,
        250_000.0,
        500_000.0,
        1_000_000.0,
        5_000_000.0,
    )
    months_since_default: tuple[int, ...] = (12, 24, 36, 60, 120)
    collateral_cover: tuple[float, ...] = (0.5, 0.8, 1.0, 1.5)

    def __post_init__(self) -> None:
        for name in ("gbv", "months_since_default", "collateral_cover"):
            edges = getattr(self, name)
            if not edges or any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
                msg = f"strat bands: {name} must be increasing positive edges, got {edges}"
                raise NplError(msg)


def _money_label(x: float) -> str:
    for size, unit in ((1e9, "bn"), (1e6, "m"), (1e3, "k")):
        if x >= size:
            return f"{x / size:g}{unit}"
    return f"{x:g}"


def _band_labels(edges: Sequence[float], fmt: Any) -> list[str]:
    """``<a``, ``a-b``..., ``z+`` for edges a..z (lower edge included)."""
    labels = [f"< {fmt(edges[0])}"]
    labels += [f"{fmt(lo)}-{fmt(hi)}" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f"{fmt(edges[-1])}+"]


def _band_index(column: str, edges: Sequence[float]) -> pl.Expr:
    """0 below the first edge, k at or above the k-th edge."""
    return pl.sum_horizontal(*((pl.col(column) >= e).cast(pl.Int32) for e in edges))


def _derived(loans: pl.LazyFrame, bands: StratBands) -> pl.LazyFrame:
    """The columns the tables need: gbv, net collateral and the band and vintage keys."""
    net = (pl.col("collateral_value") - pl.col("senior_liens")).clip(lower_bound=0.0)
    secured = (pl.col("collateral_type").cast(pl.String) != "none") & (
        pl.col("collateral_value") > 0
    )
    cutoff, default = pl.col("cutoff_date"), pl.col("default_date")
    months = (cutoff.dt.year().cast(pl.Int32) * 12 + cutoff.dt.month()) - (
        default.dt.year().cast(pl.Int32) * 12 + default.dt.month()
    )
    return (
        loans.with_columns(
            _gbv=pl.col("outstanding_principal") + pl.col("accrued_interest"),
            _net_collateral=net,
            _secured=secured,
            _months=months,
        )
        .with_columns(
            _cover=pl.when(pl.col("_gbv") > 0)
            .then(pl.col("_net_collateral") / pl.col("_gbv"))
            .otherwise(pl.when(pl.col("_net_collateral") > 0).then(float("inf")).otherwise(0.0))
        )
        .with_columns(
            gbv_band=_band_index("_gbv", bands.gbv),
            months_since_default=_band_index("_months", bands.months_since_default),
            collateral_cover_band=pl.when(pl.col("_secured"))
            .then(_band_index("_cover", bands.collateral_cover) + 1)
            .otherwise(0),
            default_vintage=pl.col("default_date").dt.year(),
        )
    )


def _aggregations(*, scored: bool) -> list[pl.Expr]:
    gbv = pl.col("_gbv")
    out = [
        pl.len().cast(pl.Int64).alias("loans"),
        gbv.sum().alias("gbv"),
        (gbv * gbv).sum().alias("_gbv_squared"),
        pl.col("_net_collateral").sum().alias("net_collateral"),
    ]
    if scored:
        out += [
            (pl.col("p_recover") * gbv).sum().alias("_p_gbv"),
            pl.col("expected_collections").sum().alias("expected_collections"),
        ]
    return out


def _finish(frame: pl.DataFrame, key: str, *, total_gbv: float, scored: bool) -> pl.DataFrame:
    """Ratios of the summed columns, in the table's column order."""

    def ratio(num: pl.Expr, den: pl.Expr) -> pl.Expr:
        return pl.when(den > 0).then(num / den).otherwise(None)

    columns = [
        pl.col(key),
        pl.col("loans"),
        pl.col("gbv"),
        (pl.col("gbv") / total_gbv if total_gbv > 0 else pl.lit(None, pl.Float64)).alias(
            "gbv_share"
        ),
        ratio(pl.col("gbv"), pl.col("loans").cast(pl.Float64)).alias("average_gbv"),
        ratio(pl.col("_gbv_squared"), pl.col("gbv")).alias("wa_gbv"),
        pl.col("net_collateral"),
        ratio(pl.col("net_collateral"), pl.col("gbv")).alias("coverage"),
    ]
    if scored:
        columns += [
            ratio(pl.col("_p_gbv"), pl.col("gbv")).alias("p_recover"),
            pl.col("expected_collections"),
            ratio(pl.col("expected_collections"), pl.col("gbv")).alias("expected_recovery"),
        ]
    return frame.select(columns)


@dataclass(frozen=True, slots=True)
class Strats:
    """Stratification tables of one tape.

    Parameters
    ----------
    tables
        Table name (``segment``, ``gbv_band``... or a loans column) to its frame: one row per
        group, then a last row labelled :data:`TOTAL` for the whole tape. Columns: the group
        label (String, named after the table), ``loans``, ``gbv``, ``gbv_share``,
        ``average_gbv`` (GBV / loans), ``wa_gbv`` (GBV-weighted average loan GBV,
        Σ gbv² / Σ gbv), ``net_collateral`` (Σ max(collateral_value − senior_liens, 0)),
        ``coverage`` (net_collateral / gbv) and, when scored, ``p_recover`` (GBV-weighted),
        ``expected_collections`` and ``expected_recovery`` (expected_collections / gbv).
    n_loans, gbv
        The tape's loans and GBV, which every table's total row equals.
    scored
        Whether the tables carry the model's expected recovery.
    bands
        The band edges used.
    """

    tables: dict[str, pl.DataFrame]
    n_loans: int
    gbv: float
    scored: bool
    bands: StratBands = field(default_factory=StratBands)

    def save(self, folder: str | Path) -> None:
        """Write the tables into ``folder``: Parquet, CSV and one workbook.

        Each table as ``NAME.parquet`` and ``NAME.csv``, ``strats.xlsx`` (one sheet per table)
        and ``strats.json`` (the tables' order, totals and bands).
        """
        from npl_engine.excel import write_workbook  # noqa: PLC0415 - loads xlsxwriter

        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        for name, frame in self.tables.items():
            frame.write_parquet(root / f"{name}.parquet")
            frame.write_csv(root / f"{name}.csv")
        write_workbook(root / _WORKBOOK, self.tables)
        meta = {
            "tables": list(self.tables),
            "n_loans": self.n_loans,
            "gbv": self.gbv,
            "scored": self.scored,
            "bands": asdict(self.bands),
        }
        (root / _FILES_JSON).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> Strats:
        """Read a folder written by :meth:`save`."""
        root = Path(folder)
        path = root / _FILES_JSON
        if not path.is_file():
            msg = f"{root} holds no {_FILES_JSON}: write it with `npl strats --out {root}`"
            raise NplError(msg)
        meta = json.loads(path.read_text())
        bands = {k: tuple(v) for k, v in meta["bands"].items()}
        return cls(
            tables={name: pl.read_parquet(root / f"{name}.parquet") for name in meta["tables"]},
            n_loans=int(meta["n_loans"]),
            gbv=float(meta["gbv"]),
            scored=bool(meta["scored"]),
            bands=StratBands(**bands),
        )

    @staticmethod
    def files(names: Sequence[str]) -> frozenset[str]:
        """The files :meth:`save` writes for tables ``names``."""
        return frozenset(
            {_FILES_JSON, _WORKBOOK} | {f"{n}.parquet" for n in names} | {f"{n}.csv" for n in names}
        )


def _check_by(by: Sequence[str], schema: pl.Schema) -> None:
    for name in by:
        if name in STANDARD_STRATS:
            continue
        if name not in schema:
            msg = (
                f"loans: no column {name!r} to stratify by; choose a standard table "
                f"({', '.join(STANDARD_STRATS)}) or a column of the loans table"
            )
            raise NplError(msg)
        if schema[name].is_float():
            msg = (
                f"loans.{name}: a continuous column cannot be a strat (every value would be a "
                "group); use a banded table such as gbv_band or collateral_cover_band"
            )
            raise NplError(msg)
    seen = [n for i, n in enumerate(by) if n in by[:i]]
    if seen:
        msg = f"strat {seen[0]!r} asked for twice"
        raise NplError(msg)


def _label_and_order(
    name: str, frame: pl.DataFrame, dtype: pl.DataType, bands: StratBands
) -> pl.DataFrame:
    """Turn a group key into its String label and sort the groups in the memo's order.

    Bands come in band order, enums in contract order, numbers and dates ascending, free text
    (region, identifiers) by GBV, largest first.
    """
    labels: list[str] | None = None
    if name == "gbv_band":
        labels = _band_labels(bands.gbv, _money_label)
    elif name == "months_since_default":
        labels = _band_labels(bands.months_since_default, lambda x: f"{x:g}")
    elif name == "collateral_cover_band":
        labels = ["unsecured", *_band_labels(bands.collateral_cover, lambda x: f"{x:.0%}")]
    if labels is not None:
        order = pl.col(name)
        label = pl.col(name).replace_strict(list(range(len(labels))), labels)
        return frame.sort(order).with_columns(label.alias(name))
    if isinstance(dtype, pl.Enum | pl.Categorical) or dtype.is_numeric() or dtype.is_temporal():
        order = pl.col(name).to_physical() if isinstance(dtype, pl.Enum) else pl.col(name)
        frame = frame.sort(order, nulls_last=True)
    else:
        frame = frame.sort(["gbv", name], descending=[True, False], nulls_last=True)
    return frame.with_columns(pl.col(name).cast(pl.String).fill_null(MISSING))


def stratify(
    loans: pl.DataFrame | pl.LazyFrame,
    *,
    by: Sequence[str] | None = None,
    scores: pl.DataFrame | pl.LazyFrame | None = None,
    bands: StratBands | None = None,
) -> Strats:
    """Stratification tables of a tape.

    Parameters
    ----------
    loans
        Validated contract ``loans`` (defaults filled, as :func:`npl_engine.data.read_dataset`
        gives them).
    by
        The tables to make, in order: names from :data:`STANDARD_STRATS` or columns of
        ``loans`` (not float columns). Default: every standard table.
    scores
        Per-loan ``loan_id``, ``p_recover`` and ``expected_collections`` in the order of
        ``loans`` (the ``scores`` of :meth:`npl_engine.scoring.RecoveryModel.score`), in memory
        or lazily; adds the model's expected recovery to every table.
    bands
        Band edges (default :class:`StratBands`).

    Returns
    -------
    Strats

    Raises
    ------
    NplError
        If a ``by`` name is neither a standard table nor a non-float loans column, is given
        twice, or if ``scores`` do not match ``loans`` row for row.

    Notes
    -----
    GBV = outstanding_principal + accrued_interest at the cut-off date. Net collateral is the
    latest collateral_value less senior_liens, floored at 0; a loan is *unsecured* when its
    collateral_type is ``none`` or its collateral_value is 0. Months since default count
    calendar months from default_date to cutoff_date. Expected collections are the model's,
    gross and undiscounted over its valuation horizon. No loan is dropped: a null value of a
    ``by`` column forms the group ``(missing)``, so every table's rows add up to the tape.

    Examples
    --------
    >>> import datetime as dt
    >>> loans = pl.DataFrame({
    ...     "segment": ["auto", "auto", "sme_secured"], "region": ["N", "S", "N"],
    ...     "legal_stage": ["none", "none", "auction"], "borrower_type": ["individual"] * 3,
    ...     "outstanding_principal": [10_000.0, 30_000.0, 200_000.0],
    ...     "accrued_interest": [0.0, 0.0, 0.0], "collateral_type": ["vehicle", "none", "land"],
    ...     "collateral_value": [5_000.0, 0.0, 300_000.0], "senior_liens": [0.0, 0.0, 0.0],
    ...     "cutoff_date": [dt.date(2026, 9, 30)] * 3,
    ...     "default_date": [dt.date(2025, 9, 1), dt.date(2020, 1, 1), dt.date(2024, 3, 1)],
    ... })
    >>> s = stratify(loans, by=["segment", "collateral_cover_band"])  # plain strings: by GBV
    >>> s.tables["segment"].select("segment", "loans", "gbv", "coverage").rows()
    [('sme_secured', 1, 200000.0, 1.5), ('auto', 2, 40000.0, 0.125), ('total', 3, 240000.0, 1.2708333333333333)]
    >>> s.tables["collateral_cover_band"]["collateral_cover_band"].to_list()
    ['unsecured', '50%-80%', '150%+', 'total']
    """  # noqa: E501 - a doctest's expected output cannot be wrapped
    bands = bands or StratBands()
    names = tuple(by) if by else STANDARD_STRATS
    frame = loans.lazy()
    schema = frame.collect_schema()
    _check_by(names, schema)
    scored = scores is not None
    if scores is not None:
        frame = _with_scores(frame, scores.lazy())
    derived = _derived(frame, bands)
    aggs = _aggregations(scored=scored)
    queries = [derived.group_by(name).agg(aggs) for name in names]
    queries.append(derived.select(aggs))
    *grouped, total = pl.collect_all(queries)
    total_gbv = float(total["gbv"][0] or 0.0)
    n_loans = int(total["loans"][0])
    tables: dict[str, pl.DataFrame] = {}
    for name, table in zip(names, grouped, strict=True):
        dtype = schema[name] if name in schema and name not in _BANDED else pl.Int32()
        ordered = _label_and_order(name, table, dtype, bands)
        whole = total.with_columns(pl.lit(TOTAL).alias(name))
        rows = pl.concat([ordered, whole.select(ordered.columns)], how="vertical_relaxed")
        tables[name] = _finish(rows, name, total_gbv=total_gbv, scored=scored)
    return Strats(tables=tables, n_loans=n_loans, gbv=total_gbv, scored=scored, bands=bands)


def _with_scores(loans: pl.LazyFrame, scores: pl.LazyFrame) -> pl.LazyFrame:
    """The loans with the scores' columns beside them, once they match row for row.

    Both stay lazy: only the ids are read for the check, and the tables then read the columns
    they aggregate (a chunked valuation's scores are a scan of the file its chunks wrote).
    """
    n_loans, n_scores = pl.collect_all([loans.select(pl.len()), scores.select(pl.len())])
    same = n_loans.item() == n_scores.item()
    if same:
        ids = pl.concat(
            [loans.select("loan_id"), scores.select(pl.col("loan_id").alias("_scores_id"))],
            how="horizontal",
        )
        same = bool(
            ids.select(pl.col("loan_id").eq_missing(pl.col("_scores_id")).all()).collect().item()
        )
    if not same:
        msg = "scores: not the loans' scores row for row (loan_id differs or a row is missing)"
        raise NplError(msg)
    return pl.concat([loans, scores.select(_SCORE_COLUMNS)], how="horizontal")


_BANDED = ("gbv_band", "months_since_default", "collateral_cover_band", "default_vintage")
