"""The model card: what a trained model predicts, from what data, how well, and its limits."""

from __future__ import annotations

from typing import Any

__all__ = ["model_card"]

_METRIC_NOTES = (
    "AUC: ranking (higher is better). Brier: mean squared error of the probability (lower is "
    "better). Log loss: lower is better. Calibration error: mean gap between predicted and "
    "realised recovery over ten equal-size bins (lower is better)."
)


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _calibration_rows(rows: list[dict[str, Any]]) -> str:
    """One table row per segment and channel: the out-of-fold ratio and the factor applied."""

    def se(x: float | None) -> str:
        return "n/a (too few loans)" if x is None else f"{x:.3f}"

    return "\n".join(
        f"| {r['segment']} | {r['channel']} | {r['n_loans']:,} | {r['ratio']:.3f} | "
        f"{se(r['standard_error'])} | {r['factor']:.3f} |"
        for r in rows
    )


def model_card(meta: dict[str, Any]) -> str:
    """Markdown model card from the metadata a model writes to ``model.json``."""
    info, definition, metrics = meta["info"], meta["definition"], meta["metrics"]
    rows = "\n".join(
        f"| {name} | {_fmt(m['auc'])} | {_fmt(m['brier'])} | {_fmt(m['log_loss'])} | "
        f"{_fmt(m['calibration_error'])} |"
        for name, m in metrics["classification"].items()
    )
    cv = "\n".join(
        f"| {c['params']} | {_fmt(c['oof_log_loss'])} | {c['best_iterations']} |"
        for c in metrics["cv"]
    )
    observed = ", ".join(f"{k}: {v:,}" for k, v in metrics["collections_observed"].items())
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    horizon = metrics["collections_horizon_months"]
    calibration = (
        "applied"
        if meta["settings"]["calibrate_segments"]
        else "not applied: the model was trained with calibration off"
    )
    notes = "\n".join(f"- {line}" for line in metrics["notes"]) or (
        "- None: every channel collected in every interval between knots, and the book observes "
        "the whole horizon."
    )
    return f"""# Model card: npl_engine recovery model

## What it predicts
For each loan, from what is known at its cut-off date:
- `p_recover`: the calibrated probability that collections within
  {definition["horizon_months"]} months after the cut-off reach {definition["threshold"]:g} ×
  exposure (exposure = outstanding principal + accrued interest);
- the expected gross collections in each month 1..{horizon},
  split into borrower payments (guarantors included) and collateral-sale proceeds, undiscounted,
  under the business-as-usual collection the training book received.

Inputs: the contract `loans` table only (no actions, no payments, never `gender`).
Design: `docs/models.md`.

## Training data
- loans: {metrics["n_loans"]:,}; with the recovery window fully observed:
  {metrics["n_labelled"]:,} (recovery rate {metrics["recovery_rate"]:.1%})
- cut-off dates {info["cutoff_range"][0]} to {info["cutoff_range"][1]}; as of {info["as_of_date"]}
- loans observed through each knot month: {observed}
- fingerprint (sha256 of the data files): `{info["data_fingerprint"]}`

## What this book could not teach (learnt as zero, dropped or cut short)
{notes}

## Expected collections by segment and channel (out of fold)
Each channel's horizon total was refitted fold by fold; realised / predicted is the ratio of
the collections the loans observed through month {horizon} realised to those predicted for
them out of fold (in money). The factor multiplies the model's predictions for that segment
and channel: the ratio shrunk towards 1 by its standard error. Factors: {calibration}.

| segment | channel | loans | realised / predicted | standard error | factor applied |
|---|---|---|---|---|---|
{_calibration_rows(metrics["collections_calibration"])}

## Performance (out of fold, {metrics["n_folds"]} folds split by cut-off date)
| model | AUC | Brier | log loss | calibration error |
|---|---|---|---|---|
{rows}

{_METRIC_NOTES} LightGBM's calibrated figures use cross-fitted calibration (no loan's label
calibrates its own prediction). All models were fitted on the same folds.

Tuning (LightGBM settings tried; the lowest out-of-fold log loss wins):

| settings | out-of-fold log loss | best iteration per fold |
|---|---|---|
{cv}

Chosen: {meta["classifier"]["params"].get("num_leaves")} leaves,
{meta["classifier"]["n_rounds"]} rounds.

## Limits
- It learns business as usual: scores assume loans will be worked as the training book was.
  What a different action would do is the causal models' question, not this one's.
- Loans unlike the training book (new segments, regions, legal systems, far larger exposures)
  get extrapolated scores; categories never seen in training are treated as missing.
- Collections are predicted only up to {horizon} months;
  months far out are learnt from fewer (older) loans.
- Metrics are measured on the training book's own history; a book from another servicer or
  period can behave differently.

## Provenance
npl_engine {info["engine_version"]} (model format {info["model_format"]}), trained
{info["trained_at"]}; {packages}.
"""
