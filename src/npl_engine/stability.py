"""Population stability: how far a new population's distribution is from a reference one.

The population stability index (PSI) over bins fixed by the reference (deciles for numbers,
categories for categorical columns, a bin for missing values), and the reference profile a
model keeps of its training book. Pure computation on frames; :mod:`npl_engine.monitoring`
uses it to monitor a newer book.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.features import CATEGORICAL_FEATURES, NUMERIC_FEATURES

__all__ = [
    "PSI_FLOOR",
    "PSI_SHIFT",
    "PSI_WATCH",
    "ReferenceProfile",
    "population_stability_index",
]

FloatArray = npt.NDArray[np.float64]

#: PSI at or above which a variable is flagged as shifted.
PSI_SHIFT = 0.25
#: PSI at or above which a variable is worth watching (not flagged).
PSI_WATCH = 0.10
#: Smallest share a bin is given in the PSI (an empty bin would make it infinite).
PSI_FLOOR = 1e-4
_DECILES = tuple(q / 10 for q in range(1, 10))
_MISSING = "(missing)"
_OTHER = "(other)"


def population_stability_index(
    expected: npt.ArrayLike, actual: npt.ArrayLike, *, floor: float = PSI_FLOOR
) -> float:
    """PSI = Σ (a − e) · ln(a / e) over bins, shares floored at ``floor``.

    Parameters
    ----------
    expected, actual
        Shares (or counts) per bin of the reference and of the new population; each is
        normalised to sum to 1.

    Examples
    --------
    Two bins, 50/50 against 30/70: (0.3 − 0.5) ln(0.3/0.5) + (0.7 − 0.5) ln(0.7/0.5)
    = 0.1022 + 0.0673 = 0.1695.

    >>> round(population_stability_index([0.5, 0.5], [0.3, 0.7]), 4)
    0.1695
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.maximum(e / max(e.sum(), 1e-300), floor)
    a = np.maximum(a / max(a.sum(), 1e-300), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True, slots=True)
class _Variable:
    """How one variable is binned and the reference's share in each bin.

    Numeric: bins (-inf, e1], (e1, e2], …, (ek, inf) then missing. Categorical: each reference
    category, then a bin for categories the reference never had, then missing.
    """

    kind: str
    edges: tuple[float, ...]
    categories: tuple[str, ...]
    shares: tuple[float, ...]

    def labels(self) -> list[str]:
        if self.kind == "categorical":
            return [*self.categories, _OTHER, _MISSING]
        bounds = ["-inf", *(f"{e:.6g}" for e in self.edges), "inf"]
        return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)] + [_MISSING]

    def counts(self, values: pl.Series) -> FloatArray:
        """Loans per bin of ``values`` (same bins as the reference)."""
        if self.kind == "categorical":
            text = values.cast(pl.String)
            known = [int((text == c).sum()) for c in self.categories]
            missing = int(text.is_null().sum())
            return np.array([*known, len(text) - missing - sum(known), missing], dtype=np.float64)
        x = values.cast(pl.Float64).to_numpy()
        present = x[~np.isnan(x)]
        bins = np.searchsorted(np.asarray(self.edges), present, side="left")
        counts = np.bincount(bins, minlength=len(self.edges) + 1).astype(np.float64)
        return np.append(counts, float(x.size - present.size))

    @classmethod
    def fit(cls, values: pl.Series, *, categorical: bool) -> _Variable:
        if categorical:
            cats = tuple(sorted(values.cast(pl.String).drop_nulls().unique().to_list()))
            var = cls(kind="categorical", edges=(), categories=cats, shares=())
        else:
            x = values.cast(pl.Float64).to_numpy()
            present = x[~np.isnan(x)]
            edges = tuple(np.unique(np.quantile(present, _DECILES))) if present.size else ()
            var = cls(kind="numeric", edges=tuple(float(e) for e in edges), categories=(),
                      shares=())  # fmt: skip
        counts = var.counts(values)
        return cls(var.kind, var.edges, var.categories, tuple(counts / max(counts.sum(), 1.0)))


@dataclass(frozen=True, slots=True)
class ReferenceProfile:
    """The training book's distribution of every feature and of ``p_recover``.

    Parameters
    ----------
    n_loans
        Loans in the reference book.
    variables
        Per variable: its bins and the reference's share in each.

    Notes
    -----
    Numeric variables are binned at the reference's deciles (fewer bins where values repeat),
    plus a bin for missing values; categorical ones by category, plus bins for unseen categories
    and missing values. ``p_recover`` is the model's calibrated probability on the training
    book's own loans.
    """

    n_loans: int
    variables: dict[str, _Variable] = field(default_factory=dict)

    @classmethod
    def from_features(cls, features: pl.DataFrame, p_recover: FloatArray) -> ReferenceProfile:
        """Profile a :func:`~npl_engine.features.build_features` frame and its scores."""
        variables = {
            name: _Variable.fit(features[name], categorical=name in CATEGORICAL_FEATURES)
            for name in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES)
            if name in features.columns
        }
        variables["p_recover"] = _Variable.fit(pl.Series(p_recover), categorical=False)
        return cls(n_loans=features.height, variables=variables)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (kept in ``model.json``)."""
        return {
            "n_loans": self.n_loans,
            "variables": {
                name: {
                    "kind": v.kind,
                    "edges": list(v.edges),
                    "categories": list(v.categories),
                    "shares": list(v.shares),
                }
                for name, v in self.variables.items()
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        """Read what :meth:`to_dict` wrote."""
        return cls(
            n_loans=int(data["n_loans"]),
            variables={
                name: _Variable(
                    kind=v["kind"],
                    edges=tuple(v["edges"]),
                    categories=tuple(v["categories"]),
                    shares=tuple(v["shares"]),
                )
                for name, v in data["variables"].items()
            },
        )

    def stability(self, features: pl.DataFrame, p_recover: FloatArray) -> pl.DataFrame:
        """PSI of each variable of a new population against this reference.

        Returns
        -------
        pl.DataFrame
            ``variable``, ``kind``, ``psi``, ``status`` (stable / watch / shift), sorted by PSI,
            largest first.
        """
        rows = []
        for name, var in self.variables.items():
            values = pl.Series(p_recover) if name == "p_recover" else features[name]
            psi = population_stability_index(var.shares, var.counts(values))
            rows.append({"variable": name, "kind": var.kind, "psi": psi})
        frame = pl.DataFrame(rows, schema={"variable": pl.String, "kind": pl.String,
                                           "psi": pl.Float64})  # fmt: skip
        status = (
            pl.when(pl.col("psi") >= PSI_SHIFT)
            .then(pl.lit("shift"))
            .when(pl.col("psi") >= PSI_WATCH)
            .then(pl.lit("watch"))
            .otherwise(pl.lit("stable"))
        )
        return frame.with_columns(status=status).sort("psi", descending=True)

    def bins(self, name: str, values: pl.Series) -> pl.DataFrame:
        """Bin by bin: ``bin``, ``reference_share``, ``current_share`` of one variable."""
        var = self.variables[name]
        counts = var.counts(values)
        return pl.DataFrame(
            {
                "bin": var.labels(),
                "reference_share": [*var.shares, *([0.0] * (len(counts) - len(var.shares)))],
                "current_share": counts / max(counts.sum(), 1.0),
            }
        )
