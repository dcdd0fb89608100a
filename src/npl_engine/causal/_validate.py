"""Validation of per-loan effects against doubly robust scores (in the spirit of DRTester).

Both checks compare a model's predicted effects ``tau`` with doubly robust pseudo-outcome
differences ``dr`` (cross-fitted AIPW scores): their mean over any group of loans chosen by the
covariates alone estimates that group's true average effect without bias.

- **Calibration**: loans grouped by quantile of ``tau``; in each group, mean ``tau`` against
  mean ``dr`` with a 95 % interval, and the slope of the latter on the former (1 = calibrated,
  0 = the ranking carries no information).
- **TOC** (targeting operator characteristic, Yadlowsky et al. 2021): for the top ``q`` share of
  loans by ``tau``, mean ``dr`` in that share minus the mean over all. A model that ranks well
  has a positive, falling curve. The **AUTOC** (area under it, mean over the grid of q) is
  the rank-weighted average treatment effect: > 0 with its interval above 0 means the ranking
  finds loans where the action does more. Intervals come from a bootstrap over loans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["calibration_groups", "toc"]

Array = npt.NDArray[np.float64]
_Z95 = 1.959963984540054


def calibration_groups(tau: Array, dr: Array, *, n_groups: int = 4) -> dict[str, Any]:
    """Mean predicted vs doubly robust effect per quantile group of ``tau``, and the slope.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tau = rng.uniform(0, 1, 20_000)
    >>> out = calibration_groups(tau, tau + rng.normal(0, 1, tau.size))
    >>> round(out["slope"], 1)
    1.0
    """
    edges = np.quantile(tau, np.linspace(0, 1, n_groups + 1)[1:-1])
    group = np.searchsorted(edges, tau, side="right")
    rows = []
    for g in range(n_groups):
        sel = group == g
        if sel.sum() < 2:
            continue
        mean, se = float(dr[sel].mean()), float(dr[sel].std(ddof=1) / np.sqrt(sel.sum()))
        rows.append(
            {
                "group": g + 1,
                "n": int(sel.sum()),
                "predicted": float(tau[sel].mean()),
                "doubly_robust": mean,
                "ci_low": mean - _Z95 * se,
                "ci_high": mean + _Z95 * se,
            }
        )
    x = np.array([r["predicted"] for r in rows])
    y = np.array([r["doubly_robust"] for r in rows])
    slope = float(np.polyfit(x, y, 1)[0]) if x.size > 1 and x.std() > 0 else float("nan")
    return {"groups": rows, "slope": slope}


def toc(
    tau: Array,
    dr: Array,
    *,
    shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """TOC curve and AUTOC of a ranking ``tau`` scored by ``dr``, with bootstrap intervals.

    Examples
    --------
    A ranking that knows the effect has a positive AUTOC; a random one does not.

    >>> rng = np.random.default_rng(1)
    >>> effect = rng.uniform(0, 1, 10_000)
    >>> dr = effect + rng.normal(0, 1, effect.size)
    >>> toc(effect, dr)["autoc_ci"][0] > 0, toc(rng.uniform(size=effect.size), dr)["autoc"] < 0.05
    (True, True)
    """
    order = np.argsort(-tau, kind="stable")
    n = order.size
    cut = np.maximum(np.round(np.asarray(shares) * n).astype(np.int64), 1)

    def curve(sorted_dr: Array) -> Array:
        running = np.cumsum(sorted_dr)
        values: Array = running[cut - 1] / cut - running[-1] / n
        return values

    point = curve(dr[order])
    rng = np.random.default_rng(seed)
    boot = np.empty((n_boot, cut.size))
    for b in range(n_boot):
        # resample loans, keep the model's ranking: sorted positions of the draws
        draw = np.sort(rng.integers(0, n, n))
        boot[b] = curve(dr[order[draw]])
    low, high = np.percentile(boot, [2.5, 97.5], axis=0)
    autoc = boot.mean(axis=1)
    return {
        "shares": list(shares),
        "toc": point.tolist(),
        "toc_ci_low": low.tolist(),
        "toc_ci_high": high.tolist(),
        "autoc": float(point.mean()),
        "autoc_ci": [float(np.percentile(autoc, 2.5)), float(np.percentile(autoc, 97.5))],
    }
