"""MkDocs hook: the reference pages are generated from the code at build time, so they cannot drift from it.

A page holds markers such as `<!-- reference:settings -->`; `on_page_markdown` replaces each with Markdown built
from the objects themselves: the resources' pydantic fields and `ENVIRONMENT` (definitions.py), the assets'
`Config` classes, the argparse parser (cli.py), the column contracts (columns.py), the metadata facts
(defs/metadata.py), every asset check the definitions declare, and every `raise` of a user-facing error (an AST
scan of the package). What cannot be read from the code (what to do when a check fails, how to fix an error) is
kept beside it in `advice.py`; a test checks that each entry there matches the code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lightly_assets"
MARKER = re.compile(r"<!--\s*reference:([a-z_-]+)\s*-->")

if str(ROOT) not in sys.path:  # the checkout being documented, not whichever copy is installed
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false")


def _advice():
    spec = importlib.util.spec_from_file_location("lightly_assets_docs_advice", Path(__file__).with_name("advice.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(text: Any) -> str:
    """A value fit for one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: Any) -> str:
    return f"`{text}`" if "`" not in str(text) else f"``{text}``"


def first_paragraph(doc: str | None) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not getattr(annotation, "__args__", None) else None
    text = text or str(annotation).replace("typing.", "")
    return re.sub(r"Optional\[(.*)\]", r"\1 | None", text).replace("NoneType", "None")


# --- settings -------------------------------------------------------------------------------------------------


def settings() -> str:
    from lightly_assets import definitions as d

    out: list[str] = []
    bound = {v: f"{r}.{f}" for r, fields in d.ENVIRONMENT.items() for f, v in fields.items()}
    out.append("### Environment variables\n")
    out.append("| variable | resource field | default |\n|---|---|---|")
    resources = d.resources()
    for resource, fields in d.ENVIRONMENT.items():
        model = type(resources[resource]).model_fields
        for field, variable in fields.items():
            out.append(f"| {code(variable)} | {code(f'{resource}.{field}')} | {_default(model[field])} |")
    for resource, fields in d.SECRET_NAMES.items():
        for field, variable in fields.items():
            out.append(
                f"| {code(variable)} (a secret) | {code(f'{resource}.{field}')} gets the variable's *name* | none |"
            )
    from lightly_assets.defs.sensors import DEFAULT_INTERVAL_S

    out.append(f"| {code(d.SENSOR_INTERVAL)} | the sensor's tick interval in seconds | {code(DEFAULT_INTERVAL_S)} |")
    for resource, instance in resources.items():
        if resource not in d.ENVIRONMENT:
            continue
        cls = type(instance)
        out.append(f"\n### `{resource}`\n\n{first_paragraph(cls.__doc__)}\n")
        out.append("| field | type | default | variable | what it is |\n|---|---|---|---|---|")
        for name, info in cls.model_fields.items():
            variable = next((v for v, f in bound.items() if f == f"{resource}.{name}"), "")
            variable = code(variable) if variable else ""
            what = cell(info.description or "")
            kind = code(type_name(info.annotation))
            out.append(f"| {code(name)} | {kind} | {_default(info)} | {variable} | {what} |")
    return "\n".join(out)


def _default(info) -> str:
    return "none" if info.default is None else code(repr(info.default).strip("'"))


def asset_configs() -> str:
    from dagster import AssetsDefinition, Config

    from lightly_assets.definitions import defs

    out: list[str] = []
    for asset in sorted((a for a in defs().assets if isinstance(a, AssetsDefinition)), key=lambda a: a.key.path):
        fn = asset.op.compute_fn.decorated_fn
        config = inspect.signature(fn).parameters.get("config")
        cls = config.annotation if config else None
        if not (inspect.isclass(cls) and issubclass(cls, Config)):
            continue
        name = asset.key.to_user_string()
        example = ", ".join(f"{k}: …" for k in list(cls.model_fields)[:2])
        out.append(f"\n### `{name}`\n\n{first_paragraph(cls.__doc__)}\n")
        out.append(f"Run config: `ops: {{{name}: {{config: {{{example}}}}}}}`\n")
        out.append("| field | type | default | what it is |\n|---|---|---|---|")
        for field, info in cls.model_fields.items():
            kind, what = code(type_name(info.annotation)), cell(info.description or "")
            out.append(f"| {code(field)} | {kind} | {_default(info)} | {what} |")
    return "\n".join(out)


# --- the asset graph --------------------------------------------------------------------------------------------


