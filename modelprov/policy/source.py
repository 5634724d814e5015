"""Read a TOML or YAML file and remember where each key sits, so schema errors can name the line.

`tomllib` keeps no positions, so TOML lines are found by a light scan of table headers and `key =`
lines; YAML positions come from the composed node tree. Both map a key path such as
`("rules", "foreign-base-model", "severity")` or `("components", 0, "reference")` to a 1-based line.
"""

from __future__ import annotations

import json
import re
import reprlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from modelprov._inputs import MAX_JSON_DEPTH, json_depth, read_text
from modelprov.errors import PolicyError

KeyPath = tuple[str | int, ...]

_TOML_LINE_COL = re.compile(r"\(at line (\d+), column (\d+)\)")
_BARE_OR_QUOTED_KEY = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*')


@dataclass
class SourceDocument:
    """A parsed configuration file: its data and the line of every key path that could be located."""

    path: Path
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, key_path: KeyPath) -> int | None:
        """Line of `key_path`, or of its nearest located ancestor (an inline table, a list item)."""
        for end in range(len(key_path), 0, -1):
            line = self.lines.get(tuple(key_path[:end]))
            if line is not None:
                return line
        return None

    def error(self, key_path: KeyPath, problem: str) -> PolicyError:
        """A `PolicyError` naming the file, the line (when known) and the dotted key path."""
        line = self.line_of(key_path)
        where = f"line {line}: " if line is not None else ""
        key = format_key_path(key_path)
        return PolicyError(self.path, f"{where}{key + ': ' if key else ''}{problem}")


def format_key_path(key_path: KeyPath) -> str:
    """`("components", 0, "reference")` → `components[0].reference`."""
    out = ""
    for part in key_path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def read_document(path: str | Path) -> SourceDocument:
    """Parse a `.toml`, `.yaml`/`.yml` or `.json` file into a `SourceDocument`; syntax errors name the line."""
    path = Path(path)
    text = read_text(path, PolicyError)
    suffix = path.suffix.lower()
    reader = _read_yaml if suffix in (".yaml", ".yml") else _read_json if suffix == ".json" else _read_toml
    try:
        return reader(path, text)
    except RecursionError:
        raise PolicyError(path, "nested too deeply to be a policy, declaration or report") from None


def _read_toml(path: Path, text: str) -> SourceDocument:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        found = _TOML_LINE_COL.search(message)
        if found:
            problem = _TOML_LINE_COL.sub("", message).strip()
            raise PolicyError(path, f"line {found[1]}, column {found[2]}: invalid TOML: {problem}") from None
        raise PolicyError(path, f"invalid TOML: {message}") from None
    return SourceDocument(path, data, _toml_key_lines(text))


def _split_dotted_key(text: str) -> list[str] | None:
    """`a."b.c".d` → `["a", "b.c", "d"]`; None when the text is not a plain dotted key."""
    keys: list[str] = []
    rest = text
    while True:
        match = _BARE_OR_QUOTED_KEY.match(rest)
        if not match or match.end() == 0:
            return None
        keys.append(next(g for g in match.groups() if g is not None))
        rest = rest[match.end():]
        if not rest:
            return keys
        if rest[0] != ".":
            return None
        rest = rest[1:]


def _toml_key_lines(text: str) -> dict[KeyPath, int]:
    """Lines of table headers and `key = value` lines, keyed by full key path (arrays of tables indexed)."""
    lines: dict[KeyPath, int] = {}
    array_counts: dict[KeyPath, int] = {}
    table: KeyPath = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            keys = _split_dotted_key(line[2:line.find("]]")]) if "]]" in line else None
            if keys is not None:
                base = _resolve_arrays(tuple(keys), array_counts, array_header=True)
                index = array_counts.get(base, -1) + 1
                array_counts[base] = index
                table = (*base, index)
                lines.setdefault(base, number)
                lines[table] = number
            continue
        if line.startswith("["):
            keys = _split_dotted_key(line[1:line.find("]")]) if "]" in line else None
            if keys is not None:
                table = _resolve_arrays(tuple(keys), array_counts, array_header=False)
                lines[table] = number
            continue
        if "=" in line:
            keys = _split_dotted_key(line.split("=", 1)[0])
            if keys is not None:
                lines.setdefault((*table, *keys), number)
    return lines


