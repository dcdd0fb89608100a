"""The recovery model: p_recover and the expected collections curve of every loan."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import polars as pl
from sklearn.isotonic import IsotonicRegression

from npl_engine import __version__
from npl_engine.base import check_is_fitted
from npl_engine.data import Dataset
from npl_engine.data.writers import atomic_folder
from npl_engine.errors import NplError
from npl_engine.features import (
    NUMERIC_FEATURES,
    FeatureMatrix,
    build_features,
    feature_matrix,
    learn_vocabularies,
)
from npl_engine.scoring._baselines import baseline_oof_predictions
from npl_engine.scoring._card import model_card
from npl_engine.scoring._classifier import DEFAULT_GRID, RecoveryClassifier
from npl_engine.scoring._collections import CHANNELS, CollectionsModel, default_knots
from npl_engine.scoring._definition import RecoveryDefinition
from npl_engine.scoring._folds import cutoff_folds, loan_folds
from npl_engine.scoring._metrics import classification_metrics
from npl_engine.scoring._targets import build_targets
from npl_engine.stability import ReferenceProfile

__all__ = ["MODEL_FORMAT", "RecoveryModel", "Scores"]

FloatArray = npt.NDArray[np.float64]
Progress = Callable[[str], None]

#: Version of the model folder's layout.
MODEL_FORMAT = 2
#: What a model folder holds (an existing folder with only these may be replaced).
MODEL_FILES = frozenset({"model.json", "model_card.md", "classifier.txt", "collections"})

#: Optional loans columns the features read: a tape lacking one the model learned from is refused.
_SOURCE_COLUMNS = (
    "monthly_income",
    "debt_to_income",
    "liquid_assets",
    "on_time_payment_rate",
    "min_payment_share",
    "delinquencies_24m",
    "last_payment_date",
    "credit_score",
    "account_age_months",
    "credit_inquiries_12m",
    "negative_records",
    "employment_years",
    "residence_years",
    "employment_status",
)


@dataclass(frozen=True, slots=True)
class Scores:
    """Scores of a set of loans.

    Parameters
    ----------
    scores
        One row per loan: ``loan_id``, ``exposure``, ``p_recover``, ``expected_collections``,
        ``expected_borrower``, ``expected_collateral``, ``expected_recovery_rate``.
    curves
        Long form: ``loan_id``, ``month`` (1..H), ``expected_collections``,
        ``expected_borrower``, ``expected_collateral`` (currency, undiscounted).
    """

    scores: pl.DataFrame
    curves: pl.DataFrame


def _cutoff_month(loans: pl.DataFrame) -> npt.NDArray[np.int64]:
    return (
        (loans["cutoff_date"].dt.year() * 12 + loans["cutoff_date"].dt.month())
        .cast(pl.Int64)
        .to_numpy()
    )


def _dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 of the dataset's files (or of its rows when it was not read from disk)."""
    digest = hashlib.sha256()
    if dataset.source is not None and Path(dataset.source).is_dir():
        for path in sorted(Path(dataset.source).iterdir()):
            if path.is_file() and path.stem in ("loans", "actions", "payments"):
                digest.update(path.name.encode())
                digest.update(path.read_bytes())
    else:
        for frame in (dataset.loans, dataset.actions, dataset.payments):
            if frame is not None:
                digest.update(frame.collect().hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def _cross_fitted_calibration(
    raw: FloatArray, y: FloatArray, folds: npt.NDArray[np.int64]
) -> FloatArray:
    """Calibrated out-of-fold predictions where no loan's label calibrated its own prediction."""
    out = np.empty_like(raw)
    for f in np.unique(folds):
        train, valid = folds != f, folds == f
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            raw[train], y[train]
        )
        out[valid] = iso.predict(raw[valid])
    return out


