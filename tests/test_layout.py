"""The package's layout: no module reaches into another package's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import npl_engine

SRC = Path(npl_engine.__file__).resolve().parent


def _area(module: str) -> str:
    """The package a module belongs to: ``npl_engine.causal._policy`` → ``causal``.

    A top-level module is its own area (``npl_engine.explain`` → ``explain``).
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private_imports(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        here = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [(node.module, [a.name for a in node.names])]
            elif isinstance(node, ast.Import):
                targets = [(a.name, []) for a in node.names]
            else:
                continue
            for module, names in targets:
                if not module.startswith("npl_engine.") or _area(module) == _area(here):
                    continue
                private_module = any(p.startswith("_") for p in module.split(".")[1:])
                private_names = [n for n in names if n.startswith("_") and n != "__version__"]
                if private_module or private_names:
                    what = ", ".join(private_names) or "*"
                    found.append(f"{path.relative_to(root)}:{node.lineno} {module} ({what})")
    return found


def test_no_module_imports_another_packages_private_names() -> None:
    """Packages talk through their public names (each package's __init__ re-exports them)."""
    assert _private_imports() == []


def test_the_checker_sees_a_private_import(tmp_path: Path) -> None:
    """A private module or name of another package is found; the package's own are allowed."""
    root = tmp_path / "npl_engine"
    (root / "causal").mkdir(parents=True)
    (root / "causal" / "_plan.py").write_text("from npl_engine.causal._effects import X\n")
    (root / "report.py").write_text(
        "from npl_engine.causal._policy import ActionCosts\n"
        "from npl_engine.scoring import _hidden, RecoveryModel\n"
        "import npl_engine._treeshap\n"
        "from npl_engine.scoring import RecoveryModel as M\n"
    )
    assert _private_imports(root) == [
        "report.py:1 npl_engine.causal._policy (*)",
        "report.py:2 npl_engine.scoring (_hidden)",
        "report.py:3 npl_engine._treeshap (*)",
    ]
    assert _area("npl_engine.causal._policy") == "causal"
    assert _area("npl_engine.explain") == "explain"


TESTS = Path(__file__).resolve().parent

#: Test modules at the top of tests/ that check the engine as a whole, not one module.
WHOLE_ENGINE = {
    "test_api.py",
    "test_bench_harness.py",
    "test_layout.py",
    "test_outputs_unchanged.py",
    "test_tutorials.py",
    "test_worlds.py",
}


def test_every_package_has_its_tests_in_the_same_place() -> None:
    """Each src package (npl_engine/data/simulator, ...) has test modules at tests/<same path>."""
    packages = sorted(init.parent.relative_to(SRC) for init in SRC.rglob("__init__.py"))
    missing = [
        str(rel) for rel in packages if rel != Path() and not any((TESTS / rel).glob("test_*.py"))
    ]
    assert packages
    assert missing == []


def test_top_level_test_modules_belong_to_top_level_modules() -> None:
    """tests/test_X.py (or test_cli_X.py) tests npl_engine/X.py; packages have their own folder."""
    stray = [
        path.name
        for path in sorted(TESTS.glob("test_*.py"))
        if path.name not in WHOLE_ENGINE
        and not (SRC / f"{path.stem.removeprefix('test_').removeprefix('cli_')}.py").is_file()
    ]
    assert stray == []
