"""Per-loan work on a Dask LocalCluster equals the in-memory run, whatever the partitions."""

from __future__ import annotations

import concurrent.futures
import json
import operator
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner, Result
from distributed import Client, LocalCluster
from polars.testing import assert_frame_equal

from npl_engine import distributed
from npl_engine.audit import AuditStore
from npl_engine.causal import (
    ActionEffectModel,
    BusinessAsUsual,
    Effects,
    PolicyInputs,
    PolicyPart,
    plan_price,
    plan_shadow_price,
    solve_plan,
)
from npl_engine.causal import _policy as policy_module
from npl_engine.causal._policy import ActionCosts, _PriceSchedule, plan_actions, policy_inputs
from npl_engine.cli import main
from npl_engine.data import read_dataset
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.errors import NplError
from npl_engine.scenarios import load_scenarios
from npl_engine.scoring import RecoveryModel
from npl_engine.valuation import (
    MonteCarloSettings,
    build_portfolio,
    collateral_grid_for,
    expected_loss,
    portfolio_expected_loss,
    simulate_paths,
    value_portfolio,
)

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "eu_2026.toml"
PARTITIONS = (1, 3, 7)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A 2-worker LocalCluster (threads: worker processes would each import the engine)."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def tape_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5,000-loan tape folder (seed 41)."""
    root = tmp_path_factory.mktemp("scale")
    write_simulation(simulate(SimulationSettings(n_loans=5_000, seed=41, kind="tape")), root)
    return root


@pytest.fixture(scope="module")
def tape(small_model_and_tape: tuple[Path, Path], tape_dir: Path):
    """The small model and the 5,000-loan tape's loans."""
    model = RecoveryModel.load(small_model_and_tape[0])
    return model, read_dataset(tape_dir).loans.collect()


def test_partitions_cover_every_loan_once() -> None:
    """Every position falls in exactly one partition, the same one on every call."""
    ids = pl.Series([f"L{i}" for i in range(1000)])
    parts = distributed.partition_rows(ids, 7)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    assert all(
        np.array_equal(a, b) for a, b in zip(parts, distributed.partition_rows(ids, 7), strict=True)
    )
    assert min(p.size for p in parts) > 100  # the hash spreads the loans


@pytest.mark.parametrize("n", PARTITIONS)
def test_scores_equal_in_memory(client: Client, tape, n: int) -> None:
    """Scores and curves scored in n partitions are the in-memory rows, in the same order."""
    model, loans = tape
    local = model.score(loans.lazy())
    remote = distributed.score(distributed.Cluster(client=client, partitions=n), model, loans)
    assert_frame_equal(remote.scores, local.scores, check_exact=True)
    assert_frame_equal(remote.curves, local.curves, check_exact=True)