@dataclass(kw_only=True)
class RecoveryModel:
    """Per-loan calibrated probability of recovery and expected monthly collections.

    Parameters
    ----------
    definition
        Recovery definition and valuation horizon.
    n_folds
        Cross-validation folds, split by cut-off date.
    grid
        LightGBM settings tried for the classifier.
    baselines
        Also fit the logistic-regression and random-forest baselines for the model card.
    calibrate_segments
        Rescale expected collections per segment and channel by their out-of-fold ratio of
        realised to predicted (see ``docs/models.md``); the ratios are in the model card
        either way.
    seed
        Seed of every random choice in fitting.

    Attributes
    ----------
    classifier_, collections_
        The fitted parts.
    vocabularies_
        Categorical vocabularies seen in training.
    metrics_
        Cross-validated metrics of LightGBM and the baselines, and training facts.
    info_
        Provenance: engine and package versions, data fingerprint, sizes, dates.

    Examples
    --------
    >>> from npl_engine.data.simulator import SimulationSettings, simulate
    >>> sim = simulate(SimulationSettings(n_loans=3000, seed=1))
    >>> book = sim.dataset()
    >>> model = RecoveryModel(baselines=False, grid=({"num_leaves": 15},)).fit(book)
    >>> model.score(book).scores["p_recover"].is_between(0, 1).all()
    True

    ``fit`` returns the model; ``save`` writes a folder and returns its path, which ``load``
    reads back (``RecoveryModel.load(model.save("model"))`` scores exactly as ``model``); a
    tape may be given as a :class:`~npl_engine.data.Dataset` or as a frame of its loans
    (``model.score(sim.loans)``).
    """

    definition: RecoveryDefinition = field(default_factory=RecoveryDefinition)
    n_folds: int = 4
    grid: tuple[dict[str, Any], ...] = DEFAULT_GRID
    baselines: bool = True
    calibrate_segments: bool = True
    seed: int = 0
    classifier_: RecoveryClassifier = field(init=False, repr=False)
    collections_: CollectionsModel = field(init=False, repr=False)
    vocabularies_: dict[str, tuple[str, ...]] = field(init=False, repr=False)
    metrics_: dict[str, Any] = field(init=False, repr=False)
    info_: dict[str, Any] = field(init=False, repr=False)
    used_columns_: tuple[str, ...] = field(init=False, repr=False)
    reference_: ReferenceProfile | None = field(init=False, repr=False, default=None)

    # -- fitting -----------------------------------------------------------------------------

    def fit(self, book: Dataset, *, progress: Progress | None = None) -> RecoveryModel:
        """Learn from a validated book.

        Parameters
        ----------
        book
            Loans, payments (and actions, unused here) with an ``as_of_date``.
        progress
            Called with a short description before each step.
        """
        say = progress or (lambda _: None)
        say("building features and targets")
        knots = default_knots(self.definition.valuation_horizon_months)
        loans = book.loans.collect()
        features = build_features(loans.lazy()).collect()
        targets = build_targets(book, self.definition, knots)
        self.vocabularies_ = learn_vocabularies(features)
        self.used_columns_ = tuple(
            c for c in _SOURCE_COLUMNS if loans[c].null_count() < loans.height
        )
        x = feature_matrix(features, self.vocabularies_)
        notes: list[str] = []
        folds = self._folds(_cutoff_month(loans), notes)

        labelled = targets["recovered"].is_not_null().to_numpy()
        if labelled.sum() < 100:
            msg = (
                f"only {int(labelled.sum())} loans have their "
                f"{self.definition.horizon_months}-month recovery window fully observed before "
                f"as_of_date {book.as_of_date} (at least 100 are needed, out of "
                f"{loans.height:,} loans): too few to train"
            )
            raise NplError(msg)
        y = targets["recovered"].to_numpy()[labelled].astype(float)
        if y.min() == y.max():
            outcome = "recovered" if y[0] else "did not recover"
            n_payments = (
                0 if book.payments is None else book.payments.select(pl.len()).collect().item()
            )
            msg = (
                f"every one of the {y.size} loans with a fully observed recovery window "
                f"{outcome} (table payments has {n_payments} rows): a model needs both "
                "outcomes to learn from"
            )
            raise NplError(msg)
        xl = FeatureMatrix(x.values[labelled], x.names, x.categorical)
        fl = folds[labelled]
        if np.unique(fl).size < 2:  # the labelled (older) loans all fell in one fold
            fl = self._folds(_cutoff_month(loans)[labelled], notes)
        n_folds = len(np.unique(fl))
        say(f"tuning the recovery classifier ({len(self.grid)} settings × {n_folds} folds)")
        self.classifier_ = RecoveryClassifier(grid=self.grid, seed=self.seed).fit(xl, y, fl)

        say(f"fitting collections models (up to {len(CHANNELS)} channels × {len(knots)} knots)")
        exposure = targets["exposure"].to_numpy()
        y_cum = {
            (ch, k): targets[f"{ch}_{k}"].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for ch in CHANNELS
            for k in knots
        }
        try:
            self.collections_ = CollectionsModel(
                knots=knots,
                seed=self.seed,
                segments=self.vocabularies_["segment"],
                calibrate=self.calibrate_segments,
            ).fit(x, y_cum, exposure, folds)
        except ValueError as exc:
            msg = f"cannot learn collections from this book's payments table: {exc}"
            raise NplError(msg) from exc

        self.reference_ = ReferenceProfile.from_features(features, self.predict_proba(x))
        calibrated = _cross_fitted_calibration(self.classifier_.oof_raw_, y, fl)
        models = {
            "lightgbm (calibrated)": calibrated,
            "lightgbm (uncalibrated)": self.classifier_.oof_raw_,
        }
        if self.baselines:
            say("fitting baselines on the same folds")
            models |= baseline_oof_predictions(xl, y, fl, seed=self.seed)
        self.metrics_ = {
            "classification": {name: classification_metrics(y, p) for name, p in models.items()},
            "n_loans": int(loans.height),
            "n_labelled": int(labelled.sum()),
            "recovery_rate": float(y.mean()),
            "n_folds": len(np.unique(fl)),
            "cv": self.classifier_.cv_results_,
            "tuned_params": dict(self.classifier_.params_),
            "n_rounds": self.classifier_.n_rounds_,
            "collections_observed": {
                str(k): int(targets[f"borrower_{k}"].is_not_null().sum()) for k in knots
            },
            "collections_horizon_months": self.collections_.horizon_months,
            "collections_calibration": self.collections_.calibration_,
            "notes": notes + self.collections_.notes_,
        }
        self.info_ = {
            "engine_version": __version__,
            "model_format": MODEL_FORMAT,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data_fingerprint": _dataset_fingerprint(book),
            "as_of_date": book.as_of_date.isoformat() if book.as_of_date else None,
            "cutoff_range": [str(loans["cutoff_date"].min()), str(loans["cutoff_date"].max())],
            "packages": {p: version(p) for p in ("lightgbm", "polars", "numpy", "scikit-learn")},
        }
        return self

    def _folds(
        self, cutoff_month: npt.NDArray[np.int64], notes: list[str]
    ) -> npt.NDArray[np.int64]:
        """Folds by cut-off date; by loan (at random) when all loans share one cut-off month."""
        try:
            return cutoff_folds(cutoff_month, self.n_folds)
        except ValueError:
            notes.append(
                f"All {cutoff_month.size:,} loans share one cut-off month: folds are drawn at "
                "random by loan, so the metrics do not measure how the model ages over time."
            )
            return loan_folds(cutoff_month.size, self.n_folds, seed=self.seed)

    @property
    def horizon_months(self) -> int:
        """Months of the collections curves: the valuation horizon, or less for a short book."""
        self._check_fitted()
        return self.collections_.horizon_months

    # -- prediction --------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        check_is_fitted(self, "classifier_")

    def check_columns(self, loans: pl.DataFrame | pl.LazyFrame) -> None:
        """Refuse loans lacking a column the model learned from (absent, or empty throughout).

        A lazy frame is checked with one streaming query (null counts), never held whole.
        """
        frame = loans.lazy()
        names = frame.collect_schema().names()
        present = [c for c in self.used_columns_ if c in names]
        counts = frame.select(
            pl.len().alias("__npl_rows"), *(pl.col(c).null_count() for c in present)
        ).collect(engine="streaming")
        rows = counts["__npl_rows"].item()
        missing = [c for c in self.used_columns_ if c not in present or counts[c].item() == rows]
        if missing:
            msg = (
                f"loans: column(s) {', '.join(missing)} are absent or empty, but the model was "
                "trained with them; scores would silently lose that information. Provide them, "
                "or train a model on a book without them."
            )
            raise NplError(msg)

    def features(self, loans: pl.LazyFrame) -> tuple[pl.DataFrame, FeatureMatrix]:
        """Features of ``loans`` (frame and encoded matrix) as the model sees them."""
        self._check_fitted()
        frame = build_features(loans).collect()
        return frame, feature_matrix(frame, self.vocabularies_)

    def predict_proba(self, x: FeatureMatrix) -> FloatArray:
        """Calibrated probability of recovery for encoded features."""
        self._check_fitted()
        return self.classifier_.predict_proba(x)

    def collateral_totals(self, loans: pl.DataFrame, changes: Sequence[float]) -> FloatArray:
        """Expected collateral-sale collections over the horizon (money) under value shocks.

        Parameters
        ----------
        loans
            Validated contract ``loans``.
        changes
            Relative changes applied to every ``collateral_value`` (-0.2 = a 20 % fall).

        Returns
        -------
        FloatArray
            Shape (n, len(changes)): the collateral total model's prediction for each loan with
            its collateral value shocked by each change. The three collateral features are
            recomputed (cover, net cover after senior liens, senior-lien share); senior liens
            stay as they are. Loans without collateral get 0 throughout.
        """
        self._check_fitted()
        frame, x = self.features(loans.lazy())
        exposure = frame["exposure"].to_numpy()
        value = loans["collateral_value"].fill_null(0.0).to_numpy().astype(np.float64)
        liens = loans["senior_liens"].fill_null(0.0).to_numpy().astype(np.float64)
        secured = np.flatnonzero(value > 0)
        col = {n: x.names.index(n) for n in ("collateral_cover", "net_collateral_cover",
                                             "senior_lien_share")}  # fmt: skip
        base = x.values[secured]
        out = np.zeros((loans.height, len(changes)))
        for j, change in enumerate(changes):
            shocked = value[secured] * (1.0 + change)
            rows = base.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                e = exposure[secured]
                rows[:, col["collateral_cover"]] = np.where(e > 0, shocked / e, np.nan)
                net = np.maximum(shocked - liens[secured], 0.0)
                rows[:, col["net_collateral_cover"]] = np.where(e > 0, net / e, np.nan)
                share = np.where(shocked > 0, liens[secured] / shocked, np.nan)
                rows[:, col["senior_lien_share"]] = share
            shocked_x = FeatureMatrix(rows, x.names, x.categorical)
            shocked_total = self.collections_.predict_total(shocked_x, ("collateral",))
            out[secured, j] = shocked_total["collateral"] * e
        return out

    @staticmethod
    def expected_totals(
        totals: dict[str, FloatArray], exposure: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Expected borrower and collateral collections over the horizon, in currency.

        ``totals`` is ``collections_.predict_total(x)`` (shares of exposure). The scores and the
        service both take their totals from here, so that they agree to the last bit; the
        monthly curves add up to the same totals up to rounding.
        """
        return totals["borrower"] * exposure, totals["collateral"] * exposure

    def score(self, loans: Dataset | pl.LazyFrame | pl.DataFrame) -> Scores:
        """Score loans: probability of recovery and the expected collections curve.

        Parameters
        ----------
        loans
            A validated tape or book (:class:`~npl_engine.data.Dataset`, e.g. from
            :func:`~npl_engine.data.read_dataset`), or its contract ``loans`` as a Polars
            frame. Only the loans are read.

        Returns
        -------
        Scores
            Per-loan scores and the long-form monthly curve.

        Notes
        -----
        ``expected_collections`` is gross and undiscounted over months 1..H (H = the
        definition's valuation horizon), under business-as-usual collection as in the book.
        """
        self._check_fitted()
        table = loans.loans if isinstance(loans, Dataset) else loans
        collected = table.collect() if isinstance(table, pl.LazyFrame) else table
        self.check_columns(collected)
        frame, x = self.features(collected.lazy())
        p = self.predict_proba(x)
        exposure = frame["exposure"].to_numpy()
        totals = self.collections_.predict_total(x)
        total_b, total_c = self.expected_totals(totals, exposure)
        monthly = self.collections_.predict_monthly(x, totals)
        borrower = monthly["borrower"] * exposure[:, None]
        collateral = monthly["collateral"] * exposure[:, None]
        scores = pl.DataFrame(
            {
                "loan_id": frame["loan_id"],
                "exposure": exposure,
                "p_recover": p,
                "expected_collections": total_b + total_c,
                "expected_borrower": total_b,
                "expected_collateral": total_c,
                "expected_recovery_rate": np.where(
                    exposure > 0, (total_b + total_c) / np.maximum(exposure, 1e-12), 0.0
                ),
            }
        )
        n, horizon = borrower.shape
        # Long form straight from the (loan, month) arrays: row-major order is loan by loan,
        # month by month, the rows' order.
        curves = pl.DataFrame(
            {
                "loan_id": frame["loan_id"].gather(np.repeat(np.arange(n), horizon)),
                "month": np.tile(np.arange(1, horizon + 1, dtype=np.int16), n),
                "expected_collections": (borrower + collateral).reshape(-1),
                "expected_borrower": borrower.reshape(-1),
                "expected_collateral": collateral.reshape(-1),
            }
        )
        return Scores(scores=scores, curves=curves)

    # -- persistence -------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the model folder: boosters, calibrator, metadata and ``model_card.md``.

        The folder is written whole or not at all; an existing model folder is replaced, any
        other non-empty folder is refused.

        Returns
        -------
        Path
            The folder written, which :meth:`load` reads back.
        """
        self._check_fitted()
        with atomic_folder(folder, allowed=MODEL_FILES) as staging:
            self._write(staging)
        return Path(folder)

    def _write(self, folder: Path) -> None:
        (folder / "classifier.txt").write_text(self.classifier_.booster_.model_to_string())
        col_dir = folder / "collections"
        col_dir.mkdir()
        for (channel, k), booster in self.collections_.boosters_.items():
            (col_dir / f"{channel}_{k:03d}.txt").write_text(booster.model_to_string())
        for channel, booster in self.collections_.totals_.items():
            (col_dir / f"{channel}_total.txt").write_text(booster.model_to_string())
        iso = self.classifier_.calibrator_
        meta = {
            "info": self.info_,
            "definition": asdict(self.definition),
            "knots": list(self.collections_.knots_),
            "requested_knots": list(self.collections_.knots),
            "zero_intervals": [f"{c}_{k}" for c, k in sorted(self.collections_.zero_)],
            "collections_notes": list(self.collections_.notes_),
            "collections_factors": {
                channel: dict(zip(self.collections_.segments, f.tolist(), strict=True))
                for channel, f in self.collections_.factors_.items()
            },
            "feature_names": list(NUMERIC_FEATURES) + list(self.vocabularies_),
            "vocabularies": {k: list(v) for k, v in self.vocabularies_.items()},
            "used_columns": list(self.used_columns_),
            "calibrator": {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()},
            "classifier": {
                "params": self.classifier_.params_,
                "n_rounds": self.classifier_.n_rounds_,
            },
            "collections_best_iteration": {
                **{
                    f"{c}_{k}": b.best_iteration
                    for (c, k), b in self.collections_.boosters_.items()
                },
                **{f"{c}_total": b.best_iteration for c, b in self.collections_.totals_.items()},
            },
            "metrics": self.metrics_,
            "settings": {
                "n_folds": self.n_folds,
                "seed": self.seed,
                "grid": list(self.grid),
                "calibrate_segments": self.calibrate_segments,
            },
            "reference": None if self.reference_ is None else self.reference_.to_dict(),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        (folder / "model_card.md").write_text(model_card(meta))

    @classmethod
    def load(cls, folder: str | Path) -> RecoveryModel:
        """Read a model folder written by :meth:`save`.

        Returns
        -------
        RecoveryModel
            The fitted model; it scores exactly as the model that was saved.

        Raises
        ------
        NplError
            If the folder is not a model, or was written by another engine version.
        """
        folder = Path(folder)
        meta_path = folder / "model.json"
        if not meta_path.is_file():
            msg = f"{folder} is not a model folder (no model.json); train one with `npl train`"
            raise NplError(msg)
        meta = json.loads(meta_path.read_text())
        info = meta["info"]
        if info.get("model_format") != MODEL_FORMAT or info.get("engine_version") != __version__:
            msg = (
                f"{folder} was trained with npl_engine {info.get('engine_version')} "
                f"(model format {info.get('model_format')}); this is npl_engine {__version__} "
                f"(format {MODEL_FORMAT}). Retrain it with `npl train`."
            )
            raise NplError(msg)
        model = cls(
            definition=RecoveryDefinition(**meta["definition"]),
            n_folds=meta["settings"]["n_folds"],
            grid=tuple(meta["settings"]["grid"]),
            seed=meta["settings"]["seed"],
            calibrate_segments=meta["settings"]["calibrate_segments"],
        )
        clf = RecoveryClassifier(seed=model.seed)
        clf.booster_ = lgb.Booster(model_str=(folder / "classifier.txt").read_text())
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        cx, cy = np.array(meta["calibrator"]["x"]), np.array(meta["calibrator"]["y"])
        iso.fit(cx, cy)
        clf.calibrator_ = iso
        clf.params_ = meta["classifier"]["params"]
        clf.n_rounds_ = meta["classifier"]["n_rounds"]
        knots = tuple(meta["knots"])
        segments = tuple(meta["vocabularies"]["segment"])
        col = CollectionsModel(
            knots=tuple(meta["requested_knots"]),
            seed=model.seed,
            segments=segments,
            calibrate=model.calibrate_segments,
        )
        col.knots_ = knots
        col.factors_ = {
            channel: np.array([by_segment[s] for s in segments], dtype=np.float64)
            for channel, by_segment in meta["collections_factors"].items()
        }
        col.calibration_ = meta["metrics"]["collections_calibration"]
        col.zero_ = set()
        col.notes_ = list(meta["collections_notes"])
        col.boosters_ = {}
        zero = set(meta["zero_intervals"])
        col.totals_ = {  # an unsecured book has no collateral models
            channel: lgb.Booster(model_str=path.read_text())
            for channel in CHANNELS
            if (path := folder / "collections" / f"{channel}_total.txt").is_file()
        }
        for channel in col.totals_:
            for k in knots:
                if f"{channel}_{k}" in zero:  # learnt as zero: no booster was written
                    col.zero_.add((channel, k))
                    continue
                text = (folder / "collections" / f"{channel}_{k:03d}.txt").read_text()
                col.boosters_[(channel, k)] = lgb.Booster(model_str=text)
        model.classifier_ = clf
        model.collections_ = col
        model.vocabularies_ = {k: tuple(v) for k, v in meta["vocabularies"].items()}
        model.used_columns_ = tuple(meta["used_columns"])
        model.metrics_ = meta["metrics"]
        model.info_ = info
        reference = meta.get("reference")
        model.reference_ = None if reference is None else ReferenceProfile.from_dict(reference)
        return model
