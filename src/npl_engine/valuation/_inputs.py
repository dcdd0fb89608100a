"""What the model-and-tape entry points share: their inputs, the scored portfolio, the horizon.

:func:`~npl_engine.valuation.value`, :func:`~npl_engine.valuation.expected_loss` and
:func:`~npl_engine.valuation.business_plan` take a model, a tape and scenarios as objects or
paths; :func:`scored_portfolio` is the one place where a tape's loans become a
:class:`~npl_engine.valuation.Portfolio`, in memory or on a Dask cluster.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import polars as pl
import pyarrow.parquet as pq

from npl_engine.data import Dataset, loan_chunks, read_dataset
from npl_engine.errors import NplError
from npl_engine.scenarios import ScenarioSet, load_scenarios
from npl_engine.scoring import RecoveryModel
from npl_engine.valuation._portfolio import Portfolio, build_portfolio

if TYPE_CHECKING:
    from npl_engine.distributed import Cluster, DistributedPortfolio

__all__ = [
    "ModelInput",
    "Progress",
    "ScenariosInput",
    "TapeInput",
    "fit_horizon",
    "resolve_model",
    "resolve_scenarios",
    "resolve_tape",
    "scored_portfolio",
    "spill_chunks",
]

#: A fitted :class:`~npl_engine.scoring.RecoveryModel` or the folder it was saved in.
ModelInput = RecoveryModel | str | os.PathLike[str]
#: A :class:`~npl_engine.data.Dataset` or the folder to read it from.
TapeInput = Dataset | str | os.PathLike[str]
#: A :class:`~npl_engine.scenarios.ScenarioSet` or the TOML file to read it from.
ScenariosInput = ScenarioSet | str | os.PathLike[str]
#: Called with a short description before each long step.
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The progress callback when none is given."""


T = TypeVar("T")


def spill_chunks(
    loans: pl.LazyFrame,
    work: Callable[[pl.DataFrame], tuple[pl.DataFrame, T]],
    *,
    chunk_rows: int,
    file_name: str,
    say: Progress,
    n_loans: int | None = None,
) -> tuple[tempfile.TemporaryDirectory[str], list[T]]:
    """Work through a tape ``chunk_rows`` loans at a time, writing per-loan rows as they come.

    ``work`` gets each chunk's loans and returns its per-loan rows and what the caller adds up
    (sums); the rows are appended to ``file_name`` in a temporary folder, so only one chunk's
    rows are in memory at a time. Returns the folder (removed when it is cleaned up or
    collected; nothing is left behind if a chunk fails) and the chunks' sums, in order.
    ``n_loans``: the tape's loans, if already counted.
    """
    spill = tempfile.TemporaryDirectory(prefix="npl-chunks-")
    parts: list[T] = []
    writer: pq.ParquetWriter | None = None
    try:
        for piece in loan_chunks(loans, chunk_rows, n_loans=n_loans):
            say(piece.describe())
            rows, part = work(piece.loans.collect())
            parts.append(part)
            table = rows.to_arrow()
            del rows
            if writer is None:
                writer = pq.ParquetWriter(Path(spill.name) / file_name, table.schema)
            writer.write_table(table)
    except BaseException:
        if writer is not None:
            writer.close()
            writer = None
        spill.cleanup()
        raise
    finally:
        if writer is not None:
            writer.close()
    return spill, parts


def resolve_model(model: ModelInput) -> RecoveryModel:
    """The model itself, or the one saved in a folder."""
    if isinstance(model, RecoveryModel):
        return model
    if isinstance(model, str | os.PathLike):
        return RecoveryModel.load(Path(model))
    # A caller without a type checker may pass anything: say what was expected.
    msg = f"model: expected a RecoveryModel or the folder of one, got {type(model).__name__}"  # type: ignore[unreachable]
    raise NplError(msg)


def resolve_tape(tape: TapeInput) -> Dataset:
    """The dataset itself, or the one read (and validated) from a folder."""
    if isinstance(tape, Dataset):
        return tape
    if isinstance(tape, str | os.PathLike):
        return read_dataset(Path(tape))
    # A caller without a type checker may pass anything: say what was expected.
    msg = f"tape: expected a Dataset or the folder of one, got {type(tape).__name__}"  # type: ignore[unreachable]
    raise NplError(msg)


def resolve_scenarios(scenarios: ScenariosInput) -> ScenarioSet:
    """The scenario set itself, or the one read from a TOML file."""
    if isinstance(scenarios, ScenarioSet):
        return scenarios
    if isinstance(scenarios, str | os.PathLike):
        return load_scenarios(Path(scenarios))
    # A caller without a type checker may pass anything: say what was expected.
    msg = f"scenarios: expected a ScenarioSet or a TOML file, got {type(scenarios).__name__}"  # type: ignore[unreachable]
    raise NplError(msg)


def fit_horizon(model: RecoveryModel, scenarios: ScenarioSet) -> tuple[ScenarioSet, str | None]:
    """The scenarios cut to the horizon a model trained on a short book really has.

    A model whose book was too short for its valuation horizon predicts fewer months (its model
    card says which); the valuation then runs on those months and says so in the note returned.
    A model that predicts its full horizon is left to refuse a longer scenario horizon.
    """
    asked = scenarios.pricing.horizon_months
    has = model.horizon_months
    if asked <= has or has >= model.definition.valuation_horizon_months:
        return scenarios, None
    pricing = scenarios.pricing.model_copy(update={"horizon_months": has})
    note = (
        f"valued over {has} months, not the scenario file's {asked}: the model's training "
        f"book observed too few loans beyond month {has} (see its model card); collections "
        "after that are not counted"
    )
    return scenarios.model_copy(update={"pricing": pricing}), note


def scored_portfolio(
    model: RecoveryModel,
    loans: pl.DataFrame,
    *,
    collateral_grid: tuple[float, ...],
    cluster: Cluster | None = None,
    progress: Progress | None = None,
) -> tuple[Portfolio, DistributedPortfolio | None]:
    """Score ``loans`` and measure their collateral response: the tape as a portfolio.

    Returns the portfolio (loans in input order) and, on a cluster, the partitions' portfolios
    left on the workers for the Monte Carlo (``None`` in memory).
    """
    say = progress or _quiet
    say(f"scoring {loans.height:,} loans and measuring their collateral response")
    if cluster is None:
        return build_portfolio(model, loans, collateral_grid=collateral_grid), None
    # The cluster module imports this package: load it only when a cluster is given.
    from npl_engine import distributed  # noqa: PLC0415

    book = distributed.portfolio(cluster, model, loans, collateral_grid=collateral_grid)
    return book.portfolio, book
