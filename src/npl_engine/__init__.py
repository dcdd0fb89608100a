"""npl_engine: prices and manages non-performing loans.

Recovery scoring, explanations, causal effects of collection actions, counterfactuals and
valuation of NPL portfolios, Polars-based end to end.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("npl_engine")
except PackageNotFoundError:  # pragma: no cover - only when run from a source tree not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
