"""Operations commands: decision records, the scoring service and its keys, fairness, the report."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
import polars as pl

from npl_engine.cli._base import (
    MODEL_OPTION,
    SCENARIOS_OPTION,
    F,
    _audit_db_option,
    _audit_options,
    _console,
    _steps,
    _table,
    _user_errors,
    check_out_file,
    data_option,
    main,
    read_data,
)
from npl_engine.errors import NplError


@main.group()
def audit() -> None:
    """Read the decision records (see docs/audit.md): list runs, show one, export for review."""


@audit.command("list")
@_audit_db_option
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1), help="Runs shown.")
@click.option("--command", "command_name", default=None, help="Only runs of this command.")
@_user_errors
def audit_list(*, audit_db: Path | None, limit: int, command_name: str | None) -> None:
    """List the latest runs, newest first."""
    from npl_engine.audit import default_audit_path, open_reader

    db = audit_db if audit_db is not None else default_audit_path()
    with open_reader(db) as store:
        runs = store.runs(limit=limit, command=command_name)
        via = f" (read through {store.via})" if store.via else ""
    rows = [
        (
            str(r["run_id"]),
            r["recorded_at"].strftime("%Y-%m-%d %H:%M:%S"),
            str(r["caller"]),
            str(r["command"]),
            f"{r['n_loans']:,}",
            (r["model_fingerprint"] or "-")[:12],
        )
        for r in runs.iter_rows(named=True)
    ]
    console = _console()
    console.print(f"{db}{via}: {len(rows)} latest run(s)")
    console.print(_table(["run id", "time (UTC)", "caller", "command", "loans>", "model"], rows))


@audit.command("show")
@click.argument("record_id")
@_audit_db_option
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1), help="Loans shown.")
@_user_errors
def audit_show(*, record_id: str, audit_db: Path | None, limit: int) -> None:
    """Show a run (RECORD_ID = run id) or one loan's decision (RECORD_ID = run_id:seq)."""
    from npl_engine.audit import default_audit_path, open_reader

    run_id, _, seq_text = record_id.partition(":")
    if seq_text and not seq_text.isdigit():
        msg = f"{record_id!r} is neither a run id nor a decision id (run_id:number)"
        raise NplError(msg)
    db = audit_db if audit_db is not None else default_audit_path()
    with open_reader(db) as store:
        run = store.run(run_id)
        if run is None:
            msg = f"no run {run_id!r} in {db}; `npl audit list` shows the latest"
            raise NplError(msg)
        seq = int(seq_text) if seq_text else None
        decisions = store.decisions(run_id, seq=seq, limit=None if seq else limit)
    if seq is not None and decisions.height == 0:
        msg = f"run {run_id} has {run['n_loans']:,} loan(s); there is no decision {seq}"
        raise NplError(msg)
    console = _console()
    for key, val in run.items():
        console.print(f"{key:>18}: {val}")
    rows = [
        (f"{run_id}:{r['seq']}", str(r["loan_id"]), str(r["outputs"]), str(r["reasons"] or "-"))
        for r in decisions.iter_rows(named=True)
    ]
    if seq is None and run["n_loans"] > decisions.height:
        console.print(f"first {decisions.height:,} of {run['n_loans']:,} decisions:")
    console.print(_table(["decision id", "loan_id", "outputs", "reasons"], rows))
    if seq is not None:
        inputs = decisions.drop("run_id", "seq", "outputs", "reasons").row(0, named=True)
        console.print(_table(["input", "value"], [(k, str(v)) for k, v in inputs.items()]))


