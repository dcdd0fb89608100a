"""The `npl` command line: one module per area, all registered on one click group.

Every command that reads data validates it first and writes nothing when the input is bad.
Errors meant for the user exit with code 2 and never show a traceback.
"""

from npl_engine.cli import (  # noqa: F401 - importing a module registers its commands
    _causal,
    _counterfactuals,
    _data,
    _demo,
    _import,
    _monitoring,
    _operations,
    _plan,
    _scoring,
    _strats,
    _valuation,
)
from npl_engine.cli._base import main

__all__ = ["main"]
