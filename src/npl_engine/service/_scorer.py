"""What the service computes: scores, reason codes and recommendations for batches of requests.

Requests that arrive while a batch is being computed are scored together in the next batch
(see :mod:`._process`): one pass of the feature pipeline and the boosters serves them all, so
the fixed cost of each step is paid per batch, not per request. A batch never
mixes outputs between requests: every output of a loan depends on that loan only, and reason
codes call a value "low" or "high" against the loans of the same request, as ``npl score
--explain`` does against the loans of the same tape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from npl_engine import __version__
from npl_engine.audit import RunRecord, decision_rows, files_fingerprint, new_run_id, run_rows
from npl_engine.errors import NplError
from npl_engine.explain import (
    Attribution,
    LoanExplanations,
    explain_collections,
    explain_p_recover,
    prepare_explanations,
    reason_codes,
)
from npl_engine.features import FeatureMatrix, build_features, feature_matrix
from npl_engine.scoring import RecoveryModel
from npl_engine.service._schema import REASON_TOP, Job, Outcome, loans_frame

__all__ = ["Engine"]

_OUTPUT_KEYS = ("p_recover", "expected_collections")


@dataclass
class Engine:
    """The loaded models.

    Lives in the service's engine process (:mod:`._process`). ``score`` and ``recommend`` only
    compute: the records they return name their run ids, and the recording process commits
    them.

    Parameters
    ----------
    model_dir
        Recovery model folder (``npl train``).
    effects_dir
        Effect model folder (``npl effects``), or ``None``.
    recording
        Whether to build decision records (``False`` when the service records nothing).
    """

    model_dir: Path
    effects_dir: Path | None = None
    recording: bool = True
    model: RecoveryModel = field(init=False)
    model_fingerprint: str = field(init=False)
    effects: Any = field(init=False, default=None)
    effects_fingerprint: str | None = field(init=False, default=None)
    costs: Any = field(init=False, default=None)
    _model_ids: dict[str, str | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.model = RecoveryModel.load(self.model_dir)
        # Reason codes explain a few loans per batch: compiled TreeSHAP tables, built once.
        prepare_explanations(self.model)
        self.model_fingerprint = files_fingerprint(self.model_dir)
        if self.effects_dir is not None:
            self._load_effects(self.effects_dir)
        # The model ids of decision records: resolved once, not on every batch.
        self._model_ids = {
            "serve:score": str(Path(self.model_dir).resolve()),
            "serve:recommend": str(Path(self.effects_dir).resolve()) if self.effects_dir else None,
        }

    def _load_effects(self, folder: Path) -> None:
        # econml and friends are heavy: loaded only when the service has an effect model.
        from npl_engine.causal import Effects  # noqa: PLC0415

        bundle = Effects.load(folder)
        self.costs = bundle.costs
        self.effects = bundle.model
        self.effects_fingerprint = files_fingerprint(folder)

    def describe(self) -> dict[str, Any]:
        """What ``/v1/model`` tells of the loaded models beyond their files."""
        return {
            "model_fingerprint": self.model_fingerprint,
            "effects_fingerprint": self.effects_fingerprint,
            "actions": list(self.effects.actions_) if self.effects is not None else None,
            "costs": self.costs.to_dict() if self.costs is not None else None,
        }

    # -- scoring -------------------------------------------------------------------------

    def score(self, jobs: Sequence[Job]) -> Outcome:
        """Score a batch of requests: one response body and one run record per job."""
        sizes = [len(j.loans) for j in jobs]
        frame = loans_frame([loan for j in jobs for loan in j.loans])
        # In-memory frames of up to a few hundred loans: optimising the plan costs more than it
        # saves (0.80 -> 0.70 ms for 50 loans, 0.86 -> 0.78 ms for 1,000; same frame).
        features = build_features(frame.lazy()).collect(optimizations=pl.QueryOptFlags.none())
        x = feature_matrix(features, self.model.vocabularies_)
        exposure = features["exposure"].to_numpy()
        p = self.model.predict_proba(x)
        # As in RecoveryModel.score, so that the numbers are the same to the last bit; the
        # service returns totals, so the timing models (18 boosters) are not run.
        borrower, collateral = self.model.expected_totals(
            self.model.collections_.predict_total(x), exposure
        )
        collections = borrower + collateral
        rate = np.where(exposure > 0, collections / np.maximum(exposure, 1e-12), 0.0)
        starts = np.cumsum([0, *sizes])
        reasons = self._reasons(jobs, starts, features, x, exposure)
        outputs = pl.DataFrame(
            {
                "loan_id": frame["loan_id"],
                "exposure": exposure,
                "p_recover": p,
                "expected_collections": collections,
                "expected_recovery_rate": rate,
            }
        )
        run_ids, runs, decisions = self._records(
            jobs, starts, frame, outputs, reasons, command="serve:score"
        )
        loan_ids = frame["loan_id"].to_list()
        bodies = []
        for i, job in enumerate(jobs):
            rows = range(starts[i], starts[i + 1])
            results = []
            for seq, r in enumerate(rows, start=1):
                item: dict[str, Any] = {
                    "loan_id": loan_ids[r],
                    "p_recover": float(p[r]),
                    "expected_collections": float(collections[r]),
                    "expected_recovery_rate": float(rate[r]),
                    "exposure": float(exposure[r]),
                }
                if job.reasons:
                    item["reasons"] = reasons[r]
                item["decision_id"] = f"{run_ids[i]}:{seq}" if run_ids else None
                results.append(item)
            bodies.append({"run_id": run_ids[i] if run_ids else None, "results": results})
        return Outcome(bodies, runs, decisions)

    def _reasons(
        self,
        jobs: Sequence[Job],
        starts: Any,
        features: pl.DataFrame,
        x: FeatureMatrix,
        exposure: Any,
    ) -> list[dict[str, list[str]] | None]:
        """Top reason codes per loan of the jobs that asked for them (SHAP for them at once)."""
        out: list[dict[str, list[str]] | None] = [None] * features.height
        wanted = [i for i, j in enumerate(jobs) if j.reasons]
        if not wanted:
            return out
        rows = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in wanted])
        sub = FeatureMatrix(x.values[rows], x.names, x.categorical)
        attributions = {
            "p_recover": explain_p_recover(self.model, sub),
            "expected_collections": explain_collections(self.model, sub, exposure[rows]),
        }
        for r in rows:
            out[r] = {k: [] for k in _OUTPUT_KEYS}
        # Each request's loans are "low" or "high" against that request's medians. A one-loan
        # request has none to speak of (every value is its own median), so all one-loan
        # requests share one call with no reference: the same words, one pass.
        groups: list[tuple[Any, bool]] = []
        singles: list[int] = []
        offset = 0
        for i in wanted:
            n = int(starts[i + 1] - starts[i])
            if n == 1:
                singles.append(offset)
            else:
                groups.append((np.arange(offset, offset + n), True))
            offset += n
        if singles:
            groups.append((np.array(singles), False))
        for local, with_reference in groups:
            # Keyed by position, not loan_id: two requests may send the same loan_id.
            mine = features[rows[local]].with_columns(
                pl.Series("loan_id", [str(k) for k in local], dtype=pl.String)
            )
            explanations = LoanExplanations(
                features=mine,
                matrix=FeatureMatrix(sub.values[local], x.names, x.categorical),
                names=x.names,
                attributions={t: _rows(a, local) for t, a in attributions.items()},  # type: ignore[misc]
                reference=mine if with_reference else mine.clear(),
            )
            codes = reason_codes(explanations, top=REASON_TOP)
            for key, target, text in codes.select("loan_id", "target", "text").iter_rows():
                texts = out[rows[int(key)]]
                assert texts is not None
                texts[target].append(text)
        return out

    # -- recommendations -----------------------------------------------------------------

    def recommend(self, job: Job) -> Outcome:
        """The action with the largest expected net uplift for one loan, and its run record."""
        from npl_engine.causal import policy_inputs  # noqa: PLC0415

        if self.effects is None:
            msg = "no effect model loaded"
            raise NplError(msg)
        frame = loans_frame(job.loans)
        inputs = policy_inputs(self.effects, frame.lazy(), self.costs, with_bau=False)
        ids, uplift, cost = inputs.loan_ids, inputs.uplift, inputs.cost
        net = uplift[0] - cost[0]
        actions = list(self.effects.actions_)
        best = int(np.argmax(net))
        take = bool(net[best] > 0)
        result = {
            "loan_id": ids[0],
            "action": actions[best] if take else "none",
            "expected_uplift": float(uplift[0, best]) if take else 0.0,
            "cost": float(cost[0, best]) if take else 0.0,
            "expected_net": float(net[best]) if take else 0.0,
            "alternatives": [
                {
                    "action": a,
                    "expected_uplift": float(uplift[0, k]),
                    "cost": float(cost[0, k]),
                    "expected_net": float(net[k]),
                }
                for k, a in enumerate(actions)
            ],
        }
        outputs = pl.DataFrame(
            {
                "loan_id": [result["loan_id"]],
                "action": [result["action"]],
                "expected_uplift": [result["expected_uplift"]],
                "cost": [result["cost"]],
            }
        )
        run_ids, runs, decisions = self._records(
            [job], np.array([0, 1]), frame, outputs, [None], command="serve:recommend"
        )
        result["decision_id"] = f"{run_ids[0]}:1" if run_ids else None
        return Outcome([result], runs, decisions)

    # -- decision records ----------------------------------------------------------------

    def _records(
        self,
        jobs: Sequence[Job],
        starts: Any,
        frame: pl.DataFrame,
        outputs: pl.DataFrame,
        reasons: Sequence[dict[str, list[str]] | None],
        *,
        command: str,
    ) -> tuple[list[str], pl.DataFrame | None, pl.DataFrame | None]:
        """Run ids, and the ``runs`` and ``decisions`` rows to append: one run per job.

        The rows are built here, in the table layout (:func:`~npl_engine.audit.run_rows`,
        :func:`~npl_engine.audit.decision_rows`), so that the recording process only inserts
        them: what travels between the processes is two frames, and the commit that every
        answer waits for starts at once. Nothing when not recording.
        """
        if not self.recording:
            return [], None, None
        recommending = command == "serve:recommend"
        fingerprint = self.effects_fingerprint if recommending else self.model_fingerprint
        # Row by row, not joined on loan_id: two requests of a batch may hold the same loan.
        # ``frame`` holds the contract loans columns only (loans_frame); decision_rows keeps
        # them in contract order.
        rows = frame.with_columns(
            outputs.select(pl.struct(pl.exclude("loan_id")).struct.json_encode())
            .to_series()
            .alias("outputs"),
            pl.Series(
                "reasons", [json.dumps(r) if r is not None else None for r in reasons], pl.String
            ),
        )
        now = datetime.now(UTC)
        model_id = self._model_ids[command]
        records = []
        for i, job in enumerate(jobs):
            records.append(
                RunRecord(
                    run_id=new_run_id(now),
                    recorded_at=now,
                    caller=job.caller,
                    caller_kind="api_key",
                    command=command,
                    model_id=model_id,
                    model_fingerprint=fingerprint,
                    input_fingerprint=job.fingerprint,
                    engine_version=__version__,
                    parameters={"reasons": job.reasons},
                    decisions=(),  # in ``rows``, for all records at once
                    n_loans=int(starts[i + 1] - starts[i]),
                )
            )
        run_ids = [r.run_id for r in records]
        return run_ids, run_rows(records), decision_rows(rows, run_ids, np.diff(starts))


def _rows(attribution: Attribution, rows: Any) -> Attribution:
    """The attribution of some loans only."""
    return Attribution(
        target=attribution.target,
        output=attribution.output[rows],
        base=attribution.base[rows],
        contributions=attribution.contributions[rows],
        link_values={k: v[rows] for k, v in attribution.link_values.items()},
        link_base=attribution.link_base,
    )
