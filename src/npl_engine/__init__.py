"""npl_engine: prices and manages non-performing loans.

Recovery scoring, explanations, causal effects of collection actions, counterfactuals and
valuation of NPL portfolios, Polars-based end to end.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# LightGBM's OpenMP threads spin while they wait by default; on a shared or busy machine two
# spinning threads stall each other (measured: `npl train` 177 s idle, 395 s under load, and
# back near idle with passive waiting). Idle timings are unchanged. Read when LightGBM loads,
# so it is set here, before any submodule imports it; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("npl_engine")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
