"""The effects bundle: estimate once, save, load, and plan actions from it.

:func:`estimate_effects` fits an :class:`~npl_engine.causal.ActionEffectModel` on a book and
gathers what ``npl effects`` reports: the average effects with their naive differences, the
refutations, the validation of the per-loan effects, the overlap check, the settlement
economics, the per-loan effects (CATE) and the action costs learned from the book.
:class:`Effects` holds them; :meth:`Effects.save` writes the folder ``npl effects --out``
writes and :meth:`Effects.load` is the one reader of that folder. :meth:`Effects.plan` and
:meth:`Effects.gain_curve` are what ``npl policy --budget`` and ``--budgets`` compute.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import reduce
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.causal._costs import COSTS_RECORD, ActionCosts, estimate_costs, load_costs
from npl_engine.causal._effects import MODEL_FILE, MODEL_INFO_FILE, ActionEffectModel
from npl_engine.causal._estimators import CateEstimator
from npl_engine.causal._policy import (
    ActionTotals,
    BusinessAsUsual,
    PlanColumns,
    PolicyInputs,
    _chunk_size,
    _collections_without_rows,
    collections_without,
    gain_curve,
    loans_at,
    parse_budgets,
    plan_actions,
    plan_comparison,
    plan_price,
    policy_inputs,
    settlement_economics,
)
from npl_engine.causal._refute import RefutationSettings, refute_effects
from npl_engine.causal._treatment import CausalSettings
from npl_engine.data import Dataset, count_loans, read_dataset
from npl_engine.data.writers import atomic_folder, write_table
from npl_engine.errors import NplError

__all__ = [
    "CATE_FILE",
    "EFFECTS_FILES",
    "SUMMARY_FILE",
    "Effects",
    "Plan",
    "PolicyCurve",
    "estimate_effects",
]

#: The effects summary (average effects, refutations, validation, overlap, settlement).
SUMMARY_FILE = "effects.json"
#: The per-loan effects of the book's loans.
CATE_FILE = "cate.parquet"
#: Files an effects folder holds (an existing folder holding only these may be replaced).
EFFECTS_FILES = frozenset({SUMMARY_FILE, CATE_FILE, MODEL_FILE, MODEL_INFO_FILE, COSTS_RECORD})
#: Files a gain-curve folder holds, besides the plan_*.parquet files.
CURVE_FILES = frozenset({"curve.parquet", "curve.csv"})

Outcome = Literal["recovery_rate", "recovered", "net_collections"]
Loans = Dataset | pl.LazyFrame | pl.DataFrame | str | Path
Array = npt.NDArray[np.float64]

_METHOD = "EconML DRLearner (LightGBM nuisances, cross-fitted): AIPW average effects"
_SETTLEMENT_NOTE = (
    "amount_waived = discount / (1 - discount) x collections with the offer: an "
    "upper bound (every collection under the offer taken as a settlement)"
)
_SETTLEMENT_COLUMNS = ("collections_without_offer", "collections_with_offer", "amount_waived")


def _loans(data: Loans) -> pl.LazyFrame:
    """The loans table of a dataset, a frame of loans or a dataset folder."""
    if isinstance(data, str | Path):
        data = read_dataset(data)
    if isinstance(data, Dataset):
        return data.loans
    return data.lazy()


def _costs(costs: ActionCosts | str | Path | None, default: ActionCosts) -> ActionCosts:
    if costs is None:
        return default
    if isinstance(costs, ActionCosts):
        return costs
    return load_costs(costs)


@dataclass(frozen=True, slots=True)
class Plan:
    """A budgeted action plan (what ``npl policy --budget`` writes and prints).

    Parameters
    ----------
    plan
        One row per loan: ``loan_id``, ``action`` (``none`` where no action),
        ``expected_uplift`` (money, gross of cost), ``cost``, ``uplift_low`` and
        ``uplift_high`` (its 95 % interval) and, when the effects know settlement offers,
        ``collections_without_offer``, ``collections_with_offer`` and ``amount_waived`` for the
        loans offered one.
    comparison
        ``policy`` (the plan, business as usual, no action, the best single action for all),
        ``loans_acted``, ``cost``, ``expected_uplift`` and ``expected_net``, against no action.
    budget
        The total action cost allowed.
    inputs
        The per-loan, per-action uplift, cost and intervals the plan was solved on; its
        ``collections_without`` is ``None`` (the plan predicts them for the loans offered a
        settlement only, in its ``collections_without_offer`` column). ``None`` for a plan
        made on a cluster: they stayed on its workers.
    """

    plan: pl.DataFrame
    comparison: pl.DataFrame
    budget: float
    inputs: PolicyInputs | None

    @property
    def band(self) -> tuple[float, float]:
        """The plan's expected uplift, 95 % band from the per-loan effect intervals."""
        return float(self.plan["uplift_low"].sum()), float(self.plan["uplift_high"].sum())

    def save(self, path: str | Path, *, before_publish: Callable[[], object] | None = None) -> Path:
        """Write the plan table in the format the suffix names (.parquet, .csv, .json, .xlsx).

        Parameters
        ----------
        path
            The file to write.
        before_publish
            Called once the file is written but before it is moved into place (a decision
            record, say); if it fails, nothing is published.

        Returns
        -------
        Path
            ``path``.
        """
        return write_table(self.plan, path, before_publish=before_publish)


