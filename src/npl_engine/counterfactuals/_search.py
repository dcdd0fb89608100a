"""Counterfactuals for loans: DiCE proposes lever settings, the engine checks and chooses.

For each loan: DiCE's random method proposes candidate lever settings (``_dice.py``); the
engine then

1. tidies each candidate: a discount only means something with a settlement offer, so it is
   reset otherwise; levers that do not matter are put back one at a time (the engine's own
   sparsity pass, re-scoring after each);
2. re-scores every candidate with :class:`StrategyModel` and drops those that miss the target
   (the probability reported is always the engine's, never DiCE's);
3. keeps up to ``n`` candidates, fewest changes first, each next one the farthest from those
   already kept (diversity);
4. when no servicer lever reaches the target, reports instead up to ``n`` single actions that
   raise p_recover most (status ``closest``, ``meets_target`` false), so a loan that some lever
   helps always gets an answer.

Servicer levers (the action and the settlement discount) and borrower-side what-ifs (income,
debt-to-income, liquid assets) are searched separately and labelled ``servicer`` and
``borrower_side``: the second are not the servicer's to make.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import polars as pl

from npl_engine.counterfactuals._dice import OUTCOME, LeverSpace, dice_candidates, dice_data
from npl_engine.counterfactuals._strategy import BAU, SETTLEMENT, StrategyModel
from npl_engine.errors import NplError

__all__ = [
    "BORROWER_LEVERS",
    "IMMUTABLE_COLUMNS",
    "CounterfactualResult",
    "CounterfactualSettings",
    "apply_counterfactuals",
    "search_counterfactuals",
    "summarize",
]

FloatArray = npt.NDArray[np.float64]
Kind = Literal["servicer", "borrower_side"]

ACTION = "action"
DISCOUNT = "settlement_discount"
#: What a conversation with the borrower can explore; the servicer cannot set these.
BORROWER_LEVERS: tuple[str, ...] = ("monthly_income", "debt_to_income", "liquid_assets")
#: Facts about the loan and the borrower that no counterfactual changes (tested).
IMMUTABLE_COLUMNS: tuple[str, ...] = (
    "loan_id",
    "borrower_id",
    "segment",
    "region",
    "age",
    "gender",
    "borrower_type",
    "cutoff_date",
    "origination_date",
    "default_date",
    "original_principal",
    "outstanding_principal",
    "accrued_interest",
    "interest_rate",
    "days_past_due",
    "last_payment_date",
    "collateral_type",
    "collateral_value",
    "senior_liens",
    "legal_stage",
    "on_time_payment_rate",
    "min_payment_share",
    "delinquencies_24m",
    "credit_score",
    "negative_records",
)
_PRECISION = {DISCOUNT: 2, "monthly_income": 0, "debt_to_income": 2, "liquid_assets": 0}
#: Quantiles of the loans' values that bound a borrower-side lever.
_BORROWER_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True, slots=True)
class CounterfactualSettings:
    """What to look for and how hard.

    Parameters
    ----------
    n
        Counterfactuals wanted per loan (and per kind).
    target
        Probability of recovery a counterfactual must reach (default 0.5) ...
    uplift
        ... or, if given, the loan's ``p_recover`` plus this (capped at 0.99).
    borrower_side
        Also look for borrower-side what-ifs (income, debt-to-income, liquid assets).
    discount_range
        Permitted settlement discounts (shares of the exposure waived), inclusive.
    sample_size
        Random draws per DiCE round; a second round with four times as many runs when the
        first finds fewer than ``n`` and the time budget allows.
    candidates
        DiCE is asked for ``candidates × n`` settings, from which ``n`` are chosen.
    time_budget_seconds
        Per loan: no new DiCE round starts once this is spent.
    seed
        Seed of DiCE's draws (same seed, same counterfactuals).
    background_size
        Loans in DiCE's background sample (ranges and categories only).
    """

    n: int = 3
    target: float = 0.5
    uplift: float | None = None
    borrower_side: bool = False
    discount_range: tuple[float, float] = (0.1, 0.5)
    sample_size: int = 300
    candidates: int = 4
    time_budget_seconds: float = 10.0
    seed: int = 0
    background_size: int = 200

    def __post_init__(self) -> None:
        lo, hi = self.discount_range
        checks = [
            (self.n >= 1, f"n must be at least 1, got {self.n}"),
            (0.0 < self.target < 1.0, f"target must be in (0, 1), got {self.target}"),
            (
                self.uplift is None or 0.0 < self.uplift < 1.0,
                f"uplift must be in (0, 1), got {self.uplift}",
            ),
            (0.0 <= lo <= hi < 1.0, f"discount range must be 0 <= low <= high < 1, got {lo}, {hi}"),
            (self.sample_size >= 10, f"sample_size must be at least 10, got {self.sample_size}"),
            (self.candidates >= 1, f"candidates must be at least 1, got {self.candidates}"),
            (self.time_budget_seconds > 0, "time_budget_seconds must be positive"),
            (self.background_size >= 10, "background_size must be at least 10"),
        ]
        for ok, msg in checks:
            if not ok:
                raise NplError(msg)

    def target_for(self, p: float) -> float:
        """The probability a counterfactual of a loan with probability ``p`` must reach."""
        return min(p + self.uplift, 0.99) if self.uplift is not None else self.target


@dataclass(frozen=True, slots=True)
class CounterfactualResult:
    """Counterfactuals of a set of loans.

    Parameters
    ----------
    counterfactuals
        One row per counterfactual: ``loan_id``, ``kind`` (``servicer`` or
        ``borrower_side``), ``rank``, the lever values (``action``, ``settlement_discount``,
        ``monthly_income``, ``debt_to_income``, ``liquid_assets``), ``changes`` (text),
        ``n_changed``, ``p_recover_before``, ``p_recover`` (re-scored by the engine),
        ``target``, ``meets_target``, ``expected_collections_before``,
        ``expected_collections``, ``collections_change`` (null without effects on the
        recovery rate), ``cost`` (of the action; null without costs).
    loans
        One row per loan asked about: ``loan_id``, ``p_recover``, ``target``, ``status``
        (``found``, ``closest``: no lever reaches the target and the servicer rows are the
        levers that raise p_recover most, ``already_meets_target``, ``none_within_limits``: no
        lever raises p_recover at all, ``time_budget_spent``),
        ``n_servicer``, ``n_borrower_side``, ``sparsity`` (mean levers changed), ``diversity``
        (mean distance between a loan's counterfactuals of a kind), ``dice_rejected``
        (candidates DiCE proposed that the engine's re-scoring refused), ``seconds``,
        ``message``.
    settings
        What was asked.
    """

    counterfactuals: pl.DataFrame
    loans: pl.DataFrame
    settings: CounterfactualSettings


# -- lever space ------------------------------------------------------------------------------


def _borrower_ranges(loans: pl.DataFrame) -> dict[str, tuple[float, float]]:
    lo_q, hi_q = _BORROWER_QUANTILES
    out = {}
    for col in BORROWER_LEVERS:
        values = loans[col].drop_nulls().cast(pl.Float64)
        if values.len() == 0:
            continue
        lo, hi = values.quantile(lo_q), values.quantile(hi_q)
        assert lo is not None
        assert hi is not None
        digits = _PRECISION[col]
        out[col] = (round(float(lo), digits), round(float(hi), digits))
    return out


def _space(
    model: StrategyModel, settings: CounterfactualSettings, borrower: dict[str, tuple[float, float]]
) -> LeverSpace:
    actions = tuple(a for a in model.actions if a != BAU)
    categorical = {ACTION: actions} if actions else {}
    continuous: dict[str, tuple[float, float]] = {}
    if SETTLEMENT in actions:
        continuous[DISCOUNT] = settings.discount_range
    continuous |= borrower
    return LeverSpace(
        categorical=categorical,
        continuous=continuous,
        precision={k: _PRECISION[k] for k in continuous},
    )


def _background(
    model: StrategyModel,
    loans: pl.DataFrame,
    space: LeverSpace,
    settings: CounterfactualSettings,
    medians: dict[str, float],
) -> pd.DataFrame:
    """A small seeded sample of the loans with levers spread over their permitted values."""
    rng = np.random.default_rng(settings.seed)
    size = min(settings.background_size, loans.height)
    rows = np.sort(rng.choice(loans.height, size=size, replace=False))
    sample = loans[rows]
    frame: dict[str, Any] = {}
    if ACTION in space.categorical:
        levels = (BAU, *space.categorical[ACTION])
        frame[ACTION] = [levels[i % len(levels)] for i in range(size)]
    if DISCOUNT in space.continuous:
        lo, hi = space.continuous[DISCOUNT]
        frame[DISCOUNT] = np.round(rng.uniform(lo, hi, size), 2)
    for col in space.continuous:
        if col in BORROWER_LEVERS:
            values = sample[col].cast(pl.Float64).fill_null(medians[col]).to_numpy()
            frame[col] = np.round(values, _PRECISION[col])
    actions = np.asarray(frame.get(ACTION, [BAU] * size))
    discounts = np.asarray(frame.get(DISCOUNT, np.full(size, np.nan)))
    p, _ = model.p_recover(sample, actions=actions, discounts=discounts)
    frame[OUTCOME] = (p >= settings.target).astype(np.int64)
    return pd.DataFrame(frame)


# -- one loan ---------------------------------------------------------------------------------


class _LoanScorer:
    """The engine's p_recover of one loan for frames of lever values (what DiCE calls)."""

    def __init__(self, model: StrategyModel, row: pl.DataFrame, varied: Sequence[str]) -> None:
        self._model = model
        self._row = row
        self._borrower = [c for c in varied if c in BORROWER_LEVERS]
        self._table: dict[str, float] = {}
        if not self._borrower:
            # Only the action and discount vary: score each action once, then look up.
            acts = np.array(model.actions)
            p, _ = model.p_recover(pl.concat([row] * acts.size), actions=acts)
            self._table = dict(zip(acts.tolist(), p.tolist(), strict=True))

    def levers(self, frame: pd.DataFrame) -> tuple[npt.NDArray[np.str_], FloatArray]:
        n = len(frame)
        acts = frame[ACTION].astype(str).to_numpy() if ACTION in frame else np.full(n, BAU)
        disc = frame[DISCOUNT].astype(float).to_numpy() if DISCOUNT in frame else np.full(n, np.nan)
        return acts, disc

    def rows(self, frame: pd.DataFrame) -> pl.DataFrame:
        """The loan's row once per frame row, borrower-side levers replaced."""
        rows = pl.concat([self._row] * len(frame))
        return rows.with_columns(
            pl.Series(c, frame[c].astype(float).to_numpy()).cast(self._row.schema[c])
            for c in self._borrower
        )

    def __call__(self, frame: pd.DataFrame) -> FloatArray:
        acts, disc = self.levers(frame)
        if self._table:
            p = np.array([self._table[a] for a in acts.tolist()])
            deep = (acts == SETTLEMENT) & (1.0 - np.nan_to_num(disc) < self._model.threshold)
            out: FloatArray = np.where(deep, self._table.get("none", np.nan), p)
            return out
        p, _ = self._model.p_recover(self.rows(frame), actions=acts, discounts=disc)
        return p


def _tidy(frame: pd.DataFrame, query: pd.DataFrame) -> pd.DataFrame:
    """A discount without a settlement offer means nothing: put the loan's value back."""
    out = frame.copy()
    if DISCOUNT in out and ACTION in out:
        no_offer = out[ACTION].astype(str) != SETTLEMENT
        out.loc[no_offer, DISCOUNT] = query[DISCOUNT].iloc[0]
    return out


def _changed(frame: pd.DataFrame, query: pd.DataFrame, levers: Sequence[str]) -> pd.DataFrame:
    """Which levers each row changes from the query (booleans).

    An offer and its discount are one change: the discount is a term of the offer.
    """
    out = {}
    for col in levers:
        if col == DISCOUNT:
            continue
        q = query[col].iloc[0]
        if col == ACTION:
            out[col] = frame[col].astype(str).to_numpy() != str(q)
        else:
            out[col] = ~np.isclose(frame[col].astype(float).to_numpy(), float(q))
    return pd.DataFrame(out)


def _sparsify(
    frame: pd.DataFrame,
    query: pd.DataFrame,
    *,
    space: LeverSpace,
    levers: Sequence[str],
    score: Callable[[pd.DataFrame], FloatArray],
    target: float,
) -> pd.DataFrame:
    """Put back, one lever at a time, every change the target does not need."""
    out = frame.copy()
    for col in levers:
        if col == ACTION:
            continue  # without its action a counterfactual is not one
        trial = out.copy()
        if col == DISCOUNT:
            # an offer needs a discount: try the smallest permitted one (it waives least)
            value = space.continuous[DISCOUNT][0]
            rows = trial[ACTION].astype(str) == SETTLEMENT
        else:
            value = query[col].iloc[0]
            rows = pd.Series(True, index=trial.index)
        trial.loc[rows, col] = value
        keep = (score(_tidy(trial, query)) >= target) & rows.to_numpy()
        out.loc[keep, col] = value
    return out


def _distance(a: pd.Series, b: pd.Series, space: LeverSpace, levers: Sequence[str]) -> float:
    d = 0.0
    for col in levers:
        if col in space.categorical:
            d += float(str(a[col]) != str(b[col]))
        else:
            lo, hi = space.continuous[col]
            d += abs(float(a[col]) - float(b[col])) / max(hi - lo, 1e-12)
    return d


def _choose(
    frame: pd.DataFrame, n_changed: npt.NDArray[np.int64], p: FloatArray, *, n: int,
    space: LeverSpace, levers: Sequence[str],
) -> list[int]:  # fmt: skip
    """Fewest changes first, then each next one farthest from those already kept."""
    order = sorted(range(len(frame)), key=lambda i: (n_changed[i], -p[i], i))
    if not order:
        return []
    chosen = [order[0]]
    while len(chosen) < min(n, len(order)):
        rest = [i for i in order if i not in chosen]
        gaps = [
            min(_distance(frame.iloc[i], frame.iloc[j], space, levers) for j in chosen)
            for i in rest
        ]
        chosen.append(rest[int(np.argmax(gaps))])
    return chosen


def _diversity(frame: pd.DataFrame, space: LeverSpace, levers: Sequence[str]) -> float:
    k = len(frame)
    if k < 2:
        return 0.0
    d = [
        _distance(frame.iloc[i], frame.iloc[j], space, levers)
        for i in range(k)
        for j in range(i + 1, k)
    ]
    return float(np.mean(d))


@dataclass(frozen=True, slots=True)
class _Found:
    frame: pd.DataFrame
    n_changed: npt.NDArray[np.int64]
    rejected: int
    diversity: float
    out_of_time: bool


def _search_kind(
    model: StrategyModel,
    row: pl.DataFrame,
    query: pd.DataFrame,
    *,
    data: Any,
    space: LeverSpace,
    varied: Sequence[str],
    settings: CounterfactualSettings,
    target: float,
    start: float,
) -> _Found:
    score = _LoanScorer(model, row, varied)
    found = pd.DataFrame(columns=list(space.names))
    rejected = 0
    out_of_time = False
    for stage, size in enumerate((settings.sample_size, 4 * settings.sample_size)):
        if stage and time.perf_counter() - start > settings.time_budget_seconds:
            out_of_time = True
            break
        raw = dice_candidates(
            data, space, query, score,
            target=target, features_to_vary=varied, total=settings.candidates * settings.n,
            sample_size=size, seed=settings.seed + stage,
        )  # fmt: skip
        if len(raw):
            tidy = _tidy(raw, query)
            ok = score(tidy) >= target
            rejected += int((~ok).sum())
            tidy = _sparsify(
                tidy[ok].reset_index(drop=True),
                query,
                space=space,
                levers=varied,
                score=score,
                target=target,
            )
            found = pd.concat([found, tidy], ignore_index=True) if len(found) else tidy
            found = found.drop_duplicates(ignore_index=True)
        if len(found) >= settings.n:
            break
    if len(found) == 0:
        return _Found(found, np.zeros(0, np.int64), rejected, 0.0, out_of_time)
    changed = _changed(found, query, varied).to_numpy().sum(axis=1).astype(np.int64)
    keep = _choose(found, changed, score(found), n=settings.n, space=space, levers=varied)
    chosen = found.iloc[keep].reset_index(drop=True)
    return _Found(chosen, changed[keep], rejected, _diversity(chosen, space, varied), out_of_time)


def _closest(
    model: StrategyModel,
    row: pl.DataFrame,
    query: pd.DataFrame,
    *,
    space: LeverSpace,
    n: int,
    loan_id: str,
    p0: float,
    target: float,
) -> tuple[_Found, pl.DataFrame | None]:
    """Up to ``n`` servicer levers that raise p_recover most, when none reaches the target.

    Every action is tried once, a settlement offer at the smallest permitted discount (the
    discount moves p_recover only by making an offer unable to recover, and waives least
    there); those that raise p_recover are kept, highest first, and re-scored in full.
    ``None`` when no action raises p_recover.
    """
    if ACTION not in space.categorical:
        return _Found(pd.DataFrame(), np.zeros(0, np.int64), 0, 0.0, out_of_time=False), None
    actions = list(space.categorical[ACTION])
    frame = pd.DataFrame({ACTION: actions})
    if DISCOUNT in space.continuous:
        low = space.continuous[DISCOUNT][0]
        frame[DISCOUNT] = [low if a == SETTLEMENT else query[DISCOUNT].iloc[0] for a in actions]
    p = _LoanScorer(model, row, space.names)(frame)
    order = [i for i in np.argsort(-p, kind="stable") if p[i] > p0 + _RAISES][:n]
    chosen = frame.iloc[order].reset_index(drop=True)
    found = _Found(
        chosen,
        np.ones(len(chosen), np.int64),
        0,
        _diversity(chosen, space, space.names),
        out_of_time=False,
    )
    if not order:
        return found, None
    rows = _rescored(
        model, row, loan_id=loan_id, kind="servicer", found=found, query=query,
        varied=space.names, p0=p0, target=target,
    )  # fmt: skip
    return found, rows


#: A lever "raises" p_recover when it adds more than this (not rounding noise).
_RAISES = 1e-6


def _query(row: pl.DataFrame, space: LeverSpace, medians: dict[str, float]) -> pd.DataFrame:
    values: dict[str, Any] = {}
    if ACTION in space.categorical:
        values[ACTION] = BAU
    if DISCOUNT in space.continuous:
        values[DISCOUNT] = 0.0
    for col in space.continuous:
        if col in BORROWER_LEVERS:
            v = row[col][0]
            values[col] = float(medians[col] if v is None else v)
    return pd.DataFrame([values])


def _describe(frame: pd.DataFrame, query: pd.DataFrame, levers: Sequence[str]) -> list[str]:
    out = []
    for _, cf in frame.iterrows():
        parts = []
        for col in levers:
            before, after = query[col].iloc[0], cf[col]
            if col == ACTION and str(after) != str(before):
                parts.append(f"action {after}")
            elif col == DISCOUNT and str(cf.get(ACTION)) == SETTLEMENT:
                parts.append(f"settlement discount {float(after):.0%}")
            elif col in BORROWER_LEVERS and not np.isclose(float(after), float(before)):
                digits = _PRECISION[col]
                parts.append(f"{col} {float(before):,.{digits}f} → {float(after):,.{digits}f}")
        out.append("; ".join(parts))
    return out


# -- many loans -------------------------------------------------------------------------------


def search_counterfactuals(
    model: StrategyModel,
    loans: pl.DataFrame,
    loan_ids: Sequence[str],
    settings: CounterfactualSettings | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> CounterfactualResult:
    """Counterfactuals for loans under a strategy model (see :func:`counterfactuals`).

    Parameters
    ----------
    model
        The strategy-conditional recovery model.
    loans
        Validated contract ``loans`` (a tape or a book's loans): the loans to explain are
        taken from here, and so are the ranges of the borrower-side levers and DiCE's
        background sample.
    loan_ids
        Loans to explain (each must be in ``loans``).
    settings
        Target, number, levers, seed and time budget.
    progress
        Called with the number of loans done after each loan.

    Returns
    -------
    CounterfactualResult
        The counterfactuals and one status row per loan.

    Raises
    ------
    NplError
        If a loan id is not in ``loans``, or there is no lever to move (no effect model and no
        borrower-side what-ifs).

    Notes
    -----
    Every counterfactual is re-scored by :meth:`StrategyModel.score`; ``p_recover`` is that
    score and ``meets_target`` is checked on it. A counterfactual explains the model, not the
    world: see ``docs/counterfactuals.md``.
    """
    settings = settings or CounterfactualSettings()
    known = set(loans["loan_id"].to_list())
    missing = [i for i in loan_ids if i not in known]
    if missing:
        shown = ", ".join(missing[:5])
        msg = f"loans: column loan_id has no row for {len(missing)} requested loan(s), e.g. {shown}"
        raise NplError(msg)
    if model.effects is None and not settings.borrower_side:
        msg = (
            "no lever to move: the servicer's levers (action, settlement discount) need "
            "--effects EFFECTS_DIR (npl effects --outcome recovered); or ask for "
            "--borrower-side what-ifs"
        )
        raise NplError(msg)
    model.recovery.check_columns(loans)
    borrower = _borrower_ranges(loans) if settings.borrower_side else {}
    medians = {c: _median(loans[c]) for c in borrower}
    servicer_space = _space(model, settings, {})
    full_space = _space(model, settings, borrower)
    spaces: list[tuple[Kind, LeverSpace]] = []
    if servicer_space.names:
        spaces.append(("servicer", servicer_space))
    if settings.borrower_side and borrower:
        spaces.append(("borrower_side", full_space))
    datas: dict[Kind, Any] = {
        kind: dice_data(_background(model, loans, space, settings, medians), space)
        for kind, space in spaces
    }
    by_id = loans.with_row_index("_row").filter(pl.col("loan_id").is_in(list(loan_ids)))
    position = dict(zip(by_id["loan_id"].to_list(), by_id["_row"].to_list(), strict=True))
    cf_rows: list[pl.DataFrame] = []
    loan_rows: list[dict[str, Any]] = []
    for done, loan_id in enumerate(loan_ids, start=1):
        rows, loan_row = _one_loan(
            model,
            loans[int(position[loan_id])],
            loan_id=loan_id,
            spaces=spaces,
            datas=datas,
            medians=medians,
            settings=settings,
        )
        cf_rows.extend(rows)
        loan_rows.append(loan_row)
        if progress is not None:
            progress(done)
    frame = pl.concat(cf_rows, how="diagonal_relaxed") if cf_rows else _empty_counterfactuals()
    return CounterfactualResult(
        counterfactuals=frame.select(_empty_counterfactuals().columns),
        loans=pl.DataFrame(loan_rows, schema=_LOAN_SCHEMA),
        settings=settings,
    )


def _one_loan(
    model: StrategyModel,
    row: pl.DataFrame,
    *,
    loan_id: str,
    spaces: Sequence[tuple[Kind, LeverSpace]],
    datas: dict[Kind, Any],
    medians: dict[str, float],
    settings: CounterfactualSettings,
) -> tuple[list[pl.DataFrame], dict[str, Any]]:
    """Counterfactuals of one loan (every kind) and its status row."""
    cf_rows: list[pl.DataFrame] = []
    start = time.perf_counter()
    p0 = float(model.p_recover(row)[0][0])
    target = settings.target_for(p0)
    status, message = "none_within_limits", ""
    counts = {"servicer": 0, "borrower_side": 0}
    sparsity, diversity, rejected, out_of_time = [], [], 0, False
    if p0 >= target:
        status = "already_meets_target"
        message = f"p_recover {p0:.3f} already meets the target {target:.3f}"
    else:
        for kind, space in spaces:
            query = _query(row, space, medians)
            varied = [c for c in space.names if c not in BORROWER_LEVERS or row[c][0] is not None]
            if kind == "borrower_side" and not any(c in BORROWER_LEVERS for c in varied):
                continue
            found = _search_kind(
                model, row, query, data=datas[kind], space=space, varied=varied,
                settings=settings, target=target, start=start,
            )  # fmt: skip
            rejected += found.rejected
            out_of_time |= found.out_of_time
            if kind == "borrower_side" and len(found.frame):
                # what the servicer can do alone is reported as such, not again here
                moved = _changed(found.frame, query, [c for c in varied if c in BORROWER_LEVERS])
                keep = moved.to_numpy().any(axis=1)
                found = _Found(
                    found.frame[keep].reset_index(drop=True), found.n_changed[keep],
                    found.rejected, _diversity(found.frame[keep], space, varied),
                    found.out_of_time,
                )  # fmt: skip
            if len(found.frame) == 0:
                continue
            counts[kind] = len(found.frame)
            sparsity.extend(found.n_changed.tolist())
            diversity.append(found.diversity)
            cf_rows.append(
                _rescored(
                    model,
                    row,
                    loan_id=loan_id,
                    kind=kind,
                    found=found,
                    query=query,
                    varied=varied,
                    p0=p0,
                    target=target,
                )
            )
        servicer = dict(spaces).get("servicer")
        if servicer is not None and counts["servicer"] == 0:
            # no servicer lever reaches the target: offer the ones that come closest
            closest, rows = _closest(
                model, row, _query(row, servicer, medians), space=servicer, n=settings.n,
                loan_id=loan_id, p0=p0, target=target,
            )  # fmt: skip
            if rows is not None:
                counts["servicer"] = rows.height
                sparsity.extend(closest.n_changed.tolist())
                diversity.append(closest.diversity)
                cf_rows.append(rows)
        reached = any(bool(f["meets_target"].any()) for f in cf_rows)
        if reached:
            status = "found"
        elif counts["servicer"]:
            status = "closest"
            best = max(float(f["p_recover"].to_numpy().max()) for f in cf_rows)
            message = (
                f"no lever reaches p_recover {target:.3f}; the closest servicer levers are "
                f"shown (best {best:.3f}, up from {p0:.3f})"
            )
        elif out_of_time:
            status = "time_budget_spent"
            message = (
                f"no counterfactual found within the time budget "
                f"({settings.time_budget_seconds:g} s)"
            )
        else:
            message = (
                f"no counterfactual reaches p_recover {target:.3f} within the permitted "
                "levers and ranges"
            )
    return cf_rows, (
        {
            "loan_id": loan_id,
            "p_recover": p0,
            "target": target,
            "status": status,
            "n_servicer": counts["servicer"],
            "n_borrower_side": counts["borrower_side"],
            "sparsity": float(np.mean(sparsity)) if sparsity else None,
            "diversity": float(np.mean(diversity)) if diversity else None,
            "dice_rejected": rejected,
            "seconds": time.perf_counter() - start,
            "message": message,
        }
    )


_LOAN_SCHEMA: dict[str, Any] = {
    "loan_id": pl.String,
    "p_recover": pl.Float64,
    "target": pl.Float64,
    "status": pl.String,
    "n_servicer": pl.Int64,
    "n_borrower_side": pl.Int64,
    "sparsity": pl.Float64,
    "diversity": pl.Float64,
    "dice_rejected": pl.Int64,
    "seconds": pl.Float64,
    "message": pl.String,
}


def _empty_counterfactuals() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "loan_id": pl.String,
            "kind": pl.String,
            "rank": pl.Int64,
            ACTION: pl.String,
            DISCOUNT: pl.Float64,
            **dict.fromkeys(BORROWER_LEVERS, pl.Float64),
            "changes": pl.String,
            "n_changed": pl.Int64,
            "p_recover_before": pl.Float64,
            "p_recover": pl.Float64,
            "target": pl.Float64,
            "meets_target": pl.Boolean,
            "expected_collections_before": pl.Float64,
            "expected_collections": pl.Float64,
            "collections_change": pl.Float64,
            "cost": pl.Float64,
        }
    )


def _rescored(
    model: StrategyModel,
    row: pl.DataFrame,
    *,
    loan_id: str,
    kind: str,
    found: _Found,
    query: pd.DataFrame,
    varied: Sequence[str],
    p0: float,
    target: float,
) -> pl.DataFrame:
    """The chosen counterfactuals, re-scored in full by the engine."""
    frame = found.frame
    scorer = _LoanScorer(model, row, varied)
    acts, disc = scorer.levers(frame)
    offer = acts == SETTLEMENT
    disc = np.where(offer, disc, np.nan)
    rows = (
        scorer.rows(frame)
        if any(c in BORROWER_LEVERS for c in varied)
        else pl.concat([row] * len(frame))
    )
    scores = model.score(rows, actions=acts, discounts=disc)
    bau = model.score(row)
    return pl.DataFrame(
        {
            "loan_id": [loan_id] * len(frame),
            "kind": [kind] * len(frame),
            "rank": np.arange(1, len(frame) + 1),
            ACTION: acts.tolist(),
            DISCOUNT: pl.Series(disc, dtype=pl.Float64).fill_nan(None),
            **{c: rows[c].cast(pl.Float64) for c in BORROWER_LEVERS},
            "changes": _describe(frame, query, varied),
            "n_changed": found.n_changed,
            "p_recover_before": np.full(len(frame), p0),
            "p_recover": scores.p_recover,
            "target": np.full(len(frame), target),
            "meets_target": scores.p_recover >= target,
            "expected_collections_before": np.full(
                len(frame), float(bau.expected_collections_bau[0])
            ),
            "expected_collections": pl.Series(scores.expected_collections).fill_nan(None),
            "collections_change": pl.Series(
                (scores.expected_collections - bau.expected_collections_bau[0]).tolist(),
                dtype=pl.Float64,
            ).fill_nan(None),
            "cost": pl.Series(scores.cost.tolist(), dtype=pl.Float64).fill_nan(None),
        }
    )


def apply_counterfactuals(loans: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
    """The loans rows each counterfactual describes: borrower-side values applied.

    Parameters
    ----------
    loans
        The contract ``loans`` the counterfactuals were searched on.
    found
        :attr:`CounterfactualResult.counterfactuals` (or some of its rows).

    Returns
    -------
    polars.DataFrame
        One contract ``loans`` row per counterfactual, in its order; every column but the
        borrower-side levers is the loan's own. Score it with ``actions=found["action"]`` and
        ``discounts=found["settlement_discount"]`` to reproduce ``p_recover``.
    """
    order = found.select("loan_id").with_row_index("_cf")
    rows = order.join(loans, on="loan_id", how="left").sort("_cf")
    levers = found.select(BORROWER_LEVERS)
    return rows.drop("_cf").with_columns(
        pl.when(levers[c].is_not_null())
        .then(levers[c])
        .otherwise(rows[c])
        .cast(loans.schema[c])
        .alias(c)
        for c in BORROWER_LEVERS
    )


def summarize(result: CounterfactualResult) -> dict[str, Any]:
    """Batch summary: feasible share, most common levers, total cost and expected uplift.

    Notes
    -----
    Totals take each loan's first (sparsest) servicer counterfactual that reaches the target:
    the lever a servicer would pull. Loans already at the target count as neither feasible nor
    infeasible; loans given only the closest levers (status ``closest``) are counted apart.
    """
    loans = result.loans
    asked = loans.filter(pl.col("status") != "already_meets_target")
    n_asked = asked.height
    reaching = result.counterfactuals.filter(pl.col("meets_target"))
    first = reaching.filter((pl.col("kind") == "servicer") & (pl.col("rank") == 1))
    with_lever = reaching.filter(pl.col("kind") == "servicer")["loan_id"].n_unique()
    with_borrower = asked.filter(pl.col("n_borrower_side") > 0).height
    levers = Counter(
        f"{a} at {d:.0%}" if a == SETTLEMENT and d is not None else str(a)
        for a, d in first.select(ACTION, DISCOUNT).iter_rows()
    )
    change = first["collections_change"].drop_nulls()
    cost = first["cost"].drop_nulls()
    return {
        "n_loans": loans.height,
        "already_meet_target": loans.height - n_asked,
        "n_searched": n_asked,
        "share_with_servicer_lever": (with_lever / n_asked) if n_asked else None,
        "closest_only": asked.filter(pl.col("status") == "closest").height,
        "share_with_borrower_side_what_if": (with_borrower / n_asked) if n_asked else None,
        "time_budget_spent": asked.filter(pl.col("status") == "time_budget_spent").height,
        "most_common_levers": dict(levers.most_common(5)),
        "total_cost": float(cost.sum()) if cost.len() else None,
        "mean_p_recover_uplift": _mean(first["p_recover"] - first["p_recover_before"]),
        "total_expected_collections_change": float(change.sum()) if change.len() else None,
        "mean_sparsity": _mean(loans["sparsity"]),
        "mean_diversity": _mean(loans["diversity"]),
        "median_seconds_per_loan": _mean(loans["seconds"].median()),
    }


def _median(values: pl.Series) -> float:
    m = values.cast(pl.Float64).median()
    return float(m) if isinstance(m, int | float) else 0.0


def _mean(values: Any) -> float | None:
    if isinstance(values, pl.Series):
        values = values.drop_nulls().mean() if values.drop_nulls().len() else None
    return None if values is None else float(values)
