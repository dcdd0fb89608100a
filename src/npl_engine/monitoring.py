"""Monitoring between deals: has the book moved away from what the model learned.

Two questions, asked of a newer tape or book against the model's training book:

1. **Population stability.** Is the new book made of the same kind of loans? The population
   stability index (PSI) of every model feature and of ``p_recover`` compares the new book's
   distribution with the training book's, bin by bin; the segment mix is shown share by share.
2. **Calibration** (where outcomes have since been realised: the dataset has ``payments`` and an
   ``as_of_date``). Do loans still recover as often as ``p_recover`` says, and do they still
   collect what the model expected by each knot month?

The training book's distributions are kept in the model folder (:class:`ReferenceProfile`,
written by ``npl train``), so monitoring needs the model only.

Thresholds (documented in ``docs/monitoring.md``):

- PSI < 0.10 stable; 0.10 to 0.25 ``watch``; ≥ 0.25 ``shift`` (a flag). These are the usual
  credit-scoring conventions for PSI over deciles.
- Calibration: a flag when the realised figure is more than 3 standard errors *and* more than
  10 % (relative) away from the expected one, on at least 100 loans.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.excel import write_workbook
from npl_engine.scoring import build_targets
from npl_engine.stability import PSI_SHIFT, PSI_WATCH, ReferenceProfile

if TYPE_CHECKING:
    from npl_engine.data import Dataset
    from npl_engine.scoring import RecoveryModel

__all__ = [
    "MONITOR_FILES",
    "MonitorReport",
    "monitor",
    "reference_profile",
]

FloatArray = npt.NDArray[np.float64]

#: Calibration flags: standard errors, relative error and loans needed.
CALIBRATION_Z = 3.0
CALIBRATION_RELATIVE = 0.10
CALIBRATION_MIN_LOANS = 100

#: Files :meth:`MonitorReport.save` writes.
MONITOR_FILES = frozenset({"monitor.json", "stability.parquet", "stability.csv", "monitor.xlsx"})


@dataclass(frozen=True, slots=True)
class MonitorReport:
    """What :func:`monitor` found.

    Parameters
    ----------
    stability
        PSI per variable (features and ``p_recover``) with its status.
    segment_mix
        ``segment``, ``reference_share``, ``current_share``, ``change_pp`` (percentage points).
    recovery_calibration
        ``None`` without realised outcomes; else one row per decile of ``p_recover`` and a
        ``total`` row: ``band``, ``loans``, ``expected_rate`` (mean p_recover),
        ``realised_rate``, ``z``.
    collections_calibration
        ``None`` without realised outcomes; else one row per knot month k with at least one
        loan observed through k: ``month``, ``loans``, ``expected`` and ``realised`` cumulative
        collections (currency), ``ratio``, ``z``.
    flags
        One line per finding past a threshold (empty when nothing moved).
    n_loans
        Loans monitored.
    reference_loans
        Loans in the training book.
    """

    stability: pl.DataFrame
    segment_mix: pl.DataFrame
    recovery_calibration: pl.DataFrame | None
    collections_calibration: pl.DataFrame | None
    flags: list[str]
    n_loans: int
    reference_loans: int

    def save(self, folder: str | Path) -> Path:
        """Write ``monitor.json``, ``stability.parquet`` / ``.csv`` and ``monitor.xlsx``.

        The folder is written whole or not at all (an earlier monitoring folder is replaced).
        """
        sheets = {"stability": self.stability, "segment_mix": self.segment_mix}
        if self.recovery_calibration is not None:
            sheets["recovery_calibration"] = self.recovery_calibration
        if self.collections_calibration is not None:
            sheets["collections_calibration"] = self.collections_calibration
        sheets["flags"] = pl.DataFrame({"flag": self.flags}, schema={"flag": pl.String})
        with atomic_folder(folder, allowed=MONITOR_FILES) as staging:
            (staging / "monitor.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
            self.stability.write_parquet(staging / "stability.parquet")
            self.stability.write_csv(staging / "stability.csv")
            write_workbook(staging / "monitor.xlsx", sheets)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> MonitorReport:
        """Read a folder written by :meth:`save` (``npl monitor --out``)."""
        path = Path(folder) / "monitor.json"
        if not path.is_file():
            msg = (
                f"{folder} is not a monitoring folder (no monitor.json); write one with "
                "`npl monitor`"
            )
            raise NplError(msg)
        data = json.loads(path.read_text())

        def frame(key: str) -> pl.DataFrame | None:
            rows = data.get(key)
            return None if rows is None else pl.DataFrame(rows)

        return cls(
            stability=pl.DataFrame(data["stability"]),
            segment_mix=pl.DataFrame(data["segment_mix"]),
            recovery_calibration=frame("recovery_calibration"),
            collections_calibration=frame("collections_calibration"),
            flags=list(data["flags"]),
            n_loans=int(data["n_loans"]),
            reference_loans=int(data["reference_loans"]),
        )

    def summary(self) -> dict[str, Any]:
        """What ``monitor.json`` holds."""
        return {
            "n_loans": self.n_loans,
            "reference_loans": self.reference_loans,
            "thresholds": {
                "psi_watch": PSI_WATCH,
                "psi_shift": PSI_SHIFT,
                "calibration_z": CALIBRATION_Z,
                "calibration_relative": CALIBRATION_RELATIVE,
                "calibration_min_loans": CALIBRATION_MIN_LOANS,
            },
            "flags": self.flags,
            "stability": self.stability.to_dicts(),
            "segment_mix": self.segment_mix.to_dicts(),
            "recovery_calibration": None
            if self.recovery_calibration is None
            else self.recovery_calibration.to_dicts(),
            "collections_calibration": None
            if self.collections_calibration is None
            else self.collections_calibration.to_dicts(),
        }


def _off(expected: float, realised: float, z: float, loans: int) -> bool:
    relative = abs(realised - expected) / max(abs(expected), 1e-12)
    return (
        loans >= CALIBRATION_MIN_LOANS
        and abs(z) > CALIBRATION_Z
        and relative > (CALIBRATION_RELATIVE)
    )


def _recovery_calibration(p: FloatArray, y: FloatArray) -> pl.DataFrame:
    """Deciles of p_recover: expected and realised recovery rates, z of their difference."""
    order = np.argsort(p, kind="stable")
    groups = [*np.array_split(order, 10), order]
    rows = []
    for i, idx in enumerate(groups):
        if idx.size == 0:
            continue
        var = float(np.sum(p[idx] * (1 - p[idx])))
        diff = float(np.sum(y[idx] - p[idx]))
        rows.append(
            {
                "band": "total" if i == 10 else f"decile {i + 1}",
                "loans": int(idx.size),
                "expected_rate": float(p[idx].mean()),
                "realised_rate": float(y[idx].mean()),
                "z": diff / np.sqrt(var) if var > 0 else 0.0,
            }
        )
    return pl.DataFrame(rows)


def _collections_calibration(
    expected: FloatArray, realised: FloatArray, knots: tuple[int, ...]
) -> pl.DataFrame:
    """Per knot: cumulative expected and realised collections of the loans observed that far.

    ``expected`` and ``realised`` are (n, len(knots)) in currency, NaN where a loan is not
    observed through the knot. The standard error of the difference is that of the sum of the
    per-loan differences (loans independent).
    """
    rows = []
    for j, k in enumerate(knots):
        seen = ~np.isnan(realised[:, j])
        if not seen.any():
            continue
        e, r = expected[seen, j], realised[seen, j]
        se = float(np.sqrt(np.sum((r - e) ** 2)))
        rows.append(
            {
                "month": k,
                "loans": int(seen.sum()),
                "expected": float(e.sum()),
                "realised": float(r.sum()),
                "ratio": float(r.sum() / e.sum()) if e.sum() > 0 else float("nan"),
                "z": float((r.sum() - e.sum()) / se) if se > 0 else 0.0,
            }
        )
    return pl.DataFrame(
        rows,
        schema={"month": pl.Int64, "loans": pl.Int64, "expected": pl.Float64,
                "realised": pl.Float64, "ratio": pl.Float64, "z": pl.Float64},
    )  # fmt: skip


def reference_profile(model: RecoveryModel, loans: pl.LazyFrame) -> ReferenceProfile:
    """Profile a reference book other than the training one, scored by ``model``."""
    collected = loans.collect()
    model.check_columns(collected)
    features, x = model.features(collected.lazy())
    return ReferenceProfile.from_features(features, model.predict_proba(x))


def monitor(
    model: RecoveryModel,
    dataset: Dataset,
    *,
    reference: ReferenceProfile | None = None,
) -> MonitorReport:
    """Compare a newer tape or book with the model's training book.

    Parameters
    ----------
    model
        A fitted :class:`~npl_engine.scoring.RecoveryModel`.
    dataset
        A validated tape or book. With ``payments`` and an ``as_of_date``, realised outcomes are
        checked against the model's predictions too.
    reference
        The profile to compare with. Default: the training book's, kept in the model.

    Raises
    ------
    NplError
        If the model keeps no reference profile and none is given.
    """
    profile = reference if reference is not None else model.reference_
    if profile is None:
        msg = (
            "this model keeps no profile of its training book (trained before monitoring "
            "existed): retrain it with `npl train`, or pass --reference BOOK"
        )
        raise NplError(msg)
    loans = dataset.loans.collect()
    model.check_columns(loans)
    features, x = model.features(loans.lazy())
    p = model.predict_proba(x)
    stability = profile.stability(features, p)
    mix = profile.bins("segment", features["segment"]).filter(
        pl.col("reference_share") + pl.col("current_share") > 0
    )
    segment_mix = mix.select(
        pl.col("bin").alias("segment"),
        "reference_share",
        "current_share",
        change_pp=100 * (pl.col("current_share") - pl.col("reference_share")),
    )
    flags = [
        f"{r['variable']}: PSI {r['psi']:.3f} ≥ {PSI_SHIFT} (distribution shifted)"
        for r in stability.iter_rows(named=True)
        if r["status"] == "shift"
    ]
    recovery = collections = None
    if dataset.payments is not None and dataset.as_of_date is not None:
        knots = model.collections_.knots
        targets = build_targets(dataset, model.definition, knots)
        labelled = targets["recovered"].is_not_null().to_numpy()
        if labelled.any():
            y = targets["recovered"].to_numpy()[labelled].astype(np.float64)
            recovery = _recovery_calibration(p[labelled], y)
            total = recovery.filter(band="total").row(0, named=True)
            if _off(total["expected_rate"], total["realised_rate"], total["z"], total["loans"]):
                flags.append(
                    f"p_recover: {total['realised_rate']:.1%} of {total['loans']:,} loans "
                    f"recovered against {total['expected_rate']:.1%} expected "
                    f"(z = {total['z']:+.1f})"
                )
        exposure = targets["exposure"].to_numpy()
        cumulative = model.collections_.predict_cumulative(x)
        expected = sum(cumulative.values()) * exposure[:, None]
        realised = np.column_stack(
            [
                (
                    targets[f"borrower_{k}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
                    + targets[f"collateral_{k}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
                )
                * exposure
                for k in knots
            ]
        )
        collections = _collections_calibration(np.asarray(expected), realised, knots)
        flags.extend(
            f"collections by month {r['month']}: {r['realised']:,.0f} realised against "
            f"{r['expected']:,.0f} expected ({r['ratio']:.1%}, z = {r['z']:+.1f}, "
            f"{r['loans']:,} loans)"
            for r in collections.iter_rows(named=True)
            if _off(r["expected"], r["realised"], r["z"], r["loans"])
        )
    return MonitorReport(
        stability=stability,
        segment_mix=segment_mix,
        recovery_calibration=recovery,
        collections_calibration=collections,
        flags=flags,
        n_loans=loans.height,
        reference_loans=profile.n_loans,
    )