@dataclass(frozen=True, slots=True)
class PolicyCurve:
    """The gain curve with the plan at each budget (what ``npl policy --budgets`` writes).

    Parameters
    ----------
    curve
        One row per budget (see :class:`~npl_engine.causal.GainCurve`): spend, expected gain
        and its band, shadow price, marginal return, the action mix and the single-action gains.
    saturation_spend
        What the unconstrained plan spends; a larger budget stays unspent.
    budgets
        The budgets, ascending.
    picks
        (budgets, loans) chosen action index per loan (-1: none).
    actions
        The actions, in the order of the picks' indices.
    inputs
        The per-loan, per-action uplift, cost and intervals the plans were solved on.
    """

    curve: pl.DataFrame
    saturation_spend: float
    budgets: Array
    picks: npt.NDArray[np.int8]
    actions: tuple[str, ...]
    inputs: PolicyInputs

    def plan_columns(self) -> PlanColumns:
        """The per-action values the plans pick from, laid out once for all budgets."""
        return PlanColumns(self.actions, self.inputs.plan_columns(), loan_ids=self.inputs.loan_ids)

    def plan_at(self, i: int) -> pl.DataFrame:
        """The plan at the ``i``-th budget: ``loan_id``, ``action``, uplift, cost and band.

        For the plans at many budgets, call :meth:`plan_columns` once and its ``frame`` per
        budget (as :meth:`save` does).
        """
        return self.plan_columns().frame(self.picks[i])

    @staticmethod
    def plan_name(budget: float) -> str:
        """File name of the plan at a budget.

        >>> PolicyCurve.plan_name(20000.0), PolicyCurve.plan_name(12.5)
        ('plan_20000.parquet', 'plan_12.5.parquet')
        """
        return (
            f"plan_{budget:.0f}.parquet"
            if float(budget).is_integer()
            else f"plan_{budget:g}.parquet"
        )

    def save(
        self,
        folder: str | Path,
        *,
        before_publish: Callable[[pl.DataFrame], object] | None = None,
    ) -> Path:
        """Write ``curve.parquet``, ``curve.csv`` and the plan at each budget into ``folder``.

        Parameters
        ----------
        folder
            The folder; written whole or not at all (an existing curve folder is replaced).
        before_publish
            Called with the plan at the largest budget once every file is written but before
            the folder is moved into place; if it fails, nothing is published.

        Returns
        -------
        Path
            ``folder``.
        """
        names = [self.plan_name(b) for b in self.budgets]
        last = pl.DataFrame()
        plans = self.plan_columns()
        with atomic_folder(folder, allowed=CURVE_FILES | frozenset(names)) as staging:
            self.curve.write_parquet(staging / "curve.parquet")
            self.curve.write_csv(staging / "curve.csv")
            for i, name in enumerate(names):
                last = plans.frame(self.picks[i])
                last.write_parquet(staging / name)
            if before_publish is not None:
                before_publish(last)
        return Path(folder)


