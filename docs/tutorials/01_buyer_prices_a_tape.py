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
# # A buyer prices a tape
#
# A bank is selling a portfolio of non-performing loans. You, the buyer, receive its **tape**
# (the loans as they stood on the cut-off date, no future) and you have a servicer's **book**
# (older defaulted loans with their collections history) to learn from. You want a price: what
# the expected collections are worth at the return your investors ask for, under a base, an
# adverse and a severe scenario, and how the bid moves when the assumptions move.
#
# Everything here is simulated with the engine's own simulator, so the tutorial needs no data
# and we can check the model against the truth the simulator knows. The sizes are small so the
# notebook runs in about a minute; a real tape goes through the same calls.

# %%
import shutil
import tempfile
from pathlib import Path

import polars as pl

import npl_engine as npl

workdir = Path(tempfile.mkdtemp(prefix="npl_buyer_"))  # everything is written here
display_options = pl.Config(
    tbl_rows=12, tbl_cols=10, fmt_str_lengths=60, thousands_separator=",", float_precision=3
)

# %% [markdown]
# ## The data: a book to learn from, a tape to price
#
# The book holds 4,000 loans whose workouts started between 2016 and 2022, with their
# actions and payments up to the end of 2025. The tape holds 2,000 loans cut off on
# 30 September 2026. We write the tape to a folder as a seller would send it and read it back
# with `npl.read_dataset`, which checks it against the data contract (column names, types,
# ranges, one cut-off date) and says what is wrong, naming the table, column and loan.

# %%
book = npl.simulate(npl.SimulationSettings(n_loans=4_000, seed=1)).dataset()
tape_sim = npl.simulate(npl.SimulationSettings(n_loans=2_000, seed=2, kind="tape"))
npl.write_simulation(tape_sim, workdir / "seller_tape")
tape = npl.read_dataset(workdir / "seller_tape", kind="tape")

loans = tape.loans.collect()
gbv = loans.select(pl.col("outstanding_principal") + pl.col("accrued_interest")).sum().item()
print(f"book: {book.loans.collect().height:,} loans, history up to {book.as_of_date}")
print(f"tape: {loans.height:,} loans, gross book value {gbv:,.0f}")
loans.select("loan_id", "segment", "outstanding_principal", "collateral_type", "legal_stage").head()

# %% [markdown]
# The first thing a buyer looks at is the stratification: where the money sits.

# %%
strats = npl.stratify(loans, by=["segment", "legal_stage"])
strats.tables["segment"].select("segment", "loans", "gbv", "gbv_share", "coverage")

# %% [markdown]
# ## A recovery model learnt from the book
#
# `RecoveryModel` learns, per loan, the calibrated probability of recovery (`p_recover`: at
# least half the exposure collected within 24 months) and a monthly curve of expected
# collections over 60 months, split between borrower payments and collateral sales. The
# settings below keep it small (one LightGBM setting instead of a grid, no baseline models);
# the defaults are what `npl train` uses.

# %%
model = npl.RecoveryModel(
    grid=({"num_leaves": 15, "min_data_in_leaf": 50},), baselines=False, seed=0
).fit(book)
oof = model.metrics_["classification"]["lightgbm (calibrated)"]
print(f"out-of-fold AUC of p_recover on the book: {oof['auc']:.3f}")
print(f"calibration error (predicted vs realised recovery): {oof['calibration_error']:.3f}")

# %%
scored = model.score(tape)
scores = scored.scores
scores.head()

# %% [markdown]
# Because the tape is simulated, we know its true expected collections. A model that is right
# on average should land close to them in total; this is the check a buyer cannot make on a
# real tape (there, `npl backtest` compares a plan with what was later collected).

# %%
predicted = scores["expected_collections"].sum()
true = tape_sim.truth["expected_collections"].sum()
print(f"expected 60-month collections: model {predicted:,.0f}, truth {true:,.0f}")
print(f"model / truth = {predicted / true:.3f}; expected recovery {predicted / gbv:.1%} of GBV")