def _resolve_arrays(keys: tuple[str, ...], array_counts: dict[KeyPath, int], *, array_header: bool) -> KeyPath:
    """Insert the current element index after each prefix naming an array of tables (`[[a]]` then `[a.b]`)."""
    out: list[str | int] = []
    for position, key in enumerate(keys):
        out.append(key)
        last = position == len(keys) - 1
        if tuple(out) in array_counts and not (array_header and last):
            out.append(array_counts[tuple(out)])
    return tuple(out)


def _read_yaml(path: Path, text: str) -> SourceDocument:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise PolicyError(path, f"{where}invalid YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise PolicyError(path, f"invalid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(path, "line 1: the document must be a mapping of keys to values")
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _yaml_node_lines(path, node, (), lines, set())
    return SourceDocument(path, data, lines)


_YAML_STR = "tag:yaml.org,2002:str"
_MAX_YAML_KEYS = 100_000


def _yaml_node_lines(path: Path, node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int], open_nodes: set[int]) -> None:
    """Record the line of every key; reject non-string keys and aliases that contain themselves."""
    if id(node) in open_nodes:
        raise PolicyError(path, f"line {node.start_mark.line + 1}: {format_key_path(prefix)}: an alias refers to itself")
    if len(lines) > _MAX_YAML_KEYS:  # aliases can expand a small file exponentially ("billion laughs")
        raise PolicyError(path, f"more than {_MAX_YAML_KEYS:,} keys and items once aliases are expanded")
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _YAML_STR):
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
                raise PolicyError(path, f"line {key_node.start_mark.line + 1}: keys must be strings, got {shown}")
            key_path = (*prefix, key_node.value)
            lines[key_path] = key_node.start_mark.line + 1
            _yaml_node_lines(path, value_node, key_path, lines, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            key_path = (*prefix, index)
            lines[key_path] = item.start_mark.line + 1
            _yaml_node_lines(path, item, key_path, lines, open_nodes)
    open_nodes.discard(id(node))


def _read_json(path: Path, text: str) -> SourceDocument:
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise PolicyError(path, f"JSON nesting deeper than {MAX_JSON_DEPTH} levels ({depth}); refused")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PolicyError(path, f"line {err.lineno}, column {err.colno}: invalid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise PolicyError(path, "line 1: the document must be a JSON object")
    return SourceDocument(path, data)


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 60, 60, 2, 4, 4


def _short(value: Any) -> str:
    """A repr short enough for a one-line error."""
    return _REPR.repr(value)


def check_schema(document: SourceDocument, schema: dict[str, Any]) -> None:
    """Validate `document.data` against a JSON Schema; raise the first problem (by line) as a PolicyError."""
    validator = jsonschema.Draft202012Validator(schema)
    problems: list[tuple[KeyPath, str]] = []
    for error in validator.iter_errors(document.data):
        key_path: KeyPath = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = sorted(error.schema.get("properties", {}))
            for key in sorted(set(error.instance) - set(known)):
                expected = f" (expected one of: {', '.join(known)})" if known else ""
                problems.append(((*key_path, key), f"unknown key {key!r}{expected}"))
            continue
        if error.validator == "required":
            missing = error.message.split(" is a required property")[0]
            problems.append((key_path, f"missing required key {missing}"))
            continue
        if error.validator == "enum":
            allowed = ", ".join(repr(v) for v in error.validator_value)
            problems.append((key_path, f"{_short(error.instance)} is not one of {allowed}"))
            continue
        if error.validator == "type":
            problems.append((key_path, f"{_short(error.instance)} is not of type {error.validator_value!r}"))
            continue
        problems.append((key_path, error.message if len(error.message) <= 200 else error.message[:197] + "..."))
    if problems:
        key_path, problem = min(problems, key=lambda p: (document.line_of(p[0]) or 10**9, format_key_path(p[0])))
        raise document.error(key_path, problem)