def asset_graph() -> str:
    from lightly_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string())
    lines = ["```mermaid", "flowchart LR"]
    for key in keys:
        node = graph.get(key)
        name = key.to_user_string()
        shape = f"{name}([{name}])" if node.group_name != "lightly" else f"{name}[{name}]"
        lines.append(f"  {shape}")
    for key in keys:
        for parent in sorted(graph.get(key).parent_keys, key=lambda k: k.to_user_string()):
            dotted = graph.get(parent).group_name != graph.get(key).group_name
            lines.append(f"  {parent.to_user_string()} {'-.->' if dotted else '-->'} {key.to_user_string()}")
    lines.append("```")
    return "\n".join(lines)


def assets() -> str:
    from lightly_assets.definitions import defs

    graph = defs().resolve_asset_graph()
    out = ["| asset | group | kinds | reads | what it is |", "|---|---|---|---|---|"]
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        parents = ", ".join(sorted(code(p.to_user_string()) for p in node.parent_keys)) or "the dataset folder"
        kinds = ", ".join(sorted(node.kinds))
        out.append(
            f"| {code(key.to_user_string())} | {node.group_name} | {kinds} | {parents} | "
            f"{cell(first_paragraph(node.description))} |"
        )
    return "\n".join(out)


# --- checks ----------------------------------------------------------------------------------------------------


def declared_checks() -> list[tuple[str, str, str, bool]]:
    """(asset, check, description, blocking) for every check the definitions declare."""
    from dagster import AssetsDefinition

    from lightly_assets.definitions import defs

    found = []
    for asset in defs().assets:
        if isinstance(asset, AssetsDefinition):
            for spec in asset.check_specs:
                found.append((spec.asset_key.to_user_string(), spec.name, spec.description or "", spec.blocking))
    return sorted(found)


def checks() -> str:
    advice = _advice().CHECKS
    out: list[str] = []
    for asset in sorted({a for a, _, _, _ in declared_checks()}):
        out.append(f"\n### `{asset}`\n\n| check | kind | what it checks | when it fails |\n|---|---|---|---|")
        for _, name, description, blocking in (c for c in declared_checks() if c[0] == asset):
            kind = "**blocking**" if blocking else "warning"
            out.append(f"| `{name}` | {kind} | {cell(description)} | {cell(advice.get(name, ''))} |")
    return "\n".join(out)


# --- the CLI ---------------------------------------------------------------------------------------------------


def cli() -> str:
    from lightly_assets.cli import _parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal: the same page on every machine
    try:
        parser = _parser()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        out = ["```text", "$ lightly-assets --help", parser.format_help().rstrip(), "```"]
        for name, command in sub.choices.items():
            out += [f"\n### `lightly-assets {name}`\n", "```text", command.format_help().rstrip(), "```"]
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out)


# --- file formats ----------------------------------------------------------------------------------------------


def formats() -> str:
    """Every column contract in columns.py (a module-level dict of column -> meaning), with the comment above it."""
    from lightly_assets import columns

    source = (PACKAGE / "columns.py").read_text()
    lines = source.splitlines()
    out: list[str] = []
    for node in ast.parse(source).body:
        targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [None])
        target = targets[0]
        if not isinstance(target, ast.Name) or target.id == "TYPES":
            continue
        value = getattr(columns, target.id, None)
        if not (isinstance(value, dict) and value and all(isinstance(v, str) for v in value.values())):
            continue
        comment = []
        i = node.lineno - 2
        while i >= 0 and lines[i].lstrip().startswith("#"):
            comment.insert(0, lines[i].lstrip("# ").rstrip())
            i -= 1
        title = target.id.lower().replace("_csv", ".csv") if target.id.endswith("_CSV") else target.id.lower()
        out.append(f"\n### {title}\n")
        if comment:
            out.append(" ".join(comment) + "\n")
        out.append("| column | type | what it holds |\n|---|---|---|")
        for column, meaning in value.items():
            out.append(f"| {code(column)} | {columns.TYPES.get(column, 'string')} | {cell(meaning)} |")
    return "\n".join(out)


# --- metadata --------------------------------------------------------------------------------------------------


def metadata() -> str:
    from lightly_assets.definitions import defs
    from lightly_assets.defs.metadata import FACTS

    graph = defs().resolve_asset_graph()
    descriptions = {k.to_user_string(): graph.get(k).description or "" for k in graph.get_all_asset_keys()}
    out = ["| key | written by | what it means |", "|---|---|---|"]
    for key, meaning in FACTS.items():
        short = key.removeprefix("dagster/")
        writers = sorted(a for a, text in descriptions.items() if f"- `{short}`:" in text)
        out.append(f"| {code(key)} | {', '.join(code(w) for w in writers)} | {cell(meaning)} |")
    return "\n".join(out)