class Effects:
    """Estimated effects of the collection actions: model, summary, per-loan effects, costs.

    Made by :func:`estimate_effects` (or :meth:`from_model`), written by :meth:`save` and read
    back by :meth:`load`.

    Parameters
    ----------
    model
        The fitted effect model.
    summary
        What ``effects.json`` holds: ``outcome``, ``horizon_months``, ``actions`` (average
        effect, 95 % interval, naive difference per action), ``refutations``, ``validation``,
        ``overlap`` and, with settlement offers, ``settlement``.
    cate
        The per-loan effects of the book's loans (see
        :meth:`~npl_engine.causal.ActionEffectModel.cate`).
    costs
        Cost of each action, learned from the book.

    Examples
    --------
    >>> import npl_engine as npl
    >>> book = npl.simulate(npl.SimulationSettings(n_loans=3000, seed=1)).dataset()
    >>> effects = npl.estimate_effects(book, refutations=False)  # doctest: +SKIP
    >>> folder = effects.save("effects")  # doctest: +SKIP
    >>> plan = npl.Effects.load(folder).plan(book, 50_000)  # doctest: +SKIP
    >>> plan.comparison  # doctest: +SKIP
    """

    def __init__(
        self,
        model: ActionEffectModel,
        summary: dict[str, Any],
        cate: pl.DataFrame | None,
        costs: ActionCosts,
        *,
        folder: Path | None = None,
    ) -> None:
        self.model = model
        self.summary = summary
        self.costs = costs
        self._cate = cate
        self.folder = folder

    def __repr__(self) -> str:
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        return f"Effects(outcome={self.outcome!r}, actions={list(self.actions)}{where})"

    # ------------------------------------------------------------------------ contents

    @property
    def cate(self) -> pl.DataFrame:
        """Per-loan effects of the book's loans, with 95 % intervals (read on first use)."""
        if self._cate is None:
            assert self.folder is not None
            self._cate = _read(self.folder, CATE_FILE, pl.read_parquet)
        return self._cate

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions whose effects were estimated (against ``none``)."""
        return tuple(self.model.actions_)

    @property
    def outcome(self) -> str:
        """The outcome the effects are on: recovery_rate, recovered or net_collections."""
        return str(self.summary["outcome"])

    @property
    def table(self) -> pl.DataFrame:
        """The average effects: one row per action (``ate``, ``ci_low``, ``ci_high``, ...)."""
        return pl.DataFrame(self.summary["actions"])

    # ------------------------------------------------------------------------ estimate

    @classmethod
    def from_model(
        cls,
        model: ActionEffectModel,
        book: Dataset,
        *,
        refutations: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> Effects:
        """Refute, validate and summarise an effect model just fitted on ``book``.

        Parameters
        ----------
        model
            Fitted on ``book`` in this session with :meth:`ActionEffectModel.fit` (its training
            data are needed by the refutations and the validation).
        book
            The book.
        refutations
            Run the DoWhy refutations (about a minute per action on large books).
        progress
            Called with a short message before each step.

        Returns
        -------
        Effects
        """
        say = progress or (lambda _msg: None)
        if not hasattr(model, "data_"):
            msg = "the effect model must be fitted on the book in this session (fit(book))"
            raise NplError(msg)
        data = model.data_
        settings = model.settings or CausalSettings()
        refuted: dict[str, Any] = {}
        if refutations:
            say("refuting each estimate with DoWhy (placebo, common cause, subset, sensitivity)")
            refuted = refute_effects(
                data.covariates.values,
                data.treatment,
                data.outcome,
                model.actions_,
                RefutationSettings(seed=model.seed),
            )
        say("validating the per-loan effects and scoring the book's loans")
        summary: dict[str, Any] = {
            "outcome": settings.outcome,
            "horizon_months": settings.window_months,
            "treatment_window_days": settings.treatment_window_days,
            "control": "none",
            "n_loans": data.frame.height,
            "excluded_censored": data.excluded_censored,
            "as_of_date": book.as_of_date.isoformat() if book.as_of_date else None,
            "method": f"{_METHOD}; {_per_loan_method(model)}",
            "actions": [
                {
                    "action": e.action,
                    "n": e.n,
                    "ate": e.ate,
                    "ci_low": e.ci_low,
                    "ci_high": e.ci_high,
                    "naive_difference": e.naive_difference,
                    "std_error": e.std_error,
                    "n_control": e.n_control,
                    "n_trimmed": e.n_trimmed,
                }
                for e in model.effects_
            ],
            "refutations": refuted or {"skipped": "run without --no-refutations"},
            "validation": model.validation(),
            "overlap": {
                "min_propensity": model.overlap_.min_propensity,
                "ok": model.overlap_.ok,
                "warnings": list(model.overlap_.warnings),
                "share_below": model.overlap_.share_below,
                "quantiles": model.overlap_.quantiles,
            },
        }
        cate = model.cate(book.loans)
        costs = estimate_costs(book)
        if "settlement_offer" in model.actions_ and settings.outcome != "recovered":
            summary["settlement"] = _settlement_summary(model, book.loans, costs)
        return cls(model, summary, cate, costs)

    # ----------------------------------------------------------------------- persistence

    def save(self, folder: str | Path) -> Path:
        """Write the effects folder: what ``npl effects --out`` writes.

        ``effects.json`` (the summary), ``cate.parquet`` (per-loan effects), ``costs.json``
        and the model (``effect_model.joblib`` with ``effect_model.json``). The folder is
        written whole or not at all; an existing effects folder is replaced, any other
        non-empty folder is refused.

        Returns
        -------
        Path
            ``folder``.
        """
        with atomic_folder(folder, allowed=EFFECTS_FILES) as staging:
            (staging / SUMMARY_FILE).write_text(json.dumps(self.summary, indent=2) + "\n")
            self.cate.write_parquet(staging / CATE_FILE)
            self.costs.save_record(staging)
            self.model.save(staging)
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> Effects:
        """Read an effects folder written by :meth:`save` (or ``npl effects``).

        The per-loan effects are read on first use of :attr:`cate`.

        Raises
        ------
        NplError
            If ``folder`` is not an effects folder, or one of its files is missing or cannot
            be read; the message names the folder and the file.

        Notes
        -----
        The model is a joblib pickle: load only folders you trust.
        """
        root = Path(folder)
        if not root.is_dir():
            msg = f"{root}: no such effects folder; write one with `npl effects --out {root}`"
            raise NplError(msg)
        missing = [name for name in sorted(EFFECTS_FILES) if not (root / name).is_file()]
        if missing:
            msg = (
                f"{root} is not a complete effects folder: {', '.join(missing)} missing; "
                f"rerun `npl effects --out {root}`"
            )
            raise NplError(msg)
        summary = _read(root, SUMMARY_FILE, lambda p: json.loads(p.read_text()))
        if not isinstance(summary, dict) or not {"outcome", "actions"} <= summary.keys():
            msg = f"{root / SUMMARY_FILE} cannot be read: it is not an effects summary"
            raise NplError(msg)
        costs = _read(root, COSTS_RECORD, ActionCosts.read_record, folder_arg=True)
        model = _read(root, MODEL_FILE, ActionEffectModel.load, folder_arg=True)
        _read(root, CATE_FILE, pl.read_parquet_schema)
        return cls(model, summary, None, costs, folder=root)

    # --------------------------------------------------------------------------- plans

    def policy_inputs(
        self,
        data: Loans,
        *,
        costs: ActionCosts | str | Path | None = None,
        with_bau: bool = True,
        with_interval: bool = False,
        with_baseline: bool = False,
        cluster: Any = None,
        chunk_rows: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PolicyInputs:
        """Uplift and cost of each action per loan, in money (see :func:`policy_inputs`).

        Parameters
        ----------
        data
            Loans to plan for: a :class:`~npl_engine.data.Dataset`, a loans frame or a dataset
            folder.
        costs
            Action costs (or a TOML file with a ``[costs]`` table); default: :attr:`costs`.
        with_bau, with_interval, with_baseline
            Also predict the business-as-usual propensities, the uplift intervals, the expected
            collections with no action.
        cluster
            A Dask ``distributed.Client``: predict the effects on its workers.
        chunk_rows
            Loans predicted at a time (see :func:`policy_inputs`): ``None``, 250,000 when the
            tape has more, else all at once; ``0``, all at once. Not used with ``cluster``.
        progress
            Called with a short description before each chunk.
        """
        chosen = _costs(costs, self.costs)
        options = {
            "with_bau": with_bau,
            "with_interval": with_interval,
            "with_baseline": with_baseline,
        }
        loans = _loans(data)
        if cluster is None:
            return policy_inputs(
                self.model, loans, chosen, chunk_rows=chunk_rows, progress=progress, **options
            )
        from npl_engine import distributed  # noqa: PLC0415 - dask loads only when asked

        inputs: PolicyInputs = distributed.policy_inputs(
            cluster, self.model, loans.collect(), chosen, **options
        )
        return inputs

    def plan(
        self,
        data: Loans,
        budget: float,
        *,
        costs: ActionCosts | str | Path | None = None,
        cluster: Any = None,
        chunk_rows: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Plan:
        """Plan at most one action per loan maximising expected net collections within budget.

        What ``npl policy --budget`` writes: see :func:`plan_actions` for the method.

        Parameters
        ----------
        data
            Loans to plan for: a tape, a book, a loans frame or a dataset folder.
        budget
            Total action cost allowed (``math.inf``: no limit).
        costs
            Action costs (or a TOML file with a ``[costs]`` table); default: :attr:`costs`.
        cluster
            A :class:`npl_engine.distributed.Cluster`: predict the effects on its workers and
            keep them there; the budget's price is searched over the partitions
            (:func:`plan_price`) and the plan equals the in-process plan of the same inputs
            bit for bit. The plan's ``inputs`` is then ``None``.
        chunk_rows
            Loans read and predicted at a time (see :func:`policy_inputs`): ``None``, 250,000
            when the tape has more, else all at once; ``0``, all at once. Peak memory follows
            the chunk plus the per-loan arrays the plan is solved on; the plan is the same
            either way (the budget is solved once over all loans). With ``cluster``, the tape
            goes to the workers this many loans at a time and this process never holds it.
        progress
            Called with a short description before each chunk.

        Returns
        -------
        Plan
            The plan per loan, the comparison with simple policies and the inputs.

        Examples
        --------
        >>> plan = effects.plan(tape, 100_000)  # doctest: +SKIP
        >>> plan.save("plan.xlsx")  # doctest: +SKIP
        """
        if budget < 0:
            msg = f"budget must be >= 0, got {budget}"
            raise NplError(msg)
        chosen = _costs(costs, self.costs)
        actions = self.actions
        loans = _loans(data)
        if cluster is not None:
            return self._plan_on(
                cluster, loans, budget, chosen, chunk_rows=chunk_rows, progress=progress
            )
        inputs = self.policy_inputs(
            loans,
            costs=chosen,
            with_bau=True,
            with_interval=True,
            cluster=cluster,
            chunk_rows=chunk_rows,
            progress=progress,
        )
        result = plan_actions(
            inputs.loan_ids,
            inputs.uplift,
            inputs.cost,
            actions,
            budget=budget,
            bau=inputs.bau,
            uplift_low=inputs.uplift_low,
            uplift_high=inputs.uplift_high,
        )
        plan = _with_settlement(
            result.plan, actions, inputs, chosen, model=self.model, loans=loans,
            chunk_rows=chunk_rows,
        )  # fmt: skip
        return Plan(plan=plan, comparison=result.comparison, budget=float(budget), inputs=inputs)

    def _plan_on(
        self,
        cluster: Any,
        loans: pl.LazyFrame,
        budget: float,
        costs: ActionCosts,
        *,
        chunk_rows: int | None,
        progress: Callable[[str], None] | None,
    ) -> Plan:
        """:meth:`plan` with the per-loan inputs kept on the cluster's workers.

        The budget's price is found from scalars asked of every partition (:func:`plan_price`),
        each partition then returns its rows of the plan; only the business-as-usual sample
        and the loans offered a settlement cross otherwise. The plan equals
        :func:`plan_actions` on the same per-loan inputs, bit for bit. A tape of more than
        ``chunk_rows`` loans goes to the workers a chunk at a time (each chunk's partitions
        stay there), so this process never holds the tape.
        """
        from npl_engine import distributed  # noqa: PLC0415 - dask loads only when asked

        model, actions = self.model, self.actions
        n = count_loans(loans)
        held = distributed.policy_parts_in_chunks(
            cluster, model, loans, costs, with_interval=True,
            chunk_rows=_chunk_size(n, chunk_rows), n_loans=n, progress=progress,
        )  # fmt: skip
        price = plan_price(budget, lambda query: held.each(operator.methodcaller("ask", query)))
        order = pl.Series(distributed.input_order(held.rows))
        plan = pl.concat(held.each(operator.methodcaller("plan", price, actions)))[order]
        totals: ActionTotals = reduce(operator.add, held.each(operator.methodcaller("totals")))
        bau = BusinessAsUsual.of(model, loans, n_loans=n, chunk_rows=chunk_rows)
        usual = held.take(bau.rows)
        comparison = plan_comparison(plan, actions, totals, bau=(bau, usual.uplift, usual.cost))
        if "settlement_offer" in actions:
            offered = np.flatnonzero((plan["action"] == "settlement_offer").to_numpy())
            subset = held.take(offered)
            chosen = loans_at(loans, offered, n_loans=n, chunk_rows=chunk_rows)
            without = _collections_without_rows(model, chosen, subset.exposure)
            plan = _settlement_columns(
                plan, offered, replace(subset, collections_without=without), actions, costs
            )
        return Plan(plan=plan, comparison=comparison, budget=float(budget), inputs=None)

    def gain_curve(
        self,
        data: Loans,
        budgets: Sequence[float] | Array | str,
        *,
        costs: ActionCosts | str | Path | None = None,
        cluster: Any = None,
        chunk_rows: int | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> PolicyCurve:
        """The best plan's expected gain at each budget, and the plans (``npl policy --budgets``).

        Parameters
        ----------
        data
            Loans to plan for: a tape, a book, a loans frame or a dataset folder.
        budgets
            Budgets (>= 0), or text: ``START:STOP:COUNT`` or ``a,b,c`` (see
            :func:`parse_budgets`).
        costs
            Action costs (or a TOML file with a ``[costs]`` table); default: :attr:`costs`.
        cluster
            A Dask ``distributed.Client``: predict the effects on its workers.
        chunk_rows
            Loans read and predicted at a time, as in :meth:`plan`; the curve and the plans
            are the same either way. Not used with ``cluster``.
        progress
            Called with a short description before each chunk.

        Returns
        -------
        PolicyCurve
            The curve (see :func:`gain_curve`) and the plan at each budget.

        Examples
        --------
        >>> curve = effects.gain_curve(tape, "0:200000:5")  # doctest: +SKIP
        >>> curve.save("curve")  # doctest: +SKIP
        """
        grid = (
            parse_budgets(budgets)
            if isinstance(budgets, str)
            else np.sort(np.asarray(budgets, dtype=np.float64))
        )
        if grid.size == 0 or not np.isfinite(grid).all() or grid.min() < 0:
            msg = "budgets: expected at least one finite budget, all >= 0"
            raise NplError(msg)
        inputs = self.policy_inputs(
            data, costs=costs, with_bau=False, with_interval=True, with_baseline=False,
            cluster=cluster, chunk_rows=chunk_rows, progress=progress,
        )  # fmt: skip
        result = gain_curve(
            inputs.uplift,
            inputs.cost,
            self.actions,
            budgets=grid,
            uplift_low=inputs.uplift_low,
            uplift_high=inputs.uplift_high,
        )
        return PolicyCurve(
            curve=result.curve,
            saturation_spend=result.saturation_spend,
            budgets=grid,
            picks=result.picks,
            actions=self.actions,
            inputs=inputs,
        )


def estimate_effects(
    book: Dataset | str | Path,
    *,
    outcome: Outcome = "recovery_rate",
    horizon_months: int = 60,
    treatment_window_days: int = 90,
    as_of: date | None = None,
    seed: int = 0,
    refutations: bool = True,
    estimator: CateEstimator | None = None,
    n_estimators: int = 200,
    progress: Callable[[str], None] | None = None,
) -> Effects:
    """Estimate the effect of each collection action against none on a book.

    What ``npl effects`` computes (see ``docs/causal.md``): doubly robust average effects with
    95 % intervals, naive differences, DoWhy refutations, an out-of-sample validation of the
    per-loan effects, the overlap check, per-loan effects with intervals, the action costs
    learned from the book and, with settlement offers, what they waive.

    Parameters
    ----------
    book
        A book (loans, actions, payments) or its folder.
    outcome
        ``recovery_rate``, ``recovered`` or ``net_collections`` (see
        :class:`~npl_engine.causal.CausalSettings`).
    horizon_months
        Outcome window of ``recovery_rate`` and ``net_collections``.
    treatment_window_days
        Actions taken this many days after cut-off make the treatment.
    as_of
        The day the history was extracted, when ``book`` is a folder (default: the latest
        payment or action date); a :class:`~npl_engine.data.Dataset` carries its own.
    seed
        Seed of the models, the refutations and the validation.
    refutations
        Run the DoWhy refutations (about a minute per action on large books).
    estimator
        The per-loan effect estimator (any :class:`~npl_engine.causal.CateEstimator`, with
        its own settings and seed); default: the causal forest
        (:class:`~npl_engine.causal.CausalForestEstimator` seeded with ``seed``).
    n_estimators
        Boosting rounds of each LightGBM nuisance model (outcome and propensity) of the doubly
        robust average effects (:class:`~npl_engine.causal.ActionEffectModel`'s setting). Fewer
        rounds are faster; on a book of a few thousand loans the default can over-fit the
        nuisance models, so compare the average effects at a lower setting there.
    progress
        Called with a short message before each step.

    Returns
    -------
    Effects
        The fitted model, the summary, the per-loan effects and the costs.

    Examples
    --------
    >>> import npl_engine as npl
    >>> book = npl.simulate(npl.SimulationSettings(n_loans=3000, seed=1)).dataset()
    >>> effects = npl.estimate_effects(book, refutations=False)  # doctest: +SKIP
    >>> effects.table.select("action", "ate", "ci_low", "ci_high")  # doctest: +SKIP
    >>> dr = npl.estimate_effects(book, estimator=npl.DRLearnerEstimator())  # doctest: +SKIP
    """
    say = progress or (lambda _msg: None)
    if not isinstance(book, Dataset):
        say(f"reading and validating {book}")
        book = read_dataset(book, kind="book", as_of=as_of)
    elif as_of is not None:
        msg = "as_of is for a book read from a folder: a Dataset carries its own as_of_date"
        raise NplError(msg)
    settings = CausalSettings(
        outcome=outcome, horizon_months=horizon_months, treatment_window_days=treatment_window_days
    )
    model = ActionEffectModel(
        settings=settings, seed=seed, estimator=estimator, n_estimators=n_estimators
    )
    model.fit(book, progress=say)
    return Effects.from_model(model, book, refutations=refutations, progress=say)


def _per_loan_method(model: ActionEffectModel) -> str:
    """How the summary names the per-loan estimator: its ``description``, else its class."""
    estimator = model.estimator_
    described = getattr(estimator, "description", None)
    if isinstance(described, str):
        return described
    return f"{type(estimator).__name__}: per-loan effects with 95 % intervals"


def _read(root: Path, name: str, reader: Callable[[Path], Any], *, folder_arg: bool = False) -> Any:
    """``reader`` on one file of an effects folder; any failure names the folder and file."""
    try:
        return reader(root if folder_arg else root / name)
    except Exception as exc:
        msg = f"{root}: {name} cannot be read ({type(exc).__name__}: {exc}); rerun `npl effects`"
        raise NplError(msg) from exc


def _settlement_summary(
    model: ActionEffectModel, loans: pl.LazyFrame, costs: ActionCosts
) -> dict[str, Any]:
    """Settlement offer to every loan of a book: collections with/without, amount waived."""
    inputs = policy_inputs(model, loans, costs, with_bau=False, with_baseline=True)
    econ = settlement_economics(inputs, model.actions_, costs)
    return {
        "loans": econ.height,
        "collections_without_offer": float(econ["collections_without_offer"].sum()),
        "collections_with_offer": float(econ["collections_with_offer"].sum()),
        "amount_waived": float(econ["amount_waived"].sum()),
        "discount": costs.settlement_discount,
        "note": _SETTLEMENT_NOTE,
    }


def _with_settlement(
    plan: pl.DataFrame,
    actions: tuple[str, ...],
    inputs: PolicyInputs,
    costs: ActionCosts,
    *,
    model: ActionEffectModel,
    loans: pl.LazyFrame,
    chunk_rows: int | None = None,
) -> pl.DataFrame:
    """The plan with, for settlement offers, the amount waived and collections with/without.

    The no-action collections are predicted for the offered loans only (about 1 % of a large
    tape), after the plan is solved, reading the tape ``chunk_rows`` loans at a time; each
    loan's figures are those of all loans predicted at once.
    """
    if "settlement_offer" not in actions:
        return plan
    offered = np.flatnonzero((plan["action"] == "settlement_offer").to_numpy())
    without = collections_without(model, loans, inputs.exposure, offered, chunk_rows=chunk_rows)
    subset = replace(inputs.take(offered), collections_without=without)
    return _settlement_columns(plan, offered, subset, actions, costs)


def _settlement_columns(
    plan: pl.DataFrame,
    offered: npt.NDArray[np.int64],
    subset: PolicyInputs,
    actions: tuple[str, ...],
    costs: ActionCosts,
) -> pl.DataFrame:
    """The plan with the settlement columns of the loans at ``offered`` (``subset``)."""
    economics = settlement_economics(subset, actions, costs)
    columns = []
    for name in _SETTLEMENT_COLUMNS:
        values = np.full(plan.height, np.nan)
        values[offered] = economics[name].to_numpy()
        columns.append(pl.Series(name, values).fill_nan(None))
    return plan.with_columns(columns)
