"""`npl monitor`: is a newer tape or book still the kind of book the model learned from."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import (
    MODEL_OPTION,
    _audit_options,
    _console,
    _money,
    _pct,
    _record_decisions,
    _steps,
    _table,
    _user_errors,
    data_option,
    main,
    read_data,
)


@main.command()
@MODEL_OPTION
@data_option("A newer tape or book: its loans (and payments, for realised outcomes).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for monitor.json, stability.parquet / .csv and monitor.xlsx.",
)
@click.option(
    "--reference",
    "reference_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Compare with this book instead of the model's training book.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the data's history was extracted (YYYY-MM-DD). Default: latest payment date.",
)
@_audit_options
@_user_errors
def monitor(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    reference_dir: Path | None,
    as_of: datetime | None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Population stability of every feature and p_recover, segment mix, and calibration.

    Compares DATA with the model's training book: the PSI of each feature and of p_recover
    (flag at 0.25, watch at 0.10), the change in segment mix and, where DATA has payments since
    its cut-offs, realised against expected recovery and collections by knot month. Flags are
    printed and listed in monitor.json (docs/monitoring.md).
    """
    from npl_engine.monitoring import monitor as run_monitor
    from npl_engine.monitoring import reference_profile
    from npl_engine.scoring import RecoveryModel

    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    dataset = read_data(data_dir, as_of=as_of.date() if as_of else None)
    reference = None
    if reference_dir is not None:
        say(f"profiling the reference book {reference_dir}")
        reference = reference_profile(model, read_data(reference_dir).loans)
    say("comparing distributions and realised outcomes")
    report = run_monitor(model, dataset, reference=reference)
    say(f"writing {out}")
    report.save(out)
    if not no_audit:
        loans = dataset.loans.collect()
        _, x = model.features(loans.lazy())
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="monitor",
            loans=loans,
            outputs=pl.DataFrame(
                {"loan_id": loans["loan_id"], "p_recover": model.predict_proba(x)}
            ),
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={
                "reference": str(reference_dir) if reference_dir else "training book",
                "flags": report.flags,
            },
        )
    _print_monitor(report)
    click.echo(f"wrote {out / 'monitor.json'}, stability.parquet / .csv and monitor.xlsx")


def _print_monitor(report: Any) -> None:
    console = _console()
    console.print(f"{report.n_loans:,} loans against a training book of {report.reference_loans:,}")
    if report.flags:
        console.print(f"[bold red]{len(report.flags)} flag(s)[/bold red]")
        for flag in report.flags:
            console.print(f"  - {flag}")
    else:
        console.print("no flags: the book looks like the one the model learned from")
    shown = report.stability.filter(pl.col("status") != "stable")
    if shown.height < 10:
        shown = report.stability.head(max(10, shown.height))
    rows = [[r["variable"], f"{r['psi']:.3f}", r["status"]] for r in shown.iter_rows(named=True)]
    console.print(_table(["variable (largest PSI first)", "PSI>", "status"], rows))
    rows = [
        [r["segment"], _pct(r["reference_share"]), _pct(r["current_share"]),
         f"{r['change_pp']:+.1f}"]
        for r in report.segment_mix.iter_rows(named=True)
    ]  # fmt: skip
    console.print(_table(["segment", "training>", "now>", "change (pp)>"], rows))
    if report.recovery_calibration is not None:
        rows = [
            [r["band"], f"{r['loans']:,}", _pct(r["expected_rate"]), _pct(r["realised_rate"]),
             f"{r['z']:+.1f}"]
            for r in report.recovery_calibration.iter_rows(named=True)
        ]  # fmt: skip
        console.print(_table(["p_recover band", "loans>", "expected>", "realised>", "z>"], rows))
    if report.collections_calibration is not None:
        rows = [
            [str(r["month"]), f"{r['loans']:,}", _money(r["expected"]), _money(r["realised"]),
             _pct(r["ratio"]), f"{r['z']:+.1f}"]
            for r in report.collections_calibration.iter_rows(named=True)
        ]  # fmt: skip
        console.print(
            _table(["by month", "loans>", "expected>", "realised>", "ratio>", "z>"], rows)
        )
