"""Declared parents of reference functions, for attributing a match to its canonical origin.

Reference corpora copy themselves: transformers marks copies with `# Copied from transformers.models.llama…`
comments, and its generated `modeling_X.py` files inherit whole methods from the classes named in
`modular_X.py`. Both are *declared* parents; a match is attributed to the root of the declared chain.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from .tokenize import Unit, parser_for

_COPIED_FROM = re.compile(r"#\s*Copied from\s+([A-Za-z_][\w.]*)")


def unit_key(path: str, qualname: str) -> str:
    """How units are named across the index: `relative/path.py::Class.method`."""
    return f"{path}::{qualname}"


def _module_to_path(dotted: str, package: str | None) -> list[tuple[str, str]]:
    """Candidate (file path, qualname) splits of a dotted name like `transformers.models.x.modeling_x.C.f`."""
    parts = dotted.split(".")
    if package and parts and parts[0] == package:
        parts = parts[1:]
    return [("/".join(parts[:cut]) + ".py", ".".join(parts[cut:])) for cut in range(len(parts) - 1, 0, -1)]


def copied_from_comments(lines: list[str], units: list[Unit], package: str | None, known_files: set[str]) -> dict[str, str]:
    """Units preceded by `# Copied from a.b.C.f` -> key of the declared parent (methods inherit a class's)."""
    declared: dict[str, str] = {}
    for unit in units:
        if unit.kind == "module":
            continue
        row = unit.start_line - 2  # 0-based index of the line above the definition
        while row >= 0 and lines[row].lstrip().startswith("@"):
            row -= 1
        match = _COPIED_FROM.search(lines[row]) if row >= 0 else None
        if not match:
            continue
        for path, qualname in _module_to_path(match.group(1), package):
            if path in known_files and qualname:
                declared[unit.qualname] = unit_key(path, qualname)
                break
    for unit in units:  # methods of a copied class copy the parent's methods
        owner, _, method = unit.qualname.rpartition(".")
        if owner in declared and unit.qualname not in declared and method:
            declared[unit.qualname] = f"{declared[owner]}.{method}"
    return declared


def _modular_inheritance(modular: Path, relpath: str) -> tuple[dict[str, tuple[str, str]], dict[str, set[str]]]:
    """From `modular_X.py`: names imported from sibling models -> (file, name), and methods each class defines."""
    source = modular.read_bytes()
    tree = parser_for("python").parse(source)
    here = PurePosixPath(relpath).parent
    imported: dict[str, tuple[str, str]] = {}
    defined: dict[str, set[str]] = {}
    bases: dict[str, list[str]] = {}
    for node in tree.root_node.named_children:
        if node.type == "import_from_statement":
            module = node.child_by_field_name("module_name")
            text = module.text.decode() if module is not None else ""
            dots = len(text) - len(text.lstrip("."))
            if dots < 2:
                continue
            base = here
            for _ in range(dots - 1):
                base = base.parent
            target = str(base / (text.lstrip(".").replace(".", "/") + ".py"))
            for name in node.children_by_field_name("name"):
                inner = name.child_by_field_name("name") or name
                imported[inner.text.decode()] = (target, inner.text.decode())
        elif node.type == "class_definition":
            name = node.child_by_field_name("name").text.decode()
            superclasses = node.child_by_field_name("superclasses")
            bases[name] = [c.text.decode() for c in superclasses.named_children] if superclasses is not None else []
            body = node.child_by_field_name("body")
            methods: set[str] = set()
            for stmt in body.named_children if body is not None else []:
                if stmt.type == "decorated_definition":
                    stmt = stmt.child_by_field_name("definition")
                if stmt is not None and stmt.type == "function_definition":
                    methods.add(stmt.child_by_field_name("name").text.decode())
            defined[name] = methods
    inherited = {name: imported[b] for name, bs in bases.items() for b in bs[:1] if b in imported}
    functions = {name: target for name, target in imported.items() if name[:1].islower()}
    return {**functions, **inherited}, defined


def modular_parents(root: Path, relpath: str, units: list[Unit], known_files: set[str]) -> dict[str, str]:
    """Parents declared by transformers' modular file beside `modeling_X.py` (methods not overridden there)."""
    path = PurePosixPath(relpath)
    if not path.name.startswith("modeling_"):
        return {}
    modular = root / path.parent / path.name.replace("modeling_", "modular_", 1)
    if not modular.is_file():
        return {}
    try:
        parents, overridden = _modular_inheritance(modular, relpath)
    except (OSError, AttributeError, UnicodeDecodeError):
        return {}
    declared: dict[str, str] = {}
    for unit in units:
        if unit.kind == "module":
            continue
        owner, _, method = unit.qualname.rpartition(".")
        if not owner and unit.qualname in parents:
            target, name = parents[unit.qualname]
            if target in known_files:
                declared[unit.qualname] = unit_key(target, name)
        elif owner in parents and "." not in owner and method not in overridden.get(owner, set()):
            target, base = parents[owner]
            if target in known_files:
                declared[unit.qualname] = unit_key(target, f"{base}.{method}")
    return declared


def declared_parents(root: Path, relpath: str, text: str, units: list[Unit], package: str | None, known_files: set[str]) -> dict[str, str]:
    """All declared parents of a reference file's units; an explicit comment wins over modular inheritance."""
    declared = modular_parents(root, relpath, units, known_files)
    declared.update(copied_from_comments(text.splitlines(), units, package, known_files))
    own = {unit_key(relpath, u.qualname) for u in units}
    return {q: p for q, p in declared.items() if p not in own or p != unit_key(relpath, q)}
