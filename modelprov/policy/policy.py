"""Policies: which rules apply, at what severity, with which thresholds; loaded from TOML files or presets."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from modelprov.errors import PolicyError

from .evidence import DEFAULT_COMPONENT_PATTERNS, THRESHOLD_NAMES, Thresholds
from .rules import RULES, RuleDefinition
from .source import SourceDocument, check_schema, read_document
from .status import Status

_PRESET_PACKAGE = __package__ + ".presets"
_SEVERITY_SCHEMA = {"enum": ["warn", "review", "fail"]}
_THRESHOLDS_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in THRESHOLD_NAMES},
    "additionalProperties": False,
}


@dataclass(frozen=True)
class RuleConfig:
    """One rule as a policy configures it: the most it can say (`severity`), parameters and thresholds."""

    id: str
    description: str
    severity: Status
    parameters: dict[str, Any]
    thresholds: Thresholds

    @property
    def definition(self) -> RuleDefinition:
        return RULES[self.id]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "severity": self.severity.value,
            "parameters": {k: v.value if isinstance(v, Status) else v for k, v in self.parameters.items()},
            "thresholds": self.thresholds.to_dict(),
        }


@dataclass(frozen=True)
class Policy:
    """A named set of configured rules; `home_country` decides what counts as foreign."""

    name: str
    description: str
    rules: tuple[RuleConfig, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    home_country: str | None = None
    home_organisations: tuple[str, ...] = ()
    component_patterns: tuple[str, ...] = DEFAULT_COMPONENT_PATTERNS
    source: str = ""  # preset name or file path

    def with_home_country(self, country: str | None) -> Policy:
        """A copy with a different home country (the CLI's `--home-country`); PolicyError unless alpha-2."""
        if country is None:
            return self
        if not re.fullmatch(r"[A-Za-z]{2}", country.strip()):
            raise PolicyError(None, f"home country must be an ISO 3166-1 alpha-2 code such as KR, got {country!r}")
        return replace(self, home_country=country.strip().upper())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "home_country": self.home_country,
            "home_organisations": list(self.home_organisations),
            "component_patterns": list(self.component_patterns),
            "thresholds": self.thresholds.to_dict(),
            "rules": [r.to_dict() for r in self.rules],
        }


def policy_schema() -> dict[str, Any]:
    """JSON Schema of a policy file, built from the rule catalogue (so parameters are checked per rule)."""
    rule_schemas = {
        rule_id: {
            "type": "object",
            "properties": {
                "description": {"type": "string"},
                "severity": _SEVERITY_SCHEMA,
                "enabled": {"type": "boolean"},
                "thresholds": _THRESHOLDS_SCHEMA,
                "parameters": {
                    "type": "object",
                    "properties": {name: p.schema for name, p in rule.parameters.items()},
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        }
        for rule_id, rule in RULES.items()
    }
    return {
        "type": "object",
        "properties": {
            "policy": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                    "home_country": {"type": "string", "pattern": "^([A-Za-z]{2})?$"},
                    "home_organisations": {"type": "array", "items": {"type": "string"}},
                    "component_patterns": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["name"],
                "additionalProperties": False,
            },
            "thresholds": _THRESHOLDS_SCHEMA,
            "rules": {"type": "object", "properties": rule_schemas, "additionalProperties": False, "minProperties": 1},
        },
        "required": ["policy", "rules"],
        "additionalProperties": False,
    }


def list_presets() -> list[str]:
    """Names of the built-in policies."""
    folder = resources.files(_PRESET_PACKAGE)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    """The file of a built-in policy."""
    return Path(str(resources.files(_PRESET_PACKAGE).joinpath(f"{name}.toml")))


def load_policy(name_or_path: str | Path) -> Policy:
    """A preset by name (`sovereign-foundation-model`) or a policy TOML file; PolicyError names file and line."""
    text = str(name_or_path)
    if text in list_presets():
        policy = policy_from_document(read_document(preset_path(text)))
        return replace(policy, source=text)
    path = Path(name_or_path)
    if not path.exists() and path.suffix.lower() != ".toml":
        raise PolicyError(text, f"no such policy file or preset (presets: {', '.join(list_presets())})")
    return policy_from_document(read_document(path))


def policy_from_document(document: SourceDocument) -> Policy:
    """Validate a parsed policy file and build the `Policy`."""
    rules_table = document.data.get("rules")
    if isinstance(rules_table, dict):
        for rule_id in rules_table:
            if rule_id not in RULES:
                raise document.error(("rules", rule_id), f"unknown rule id {rule_id!r} (known: {', '.join(RULES)})")
    check_schema(document, policy_schema())
    header = document.data["policy"]
    for i, pattern in enumerate(header.get("component_patterns", [])):
        try:
            re.compile(pattern)
        except re.error as err:
            raise document.error(("policy", "component_patterns", i), f"invalid regular expression: {err}") from None
    thresholds = _thresholds(document, ("thresholds",), Thresholds(), document.data.get("thresholds", {}))
    rules = []
    for rule_id, table in document.data["rules"].items():
        if not table.get("enabled", True):
            continue
        definition = RULES[rule_id]
        rules.append(
            RuleConfig(
                id=rule_id,
                description=table.get("description", definition.description),
                severity=Status.parse(table.get("severity", definition.default_severity.value)),
                parameters=definition.resolve_parameters(table.get("parameters", {})),
                thresholds=_thresholds(document, ("rules", rule_id, "thresholds"), thresholds, table.get("thresholds", {})),
            )
        )
    return Policy(
        name=header["name"],
        description=header.get("description", ""),
        rules=tuple(rules),
        thresholds=thresholds,
        home_country=(header.get("home_country") or "").upper() or None,
        home_organisations=tuple(header.get("home_organisations", ())),
        component_patterns=tuple(header.get("component_patterns", DEFAULT_COMPONENT_PATTERNS)),
        source=str(document.path),
    )


def _thresholds(document: SourceDocument, key_path: tuple[str, ...], base: Thresholds, given: dict[str, float]) -> Thresholds:
    thresholds = replace(base, **{k: float(v) for k, v in given.items()})
    for name, problem in thresholds.check():
        raise document.error((*key_path, name), problem)
    return thresholds
