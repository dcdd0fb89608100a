"""The top-level API: every listed name resolves, lazily, and docs/api.md names each one."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import npl_engine

DOCS = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_every_top_level_name_is_its_modules_public_object() -> None:
    """npl.X is the object X of the module that defines it, and that module lists it public."""
    for name in npl_engine.__all__:
        if name == "__version__":
            continue
        module = importlib.import_module(npl_engine._WHERE[name])
        assert getattr(npl_engine, name) is getattr(module, name)
        assert name in module.__all__, (module.__name__, name)


def test_importing_the_package_loads_no_heavy_library() -> None:
    """`import npl_engine` alone imports neither Polars nor LightGBM (the CLI starts fast)."""
    code = (
        "import sys, npl_engine; "
        "print(sorted(m for m in ('polars', 'lightgbm', 'econml') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_api_page_names_every_top_level_name() -> None:
    """docs/api.md mentions each name of npl_engine.__all__ in backquotes."""
    text = DOCS.read_text(encoding="utf-8")
    missing = [n for n in npl_engine.__all__ if n != "__version__" and f"`{n}`" not in text]
    assert missing == []
