"""Which code a result depends on, and one hash of it.

A cached result (scene data, a rendered scene) is only valid for the code that computed it.
Listing those source files by hand goes stale the day someone adds an import, so the list is
computed: `import_closure` follows every `import mla_core...` statement (also the ones inside
functions) from a starting module, and `code_version` hashes exactly those files.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name  # "mla_core"
REPO = PACKAGE_DIR.parent


def module_path(module: str, root: Path = REPO) -> Path | None:
    """The source file of a dotted mla_core module name under `root`, or None."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Every mla_core module that a source file imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from mla_core.models import gpt2` imports a module, not a name
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == PACKAGE}


def defines_function(module: str, name: str, root: Path = REPO) -> bool:
    """Whether an mla_core module's source defines a top-level function `name`: read, not
    imported (importing can be slow: most modules that compute import torch)."""
    path = module_path(module, root)
    if path is None:
        return False
    tree = ast.parse(path.read_bytes(), filename=str(path))
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


@cache
def import_closure(module: str, root: Path = REPO) -> tuple[Path, ...]:
    """The source files of `module` and of every mla_core module it imports, transitively
    (parent packages' __init__ files included: importing a module runs them), sorted."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = module_path(".".join(parts[:depth]), root)
            if path is not None and path not in seen:
                seen.add(path)
                todo.extend(_imported_modules(path))
    return tuple(sorted(seen))


def hash_files(paths: tuple[Path, ...] | list[Path], root: Path = REPO) -> str:
    """sha256 over (path relative to the repo, contents) of each file; 16 hex digits.
    The one code hash of the project: scene data and renders both use it."""
    sha = hashlib.sha256()
    for path in sorted(paths):
        sha.update(str(Path(path).resolve().relative_to(root.resolve())).encode())
        sha.update(b"\0")
        sha.update(Path(path).read_bytes())
        sha.update(b"\0")
    return sha.hexdigest()[:16]


def code_version(module: str, root: Path = REPO) -> str:
    """The hash of the code `module` runs: its import closure within mla_core."""
    return hash_files(import_closure(module, root), root)
