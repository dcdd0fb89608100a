"""Scoring commands: train the recovery model, score a tape, explain scores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import (
    CHUNK_ROWS_OPTION,
    CLUSTER_OPTION,
    MODEL_OPTION,
    _audit_options,
    _cluster,
    _console,
    _record_decisions,
    _record_while_running,
    _steps,
    _table,
    _user_errors,
    data_option,
    main,
    read_data,
)
from npl_engine.errors import NplError

#: Files `npl score` writes (an existing folder holding only these may be replaced).
SCORE_FILES = frozenset({"scores.parquet", "curves.parquet"})


@main.command()
@data_option("A book: loans, actions and payments in contract form.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Model folder to write (replaced if it holds an earlier model).",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@click.option(
    "--horizon-months",
    default=24,
    show_default=True,
    type=click.IntRange(1, 600),
    help="Recovery: collections within this many months after cut-off ...",
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="... reach this share of the exposure.",
)
@click.option(
    "--valuation-horizon",
    default=60,
    show_default=True,
    type=click.IntRange(1, 600),
    help="Months of the expected collections curve.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--no-baselines", is_flag=True, help="Skip the logistic and random-forest baselines.")
@_user_errors
def train(
    *,
    data_dir: Path,
    out: Path,
    as_of: datetime | None,
    horizon_months: int,
    threshold: float,
    valuation_horizon: int,
    seed: int,
    no_baselines: bool,
) -> None:
    """Train the recovery model on a book and write a model folder with its model card."""
    from npl_engine.scoring import RecoveryDefinition, RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"reading and validating {data_dir}")
    book = read_data(data_dir, kind="book", as_of=as_of.date() if as_of else None)
    definition = RecoveryDefinition(
        horizon_months=horizon_months,
        threshold=threshold,
        valuation_horizon_months=valuation_horizon,
    )
    model = RecoveryModel(definition=definition, baselines=not no_baselines, seed=seed)
    model.fit(book, progress=say)
    say(f"writing {out}")
    model.save(out)
    rows = [
        (
            name,
            f"{m['auc']:.4f}",
            f"{m['brier']:.4f}",
            f"{m['log_loss']:.4f}",
            f"{m['calibration_error']:.4f}",
        )
        for name, m in model.metrics_["classification"].items()
    ]
    _console().print(
        _table(["model (out of fold)", "AUC>", "Brier>", "log loss>", "calibration error>"], rows)
    )
    for note in model.metrics_["notes"]:  # what the book could not teach, as in the card
        click.echo(f"note: {note}")
    click.echo(f"wrote model {out} (model card: {out / 'model_card.md'})")


@main.command()
@MODEL_OPTION
@data_option("Loans to score (a tape, or a book: only its loans table is read).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for scores.parquet and curves.parquet.",
)
@click.option(
    "--explain",
    "with_reasons",
    is_flag=True,
    help="Add each loan's top 3 reason codes (reason_1..3 for p_recover, "
    "collections_reason_1..3 for expected collections) to scores.parquet. Takes longer.",
)
@CHUNK_ROWS_OPTION
@CLUSTER_OPTION
@_audit_options
@_user_errors
def score(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    with_reasons: bool,
    chunk_rows: int | None = None,
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Score loans: p_recover, expected collections and the monthly curve of each loan.

    Writes OUT/scores.parquet (one row per loan) and OUT/curves.parquet (one row per loan and
    month) and prints a summary by segment. With --explain, scores.parquet also holds the top
    3 reason codes of each loan (see `npl explain` and docs/explanations.md). A tape of more
    than 250,000 loans is scored in chunks, written as they are scored (--chunk-rows;
    docs/scale.md#out-of-core), also with --cluster (each chunk goes to the workers).
    """
    from npl_engine.data import count_loans
    from npl_engine.scoring import RecoveryModel, chunk_rows_for

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    data = read_data(data_dir)
    cluster = _cluster(cluster_address)
    chunk = chunk_rows_for(count_loans(data.loans), chunk_rows)
    if chunk:
        if cluster is not None:
            say(f"scoring on {cluster_address}, a chunk at a time")
        _score_chunked(
            model,
            data,
            out,
            chunk_rows=chunk,
            with_reasons=with_reasons,
            audit=(audit_db, no_audit, model_dir, data_dir),
            say=say,
            cluster=cluster,
        )
        return
    if cluster is None:
        say("scoring")
        result = model.score(data.loans)
    else:
        from npl_engine import distributed

        say(f"scoring on {cluster_address}")
        result = distributed.score(cluster, model, data.loans.collect())
    _score_in_memory(
        model,
        data,
        out,
        result=result,
        with_reasons=with_reasons,
        audit=(audit_db, no_audit, model_dir, data_dir),
        say=say,
    )


