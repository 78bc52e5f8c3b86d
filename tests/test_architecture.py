"""The package's layers hold: the import-linter contracts in pyproject.toml, no hidden cycles.

docs/architecture.md says what the layers are and where new code goes; these tests are what
keeps the folders honest when someone adds an import.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "flask_mlops"
BIN = Path(sys.executable).parent

#: own modules that may be imported inside a function: they import scikit-learn (and with it
#: scipy and pandas) at import time, which must stay off the request path and app start-up
HEAVY_OWN = ("flask_mlops.training",)
#: reviewed exceptions, each with its reason (keep this short)
ALLOWED_FUNCTION_IMPORTS: set[tuple[str, str]] = set()


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in this environment: pip install -e '.[dev]' (it is in the dev extra)")
    return str(path)


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [_tool("lint-imports"), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )


def test_import_contracts_are_kept() -> None:
    """Layers (extension > adapters > services > store > pure > foundation), no cycles, no Flask below."""
    out = _lint_imports(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    """The contract bites: a function-level import of a service from the store layer fails it."""
    shutil.copytree(PACKAGE, tmp_path / "flask_mlops", ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    base = tmp_path / "flask_mlops" / "store" / "base.py"
    base.write_text(base.read_text() + "\n\ndef _sneaky() -> None:\n    from ..services import state  # noqa: F401\n")
    out = _lint_imports(tmp_path)
    assert out.returncode != 0
    assert "flask_mlops.store is not allowed to import flask_mlops.services" in out.stdout


def test_no_dead_code() -> None:
    """vulture over the package; its reviewed false positives are in vulture_allowlist.py (with why)."""
    out = subprocess.run([_tool("vulture")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, "unused code (delete it, or list a false positive with its reason in vulture_allowlist.py):\n" + out.stdout[-4000:]


def _module_name(path: Path) -> tuple[str, str]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    package = module if parts[-1] == "__init__" else module.rpartition(".")[0]
    return module, package


def _function_level_own_imports(path: Path) -> list[tuple[str, str, int]]:
    module, package = _module_name(path)
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only
            if in_function and isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    target = ".".join([*base, *([child.module] if child.module else [])])
                else:
                    target = child.module or ""
                if target.startswith("flask_mlops"):
                    found.append((module, target, child.lineno))
            elif in_function and isinstance(child, ast.Import):
                found.extend((module, a.name, child.lineno) for a in child.names if a.name.startswith("flask_mlops"))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_own_modules_are_imported_at_the_top() -> None:
    """A function-level import of our own code hides a cycle; only training's heavy modules may be."""
    offenders = [
        f"{module}:{line} imports {target}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for module, target, line in _function_level_own_imports(path)
        if not target.startswith(HEAVY_OWN) and (module, target) not in ALLOWED_FUNCTION_IMPORTS
        and not module.startswith(HEAVY_OWN)  # inside training: optional torch / xgboost candidates
    ]
    assert not offenders, "move these imports to the top of the module (see docs/architecture.md):\n" + "\n".join(offenders)


def test_app_start_up_stays_off_heavy_libraries(tmp_path: Path) -> None:
    """Building the app (routes, CLI, jobs) imports no scikit-learn, scipy, pandas, MLflow or torch."""
    script = (
        "import sys, json\n"
        "from flask import Flask\n"
        "from flask_mlops import MLOps\n"
        f"app = Flask('probe', instance_path={str(tmp_path)!r})\n"
        "app.config.update(MLOPS_MODELS={'m': {'features': ['x']}})\n"
        "MLOps(app)\n"
        "heavy = ('sklearn', 'scipy', 'pandas', 'mlflow', 'torch', 'matplotlib', 'xgboost')\n"
        "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
