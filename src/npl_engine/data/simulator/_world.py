"""The simulated world before the workout starts: borrowers, loans and collateral at cut-off.

Everything here is drawn once per loan from two latent traits, capacity to pay and willingness
to pay, that also drive the workout process (:mod:`._process`). Observable columns are noisy,
partly missing views of those traits, as in a real loan tape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import cast

import numpy as np
import numpy.typing as npt
import polars as pl

from npl_engine.data.contract import LOANS, SEGMENTS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Share of each segment in a simulated portfolio (an Italian-style mixed NPL book).
SEGMENT_MIX: dict[str, float] = {
    "residential_mortgage": 0.25,
    "commercial_real_estate": 0.05,
    "sme_secured": 0.10,
    "sme_unsecured": 0.12,
    "consumer_unsecured": 0.25,
    "credit_card": 0.15,
    "auto": 0.08,
}

#: Median original principal by segment (currency units) and log-spread.
_PRINCIPAL_MEDIAN = np.array([110_000, 650_000, 220_000, 45_000, 9_000, 3_500, 16_000], float)
_PRINCIPAL_SIGMA = np.array([0.5, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4])
#: Contractual rate range by segment (annual decimals).
_RATE_LOW = np.array([0.020, 0.035, 0.040, 0.055, 0.070, 0.140, 0.050])
_RATE_HIGH = np.array([0.050, 0.070, 0.080, 0.110, 0.130, 0.220, 0.090])
#: Median monthly income (individuals) or operating cash flow (companies) by segment.
_INCOME_MEDIAN = np.array([2_600, 60_000, 22_000, 9_000, 1_900, 1_800, 2_100], float)
#: Outstanding over collateral value at cut-off: uniform range by segment (secured ones).
_LTV_LOW = np.array([0.55, 0.50, 0.60, 0.0, 0.0, 0.0, 0.80])
_LTV_HIGH = np.array([1.30, 1.50, 2.00, 0.0, 0.0, 0.0, 2.50])
_COMPANY_SEGMENTS = np.array([False, True, True, True, False, False, False])
_SECURED_SEGMENTS = np.array([True, True, True, False, False, False, True])

#: Regions, with the extra months their courts add to a collateral sale.
REGIONS: tuple[str, ...] = (
    "Lombardia",
    "Veneto",
    "Emilia-Romagna",
    "Piemonte",
    "Toscana",
    "Lazio",
    "Campania",
    "Puglia",
    "Sicilia",
    "Sardegna",
)
REGION_COURT_DELAY_MONTHS = np.array([0, 0, 0, 1, 2, 4, 7, 6, 8, 5], dtype=np.int64)
_REGION_MIX = np.array([0.18, 0.09, 0.08, 0.07, 0.07, 0.11, 0.12, 0.09, 0.12, 0.07])

#: Optional columns that go missing at random (the rest of the optional ones are always given).
_MAY_BE_MISSING = (
    "last_payment_date",
    "monthly_income",
    "employment_years",
    "residence_years",
    "debt_to_income",
    "liquid_assets",
    "credit_score",
    "account_age_months",
    "credit_inquiries_12m",
    "negative_records",
    "on_time_payment_rate",
    "min_payment_share",
    "delinquencies_24m",
)


@dataclass(frozen=True, slots=True)
class World:
    """Loans at cut-off and the latent state the workout process needs.

    Parameters
    ----------
    loans
        The ``loans`` table in contract form (with missing values, as a tape would have).
    latent
        One row per loan: ``loan_id``, ``capacity``, ``willingness`` (standard normal latent
        traits) and ``true_monthly_income`` (never missing).
    """

    loans: pl.DataFrame
    latent: pl.DataFrame


def _sigmoid(x: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-x))


def _month_end(months_since_epoch: IntArray) -> npt.NDArray[np.datetime64]:
    """Last day of the month ``months_since_epoch`` (0 = 1970-01)."""
    first_of_next = (months_since_epoch + 1).astype("datetime64[M]").astype("datetime64[D]")
    return cast("npt.NDArray[np.datetime64]", first_of_next - np.timedelta64(1, "D"))


def _months(d: date) -> int:
    return (d.year - 1970) * 12 + d.month - 1


def draw_world(  # noqa: PLR0915 - one generative story, read top to bottom
    rng: np.random.Generator,
    n_loans: int,
    *,
    cutoff_first: date,
    cutoff_last: date,
    missing_rate: float,
    id_prefix: str,
    segment_mix: Mapping[str, float] = SEGMENT_MIX,
    principal_factor: FloatArray | None = None,
    first_number: int = 1,
) -> World:
    """Draw ``n_loans`` loans at their cut-off dates.

    Cut-off dates are month ends drawn uniformly between the months of ``cutoff_first`` and
    ``cutoff_last`` (one month for a tape). ``segment_mix`` gives each segment's share
    (normalised; absent segments get none); ``principal_factor`` multiplies each loan's
    original principal (a heavy tail of exposures), drawn by the caller from its own stream.
    Loans are numbered from ``first_number`` (``T00000001`` for 1), so that the chunks of a
    large tape, drawn one after the other, have distinct ids.
    """
    n = n_loans
    total = sum(segment_mix.values())
    seg = rng.choice(len(SEGMENTS), size=n, p=[segment_mix.get(s, 0.0) / total for s in SEGMENTS])
    latent = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 1.0]], size=n)
    capacity, willingness = latent[:, 0], latent[:, 1]
    eps = rng.standard_normal((12, n))
    unif = rng.random((8, n))

    company = _COMPANY_SEGMENTS[seg]
    secured = _SECURED_SEGMENTS[seg]

    # Dates: cut-off at a month end; default 0-36 months before; origination 6-180 months before.
    m0, m1 = _months(cutoff_first), _months(cutoff_last)
    cutoff_m = rng.integers(m0, m1 + 1, size=n)
    cutoff = _month_end(cutoff_m)
    months_since_default = rng.integers(0, 37, size=n)
    default = cutoff - (months_since_default * 30.4375 + unif[0] * 20).astype("timedelta64[D]")
    origination = default - (rng.integers(6, 181, size=n) * 30.4375).astype("timedelta64[D]")
    last_payment = default - (unif[1] * 150).astype("timedelta64[D]")
    days_past_due = (cutoff - last_payment).astype(np.int64)

    # Exposure.
    principal = _PRINCIPAL_MEDIAN[seg] * np.exp(_PRINCIPAL_SIGMA[seg] * eps[0])
    if principal_factor is not None:
        principal = principal * principal_factor
    original = np.round(principal, 2)
    amortised = np.where(secured & ~company, 0.45 + 0.5 * unif[2], 0.70 + 0.3 * unif[2])
    outstanding = np.round(original * amortised, 2)
    rate = np.round(_RATE_LOW[seg] + (_RATE_HIGH[seg] - _RATE_LOW[seg]) * unif[3], 4)
    accrued = np.round(
        outstanding * rate * (months_since_default + 3) / 12 * (0.3 + 0.7 * unif[4]), 2
    )

    # Collateral: type by segment, value from loan-to-value, some second liens.
    coll_type = np.full(n, "none", dtype=object)
    coll_type[seg == 0] = "residential"
    cre_types = np.array(["commercial", "land"], dtype=object)
    coll_type[seg == 1] = cre_types[(unif[5][seg == 1] < 0.15).astype(int)]
    sme_types = np.array(["commercial", "residential", "land", "other"], dtype=object)
    sme_idx = np.searchsorted([0.45, 0.75, 0.9], unif[5][seg == 2])
    coll_type[seg == 2] = sme_types[sme_idx]
    coll_type[seg == 6] = "vehicle"
    ltv = _LTV_LOW[seg] + (_LTV_HIGH[seg] - _LTV_LOW[seg]) * unif[6]
    collateral_value = np.where(secured, np.round(outstanding / np.maximum(ltv, 1e-9), -2), 0.0)
    second_lien = secured & (seg != 6) & (unif[7] < 0.12)
    senior_liens = np.where(second_lien, np.round(collateral_value * (0.3 + 0.4 * unif[7]), -2), 0)
    valuation_age_days = rng.integers(0, 900, size=n)
    valuation_date = np.where(
        secured, cutoff - valuation_age_days.astype("timedelta64[D]"), np.datetime64("NaT")
    )

    # Legal stage: advances with time since default; unsecured loans rarely reach auction.
    stage_score = months_since_default / 36 + 0.35 * rng.standard_normal(n)
    stage_cuts = np.array([0.15, 0.35, 0.6, 0.8])
    stage_idx = np.searchsorted(stage_cuts, stage_score)
    stage_names = np.array(["none", "pre_legal", "proceedings", "judgment", "auction"], object)
    legal_stage = stage_names[stage_idx]
    legal_stage[~secured & (legal_stage == "auction")] = "judgment"
    legal_stage[company & (unif[2] < 0.08)] = "insolvency"

    # Borrower: income, assets and behaviour are noisy views of capacity and willingness.
    income = _INCOME_MEDIAN[seg] * np.exp(0.45 * capacity + 0.15 * eps[1])
    debt_to_income = np.clip(0.55 - 0.15 * capacity + 0.05 * eps[2], 0.02, 3.0)
    liquid_assets = np.round(1.5 * income * np.exp(0.9 * capacity + 0.3 * eps[3]), 2)
    age = np.clip(np.round(24 + rng.gamma(4.0, 5.5, size=n)), 21, 90).astype(np.int64)
    employment = np.where(
        _sigmoid(-2.0 - 1.2 * capacity + 0.3 * eps[4]) > 0.5,
        "unemployed",
        np.where(age >= 67, "retired", np.where(unif[0] < 0.12, "self_employed", "employed")),
    ).astype(object)
    employment[company] = "other"
    employment[(unif[1] < 0.04) & ~company] = "unknown"
    employment_years = np.round(
        np.clip(np.exp(1.4 + 0.35 * capacity + 0.2 * willingness + 0.5 * eps[5]), 0, 45), 1
    )
    residence_years = np.round(np.clip(np.exp(1.6 + 0.35 * willingness + 0.5 * eps[6]), 0, 60), 1)
    credit_score = np.clip(
        np.round(600 + 35 * willingness + 25 * capacity + 15 * eps[7]), 300, 850
    ).astype(np.int64)
    on_time = np.round(_sigmoid(0.9 + 1.1 * willingness + 0.15 * eps[8]), 4)
    min_share = np.round(_sigmoid(-0.7 - 0.8 * willingness + 0.3 * eps[9]), 4)
    delinquencies = rng.poisson(np.exp(0.9 - 0.45 * willingness))
    account_age = np.round(np.exp(4.2 + 0.3 * (age - 40) / 15 + 0.4 * eps[10])).astype(np.int64)
    inquiries = rng.poisson(np.exp(0.4 - 0.35 * capacity))
    negative_records = rng.poisson(np.exp(-1.3 - 0.6 * willingness))
    gender = rng.choice(
        np.array(["female", "male", "other", "unknown"], object), size=n, p=[0.47, 0.49, 0.01, 0.03]
    )
    region = np.array(REGIONS, dtype=object)[rng.choice(len(REGIONS), size=n, p=_REGION_MIX)]

    index = np.arange(first_number - 1, first_number - 1 + n)
    ids = np.char.add(id_prefix, np.char.zfill((index + 1).astype(str), 8))
    # A fifth of borrowers hold two loans in the book.
    borrower_num = np.where(unif[3] < 0.2, np.maximum(index - 1, 0), index) + 1
    borrower_ids = np.char.add("B", np.char.zfill(borrower_num.astype(str), 8))

    columns: dict[str, object] = {
        "loan_id": ids,
        "borrower_id": borrower_ids,
        "segment": np.array(SEGMENTS, dtype=object)[seg],
        "cutoff_date": cutoff,
        "origination_date": origination,
        "default_date": default,
        "original_principal": original,
        "outstanding_principal": outstanding,
        "accrued_interest": accrued,
        "interest_rate": rate,
        "days_past_due": days_past_due,
        "last_payment_date": last_payment,
        "collateral_type": coll_type,
        "collateral_value": collateral_value,
        "collateral_valuation_date": valuation_date,
        "senior_liens": senior_liens.astype(float),
        "legal_stage": legal_stage,
        "borrower_type": np.where(company, "company", "individual").astype(object),
        "region": region,
        "age": age,
        "gender": gender,
        "monthly_income": np.round(income, 2),
        "employment_status": employment,
        "employment_years": employment_years,
        "residence_years": residence_years,
        "debt_to_income": np.round(debt_to_income, 4),
        "liquid_assets": liquid_assets,
        "credit_score": credit_score,
        "account_age_months": account_age,
        "credit_inquiries_12m": inquiries,
        "negative_records": negative_records,
        "on_time_payment_rate": on_time,
        "min_payment_share": min_share,
        "delinquencies_24m": delinquencies,
    }
    loans = pl.DataFrame(columns).cast(LOANS.schema)  # type: ignore[arg-type]

    # Missing at random; personal attributes are not recorded for companies.
    missing = rng.random((len(_MAY_BE_MISSING), n)) < missing_rate
    is_company = pl.Series(company)
    loans = loans.with_columns(
        [
            pl.when(pl.Series(missing[i])).then(None).otherwise(pl.col(c)).alias(c)
            for i, c in enumerate(_MAY_BE_MISSING)
        ]
        + [pl.when(is_company).then(None).otherwise(pl.col(c)).alias(c) for c in ("age", "gender")]
    )
    latent_frame = pl.DataFrame(
        {
            "loan_id": ids,
            "capacity": capacity,
            "willingness": willingness,
            "true_monthly_income": income,
        }
    )
    return World(loans=loans, latent=latent_frame)
