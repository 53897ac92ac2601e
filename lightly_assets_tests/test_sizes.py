"""The size rules of the package (docs/development.md): every module at most 400 lines, every function at most 8
parameters, so the next engineer can hold each one in their head; the tests' modules keep the same length."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightly_assets"
TESTS = Path(__file__).resolve().parent
MAX_LINES = 400
MAX_PARAMETERS = 8


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = function.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    return count - (bool(names) and names[0].arg in {"self", "cls"})


def _longer_than_allowed(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): n
        for path in sorted(root.rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }


def test_every_module_is_at_most_400_lines() -> None:
    assert _longer_than_allowed(PACKAGE) == {}


def test_every_test_module_is_at_most_400_lines() -> None:
    assert _longer_than_allowed(TESTS) == {}


def test_every_function_takes_at_most_8_parameters() -> None:
    wide = {
        f"{path.relative_to(PACKAGE)}:{node.name}": _parameters(node)
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _parameters(node) > MAX_PARAMETERS
    }
    assert wide == {}