def _score_in_memory(
    model: Any,
    data: Any,
    out: Path,
    *,
    result: Any,
    with_reasons: bool,
    audit: tuple[Path | None, bool, Path, Path],
    say: Any,
) -> None:
    """Write the scores of the whole tape, held in memory, with their record and summary."""
    from npl_engine.data.writers import atomic_folder

    scores = result.scores
    if with_reasons:
        say("explaining: top 3 reason codes per loan")
        scores = _with_reason_codes(model, data.loans, scores)
    say(f"writing {out}")
    with atomic_folder(out, allowed=SCORE_FILES) as staging:
        scores.write_parquet(staging / "scores.parquet")
        result.curves.write_parquet(staging / "curves.parquet")
        # Inside the block: if the record cannot be written, the outputs are not published.
        _record_scores(audit, data.loans.collect(), scores, with_reasons=with_reasons)
    _print_score_summary(result.scores.lazy(), data.loans)
    click.echo(f"wrote {out / 'scores.parquet'} and {out / 'curves.parquet'}")


def _score_chunked(
    model: Any,
    data: Any,
    out: Path,
    *,
    chunk_rows: int,
    with_reasons: bool,
    audit: tuple[Path | None, bool, Path, Path],
    say: Any,
    cluster: Any = None,
) -> None:
    """Score the tape in chunks, each written as it is scored (on ``cluster``, if given)."""
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scoring import score_in_chunks

    add_columns = None
    if with_reasons:
        from npl_engine.explain import reference_medians

        say("explaining: the medians of the whole tape, for low and high")
        medians = reference_medians(model, data.loans, chunk_rows=chunk_rows)

        def add_columns(loans: pl.LazyFrame, scores: pl.DataFrame) -> pl.DataFrame:
            return _with_reason_codes(model, loans, scores, medians=medians)

    audit_db, no_audit, model_dir, data_dir = audit
    with atomic_folder(out, allowed=SCORE_FILES) as staging:
        # The decision record is appended chunk by chunk while the next chunk is scored; it
        # is committed before the outputs are published, and rolled back if the run fails.
        with _record_while_running(
            audit_db,
            no_audit=no_audit,
            command="score",
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={"explain": with_reasons},
        ) as record:
            score_in_chunks(
                model,
                data.loans,
                scores_path=staging / "scores.parquet",
                curves_path=staging / "curves.parquet",
                chunk_rows=chunk_rows,
                add_columns=add_columns,
                on_chunk=None if record is None else _decisions_to(record, with_reasons),
                cluster=cluster,
                progress=say,
            )
        say("summarising")
        _print_score_summary(pl.scan_parquet(staging / "scores.parquet"), data.loans)
    click.echo(f"wrote {out / 'scores.parquet'} and {out / 'curves.parquet'}")


def _decisions_to(
    record: Callable[[pl.DataFrame], None], with_reasons: bool
) -> Callable[[pl.DataFrame, pl.DataFrame], None]:
    """Per chunk of loans and scores, hand its decision rows (as :func:`_record_scores`) over."""
    from npl_engine.audit import decision_frame

    def hand_over(loans: pl.DataFrame, scores: pl.DataFrame) -> None:
        record(decision_frame(loans, *_outputs_and_reasons(scores, with_reasons)))

    return hand_over


