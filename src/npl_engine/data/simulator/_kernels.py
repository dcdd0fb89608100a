"""Compiled per-loan recursions behind the simulator's exact truth (see :mod:`._process`).

numba compiles them; in NumPy the same recursion needed a dozen (n,)-sized temporaries per
month and ran ten times slower on a million loans.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

Arr = npt.NDArray[Any]

#: Monthly decay of trickle payments (kept here so the kernels see a compile-time constant).
TRICKLE_DECAY = 0.97


def _expected_monthly(  # noqa: PLR0917 - a kernel takes flat arrays
    exposure: Arr,
    p_regime: Arr,
    h_p: Arr,
    plan_months: Arr,
    instalment: Arr,
    b: Arr,
    h_s: Arr,
    s_share: Arr,
    trickle_base: Arr,
    trickle_period: Arr,
    secured: Arr,
    sale_lag: Arr,
    h_c: Arr,
    sale_price: Arr,
    luck_p: Arr,
    borrower_end: int,
    weight: Arr,
    borrower: Arr,
    collateral: Arr,
    total_borrower: Arr,
    total_collateral: Arr,
) -> None:
    n = exposure.size
    for i in numba.prange(n):
        d = plan_months[i]
        keep_p, keep_s, keep_c, keep_b = 1.0 - h_p[i], 1.0 - h_s[i], 1.0 - h_c[i], 1.0 - b[i]
        keep_b_d = keep_b**d
        active = 0.0
        no_plan = 1.0  # P(plan not started by month t)
        no_settle = 1.0
        not_sold = 1.0  # P(no sale by month t)
        paid_before = 0.0  # trickle paid by the end of month t - 1
        decay = 1.0
        for t in range(1, borrower.shape[1] + 1):
            pays = t <= borrower_end  # the borrower pays nothing after borrower_end
            trickle_t = 0.0
            if pays and t % trickle_period[i] == 0:
                trickle_t = trickle_period[i] * trickle_base[i] * decay
            g_t = h_p[i] * no_plan
            no_plan *= keep_p
            g_back = 0.0
            if t - d >= 1:
                g_back = h_p[i] * keep_p ** (t - d - 1)
            active = keep_b * active + g_t - g_back * keep_b_d
            payer = trickle_t * no_plan + (instalment[i] * active if pays else 0.0)
            lump = s_share[i] * exposure[i] * h_s[i] * no_settle if pays else 0.0
            no_settle *= keep_s
            settler = trickle_t * no_settle + lump
            q_t = 0.0
            if secured[i] and t - sale_lag[i] >= 1:
                q_t = h_c[i] * not_sold
                not_sold *= keep_c
            owed = max(exposure[i] - paid_before, 0.0)
            proceeds = 0.0
            for k in range(luck_p.size):
                proceeds += luck_p[k] * min(sale_price[i, k], owed)
            from_borrower = (
                p_regime[i, 0] * payer
                + p_regime[i, 1] * settler
                + p_regime[i, 2] * trickle_t * not_sold
            )
            from_sale = p_regime[i, 2] * q_t * proceeds
            borrower[i, t - 1] += weight[i] * from_borrower
            collateral[i, t - 1] += weight[i] * from_sale
            total_borrower[i] += from_borrower
            total_collateral[i] += from_sale
            paid_before += trickle_t
            decay *= TRICKLE_DECAY


def _recovery(  # noqa: PLR0917 - a numba kernel takes flat arrays
    exposure: Arr,
    p_regime: Arr,
    h_p: Arr,
    plan_months: Arr,
    instalment: Arr,
    b: Arr,
    h_s: Arr,
    s_share: Arr,
    trickle_base: Arr,
    trickle_period: Arr,
    secured: Arr,
    sale_lag: Arr,
    h_c: Arr,
    sale_price: Arr,
    luck_p: Arr,
    borrower_end: int,
    horizon: int,
    threshold: float,
    out: Arr,
) -> None:
    n = exposure.size
    borrower_horizon = min(horizon, borrower_end)
    for i in numba.prange(n):
        target = threshold * exposure[i]
        keep_p, keep_s, keep_c, keep_b = 1.0 - h_p[i], 1.0 - h_s[i], 1.0 - h_c[i], 1.0 - b[i]
        payer = 0.0
        settler = 0.0
        non_payer = 0.0
        no_plan = 1.0
        no_settle = 1.0
        not_sold = 1.0
        before = 0.0  # trickle paid by the end of month j - 1
        decay = 1.0
        for j in range(1, horizon + 1):
            need = target - before
            if need <= 0.0:
                plan_ok = 1.0
            else:
                k = max(np.ceil(need / instalment[i] - 1e-9), 1.0)
                fits = k <= min(plan_months[i], borrower_horizon - j + 1)
                plan_ok = keep_b ** (k - 1.0) if fits else 0.0
            payer += h_p[i] * no_plan * plan_ok
            no_plan *= keep_p
            lump_j = s_share[i] * exposure[i] if j <= borrower_end else 0.0
            if before + lump_j >= target:
                settler += h_s[i] * no_settle
            no_settle *= keep_s
            if secured[i] and j - sale_lag[i] >= 1:
                owed = max(exposure[i] - before, 0.0)
                reach = 0.0
                for k2 in range(luck_p.size):
                    if before + min(sale_price[i, k2], owed) >= target:
                        reach += luck_p[k2]
                non_payer += h_c[i] * not_sold * reach
                not_sold *= keep_c
            if j <= borrower_end and j % trickle_period[i] == 0:
                before += trickle_period[i] * trickle_base[i] * decay
            decay *= TRICKLE_DECAY
        if before >= target:  # trickle alone reaches the threshold by the horizon
            payer += no_plan
            settler += no_settle
            non_payer += not_sold
        out[i] = p_regime[i, 0] * payer + p_regime[i, 1] * settler + p_regime[i, 2] * non_payer


expected_monthly_kernel: Callable[..., None] = numba.njit(cache=True, parallel=True)(
    _expected_monthly
)
recovery_kernel: Callable[..., None] = numba.njit(cache=True, parallel=True)(_recovery)
