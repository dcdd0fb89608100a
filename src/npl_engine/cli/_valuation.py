"""Valuation commands: price a tape under scenarios, expected loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import (
    CHUNK_ROWS_OPTION,
    CLUSTER_OPTION,
    MODEL_OPTION,
    SCENARIOS_OPTION,
    _audit_options,
    _cluster,
    _console,
    _file_ref,
    _money,
    _pct,
    _record_decisions,
    _signed_money,
    _steps,
    _table,
    _user_errors,
    data_option,
    main,
    read_data,
)
from npl_engine.errors import NplError


@main.command()
@MODEL_OPTION
@data_option("The tape to value (its loans table).")
@SCENARIOS_OPTION
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
    "target_irrs",
    type=click.FloatRange(-1.0, min_open=True),
    multiple=True,
    help="Annual discount rate; overrides the scenario file's target_irr. Give it once "
    "(for prices at several rates use --irr-grid).",
)
@click.option(
    "--irr-grid",
    "irr_grid_text",
    default=None,
    metavar="START:STOP:STEP|R1,R2,...",
    help="Bid grid: price and % GBV per scenario at each target IRR, e.g. 0.08:0.20:0.01 "
    "(stop included) or 0.10,0.12,0.15.",
)
@click.option(
    "--sensitivities",
    "with_sensitivities",
    is_flag=True,
    help="Tornado of the weighted price: collections ±10 %, delay ±6 months, collateral "
    "±20 %, servicing fee ±1 pp, discount rate ±2 pp.",
)
@click.option(
    "--xlsx",
    "xlsx",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write an Excel workbook: valuation, bid grid, sensitivities, cash flows, "
    "strats and tranches.",
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
@CHUNK_ROWS_OPTION
@CLUSTER_OPTION
@_audit_options
@_user_errors
def value(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    price: float | None,
    target_irrs: tuple[float, ...],
    irr_grid_text: str | None,
    with_sensitivities: bool,
    xlsx: Path | None,
    tranches_file: Path | None,
    simulations: int,
    seed: int,
    chunk_rows: int | None = None,
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Price a tape under weighted scenarios: present value at the target IRR, IRR at a price.

    Writes OUT/valuation.json and OUT/cashflows.parquet (scenario, month, gross, costs, net,
    discount factor, present value); with --simulations, the Monte Carlo percentiles too;
    with --irr-grid and --sensitivities, the bid grid and the price tornado (see
    docs/valuation.md). A tape of more than 250,000 loans is worked through in chunks
    (--chunk-rows; docs/scale.md#out-of-core).
    """
    from npl_engine.data import count_loans
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.scoring import RecoveryModel, chunk_rows_for
    from npl_engine.valuation import VALUE_FILES
    from npl_engine.valuation import value as value_tape

    console = _console(stderr=True)
    say = _steps(console)
    target_irr, grid_rates = _check_bid_options(target_irrs, irr_grid_text, xlsx)
    scenario_set = load_scenarios(scenarios_file)
    tranche_structure = _load_tranches(tranches_file)
    cluster = _cluster(cluster_address)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    tape = read_data(data_dir)
    n_loans = count_loans(tape.loans)
    chunk = chunk_rows_for(n_loans, chunk_rows)
    with _PathBar(console, rounds=-(-n_loans // chunk) if chunk else 1) as bar:
        valuation = value_tape(
            model, tape, scenario_set, simulations=simulations, seed=seed,
            target_irr=target_irr, price=price, irr_grid=grid_rates,
            sensitivities=with_sensitivities, tranches=tranche_structure, progress=say,
            path_progress=bar, cluster=cluster, chunk_rows=chunk,
        )  # fmt: skip
    result = valuation.to_dict()
    say(f"writing {out}")
    # The workbook and the decision record inside the staging block: a workbook that cannot be
    # written leaves no folder either.
    with atomic_folder(out, allowed=VALUE_FILES) as staging:
        valuation.save(staging)
        if xlsx is not None:
            say(f"writing {xlsx}")
            valuation.to_excel(xlsx)
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="value",
            loans=valuation.loans if valuation.loans is not None else tape.loans,
            outputs=valuation.loan_values(),
            chunk_rows=chunk or None,
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={
                "scenarios": _file_ref(scenarios_file),
                "tranches": _file_ref(tranches_file),
                "price": price,
                "target_irr": target_irr,
                "irr_grid": list(grid_rates) or None,
                "sensitivities": with_sensitivities,
                "simulations": simulations,
                "seed": seed,
                "weighted_price": result["weighted"]["price"],
            },
        )
    _print_valuation(result, grid_frame=valuation.price_grid, tornado=valuation.sensitivities)
    written = f"{out / 'valuation.json'} and {out / 'cashflows.parquet'}"
    click.echo(f"wrote {written}" + (f"; workbook {xlsx}" if xlsx is not None else ""))


class _PathBar:
    """A Monte Carlo progress bar that appears with the first path and goes when done.

    A tape valued in ``rounds`` chunks runs every path once per chunk: one bar counts them all
    (a count that does not grow means the next chunk's paths have begun).
    """

    def __init__(self, console: Any, *, rounds: int = 1) -> None:
        self._console = console
        self._rounds = max(rounds, 1)
        self._bar: Any = None
        self._task: Any = None
        self._offset = 0
        self._last = 0

    def __enter__(self) -> _PathBar:
        return self

    def __exit__(self, *_: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from rich.progress import Progress

            label = f"Monte Carlo, {total:,} paths"
            if self._rounds > 1:
                label += f" in each of {self._rounds} chunks"
            self._bar = Progress(console=self._console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total * self._rounds)
        elif done <= self._last:
            self._offset += total
        self._last = done
        self._bar.update(self._task, completed=self._offset + done)


def _check_bid_options(
    target_irrs: tuple[float, ...], irr_grid_text: str | None, xlsx: Path | None
) -> tuple[float | None, tuple[float, ...]]:
    """The one --target-irr, the --irr-grid rates; refuse a workbook name not ending .xlsx."""
    if xlsx is not None and xlsx.suffix.lower() != ".xlsx":
        msg = f"--xlsx {xlsx}: an Excel workbook's name ends in .xlsx"
        raise NplError(msg)
    return _one_target_irr(target_irrs), _parse_irr_grid(irr_grid_text)


def _one_target_irr(values: tuple[float, ...]) -> float | None:
    """The one --target-irr given; a repeated option is refused rather than silently cut."""
    if len(values) > 1:
        rates = ",".join(f"{v:g}" for v in values)
        msg = (
            f"--target-irr given {len(values)} times ({rates}); give it once, or price at "
            f"several rates with --irr-grid {rates}"
        )
        raise NplError(msg)
    return values[0] if values else None


def _parse_irr_grid(text: str | None) -> tuple[float, ...]:
    """``START:STOP:STEP`` (stop included) or ``R1,R2,...`` as target IRRs; () if not given."""
    from npl_engine.valuation import irr_grid

    if text is None:
        return ()
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            return irr_grid(start, stop, step)
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        msg = f"--irr-grid {text!r}: {exc}; write START:STOP:STEP (0.08:0.20:0.01) or R1,R2,..."
        raise NplError(msg) from exc
    if not rates or any(not r > -1 for r in rates):
        msg = f"--irr-grid {text!r}: give one or more rates, each above -1"
        raise NplError(msg)
    return rates


def _print_grid(frame: pl.DataFrame) -> None:
    """Print the bid grid: a row per target IRR, price and % GBV per scenario."""
    from npl_engine.valuation import grid_table

    wide = grid_table(frame)
    names = [c.removesuffix("_price") for c in wide.columns if c.endswith("_price")]
    headers = ["target IRR>"]
    for name in names:
        headers += [f"{name}>", "% GBV>"]
    rows = [
        [_pct(r["target_irr"])]
        + [x for n in names for x in (_money(r[f"{n}_price"]), _pct(r[f"{n}_pct_gbv"]))]
        for r in wide.iter_rows(named=True)
    ]
    console = _console()
    console.print("Bid grid: price at each target IRR")
    console.print(_table(headers, rows))


def _print_tornado(frame: pl.DataFrame, *, base: float) -> None:
    """Print the sensitivities, widest swing first."""
    console = _console()
    console.print(f"Sensitivities of the weighted price ({_money(base)})")
    rows = []
    swings = frame.group_by("driver", maintain_order=True).agg(
        pl.col("change").abs().max().alias("swing")
    )
    for driver in swings.sort("swing", descending=True, maintain_order=True)["driver"]:
        pair = frame.filter(pl.col("driver") == driver)
        down, up = (
            pair.filter(pl.col("direction") == d).row(0, named=True) for d in ("down", "up")
        )
        rows.append(
            [
                driver,
                down["shock"],
                _signed_money(down["change"]),
                _pct(down["change_pct"]),
                up["shock"],
                _signed_money(up["change"]),
                _pct(up["change_pct"]),
            ]
        )
    headers = ["driver", "down", "price change>", "%>", "up", "price change>", "%>"]
    console.print(_table(headers, rows))


def _print_tranches(tranches: dict[str, Any]) -> None:
    """Print each class of notes per scenario: price, yield, WAL and loss."""
    from npl_engine.valuation import tranche_table

    frame = tranche_table(tranches)
    rows = [
        [
            r["tranche"],
            r["scenario"],
            _money(r["price"]),
            _pct(r["yield"]),
            "-" if r["wal_years"] is None else f"{r['wal_years']:.2f}",
            _money(r["loss"]),
            _pct(r["loss_share"]),
        ]
        for r in frame.sort("order", maintain_order=True).iter_rows(named=True)
    ]
    console = _console()
    console.print(f"Tranches at a price of {_money(tranches['price'])}")
    headers = ["class", "scenario", "price>", "yield>", "WAL (years)>", "loss>", "loss %>"]
    console.print(_table(headers, rows))
    sim = tranches.get("simulation")
    if sim:
        rows = [
            [
                c["tranche"],
                _pct(c["irr_mean"]),
                _pct(c.get("irr_p5")),
                _pct(c.get("irr_p95")),
                _pct(c["loss_share_mean"]),
                _pct(c["p_loss"]),
            ]
            for c in sim["summary"]
        ]
        console.print(f"Tranches over {sim['n_paths']:,} Monte Carlo paths")
        headers = ["class", "mean yield>", "P5 yield>", "P95 yield>", "mean loss %>", "P(loss)>"]
        console.print(_table(headers, rows))


def _print_valuation(
    result: dict[str, Any],
    *,
    grid_frame: pl.DataFrame | None = None,
    tornado: pl.DataFrame | None = None,
) -> None:
    """Print the price table, the Monte Carlo percentiles, bid grid, tornado and tranches."""
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
    if grid_frame is not None:
        _print_grid(grid_frame)
    if tornado is not None:
        _print_tornado(tornado, base=result["weighted"]["price"])
    if "tranches" in result:
        _print_tranches(result["tranches"])


@main.command("expected-loss")
@MODEL_OPTION
@data_option("A book or a tape (its loans table).")
@SCENARIOS_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for expected_loss.parquet / .csv / .xlsx and summary.json.",
)
@click.option(
    "--discount-rate",
    type=click.FloatRange(-0.99),
    default=None,
    help="Basel workout LGD: discount every loan at this annual rate (EBA GL/2017/16: an "
    "interbank rate + 0.05) instead of its contractual rate (IFRS 9, the default).",
)
@CHUNK_ROWS_OPTION
@CLUSTER_OPTION
@_audit_options
@_user_errors
def expected_loss_command(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    discount_rate: float | None,
    chunk_rows: int | None = None,
    cluster_address: str | None = None,
    audit_db: Path | None = None,
    no_audit: bool = False,
) -> None:
    """Expected loss per loan (workout LGD × EAD), per scenario and weighted, for a risk file.

    LGD = 1 − PV(net collections) / EAD, discounted at each loan's contractual rate (IFRS 9
    stage 3, lifetime ECL; the contractual rate stands in for the effective interest rate) or,
    with --discount-rate, at one stated rate (Basel workout LGD). Summaries by scenario,
    segment, legal stage, region, default vintage and months since default; per-loan rows with
    those columns; Parquet, CSV, Excel and summary.json; a decision record (docs/valuation.md).
    A tape of more than 250,000 loans is worked through in chunks (--chunk-rows;
    docs/scale.md#out-of-core).
    """
    from npl_engine.data import count_loans
    from npl_engine.data.writers import atomic_folder
    from npl_engine.scenarios import load_scenarios
    from npl_engine.scoring import RecoveryModel, chunk_rows_for
    from npl_engine.valuation import EL_FILES, expected_loss

    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    cluster = _cluster(cluster_address)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    tape = read_data(data_dir)
    chunk = chunk_rows_for(count_loans(tape.loans), chunk_rows)
    el = expected_loss(
        model,
        tape,
        scenario_set,
        discount_rate=discount_rate,
        progress=say,
        cluster=cluster,
        chunk_rows=chunk,
    )
    say(f"writing {out}")
    with atomic_folder(out, allowed=EL_FILES) as staging:
        el.save(staging)
        _record_decisions(
            audit_db,
            no_audit=no_audit,
            command="expected-loss",
            loans=tape.loans if chunk else tape.loans.collect(),
            outputs=el.loans.select("loan_id", exposure="ead", lgd="lgd", expected_loss="el"),
            chunk_rows=chunk or None,
            data_dir=data_dir,
            model_dir=model_dir,
            parameters={
                "scenarios": _file_ref(scenarios_file),
                "discount_basis": el.discount_basis,
                "discount_rate": discount_rate,
                "weighted_el": el.by_scenario.filter(scenario="weighted")["el"].item(),
            },
        )
    _print_expected_loss(el)
    if el.horizon_note:
        click.echo(f"note: {el.horizon_note}", err=True)
    if not el.workbook_has_loans:
        click.echo(
            "note: the workbook leaves out the loans sheet: more rows than Excel holds; every "
            "loan is in expected_loss.parquet and expected_loss.csv",
            err=True,
        )
    click.echo(f"wrote {out / 'expected_loss.parquet'}, .csv, .xlsx and {out / 'summary.json'}")


def _print_expected_loss(el: Any) -> None:
    """Print the per-scenario totals and each grouping's table."""
    out_console = _console()
    basis = (
        "each loan's contractual rate (IFRS 9)"
        if el.discount_rate is None
        else f"{el.discount_rate:.2%} for every loan (Basel workout LGD)"
    )
    out_console.print(f"Expected loss, discounted at {basis}")
    rows = [
        [r["scenario"], f"{r['weight']:.2f}", _money(r["ead"]), _money(r["el"]),
         _pct(r["el_rate"])]
        for r in el.by_scenario.iter_rows(named=True)
    ]  # fmt: skip
    out_console.print(_table(["scenario", "weight>", "EAD>", "expected loss>", "EL / EAD>"], rows))
    for key, frame in el.groups.items():
        rows = [
            [str(r[key]), f"{r['loans']:,}", _money(r["ead"]), _money(r["el"]),
             _pct(r["el_rate"])]
            for r in frame.iter_rows(named=True)
        ]  # fmt: skip
        title = key.replace("_", " ")
        out_console.print(_table([title, "loans>", "EAD>", "expected loss>", "EL / EAD>"], rows))


def _load_tranches(path: Path | None) -> Any:
    """Parse a tranche file, if given (before any long work, so a bad file fails fast)."""
    if path is None:
        return None
    from npl_engine.valuation import load_tranches

    return load_tranches(path)