def _outputs_and_reasons(
    scores: pl.DataFrame, with_reasons: bool
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A decision record's outputs (the scores) and reasons (the reason codes, if any)."""
    reasons = scores.select("loan_id", pl.col(_REASON_COLUMNS)) if with_reasons else None
    return scores.select(pl.exclude(_REASON_COLUMNS)), reasons


def _record_scores(
    audit: tuple[Path | None, bool, Path, Path],
    loans: pl.DataFrame,
    scores: pl.DataFrame,
    *,
    with_reasons: bool,
) -> None:
    """The decision record of `npl score`: scores as outputs, reason codes as reasons."""
    audit_db, no_audit, model_dir, data_dir = audit
    outputs, reasons = _outputs_and_reasons(scores, with_reasons)
    _record_decisions(
        audit_db,
        no_audit=no_audit,
        command="score",
        loans=loans,
        outputs=outputs,
        reasons=reasons,
        data_dir=data_dir,
        model_dir=model_dir,
        parameters={"explain": with_reasons},
    )


#: The reason-code columns `--explain` adds to scores.parquet.
_REASON_COLUMNS = r"^(collections_)?reason_\d+$"


def _print_score_summary(scores: pl.LazyFrame, loans: pl.LazyFrame) -> None:
    """Print loans, exposure, mean p_recover and expected collections by segment and in total."""
    segments = (
        scores.join(loans.select("loan_id", "segment"), on="loan_id")
        .group_by("segment")
        .agg(
            pl.len().alias("loans"),
            pl.col("exposure").sum(),
            pl.col("p_recover").mean(),
            pl.col("expected_collections").sum(),
        )
        .sort("segment")
        .collect()
    )
    total = scores.select(
        pl.len().alias("loans"),
        pl.col("exposure").sum(),
        pl.col("p_recover").mean(),
        pl.col("expected_collections").sum(),
    ).collect()
    rows = [
        _portfolio_row(
            str(r["segment"]),
            loans=r["loans"],
            exposure=r["exposure"],
            p_recover=r["p_recover"],
            collections=r["expected_collections"],
        )
        for r in segments.iter_rows(named=True)
    ]
    t = total.row(0, named=True)
    rows.append(
        _portfolio_row(
            "total",
            loans=t["loans"],
            exposure=float(t["exposure"]),
            p_recover=t["p_recover"],
            collections=float(t["expected_collections"]),
        )
    )
    headers = ["segment", "loans>", "exposure>", "mean p_recover>", "expected collections>"]
    _console().print(_table([*headers, "recovery rate>"], rows))


def _portfolio_row(
    name: str, *, loans: int, exposure: float, p_recover: float, collections: float
) -> tuple[str, ...]:
    """One row of a portfolio table: counts, money and the recovery rate."""
    rate = collections / exposure if exposure else 0.0
    return (
        name,
        f"{loans:,}",
        f"{exposure:,.0f}",
        f"{p_recover:.3f}",
        f"{collections:,.0f}",
        f"{rate:.1%}",
    )


def _with_reason_codes(
    model: Any,
    loans: pl.LazyFrame | pl.DataFrame,
    scores: pl.DataFrame,
    *,
    medians: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """``scores`` with the top 3 reason codes of each loan as text columns.

    ``medians``: the whole tape's, when ``loans`` is a chunk of it (see ``reason_codes``).
    """
    from npl_engine.explain import explain_loans, reason_codes, reason_columns

    codes = reason_codes(explain_loans(model, loans), top=3, medians=medians)
    return scores.join(
        reason_columns(codes, top=3), on="loan_id", how="left", maintain_order="left"
    )


#: Files `npl explain --global` writes.
EXPLAIN_FILES = frozenset({"importance.parquet", "importance.png"})


@main.command("explain")
@MODEL_OPTION
@data_option("Loans (a tape, or a book: only its loans table is read).")
@click.option("--loan-id", default=None, help="Explain this loan: its top reason codes.")
@click.option(
    "--global",
    "global_",
    is_flag=True,
    help="Explain the model: mean |SHAP| of every feature on a sample of the loans.",
)
@click.option(
    "--out",
    default=None,
    type=click.Path(path_type=Path),
    help="With --global: folder for importance.parquet and importance.png.",
)
@click.option(
    "--top",
    default=5,
    show_default=True,
    type=click.IntRange(1, 40),
    help="Reason codes shown per output (--loan-id).",
)
@click.option(
    "--sample",
    default=2000,
    show_default=True,
    type=click.IntRange(1),
    help="Loans drawn for --global.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --global draw.")
@_user_errors
def explain_command(
    *,
    model_dir: Path,
    data_dir: Path,
    loan_id: str | None,
    global_: bool,
    out: Path | None,
    top: int,
    sample: int,
    seed: int,
) -> None:
    r"""Explain the recovery model with SHAP values (see docs/explanations.md).

    \b
    npl explain --model M --data D --loan-id ID [--top 5]
        the loan's p_recover and expected collections, and the features that move each
        away from the model's base, in words;
    npl explain --model M --data D --global --out DIR [--sample 2000] [--seed 0]
        mean |SHAP| of every feature on a sample: DIR/importance.parquet and a chart,
        DIR/importance.png.
    """
    if (loan_id is None) == (not global_):
        msg = "give either --loan-id ID (one loan) or --global (the whole model)"
        raise NplError(msg)
    if global_ and out is None:
        msg = "--global needs --out DIR for importance.parquet and importance.png"
        raise NplError(msg)
    if loan_id is not None and out is not None:
        msg = "--out is for --global; --loan-id only prints"
        raise NplError(msg)
    from npl_engine.scoring import RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    loans = read_data(data_dir).loans.collect()
    if loan_id is not None:
        _explain_loan(model, loans, loan_id, top=top)
    else:
        assert out is not None
        n = min(sample, loans.height)
        say(f"explaining a sample of {n:,} loans (seed {seed})")
        _explain_global(model, loans, out, sample=sample, seed=seed)


def _explain_loan(model: Any, loans: pl.DataFrame, loan_id: str, *, top: int) -> None:
    """Print one loan's outputs, bases and reason codes."""
    from npl_engine.explain import explain_loans, reason_codes

    ex = explain_loans(model, loans, loan_ids=[loan_id])
    codes = reason_codes(ex, top=top)
    p = ex.attributions["p_recover"]
    c = ex.attributions["expected_collections"]
    loan = loans.filter(pl.col("loan_id") == loan_id).row(0, named=True)
    exposure = float(ex.features["exposure"][0])
    console = _console()
    console.print(
        f"loan {loan_id}: {loan['segment']}, legal stage {loan['legal_stage']}, "
        f"exposure {exposure:,.0f}"
    )
    console.print(f"p_recover {p.output[0]:.3f}   (base {p.base[0]:.3f}: the model's typical loan)")
    rate = c.output[0] / exposure if exposure else 0.0
    console.print(
        f"expected collections {c.output[0]:,.0f} ({rate:.1%} of exposure)   "
        f"(base {c.base[0]:,.0f}: a typical loan of this exposure)"
    )
    for target, attribution in (("p_recover", p), ("expected_collections", c)):
        mine = codes.filter(pl.col("target") == target)
        rows = [
            (str(r["rank"]), str(r["text"]), _effect(target, r["contribution"]))
            for r in mine.iter_rows(named=True)
        ]
        shown = float(mine["contribution"].sum())
        change = float(attribution.output[0] - attribution.base[0])
        rows.append(("", "all other features", _effect(target, change - shown)))
        rows.append(("", f"{target} minus its base", _effect(target, change)))
        console.print(f"\n{target}: top {top} reasons")
        if mine.height == 0:
            console.print(
                "none: the calibrated probability is flat between the typical loan and this "
                "one, so no feature moves it (see docs/explanations.md)"
            )
            continue
        console.print(_table(["#>", "reason", "effect>"], rows))


def _effect(target: str, contribution: float) -> str:
    """A signed contribution: points of probability, or money."""
    if target == "p_recover":
        return f"{100 * contribution:+.1f} pts"
    return f"{contribution:+,.0f}"


def _explain_global(model: Any, loans: pl.DataFrame, out: Path, *, sample: int, seed: int) -> None:
    """Write and print global importance."""
    from npl_engine.data.writers import atomic_folder
    from npl_engine.explain import global_importance, plot_importance

    importance = global_importance(model, loans, sample=sample, seed=seed)
    with atomic_folder(out, allowed=EXPLAIN_FILES) as staging:
        importance.write_parquet(staging / "importance.parquet")
        plot_importance(importance, staging / "importance.png")
    rows = [
        (
            str(i),
            str(r["label"]),
            str(r["family"]),
            f"{r['p_recover_points']:.2f}",
            f"{r['collections_money']:,.0f}",
            f"{r['collections_share']:.2%}",
        )
        for i, r in enumerate(importance.iter_rows(named=True), start=1)
    ]
    headers = ["#>", "feature", "family", "p_recover (points)>", "collections>", "% of exposure>"]
    _console().print(_table(headers, rows))
    click.echo(f"wrote {out / 'importance.parquet'} and {out / 'importance.png'}")
