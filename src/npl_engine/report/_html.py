"""The report page: one HTML file with its styles and charts inside, and no script.

A Content-Security-Policy forbids every request the page could make except its own inline
styles and ``data:`` images, so it opens offline and, if a later change slipped in an outside
link, the browser would refuse it and say so on the console (which the browser test reads).
"""

from __future__ import annotations

from html import escape
from typing import Any

import polars as pl

from npl_engine.report._build import ReportData

__all__ = ["render"]

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --bg:#f5f7fa; --accent:#0072B2;
        --warn:#D55E00; --ok:#009E73; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       "Noto Sans", "Liberation Sans", sans-serif; }
header { background:#102a43; color:#fff; padding:28px 0 22px; }
.wrap { max-width:1180px; margin:0 auto; padding:0 28px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header p { margin:0; color:#bcccdc; font-size:14px; }
nav { margin-top:14px; font-size:13px; }
nav a { color:#d9e2ec; margin-right:16px; text-decoration:none; }
.kpis { display:grid; grid-template-columns:repeat(auto-fit, minmax(128px, 1fr)); gap:12px;
        margin:22px 0 6px; }
.kpi { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
.kpi .v { font-size:20px; white-space:nowrap; font-weight:650; font-variant-numeric:tabular-nums; }
.kpi .l { color:var(--muted); font-size:12.5px; text-transform:uppercase; letter-spacing:.04em; }
section { background:#fff; border:1px solid var(--line); border-radius:12px; padding:20px 24px;
          margin:18px 0; }
section h2 { margin:0 0 4px; font-size:19px; }
section .lead { margin:0 0 12px; color:var(--muted); font-size:14px; }
img.chart { width:100%; height:auto; display:block; margin:8px 0; }
table { border-collapse:collapse; width:100%; font-size:13.5px; margin:10px 0;
        font-variant-numeric:tabular-nums; }
th { text-align:left; font-weight:600; color:var(--muted); border-bottom:2px solid var(--line);
     padding:6px 8px; }
td { border-bottom:1px solid var(--line); padding:5px 8px; }
td.n, th.n { text-align:right; }
tr.attr td { background:#f0f4f8; font-weight:600; }
.flag { color:var(--warn); font-weight:650; }
.ok { color:var(--ok); font-weight:650; }
.note { background:#fffbea; border:1px solid #f0e4b0; border-radius:8px; padding:10px 14px;
        font-size:14px; }
.flags li { color:var(--warn); }
.card-grid { display:grid; grid-template-columns:1fr 1fr; gap:18px; }
.card-grid h3 { font-size:15px; margin:8px 0 4px; }
.card-grid ul { margin:4px 0; padding-left:20px; font-size:14px; }
footer { color:var(--muted); font-size:12.5px; padding:8px 0 28px; }
@media (max-width: 800px) { .card-grid { grid-template-columns:1fr; } }
"""


def _money(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:,.1f}M" if abs(x) >= 1e6 else f"{x:,.0f}"


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}%}"


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _img(uri: str, alt: str) -> str:
    return f'<img class="chart" src="{uri}" alt="{escape(alt)}">'


def _table(headers: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    """An HTML table; a header ending in '>' is a right-aligned figure column."""
    head = "".join(
        f'<th class="n">{escape(h[:-1])}</th>' if h.endswith(">") else f"<th>{escape(h)}</th>"
        for h in headers
    )
    body = []
    for row in rows:
        cells = []
        for h, cell in zip(headers, row, strict=True):
            text = cell if raw else escape(cell)
            cells.append(f'<td class="n">{text}</td>' if h.endswith(">") else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _section(anchor: str, title: str, lead: str, body: str) -> str:
    return (
        f'<section id="{anchor}"><h2>{escape(title)}</h2>'
        f'<p class="lead">{escape(lead)}</p>{body}</section>'
    )


def _kpis(d: ReportData) -> str:
    f, w = d.facts, d.valuation["weighted"]
    tiles = [
        ("loans", f"{f['n_loans']:,}"),
        ("gross book value", _money(f["gbv"])),
        ("mean p_recover", _pct(f["mean_p_recover"])),
        ("expected collections", f"{_money(f['expected_collections'])}"),
        ("collections / GBV", _pct(f["expected_rate"])),
        ("price (weighted)", _money(w["price"])),
        ("price / GBV", _pct(w["price_pct_gbv"])),
    ]
    if d.simulation:
        q = d.simulation["percentiles"]["price"]
        tiles.append(("price P5 – P95", f"{_money(q['p5'])}–{_money(q['p95'])}"))
    cells = "".join(
        f'<div class="kpi"><div class="v">{escape(v)}</div><div class="l">{escape(k)}</div></div>'
        for k, v in tiles
    )
    return f'<div class="kpis">{cells}</div>'


def _price_table(v: dict[str, Any]) -> str:
    rows = [
        [
            s["name"],
            f"{s['weight']:.2f}",
            _money(s["gross_collections"]),
            _money(s["costs"]),
            _money(s["net_collections"]),
            _money(s["price"]),
            _pct(s["price_pct_gbv"]),
        ]
        for s in [*v["scenarios"], v["weighted"]]
    ]
    headers = ["scenario", "weight>", "gross>", "costs>", "net>", "price>", "% GBV>"]
    return _table(headers, rows)


def _tornado_table(v: dict[str, Any]) -> str:
    rows = [
        [
            str(r["driver"]).replace("_", " "),
            str(r["shock"]),
            _money(r["price"]),
            _pct(r["price_pct_gbv"]),
            ("+" if r["change"] >= 0 else "") + _money(r["change"]),
            _pct(r["change_pct"]),
        ]
        for r in v["sensitivities"]
    ]
    return _table(["driver", "shock", "price>", "% GBV>", "change>", "change %>"], rows)


def _effects(d: ReportData) -> str:
    lead = "What each collection action adds against no action, and what a budgeted plan is worth."
    if d.effects is None:
        note = (
            '<p class="note">Not included: this report was built without <code>--effects'
            "</code>. Run <code>npl effects --data BOOK --out EFFECTS</code>, then "
            "<code>npl report ... --effects EFFECTS</code>.</p>"
        )
        return _section("effects", "Collection actions and the plan", lead, note)
    e = d.effects
    budget = "no budget limit" if e["budget"] is None else f"budget {_money(e['budget'])}"
    rows = [
        [
            r["policy"],
            f"{r['loans_acted']:,}",
            _money(r["cost"]),
            _money(r["expected_uplift"]),
            _money(r["expected_net"]),
        ]
        for r in e["comparison"]
    ]
    table = _table(["policy", "loans acted>", "cost>", "expected uplift>", "expected net>"], rows)
    low, high = e["plan_band"]
    body = (
        _img(d.charts["effects"], "action effects and policy value")
        + f"<p>Outcome: {escape(str(e['outcome']))}; {escape(str(e['method']))}.</p>"
        + "<h3>Is each effect real, and do the checks hold?</h3>"
        + _checks_table(e)
        + _validation_table(e)
        + f"<h3>The plan</h3><p>At most one action per loan, {budget}. Values against no "
        f"action:</p>"
        + table
        + f"<p>The plan's expected uplift, 95 % band from the per-loan effect intervals: "
        f"{_money(low)} to {_money(high)}.</p>"
        + _settlement(e)
        + "<h3>What a bigger budget buys</h3>"
        + _img(d.charts["gain_curve"], "expected gain against the budget")
        + f"<p>Spending stops paying past {_money(e['saturation_spend'])}: a larger budget "
        "stays unspent, since every further action is expected to cost more than it brings. "
        "The band sums the per-loan 95 % bounds (errors treated as perfectly correlated); "
        "dashed lines: the best plan with one action alone (Qini-style).</p>"
    )
    return _section("effects", "Collection actions and the plan", lead, body)


def _backtest(d: ReportData) -> str:
    lead = (
        "Realised collections since the cut-off against the business plan: cumulative net "
        "collections and their present value as a share of plan, period by period."
    )
    if d.backtest is None:
        note = (
            '<p class="note">Not included: this report was built without <code>--backtest'
            "</code>. Run <code>npl plan</code> on the tape, <code>npl backtest --plan PLAN "
            "--data LATER --out BACKTEST</code>, then <code>npl report ... --backtest "
            "BACKTEST</code>.</p>"
        )
        return _section("backtest", "Backtest against the business plan", lead, note)
    b = d.backtest
    band = any("ccr_p5" in r for r in b["periods"])
    rows = []
    for r in b["periods"]:
        row = [
            str(r["period"]),
            f"{r['start_month']}-{r['end_month']}",
            _money(r["plan_net"]),
            _money(r["realised_net"]),
            _pct(r["collection_ratio"]),
            _pct(r["pv_ratio"]),
        ]
        if band:
            row.append(f"{_pct(r.get('ccr_p5'))} - {_pct(r.get('ccr_p95'))}")
        row.append("below threshold" if r["breach"] else "")
        rows.append(row)
    headers = ["period", "months", "plan net>", "realised net>", "collection ratio>", "PV ratio>"]
    headers += ["MC P5 - P95>"] if band else []
    first = b["first_breach_period"]
    verdict = (
        f"First period below {1 - b['threshold']:.0%} of plan: {first}."
        if first is not None
        else f"No period below {1 - b['threshold']:.0%} of plan."
    )
    body = (
        _img(d.charts["backtest"], "cumulative collection and PV ratios against plan")
        + f"<p>Plan scenario: {escape(str(b['scenario']))}; {b['months_observed']} months "
        f"observed to {escape(str(b['as_of_date']))}. {escape(verdict)}</p>"
        + _table([*headers, "flag"], rows)
    )
    return _section("backtest", "Backtest against the business plan", lead, body)


_CHECK_NAMES = (("placebo", "placebo"), ("random_common_cause", "random common cause"),
                ("data_subset", "subset"), ("sensitivity", "sensitivity"))  # fmt: skip


def _checks_table(e: dict[str, Any]) -> str:
    """Per action: effect against zero, each check's status, and the reasons of failures."""
    rows = []
    for a in e["actions"]:
        check = e["checks"][a["action"]]
        statuses = check["statuses"]
        rows.append(
            [
                escape(a["action"]),
                f"{a['ate']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]",
                escape(check["effect"]),
                *[escape(statuses.get(key, "-")) for key, _ in _CHECK_NAMES],
                escape(check["assumptions"]),
            ]
        )
    headers = ["action", "effect, 95% CI>", "against zero", *(n for _, n in _CHECK_NAMES),
               "assumptions"]  # fmt: skip
    reasons = "".join(
        f"<li>{escape(action)}: {escape(line)}</li>"
        for action, check in e["checks"].items()
        for line in check["failures"]
    )
    return _table(headers, rows, raw=True) + (f"<ul>{reasons}</ul>" if reasons else "")


def _validation_table(e: dict[str, Any]) -> str:
    """Calibration by quartile of predicted effect and AUTOC with its interval, per action."""
    validation = e.get("validation") or {}
    rows = []
    for action, checks in validation.items():
        if not isinstance(checks, dict) or "calibration" not in checks:
            continue
        groups = "; ".join(
            f"Q{g['group']} {g['predicted']:+.3f} vs {g['doubly_robust']:+.3f}"
            for g in checks["calibration"]["groups"]
        )
        low, high = checks["toc"]["autoc_ci"]
        rows.append(
            [
                escape(action),
                escape(groups),
                f"{checks['calibration']['slope']:.2f}",
                f"{checks['toc']['autoc']:+.4f} [{low:+.4f}, {high:+.4f}]",
            ]
        )
    if not rows:
        return ""
    return (
        "<p>Validation of the per-loan effects (out of sample): by quartile of predicted "
        "effect, predicted against doubly robust mean; slope 1 = calibrated; AUTOC above 0 "
        "with its interval = the ranking finds loans where the action does more.</p>"
        + _table(["action", "calibration by quartile", "slope>", "AUTOC, 95% CI>"], rows, raw=True)
    )


def _settlement(e: dict[str, Any]) -> str:
    """What the plan's settlement offers give up."""
    s = e.get("settlement")
    if not s or not s["loans"]:
        return ""
    return (
        f"<p>Settlement offers to {s['loans']:,} loans: expected collections "
        f"{_money(s['collections_without_offer'])} without the offer, "
        f"{_money(s['collections_with_offer'])} with it; amount waived at a "
        f"{s['discount']:.0%} discount: at most {_money(s['amount_waived'])}.</p>"
    )


def _fairness(d: ReportData) -> str:
    lead = (
        "Does p_recover mean the same for every group, and do favourable decisions reach each "
        "group alike? Gender is used here only, never by the model."
    )
    if d.fairness is None or d.fairness_groups is None:
        note = (
            '<p class="note">Not included: this report was built without a book to check '
            "against (<code>--fairness-book BOOK</code>); <code>npl fairness</code> runs the "
            "same checks on its own.</p>"
        )
        return _section("fairness", "Fairness", lead, note)
    f = d.fairness
    s = f["settings"]
    decisions = list(f["decisions"])
    rows = []
    for attribute in ("gender", "age_band", "region"):
        part = d.fairness_groups.filter(pl.col("attribute") == attribute)
        if part.height == 0:
            continue
        rows.append(f'<tr class="attr"><td colspan="{7 + len(decisions)}">{attribute}</td></tr>')
        for r in part.iter_rows(named=True):
            gap = _num(r["gap_vs_rest"], "+.3f")
            gap = f'<span class="flag">{gap} ⚑</span>' if r["calibration_flag"] else gap
            cells = [
                escape(str(r["group"])),
                f"{r['n']:,}",
                _pct(r["mean_p_recover"]),
                _pct(r["realised"]),
                gap,
                _num(r["auc"], ".3f"),
            ]
            for dname in decisions:
                text = f"{_pct(r[f'{dname}_rate'])} ({_num(r[f'{dname}_ratio'], '.2f')})"
                cells.append(f'<span class="flag">{text} ⚑</span>' if r[f"{dname}_flag"] else text)
            cells.append("")
            rows.append(
                "<tr>"
                + "".join(
                    f'<td class="n">{c}</td>' if i else f"<td>{c}</td>" for i, c in enumerate(cells)
                )
                + "</tr>"
            )
    headers = ["group", "loans", "mean p_recover", "realised", "gap vs rest", "AUC",
               *[f"{dname} (ratio)" for dname in decisions], ""]  # fmt: skip
    head = "".join(
        f'<th class="n">{escape(h)}</th>' if i else f"<th>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if f["flags"]:
        verdict = (
            '<ul class="flags">'
            + "".join(f"<li>{escape(x['message'])}</li>" for x in f["flags"])
            + "</ul>"
        )
    else:
        verdict = '<p class="ok">No flag raised.</p>'
    explain = (
        f"<p>{f['n_loans']:,} loans, {f['n_labelled']:,} with their recovery window observed. "
        f"A group is flagged when its calibration gap differs from the other groups' by "
        f"{s['max_calibration_gap']:.0%} or more, or a favourable decision reaches it at less "
        f"than {s['min_ratio']:g} × the rate of the most favoured group (four-fifths rule); "
        f"either only when |z| ≥ {s['z_threshold']:g} and the group has at least "
        f"{s['min_group_size']} loans. Decisions: "
        + "; ".join(f"<b>{escape(k)}</b>: {escape(v)}" for k, v in f["decisions"].items())
        + ".</p>"
    )
    body = (
        verdict
        + _img(d.charts["calibration"], "predicted vs realised recovery by group")
        + table
        + explain
    )
    return _section("fairness", "Fairness", lead, body)


def _monitoring(d: ReportData) -> str:
    lead = (
        "Is the tape still the kind of book the model learned from? Population stability of "
        "each feature and of p_recover against the training book and, where outcomes have "
        "since been realised, realised against expected collections."
    )
    m = d.monitoring
    if m is None:
        note = (
            '<p class="note">Not included: this report was built without a monitoring folder '
            "(<code>--monitor DIR</code>, written by <code>npl monitor</code>).</p>"
        )
        return _section("monitoring", "Monitoring", lead, note)
    if m["flags"]:
        items = "".join(f"<li>{escape(flag)}</li>" for flag in m["flags"])
        flags = f'<ul class="flags">{items}</ul>'
    else:
        flags = '<p class="ok">No flags: the book looks like the one the model learned from.</p>'
    mix = _table(
        ["segment", "training>", "now>", "change (pp)>"],
        [
            [r["segment"], _pct(r["reference_share"]), _pct(r["current_share"]),
             f"{r['change_pp']:+.1f}"]
            for r in m["segment_mix"]
        ],
    )  # fmt: skip
    body = flags + _img(d.charts["stability"], "population stability index") + mix
    if m["collections_calibration"]:
        body += _table(
            ["by month", "loans>", "expected>", "realised>", "ratio>"],
            [
                [str(r["month"]), f"{r['loans']:,}", _money(r["expected"]),
                 _money(r["realised"]), _pct(r["ratio"])]
                for r in m["collections_calibration"]
            ],
        )  # fmt: skip
    return _section("monitoring", "Monitoring", lead, body)


def _model_card(d: ReportData) -> str:
    m, info, definition = d.model["metrics"], d.model["info"], d.model["definition"]
    rows = [
        [
            name,
            f"{x['auc']:.3f}",
            f"{x['brier']:.4f}",
            f"{x['log_loss']:.4f}",
            f"{x['calibration_error']:.4f}",
        ]
        for name, x in m["classification"].items()
    ]
    perf = _table(
        ["model (out of fold)", "AUC>", "Brier>", "log loss>", "calibration error>"], rows
    )
    packages = ", ".join(f"{k} {v}" for k, v in info.get("packages", {}).items())
    body = f"""
<div class="card-grid">
<div>
<h3>What it predicts</h3>
<ul>
<li><b>p_recover</b>: calibrated probability that collections within
{definition["horizon_months"]} months after cut-off reach {definition["threshold"]:g} ×
exposure.</li>
<li>Expected gross collections in months 1–{definition["valuation_horizon_months"]}, borrower
payments and collateral sales, under business-as-usual collection.</li>
<li>Inputs: the contract's <code>loans</code> table only; never <code>gender</code>.</li>
</ul>
<h3>Training data</h3>
<ul>
<li>{m["n_loans"]:,} loans; {m["n_labelled"]:,} with the recovery window observed
(recovery rate {m["recovery_rate"]:.1%}).</li>
<li>Cut-offs {escape(str(info["cutoff_range"][0]))} to {escape(str(info["cutoff_range"][1]))};
as of {escape(str(info["as_of_date"]))}.</li>
<li>Data fingerprint <code>{escape(str(info["data_fingerprint"])[:16])}…</code></li>
</ul>
</div>
<div>
<h3>Performance ({m["n_folds"]} folds split by cut-off date)</h3>
{perf}
<h3>Limits</h3>
<ul>
<li>Scores assume loans are worked as the training book was (business as usual).</li>
<li>Loans unlike the training book get extrapolated scores; unseen categories count as
missing.</li>
<li>Metrics come from the training book's own history.</li>
</ul>
</div>
</div>
<p class="lead">npl_engine {escape(str(info["engine_version"]))}, model format
{escape(str(info["model_format"]))}, trained {escape(str(info["trained_at"]))};
{escape(packages)}.</p>"""
    return _section("model", "Model card", "The recovery model behind every number above.", body)


def render(d: ReportData) -> str:
    """The whole page as one string."""
    f, v = d.facts, d.valuation
    sim_note = ""
    if d.simulation:
        q = d.simulation["percentiles"]["price"]
        sim_note = (
            f" Monte Carlo over {d.simulation['n_paths']:,} paths (seed {d.simulation['seed']}): "
            f"P5 {_money(q['p5'])}, median {_money(q['p50'])}, P95 {_money(q['p95'])}."
        )
    sections = [
        _section(
            "portfolio",
            "Portfolio",
            "Where the gross book value sits: by segment and by legal stage.",
            _img(d.charts["composition"], "GBV by segment and legal stage"),
        ),
        _section(
            "collections",
            "Expected collections",
            "How fast cash is expected to come in: each segment's cumulative collections as a "
            "share of its GBV, and the whole tape under each scenario.",
            _img(d.charts["curves"], "expected collections curves"),
        ),
        _section(
            "price",
            "Price",
            f"Present value of net collections at a {v['target_irr']:.1%} target IRR over "
            f"{v['horizon_months']} months."
            + sim_note
            + (f" Note: {v['horizon_note']}." if v.get("horizon_note") else ""),
            _img(d.charts["prices"], "price by scenario and Monte Carlo distribution")
            + _price_table(v),
        ),
        _section(
            "bid",
            "Bid grid and sensitivities",
            "What the tape is worth at other target returns, and how far the weighted price "
            "moves when collections, timing, collateral values, the servicing fee or the "
            "discount rate move (each shock applied to every scenario).",
            _img(d.charts["bid_grid"], "price at each target IRR")
            + _img(d.charts["tornado"], "sensitivities of the weighted price")
            + _tornado_table(v),
        ),
        _section(
            "drivers",
            "What drives the model",
            "Mean absolute SHAP contribution of each feature on a sample of the tape's loans: "
            "how far it moves p_recover and expected collections, either way.",
            _img(d.charts["importance"], "SHAP global importance"),
        ),
        _effects(d),
        _backtest(d),
        _fairness(d),
        _monitoring(d),
        _model_card(d),
    ]
    nav = "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (("portfolio", "Portfolio"), ("collections", "Collections"),
                     ("price", "Price"), ("bid", "Bid grid"), ("drivers", "Drivers"),
                     ("effects", "Actions"), ("backtest", "Backtest"), ("fairness", "Fairness"),
                     ("monitoring", "Monitoring"), ("model", "Model card"))
    )  # fmt: skip
    subtitle = (
        f"{f['n_loans']:,} loans · cut-off {f['cutoff']} · source {f['source']} · "
        f"created {d.created} · npl_engine {f['engine_version']}"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{escape(d.title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header><div class="wrap">
<h1>{escape(d.title)}</h1>
<p>{escape(subtitle)}</p>
<nav>{nav}</nav>
</div></header>
<main class="wrap">
{_kpis(d)}
{"".join(sections)}
</main>
<footer class="wrap">Generated by npl_engine. Every figure is computed from the model and the
data named above; see docs/report.md for what each section shows.</footer>
</body>
</html>
"""