@audit.command("export")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Parquet file to write: one row per decision, with its run's fields.",
)
@click.option("--run", "run_id", default=None, help="Only this run. Default: every run.")
@_audit_db_option
@_user_errors
def audit_export(*, out: Path, run_id: str | None, audit_db: Path | None) -> None:
    """Write decision records to one Parquet file: one row per loan decision, with its run."""
    from npl_engine.audit import default_audit_path, open_reader

    check_out_file(out, suffixes=(".parquet",))
    db = audit_db if audit_db is not None else default_audit_path()
    with open_reader(db) as store:
        if run_id is not None and store.run(run_id) is None:
            msg = f"no run {run_id!r} in {db}; `npl audit list` shows the latest"
            raise NplError(msg)
        n = store.export(out, run_id=run_id)
    click.echo(f"wrote {n:,} decision(s) to {out}")


@main.command()
@MODEL_OPTION
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: enables /v1/recommend.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--keys-file",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="API key file (`npl keys create`). Default: $NPL_API_KEYS_FILE, else "
    "~/.config/npl_engine/api_keys.json. $NPL_API_KEY adds one more key.",
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without API keys (only on a machine of your own; never on a network).",
)
@click.option(
    "--max-loans",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Loans per /v1/score request at most.",
)
@_audit_options
@_user_errors
def serve(
    *,
    model_dir: Path,
    effects_dir: Path | None,
    host: str,
    port: int,
    keys_file: Path | None,
    no_auth: bool,
    max_loans: int,
    audit_db: Path | None,
    no_audit: bool,
) -> None:
    """Serve real-time scoring over HTTP (FastAPI; OpenAPI docs at /docs; see docs/service.md).

    POST /v1/score, POST /v1/recommend, GET /v1/model, GET /healthz, GET /readyz. Every score
    and recommendation is recorded in the audit database before it is returned.
    """
    from npl_engine.audit import default_audit_path
    from npl_engine.service import ApiKeys, ServiceSettings, default_keys_file, serve

    _check_can_listen(host, port)
    keys = None
    if not no_auth:
        path = keys_file if keys_file is not None else default_keys_file()
        keys = ApiKeys.load(path)
        if not keys.hashes:
            msg = (
                f"no API keys: {path} holds none and $NPL_API_KEY is not set. Create one with "
                "`npl keys create --name NAME`, or pass --no-auth for a local trial"
            )
            raise NplError(msg)
    settings = ServiceSettings(
        model_dir=model_dir,
        effects_dir=effects_dir,
        audit_db=None if no_audit else (audit_db or default_audit_path()),
        keys=keys,
        max_loans=max_loans,
        max_body_bytes=max(2 * 2**20, max_loans * 4096),
    )
    click.echo(f"serving {model_dir} on http://{host}:{port} (docs: /docs)", err=True)
    serve(settings, host=host, port=port)


