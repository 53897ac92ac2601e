"""The import rules of the package (docs/development.md): no import cycle, and a function imports lazily only an
optional or heavy package that a run or the definitions' load may not need, with a comment saying why."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightly_assets"
LAZY = {  # top-level packages a function may import itself
    "lightly_studio",  # and what comes with it:
    "lightly_studio_serve",
    "sqlmodel",
    "sqlalchemy",
    "sqlalchemy_utils",
    "torch",  # torch's stack: never on the warm OpenVINO path
    "torchvision",
    "lightly",
    "safetensors",
    "timm",  # model families
    "open_clip",
    "onnxruntime",
    "huggingface_hub",
    "openvino",  # never on the torch (GPU) path
    "nncf",
    "openvino_telemetry",  # comes with OpenVINO: read only to respect a user's opt-in
    "ray",
    "faiss",  # curation's search
    "scipy",
    "botocore",  # S3 only
    "av",  # PyAV (0.1 s): only where a video is opened, so a run of photos never loads it
    "pyarrow",  # the embeddings CSV's reader and DuckDB's bulk reads: not at the definitions' load
}
# Our modules that import torch at module level, imported lazily by the warm path's modules and the definitions.
LAZY_OURS = {
    "lightly_assets.cli",  # the command imports it after pausing the cycle collector (`lightly_assets.__main__`)
    "lightly_assets.embedding.assemble",
    "lightly_assets.embedding.engines.torch",
    "lightly_assets.embedding.training",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not node.level:
        return [node.module or ""]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return [".".join(base + ([node.module] if node.module else []))]


def _function_imports() -> list[tuple[str, int, str, bool]]:
    """(file, line, imported module, whether the function says why) for every import inside a function."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        module = _module_name(path)
        for function in ast.walk(ast.parse(source)):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            imports = [n for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
            if not imports:
                continue
            first = min(n.lineno for n in imports)
            says_why = lines[first - 2].strip().startswith("#") or any("#" in lines[n.lineno - 1] for n in imports)
            for node in imports:
                for name in _imported(node, module, path.name == "__init__.py"):
                    found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, name, says_why))
    return sorted(set(found))


def test_functions_import_only_optional_heavy_packages_and_say_why() -> None:
    imports = _function_imports()
    assert imports, "the walk found no import inside a function: it is broken"
    allowed = [(f, n, m) for f, n, m, _ in imports if m.split(".")[0] in LAZY or m in LAZY_OURS]
    assert [(f, n, m) for f, n, m, _ in imports if (f, n, m) not in allowed] == []  # move it to the module's top
    assert [(f, n, m) for f, n, m, why in imports if not why] == []  # say why it is lazy


def test_no_import_cycle() -> None:
    """Module-level imports between our modules (not under TYPE_CHECKING) form no cycle."""
    graph: dict[str, set[str]] = {}
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    for module, path in paths.items():
        tree = ast.parse(path.read_text())
        nodes = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for block in tree.body:
            if isinstance(block, ast.If) and "TYPE_CHECKING" not in ast.unparse(block.test):
                nodes += [n for n in ast.walk(block) if isinstance(n, (ast.Import, ast.ImportFrom))]
        targets = set()
        for node in nodes:
            for name in _imported(node, module, path.name == "__init__.py"):
                targets.add(name)
                if isinstance(node, ast.ImportFrom):  # `from package import module`
                    targets |= {f"{name}.{alias.name}" for alias in node.names}
        graph[module] = {t for t in targets if t in paths and t != module}
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def cycle_from(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path + [module, target]
            if target not in state and (found := cycle_from(target, path + [module])):
                return found
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert cycle_from(module, []) is None
