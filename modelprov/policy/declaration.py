"""A bidder's self-audit: which base models, components, code and tokenizer it says it reused.

Loaded from TOML or YAML (same keys). The audit matches each finding against the declared items;
an unmatched reuse is undeclared.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelprov.findings import Finding, Reference

from .evidence import path_within, subject_parts
from .source import SourceDocument, check_schema, format_key_path, read_document

_TEXT = {"type": "string"}
_TEXT_OR_LIST = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def _table(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


DECLARATION_SCHEMA: dict[str, Any] = _table(
    {
        "bidder": _table({"name": _TEXT, "organisation": _TEXT, "country": _TEXT}),
        "model": _table({"name": _TEXT, "backbone": _TEXT_OR_LIST, "pretrained_from_scratch": {"type": "boolean"}}),
        "base_models": {
            "type": "array",
            "items": _table(
                {"reference": _TEXT, "license": _TEXT, "component": _TEXT, "relation": _TEXT, "notes": _TEXT},
                required=("reference",),
            ),
        },
        "components": {
            "type": "array",
            "items": _table(
                {
                    "component": _TEXT, "reference": _TEXT, "license": _TEXT,
                    "reinitialised": {"type": "boolean"}, "trained": {"type": "boolean"}, "notes": _TEXT,
                },
                required=("component", "reference", "reinitialised", "trained"),
            ),
        },
        "code": {
            "type": "array",
            "items": _table(
                {"source": _TEXT, "license": _TEXT, "paths": {"type": "array", "items": _TEXT}, "notes": _TEXT},
                required=("source",),
            ),
        },
        "tokenizer": _table({"origin": _TEXT, "license": _TEXT, "modification": _TEXT, "notes": _TEXT}, ("origin",)),
        "architecture": _table({"based_on": _TEXT_OR_LIST, "license": _TEXT, "notes": _TEXT}),
        "training": _table(
            {
                "evidence": {
                    "type": "array",
                    "items": {"anyOf": [_TEXT, _table({"description": _TEXT, "uri": _TEXT, "sha256": _TEXT}, ("description",))]},
                },
                "tokens": {"type": "number", "minimum": 0},
                "compute": _TEXT,
                "notes": _TEXT,
            }
        ),
    }
)

# Tokenizer origins that mean "we built it ourselves".
OWN_ORIGINS = frozenset({"own", "self", "none", "original", "from-scratch"})


@dataclass(frozen=True)
class DeclaredReuse:
    """One item the bidder declared reusing; `where` is its key path in the file (for reasons)."""

    section: str  # base_models | components | code | tokenizer | architecture
    reference: str
    where: str
    license: str | None = None
    component: str | None = None
    paths: tuple[str, ...] = ()
    reinitialised: bool | None = None
    trained: bool | None = None
    line: int | None = None

    def covers(self, finding: Finding) -> bool:
        """True when this item declares the reuse `finding` reports."""
        if self.section not in _SECTIONS_FOR_KIND.get(finding.kind, ()):
            return False
        # tokenizers are shared across a family (Qwen1.5–Qwen3 use the same ranks): a family-level claim covers them
        if not names_reference(self.reference, finding.reference, family_prefix=finding.kind == "tokenizer"):
            return False
        if self.component is not None and not self.covers_parts(subject_parts(finding)):
            return False
        if self.paths:
            return any(path_matches(finding.subject.split("::", 1)[0], pattern) for pattern in self.paths)
        return True

    def covers_parts(self, parts: list[str]) -> bool:
        """True when every component path lies within this item's declared component."""
        return self.component is not None and all(path_within(p, self.component) for p in parts)

    def label(self) -> str:
        line = f" (line {self.line})" if self.line is not None else ""
        return f"{self.where}{line}"


_SECTIONS_FOR_KIND = {
    "weights": ("base_models", "components"),
    "code": ("code",),
    "tokenizer": ("tokenizer",),
    "architecture": ("architecture",),
}


def path_matches(path: str, pattern: str) -> bool:
    """Glob `pattern` matches the file path or any trailing part of it (`modeling_*.py` matches `src/modeling_x.py`)."""
    parts = PurePosixPath(path.replace("\\", "/")).parts
    return any(fnmatch.fnmatchcase("/".join(parts[i:]), pattern) for i in range(len(parts)))


