"""Fairness monitoring: whether the recovery model treats groups of borrowers alike.

For each protected or sensitive attribute (``gender``, age band, ``region``) and each of its
groups, on a book whose outcomes are known:

- **what the model says**: mean ``p_recover``;
- **what happened**: the realised recovery rate (the contract's recovery event, from the
  book's payments; loans whose recovery window is not fully observed are left out, as in
  training);
- **how well it ranks** within the group (AUC) and **whether its probabilities mean the same**
  in every group (calibration in the large: mean predicted minus realised);
- **decisions**: the share of the group receiving a favourable decision, and the ratio to the
  most favoured group (the four-fifths rule).

A flag is raised where a documented threshold is crossed *and* the difference is too large to
be noise (see :class:`FairnessSettings` and ``docs/fairness.md``). ``gender`` is read here and
nowhere else: it is never a model input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.metrics import roc_auc_score

from npl_engine.data import Dataset
from npl_engine.errors import NplError
from npl_engine.scoring import RecoveryModel, build_targets

if TYPE_CHECKING:
    from npl_engine.causal import Effects

__all__ = [
    "ATTRIBUTES",
    "DECISION_LABELS",
    "FAIRNESS_FILES",
    "FairnessReport",
    "FairnessSettings",
    "fairness_report",
    "policy_decisions",
]

FloatArray = npt.NDArray[np.float64]

#: Files a fairness folder holds (an existing folder holding only these may be replaced).
FAIRNESS_FILES = frozenset({"fairness.json", "fairness.parquet"})

#: The attributes monitored, in report order.
ATTRIBUTES: tuple[str, ...] = ("gender", "age_band", "region")

#: What each favourable decision means, in words (also written to fairness.json).
DECISION_LABELS: dict[str, str] = {
    "prioritised": (
        "prioritised for amicable workout: p_recover among the top share of the book "
        "(worked first with payment plans and settlement talks rather than sent to legal)"
    ),
    "policy_settlement": "offered a settlement (a discount on the debt) by the action plan",
    "policy_no_legal_action": "not sent to legal action by the action plan",
}


@dataclass(frozen=True, slots=True)
class FairnessSettings:
    """Decisions and thresholds of the fairness checks.

    Parameters
    ----------
    top_share
        The ``prioritised`` decision: the share of the book's loans with the highest
        ``p_recover`` (ties broken by loan order).
    min_ratio
        Four-fifths rule: a group whose favourable-decision rate is below ``min_ratio`` × the
        rate of the most favoured group is flagged (0.8, as in the US EEOC's Uniform
        Guidelines).
    max_calibration_gap
        A group whose calibration gap (mean predicted minus realised recovery) differs from the
        rest of the book's by at least this much (absolute, probability) is flagged.
    z_threshold
        Statistical guard: a flag also needs the difference to be at least this many standard
        errors from zero (3: about 0.3 % two-sided per test, so that some twenty groups tested
        together raise a false flag on noise in about one book in twenty).
    min_group_size
        Groups with fewer loans (fewer labelled loans, for AUC and calibration) are reported
        but never flagged nor taken as the reference group.
    age_edges
        Ages (years) where a new age band starts.
    """

    top_share: float = 0.2
    min_ratio: float = 0.8
    max_calibration_gap: float = 0.03
    z_threshold: float = 3.0
    min_group_size: int = 50
    age_edges: tuple[int, ...] = (30, 40, 50, 60, 70)

    def __post_init__(self) -> None:
        if not 0.0 < self.top_share < 1.0:
            msg = f"top_share must be between 0 and 1 (exclusive), got {self.top_share}"
            raise NplError(msg)
        if not 0.0 < self.min_ratio <= 1.0:
            msg = f"min_ratio must be in (0, 1], got {self.min_ratio}"
            raise NplError(msg)
        if self.max_calibration_gap <= 0 or self.z_threshold <= 0:
            msg = "max_calibration_gap and z_threshold must be positive"
            raise NplError(msg)
        if self.min_group_size < 2:
            msg = f"min_group_size must be at least 2, got {self.min_group_size}"
            raise NplError(msg)
        if list(self.age_edges) != sorted(set(self.age_edges)):
            msg = f"age_edges must be increasing, got {self.age_edges}"
            raise NplError(msg)


@dataclass(frozen=True, slots=True)
class FairnessReport:
    """Fairness metrics by group and the flags raised.

    Parameters
    ----------
    groups
        One row per attribute and group: ``attribute``, ``group``, ``n``, ``n_labelled``,
        ``mean_p_recover`` (all loans of the group), ``predicted`` and ``realised`` (mean
        ``p_recover`` and recovery rate over its labelled loans), ``calibration_gap``
        (predicted − realised), ``gap_vs_rest`` (the gap minus the gap of the attribute's other
        groups), ``gap_z``, ``auc``, ``calibration_flag``; per decision ``D``: ``D_rate``,
        ``D_ratio`` (to the most favoured group), ``D_z`` and ``D_flag``.
    flags
        One dictionary per flag: ``attribute``, ``group``, ``check``, ``message``.
    decisions
        Decision name → what it means.
    settings
        The thresholds used.
    n_loans, n_labelled
        Loans in the book, and those whose recovery window is fully observed.
    overall
        Book-wide ``predicted``, ``realised``, ``calibration_gap`` and ``auc``.
    missing
        Attribute → loans without it (companies have no gender or age), left out of its table.
    """

    groups: pl.DataFrame
    flags: tuple[dict[str, str], ...]
    decisions: dict[str, str]
    settings: FairnessSettings
    n_loans: int
    n_labelled: int
    overall: dict[str, float | None]
    missing: dict[str, int] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """Whether any flag was raised."""
        return bool(self.flags)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``fairness.json`` (NaN becomes ``None``)."""
        out: dict[str, Any] = _json_ready(
            {
                "flagged": self.flagged,
                "flags": list(self.flags),
                "n_loans": self.n_loans,
                "n_labelled": self.n_labelled,
                "excluded_censored": self.n_loans - self.n_labelled,
                "overall": self.overall,
                "missing": self.missing,
                "decisions": self.decisions,
                "settings": asdict(self.settings),
                "groups": {
                    a: self.groups.filter(pl.col("attribute") == a).drop("attribute").to_dicts()
                    for a in ATTRIBUTES
                },
            }
        )
        return out

    def save(self, folder: str | Path) -> Path:
        """Write ``fairness.json`` and ``fairness.parquet``: what ``npl fairness --out`` writes.

        The folder is written whole or not at all; an existing fairness folder is replaced.

        Returns
        -------
        Path
            ``folder``.
        """
        from npl_engine.data.writers import atomic_folder  # noqa: PLC0415

        with atomic_folder(folder, allowed=FAIRNESS_FILES) as staging:
            (staging / "fairness.json").write_text(json.dumps(self.to_dict(), indent=2) + "\n")
            self.groups.write_parquet(staging / "fairness.parquet")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> FairnessReport:
        """Read a folder written by :meth:`save` (or ``npl fairness``).

        Raises
        ------
        NplError
            If a file of the folder is missing or cannot be read (the message names it).
        """
        root = Path(folder)
        try:
            raw = json.loads((root / "fairness.json").read_text())
            groups = pl.read_parquet(root / "fairness.parquet")
            settings = {**raw["settings"], "age_edges": tuple(raw["settings"]["age_edges"])}
            return cls(
                groups=groups,
                flags=tuple(raw["flags"]),
                decisions=dict(raw["decisions"]),
                settings=FairnessSettings(**settings),
                n_loans=int(raw["n_loans"]),
                n_labelled=int(raw["n_labelled"]),
                overall={k: (math.nan if v is None else v) for k, v in raw["overall"].items()},
                missing=dict(raw["missing"]),
            )
        except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as exc:
            msg = (
                f"{root} is not a fairness folder written by `npl fairness --out`: "
                f"{type(exc).__name__}: {exc}"
            )
            raise NplError(msg) from exc


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _age_labels(edges: tuple[int, ...]) -> list[str]:
    """Age band labels, youngest first: "<30", "30-39", ..., "70+" for edges (30, 40, ..., 70)."""
    labels = [f"<{edges[0]}"]
    labels += [f"{lo}-{hi - 1}" for lo, hi in pairwise(edges)]
    return [*labels, f"{edges[-1]}+"]


