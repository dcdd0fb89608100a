"""Any book of the simulator's family of worlds trains, scores and prices, or says why not.

A Hypothesis strategy draws worlds from the simulator's knobs (segments, payment-plan months,
collateral sales, guarantors, heavy-tailed sizes, action rate and effect, cut-off range and
history length, book size). For every drawn book that `npl validate` accepts, `npl train`,
`score`, `value`, `expected-loss`, `effects`, `policy` and `counterfactual` must either succeed
or exit with code 2 and an ``error:`` line: never a traceback.

The default run draws a few tiny books and trains with one LightGBM setting and small causal
forests (the CLI's own code path, with the estimators' sizes patched down); the slow variant
draws more and larger books and trains with the CLI's defaults.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

import npl_engine.causal
import npl_engine.scoring
from npl_engine.cli import main
from npl_engine.data.contract import SEGMENTS
from npl_engine.data.simulator import (
    SEGMENT_MIX,
    SimulationSettings,
    simulate,
    write_simulation,
)

SCENARIOS = Path(__file__).parents[1] / "scenarios" / "eu_2026.toml"
ERROR_LINE = re.compile(r"^error: \S", re.MULTILINE)
TAPE_LOANS = 150
#: Books are extracted by 2026-06 at the latest (before the tapes' 2026-09 cut-off).
LAST_AS_OF_MONTH = 2026 * 12 + 5


def _month_end(months: int) -> date:
    """Last day of month ``months`` counted from January of year 0 (2016 * 12 = 2016-01)."""
    year, month = divmod(months + 1, 12)
    return date(year, month + 1, 1) - timedelta(days=1)


@st.composite
def worlds(draw: st.DrawFn, *, min_loans: int, max_loans: int) -> dict[str, Any]:
    """Keyword arguments of a SimulationSettings for a book of the family of worlds."""
    segments = draw(
        st.one_of(st.none(), st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=3))
    )
    # Mostly histories long enough to learn from; a short one (a book that cannot teach the
    # horizons asked for) one time in five.
    first_month = draw(st.integers(2016 * 12, 2022 * 12 + 11))
    span = draw(st.sampled_from([0, 6, 36, 84]))
    last_month = min(first_month + span, 2022 * 12 + 11)
    history = draw(st.sampled_from([120, 96, 72, 36, 9]))
    return {
        "n_loans": draw(st.integers(min_loans, max_loans)),
        "seed": draw(st.integers(0, 2**16)),
        "segment_mix": None if segments is None else {s: SEGMENT_MIX[s] for s in segments},
        "borrower_payment_months": draw(st.sampled_from([60, 42, 36, 18, 0])),
        "collateral_sales": draw(st.booleans()),
        "guarantor_share": draw(st.sampled_from([0.0, 0.3])),
        "exposure_tail_index": draw(st.sampled_from([None, 1.2, 2.0])),
        "action_rate": draw(st.sampled_from([1.0, 0.2, 5.0])),
        "action_effect_scale": draw(st.sampled_from([1.0, 0.0, 2.0])),
        "missing_rate": draw(st.sampled_from([0.05, 0.0, 0.4])),
        "book_cutoff_first": _month_end(first_month),
        "book_cutoff_last": _month_end(last_month),
        "as_of_date": _month_end(min(last_month + history, LAST_AS_OF_MONTH)),
    }


@dataclass
class _FastRecoveryModel(npl_engine.scoring.RecoveryModel):
    """The recovery model with one LightGBM setting instead of the grid."""

    grid: tuple[dict[str, Any], ...] = ({"num_leaves": 15, "min_data_in_leaf": 50},)


class _FastEffectModel(npl_engine.causal.ActionEffectModel):
    """The action-effect model with small nuisance models and forests."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("n_estimators", 30)
        kwargs.setdefault("n_trees", 40)  # the causal forest builds trees in fours
        kwargs.setdefault("n_folds", 2)
        super().__init__(**kwargs)