def names_reference(declared: str, reference: Reference, *, family_prefix: bool = False) -> bool:
    """A declared name matches a reference's name, family, repo id, or repo id without its owner; with
    `family_prefix`, also any name that starts with the family (`qwen2.5` for family `qwen`)."""
    wanted = declared.strip().casefold()
    candidates = {reference.name, reference.family, reference.repo_id}
    if reference.repo_id and "/" in reference.repo_id:
        candidates.add(reference.repo_id.rsplit("/", 1)[1])
    if wanted in {c.casefold() for c in candidates if c}:
        return True
    family = (reference.family or "").casefold()
    return family_prefix and bool(family) and wanted.rsplit("/", 1)[-1].startswith(family)


@dataclass
class Declaration:
    """What the bidder declares; build with `load_declaration` or directly in code."""

    path: str | None = None
    origin: str = "file"  # "file" (explicit, overrides the card) or "model card" (implicit, from the checkpoint)
    bidder: dict[str, str] = field(default_factory=dict)
    model_name: str | None = None
    backbone: tuple[str, ...] = ()
    pretrained_from_scratch: bool | None = None
    items: tuple[DeclaredReuse, ...] = ()
    training_evidence: tuple[Any, ...] = ()
    tokenizer_origin: str | None = None

    @property
    def organisation(self) -> str | None:
        return self.bidder.get("organisation") or self.bidder.get("name")

    def match(self, finding: Finding) -> DeclaredReuse | None:
        """The first declared item covering `finding`, or None when the reuse is undeclared."""
        return next((item for item in self.items if item.covers(finding)), None)

    def covers_component(self, parts: list[str]) -> bool:
        """True when a declared reused component covers all of `parts`."""
        return any(item.covers_parts(parts) for item in self.components())

    def components(self) -> tuple[DeclaredReuse, ...]:
        return tuple(item for item in self.items if item.section == "components")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["items"] = [asdict(item) for item in self.items]
        return d


def load_declaration(path: str | Path) -> Declaration:
    """Read and validate a declaration (.toml, .yaml or .yml); PolicyError names file, line and key."""
    document = read_document(path)
    check_schema(document, DECLARATION_SCHEMA)
    return declaration_from_document(document)


def declaration_from_document(document: SourceDocument) -> Declaration:
    """Build a `Declaration` from an already validated document."""
    data = document.data
    items: list[DeclaredReuse] = []

    def add(section: str, key_path: tuple[str | int, ...], reference: str, entry: dict[str, Any], **extra: Any) -> None:
        items.append(
            DeclaredReuse(
                section=section, reference=reference, where=format_key_path(key_path),
                license=entry.get("license"), line=document.line_of(key_path), **extra,
            )
        )

    for i, entry in enumerate(data.get("base_models", [])):
        add("base_models", ("base_models", i), entry["reference"], entry, component=entry.get("component"))
    for i, entry in enumerate(data.get("components", [])):
        add(
            "components", ("components", i), entry["reference"], entry, component=entry["component"],
            reinitialised=entry["reinitialised"], trained=entry["trained"],
        )
    for i, entry in enumerate(data.get("code", [])):
        add("code", ("code", i), entry["source"], entry, paths=tuple(entry.get("paths", ())))
    tokenizer = data.get("tokenizer", {})
    origin = tokenizer.get("origin")
    if origin and origin.strip().casefold() not in OWN_ORIGINS:
        add("tokenizer", ("tokenizer", "origin"), origin, tokenizer)
    architecture = data.get("architecture", {})
    for name in _as_tuple(architecture.get("based_on")):
        add("architecture", ("architecture", "based_on"), name, architecture)
    model = data.get("model", {})
    return Declaration(
        path=str(document.path),
        bidder=dict(data.get("bidder", {})),
        model_name=model.get("name"),
        backbone=_as_tuple(model.get("backbone")),
        pretrained_from_scratch=model.get("pretrained_from_scratch"),
        items=tuple(items),
        training_evidence=tuple(data.get("training", {}).get("evidence", ())),
        tokenizer_origin=origin,
    )


def _as_tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
