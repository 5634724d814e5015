"""Plagiarism transformations for tests: consistent renaming, reordering, dead code and reformatting.

Each works on the tree-sitter parse of real source and checks that the result still parses.
"""

from __future__ import annotations

import tree_sitter

from modelprov.code.tokenize import _GRAMMARS, parser_for


def _parse(source: str, language: str = "python") -> tree_sitter.Tree:
    return parser_for(language).parse(source.encode("utf-8"))


def _checked(source: str, language: str = "python") -> str:
    if language == "python":  # C++ headers with macros already parse with errors; their tokens still count
        assert not _parse(source).root_node.has_error, "transformation broke the syntax"
    return source


def _identifiers(node: tree_sitter.Node, language: str):
    grammar = _GRAMMARS[language]
    if node.type in grammar.strings or node.type in grammar.comments:
        return
    if node.type in grammar.identifiers:
        yield node
    for child in node.children:
        yield from _identifiers(child, language)


def rename_all(source: str, language: str = "python") -> tuple[str, dict[str, str]]:
    """Rename every identifier with one consistent one-to-one map (`name` -> `v<n>_`)."""
    data = source.encode("utf-8")
    nodes = list(_identifiers(_parse(source, language).root_node, language))
    names = sorted({n.text.decode() for n in nodes})
    mapping = {name: f"v{i}_" for i, name in enumerate(names)}
    out = bytearray(data)
    for node in sorted(nodes, key=lambda n: n.start_byte, reverse=True):
        out[node.start_byte : node.end_byte] = mapping[node.text.decode()].encode()
    return _checked(out.decode("utf-8"), language), mapping


def reorder_definitions(source: str) -> str:
    """Reverse the order of the top-level classes and functions, other statements staying in place."""
    data = source.encode("utf-8")
    kinds = {"class_definition", "function_definition", "decorated_definition"}
    spans = [(c.start_byte, c.end_byte) for c in _parse(source).root_node.children if c.type in kinds]
    texts = [data[s:e] for s, e in spans][::-1]
    out, last = bytearray(), 0
    for (s, e), text in zip(spans, texts):
        out += data[last:s] + text
        last = e
    out += data[last:]
    return _checked(out.decode("utf-8"))


def insert_dead_code(source: str) -> str:
    """Insert a never-executed block in the middle of every multi-statement function body."""
    data = source.encode("utf-8")
    inserts = []

    def visit(node: tree_sitter.Node) -> None:
        if node.type == "function_definition":
            body = node.child_by_field_name("body")
            statements = [c for c in body.named_children if c.type != "comment"]
            if len(statements) >= 2 and body.start_point[0] > node.start_point[0]:
                stmt = statements[len(statements) // 2]
                pad = " " * stmt.start_point[1]
                dead = f"if len([]) > 99:\n{pad}    unused_total = [7, 8, 9]\n{pad}    print(unused_total)\n{pad}"
                inserts.append((stmt.start_byte, dead.encode()))
        for child in node.children:
            visit(child)

    visit(_parse(source).root_node)
    out = bytearray(data)
    for at, text in sorted(inserts, reverse=True):
        out[at:at] = text
    return _checked(out.decode("utf-8"))


def reformat(source: str) -> str:
    """Halve the indentation, add blank lines after block openers and trailing comments after calls."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip(" ")
        indent = (len(line) - len(stripped)) // 2
        text = " " * indent + stripped
        if text.rstrip().endswith(")") and '"""' not in text and "#" not in text:
            text = text.rstrip() + "  # reformatted"
        lines.append(text)
        if text.rstrip().endswith(":") and not text.lstrip().startswith("#"):
            lines.append("")
    return _checked("\n".join(lines) + "\n")
