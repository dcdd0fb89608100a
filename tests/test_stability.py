"""Population stability index and reference profiles: hand-worked values and binning."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from npl_engine.stability import ReferenceProfile, population_stability_index


def test_psi_of_three_bins_is_hand_computed() -> None:
    """Shares 0.2/0.3/0.5 against 0.1/0.3/0.6: PSI = 0.1·ln 0.5 ... = 0.0875.

    Working: (0.1 - 0.2) ln(0.1/0.2) = 0.069315; (0.3 - 0.3) ln 1 = 0;
    (0.6 - 0.5) ln(0.6/0.5) = 0.018232; sum 0.087547. Counts give the same as shares.
    """
    assert population_stability_index([0.2, 0.3, 0.5], [0.1, 0.3, 0.6]) == pytest.approx(
        0.0875469, abs=1e-6
    )
    assert population_stability_index([20, 30, 50], [10, 30, 60]) == pytest.approx(
        0.0875469, abs=1e-6
    )
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_psi_floors_empty_bins() -> None:
    """An empty bin counts as 1e-4, so the PSI stays finite: (0.5 - 1e-4) ln(0.5 / 1e-4)."""
    got = population_stability_index([1.0, 0.0], [0.5, 0.5])
    want = (0.5 - 1.0) * np.log(0.5 / 1.0) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    assert got == pytest.approx(want, rel=1e-9)


def test_profile_bins_numbers_at_deciles_and_keeps_missing_and_unseen_apart() -> None:
    """1..100 with 10 missing: ten 9 % bins and a 10 % missing bin; unseen categories go apart."""
    values = pl.Series("monthly_income", [*map(float, range(1, 91)), *([None] * 10)])
    features = pl.DataFrame(
        {"monthly_income": values, "segment": ["auto"] * 50 + ["credit_card"] * 50}
    )
    profile = ReferenceProfile.from_features(features, np.linspace(0, 1, 100))
    income = profile.variables["monthly_income"]
    assert income.shares[-1] == pytest.approx(0.10)
    assert sum(income.shares) == pytest.approx(1.0)
    assert len(income.edges) == 9
    same = profile.stability(features, np.linspace(0, 1, 100))
    assert same["psi"].max() == pytest.approx(0.0, abs=1e-12)
    segment = profile.variables["segment"]
    counts = segment.counts(pl.Series(["auto", "sme_unsecured", None]))
    assert counts.tolist() == [1.0, 0.0, 1.0, 1.0]  # auto, credit_card, (other), (missing)
    round_trip = ReferenceProfile.from_dict(profile.to_dict())
    assert round_trip == profile
