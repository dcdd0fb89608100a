"""Valuation commands: price a tape under scenarios, expected loss."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import polars as pl

from npl_engine.cli._base import (
    MODEL_OPTION,
    _audit_options,
    _console,
    _file_ref,
    _money,
    _pct,
    _record_decisions,
    _steps,
    _table,
    _user_errors,
    data_option,
    main,
)
from npl_engine.data import read_dataset
from npl_engine.errors import NplError

#: Files `npl value` writes (an existing folder holding only these may be replaced).
VALUE_FILES = frozenset({"valuation.json", "cashflows.parquet", "paths.parquet"})
#: Files `npl expected-loss` writes.
EL_FILES = frozenset({"expected_loss.parquet", "summary.json"})


def _load_portfolio(
    model_dir: Path, data_dir: Path, grid: tuple[float, ...], say: Callable[[str], None]
) -> Any:
    """Load a model, read and validate loans, score them and measure the collateral response."""
    from npl_engine.scoring import RecoveryModel
    from npl_engine.valuation import build_portfolio

    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    loans = read_dataset(data_dir).loans.collect()
    say(f"scoring {loans.height:,} loans and measuring their collateral response")
    return model, build_portfolio(model, loans, collateral_grid=grid)


def _horizon_the_model_has(model: Any, scenario_set: Any) -> tuple[Any, str | None]:
    """The scenarios cut to the horizon a model trained on a short book really has.

    A model whose book was too short for its valuation horizon predicts fewer months (its model
    card says which); the valuation then runs on those months and says so. A model that
    predicts its full horizon is left to refuse a longer scenario horizon as before.
    """
    asked = scenario_set.pricing.horizon_months
    has = model.horizon_months
    if asked <= has or has >= model.definition.valuation_horizon_months:
        return scenario_set, None
    pricing = scenario_set.pricing.model_copy(update={"horizon_months": has})
    note = (
        f"valued over {has} months, not the scenario file's {asked}: the model's training "
        f"book observed too few loans beyond month {has} (see its model card); collections "
        "after that are not counted"
    )
    return scenario_set.model_copy(update={"pricing": pricing}), note


@main.command()
@MODEL_OPTION
@data_option("The tape to value (its loans table).")
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML), e.g. scenarios/eu_2026.toml.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for valuation.json and cashflows.parquet.",
)
@click.option(
    "--price",
    type=click.FloatRange(0.0, min_open=True),
    default=None,
    help="A price paid at cut-off: adds the IRR and MOIC at that price.",
)
@click.option(
    "--target-irr",
    type=click.FloatRange(-1.0, min_open=True),
    default=None,
    help="Annual discount rate; overrides the scenario file's target_irr.",
)
@click.option(
    "--tranches",
    "tranches_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Tranche structure (TOML), e.g. scenarios/gacs_tranches.toml.",
)
@click.option(
    "--simulations",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Monte Carlo paths (0 = none).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the Monte Carlo.")
@_audit_options
@_user_errors
def value(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    price: float | None,
    target_irr: float | None,
    tranches_file: Path | None,
    simulations: int,
    seed: int,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Price a tape under weighted scenarios: present value at the target IRR, IRR at a price.

    Writes OUT/valuation.json and OUT/cashflows.parquet (scenario, month, gross, costs, net,
    discount factor, present value); with --simulations, the Monte Carlo percentiles too.
    """
    from rich.progress import Progress

    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import (
        MonteCarloSettings,
        collateral_grid_for,
        simulate_paths,
        value_portfolio,
    )

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    tranche_structure = _load_tranches(tranches_file)
    grid = collateral_grid_for(scenario_set, monte_carlo=bool(simulations))
    model, portfolio = _load_portfolio(model_dir, data_dir, grid, say)
    extra: dict[str, Any] = {}
    scenario_set, horizon_note = _horizon_the_model_has(model, scenario_set)
    if horizon_note is not None:
        extra["horizon_note"] = horizon_note
    say("valuing scenarios")
    try:
        valuation = value_portfolio(portfolio, scenario_set, target_irr=target_irr, price=price)
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    paths = None
    if simulations:
        settings = MonteCarloSettings(n_paths=simulations, seed=seed)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"Monte Carlo, {simulations:,} paths", total=simulations)
            paths = simulate_paths(
                portfolio,
                scenario_set,
                settings,
                recovery_threshold=model.definition.threshold,
                target_irr=target_irr,
                price=price,
                progress=lambda done, _: bar.update(task, completed=done),
            )
        extra["simulation"] = paths.to_dict(scenario_set.names)
    if tranche_structure is not None:
        extra["tranches"] = _run_tranches(tranche_structure, valuation, paths, price)
    result = valuation.to_dict() | extra
    say(f"writing {out}")
    with atomic_folder(out, allowed=VALUE_FILES) as staging:
        (staging / "valuation.json").write_text(json.dumps(result, indent=2) + "\n")
        valuation.cash_flows.write_parquet(staging / "cashflows.parquet")
        if paths is not None:
            pl.DataFrame(
                {
                    "path": np.arange(paths.net.shape[0]),
                    "scenario": [scenario_set.names[i] for i in paths.scenario],
                    "factor": paths.factor,
                    "net_collections": paths.net.sum(axis=1),
                    "price": paths.price,
                    "irr_at_price": paths.irr_at_price,
                }
            ).write_parquet(staging / "paths.parquet")
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="value",
            loans=read_dataset(data_dir).loans.collect(),
            outputs=pl.DataFrame(
                {
                    "loan_id": portfolio.loan_id,
                    "exposure": portfolio.exposure,
                    "p_recover": portfolio.p_recover,
                    "expected_collections": portfolio.borrower.sum(axis=1)
                    + portfolio.collateral.sum(axis=1),
                }
            ),
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={
                "scenarios": _file_ref(scenarios_file),
                "tranches": _file_ref(tranches_file),
                "price": price,
                "target_irr": target_irr,
                "simulations": simulations,
                "seed": seed,
                "weighted_price": result["weighted"]["price"],
            },
        )
    _print_valuation(result)
    click.echo(f"wrote {out / 'valuation.json'} and {out / 'cashflows.parquet'}")


