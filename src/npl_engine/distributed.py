"""Per-loan work on a Dask cluster: scores, portfolios, Monte Carlo paths and plans.

The loans are split into partitions by a stable hash of ``loan_id``
(:func:`~npl_engine.valuation.loan_keys`), each partition is one task, and the results are
combined on the client: per-loan rows are put back in the input order, and Monte Carlo flows,
which are sums over loans, are added up. Every result equals the in-memory one (per-loan rows
identically; sums to rounding, 1e-12 relative), whatever the number of workers or partitions:
the Monte Carlo keys each draw on (seed, path, loan id), never on a partition.

The model is sent once to every worker (:meth:`Cluster.broadcast`:
:meth:`distributed.Client.scatter` with ``broadcast=True``, kept for the cluster's life, so a
tape worked through in chunks sends it once too); a task carries its partition of the loans and
returns its results. A task whose worker dies is run again on another worker by the scheduler
(the partitions are part of the task graph, so nothing is lost), and ``retries`` more times if
it raises.

See ``docs/scale.md`` for running against a remote scheduler.

Examples
--------
>>> from npl_engine.distributed import partition_rows
>>> import polars as pl
>>> [rows.tolist() for rows in partition_rows(pl.Series(["L1", "L2", "L3", "L4"]), 2)]
[[0, 2], [1, 3]]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from distributed import Client, LocalCluster

from npl_engine.data import loan_chunks
from npl_engine.errors import NplError
from npl_engine.scenarios import ScenarioSet
from npl_engine.scoring import RecoveryModel, Scores
from npl_engine.valuation import (
    DEFAULT_COLLATERAL_GRID,
    MonteCarloResult,
    MonteCarloSettings,
    PathDraws,
    Portfolio,
    build_portfolio,
    draw_paths,
    loan_keys,
    paths_from_flows,
)
from npl_engine.valuation import path_flows as partition_path_flows

__all__ = [
    "CLUSTER_ENV",
    "Cluster",
    "DistributedPolicy",
    "DistributedPortfolio",
    "cluster_address",
    "connect",
    "input_order",
    "map_partitions",
    "partition_rows",
    "path_flows",
    "policy_inputs",
    "policy_parts",
    "policy_parts_in_chunks",
    "portfolio",
    "score",
    "simulate_paths",
]

#: Environment variable read when ``--cluster`` is not given.
CLUSTER_ENV = "NPL_CLUSTER"

#: Times a task that raised is run again (a worker that dies is handled by the scheduler).
RETRIES = 2

Rows = npt.NDArray[np.int64]


def partition_rows(loan_id: pl.Series, n_partitions: int) -> list[Rows]:
    """Positions of the loans in each of ``n_partitions`` partitions, by a hash of ``loan_id``.

    A loan always falls in the same partition for the same ``n_partitions`` (the hash is
    FNV-1a of the id, the same in every process); positions are in input order.
    """
    if n_partitions < 1:
        msg = f"the number of partitions must be at least 1, got {n_partitions}"
        raise ValueError(msg)
    part = (loan_keys(loan_id) % np.uint64(n_partitions)).astype(np.int64)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(n_partitions + 1))
    return [order[bounds[i] : bounds[i + 1]].astype(np.int64) for i in range(n_partitions)]


@dataclass(frozen=True, slots=True)
class Cluster:
    """A connected Dask client and how many partitions to cut the loans into.

    Parameters
    ----------
    client
        A :class:`distributed.Client`.
    partitions
        Partitions per run; ``None``: two per worker (at least 1).
    address
        The address it was reached at, as given (``local:2``, ``tcp://...``), for messages.
    """

    client: Any
    partitions: int | None = None
    address: str | None = None
    _sent: dict[int, tuple[Any, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def broadcast(self, value: Any) -> Any:
        """``value`` on every worker, sent the first time it is asked for: its future.

        Kept (with ``value``) while the cluster is: later runs, and later chunks of one run,
        reuse it. Each value gets its own key (not a hash of its content): re-scattering an
        equal object under the same key while the earlier future was being released lost
        the data under tasks that needed it ("lost dependencies", seen in the tests).
        """
        held = self._sent.get(id(value))
        if held is None:
            held = (value, self.client.scatter(value, broadcast=True, hash=False))
            self._sent[id(value)] = held
        return held[1]

    def n_partitions(self) -> int:
        """The partitions of a run: as set, else two per worker."""
        if self.partitions is not None:
            return self.partitions
        workers = len(self.client.scheduler_info().get("workers", {}))
        return max(2 * workers, 1)


@contextmanager
def connect(
    address: str, *, partitions: int | None = None, timeout_seconds: float = 20.0
) -> Iterator[Cluster]:
    """Connect to a Dask scheduler, or start a local cluster, for the duration of a block.

    Parameters
    ----------
    address
        ``local:N``: start a :class:`distributed.LocalCluster` of N worker processes (one
        thread each) on this machine, closed at the end of the block. Otherwise the address
        of a running scheduler, e.g. ``tcp://10.0.0.5:8786`` (see ``docs/scale.md``).
    partitions
        Partitions per run (default: two per worker).
    timeout_seconds
        How long to wait for a remote scheduler to answer.

    Raises
    ------
    NplError
        If the address is malformed or no scheduler answers there.
    """
    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            msg = f"--cluster local:N needs a number of workers N >= 1, got {address!r}"
            raise NplError(msg)
        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,  # type: ignore[no-untyped-call]
        ):
            yield Cluster(client=client, partitions=partitions, address=address)
        return
    try:
        client = Client(address, timeout=f"{timeout_seconds}s")  # type: ignore[no-untyped-call]
    except (OSError, ValueError, TimeoutError) as exc:
        msg = f"no Dask scheduler answered at {address!r} ({exc}); see docs/scale.md"
        raise NplError(msg) from exc
    try:
        yield Cluster(client=client, partitions=partitions, address=address)
    finally:
        client.close()  # type: ignore[no-untyped-call]


def cluster_address(option: str | None) -> str | None:
    """The cluster to use: the ``--cluster`` option, else ``$NPL_CLUSTER``, else none."""
    return option or os.environ.get(CLUSTER_ENV) or None


# ------------------------------------------------------------------------- tasks (on workers)


def _score_task(loans: pl.DataFrame, model: RecoveryModel) -> Scores:
    return model.score(loans.lazy())


def _portfolio_task(
    loans: pl.DataFrame, model: RecoveryModel, grid: tuple[float, ...]
) -> Portfolio:
    return build_portfolio(model, loans, collateral_grid=grid)


def _flows_task(
    part: Portfolio,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    draws: PathDraws,
    recovery_threshold: float,
) -> npt.NDArray[np.float64]:
    return partition_path_flows(
        part, scenarios, settings, draws, recovery_threshold=recovery_threshold
    )


def _policy_task(loans: pl.DataFrame, model: Any, costs: Any, options: dict[str, bool]) -> Any:
    # The causal stack (econml, dowhy) takes seconds to import: only the policy needs it.
    from npl_engine.causal import policy_inputs as local_inputs  # noqa: PLC0415

    return local_inputs(
        model,
        loans.lazy(),
        costs,
        with_bau=False,
        with_interval=options["with_interval"],
        with_baseline=options["with_baseline"],
    )


def _policy_part_task(loans: pl.DataFrame, model: Any, costs: Any, options: dict[str, bool]) -> Any:
    from npl_engine.causal import PolicyPart, policy_inputs  # noqa: PLC0415

    inputs = policy_inputs(
        model, loans.lazy(), costs, with_bau=False, with_interval=options["with_interval"]
    )
    return PolicyPart(inputs)


# ------------------------------------------------------------------------------- the client


def _split(cluster: Cluster, loans: pl.DataFrame) -> tuple[list[Rows], list[pl.DataFrame]]:
    rows = partition_rows(loans["loan_id"], cluster.n_partitions())
    # Empty partitions send no task; an empty tape still runs one (it fails or not as in memory).
    rows = [r for r in rows if r.size] or rows[:1]
    return rows, [loans[pl.Series(r)] for r in rows]


def input_order(rows: Sequence[Rows]) -> Rows:
    """Positions in the concatenated partitions of each input row, in input order.

    ``rows`` are the partitions' positions in the input (:func:`map_partitions`); gathering
    the concatenated per-partition rows at these positions puts them back in input order.

    Examples
    --------
    >>> import numpy as np
    >>> input_order([np.array([0, 2]), np.array([1, 3])]).tolist()
    [0, 2, 1, 3]
    """
    inverse = np.empty(sum(r.size for r in rows), dtype=np.int64)
    inverse[np.concatenate(rows)] = np.arange(inverse.size)
    return inverse


def _map(cluster: Cluster, func: Any, parts: Sequence[Any], **kwargs: Any) -> list[Any]:
    """Run ``func`` on every part and gather the results, in order."""
    futures = cluster.client.map(func, parts, retries=RETRIES, pure=False, **kwargs)
    return list(cluster.client.gather(futures))


def map_partitions(
    cluster: Cluster,
    func: Any,
    loans: pl.DataFrame,
    *,
    broadcast: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[list[Rows], list[Any]]:
    """Run ``func(partition, **broadcast, **kwargs)`` on every partition of ``loans``.

    The engine under the per-loan work of the other packages: they bring the task (a
    module-level function, so that workers import it rather than receive its code), this
    brings the partitions, the retries and the transfers.

    Parameters
    ----------
    cluster
        From :func:`connect`.
    func
        Called on a worker with a partition of ``loans`` (a DataFrame) and the keyword
        arguments.
    loans
        The loans to split by a hash of ``loan_id`` (:func:`partition_rows`).
    broadcast
        Keyword arguments sent once to every worker (a fitted model), not once per task.
    kwargs
        Keyword arguments sent with every task (small settings).

    Returns
    -------
    tuple[list[numpy.ndarray], list]
        The partitions' positions in ``loans`` and ``func``'s results, partition by partition
        (:func:`input_order` of the positions puts concatenated per-loan rows in input order).
    """
    rows, parts = _split(cluster, loans)
    remote = {name: cluster.broadcast(value) for name, value in (broadcast or {}).items()}
    return rows, _map(cluster, func, parts, **remote, **kwargs)


def score(cluster: Cluster, model: RecoveryModel, loans: pl.DataFrame) -> Scores:
    """Score ``loans`` on the cluster: the same rows as ``model.score(loans.lazy())``.

    Parameters
    ----------
    cluster
        From :func:`connect`.
    model
        A fitted recovery model (sent once to every worker).
    loans
        Validated contract ``loans``.
    """
    rows, results = map_partitions(cluster, _score_task, loans, broadcast={"model": model})
    order = pl.Series(input_order(rows))
    scores = pl.concat([r.scores for r in results])[order]
    curves = pl.concat([r.curves for r in results])
    h = curves.height // max(scores.height, 1)
    # Each loan's curve is h consecutive rows; gather them in input order.
    curve_rows = (np.asarray(order)[:, None] * h + np.arange(h)[None, :]).ravel()
    return Scores(scores=scores, curves=curves[pl.Series(curve_rows)])


@dataclass(frozen=True, slots=True)
class DistributedPortfolio:
    """A portfolio built on the cluster: the whole of it, and its parts kept on the workers.

    Parameters
    ----------
    portfolio
        The loans in input order, equal to :func:`~npl_engine.valuation.build_portfolio`.
    parts
        Futures of the per-partition portfolios, held by the workers (for the Monte Carlo).
    """

    portfolio: Portfolio
    parts: list[Any]


def portfolio(
    cluster: Cluster,
    model: RecoveryModel,
    loans: pl.DataFrame,
    *,
    collateral_grid: tuple[float, ...] = DEFAULT_COLLATERAL_GRID,
) -> DistributedPortfolio:
    """Score ``loans`` and measure their collateral response on the cluster.

    Returns the portfolio in input order (what ``build_portfolio`` returns) and the partitions'
    portfolios left on the workers, so that :func:`simulate_paths` sends no curves back.
    """
    rows, parts = _split(cluster, loans)
    remote = cluster.broadcast(model)
    futures = cluster.client.map(
        _portfolio_task, parts, model=remote, grid=collateral_grid, retries=RETRIES, pure=False
    )
    pieces: list[Portfolio] = cluster.client.gather(futures)
    return DistributedPortfolio(portfolio=_concat(pieces, input_order(rows)), parts=futures)


def _concat(pieces: Sequence[Portfolio], order: Rows) -> Portfolio:
    return Portfolio.concat(pieces).take(order)


def path_flows(
    cluster: Cluster,
    book: DistributedPortfolio,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    draws: PathDraws,
    *,
    recovery_threshold: float,
) -> npt.NDArray[np.float64]:
    """:func:`npl_engine.valuation.path_flows` of the whole book, summed over its partitions.

    Each partition sums its loans' scaled curves per path on its worker (shape 4 × paths ×
    months); the client adds the partitions' sums.
    """
    flows = _map(
        cluster,
        _flows_task,
        book.parts,
        scenarios=scenarios,
        settings=settings,
        draws=draws,
        recovery_threshold=recovery_threshold,
    )
    out: npt.NDArray[np.float64] = np.sum(flows, axis=0)
    return out


def simulate_paths(
    cluster: Cluster,
    book: DistributedPortfolio,
    scenarios: ScenarioSet,
    settings: MonteCarloSettings,
    *,
    recovery_threshold: float,
    target_irr: float | None = None,
    price: float | None = None,
) -> MonteCarloResult:
    """The Monte Carlo of :func:`npl_engine.valuation.simulate_paths`, over the partitions.

    The partitions' flows are summed on the client (:func:`path_flows`), which applies each
    path's scenario. The draws are keyed on (seed, path, loan id), so the paths equal the
    in-memory ones whatever the partitions.
    """
    draws = draw_paths(scenarios, settings)
    flows = path_flows(
        cluster, book, scenarios, settings, draws, recovery_threshold=recovery_threshold
    )
    return paths_from_flows(
        flows,
        scenarios,
        settings,
        draws,
        n_loans=book.portfolio.n_loans,
        target_irr=target_irr,
        price=price,
    )


def policy_inputs(
    cluster: Cluster,
    model: Any,
    loans: pl.DataFrame,
    costs: Any,
    *,
    with_bau: bool = True,
    with_interval: bool = False,
    with_baseline: bool = False,
) -> Any:
    """:func:`npl_engine.causal.policy_inputs` with the per-loan effects predicted on the cluster.

    The per-loan effects (the causal forest over every loan, the costly part), their intervals
    and the no-action collections are predicted per partition on the workers; the
    business-as-usual propensities, a portfolio total from a seeded sample of at most
    ``BAU_SAMPLE`` loans, are predicted on the client exactly as in memory. Every per-loan
    array comes back to the client (the gain curve solves over them there); a single budget's
    plan keeps them on the workers instead (:func:`policy_parts`).
    """
    from npl_engine.causal import BusinessAsUsual  # noqa: PLC0415

    options = {"with_interval": with_interval, "with_baseline": with_baseline}
    rows, results = map_partitions(
        cluster, _policy_task, loans, broadcast={"model": model}, costs=costs, options=options
    )
    order = input_order(rows)

    def joined(name: str) -> Any:
        pieces = [getattr(r, name) for r in results]
        if pieces[0] is None:
            return None
        return np.concatenate(pieces)[order]

    inputs = replace(
        results[0],
        loan_ids=pl.concat([r.loan_ids for r in results])[pl.Series(order)],
        **{
            name: joined(name)
            for name in (
                "exposure", "uplift", "cost", "uplift_low", "uplift_high", "collections_without"
            )
        },
    )  # fmt: skip
    if not with_bau:
        return inputs
    return replace(inputs, bau=BusinessAsUsual.of(model, loans.lazy(), n_loans=loans.height))


@dataclass(frozen=True, slots=True)
class DistributedPolicy:
    """Plan inputs predicted on the cluster and kept there: one policy part per partition.

    Each partition's per-loan uplift, cost and intervals, and its price schedule, stay on the
    worker that predicted them (a :class:`~npl_engine.causal.PolicyPart` held by a future);
    the client asks them questions whose answers are small (:meth:`each`, :meth:`take`).

    Parameters
    ----------
    cluster
        From :func:`connect`.
    rows
        Each partition's positions in the loans, increasing.
    parts
        Futures of the partitions' ``PolicyPart``.
    """

    cluster: Cluster
    rows: list[Rows]
    parts: list[Any]

    def each(self, func: Any) -> list[Any]:
        """``func(part)`` on every partition's worker; the answers, partition by partition."""
        return _map(self.cluster, func, self.parts)

    def take(self, positions: npt.NDArray[np.integer[Any]]) -> Any:
        """The :class:`~npl_engine.causal.PolicyInputs` of some loans, by position, in order.

        Only those loans' rows cross to the client (a sample, the loans offered a settlement).
        """
        from npl_engine.causal import PolicyInputs, PolicyPart  # noqa: PLC0415

        wanted = np.asarray(positions, dtype=np.int64)
        local = [np.flatnonzero(np.isin(r, wanted)) for r in self.rows]
        futures = self.cluster.client.map(
            PolicyPart.rows, self.parts, local, retries=RETRIES, pure=False
        )
        pieces = self.cluster.client.gather(futures)
        found = np.concatenate([r[i] for r, i in zip(self.rows, local, strict=True)])
        order = np.argsort(found, kind="stable")
        return PolicyInputs(
            loan_ids=pl.concat([p.loan_ids for p in pieces])[pl.Series(order)],
            exposure=np.concatenate([p.exposure for p in pieces])[order],
            uplift=np.concatenate([p.uplift for p in pieces])[order],
            cost=np.concatenate([p.cost for p in pieces])[order],
        )


