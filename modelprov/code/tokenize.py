"""Source code to token streams with tree-sitter: an abstracted stream for matching and spans for evidence.

The abstracted stream replaces identifiers, numbers and strings by placeholders and drops comments,
docstrings and imports (shared by all code of a framework, not evidence of copying), so renaming and
reformatting do not change it. Byte spans and lines keep the lexical (verbatim)
stream recoverable for side-by-side views and the identifier rename map. Functions and classes become
*units* with qualified names (`Class.method`), the granularity findings are reported at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import tree_sitter

from modelprov._inputs import read_regular
from modelprov.errors import ProvenanceError

from .fingerprint import token_id

LANGUAGE_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".c": "cpp",
    ".h": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".inl": "cpp",
    ".cu": "cuda",
    ".cuh": "cuda",
}

GRAMMAR_PACKAGES = {"python": "tree-sitter-python", "cpp": "tree-sitter-cpp", "cuda": "tree-sitter-cuda"}

ID, NUM, STR = "ID", "NUM", "STR"
_SKIP, _ATOM, _SCOPE, _MAYBE_DOCSTRING, _DECORATED = range(5)  # how the tokeniser treats a node type
MODULE_UNIT = "<module>"


@dataclass(frozen=True)
class _Grammar:
    """Which node types of one tree-sitter grammar are identifiers, literals, comments and scopes."""

    identifiers: frozenset[str]
    numbers: frozenset[str]
    strings: frozenset[str]  # atomic: not descended into
    comments: frozenset[str]  # with imports and includes: left out of both streams
    functions: frozenset[str]
    classes: frozenset[str]


_PYTHON = _Grammar(
    identifiers=frozenset({"identifier"}),
    numbers=frozenset({"integer", "float"}),
    strings=frozenset({"string"}),
    comments=frozenset({"comment", "import_statement", "import_from_statement", "future_import_statement"}),
    functions=frozenset({"function_definition"}),
    classes=frozenset({"class_definition"}),
)
_CPP = _Grammar(
    identifiers=frozenset(
        {"identifier", "field_identifier", "type_identifier", "namespace_identifier", "statement_identifier"}
    ),
    numbers=frozenset({"number_literal"}),
    strings=frozenset({"string_literal", "char_literal", "raw_string_literal", "system_lib_string"}),
    comments=frozenset({"comment", "preproc_include"}),
    functions=frozenset({"function_definition"}),
    classes=frozenset({"class_specifier", "struct_specifier", "namespace_definition", "union_specifier"}),
)
_GRAMMARS = {"python": _PYTHON, "cpp": _CPP, "cuda": _CPP}


@lru_cache(maxsize=None)
def parser_for(language: str) -> tree_sitter.Parser:
    """A tree-sitter parser for `language`; each grammar is its own wheel, imported the first time it is met."""
    if language == "python":
        import tree_sitter_python as grammar
    elif language == "cpp":
        import tree_sitter_cpp as grammar
    elif language == "cuda":
        import tree_sitter_cuda as grammar
    else:
        raise ValueError(f"unsupported language {language!r}")
    return tree_sitter.Parser(tree_sitter.Language(grammar.language()))


def language_of(path: str | Path) -> str | None:
    """The language scanned for a file name (`python`, `cpp`, `cuda`), or None when not source code."""
    return LANGUAGE_BY_SUFFIX.get(Path(path).suffix.lower())


@dataclass
class Unit:
    """A function, class body or module top level: the granularity of matches and findings."""

    qualname: str
    start_line: int  # 1-based, inclusive
    end_line: int
    kind: str  # "function" | "class" | "module"


@dataclass
class TokenizedFile:
    """One source file as parallel token arrays plus its units."""

    language: str
    source: bytes
    ids: np.ndarray  # uint64 stable ids of the abstracted tokens
    lines: np.ndarray  # uint32, 1-based line of each token
    starts: np.ndarray  # int64 byte offsets (lexical span of each token)
    ends: np.ndarray
    unit_of: np.ndarray  # int32, index into `units` of each token
    units: list[Unit] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def unit_tokens(self) -> list[np.ndarray]:
        """For each unit, the indices of its tokens in file order (nested units excluded)."""
        order = np.argsort(self.unit_of, kind="stable")
        bounds = np.searchsorted(self.unit_of[order], np.arange(len(self.units) + 1))
        return [order[bounds[u] : bounds[u + 1]] for u in range(len(self.units))]

    def text(self, index: int) -> str:
        """The verbatim text of token `index`."""
        return self.source[int(self.starts[index]) : int(self.ends[index])].decode("utf-8", "replace")


def _scope_name(node: tree_sitter.Node, language: str) -> str:
    name = node.child_by_field_name("name")
    if name is not None:
        return name.text.decode("utf-8", "replace")
    if language != "python" and node.type == "function_definition":
        declarator = node.child_by_field_name("declarator")
        while declarator is not None and declarator.type != "function_declarator":
            declarator = declarator.child_by_field_name("declarator")
        if declarator is not None:
            inner = declarator.child_by_field_name("declarator")
            if inner is not None:
                return inner.text.decode("utf-8", "replace").replace("::", ".")
    return "<anonymous>"


def _is_docstring(node: tree_sitter.Node) -> bool:
    return node.named_child_count == 1 and node.child_count <= 2 and node.named_children[0].type in (
        "string",
        "concatenated_string",
    )


def tokenize_source(source: bytes, language: str) -> TokenizedFile:
    """Parse `source` and return its abstracted token stream, spans, lines and units."""
    grammar = _GRAMMARS[language]
    tree = parser_for(language).parse(source)
    kinds: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    unit_of: list[int] = []
    units = [Unit(MODULE_UNIT, 1, source.count(b"\n") + 1, "module")]
    scopes: list[tuple[int, int]] = [(-1, 0)]  # (depth of the scope node, unit index)
    current = 0  # unit of the innermost open scope
    scope_types = grammar.functions | grammar.classes
    # one dict lookup per node decides its handling; plain nodes are not in the table
    special = {kind: _SKIP for kind in grammar.comments}
    special.update({kind: _ATOM for kind in grammar.strings})
    special.update({kind: _SCOPE for kind in scope_types})
    if language == "python":
        special["expression_statement"] = _MAYBE_DOCSTRING
        special["decorated_definition"] = _DECORATED
    cursor = tree.walk()
    goto_first_child, goto_next_sibling, goto_parent = cursor.goto_first_child, cursor.goto_next_sibling, cursor.goto_parent
    add_kind, add_start, add_end, add_unit = kinds.append, starts.append, ends.append, unit_of.append
    depth = 0
    scope_depth = -1  # depth of the innermost open scope node
    claimed = -1  # id of a definition whose unit its decorated_definition already opened
    while True:
        node = cursor.node
        kind = node.type
        if scope_depth >= depth:
            while scopes[-1][0] >= depth:
                scopes.pop()
            scope_depth, current = scopes[-1]
        handling = special.get(kind)
        if handling is not None:
            if handling == _SKIP or (handling == _MAYBE_DOCSTRING and _is_docstring(node)):
                handling = _SKIP
            elif handling == _ATOM:
                add_kind(kind)
                add_start(node.start_byte)
                add_end(node.end_byte)
                add_unit(current)
            else:
                scope_node = node
                if handling == _DECORATED:  # decorators belong to the function or class they decorate
                    definition = node.child_by_field_name("definition")
                    if definition is not None and definition.type in scope_types:
                        claimed = definition.id
                        scope_node = definition
                    else:
                        handling = None
                elif handling == _SCOPE and node.id == claimed:
                    handling = None
                if handling in (_SCOPE, _DECORATED):
                    parent = units[current]
                    name = _scope_name(scope_node, language)
                    qualname = name if parent.kind == "module" else f"{parent.qualname}.{name}"
                    kind_of_unit = "function" if scope_node.type in grammar.functions else "class"
                    units.append(Unit(qualname, node.start_point[0] + 1, node.end_point[0] + 1, kind_of_unit))
                    current = len(units) - 1
                    scopes.append((depth, current))
                    scope_depth = depth
                handling = None
        if handling is None:
            if goto_first_child():
                depth += 1
                continue
            start, end = node.start_byte, node.end_byte
            if end > start:
                add_kind(kind)
                add_start(start)
                add_end(end)
                add_unit(current)
        while not goto_next_sibling():
            if not goto_parent():
                break
            depth -= 1
        else:
            continue
        break
    abstract = _abstraction(grammar)
    lookup = {kind: token_id(abstract.get(kind, kind)) for kind in set(kinds)}
    starts_array = np.asarray(starts, dtype=np.int64)
    newlines = np.flatnonzero(np.frombuffer(source, dtype=np.uint8) == 10)
    return TokenizedFile(
        language=language,
        source=source,
        ids=np.fromiter(map(lookup.__getitem__, kinds), dtype=np.uint64, count=len(kinds)),
        lines=(np.searchsorted(newlines, starts_array, side="right") + 1).astype(np.uint32),
        starts=starts_array,
        ends=np.asarray(ends, dtype=np.int64),
        unit_of=np.asarray(unit_of, dtype=np.int32),
        units=units,
    )


@lru_cache(maxsize=None)
def _abstraction(grammar: _Grammar) -> dict[str, str]:
    """Node type -> placeholder for identifiers, numbers and strings; other leaves stand for themselves."""
    table = {kind: ID for kind in grammar.identifiers}
    table.update({kind: NUM for kind in grammar.numbers})
    table.update({kind: STR for kind in grammar.strings})
    return table


def tokenize_file(path: str | Path, language: str | None = None) -> TokenizedFile:
    """Read and tokenise one source file; the language follows the file suffix unless given."""
    path = Path(path)
    language = language or language_of(path)
    if language is None:
        raise ProvenanceError(path, "not a Python, C++ or CUDA source file")
    source = read_regular(path, ProvenanceError)
    return tokenize_source(source, language)
