# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A risk officer's expected loss
#
# A bank's risk officer holds a book of defaulted loans and must provision for them: the
# expected credit loss of each loan under several macroeconomic scenarios, weighted (IFRS 9,
# stage 3), summarised by segment and legal stage, with the Basel workout LGD beside it. And
# once the model is in use, the officer must notice when the loans it is applied to no longer
# look like the ones it learnt from.
#
# The data are simulated with the engine's simulator; sizes are small so the notebook runs in
# about a minute.

# %%
import shutil
import tempfile
from pathlib import Path

import polars as pl

import npl_engine as npl

workdir = Path(tempfile.mkdtemp(prefix="npl_risk_"))  # everything is written here
display_options = pl.Config(
    tbl_rows=12, tbl_cols=10, fmt_str_lengths=60, thousands_separator=",", float_precision=3
)

# %% [markdown]
# ## The model and the loans to provision
#
# The recovery model learns from the bank's workout history (4,000 loans); the loans to
# provision are the 2,000 defaulted loans the bank holds on 30 September 2026.

# %%
book = npl.simulate(npl.SimulationSettings(n_loans=4_000, seed=1)).dataset()
defaulted = npl.simulate(npl.SimulationSettings(n_loans=2_000, seed=2, kind="tape")).dataset()
model = npl.RecoveryModel(
    grid=({"num_leaves": 15, "min_data_in_leaf": 50},), baselines=False, seed=0
).fit(book)

# %% [markdown]
# ## Scenarios
#
# The same file format a buyer prices with. The weights are the probabilities the bank gives
# each scenario; the servicing fee is the cost of collecting, deducted from collections.

# %%
scenario_file = workdir / "scenarios.toml"
scenario_file.write_text(
    """
[pricing]
target_irr = 0.12
servicing_fee = 0.08
horizon_months = 60

[[scenario]]
name = "base"
weight = 0.5
collateral_value_change = 0.0
collections_multiplier = 1.0
delay_months = 0

[[scenario]]
name = "adverse"
weight = 0.3
collateral_value_change = -0.15
collections_multiplier = 0.85
delay_months = 6

[[scenario]]
name = "severe"
weight = 0.2
collateral_value_change = -0.30
collections_multiplier = 0.70
delay_months = 12
"""
)
scenarios = npl.load_scenarios(scenario_file)

# %% [markdown]
# ## Expected loss per scenario and weighted
#
# For each loan and scenario, LGD = 1 − PV(net collections) / EAD, discounted at the loan's
# contractual rate (the IFRS 9 convention), bounded to [0, 1]. The loans are in default
# (PD = 1), so EL = LGD × EAD. The weighted EL is the weight-sum of the scenarios' ELs.

# %%
el = npl.expected_loss(model, defaulted, scenarios)
el.by_scenario

# %%
scenario_rows = el.by_scenario.filter(pl.col("scenario") != "weighted")
weighted = el.by_scenario.filter(scenario="weighted")["el"].item()
assert abs((scenario_rows["weight"] * scenario_rows["el"]).sum() - weighted) < 1e-6 * weighted
print(f"provision (weighted EL): {weighted:,.0f}, {weighted / el.loans['ead'].sum():.1%} of EAD")

# %% [markdown]
# `el_rate` is the loss as a share of the exposure at default. The severe scenario's loss is
# what the provision would be if the bank knew it was coming; the weighted figure is the
# unbiased, probability-weighted amount IFRS 9 asks for.
#
# Where the loss sits: by segment and by legal stage (each with a `total` row).

# %%
el.by_segment.select("segment", "loans", "ead", "el", "el_rate", "el_severe")

# %%
el.by_legal_stage.select("legal_stage", "loans", "ead", "el", "el_rate")

# %% [markdown]
# Unsecured loans lose most of their exposure; secured loans keep the collateral between
# the bank and a large loss, which is also why they move most between scenarios (the
# scenarios cut collateral values). The file also groups by region, year of default and
# months since default (`el.groups`), and holds every loan:

# %%
el.loans.sort("el", descending=True).select(
    "loan_id", "segment", "legal_stage", "ead", "lgd_base", "lgd_severe", "lgd", "el"
).head()

# %% [markdown]
# ## The Basel workout LGD
#
# For capital (EBA GL/2017/16), every loan's recoveries are discounted at one rate, a
# primary interbank rate plus 5 points. With, say, 8 %:

# %%
workout = npl.expected_loss(model, defaulted, scenarios, discount_rate=0.08)
pl.concat(
    [
        el.by_scenario.select("scenario", "el_rate").with_columns(basis=pl.lit("contractual")),
        workout.by_scenario.select("scenario", "el_rate").with_columns(basis=pl.lit("workout 8 %")),
    ]
).pivot(on="basis", index="scenario", values="el_rate")

# %% [markdown]
# ## Keep it
#
# `save` writes what `npl expected-loss --out` writes: every loan as Parquet and CSV, the
# summaries as JSON and a workbook for the provisioning committee. `npl.ExpectedLoss.load`
# reads the folder back.

# %%
folder = el.save(workdir / "expected_loss")
print(sorted(p.name for p in folder.iterdir()))
assert npl.ExpectedLoss.load(folder).summary() == el.summary()
print(list(pl.read_excel(folder / "expected_loss.xlsx", sheet_id=0)))

# %% [markdown]
# ## Is the model still fit for these loans?
#
# `npl.monitor` compares a tape with the profile of the book the model learnt from: the
# population stability index (PSI) of every input and of `p_recover`, and the segment mix.
# The defaulted loans above come from the same world as the book, so little should move:

# %%
same = npl.monitor(model, defaulted)
print(f"{same.n_loans:,} loans against {same.reference_loans:,} in training")
print(same.flags or "no flags")

# %% [markdown]
# Next year the bank buys a portfolio of unsecured consumer and card loans and adds them to
# the book. The model never saw a book like that:

# %%
shifted = npl.simulate(
    npl.SimulationSettings(
        n_loans=2_000,
        seed=3,
        kind="tape",
        segment_mix={"consumer_unsecured": 0.5, "credit_card": 0.3, "sme_unsecured": 0.2},
    )
).dataset()
report = npl.monitor(model, shifted)
print(f"{len(report.flags)} flags, the first five:")
for flag in report.flags[:5]:
    print("  ", flag)

# %%
report.segment_mix

# %%
report.stability.sort("psi", descending=True).head(6)

# %% [markdown]
# A PSI above 0.25 is the usual sign of a population shift: the model's scores for these
# loans rest on few comparable loans in its training book, and the expected loss built on
# them deserves a challenge (retrain on a book that holds such loans, or an overlay). The
# report is saved like the rest, with a workbook:

# %%
saved = report.save(workdir / "monitoring")
print(sorted(p.name for p in saved.iterdir()))

# %%
shutil.rmtree(workdir)  # remove this cell to keep the files
