"""Stratification tables: hand-worked answers, totals equal to the tape's, `npl strats`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from data.builders import make_loans, write_tape
from npl_engine.cli import main
from npl_engine.data import Dataset, read_dataset, summarize
from npl_engine.data.simulator import SimulationSettings, simulate, write_simulation
from npl_engine.errors import NplError
from npl_engine.strats import STANDARD_STRATS, TOTAL, Strats, stratify

CUTOFF = date(2023, 12, 31)


@pytest.fixture(scope="module")
def hand_tape(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """Five loans whose every strat is worked out by hand in the tests below.

    ====  ==================  =====  ===========  =======  ============  ============  =======
    loan  segment             region stage        GBV      net coll.     default       months
    ====  ==================  =====  ===========  =======  ============  ============  =======
    L1    residential_mortg.  north  pre_legal    100,000  150k-30k=120k 2023-06-15    6
    L2    residential_mortg.  south  auction       40,000  20,000        2021-12-01    24
    L3    sme_unsecured       north  judgment     300,000  none          2018-01-10    71
    L4    consumer_unsecured  south  none          10,000  none          2022-12-31    12
    L5    sme_secured         north  proceedings   50,000  100k-100k=0   2013-11-30    121
    ====  ==================  =====  ===========  =======  ============  ============  =======
    """
    loans = make_loans(
        5,
        cutoff=CUTOFF,
        segment=["residential_mortgage", "residential_mortgage", "sme_unsecured",
                 "consumer_unsecured", "sme_secured"],
        region=["north", "south", "north", "south", "north"],
        legal_stage=["pre_legal", "auction", "judgment", "none", "proceedings"],
        borrower_type=["individual", "individual", "company", "individual", "company"],
        outstanding_principal=[90_000.0, 40_000.0, 300_000.0, 10_000.0, 50_000.0],
        accrued_interest=[10_000.0, 0.0, 0.0, 0.0, 0.0],
        original_principal=[400_000.0] * 5,
        collateral_type=["residential", "residential", "none", "none", "commercial"],
        collateral_value=[150_000.0, 20_000.0, 0.0, 0.0, 100_000.0],
        senior_liens=[30_000.0, 0.0, 0.0, 0.0, 100_000.0],
        default_date=[date(2023, 6, 15), date(2021, 12, 1), date(2018, 1, 10),
                      date(2022, 12, 31), date(2013, 11, 30)],
        origination_date=[date(2010, 1, 1)] * 5,
    )  # fmt: skip
    folder = write_tape(tmp_path_factory.mktemp("hand") / "tape", loans=loans)
    return read_dataset(folder).loans.collect()


def _column(strats: Strats, table: str, column: str) -> dict[str, object]:
    frame = strats.tables[table]
    return dict(zip(frame[table].to_list(), frame[column].to_list(), strict=True))


def test_hand_made_tape_gives_the_worked_answers(hand_tape: pl.DataFrame) -> None:
    """Each table's groups, order, loans, GBV and cover match the hand-worked table above."""
    s = stratify(hand_tape)
    assert list(s.tables) == list(STANDARD_STRATS)
    assert (s.n_loans, s.gbv) == (5, 500_000.0)
    segment = s.tables["segment"]
    # Contract order of segments; the total row last.
    assert segment["segment"].to_list() == [
        "residential_mortgage", "sme_secured", "sme_unsecured", "consumer_unsecured", TOTAL
    ]  # fmt: skip
    rm = segment.row(0, named=True)
    assert rm["loans"] == 2
    assert rm["gbv"] == 140_000.0
    assert rm["gbv_share"] == pytest.approx(0.28)
    assert rm["average_gbv"] == pytest.approx(70_000.0)
    # GBV-weighted average balance: (100k² + 40k²) / 140k.
    assert rm["wa_gbv"] == pytest.approx((100_000.0**2 + 40_000.0**2) / 140_000.0)
    assert rm["net_collateral"] == pytest.approx(140_000.0)
    assert rm["coverage"] == pytest.approx(1.0)
    total = segment.row(-1, named=True)
    assert total["coverage"] == pytest.approx(140_000.0 / 500_000.0)
    # Free text is sorted by GBV, largest first.
    assert _column(s, "region", "gbv") == {"north": 450_000.0, "south": 50_000.0, TOTAL: 500_000.0}
    assert _column(s, "borrower_type", "loans") == {"individual": 3, "company": 2, TOTAL: 5}
    assert s.tables["legal_stage"]["legal_stage"].to_list() == [
        "none", "pre_legal", "proceedings", "judgment", "auction", TOTAL
    ]  # fmt: skip
    # Bands include their lower edge: 50,000 is in 50k-100k, 100,000 in 100k-250k.
    assert _column(s, "gbv_band", "gbv") == {
        "< 25k": 10_000.0, "25k-50k": 40_000.0, "50k-100k": 50_000.0,
        "100k-250k": 100_000.0, "250k-500k": 300_000.0, TOTAL: 500_000.0,
    }  # fmt: skip
    assert _column(s, "months_since_default", "gbv") == {
        "< 12": 100_000.0, "12-24": 10_000.0, "24-36": 40_000.0, "60-120": 300_000.0,
        "120+": 50_000.0, TOTAL: 500_000.0,
    }  # fmt: skip
    # L5's collateral is all taken by senior liens: secured, cover 0, not unsecured.
    assert _column(s, "collateral_cover_band", "gbv") == {
        "unsecured": 310_000.0, "< 50%": 50_000.0, "50%-80%": 40_000.0,
        "100%-150%": 100_000.0, TOTAL: 500_000.0,
    }  # fmt: skip
    assert s.tables["default_vintage"]["default_vintage"].to_list() == [
        "2013", "2018", "2021", "2022", "2023", TOTAL
    ]  # fmt: skip