def _print_valuation(result: dict[str, Any]) -> None:
    """Print the price table (and the Monte Carlo percentiles, if any)."""
    console = _console()
    console.print(
        f"GBV {result['gbv']:,.0f} ({result['n_loans']:,} loans); target IRR "
        f"{result['target_irr']:.1%}; horizon {result['horizon_months']} months"
    )
    if "horizon_note" in result:
        console.print(f"note: {result['horizon_note']}")
    with_price = result["price"] is not None
    headers = ["scenario", "weight>", "gross>", "costs>", "net>", "price>", "% GBV>"]
    if with_price:
        headers += ["IRR at price>", "MOIC>"]
    rows = []
    for s in [*result["scenarios"], result["weighted"]]:
        row = [
            s["name"],
            f"{s['weight']:.2f}",
            _money(s["gross_collections"]),
            _money(s["costs"]),
            _money(s["net_collections"]),
            _money(s["price"]),
            _pct(s["price_pct_gbv"]),
        ]
        if with_price:
            row += [_pct(s["irr_at_price"]), "-" if s["moic"] is None else f"{s['moic']:.2f}x"]
        rows.append(row)
    console.print(_table(headers, rows))
    sim = result.get("simulation")
    if sim:
        q = sim["percentiles"]
        rows = [
            ["net collections", *(_money(q["net_collections"][k]) for k in q["price"])],
            ["price", *(_money(q["price"][k]) for k in q["price"])],
        ]
        if with_price:
            rows.append(["IRR at price", *(_pct(q["irr_at_price"][k]) for k in q["price"])])
        console.print(f"Monte Carlo: {sim['n_paths']:,} paths (seed {sim['seed']})")
        console.print(_table(["", *(f"{k.upper()}>" for k in q["price"])], rows))


@main.command("expected-loss")
@MODEL_OPTION
@data_option("A book or a tape (its loans table).")
@click.option(
    "--scenarios",
    "scenarios_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Scenario file (TOML): scenarios, weights and costs.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for expected_loss.parquet and summary.json.",
)
@_user_errors
def expected_loss_command(
    *, model_dir: Path, data_dir: Path, scenarios_file: Path, out: Path
) -> None:
    """Expected loss per loan (workout LGD × EAD), scenario-weighted, by segment and stage.

    LGD = 1 − PV(net collections) / EAD, discounted at each loan's contractual rate.
    """
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.valuation import collateral_grid_for, expected_loss

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    grid = collateral_grid_for(scenario_set, monte_carlo=False)
    _, portfolio = _load_portfolio(model_dir, data_dir, grid, say)
    say("discounting each loan's net collections under each scenario")
    try:
        el = expected_loss(portfolio, scenario_set)
    except ValueError as exc:
        raise NplError(str(exc)) from exc
    say(f"writing {out}")
    summary = {
        "scenarios": [{"name": s.name, "weight": s.weight} for s in scenario_set.scenarios],
        "by_segment": el.by_segment.to_dicts(),
        "by_legal_stage": el.by_legal_stage.to_dicts(),
    }
    with atomic_folder(out, allowed=EL_FILES) as staging:
        el.loans.write_parquet(staging / "expected_loss.parquet")
        (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    out_console = _console()
    for title, frame in (("segment", el.by_segment), ("legal stage", el.by_legal_stage)):
        key = frame.columns[0]
        rows = [
            [str(r[key]), f"{r['loans']:,}", _money(r["ead"]), _money(r["el"]), _pct(r["el_rate"])]
            for r in frame.iter_rows(named=True)
        ]
        out_console.print(_table([title, "loans>", "EAD>", "expected loss>", "EL / EAD>"], rows))
    click.echo(f"wrote {out / 'expected_loss.parquet'} and {out / 'summary.json'}")


def _load_tranches(path: Path | None) -> Any:
    """Parse a tranche file, if given (before any long work, so a bad file fails fast)."""
    if path is None:
        return None
    from npl_engine.valuation import load_tranches

    return load_tranches(path)


def _run_tranches(structure: Any, valuation: Any, paths: Any, price: float | None) -> Any:
    """Run the waterfall per scenario (and over Monte Carlo paths) at the price paid."""
    from npl_engine.valuation import tranche_report

    paid = price if price is not None else valuation.weighted.price
    return tranche_report(structure, valuation, paths, price=paid)
