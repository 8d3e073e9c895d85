"""The package layering, checked from the source (ARCHITECTURE.md draws it).

- `pulseboard.protocol` and `pulseboard.closes` (the wire format both sides share) import
  only the standard library;
- the kernel package `pulseboard` never imports the server `pulseboard_server`;
- the server imports, at module level, only the wire modules of `pulseboard` (plus the
  blocking `publish` client that `pulseboard` binds at once, and the report CLI's argument
  parser); anything else of the kernel package it calls as a library,
  imported where it is used, so `pulseboard serve` never loads the notebook's sender;
- no import cycles at module level inside either package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"pulseboard": ROOT / "widget" / "pulseboard", "pulseboard_server": ROOT / "server" / "pulseboard_server"}
WIRE = {"pulseboard.protocol", "pulseboard.closes"}
SERVER_MAY_IMPORT = WIRE | {"pulseboard", "pulseboard.publish", "pulseboard.report_cli"}


def module_name(pkg: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[pkg]).with_suffix("")
    parts = [pkg, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(pkg, p): p for pkg, root in PACKAGES.items() for p in sorted(root.rglob("*.py"))}


def top_level_imports(name: str, path: Path) -> set[str]:
    """Modules imported when `name` is imported: module-level statements, outside TYPE_CHECKING."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for h in getattr(node, "handlers", []):
                    visit(h.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    mod = ".".join([*base, node.module] if node.module else base)
                else:
                    mod = node.module or ""
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in node.names)  # `from . import x` imports module x

    visit(tree.body)
    known = modules()
    return {m for m in found if m in known or m.split(".")[0] not in PACKAGES}


def ours(imports: set[str]) -> set[str]:
    return {m for m in imports if m.split(".")[0] in PACKAGES}


def test_the_wire_modules_import_only_the_standard_library() -> None:
    known = modules()
    for name in WIRE:
        imports = top_level_imports(name, known[name])
        third_party = {m for m in imports if m.split(".")[0] not in sys.stdlib_module_names}
        assert third_party == set(), f"{name} imports {third_party}"


def test_the_kernel_package_never_imports_the_server() -> None:
    for name, path in modules().items():
        if name.startswith("pulseboard_server"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            )
            assert not any(m.startswith("pulseboard_server") for m in mods), f"{name} imports the server"


def test_the_server_imports_only_the_wire_format_of_the_kernel_package() -> None:
    for name, path in modules().items():
        if not name.startswith("pulseboard_server"):
            continue
        kernel_side = {m for m in ours(top_level_imports(name, path)) if m.split(".")[0] == "pulseboard"}
        assert kernel_side <= SERVER_MAY_IMPORT, f"{name} imports {kernel_side - SERVER_MAY_IMPORT} at module level"


def test_no_import_cycles() -> None:
    known = modules()
    graph = {name: ours(top_level_imports(name, path)) - {name} for name, path in known.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def walk(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt):], nxt] if nxt in stack else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])


def test_serving_loads_no_sender() -> None:
    code = (
        "import sys, pulseboard_server.cli, pulseboard_server.app, pulseboard_server.node\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pulseboard.'))\n"
        "print(' '.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "pulseboard.sender" not in out and "pulseboard.widget" not in out, out
    assert set(out) <= SERVER_MAY_IMPORT, out