def _age_band(edges: tuple[int, ...]) -> pl.Expr:
    """Each loan's age band, an Enum youngest first (null where the age is unknown)."""
    labels = _age_labels(edges)
    index = pl.sum_horizontal(*[(pl.col("age") >= e).cast(pl.Int32) for e in edges])
    band = index.replace_strict(list(range(len(labels))), labels, return_dtype=pl.Enum(labels))
    return pl.when(pl.col("age").is_not_null()).then(band)


def _top_share(p: FloatArray, share: float) -> npt.NDArray[np.bool_]:
    """Whether each loan is among the ``share`` of loans with the highest ``p``."""
    k = round(share * p.size)
    out = np.zeros(p.size, dtype=bool)
    if k:
        out[np.argsort(-p, kind="stable")[:k]] = True
    return out


def _auc(y: FloatArray, p: FloatArray, *, min_size: int) -> float:
    if y.size < min_size or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, p))


def fairness_report(
    model: RecoveryModel,
    book: Dataset,
    *,
    settings: FairnessSettings | None = None,
    decisions: pl.DataFrame | None = None,
    effects: Effects | str | Path | None = None,
    budget: float | None = None,
) -> FairnessReport:
    """Fairness metrics of ``model`` on ``book`` by gender, age band and region.

    Parameters
    ----------
    model
        A fitted or loaded recovery model.
    book
        A validated book (payments and an ``as_of_date``): realised recovery is measured from
        it with the model's own recovery definition.
    settings
        Decisions and thresholds (defaults: :class:`FairnessSettings`).
    decisions
        Further favourable decisions: ``loan_id`` and one Boolean column per decision (e.g.
        from :func:`policy_decisions`). ``prioritised`` is always computed.
    effects
        Effects of the collection actions (an :class:`~npl_engine.causal.Effects` or its
        folder): adds the decisions of the action plan on the book (settlement offered, legal
        action spared), as :func:`policy_decisions` makes them with the effects' costs.
    budget
        With ``effects``: the plan's total action cost; ``None``: no limit.

    Returns
    -------
    FairnessReport

    Notes
    -----
    Calibration gap of a group = mean ``p_recover`` − realised recovery rate over its labelled
    loans. Under a calibrated model the realised rate has variance Σ p(1 − p) / n², which gives
    the standard error of the gap; a group is compared with the rest of the attribute's
    groups so that a miscalibration shared by the whole book (drift) is not blamed on one
    group (it shows in ``overall``). A decision rate's ratio is taken to the highest rate among
    groups of at least ``min_group_size`` loans; its z-statistic compares the group with the
    rest of the attribute's groups (pooled two-proportion test).

    Examples
    --------
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> sim = simulate(SimulationSettings(n_loans=3000, seed=1))
    >>> book = sim.dataset()
    >>> model = RecoveryModel(baselines=False, grid=({"num_leaves": 15},)).fit(book)
    >>> report = fairness_report(model, book)
    >>> sorted(report.groups["attribute"].unique())
    ['age_band', 'gender', 'region']
    >>> import tempfile
    >>> FairnessReport.load(report.save(tempfile.mkdtemp())).n_loans == report.n_loans
    True
    """
    s = settings or FairnessSettings()
    if budget is not None and effects is None:
        msg = "budget is for the action plan: give effects too"
        raise NplError(msg)
    if effects is not None:
        if decisions is not None:
            msg = "give either decisions or effects (whose plan makes the decisions), not both"
            raise NplError(msg)
        from npl_engine.causal import Effects  # noqa: PLC0415 - EconML loads only when asked

        bundle = effects if isinstance(effects, Effects) else Effects.load(effects)
        decisions = policy_decisions(bundle.model, book.loans, bundle.costs, budget=budget)
    loans = book.loans.collect()
    if loans.height == 0:
        msg = "table loans has no rows: nothing to check"
        raise NplError(msg)
    model.check_columns(loans)
    _, x = model.features(loans.lazy())
    p = model.predict_proba(x)
    targets = build_targets(book, model.definition, (model.definition.horizon_months,))
    frame = loans.select(
        "loan_id",
        pl.col("gender").cast(pl.String),
        _age_band(s.age_edges).alias("age_band"),
        pl.col("region").cast(pl.String),
    ).with_columns(
        p=pl.Series(p),
        y=targets["recovered"].cast(pl.Float64),
        prioritised=pl.Series(_top_share(p, s.top_share)),
    )
    names = ["prioritised"]
    if decisions is not None:
        extra = [c for c in decisions.columns if c != "loan_id"]
        if "loan_id" not in decisions.columns or not extra:
            msg = "decisions: need a loan_id column and at least one Boolean decision column"
            raise NplError(msg)
        frame = frame.join(decisions, on="loan_id", how="left", maintain_order="left")
        unmatched = frame.filter(pl.any_horizontal(pl.col(extra).is_null()))
        if unmatched.height:
            msg = (
                f"decisions: {unmatched.height:,} loans of table loans have no decision "
                f"(e.g. loan_id {unmatched['loan_id'][0]})"
            )
            raise NplError(msg)
        names += extra
    labelled = frame.filter(pl.col("y").is_not_null())
    if labelled.height == 0:
        msg = (
            f"no loan of table loans has its {model.definition.horizon_months}-month recovery "
            f"window fully observed before as_of_date {book.as_of_date}: realised recovery "
            "cannot be measured (use an older book or a later --as-of)"
        )
        raise NplError(msg)
    y_all, p_all = labelled["y"].to_numpy(), labelled["p"].to_numpy()
    overall: dict[str, float | None] = {
        "predicted": float(p_all.mean()),
        "realised": float(y_all.mean()),
        "calibration_gap": float(p_all.mean() - y_all.mean()),
        "auc": _auc(y_all, p_all, min_size=2),
    }
    tables = [_attribute_table(frame, a, names, s) for a in ATTRIBUTES]
    groups = pl.concat([t for t in tables if t.height], how="diagonal_relaxed")
    return FairnessReport(
        groups=groups,
        flags=tuple(_flags(groups, names, s)),
        decisions={n: DECISION_LABELS.get(n, n) for n in names},
        settings=s,
        n_loans=frame.height,
        n_labelled=labelled.height,
        overall=overall,
        missing={a: int(frame[a].null_count()) for a in ATTRIBUTES},
    )


