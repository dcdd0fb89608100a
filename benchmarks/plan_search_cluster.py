"""The budget's price searched over partitions on a LocalCluster, against one schedule in process.

Not part of ``make bench`` (it starts worker processes); run by hand::

    .venv/bin/python benchmarks/plan_search_cluster.py --loans 1000000 --partitions 4

Random uplift and cost of four actions (as ``tests/causal/test_policy.py`` draws them) are split
into partitions; each partition's :class:`~npl_engine.causal.PolicyPart` is built on a worker of
a 2-process ``LocalCluster`` and stays there. For three budgets it times
:func:`~npl_engine.causal.plan_price` over the partitions (only scalars cross) and the
in-process ``solve_plan`` search over all loans, checks the prices are equal, and prints the
round trips and the load average.

Run twice (2026-12-07, shared 2-core machine): 1,000,000 loans, 4 partitions, 20 round trips
per budget: 0.85 s to 1.14 s per budget on the cluster against 0.18 s to 0.20 s in process (load
average 5.0); 1.10 s to 1.42 s against 0.21 s to 0.30 s (load average 5.3). The same price every
time.
"""

from __future__ import annotations

import argparse
import operator
import os
import time
from typing import Any

import numpy as np
import polars as pl
from distributed import Client, LocalCluster

from npl_engine.causal import PolicyInputs, PolicyPart, plan_price
from npl_engine.causal._policy import _PriceSchedule


def _book(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    exposure = rng.lognormal(10, 1, n)
    cost = np.column_stack(
        [np.full(n, 4.0), np.full(n, 18.0), np.full(n, 90.0), 1200 + 0.01 * exposure]
    )
    effect = rng.normal([0.002, 0.01, 0.03, 0.04], [0.01, 0.02, 0.03, 0.05], (n, 4))
    return effect * exposure[:, None], cost


def main() -> None:
    """Time the partitioned and the in-process search at three budgets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loans", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    uplift, cost = _book(args.loans, 5)
    owner = np.random.default_rng(0).integers(0, args.partitions, args.loans)
    whole = _PriceSchedule(uplift, cost)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        parts = []
        for i in range(args.partitions):
            rows = np.flatnonzero(owner == i)
            inputs = PolicyInputs(
                loan_ids=pl.Series("loan_id", rows.astype(str)),
                exposure=np.zeros(rows.size),
                uplift=uplift[rows],
                cost=cost[rows],
            )
            parts.append(client.submit(PolicyPart, client.scatter(inputs), pure=False))
        client.gather(client.map(operator.methodcaller("totals"), parts))  # parts built
        trips = [0]

        def each(query: Any) -> list[Any]:
            trips[0] += 1
            asked = client.map(operator.methodcaller("ask", query), parts, pure=False)
            return list(client.gather(asked))

        for budget in np.linspace(0.1, 0.9, 3) * whole.spend0:
            trips[0] = 0
            start = time.perf_counter()
            price = plan_price(float(budget), each)
            on_cluster = time.perf_counter() - start
            start = time.perf_counter()
            alone = whole.plan_for(float(budget))[0]
            in_process = time.perf_counter() - start
            print(
                f"budget {budget:,.0f}: {on_cluster:.2f} s over {args.partitions} partitions "
                f"({trips[0]} round trips), {in_process:.2f} s in process, "
                f"same price {price == alone}; load average {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()