# --- user-facing errors ----------------------------------------------------------------------------------------


def _template(node: ast.AST) -> str | None:
    """The text an expression builds, with each computed part shown as ‹expression›; None if not a string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else f"‹{_placeholder(v.value)}›" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _template(node.left), _template(node.right)
        if left is not None or right is not None:
            return (left if left is not None else f"‹{_placeholder(node.left)}›") + (
                right if right is not None else f"‹{_placeholder(node.right)}›"
            )
    if isinstance(node, ast.IfExp):
        return _template(node.body)
    return None


WRAPPERS = (
    "str",
    "repr",
    "list",
    "float",
    "int",
    "sorted",
    "mask_url",
    "scrub",
    "exception_line",
    "first_line",
    "_why",
)


def _placeholder(node: ast.AST) -> str:
    """A short name for a computed part of a message: `', '.join(names)` -> names, `len(rows)` -> number of rows."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "len" and node.args:
            return f"number of {_placeholder(node.args[0])}"
        if isinstance(func, ast.Name) and func.id in WRAPPERS:
            return _placeholder(node.args[0]) if node.args else func.id
        if isinstance(func, ast.Attribute) and func.attr == "join" and node.args:
            return _placeholder(node.args[0])
        return _placeholder(func)
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _placeholder(node.value)
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.BoolOp):
        return _placeholder(node.values[0])
    if isinstance(node, ast.BinOp):
        return _placeholder(node.left)
    if isinstance(node, ast.Constant):
        return str(node.value)
    if isinstance(node, ast.IfExp):
        return _placeholder(node.body)
    return ast.unparse(node)


def error_classes() -> dict[str, type]:
    """Every LightlyAssetsError subclass in the package, by name."""
    from lightly_assets.errors import LightlyAssetsError

    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if re.search(r"^\s*class \w+\(\w*Error\):", path.read_text(), re.MULTILINE):
            importlib.import_module(module)

    def walk(cls: type) -> Iterator[type]:
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("lightly_assets"):
                yield sub
                yield from walk(sub)

    return {cls.__name__: cls for cls in walk(LightlyAssetsError)}


def raised_errors() -> list[tuple[str, str, str]]:
    """(error class, first line as the user reads it, module) for every `raise` of a user-facing error and every
    `error:` line the CLI prints."""
    classes = error_classes()
    found: list[tuple[str, str, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            call = node.exc if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) else None
            if call is not None and isinstance(call.func, ast.Name) and call.func.id in classes:
                parts = [_template(a) or f"‹{_placeholder(a)}›" for a in call.args]
                try:
                    text = str(classes[call.func.id](*parts))
                except TypeError:
                    text = ": ".join(parts)
                found.append((call.func.id, text.splitlines()[0] if text else "", module))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
                and node.args
                and (_template(node.args[0]) or "").startswith("error: ")
            ):
                found.append(("CLI", _template(node.args[0]).removeprefix("error: "), module))
    return found


def errors() -> str:
    advice = _advice()
    classes = error_classes()
    rows = raised_errors()
    out = []
    for name in ["CLI", *sorted(classes)]:
        mine = sorted({text for cls, text, _ in rows if cls == name})
        if not mine:
            continue
        about = (
            "Printed by `lightly-assets` before any run starts; it exits with status 2."
            if name == "CLI"
            else (f"{first_paragraph(classes[name].__doc__)} (`{classes[name].__module__}`)")
        )
        usual = advice.ERROR_CLASSES.get(name, "")
        out.append(f"\n### {name}\n\n{about}\n\nFix, unless the row says otherwise: {usual}\n")
        out.append("| first line (‹…› is filled in) | fix |\n|---|---|")
        for text in mine:
            fix = next((f for fragment, f in advice.ERRORS.items() if fragment in text), "as above")
            if text.startswith("‹") and text.endswith("›") and text.count("‹") == 1:
                text = f"{text} (the underlying error's own line)"
            out.append(f"| {code(' '.join(text.split()))} | {cell(fix)} |")
    return "\n".join(out)


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings,
    "asset-configs": asset_configs,
    "asset-graph": asset_graph,
    "assets": assets,
    "checks": checks,
    "cli": cli,
    "formats": formats,
    "metadata": metadata,
    "errors": errors,
}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"{page.file.src_path}: unknown reference marker {name!r}; known: {sorted(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(replace, markdown)
