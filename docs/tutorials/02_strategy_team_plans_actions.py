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
# # A strategy team plans collection actions
#
# A servicer's strategy team has a budget for collection actions (letters, calls, settlement
# offers, legal action) on the loans it works, and wants to spend it where an action changes
# most what is collected. That is a causal question: not "do loans that got a call pay more?"
# (the servicer calls the promising ones, so they would) but "how much more does a call make
# *this* loan pay than no action?".
#
# The engine estimates those effects from the servicer's history with doubly robust learners
# and a causal forest, turns them into an action plan under a budget, and shows how the gain
# grows with the budget. The data are simulated, so we can check the estimates against the
# true effects the simulator knows. Sizes are small so the notebook runs in about a minute.

# %%
import shutil
import tempfile
from pathlib import Path

import polars as pl

import npl_engine as npl

workdir = Path(tempfile.mkdtemp(prefix="npl_strategy_"))  # everything is written here
display_options = pl.Config(
    tbl_rows=12, tbl_cols=10, fmt_str_lengths=60, thousands_separator=",", float_precision=3
)

# %% [markdown]
# ## The history and the loans to plan for
#
# The book: 4,000 loans with the actions the servicer took in the first 90 days of each
# workout and what was collected afterwards. The loans to plan for: 2,000 loans in workout
# now (a tape cut off on 30 September 2026).

# %%
book_sim = npl.simulate(npl.SimulationSettings(n_loans=4_000, seed=1))
book = book_sim.dataset()
tape_sim = npl.simulate(npl.SimulationSettings(n_loans=2_000, seed=2, kind="tape"))
tape = tape_sim.dataset()
actions = book.actions.collect()
actions["action_type"].value_counts(sort=True)

# %% [markdown]
# ## The effects of each action
#
# `npl.estimate_effects(book)` does all of this in one call (what `npl effects` runs), with
# full-size models and the DoWhy refutations. To keep the tutorial short we build the same
# `Effects` bundle from a smaller model: fewer boosting rounds for the nuisance models and a
# smaller causal forest. The outcome is the **recovery rate**: collections within 60 months
# divided by the exposure, so an effect of 0.05 is 5 % of the loan's exposure collected more.

# %%
effect_model = npl.ActionEffectModel(
    settings=npl.CausalSettings(outcome="recovery_rate"), n_estimators=30, n_trees=48, seed=0
).fit(book)
effects = npl.Effects.from_model(effect_model, book, refutations=False)
effects

# %%
effects.table.select("action", "n", "ate", "ci_low", "ci_high", "naive_difference")

# %% [markdown]
# `ate` is the average effect against no action with its 95 % interval; `naive_difference`
# is what comparing treated and untreated loans would say. The gap between the two is the
# selection the servicer made: it sent legal action to loans that were going to pay more
# anyway (secured, larger), so the naive figure flatters legal action several times over.
#
# The simulator knows the true effects. Averaged over the book's loans:

# %%
truth = book_sim.truth
true_effects = pl.DataFrame(
    {
        "action": list(effects.actions),
        "true_ate": [
            (
                (truth[f"expected_collections_{a}"] - truth["expected_collections_none"])
                / truth["exposure"]
            ).mean()
            for a in effects.actions
        ],
    }
)
effects.table.select("action", "ate", "ci_low", "ci_high").join(true_effects, on="action")

# %% [markdown]
# The estimates land close to the truth, inside their intervals. Only the settlement offer
# has an effect clearly above zero on this small book.
#
# The checks that come with the estimate: the overlap of the propensity scores (every loan
# could have received each action) and an out-of-sample calibration of the per-loan effects
# (a slope near 1 means the loans predicted to respond more do respond more; near 0 or below,
# the per-loan differences are noise at this book size and only the average is worth using).
# The DoWhy refutations (placebo treatment, random common cause, data subsets, sensitivity to
# an unobserved confounder) run with `refutations=True`; they take a minute or more per
# action, so they are left out here.

# %%
overlap = effects.summary["overlap"]
print(f"overlap ok: {overlap['ok']}, smallest propensity kept: {overlap['min_propensity']}")
for warning in overlap["warnings"]:
    print("  ", warning)
for action in effects.actions:
    slope = effects.summary["validation"][action]["calibration"]["slope"]
    print(f"{action:>18}: calibration slope of the per-loan effects {slope:.2f}")
print(effects.summary["refutations"])

# %% [markdown]
# What each action costs was learnt from the book's `actions` table (legal action has a
# fixed part and a part proportional to the exposure):

# %%
effects.costs

# %% [markdown]
# ## A plan under a budget
#
# `plan` chooses at most one action per loan to maximise the expected collections net of the
# actions' cost, within the budget. The comparison puts it beside simple policies, all against
# no action: business as usual (the servicer's habits, learnt from the history) and the best
# single action given to every loan; these two ignore the budget, which is why they can spend
# far more than it.

# %%
budget = 20_000
plan = effects.plan(tape, budget)
plan.comparison

# %% [markdown]
# The plan acts on about a third of the loans for 20,000 and expects more than business as
# usual gets for sixty times the money: it puts cheap actions where they work and settlement
# offers where they pay most.