def policy_parts(
    cluster: Cluster,
    model: Any,
    loans: pl.DataFrame,
    costs: Any,
    *,
    with_interval: bool = False,
) -> DistributedPolicy:
    """Predict every partition's plan inputs on the cluster and leave them on its worker.

    The effect model goes once to every worker; each partition's task predicts its loans'
    uplift and cost (and their intervals) and builds its price schedule. Nothing per loan
    comes back: :func:`npl_engine.causal.plan_price` then finds a budget's price from scalars.

    Parameters
    ----------
    cluster
        From :func:`connect`.
    model
        A fitted :class:`~npl_engine.causal.ActionEffectModel`.
    loans
        Validated contract ``loans``.
    costs
        The :class:`~npl_engine.causal.ActionCosts`.
    with_interval
        Also predict each uplift's 95 % interval.
    """
    rows, parts = _split(cluster, loans)
    remote = cluster.broadcast(model)
    futures = cluster.client.map(
        _policy_part_task,
        parts,
        model=remote,
        costs=costs,
        options={"with_interval": with_interval},
        retries=RETRIES,
        pure=False,
    )
    return DistributedPolicy(cluster=cluster, rows=rows, parts=futures)


def policy_parts_in_chunks(
    cluster: Cluster,
    model: Any,
    loans: pl.LazyFrame,
    costs: Any,
    *,
    chunk_rows: int,
    with_interval: bool = False,
    n_loans: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> DistributedPolicy:
    """:func:`policy_parts` of a tape sent a chunk at a time; every part stays on the workers.

    Each chunk of ``chunk_rows`` loans is read from the lazy tape, split into partitions and
    sent; its parts join the others', their positions shifted to the tape's. The client
    holds one chunk at a time, never the tape; the parts are those of the whole tape split
    differently, which the budget's search does not depend on (:func:`~npl_engine.causal.
    plan_price`).
    """
    rows: list[Rows] = []
    parts: list[Any] = []
    for piece in loan_chunks(loans, chunk_rows, n_loans=n_loans):
        if progress is not None and piece.count > 1:
            progress(f"sending {piece.describe()}")
        held = policy_parts(
            cluster, model, piece.loans.collect(), costs, with_interval=with_interval
        )
        rows.extend(r + piece.start for r in held.rows)
        parts.extend(held.parts)
    return DistributedPolicy(cluster=cluster, rows=rows, parts=parts)