def _attribute_table(
    frame: pl.DataFrame, attribute: str, names: list[str], s: FairnessSettings
) -> pl.DataFrame:
    """Metrics of every group of one attribute (loans without the attribute left out)."""
    known = frame.filter(pl.col(attribute).is_not_null())
    if known.height == 0:
        return pl.DataFrame()
    lab = pl.col("y").is_not_null()
    table = (
        known.group_by(attribute)
        .agg(
            n=pl.len(),
            n_labelled=lab.sum(),
            mean_p_recover=pl.col("p").mean(),
            predicted=pl.col("p").filter(lab).mean(),
            realised=pl.col("y").mean(),
            variance=(pl.col("p") * (1 - pl.col("p"))).filter(lab).sum(),
            **{f"{d}_count": pl.col(d).cast(pl.Int64).sum() for d in names},
        )
        .rename({attribute: "group"})
        .sort("group")  # age bands: youngest first (an Enum sorts in its own order)
        .with_columns(
            pl.col("group").cast(pl.String),
            attribute=pl.lit(attribute),
            n_labelled=pl.col("n_labelled").cast(pl.Int64),
            n=pl.col("n").cast(pl.Int64),
        )
    )
    # Calibration: each group against the rest of the attribute's groups.
    n_lab = table["n_labelled"].to_numpy().astype(np.float64)
    sum_p = np.nan_to_num(table["predicted"].to_numpy() * n_lab)
    sum_y = np.nan_to_num(table["realised"].to_numpy() * n_lab)
    var = table["variance"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = (sum_p - sum_y) / n_lab
        rest_n = n_lab.sum() - n_lab
        rest_gap = (sum_p.sum() - sum_p - (sum_y.sum() - sum_y)) / rest_n
        se = np.sqrt(var / n_lab**2 + (var.sum() - var) / rest_n**2)
        gap_vs_rest = gap - rest_gap
        gap_z = gap_vs_rest / se
    big_enough = (n_lab >= s.min_group_size) & (rest_n >= s.min_group_size)
    calibration_flag = (
        big_enough
        & (np.abs(np.nan_to_num(gap_vs_rest)) >= s.max_calibration_gap)
        & (np.abs(np.nan_to_num(gap_z)) >= s.z_threshold)
    )
    auc = [
        _auc(
            g["y"].drop_nulls().to_numpy(),
            g.filter(pl.col("y").is_not_null())["p"].to_numpy(),
            min_size=s.min_group_size,
        )
        for g in (known.filter(pl.col(attribute).cast(pl.String) == v) for v in table["group"])
    ]
    table = table.with_columns(
        calibration_gap=pl.Series(gap),
        gap_vs_rest=pl.Series(gap_vs_rest),
        gap_z=pl.Series(gap_z),
        auc=pl.Series(auc, dtype=pl.Float64),
        calibration_flag=pl.Series(calibration_flag),
    )
    n = table["n"].to_numpy().astype(np.float64)
    for d in names:
        count = table[f"{d}_count"].to_numpy().astype(np.float64)
        rate, ratio, z, flag = _decision_ratios(count, n, s)
        table = table.with_columns(
            pl.Series(f"{d}_rate", rate),
            pl.Series(f"{d}_ratio", ratio),
            pl.Series(f"{d}_z", z),
            pl.Series(f"{d}_flag", flag),
        )
    columns = [
        "attribute", "group", "n", "n_labelled", "mean_p_recover", "predicted", "realised",
        "calibration_gap", "gap_vs_rest", "gap_z", "auc", "calibration_flag",
        *[f"{d}_{k}" for d in names for k in ("rate", "ratio", "z", "flag")],
    ]  # fmt: skip
    return table.select(columns).fill_nan(None)


def _decision_ratios(
    count: FloatArray, n: FloatArray, s: FairnessSettings
) -> tuple[FloatArray, FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Rate of each group, its ratio to the most favoured group, the z-statistic and the flag.

    The z-statistic compares the group with the rest of the attribute's groups (pooled
    two-proportion test), not with the most favoured group: among ten regions the one with the
    highest rate owes part of it to chance, and testing against it would flag noise.
    """
    rate = count / n
    eligible = n >= s.min_group_size
    nan = np.full_like(rate, np.nan)
    if not eligible.any():
        return rate, nan, nan, np.zeros(rate.size, dtype=bool)
    best = float(rate[eligible].max())
    rest_count, rest_n = count.sum() - count, n.sum() - n
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rate / best if best > 0 else np.ones_like(rate)
        pooled = count.sum() / n.sum()
        se = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / rest_n))
        z = (rate - rest_count / rest_n) / se
    flag = (
        eligible
        & (rest_n >= s.min_group_size)
        & (np.nan_to_num(ratio, nan=1.0) < s.min_ratio)
        & (np.nan_to_num(z) <= -s.z_threshold)
    )
    return rate, ratio, z, flag


def _flags(groups: pl.DataFrame, names: list[str], s: FairnessSettings) -> list[dict[str, str]]:
    """Readable flags, calibration first, then each decision."""
    out: list[dict[str, str]] = []
    for r in groups.filter(pl.col("calibration_flag")).iter_rows(named=True):
        direction = "overstates" if r["gap_vs_rest"] > 0 else "understates"
        out.append(
            {
                "attribute": r["attribute"],
                "group": r["group"],
                "check": "calibration",
                "message": (
                    f"{r['attribute']} = {r['group']}: the model {direction} recovery by "
                    f"{abs(r['gap_vs_rest']):.1%} points more than for the other groups "
                    f"(predicted {r['predicted']:.1%}, realised {r['realised']:.1%}, "
                    f"{r['n_labelled']:,} loans; z = {r['gap_z']:+.1f}; threshold "
                    f"{s.max_calibration_gap:.1%} and |z| ≥ {s.z_threshold:g})"
                ),
            }
        )
    out.extend(
        {
            "attribute": r["attribute"],
            "group": r["group"],
            "check": d,
            "message": (
                f"{r['attribute']} = {r['group']}: {d} rate {r[f'{d}_rate']:.1%} is "
                f"{r[f'{d}_ratio']:.2f} × the most favoured group's (four-fifths rule: "
                f"< {s.min_ratio:g}; {r['n']:,} loans; z = {r[f'{d}_z']:+.1f})"
            ),
        }
        for d in names
        for r in groups.filter(pl.col(f"{d}_flag")).iter_rows(named=True)
    )
    return out


def policy_decisions(
    effects_model: Any, loans: pl.LazyFrame, costs: Any, *, budget: float | None = None
) -> pl.DataFrame:
    """Favourable decisions of the budgeted action plan (see ``npl policy``).

    Parameters
    ----------
    effects_model
        A fitted :class:`~npl_engine.causal.ActionEffectModel`.
    loans
        Validated contract ``loans``.
    costs
        :class:`~npl_engine.causal._policy.ActionCosts`.
    budget
        Total action cost allowed; ``None``: no limit (every loan gets the action with the
        highest positive expected net gain, if any).

    Returns
    -------
    pl.DataFrame
        ``loan_id``, and ``policy_settlement`` (the plan offers a settlement) and
        ``policy_no_legal_action`` (the plan does not send the loan to legal action) where the
        effect model knows those actions.
    """
    from npl_engine.causal import plan_actions, policy_inputs  # noqa: PLC0415

    inputs = policy_inputs(effects_model, loans, costs, with_bau=False)
    limit = math.inf if budget is None else budget
    plan = plan_actions(
        inputs.loan_ids, inputs.uplift, inputs.cost, effects_model.actions_, budget=limit
    ).plan
    columns: dict[str, pl.Expr] = {}
    if "settlement_offer" in effects_model.actions_:
        columns["policy_settlement"] = pl.col("action") == "settlement_offer"
    if "legal_action" in effects_model.actions_:
        columns["policy_no_legal_action"] = pl.col("action") != "legal_action"
    if not columns:
        msg = "the effect model knows neither settlement_offer nor legal_action: no decision"
        raise NplError(msg)
    return plan.select("loan_id", **columns)