# %%
low, high = plan.band
print(
    f"plan: expected uplift {plan.plan['expected_uplift'].sum():,.0f} "
    f"(95 % band {low:,.0f} to {high:,.0f}) for {plan.plan['cost'].sum():,.0f} of actions"
)
plan.plan.group_by("action").agg(
    pl.len().alias("loans"), pl.col("expected_uplift").sum(), pl.col("cost").sum()
).sort("loans", descending=True)

# %% [markdown]
# The band is wide: it adds up the per-loan 95 % intervals, which is conservative.
#
# Settlement offers collect more but waive part of the debt. For the loans offered one, the
# plan shows the collections expected with and without the offer and the amount waived (an
# upper bound), so the team sees what it gives up for the extra cash:

# %%
offered = plan.plan.filter(action="settlement_offer")
offered.select(
    "loan_id",
    "expected_uplift",
    "collections_without_offer",
    "collections_with_offer",
    "amount_waived",
).sort("expected_uplift", descending=True).head()

# %% [markdown]
# How good is the plan really? In the simulated world we know each loan's true expected
# collections under each action, so we can add up what the chosen actions truly gain against
# no action:

# %%
tape_truth = tape_sim.truth
chosen = plan.plan.join(tape_truth, on="loan_id").filter(pl.col("action") != "none")
true_uplift = sum(
    (part[f"expected_collections_{a}"] - part["expected_collections_none"]).sum()
    for (a,), part in chosen.group_by("action")
)
print(
    f"true uplift of the planned actions: {true_uplift:,.0f}; "
    f"estimated {chosen['expected_uplift'].sum():,.0f}"
)

# %% [markdown]
# The plan truly gains many times its cost, but less than it expected: choosing the loans
# with the largest *estimated* effects also picks the largest estimation errors (the winner's
# curse). The truth still lies well inside the plan's band, and a larger book with the
# full-size models of `npl.estimate_effects` narrows both the band and the gap.

# %% [markdown]
# ## How much budget?
#
# The gain curve solves the plan at each budget. `expected_net` is the gain less the spend;
# `shadow_price` is the net collections one more unit of budget would bring: when it falls
# near 0, an extra euro of actions barely pays for itself. Beyond `saturation_spend` the
# budget stays unspent.

# %%
curve = effects.gain_curve(tape, [0, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000])
print(f"the unconstrained plan spends {curve.saturation_spend:,.0f}")
curve.curve.select(
    "budget", "spend", "expected_gain", "gain_low", "gain_high", "expected_net", "shadow_price"
)

# %% [markdown]
# ## Keep it
#
# The effects folder is what `npl effects --out` writes (`npl.Effects.load` reads it back;
# the commands, the report and the scoring service all use that reader). The plan is one
# table in the format its suffix names; the curve a folder with a plan per budget.

# %%
saved = effects.save(workdir / "effects")
print(sorted(p.name for p in saved.iterdir()))
reloaded = npl.Effects.load(saved)
again = reloaded.plan(tape, budget).plan
assert again["action"].equals(plan.plan["action"])  # the same plan from the folder

plan.save(workdir / "plan.xlsx")
curve.save(workdir / "curve")
print(sorted(p.name for p in (workdir / "curve").iterdir()))

# %% [markdown]
# ## One loan: what if its collateral were worth less?
#
# `npl.what_if` re-scores one loan with changed inputs and gives the recovery model's reason
# codes. Take the mortgage in the plan with the most expected from the sale of its house: a
# new appraisal is due, and the team wants to know how much of the loan's expected
# collections hangs on it. This asks the *recovery model*, which describes how loans like this
# one fare; it is not the effect of anything the servicer does. To re-score a loan under a
# different *action*, give `what_if` effects estimated on the `recovered` outcome too
# (`npl.estimate_effects(book, outcome="recovered")`).

# %%
recovery_model = npl.RecoveryModel(
    grid=({"num_leaves": 15, "min_data_in_leaf": 50},), baselines=False
).fit(book)
acted = plan.plan.filter(pl.col("action") != "none").select("loan_id", "action")
mortgage = (
    recovery_model.score(tape)
    .scores.join(acted, on="loan_id")
    .join(tape.loans.collect().select("loan_id", "segment", "collateral_value"), on="loan_id")
    .filter(segment="residential_mortgage")
    .sort("expected_collateral", descending=True)
    .head(1)
)
mortgage.select(
    "loan_id", "action", "exposure", "collateral_value", "expected_borrower", "expected_collateral"
)

# %%
loan_id = mortgage["loan_id"].item()
appraisal = 0.8 * mortgage["collateral_value"].item()  # the house valued 20 % lower
answer = npl.what_if(recovery_model, tape, loan_id, {"collateral_value": appraisal})
print(answer.changes)
print(f"p_recover {answer.p_recover_before:.1%} -> {answer.p_recover_after:.1%}")
print(
    f"expected collections {answer.expected_collections_before:,.0f} -> "
    f"{answer.expected_collections_after:,.0f}"
)
answer.reasons_before.select("target", "rank", "text", "contribution")

# %% [markdown]
# The lower appraisal cuts the expected proceeds of the sale. `p_recover` counts what is
# collected within 24 months, mostly before any sale, and moves little if at all. The reason
# codes say what drives the loan's scores against a typical loan of the tape
# (`contribution` in probability for `p_recover`, in money for the collections).

# %%
shutil.rmtree(workdir)  # remove this cell to keep the files