@pytest.mark.parametrize("n", PARTITIONS)
def test_value_paths_and_expected_loss_equal_in_memory(client: Client, tape, n: int) -> None:
    """Valuation, expected loss and 200 Monte Carlo paths equal the in-memory run (1e-9)."""
    model, loans = tape
    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    settings = MonteCarloSettings(n_paths=200, seed=7)
    local = build_portfolio(model, loans, collateral_grid=grid)
    cluster = distributed.Cluster(client=client, partitions=n)
    book = distributed.portfolio(cluster, model, loans, collateral_grid=grid)
    for name in ("exposure", "p_recover", "borrower", "collateral", "collateral_response"):
        assert np.array_equal(getattr(book.portfolio, name), getattr(local, name)), name
    assert book.portfolio.loan_id.equals(local.loan_id)
    v_local = value_portfolio(local, scenarios, price=1e6)
    v_remote = value_portfolio(book.portfolio, scenarios, price=1e6)
    assert v_remote.to_dict() == v_local.to_dict()
    el_local = portfolio_expected_loss(local, scenarios)
    el_remote = portfolio_expected_loss(book.portfolio, scenarios)
    assert_frame_equal(el_remote.loans, el_local.loans, check_exact=True)
    threshold = model.definition.threshold
    p_local = simulate_paths(local, scenarios, settings, recovery_threshold=threshold, price=1e6)
    p_remote = distributed.simulate_paths(
        cluster, book, scenarios, settings, recovery_threshold=threshold, price=1e6
    )
    assert np.array_equal(p_remote.scenario, p_local.scenario)
    np.testing.assert_allclose(p_remote.net, p_local.net, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(p_remote.price, p_local.price, rtol=1e-9)
    np.testing.assert_allclose(p_remote.irr_at_price, p_local.irr_at_price, rtol=1e-9)


@pytest.mark.parametrize("n", PARTITIONS)
def test_expected_loss_is_worked_out_per_partition_and_equals_in_memory(
    client: Client, tape, tape_dir: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`expected_loss` on a cluster: the in-memory per-loan rows, and sums to 1e-9 relative.

    Each partition's expected loss is worked out on its worker: the client never gathers the
    loans' curves (building the portfolio on the client is made to fail here).
    """
    model, _ = tape
    local = expected_loss(model, tape_dir, SCENARIOS)

    def gathered(*_: object, **__: object) -> None:
        raise AssertionError("the portfolio was gathered to the client")

    monkeypatch.setattr(distributed, "portfolio", gathered)
    remote = expected_loss(
        model, tape_dir, SCENARIOS, cluster=distributed.Cluster(client=client, partitions=n)
    )
    assert_frame_equal(remote.loans, local.loans, check_exact=True)
    assert_frame_equal(remote.by_scenario, local.by_scenario, check_exact=False, rel_tol=1e-9)
    assert remote.groups.keys() == local.groups.keys()
    for by, table in local.groups.items():
        assert_frame_equal(remote.groups[by], table, check_exact=False, rel_tol=1e-9)


def test_expected_loss_in_chunks_on_the_cluster_equals_in_memory(
    client: Client, tape, tape_dir: Path
) -> None:
    """`expected_loss(chunk_rows=N, cluster=...)`: each chunk's partitions on the workers.

    Per-loan rows identical to the in-memory run's, sums to 1e-9 relative.
    """
    model, _ = tape
    local = expected_loss(model, tape_dir, SCENARIOS)
    steps: list[str] = []
    remote = expected_loss(
        model, tape_dir, SCENARIOS, chunk_rows=1_800, progress=steps.append,
        cluster=distributed.Cluster(client=client, partitions=3),
    )  # fmt: skip
    assert "chunk 3/3: loans 3,601 to 5,000" in steps
    assert sum(s.startswith("expected loss of") and " on " in s for s in steps) == 3
    assert_frame_equal(remote.loans.lazy().collect(), local.loans, check_exact=True)
    assert_frame_equal(remote.by_scenario, local.by_scenario, check_exact=False, rel_tol=1e-9)
    for by, table in local.groups.items():
        assert_frame_equal(remote.groups[by], table, check_exact=False, rel_tol=1e-9)


def test_monte_carlo_does_not_depend_on_loan_order(tape) -> None:
    """The same loans shuffled give the same paths: draws are keyed on loan ids, not rows."""
    model, loans = tape
    scenarios = load_scenarios(SCENARIOS)
    grid = collateral_grid_for(scenarios, monte_carlo=True)
    settings = MonteCarloSettings(n_paths=50, seed=3)
    book = build_portfolio(model, loans, collateral_grid=grid)
    shuffled = book.take(np.random.default_rng(0).permutation(book.n_loans))
    t = model.definition.threshold
    a = simulate_paths(book, scenarios, settings, recovery_threshold=t)
    b = simulate_paths(shuffled, scenarios, settings, recovery_threshold=t)
    np.testing.assert_allclose(a.net, b.net, rtol=1e-9)


def _npl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _cli_runs_equal(model: Path, tape: Path, out: Path, cluster: str) -> None:
    """`npl value` (with paths) and `npl score` on ``cluster`` write what they write in process."""
    common = ("--model", model, "--data", tape, "--no-audit")
    value = ("value", *common, "--scenarios", SCENARIOS, "--price", "5e7", "--simulations", "40")
    assert _npl(*value, "--out", out / "a").exit_code == 0
    result = _npl(*value, "--out", out / "b", "--cluster", cluster)
    assert result.exit_code == 0, result.output
    assert f"on {cluster}" in result.output
    a = json.loads((out / "a" / "valuation.json").read_text())
    b = json.loads((out / "b" / "valuation.json").read_text())
    pa, pb = a.pop("simulation").pop("percentiles"), b.pop("simulation").pop("percentiles")
    assert b == a
    for name, qs in pa.items():
        assert pb[name] == pytest.approx(qs, rel=1e-9)
    for name in ("cashflows.parquet", "paths.parquet"):
        assert_frame_equal(
            pl.read_parquet(out / "b" / name), pl.read_parquet(out / "a" / name), rel_tol=1e-9
        )
    assert _npl("score", *common, "--out", out / "s1").exit_code == 0
    result = _npl("score", *common, "--out", out / "s2", "--cluster", cluster)
    assert result.exit_code == 0, result.output
    for name in ("scores.parquet", "curves.parquet"):
        assert_frame_equal(
            pl.read_parquet(out / "s2" / name),
            pl.read_parquet(out / "s1" / name),
            check_exact=True,
        )


def test_cli_on_a_scheduler_address_equals_in_process(
    client: Client, small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """--cluster tcp://... (the test's in-process scheduler) gives the in-process outputs."""
    _cli_runs_equal(*small_model_and_tape, tmp_path, client.scheduler.address)


@pytest.mark.slow
def test_cli_on_local_worker_processes_equals_in_process(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """--cluster local:2 (two worker processes started and stopped by npl) gives the same."""
    _cli_runs_equal(*small_model_and_tape, tmp_path, "local:2")


def test_cli_refuses_a_bad_cluster_address(
    small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """A malformed local:N is a clear error (exit 2), and nothing is written."""
    model, tape = small_model_and_tape
    result = _npl(
        "score",
        "--model",
        model,
        "--data",
        tape,
        "--no-audit",
        "--out",
        tmp_path / "s",
        "--cluster",
        "local:zero",
    )
    assert result.exit_code == 2
    assert "local:N" in result.output
    assert not (tmp_path / "s").exists()


def test_no_scheduler_at_the_address_is_a_clear_error() -> None:
    """An address where no scheduler answers raises NplError naming the address."""
    with (
        pytest.raises(NplError, match=r"no Dask scheduler answered at 'tcp://127.0.0.1:1'"),
        distributed.connect("tcp://127.0.0.1:1", timeout_seconds=1),
    ):
        pass


@pytest.mark.slow
def test_policy_inputs_and_plan_equal_in_memory(client: Client, tape) -> None:
    """Effects predicted in 1, 3 and 7 partitions give the in-memory plan (1e-9 relative).

    The causal forest sums its trees in an order that depends on the rows predicted together,
    so effects agree to rounding (not bit for bit) and the plan's actions are the same.
    """
    _, loans = tape
    book = simulate(SimulationSettings(n_loans=3000, seed=43, kind="book")).dataset()
    model = ActionEffectModel(n_estimators=40, seed=0).fit(book)
    costs = ActionCosts(
        fixed=dict.fromkeys(model.actions_, 20.0), per_exposure=dict.fromkeys(model.actions_, 0.001)
    )
    inputs = policy_inputs(model, loans.lazy(), costs)
    ids, uplift, cost, bau = inputs.loan_ids, inputs.uplift, inputs.cost, inputs.bau
    budget = 0.3 * float(cost.max(axis=1).sum())
    local = plan_actions(ids, uplift, cost, model.actions_, budget=budget, bau=bau)
    assert local.plan["cost"].sum() <= budget
    for n in PARTITIONS:
        cluster = distributed.Cluster(client=client, partitions=n)
        r = distributed.policy_inputs(cluster, model, loans, costs)
        r_ids, r_uplift, r_cost, r_bau = r.loan_ids, r.uplift, r.cost, r.bau
        assert r_ids.equals(ids)
        np.testing.assert_allclose(r_uplift, uplift, rtol=1e-9, atol=1e-9)
        assert np.array_equal(r_cost, cost)
        assert np.array_equal(r_bau.propensity, bau.propensity)
        remote = plan_actions(r_ids, r_uplift, r_cost, model.actions_, budget=budget, bau=r_bau)
        assert remote.plan["action"].equals(local.plan["action"])
        assert_frame_equal(remote.plan, local.plan, rel_tol=1e-9, abs_tol=1e-9)
        assert_frame_equal(remote.comparison, local.comparison, rel_tol=1e-9, abs_tol=1e-9)
    # the plan's settlement columns: predicted on the client for the offered loans only
    effects = Effects(model, {"outcome": "recovery_rate", "actions": []}, None, costs)
    mine = effects.plan(loans, budget).plan
    theirs = effects.plan(loans, budget, cluster=cluster).plan
    assert (mine["action"] == "settlement_offer").any()
    assert_frame_equal(theirs, mine, rel_tol=1e-9, abs_tol=1e-9)


@pytest.fixture(scope="module")
def effects_model():
    """A small effect model (20 trees on a 1,500-loan book) and its costs."""
    book = simulate(SimulationSettings(n_loans=1500, seed=43, kind="book")).dataset()
    model = ActionEffectModel(n_estimators=20, seed=0).fit(book)
    costs = ActionCosts(
        fixed=dict.fromkeys(model.actions_, 20.0), per_exposure=dict.fromkeys(model.actions_, 0.001)
    )
    return model, costs


@pytest.mark.parametrize("n", PARTITIONS)
def test_the_budget_is_solved_over_partitions_kept_on_the_workers(
    client: Client, tape, effects_model, n: int
) -> None:
    """Price, shadow price and every loan's action equal the one-schedule solver's, bit for bit.

    The per-loan inputs stay on the workers (one price schedule per partition); the reference
    is :func:`solve_plan` on the same inputs gathered, at budgets 0, past the unconstrained
    spend, exactly at spends after events (where rounding decides) and in between.
    """
    _, loans = tape
    model, costs = effects_model
    cluster = distributed.Cluster(client=client, partitions=n)
    held = distributed.policy_parts(cluster, model, loans, costs)
    gathered = distributed.policy_inputs(cluster, model, loans, costs, with_bau=False)
    whole = _PriceSchedule(gathered.uplift, gathered.cost)
    rng = np.random.default_rng(n)
    after = whole.spend0 + whole.cum_change
    budgets = [
        0.0,
        whole.spend0,
        2 * whole.spend0,
        *rng.choice(after, 6),
        *rng.uniform(0, whole.spend0, 3),
    ]
    order = pl.Series(distributed.input_order(held.rows))

    def each(query):  # type: ignore[no-untyped-def]
        return held.each(operator.methodcaller("ask", query))

    for budget in map(float, budgets):
        price, pick = whole.plan_for(budget)
        assert plan_price(budget, each) == price
        assert plan_shadow_price(price, each) == whole.shadow_price(price)
        plan = pl.concat(held.each(operator.methodcaller("plan", price, model.actions_)))[order]
        codes = plan["action"].replace_strict(
            ["none", *model.actions_], range(-1, len(model.actions_))
        )
        assert np.array_equal(codes.to_numpy(), pick)
        assert np.array_equal(pick, solve_plan(gathered.uplift, gathered.cost, budget=budget))


@pytest.mark.parametrize("split", [(1, None), (3, None), (7, None), (3, 1_800)])
def test_a_plan_on_the_cluster_never_gathers_the_tape_and_equals_the_plan_of_its_inputs(
    client: Client,
    tape,
    effects_model,
    split: tuple[int, int | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`Effects.plan(cluster=...)`: the plan and comparison of `plan_actions`, bit for bit.

    The reference plans the same per-loan inputs gathered to the client; the cluster's run
    is made to fail if it gathers them (`distributed.policy_inputs`, or any partition's part
    or more loans' inputs than the business-as-usual sample and the settlement offers). With
    ``chunk_rows`` the tape goes to the workers in 3 chunks (their parts all stay there).
    """
    n, chunk_rows = split
    _, loans = tape
    model, costs = effects_model
    monkeypatch.setattr(policy_module, "BAU_SAMPLE", 400)
    cluster = distributed.Cluster(client=client, partitions=n)
    r = distributed.policy_inputs(cluster, model, loans, costs, with_bau=False, with_interval=True)
    sample = policy_module._bau_rows(loans.height)
    x = model.covariates(loans[pl.Series(sample)].lazy())
    bau = BusinessAsUsual(propensity=model.propensity(x), rows=sample)
    budget = 0.2 * float(r.cost.max(axis=1).sum())
    local = plan_actions(
        r.loan_ids, r.uplift, r.cost, model.actions_, budget=budget, bau=bau,
        uplift_low=r.uplift_low, uplift_high=r.uplift_high,
    )  # fmt: skip
    taken: list[int] = []
    gather = client.gather

    def watched(futures, *args, **kwargs):  # type: ignore[no-untyped-def]
        results = gather(futures, *args, **kwargs)
        for result in results if isinstance(results, list) else [results]:
            assert not isinstance(result, PolicyPart), "a partition's inputs were gathered"
            if isinstance(result, PolicyInputs):
                taken.append(result.uplift.shape[0])
        return results

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("the per-loan inputs were gathered to the client")

    monkeypatch.setattr(distributed, "policy_inputs", refused)
    monkeypatch.setattr(client, "gather", watched)
    effects = Effects(model, {"outcome": "recovery_rate", "actions": []}, None, costs)
    steps: list[str] = []
    remote = effects.plan(
        loans.lazy(), budget, cluster=cluster, chunk_rows=chunk_rows, progress=steps.append
    )
    assert ("sending chunk 3/3: loans 3,601 to 5,000" in steps) == (chunk_rows is not None)
    offered = int((remote.plan["action"] == "settlement_offer").sum())
    assert offered > 0
    assert sum(taken) == sample.size + offered < loans.height
    assert_frame_equal(remote.plan.select(local.plan.columns), local.plan, check_exact=True)
    assert_frame_equal(remote.comparison, local.comparison, check_exact=True)
    assert remote.plan["collections_without_offer"].is_not_null().sum() == offered


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_replaced_and_the_result_equals_the_clean_run(tape) -> None:
    """SIGKILL a worker process while it scores: Dask reruns its tasks, the rows are the same."""
    model, loans = tape
    clean = model.score(loans.lazy())
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as c,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        pids = c.run(os.getpid)
        running = pool.submit(
            distributed.score, distributed.Cluster(client=c, partitions=7), model, loans
        )
        busy: list[str] = []
        while not busy and not running.done():
            busy = [w for w, tasks in c.processing().items() if tasks]
            time.sleep(0.01)
        assert busy, "the run ended before a worker could be killed"
        os.kill(pids[busy[0]], signal.SIGKILL)
        result = running.result(timeout=600)
    assert_frame_equal(result.scores, clean.scores, check_exact=True)
    assert_frame_equal(result.curves, clean.curves, check_exact=True)


def test_cli_score_in_chunks_on_the_cluster_equals_in_process(
    client: Client, small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl score --chunk-rows 215 --cluster ADDRESS` writes what the in-process run writes.

    Each chunk is scored on the workers; files and decision record are the in-process ones.
    """
    model, tape = small_model_and_tape
    db = tmp_path / "audit.duckdb"
    common = ("score", "--model", model, "--data", tape, "--audit-db", db)
    assert _npl(*common, "--out", tmp_path / "a", "--chunk-rows", "0").exit_code == 0
    result = _npl(*common, "--out", tmp_path / "b", "--chunk-rows", "215",
                  "--cluster", client.scheduler.address)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"scoring on {client.scheduler.address}, a chunk at a time" in result.output
    assert "scoring chunk 7/7" in result.output
    for name in ("scores.parquet", "curves.parquet"):
        assert_frame_equal(
            pl.read_parquet(tmp_path / "b" / name),
            pl.read_parquet(tmp_path / "a" / name),
            check_exact=True,
        )
    with AuditStore(db, read_only=True) as store:
        runs = store.runs()
        first, second = (store.decisions(r).drop("run_id") for r in runs["run_id"])
    assert_frame_equal(first, second, check_exact=True)
    assert first.height == 1500


def test_value_in_chunks_on_the_cluster_equals_in_process(
    client: Client, small_model_and_tape: tuple[Path, Path], tmp_path: Path
) -> None:
    """`npl value --chunk-rows 500 --cluster ADDRESS` values the tape as in process (1e-9).

    Three chunks, each scored and run through 40 Monte Carlo paths on the workers.
    """
    model, tape = small_model_and_tape
    common = ("value", "--model", model, "--data", tape, "--no-audit", "--scenarios", SCENARIOS,
              "--price", "5e7", "--simulations", "40")  # fmt: skip
    assert _npl(*common, "--out", tmp_path / "a", "--chunk-rows", "0").exit_code == 0
    result = _npl(*common, "--out", tmp_path / "b", "--chunk-rows", "500",
                  "--cluster", client.scheduler.address)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "chunk 3/3: loans 1,001 to 1,500" in result.output
    assert f"Monte Carlo, 40 paths on {client.scheduler.address}" in result.output
    a = json.loads((tmp_path / "a" / "valuation.json").read_text())
    b = json.loads((tmp_path / "b" / "valuation.json").read_text())
    _assert_close(b, a)
    for name in ("cashflows.parquet", "paths.parquet"):
        assert_frame_equal(
            pl.read_parquet(tmp_path / "b" / name),
            pl.read_parquet(tmp_path / "a" / name),
            rel_tol=1e-9,
        )


def _assert_close(got: object, want: object) -> None:
    """Equal structure; numbers equal to 1e-9 relative (sums over chunks in another order)."""
    if isinstance(want, dict):
        assert isinstance(got, dict)
        assert got.keys() == want.keys()
        for key in want:
            _assert_close(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_close(g, w)
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    else:
        assert got == want


def test_cli_policy_in_chunks_on_the_cluster_writes_the_in_process_plan(
    client: Client, tape_dir: Path, effects_model, tmp_path: Path
) -> None:
    """`npl policy --budget B --cluster ADDRESS --chunk-rows 1800` writes the in-process plan."""
    model, costs = effects_model
    folder = tmp_path / "effects"
    summary = {"outcome": "recovery_rate", "actions": []}
    Effects(model, summary, pl.DataFrame({"loan_id": ["none"]}), costs).save(folder)
    common = ("policy", "--effects", folder, "--data", tape_dir, "--budget", "20000", "--no-audit")
    assert _npl(*common, "--out", tmp_path / "a.parquet").exit_code == 0
    result = _npl(*common, "--out", tmp_path / "b.parquet", "--chunk-rows", "1800",
                  "--cluster", client.scheduler.address)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sending chunk 3/3: loans 3,601 to 5,000" in result.output
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert b["action"].equals(a["action"])
    assert (a["action"] != "none").sum() > 0
    assert_frame_equal(b, a, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_the_model_is_sent_once_per_cluster_under_its_own_key(
    client: Client, tape, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs and chunks on one cluster reuse the model sent first; its key is not a hash.

    Re-sending an equal model under the hashed key while the earlier future was being
    released cancelled tasks with "lost dependencies" (seen in the test suite).
    """
    model, loans = tape
    calls: list[dict[str, object]] = []
    scatter = client.scatter

    def counted(data, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs)
        return scatter(data, **kwargs)

    monkeypatch.setattr(client, "scatter", counted)
    cluster = distributed.Cluster(client=client, partitions=3)
    first = distributed.score(cluster, model, loans[:2000])
    second = distributed.score(cluster, model, loans[2000:])
    assert calls == [{"broadcast": True, "hash": False}]
    whole = model.score(loans.lazy())
    assert_frame_equal(pl.concat([first.scores, second.scores]), whole.scores, check_exact=True)
