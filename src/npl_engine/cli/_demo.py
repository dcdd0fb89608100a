"""The end-to-end demo: the commands a user runs, in order, on a simulated portfolio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from npl_engine.cli._base import _console, _user_errors, main
from npl_engine.cli._causal import effects, policy
from npl_engine.cli._data import simulate, validate
from npl_engine.cli._import import eba
from npl_engine.cli._monitoring import monitor
from npl_engine.cli._operations import fairness, report_command
from npl_engine.cli._plan import backtest_command, plan_command
from npl_engine.cli._scoring import score, train
from npl_engine.cli._strats import strats
from npl_engine.cli._valuation import expected_loss_command, value
from npl_engine.errors import NplError

#: Months of collections the demo lets the tape make after its sale, for the backtest.
_REALISED_MONTHS = 24


@main.command()
@click.option(
    "--out",
    default=Path("demo_out"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Folder for the demo's datasets, model and results.",
)
@click.option(
    "--loans",
    "n_loans",
    default=20_000,
    show_default=True,
    type=click.IntRange(1000),
    help="Loans in the historical book (the tape has a quarter as many).",
)
@click.option("--seed", default=42, show_default=True, type=int)
@click.option(
    "--scenarios",
    "scenarios_file",
    default=Path("scenarios/eu_2026.toml"),
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--tranches",
    "tranches_file",
    default=Path("scenarios/gacs_tranches.toml"),
    show_default=True,
    type=click.Path(path_type=Path),
)
@click.pass_context
@_user_errors
def demo(
    ctx: click.Context,
    *,
    out: Path,
    n_loans: int,
    seed: int,
    scenarios_file: Path,
    tranches_file: Path,
) -> None:
    """Run the end-to-end demo on a built-in simulated portfolio.

    Simulates a historical book and a tape offered for sale in the EBA NPL templates, imports
    and validates the tape, trains the recovery model on the book, scores the tape and values
    it under the scenario file (with a Monte Carlo and the tranche waterfall): the same
    commands a user runs, in order.
    """
    if not scenarios_file.is_file():  # before any step writes: the valuation needs it
        msg = (
            f"{scenarios_file}: no such scenario file; run `npl demo` from the repository's "
            "root (as `make demo` does) or give --scenarios FILE"
        )
        raise NplError(msg)
    console = _console()
    book, tape, model_dir = out / "book", out / "tape", out / "model"
    effects_dir, audit = out / "effects", out / "audit.duckdb"
    steps: list[tuple[str, click.Command, dict[str, Any]]] = [
        ("simulate a historical book", simulate,
         {"out": book, "n_loans": n_loans, "seed": seed, "kind": "book"}),
        ("simulate a tape offered for sale, in the EBA NPL templates", simulate,
         {"out": out / "tape_eba", "n_loans": max(n_loans // 4, 250), "seed": seed + 1,
          "kind": "tape", "fmt": "eba"}),
        ("import the EBA template tape into the data contract", eba,
         {"source": out / "tape_eba", "out": tape, "borrower_id": "group"}),
        ("validate the tape", validate, {"dataset": tape, "kind": "tape", "as_of": None}),
        ("train the recovery model on the book", train,
         {"data_dir": book, "out": model_dir, "as_of": None}),
        ("score the tape", score,
         {"model_dir": model_dir, "data_dir": tape, "out": out / "scores", "audit_db": audit}),
        ("stratify the tape, with the model's expected recovery", strats,
         {"data_dir": tape, "out": out / "strats", "model_dir": model_dir}),
        ("value the tape: bid grid, sensitivities, tranches, Excel workbook", value,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "valuation", "simulations": 500, "seed": seed,
          "tranches_file": tranches_file if tranches_file.exists() else None,
          "irr_grid_text": "0.08:0.20:0.02", "with_sensitivities": True,
          "xlsx": out / "valuation.xlsx", "audit_db": audit}),
        ("write the collections business plan the bid is underwritten on", plan_command,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "business_plan", "simulations": 200, "seed": seed}),
        ("expected loss for a risk officer's file", expected_loss_command,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "expected_loss", "audit_db": audit}),
        (f"two years on: the tape's loans with {_REALISED_MONTHS} months of realised "
         "collections", simulate,
         {"out": out / "tape_later", "n_loans": max(n_loans // 4, 250), "seed": seed + 1,
          "kind": "tape", "realised_months": _REALISED_MONTHS}),
        ("backtest the base-case plan against what was collected (the simulated world is "
         "the base case; the weighted plan includes the stress scenarios)", backtest_command,
         {"plan_dir": out / "business_plan", "data_dir": out / "tape_later",
          "out": out / "backtest", "scenario": "base",
          "as_of": _months_after_cutoff(_REALISED_MONTHS)}),
        ("monitor: is the book still the one the model learned from?", monitor,
         {"model_dir": model_dir, "data_dir": out / "tape_later", "out": out / "monitor",
          "audit_db": audit}),
        ("estimate what each collection action does (refutations: npl effects without "
         "--no-refutations)", effects,
         {"data_dir": book, "out": effects_dir, "refutations": False, "seed": seed}),
        ("plan next quarter's actions on the tape", policy,
         {"effects_dir": effects_dir, "data_dir": tape, "budget": 100_000.0,
          "out": out / "plan.parquet", "costs_file": None, "audit_db": audit}),
        ("check fairness on the book", fairness,
         {"model_dir": model_dir, "data_dir": book, "out": out / "fairness"}),
        ("write the report", report_command,
         {"model_dir": model_dir, "data_dir": tape, "scenarios_file": scenarios_file,
          "out": out / "report.html", "fairness_dir": book, "seed": seed,
          "effects_dir": effects_dir, "backtest_dir": out / "backtest",
          "monitor_dir": out / "monitor"}),
    ]  # fmt: skip
    for i, (title, command, params) in enumerate(steps, start=1):
        console.rule(f"[bold]{i}. {title}[/bold]")
        ctx.invoke(command, **params)
    console.rule("[bold]done[/bold]")
    console.print(
        f"Everything is in {out}/: the simulated book and tape (truth in */truth), the model "
        f"and its card ({model_dir / 'model_card.md'}), strats, scores, the valuation and its "
        f"workbook, the business plan and its backtest, expected loss, monitoring, the action "
        f"effects and plan, fairness, and the decision records ({audit}; `npl audit list "
        f"--audit-db {audit}`)."
    )
    console.print(f"Report: {(out / 'report.html').resolve()}")


def _months_after_cutoff(months: int) -> Any:
    """The day ``months`` whole months after the cut-off of the demo's simulated tapes."""
    from datetime import datetime

    from npl_engine.data.simulator import SimulationSettings

    cutoff = SimulationSettings().tape_cutoff_date
    total = cutoff.year * 12 + cutoff.month - 1 + months
    year, month = divmod(total, 12)
    return datetime(year, month + 1, cutoff.day)