def test_scores_add_gbv_weighted_p_recover_and_expected_recovery(hand_tape: pl.DataFrame) -> None:
    """p_recover is GBV-weighted; expected recovery = expected collections / GBV."""
    scores = pl.DataFrame(
        {
            "loan_id": hand_tape["loan_id"],
            "p_recover": [0.5, 0.25, 0.1, 0.2, 0.9],
            "expected_collections": [60_000.0, 10_000.0, 15_000.0, 1_000.0, 20_000.0],
        }
    )
    s = stratify(hand_tape, by=["segment"], scores=scores)
    rm = s.tables["segment"].row(0, named=True)
    assert rm["p_recover"] == pytest.approx((0.5 * 100_000 + 0.25 * 40_000) / 140_000)
    assert rm["expected_collections"] == pytest.approx(70_000.0)
    assert rm["expected_recovery"] == pytest.approx(0.5)
    total = s.tables["segment"].row(-1, named=True)
    assert total["expected_collections"] == pytest.approx(106_000.0)
    with pytest.raises(NplError, match="row for row"):
        stratify(hand_tape, scores=scores.reverse())


def test_lazy_scores_give_the_same_tables(hand_tape: pl.DataFrame) -> None:
    """Scores as a lazy scan (a chunked valuation's) give the tables of the same scores in memory.

    A scan one row short, or in another order, is refused as scores in memory are.
    """
    scores = pl.DataFrame(
        {
            "loan_id": hand_tape["loan_id"],
            "p_recover": [0.5, 0.25, 0.1, 0.2, 0.9],
            "expected_collections": [60_000.0, 10_000.0, 15_000.0, 1_000.0, 20_000.0],
        }
    )
    eager = stratify(hand_tape, scores=scores)
    lazy = stratify(hand_tape.lazy(), scores=scores.lazy())
    assert list(lazy.tables) == list(eager.tables)
    for name, table in eager.tables.items():
        assert_frame_equal(lazy.tables[name], table)
    for bad in (scores.lazy().head(4), scores.lazy().reverse()):
        with pytest.raises(NplError, match="row for row"):
            stratify(hand_tape, scores=bad)


def test_every_table_adds_up_to_the_tape_and_ignores_row_order() -> None:
    """Loans, GBV and collateral of each table's groups sum to its total row and the tape's."""
    loans = simulate(SimulationSettings(n_loans=3_000, seed=5, kind="tape")).loans
    tape = summarize(read_dataset_from(loans))
    by = [*STANDARD_STRATS, "age", "collateral_type"]
    s = stratify(loans, by=by)
    shuffled = stratify(loans.sample(fraction=1.0, shuffle=True, seed=1), by=by)
    for name, frame in s.tables.items():
        groups, total = frame.head(-1), frame.row(-1, named=True)
        assert total[name] == TOTAL
        assert groups["loans"].sum() == total["loans"] == tape.n_loans == 3_000
        assert groups["gbv"].sum() == pytest.approx(total["gbv"], rel=1e-12)
        assert total["gbv"] == pytest.approx(tape.gbv, rel=1e-12)
        assert groups["gbv_share"].sum() == pytest.approx(1.0)
        assert groups["net_collateral"].sum() == pytest.approx(total["net_collateral"])
        assert groups[name].n_unique() == groups.height  # no label twice
        # The same groups in the same order; sums differ only by floating-point order.
        assert_frame_equal(frame, shuffled.tables[name], rel_tol=1e-9)
    # The optional column's nulls are a group of their own, not dropped.
    assert "(missing)" in s.tables["age"]["age"].to_list()


def read_dataset_from(loans: pl.DataFrame) -> Dataset:
    """A Dataset over in-memory loans (summarize reads only the loans)."""
    return Dataset(loans=loans.lazy())


@pytest.mark.parametrize(
    ("by", "message"),
    [
        (["postcode"], "no column 'postcode'"),
        (["interest_rate"], "continuous column"),
        (["segment", "segment"], "asked for twice"),
    ],
)
def test_bad_strat_names_are_clear_errors(
    hand_tape: pl.DataFrame, by: list[str], message: str
) -> None:
    """An unknown, float or repeated --by column is an NplError naming it."""
    with pytest.raises(NplError, match=message):
        stratify(hand_tape, by=by)


def test_npl_strats_writes_parquet_csv_and_a_workbook(tmp_path: Path) -> None:
    """The folder holds every table three ways and reads back equal; bad --by writes nothing."""
    tape = tmp_path / "tape"
    write_simulation(simulate(SimulationSettings(n_loans=2_000, seed=8, kind="tape")), tape)
    out = tmp_path / "strats"
    result = CliRunner().invoke(main, ["strats", "--data", str(tape), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "collateral_cover_band" in result.output
    loaded = Strats.load(out)
    assert list(loaded.tables) == list(STANDARD_STRATS)
    direct = stratify(read_dataset(tape).loans)
    sheets = pl.read_excel(out / "strats.xlsx", sheet_id=0)
    assert list(sheets) == list(STANDARD_STRATS)
    for name, frame in direct.tables.items():
        assert loaded.tables[name].equals(frame)
        assert pl.read_csv(out / f"{name}.csv", schema=frame.schema).height == frame.height
        assert sheets[name].height == frame.height
        assert sheets[name]["gbv"].sum() == pytest.approx(2 * frame["gbv"][-1])
    bad = CliRunner().invoke(
        main, ["strats", "--data", str(tape), "--out", str(tmp_path / "x"), "--by", "nope"]
    )
    assert bad.exit_code == 2
    assert "no column 'nope'" in bad.output
    assert not (tmp_path / "x").exists()