def _check_can_listen(host: str, port: int) -> None:
    """Refuse at once, with a plain message, an address the service could not listen on."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or exc
        msg = f"cannot listen on {host}:{port}: {reason}; choose another --host or --port"
        raise NplError(msg) from None


@main.group()
def keys() -> None:
    """API keys of the scoring service (`npl serve`): create and list them."""


def _keys_file_option(func: F) -> F:
    return click.option(
        "--keys-file",
        default=None,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Key file. Default: $NPL_API_KEYS_FILE, else ~/.config/npl_engine/api_keys.json.",
    )(func)


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for, e.g. collections-app.")
@_keys_file_option
@_user_errors
def keys_create(*, name: str, keys_file: Path | None) -> None:
    """Create an API key: prints it once; the key file keeps only its hash."""
    from npl_engine.service import create_key, default_keys_file

    path = keys_file if keys_file is not None else default_keys_file()
    key_id, key = create_key(path, name=name)
    click.echo(f"created key {key_id} ({name}) in {path}; it is shown only now:", err=True)
    click.echo(key)


@keys.command("list")
@_keys_file_option
@_user_errors
def keys_list(*, keys_file: Path | None) -> None:
    """List the keys of a key file (ids, names, dates; never the keys)."""
    from npl_engine.service import default_keys_file, read_key_records

    path = keys_file if keys_file is not None else default_keys_file()
    rows = [
        (str(r["id"]), str(r.get("name", "")), str(r.get("created_at", "")))
        for r in read_key_records(path)
    ]
    _console().print(f"{path}: {len(rows)} key(s)")
    _console().print(_table(["id", "name", "created"], rows))


@main.command()
@MODEL_OPTION
@data_option("A book (loans, actions, payments) whose outcomes are known.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for fairness.json and fairness.parquet.",
)
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: adds the action plan's decisions (settlement offered, "
    "legal action spared).",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.0),
    default=None,
    help="With --effects: the plan's total action cost. Default: no limit.",
)
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Day the history was extracted (YYYY-MM-DD). Default: latest payment or action date.",
)
@click.option(
    "--top-share",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="'prioritised' decision: this share of the loans with the highest p_recover.",
)
@click.option(
    "--min-ratio",
    default=0.8,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Four-fifths rule: flag a decision rate below this × the most favoured group's.",
)
@click.option(
    "--max-calibration-gap",
    default=0.03,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True),
    help="Flag a group whose calibration gap differs from the other groups' by this much.",
)
@click.option(
    "--z-threshold",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.0, min_open=True),
    help="A flag also needs the difference to be this many standard errors from zero.",
)
@click.option(
    "--min-group-size",
    default=50,
    show_default=True,
    type=click.IntRange(2),
    help="Smaller groups are shown but never flagged.",
)
@_user_errors
def fairness(
    *,
    model_dir: Path,
    data_dir: Path,
    out: Path,
    effects_dir: Path | None,
    budget: float | None,
    as_of: datetime | None,
    top_share: float,
    min_ratio: float,
    max_calibration_gap: float,
    z_threshold: float,
    min_group_size: int,
) -> None:
    """Check the recovery model for unfair treatment by gender, age band and region.

    On a book with known outcomes, per group: mean p_recover, realised recovery rate, AUC,
    calibration (predicted vs realised) and the rate of favourable decisions with its ratio to
    the most favoured group. Flags where the four-fifths rule or the calibration threshold is
    crossed beyond noise (see docs/fairness.md). Writes OUT/fairness.json and
    OUT/fairness.parquet.
    """
    from npl_engine.fairness import FairnessSettings, fairness_report
    from npl_engine.scoring import RecoveryModel

    settings = FairnessSettings(
        top_share=top_share,
        min_ratio=min_ratio,
        max_calibration_gap=max_calibration_gap,
        z_threshold=z_threshold,
        min_group_size=min_group_size,
    )
    if budget is not None and effects_dir is None:
        msg = "--budget is for the action plan: give --effects DIR too"
        raise NplError(msg)
    console = _console(stderr=True)
    say = _steps(console)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    effects = None
    if effects_dir is not None:
        say(f"loading {effects_dir}")
        from npl_engine.causal import Effects

        effects = Effects.load(effects_dir)
    say(f"reading and validating {data_dir}")
    book = read_data(data_dir, kind="book", as_of=as_of.date() if as_of else None)
    if effects is not None:
        say("planning actions (the decisions compared between groups)")
    say("scoring the book and comparing groups")
    report = fairness_report(model, book, settings=settings, effects=effects, budget=budget)
    say(f"writing {out}")
    report.save(out)
    _print_fairness(report)
    click.echo(f"wrote {out / 'fairness.json'} and {out / 'fairness.parquet'}")


def _print_fairness(report: Any) -> None:
    """One table per attribute, then the flags."""
    console = _console()
    o = report.overall
    console.print(
        f"{report.n_loans:,} loans, {report.n_labelled:,} with the recovery window observed; "
        f"overall predicted {o['predicted']:.1%}, realised {o['realised']:.1%}"
    )
    names = list(report.decisions)

    def num(x: Any, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for attribute in ("gender", "age_band", "region"):
        frame = report.groups.filter(pl.col("attribute") == attribute)
        if frame.height == 0:
            console.print(f"{attribute}: no loan records it")
            continue
        rows = []
        for r in frame.iter_rows(named=True):
            row = [
                str(r["group"]),
                f"{r['n']:,}",
                f"{r['n_labelled']:,}",
                num(r["mean_p_recover"], ".3f"),
                num(r["predicted"], ".3f"),
                num(r["realised"], ".3f"),
                num(r["gap_vs_rest"], "+.3f") + (" !" if r["calibration_flag"] else ""),
                num(r["auc"], ".3f"),
            ]
            for d in names:
                flag = " !" if r[f"{d}_flag"] else ""
                row.append(f"{num(r[f'{d}_rate'], '.1%')} ({num(r[f'{d}_ratio'], '.2f')}){flag}")
            rows.append(row)
        headers = ["group", "loans>", "labelled>", "mean p_recover>", "predicted>", "realised>",
                   "gap vs rest>", "AUC>", *[f"{d} (ratio)>" for d in names]]  # fmt: skip
        console.print(f"\n[bold]{attribute}[/bold]")
        console.print(_table(headers, rows))
    if report.flags:
        for f in report.flags:
            click.secho(f"flag: {f['message']}", fg="yellow")
    else:
        click.echo("no flag raised")


@main.command("report")
@MODEL_OPTION
@data_option("The tape to report on (its loans table).")
@SCENARIOS_OPTION
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The HTML file to write, e.g. report.html.",
)
@click.option(
    "--effects",
    "effects_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl effects`: adds action effects and the plan's value.",
)
@click.option(
    "--fairness-book",
    "fairness_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="A book with known outcomes: adds the fairness checks (as `npl fairness`).",
)
@click.option(
    "--budget",
    type=click.FloatRange(0.0),
    default=None,
    help="With --effects: the plan's total action cost. Default: no limit.",
)
@click.option(
    "--backtest",
    "backtest_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl backtest`: adds realised collections against the plan.",
)
@click.option(
    "--simulations",
    type=click.IntRange(0),
    default=500,
    show_default=True,
    help="Monte Carlo paths (0 = none).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--monitor",
    "monitor_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="Folder written by `npl monitor`: adds the monitoring section.",
)
@click.option("--title", default="NPL portfolio report", show_default=True)
@_user_errors
def report_command(
    *,
    model_dir: Path,
    data_dir: Path,
    scenarios_file: Path,
    out: Path,
    effects_dir: Path | None,
    fairness_dir: Path | None,
    budget: float | None,
    backtest_dir: Path | None,
    simulations: int,
    seed: int,
    monitor_dir: Path | None,
    title: str,
) -> None:
    """Write one self-contained HTML report: charts of the portfolio, prices, drivers and more.

    Portfolio composition, expected collections by segment and scenario, price by scenario and
    its Monte Carlo distribution, SHAP importance, action effects and the plan's value (with
    --effects), fairness (with --fairness-book) and the model card. The file opens offline and
    makes no network request (see docs/report.md).
    """
    from npl_engine.report import gather, render, write_report
    from npl_engine.scenarios import load_scenarios
    from npl_engine.scoring import RecoveryModel

    check_out_file(out, suffixes=(".html", ".htm"))
    if budget is not None and effects_dir is None:
        msg = "--budget is for the action plan: give --effects DIR too"
        raise NplError(msg)
    console = _console(stderr=True)
    say = _steps(console)
    scenario_set = load_scenarios(scenarios_file)
    say(f"loading {model_dir}")
    model = RecoveryModel.load(model_dir)
    say(f"reading and validating {data_dir}")
    tape = read_data(data_dir)
    book = None
    if fairness_dir is not None:
        say(f"reading and validating {fairness_dir}")
        book = read_data(fairness_dir, kind="book")
    data = gather(
        model,
        tape,
        scenario_set,
        title=title,
        effects_dir=effects_dir,
        fairness_book=book,
        simulations=simulations,
        budget=budget,
        seed=seed,
        monitor_dir=monitor_dir,
        progress=say,
        backtest_dir=backtest_dir,
    )
    say(f"writing {out}")
    write_report(render(data), out)
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it in any browser")