# %% [markdown]
# ## Scenarios
#
# A scenario file holds the pricing assumptions (target IRR, servicing fee, horizon) and
# weighted scenarios that shock collateral values, scale borrower collections and delay every
# collection. This one follows the shape of an EU adverse stress scenario (the repository's
# `scenarios/eu_2026.toml` explains each number).

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
print(scenarios.pricing)
for s in scenarios.scenarios:
    print(s)

# %% [markdown]
# ## The valuation
#
# One call does what `npl value` does: score the tape, apply each scenario to every loan's
# curve, deduct the servicing fee, and discount the net collections at the target IRR
# (month *t* discounted by (1 + IRR)^(t/12)). We also ask for a bid grid over target IRRs,
# the price tornado and 500 Monte Carlo paths (correlated collateral shocks and loan-level
# outcomes around the scenarios).

# %%
valuation = npl.value(
    model,
    tape,
    scenarios,
    irr_grid=npl.irr_grid(0.08, 0.20, 0.02),
    sensitivities=True,
    simulations=500,
    seed=0,
)
by_scenario = valuation.by_scenario
by_scenario.select(
    "name", "weight", "gross_collections", "net_collections", "price", "price_pct_gbv"
)

# %% [markdown]
# `price` is the most you can pay and still earn the target IRR if that scenario happens;
# the weighted row is the scenario-weighted price, the natural anchor of a bid. As a share of
# GBV (`price_pct_gbv`) it is the figure NPL prices are quoted in.
#
# The bid grid answers "what can I pay if my investors want 10 % instead of 12 %?":

# %%
valuation.price_grid.pivot(on="scenario", index="target_irr", values="price_pct_gbv")

# %% [markdown]
# The tornado shows which assumption moves the weighted price most (collections ±10 %, six
# months of delay, collateral ±20 %, the servicing fee ±1 point, the discount rate ±2 points):

# %%
valuation.sensitivities.select("driver", "shock", "price_pct_gbv", "change_pct")

# %% [markdown]
# The Monte Carlo gives a spread of outcomes around the scenarios: the 5th and 95th
# percentiles of the price are a range, not a forecast.

# %%
sim = valuation.simulation
for p in ("p5", "p50", "p95"):
    print(f"price {p}: {sim['percentiles']['price'][p]:,.0f}")

# %% [markdown]
# ## A bid, and the return it earns
#
# Say the investment committee wants 14 % in the weighted case. The grid gives the price;
# valuing again at that price gives the IRR and multiple of money each scenario would earn,
# so you see what the adverse and severe cases do to your return.

# %%
bid = valuation.price_grid.filter((pl.col("target_irr") - 0.14).abs() < 1e-9, scenario="weighted")[
    "price"
].item()
at_bid = npl.value(model, tape, scenarios, price=round(bid, -3))
print(f"bid {at_bid.price:,.0f} ({at_bid.price / at_bid.gbv:.1%} of GBV)")
pl.DataFrame([s.to_dict() for s in (*at_bid.scenarios, at_bid.weighted)]).select(
    "name", "net_collections", "irr_at_price", "moic"
)

# %% [markdown]
# The weighted IRR at the bid is 14 %, as asked: it is the IRR of the weighted expected cash
# flows. The scenarios spread around it: in this run the same bid earns about 23 % a year if the
# base case happens, about 11 % in the adverse case and close to nothing in the severe one.
# Those are the numbers to put beside the bid; `moic` is the multiple of the price collected
# (net) over five years.
#
# ## Keep it: a folder and a workbook
#
# `save` writes exactly what `npl value --out` writes; `npl.Valuation.load` is its one
# reader. `to_excel` writes the workbook of `npl value --xlsx`, with the tape's strats.

# %%
folder = valuation.save(workdir / "valuation")
print(sorted(p.name for p in folder.iterdir()))
again = npl.Valuation.load(folder)
assert again.to_dict() == valuation.to_dict()

workbook = valuation.to_excel(workdir / "valuation.xlsx")
print(list(pl.read_excel(workbook, sheet_id=0)))

# %%
shutil.rmtree(workdir)  # remove this cell to keep the files and open the workbook