@contextmanager
def _small_estimators() -> Iterator[None]:
    """`npl train` and `npl effects` build smaller estimators (same code path otherwise)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(npl_engine.scoring, "RecoveryModel", _FastRecoveryModel)
        patch.setattr(npl_engine.causal, "ActionEffectModel", _FastEffectModel)
        yield


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def _assert_runs_or_says_why(name: str, result: Result) -> bool:
    """Exit 0, or exit 2 with an ``error:`` line on stderr; never a traceback. True if 0."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"npl {name} raised instead of exiting cleanly:\n{trace}")
    assert "Traceback" not in result.output, result.output
    assert result.exit_code in {0, 2}, (name, result.exit_code, result.output)
    event(f"npl {name}: exit {result.exit_code}")
    if result.exit_code == 2:
        assert ERROR_LINE.search(result.stderr), (name, result.stderr)
        note(f"npl {name} refused: {result.stderr.strip()}")
    return result.exit_code == 0


def _check_world(root: Path, world: dict[str, Any], *, state_as_of: bool) -> None:
    """Simulate the world's book and a tape, then run every command on them.

    With ``state_as_of`` the book's extraction day is passed as ``--as-of`` (as a user who
    knows it would); without, the commands infer it from the latest payment or action.
    """
    note(f"world: {world}, --as-of given: {state_as_of}")
    book_settings = SimulationSettings(**world)
    tape_world = {
        k: v
        for k, v in world.items()
        if k not in {"n_loans", "seed", "book_cutoff_first", "book_cutoff_last", "as_of_date"}
    }
    tape_settings = SimulationSettings(
        n_loans=TAPE_LOANS, seed=world["seed"] + 1, kind="tape", **tape_world
    )
    book, tape = root / "book", root / "tape"
    write_simulation(simulate(book_settings), book)
    write_simulation(simulate(tape_settings), tape)
    ids = root / "ids.txt"
    ids.write_text("".join(f"T{i:08d}\n" for i in range(1, 4)))

    as_of = ("--as-of", world["as_of_date"].isoformat()) if state_as_of else ()
    validated = _run("validate", book, *as_of)
    if validated.exit_code != 0:  # the property is about books the contract accepts
        note(f"npl validate refused the book: {validated.output}")
        return
    ok = _assert_runs_or_says_why
    model, recovered, rate = root / "model", root / "effects_recovered", root / "effects_rate"
    trained = ok("train", _run("train", "--data", book, "--out", model, "--no-baselines", *as_of))
    if trained:
        ok("score", _run("score", "--model", model, "--data", tape, "--out", root / "scores",
                         "--no-audit"))  # fmt: skip
        ok("value", _run("value", "--model", model, "--data", tape, "--scenarios", SCENARIOS,
                         "--out", root / "value", "--no-audit"))  # fmt: skip
        ok("expected-loss", _run("expected-loss", "--model", model, "--data", tape,
                                 "--scenarios", SCENARIOS, "--out", root / "el"))  # fmt: skip
    effects = ("effects", "--data", book, "--no-refutations", *as_of)
    on_recovered = ok("effects", _run(*effects, "--out", recovered, "--outcome", "recovered"))
    on_rate = ok("effects", _run(*effects, "--out", rate))
    if on_rate:
        ok("policy", _run("policy", "--effects", rate, "--data", tape, "--budget", "5000",
                          "--out", root / "plan.parquet", "--no-audit"))  # fmt: skip
    if trained and on_recovered:
        ok("counterfactual", _run("counterfactual", "--model", model, "--effects", recovered,
                                  "--data", tape, "--loan-ids", ids, "--time-budget", "2",
                                  "--out", root / "cf.json", "--no-audit"))  # fmt: skip


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(world=worlds(min_loans=400, max_loans=900), state_as_of=st.booleans())
def test_every_command_runs_or_says_why_on_tiny_books(
    tmp_path_factory: pytest.TempPathFactory, world: dict[str, Any], *, state_as_of: bool
) -> None:
    """On a few tiny books of random worlds every command succeeds or exits 2 with a reason."""
    with _small_estimators():
        _check_world(tmp_path_factory.mktemp("world"), world, state_as_of=state_as_of)


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(world=worlds(min_loans=300, max_loans=6_000), state_as_of=st.booleans())
def test_every_command_runs_or_says_why_on_many_books(
    tmp_path_factory: pytest.TempPathFactory, world: dict[str, Any], *, state_as_of: bool
) -> None:
    """On more and larger books, trained with the CLI's defaults, the same holds."""
    _check_world(tmp_path_factory.mktemp("world"), world, state_as_of=state_as_of)
