from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from npl_engine.causal import (
    DEFAULT_SETTLEMENT_DISCOUNT,
    ActionCosts,
    load_costs,
    parse_costs,
)
from npl_engine.cli import main
from npl_engine.errors import NplError, SettingsError


def test_a_costs_file_naming_an_unknown_action_is_refused(tmp_path: Path) -> None:
    """`teleport = 5` is an error naming the file, the key and the allowed actions."""
    path = tmp_path / "costs.toml"
    path.write_text("[costs]\nletter = 4\nteleport = 5\n")
    with pytest.raises(SettingsError) as info:
        load_costs(path)
    message = str(info.value)
    assert f"{path}: costs.teleport: unknown action 'teleport'" in message
    assert "settlement_offer" in message


def test_every_error_of_a_costs_file_is_listed_at_once() -> None:
    """An unknown action, segment, stage and key, a negative and a text amount: six lines."""
    text = """
[costs]
teleport = 1
letter = -4
call = "cheap"
sms = { fixed = 1, by_segment = { retail = { fixed = 2 } } }
[costs.legal_action]
fixed = 1200
fee = 3
[costs.legal_action.by_legal_stage]
trial = { fixed = 400 }
"""
    with pytest.raises(SettingsError) as info:
        parse_costs(text, source="c.toml")
    lines = str(info.value).splitlines()
    assert len(lines) == 6, lines
    for part in (
        "costs.teleport: unknown action",
        "costs.letter.fixed: must be at least 0",
        'costs.call: expected a number or a table, got "cheap"',
        "costs.sms.by_segment.retail: unknown segment 'retail'",
        "costs.legal_action.fee: unknown key",
        "costs.legal_action.by_legal_stage.trial: unknown legal stage 'trial'",
    ):
        assert any(part in line for line in lines), part


def test_costs_by_exposure_segment_and_legal_stage_by_hand() -> None:
    """Legal action 1,200 + 1 % capped at 2,000; 400 at auction; calls 35 for sme_unsecured.

    Loans: (50,000, sme_unsecured, proceedings), (200,000, auto, proceedings),
    (50,000, sme_unsecured, auction). Legal: 1,700; min(3,200, 2,000) = 2,000; auction 400.
    Call: 35, 18, 35.
    """
    costs = parse_costs(
        """
[costs]
call = { fixed = 18, by_segment = { sme_unsecured = { fixed = 35 } } }
[costs.legal_action]
fixed = 1200
per_exposure = 0.01
cap = 2000
by_legal_stage = { auction = { fixed = 400 } }
"""
    )
    exposure = np.array([50_000.0, 200_000.0, 50_000.0])
    segment = np.array(["sme_unsecured", "auto", "sme_unsecured"])
    stage = np.array(["proceedings", "proceedings", "auction"])
    matrix = costs.matrix(("call", "legal_action"), exposure, segment=segment, legal_stage=stage)
    assert matrix.tolist() == [[35.0, 1700.0], [18.0, 2000.0], [35.0, 400.0]]
    assert costs.settlement_discount == DEFAULT_SETTLEMENT_DISCOUNT


def test_a_discount_belongs_to_settlement_offers_only() -> None:
    """A discount on a letter is refused; on an offer it is read."""
    with pytest.raises(SettingsError, match=r"costs.letter.discount: only a settlement_offer"):
        parse_costs("[costs]\nletter = { fixed = 4, discount = 0.2 }")
    assert (
        parse_costs("[costs.settlement_offer]\nfixed = 90\ndiscount = 0.25").settlement_discount
        == 0.25
    )


def test_policy_refuses_a_costs_file_with_an_unknown_action(tmp_path: Path) -> None:
    """`npl policy --costs` with `teleport` exits 2 with an error line, before any work."""
    path = tmp_path / "costs.toml"
    path.write_text("[costs]\nteleport = 5\n")
    res = CliRunner().invoke(
        main,
        ["policy", "--effects", str(tmp_path), "--data", str(tmp_path), "--budget", "10",
         "--out", str(tmp_path / "plan.parquet"), "--costs", str(path), "--no-audit"],
    )  # fmt: skip
    assert res.exit_code == 2
    assert "costs.teleport: unknown action 'teleport'" in res.output
    assert not (tmp_path / "plan.parquet").exists()


def test_the_costs_record_round_trips_and_a_missing_one_is_named(tmp_path: Path) -> None:
    """save_record then read_record gives the same costs; a folder without one says so."""
    costs = parse_costs("[costs]\nletter = 4\nlegal_action = {fixed = 1200, per_exposure = 0.01}\n")
    costs.save_record(tmp_path)
    assert ActionCosts.read_record(tmp_path) == costs
    with pytest.raises(NplError, match=r"holds no costs\.json"):
        ActionCosts.read_record(tmp_path / "elsewhere")
