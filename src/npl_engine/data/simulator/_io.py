"""Writing a simulation to disk: the dataset, and its truth in a separate ``truth/`` folder."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from npl_engine.data.eba import TEMPLATE_FILES, write_template_files
from npl_engine.data.simulator._simulate import SIMULATOR_VERSION, Simulation
from npl_engine.data.writers import atomic_folder, write_tables
from npl_engine.errors import NplError

TRUTH_FOLDER = "truth"


def write_simulation(sim: Simulation, folder: str | Path, *, fmt: str = "parquet") -> Path:
    """Write ``sim`` to ``folder``: contract tables at the top, the truth under ``truth/``.

    Parameters
    ----------
    sim
        A simulation.
    folder
        Output folder; replaced as a whole if it holds only a previous simulation.
    fmt
        ``parquet`` or ``csv`` for the contract tables (the truth is always Parquet); ``eba``
        writes a tape's loans as an EBA NPL template set instead (one CSV file per template,
        see :func:`npl_engine.data.eba.write_template_files`).

    Returns
    -------
    Path
        ``folder``.

    Notes
    -----
    ``truth/loans.parquet`` holds one row per loan, ``truth/curves.parquet`` the expected
    monthly collections, ``truth/simulation.json`` the settings. The engine's readers never
    look inside ``truth/``, so the folder is a valid dataset as it is. Everything is written
    into a staging folder first: an interrupted run leaves nothing behind.
    """
    folder = Path(folder)
    if fmt == "eba" and sim.settings.kind != "tape":
        msg = "the EBA templates describe a tape (loans at one cut-off): simulate with kind 'tape'"
        raise NplError(msg)
    with atomic_folder(folder, allowed=frozenset({TRUTH_FOLDER, *TEMPLATE_FILES})) as staging:
        if fmt == "eba":
            write_template_files(sim.loans, staging)
        else:
            write_tables(
                staging, loans=sim.loans, actions=sim.actions, payments=sim.payments, fmt=fmt
            )
        truth = staging / TRUTH_FOLDER
        truth.mkdir()
        sim.truth.write_parquet(truth / "loans.parquet")
        sim.curves.write_parquet(truth / "curves.parquet", compression="lz4")
        meta = {
            "simulator_version": SIMULATOR_VERSION,
            "settings": asdict(sim.settings),
            "kind": sim.settings.kind,
            "as_of_date": sim.settings.observed_until,
            "recovery_definition": {
                "horizon_months": sim.settings.recovery_horizon_months,
                "threshold": sim.settings.recovery_threshold,
            },
        }
        (truth / "simulation.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return folder
