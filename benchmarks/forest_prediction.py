"""Per-loan effect and interval of the causal forest: EconML against the compiled forest.

Not part of ``make bench`` (EconML alone takes minutes on a million loans); run by hand::

    .venv/bin/python benchmarks/forest_prediction.py EFFECTS_DIR TAPE_DIR --rows 100000 1000000

``EFFECTS_DIR`` is an ``npl effects`` output folder, ``TAPE_DIR`` a tape with at least as many
loans as the largest ``--rows``. For each size it times ``ActionEffectModel.effect_and_interval``
with the compiled forest (after one warm-up call that compiles the kernels, timed apart) and
with EconML (the compiled path switched off), in the same process, and prints the ratio, the
largest difference and the load average before each figure.
"""

from __future__ import annotations

import argparse
import os
import time
from unittest import mock

import numpy as np
import polars as pl

from npl_engine.causal import ActionEffectModel, Effects


def _load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    """Time both paths on the first N loans of the tape, for each N."""
    parser = argparse.ArgumentParser()
    parser.add_argument("effects")
    parser.add_argument("tape")
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    model: ActionEffectModel = Effects.load(args.effects).model
    loans = pl.scan_parquet(f"{args.tape}/loans.parquet").head(max(args.rows))
    x_all = model.covariates(loans)
    print(f"trees {model.n_trees}, actions {len(model.actions_)}, covariates {x_all.shape}")
    start, cpu = time.perf_counter(), time.process_time()
    model.effect_and_interval(x_all[:1000])
    print(
        f"first call (numba compiles the kernels): {time.perf_counter() - start:.1f} s wall, "
        f"{time.process_time() - cpu:.1f} CPU-s"
    )
    for n in args.rows:
        x = x_all[:n]
        print(f"n={n:,}: load average {_load()} before the compiled run")
        start, cpu = time.perf_counter(), time.process_time()
        compiled = model.effect_and_interval(x)
        t_compiled = time.perf_counter() - start
        c_compiled = time.process_time() - cpu
        print(
            f"  compiled {t_compiled:.2f} s wall, {c_compiled:.2f} CPU-s; "
            f"load average {_load()} before the EconML run"
        )
        with mock.patch("npl_engine.causal._effects.compiled_forest", return_value=None):
            start, cpu = time.perf_counter(), time.process_time()
            reference = model.effect_and_interval(x)
            t_econml = time.perf_counter() - start
            c_econml = time.process_time() - cpu
        worst = max(float(np.max(np.abs(a - b))) for a, b in zip(compiled, reference, strict=True))
        print(
            f"  EconML {t_econml:.2f} s wall, {c_econml:.2f} CPU-s; ratio "
            f"{t_econml / t_compiled:.1f}x wall, {c_econml / c_compiled:.1f}x CPU; "
            f"largest absolute difference {worst:.2e}; load average after {_load()}"
        )


if __name__ == "__main__":
    main()
