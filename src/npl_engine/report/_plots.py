"""The report's charts: matplotlib figures rendered to SVG data URIs (no file, no network).

Every function takes plain data (frames, arrays) and returns a ``data:image/svg+xml`` URI that an
``<img>`` tag shows as it is. Text is drawn as paths, so the charts need no font on the reader's
machine, and each chart is its own SVG document (no clash of ids between charts).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

FloatArray = npt.NDArray[np.float64]

#: Colour-blind-safe palette (Okabe-Ito), then greys.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#666666")
INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#0072B2"
WARN = "#D55E00"

_STYLE: Any = {
    "svg.hashsalt": "npl_engine",  # the same data gives the same bytes
    "font.size": 10,
    "axes.edgecolor": "#c8ced6",
    "axes.labelcolor": INK,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e6e9ed",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelcolor": INK,
    "ytick.labelcolor": INK,
    "legend.frameon": False,
    "legend.fontsize": 9,
}


def _svg(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _millions(x: float, _: object = None) -> str:
    """Money on an axis: 12M, 1.5M, 250k, 900 (budgets of a few thousand read as such).

    >>> [_millions(v) for v in (0, 900, 25_000, 1_500_000, 12_000_000)]
    ['0', '900', '25k', '1.5M', '12M']
    """
    if x == 0:
        return "0"
    if abs(x) >= 1e7:
        return f"{x / 1e6:,.0f}M"
    if abs(x) >= 1e6:
        return f"{x / 1e6:,.1f}M"
    return f"{x / 1e3:,.0f}k" if abs(x) >= 1e3 else f"{x:,.0f}"


def composition(by_segment: pl.DataFrame, by_stage: pl.DataFrame) -> str:
    """GBV by segment and by legal stage, bars labelled with the loan count and share."""
    with rc_context(_STYLE):
        fig, (left, right) = _figure(11, 3.6, 2)
        for ax, frame, key, title in (
            (left, by_segment, "segment", "GBV by segment"),
            (right, by_stage, "legal_stage", "GBV by legal stage"),
        ):
            ordered = frame.sort("gbv")
            total = float(ordered["gbv"].sum())
            labels = [str(s).replace("_", " ") for s in ordered[key]]
            bars = ax.barh(labels, ordered["gbv"].to_list(), color=ACCENT, height=0.65)
            for bar, gbv, n in zip(bars, ordered["gbv"], ordered["loans"], strict=True):
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    f"  {gbv / total:.0%} · {n:,} loans",
                    va="center",
                    fontsize=9,
                    color=INK,
                )
            ax.set_title(title)
            ax.xaxis.set_major_formatter(FuncFormatter(_millions))
            ax.set_xlim(0, float(ordered["gbv"].to_numpy().max()) * 1.45)
            ax.grid(axis="y", visible=False)
        return _svg(fig)


def collections_curves(by_segment: pl.DataFrame, by_scenario: pl.DataFrame) -> str:
    """Cumulative expected collections: by segment (% of its GBV) and by scenario (money)."""
    with rc_context(_STYLE):
        fig, (left, right) = _figure(11, 3.8, 2)
        for i, (segment, group) in enumerate(by_segment.group_by("segment", maintain_order=True)):
            part = group.sort("month")
            ax_label = str(segment[0]).replace("_", " ")
            left.plot(
                part["month"], part["cumulative_share"], color=PALETTE[i % len(PALETTE)],
                lw=1.8, label=ax_label,
            )  # fmt: skip
        left.set_title("Expected collections by segment (cumulative, % of GBV)")
        left.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        left.set_xlabel("months after cut-off")
        left.legend(loc="upper left", ncols=2)
        scenarios = by_scenario["scenario"].unique(maintain_order=True).to_list()
        for i, name in enumerate(scenarios):
            part = by_scenario.filter(pl.col("scenario") == name).sort("month")
            weighted = name == "weighted"
            right.plot(
                part["month"], part["gross"].cum_sum(),
                color=INK if weighted else PALETTE[i % len(PALETTE)],
                lw=2.4 if weighted else 1.6, ls="--" if weighted else "-", label=name,
            )  # fmt: skip
        right.set_title("Expected gross collections by scenario (cumulative)")
        right.yaxis.set_major_formatter(FuncFormatter(_millions))
        right.set_xlabel("months after cut-off")
        right.legend(loc="upper left")
        return _svg(fig)


def prices(
    scenarios: Sequence[tuple[str, float, float]],
    weighted: float,
    path_prices: FloatArray | None,
    percentiles: dict[str, float | None] | None,
) -> str:
    """Price by scenario (bars, % of GBV) and the Monte Carlo distribution of the price."""
    with rc_context(_STYLE):
        ncols = 2 if path_prices is not None else 1
        fig, axes = _figure(11 if ncols == 2 else 6, 3.6, ncols)
        ax = axes[0]
        names = [s[0] for s in scenarios] + ["weighted"]
        values = [s[1] for s in scenarios] + [weighted]
        shares = [s[2] for s in scenarios]
        colors = [PALETTE[i % len(PALETTE)] for i in range(len(scenarios))] + [INK]
        bars = ax.bar(names, values, color=colors, width=0.6)
        gbv = scenarios[0][1] / scenarios[0][2] if scenarios and scenarios[0][2] else 0.0
        for bar, value, share in zip(bars, values, [*shares, weighted / gbv if gbv else 0.0],
                                     strict=True):  # fmt: skip
            ax.text(
                bar.get_x() + bar.get_width() / 2, value,
                f"{_millions(value)}\n{share:.1%} of GBV", ha="center", va="bottom", fontsize=9,
            )  # fmt: skip
        ax.set_title("Price at the target IRR, by scenario")
        ax.yaxis.set_major_formatter(FuncFormatter(_millions))
        ax.set_ylim(0, max(values) * 1.3)
        ax.grid(axis="x", visible=False)
        if path_prices is not None:
            mc = axes[1]
            mc.hist(path_prices, bins=40, color="#9ecae1", edgecolor="white")
            for key, style in (("p5", ":"), ("p50", "-"), ("p95", ":")):
                q = None if percentiles is None else percentiles.get(key)
                if q is not None:
                    mc.axvline(q, color=INK, ls=style, lw=1.4)
                    mc.text(
                        q, mc.get_ylim()[1] * 0.97, f" {key.upper()} {_millions(q)}",
                        rotation=90, va="top", ha="right", fontsize=8.5, color=INK,
                    )  # fmt: skip
            mc.axvline(weighted, color=WARN, lw=1.6)
            mc.text(
                weighted, mc.get_ylim()[1] * 0.5, " weighted price", color=WARN, fontsize=8.5,
                rotation=90, va="center", ha="left",
            )  # fmt: skip
            mc.set_title(f"Monte Carlo: price over {path_prices.size:,} paths")
            mc.xaxis.set_major_formatter(FuncFormatter(_millions))
            mc.set_ylabel("paths")
        return _svg(fig)


def bid_grid(grid: pl.DataFrame, *, target_irr: float) -> str:
    """Price as a share of GBV against the target IRR, one line per scenario and weighted."""
    with rc_context(_STYLE):
        fig, (ax,) = _figure(6.5, 3.6)
        names = list(dict.fromkeys(grid["scenario"].to_list()))
        for i, name in enumerate(names):
            rows = grid.filter(pl.col("scenario") == name)
            weighted = i == len(names) - 1
            ax.plot(
                rows["target_irr"].to_numpy() * 100, rows["price_pct_gbv"].to_numpy() * 100,
                color=INK if weighted else PALETTE[i % len(PALETTE)],
                lw=2.2 if weighted else 1.4, marker="o", ms=3, label=name,
            )  # fmt: skip
        ax.axvline(target_irr * 100, color=MUTED, ls=":", lw=1.2)
        ax.set_title("Bid grid: price at each target IRR")
        ax.set_xlabel("target IRR")
        ax.set_ylabel("price, % of GBV")
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
        ax.legend()
        return _svg(fig)


def tornado(shocks: pl.DataFrame, *, base_price: float) -> str:
    """Change of the weighted price under each shock, down and up, widest swing on top."""
    with rc_context(_STYLE):
        swing = shocks.group_by("driver", maintain_order=True).agg(
            pl.col("change").abs().max().alias("swing")
        )
        drivers = swing.sort("swing", maintain_order=True)["driver"].to_list()
        fig, (ax,) = _figure(7.5, 0.9 + 0.45 * len(drivers))
        for y, driver in enumerate(drivers):
            for row in shocks.filter(pl.col("driver") == driver).iter_rows(named=True):
                pct = 100 * row["change"] / base_price if base_price else 0.0
                color = ACCENT if row["change"] >= 0 else WARN
                ax.barh(y, pct, color=color, height=0.6)
                ax.text(
                    pct, y, f" {row['shock']} ",
                    ha="left" if pct >= 0 else "right", va="center", fontsize=8.5, color=INK,
                )  # fmt: skip
        ax.set_yticks(range(len(drivers)), [d.replace("_", " ") for d in drivers])
        ax.axvline(0, color=INK, lw=1)
        widest = float(shocks["change"].abs().to_numpy().max(initial=0.0))
        limit = max(1e-9, widest / (base_price or 1.0) * 100)
        ax.set_xlim(-limit * 1.45, limit * 1.45)
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_title(f"Sensitivities: change of the weighted price ({_millions(base_price)})")
        ax.grid(axis="y", visible=False)
        return _svg(fig)


def importance(frame: pl.DataFrame, *, top: int = 12) -> str:
    """Mean |SHAP| of the top features: p_recover (points) and collections (% of exposure)."""
    with rc_context(_STYLE):
        n = min(top, frame.height)
        fig, (left, right) = _figure(11, 0.9 + 0.3 * n, 2)
        for ax, column, title, scale in (
            (left, "p_recover_points", "p_recover: mean |contribution|, points", 1.0),
            (right, "collections_share", "expected collections: % of exposure", 100.0),
        ):
            best = frame.sort(column, descending=True).head(n).reverse()
            ax.barh(best["label"].to_list(), (best[column] * scale).to_list(), color=ACCENT)
            ax.set_title(title)
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="y", labelsize=9)
        return _svg(fig)


def effects(
    ates: Sequence[dict[str, float | str]],
    cate: dict[str, FloatArray],
    policies: pl.DataFrame,
    *,
    unit: str,
) -> str:
    """Average effects with 95 % intervals, per-loan effects, and the value of each policy."""
    with rc_context(_STYLE):
        fig, (ax_ate, ax_cate, ax_pol) = _figure(12, 3.6, 3)
        names = [str(a["action"]).replace("_", " ") for a in ates]
        y = np.arange(len(ates))
        mid = np.array([float(a["ate"]) for a in ates])
        lo = mid - np.array([float(a["ci_low"]) for a in ates])
        hi = np.array([float(a["ci_high"]) for a in ates]) - mid
        ax_ate.errorbar(mid, y, xerr=[lo, hi], fmt="o", color=ACCENT, capsize=4)
        ax_ate.axvline(0, color=MUTED, lw=1)
        ax_ate.set_yticks(y, names)
        ax_ate.set_title(f"Average effect, 95 % interval\n({unit})")
        actions = list(cate)
        ax_cate.boxplot(
            [cate[a] for a in actions], orientation="horizontal", showfliers=False, widths=0.55,
            tick_labels=[a.replace("_", " ") for a in actions],
            medianprops={"color": WARN}, boxprops={"color": INK}, whiskerprops={"color": INK},
        )  # fmt: skip
        ax_cate.axvline(0, color=MUTED, lw=1)
        ax_cate.set_title(f"Per-loan effects on this tape\n({unit})")
        rows = policies.sort("expected_net")
        colors = [WARN if p == "plan" else "#9ecae1" for p in rows["policy"]]
        ax_pol.barh(rows["policy"].to_list(), rows["expected_net"].to_list(), color=colors)
        ax_pol.axvline(0, color=MUTED, lw=1)
        ax_pol.xaxis.set_major_formatter(FuncFormatter(_millions))
        ax_pol.set_title("Expected net gain\nvs no action")
        for ax in (ax_ate, ax_cate, ax_pol):
            ax.grid(axis="y", visible=False)
        return _svg(fig)


def gain_curve(curve: pl.DataFrame, actions: Sequence[str]) -> str:
    """Expected gain of the best plan against spend, its 95 % band, and each action alone."""
    with rc_context(_STYLE):
        fig, (ax,) = _figure(8, 3.8)
        budget = curve["budget"].to_numpy()
        ax.fill_between(
            budget, curve["gain_low"].to_numpy(), curve["gain_high"].to_numpy(),
            color=ACCENT, alpha=0.18, lw=0, label="95 % band",
        )  # fmt: skip
        ax.plot(budget, curve["expected_gain"].to_numpy(), color=ACCENT, lw=2, label="plan")
        for i, action in enumerate(actions):
            ax.plot(
                budget, curve[f"gain_only_{action}"].to_numpy(), lw=1, ls="--",
                color=PALETTE[(i + 1) % len(PALETTE)], label=f"{action.replace('_', ' ')} only",
            )  # fmt: skip
        ax.plot(budget, budget, color=MUTED, lw=1, ls=":", label="gain = spend")
        ax.xaxis.set_major_formatter(FuncFormatter(_millions))
        ax.yaxis.set_major_formatter(FuncFormatter(_millions))
        ax.set_xlabel("budget")
        ax.set_title("Expected collections gained against the budget")
        ax.legend(fontsize=8, frameon=False, loc="lower right")
        return _svg(fig)


def calibration_by_group(groups: pl.DataFrame, attributes: Sequence[str]) -> str:
    """Predicted vs realised recovery for each group, one panel per attribute."""
    with rc_context(_STYLE):
        present = [a for a in attributes if groups.filter(pl.col("attribute") == a).height]
        fig, axes = _figure(12, 3.6, max(len(present), 1))
        for ax, attribute in zip(axes, present, strict=False):
            part = groups.filter(pl.col("attribute") == attribute).filter(
                pl.col("realised").is_not_null()
            )
            y = np.arange(part.height)
            ax.hlines(y, part["predicted"], part["realised"], color="#c8ced6", lw=2)
            ax.scatter(part["predicted"], y, color=ACCENT, label="predicted", zorder=3)
            flagged = part["calibration_flag"].to_numpy()
            ax.scatter(
                part["realised"], y, color=np.where(flagged, WARN, INK), marker="D", s=22,
                label="realised", zorder=3,
            )  # fmt: skip
            ax.set_yticks(y, part["group"].to_list())
            ax.invert_yaxis()
            rates = np.concatenate([part["predicted"].to_numpy(), part["realised"].to_numpy()])
            narrow = rates.size > 0 and np.ptp(rates) < 0.04  # whole percents would repeat
            ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=1 if narrow else 0))
            ax.set_title(attribute.replace("_", " "))
            ax.grid(axis="y", visible=False)
        fig.suptitle(
            "Recovery rate by group: predicted (dots) vs realised (diamonds; orange = flagged)",
            fontsize=10,
        )
        return _svg(fig)


def stability(frame: pl.DataFrame, *, watch: float, shift: float, top: int = 15) -> str:
    """PSI of the variables that moved most, with the watch and shift thresholds marked."""
    with rc_context(_STYLE):
        best = frame.sort("psi", descending=True).head(top).reverse()
        fig, (ax,) = _figure(8, 0.9 + 0.28 * best.height)
        psi = best["psi"].to_numpy()
        colours = [WARN if p >= shift else PALETTE[1] if p >= watch else ACCENT for p in psi]
        ax.barh(best["variable"].to_list(), psi, color=colours)
        for level, label in ((watch, "watch"), (shift, "shift")):
            ax.axvline(level, color=MUTED, linewidth=1, linestyle="--")
            ax.text(level, best.height - 0.4, f" {label}", color=MUTED, fontsize=8, va="bottom")
        ax.set_title("Population stability index against the training book")
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", labelsize=9)
        return _svg(fig)


def backtest(total: pl.DataFrame, by_segment: pl.DataFrame, *, threshold: float) -> str:
    """Cumulative collection and PV ratios per period against plan, with the Monte Carlo band.

    ``total`` holds the whole tape's rows of a backtest (``period``, ``collection_ratio``,
    ``pv_ratio``, ``breach`` and, with a band, ``ccr_p5`` / ``ccr_p95``); ``by_segment`` the
    segments' rows. Flagged periods are marked; the dashed line is ``1 - threshold``.
    """
    with rc_context(_STYLE):
        fig, (left, right) = _figure(11, 3.8, 2)
        x = total["period"].to_numpy()
        if "ccr_p5" in total.columns:
            left.fill_between(
                x, total["ccr_p5"].to_numpy(), total["ccr_p95"].to_numpy(),
                color="#9ecae1", alpha=0.5, lw=0, label="Monte Carlo P5-P95",
            )  # fmt: skip
        left.plot(x, total["collection_ratio"], color=ACCENT, lw=2.2, marker="o",
                  label="cumulative collection ratio")  # fmt: skip
        left.plot(x, total["pv_ratio"], color=PALETTE[2], lw=1.6, ls="-.", label="PV ratio")
        flagged = total.filter(pl.col("breach"))
        left.scatter(flagged["period"], flagged["collection_ratio"], color=WARN, zorder=5, s=60,
                     label="below threshold")  # fmt: skip
        for ax in (left, right):
            ax.axhline(1.0, color=MUTED, lw=1.0)
            ax.axhline(1.0 - threshold, color=WARN, lw=1.2, ls="--")
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            ax.set_xlabel("period after cut-off")
        left.set_title("Realised against plan, whole tape (cumulative)")
        left.legend(loc="best")
        segments = by_segment["segment"].unique(maintain_order=True).to_list()
        for i, name in enumerate(segments):
            part = by_segment.filter(pl.col("segment") == name).sort("period")
            right.plot(part["period"], part["collection_ratio"], color=PALETTE[i % len(PALETTE)],
                       lw=1.6, label=str(name).replace("_", " "))  # fmt: skip
        right.set_title("Cumulative collection ratio by segment")
        right.legend(loc="best", ncols=2)
        return _svg(fig)
