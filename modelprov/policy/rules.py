"""The rule catalogue: each rule id names one check of findings (and the declaration) against a programme's rules.

A rule returns `Issue`s; an issue's status is capped by the rule's configured severity, so a policy can
turn any rule into a warning. FAIL in an issue means "a violation of this rule".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelprov.findings import Finding

from .declaration import Declaration
from .evidence import (
    DEFAULT_COMPONENT_PATTERNS,
    WHOLE_MODEL,
    Relation,
    Thresholds,
    describe_evidence,
    is_component_name,
    parameter_share,
    path_within,
    relation,
    subject_parts,
)
from .licenses import assess_license
from .status import Status


@dataclass(frozen=True)
class Issue:
    """One reason for a rule's status, tied to the finding behind it (None for declaration-level issues)."""

    status: Status
    reason: str
    finding: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, "finding": self.finding}


@dataclass
class Context:
    """Everything a rule may look at: findings, declaration, thresholds and this rule's parameters."""

    findings: list[Finding]
    declaration: Declaration | None
    thresholds: Thresholds
    parameters: dict[str, Any]
    home_country: str | None = None
    home_organisations: tuple[str, ...] = ()
    component_patterns: tuple[str, ...] = DEFAULT_COMPONENT_PATTERNS
    subject_parameters: int | None = None
    _relations: dict[int, Relation] = field(default_factory=dict, repr=False)

    def relation(self, finding: Finding) -> Relation:
        key = id(finding)
        if key not in self._relations:
            self._relations[key] = relation(finding, self.thresholds)
        return self._relations[key]

    def is_backbone(self, finding: Finding) -> bool:
        """Backbone weights: most of the parameters, or declared so, or not named like an add-on encoder."""
        if finding.kind != "weights":
            return False
        parts = subject_parts(finding)
        share = parameter_share(finding, self.subject_parameters)
        if finding.subject == WHOLE_MODEL or (share is not None and share >= self.thresholds.backbone_share):
            return True
        if self.declaration is not None and self.declaration.backbone:
            return any(path_within(p, b) for p in parts for b in self.declaration.backbone)
        if self.declaration is not None and self.declaration.covers_component(parts):
            return False
        return not all(is_component_name(p, self.component_patterns) for p in parts)

    def weights(self, *, backbone: bool) -> list[Finding]:
        return [f for f in self.findings if f.kind == "weights" and self.is_backbone(f) == backbone]

    def reused(self) -> list[Finding]:
        """Findings that show reuse of a reference (copy, near-copy or derived), in input order."""
        return [f for f in self.findings if self.relation(f).is_reuse]

    def is_own(self, org: str | None) -> bool:
        """True when `org` is the bidder's own organisation per the declaration."""
        own = self.declaration.organisation if self.declaration is not None else None
        return bool(org and own and org.strip().casefold() == own.strip().casefold())

    def is_domestic(self, finding: Finding) -> bool | None:
        """Whether the reference comes from the home country (or a home organisation); None if unknown."""
        ref = finding.reference
        if ref.org and ref.org.strip().casefold() in {o.casefold() for o in self.home_organisations}:
            return True
        if self.home_country is None or ref.country is None:
            return None
        return ref.country.strip().upper() == self.home_country.strip().upper()


def _ref(finding: Finding) -> str:
    ref = finding.reference
    origin = ", ".join(x for x in (ref.org, ref.country) if x)
    return f"{ref.name} ({origin})" if origin else ref.name


def _distilled(subject: str, finding: Finding) -> str:
    """The REVIEW reason of an output-aligned finding: no weights were reused, outputs were imitated."""
    return (f"{subject} is output-aligned with {_ref(finding)}: its embedding basis matches but no layer matrix "
            f"does, as distillation from {finding.reference.name} leaves it; no weights reused, so no weight-reuse "
            f"rule fails; whether distillation is allowed is for the programme{_with_evidence(finding)}")


def _with_evidence(finding: Finding) -> str:
    evidence = describe_evidence(finding)
    return f" [{evidence}]" if evidence else ""


# ---------------------------------------------------------------------------------------------- rules


def foreign_base_model(ctx: Context) -> list[Issue]:
    """The backbone must not be derived from a base model of a foreign organisation or country."""
    issues = []
    for f in ctx.weights(backbone=True):
        rel = ctx.relation(f)
        if rel is Relation.INDEPENDENT:
            continue
        domestic = ctx.is_domestic(f)
        if domestic is True:
            issues.append(Issue(Status.PASS, f"backbone {f.subject} relates to {_ref(f)}, a domestic reference", f.id))
        elif domestic is None:
            why = "the home country is not configured" if ctx.home_country is None else "its country is unknown"
            issues.append(Issue(Status.REVIEW, f"backbone {f.subject} is {rel.phrase} {_ref(f)}; cannot tell "
                                               f"whether it is foreign: {why}{_with_evidence(f)}", f.id))
        elif rel is Relation.OUTPUT_ALIGNED:
            issues.append(Issue(Status.REVIEW, _distilled(f"backbone {f.subject}", f), f.id))
        elif rel is Relation.UNCERTAIN:
            issues.append(Issue(Status.REVIEW, f"backbone {f.subject} may derive from foreign {_ref(f)}: evidence "
                                               f"is ambiguous{_with_evidence(f)}", f.id))
        else:
            issues.append(Issue(Status.FAIL, f"backbone {f.subject} is {rel.phrase} {_ref(f)}, a foreign base "
                                             f"model (home country {ctx.home_country}){_with_evidence(f)}", f.id))
    return issues


def backbone_pretrained_by_bidder(ctx: Context) -> list[Issue]:
    """The backbone must be designed and pre-trained by the bidder, not derived from another party's model."""
    issues = []
    for f in ctx.weights(backbone=True):
        rel = ctx.relation(f)
        if rel is Relation.INDEPENDENT:
            continue
        if ctx.is_own(f.reference.org):
            issues.append(Issue(Status.PASS, f"backbone {f.subject} relates to {_ref(f)}, the bidder's own model", f.id))
        elif rel is Relation.OUTPUT_ALIGNED:
            issues.append(Issue(Status.REVIEW, _distilled(f"backbone {f.subject}", f), f.id))
        elif rel is Relation.UNCERTAIN:
            issues.append(Issue(Status.REVIEW, f"backbone {f.subject} may derive from {_ref(f)}: evidence is "
                                               f"ambiguous{_with_evidence(f)}", f.id))
        else:
            issues.append(Issue(Status.FAIL, f"backbone {f.subject} was not pre-trained by the bidder: it is "
                                             f"{rel.phrase} {_ref(f)}{_with_evidence(f)}", f.id))
    if ctx.declaration is not None:
        for item in ctx.declaration.items:
            if item.section == "base_models":
                issues.append(Issue(Status.FAIL, f"the declaration names base model {item.reference} "
                                                 f"({item.label()}); the backbone must be pre-trained by the bidder"))
    return issues


def reused_weights_retrained(ctx: Context) -> list[Issue]:
    """Reused open-source weights (encoders, projectors) must be re-initialised and trained, not copied or frozen."""
    derived_status = ctx.parameters["derived_status"]
    issues = []
    for f in ctx.weights(backbone=False):
        rel = ctx.relation(f)
        if rel is Relation.COPY and f.verdict == "copied":
            issues.append(Issue(Status.FAIL, f"{f.subject} matches {_ref(f)} at copy level: its weights were copied "
                                             f"or frozen, not re-initialised and trained{_with_evidence(f)}", f.id))
        elif rel is Relation.COPY:  # the policy's similarity threshold, not a confirmed copy: say which
            issues.append(Issue(Status.FAIL, f"{f.subject} matches {_ref(f)} at copy level under this policy's "
                                             f"copy_similarity: its weights were reused with at most light training "
                                             f"(the scanner found them {f.verdict}, not a frozen copy), not "
                                             f"re-initialised{_with_evidence(f)}", f.id))
        elif rel is Relation.NEAR_COPY:
            issues.append(Issue(Status.REVIEW, f"{f.subject} is nearly identical to {_ref(f)}: copied and lightly "
                                               f"trained, or frozen with small changes{_with_evidence(f)}", f.id))
        elif rel is Relation.DERIVED:
            issues.append(Issue(derived_status, f"{f.subject} was initialised from {_ref(f)}'s weights and then "
                                                f"trained, not re-initialised{_with_evidence(f)}", f.id))
        elif rel is Relation.OUTPUT_ALIGNED:
            issues.append(Issue(Status.REVIEW, _distilled(f.subject, f), f.id))
        elif rel is Relation.UNCERTAIN:
            issues.append(Issue(Status.REVIEW, f"{f.subject} may derive from {_ref(f)}: evidence is "
                                               f"ambiguous{_with_evidence(f)}", f.id))
    return issues


def declared_training_verified(ctx: Context) -> list[Issue]:
    """A component declared re-initialised and trained must not match a reference (above all not at copy level)."""
    if ctx.declaration is None:
        return []
    issues = []
    for f in ctx.findings:
        if f.kind != "weights":
            continue
        rel = ctx.relation(f)
        parts = subject_parts(f)
        claims = [i for i in ctx.declaration.components() if i.component and i.covers_parts(parts)]
        for item in claims:
            if item.reinitialised and rel.is_reuse:
                level = "at copy level" if rel is Relation.COPY else f"({rel.value})"
                issues.append(Issue(Status.FAIL, f"{f.subject} is declared re-initialised and trained "
                                                 f"({item.label()}) but matches {_ref(f)} {level}; re-initialised "
                                                 f"weights would be independent{_with_evidence(f)}", f.id))
            elif item.reinitialised and rel is Relation.UNCERTAIN:
                issues.append(Issue(Status.REVIEW, f"{f.subject} is declared re-initialised ({item.label()}) but "
                                                   f"may derive from {_ref(f)}{_with_evidence(f)}", f.id))
            elif item.trained and rel is Relation.COPY:
                issues.append(Issue(Status.REVIEW, f"{f.subject} is declared trained ({item.label()}) but is still "
                                                   f"at copy level with {_ref(f)}: frozen?{_with_evidence(f)}", f.id))
    return issues


def undeclared_reuse(ctx: Context) -> list[Issue]:
    """Everything the scan found reused must appear in the declaration."""
    kinds = set(ctx.parameters["kinds"])
    issues = []
    for f in ctx.findings:
        rel = ctx.relation(f)
        if f.kind not in kinds or rel is Relation.INDEPENDENT:
            continue
        item = ctx.declaration.match(f) if ctx.declaration is not None else None
        if item is None:
            violation = ctx.parameters["without_declaration"] if ctx.declaration is None else Status.FAIL
            why = "no declaration supplied" if ctx.declaration is None else "not in the declaration"
            issues.append(Issue(violation if rel.is_reuse else Status.REVIEW,
                                f"undeclared {f.kind} reuse ({why}): {f.subject} is {rel.phrase} "
                                f"{_ref(f)}{_with_evidence(f)}", f.id))
            continue
        issues.append(Issue(Status.PASS, f"{f.subject}: reuse of {f.reference.name} declared in {item.label()}", f.id))
        declared, actual = item.license, f.reference.license
        if declared and actual and declared.strip().casefold() != actual.strip().casefold():
            issues.append(Issue(Status.REVIEW, f"{f.subject}: declared license {declared} ({item.label()}) differs "
                                               f"from {f.reference.name}'s license {actual}", f.id))
    return issues


def non_commercial_license(ctx: Context) -> list[Issue]:
    """Reused references must allow commercial use (non-commercial and research-only licences fail)."""
    extra = tuple(ctx.parameters["non_commercial"])
    issues = []
    for f in ctx.reused():
        assessment = assess_license(f.reference.license, extra)
        if assessment.commercial is False:
            issues.append(Issue(Status.FAIL, f"{f.subject} reuses {_ref(f)}, licensed {f.reference.license}, which "
                                             f"does not allow commercial use", f.id))
        elif assessment.commercial is None:
            why = assessment.problem or f"unclassified license id(s) {', '.join(assessment.unknown_ids)}"
            issues.append(Issue(ctx.parameters["unknown_status"], f"{f.subject} reuses {_ref(f)}: commercial use "
                                                                  f"cannot be judged ({why})", f.id))
        else:
            issues.append(Issue(Status.PASS, f"{f.subject}: {f.reference.license} allows commercial use", f.id))
    return issues


def license_obligations(ctx: Context) -> list[Issue]:
    """Obligations of reused references' licences must be met; undecidable ones need a human (or a declaration)."""
    issues = []
    for f in ctx.reused():
        declared = ctx.declaration is not None and ctx.declaration.match(f) is not None
        for o in f.license_obligations:
            detail = f" ({o.detail})" if o.detail else ""
            if o.met is False:
                issues.append(Issue(Status.FAIL, f"{f.subject}: {o.license} obligation not met: {o.obligation}{detail}", f.id))
            elif o.met is None:
                status = ctx.parameters["declared_undecided_status" if declared else "undecided_status"]
                note = "declared reuse; check by hand" if declared else "cannot be decided from the files"
                issues.append(Issue(status, f"{f.subject}: {o.license} obligation {note}: {o.obligation}{detail}", f.id))
    return issues


def attribution_duties(ctx: Context) -> list[Issue]:
    """Licences with attribution or naming duties ("Built with Llama", user thresholds) are flagged for the report."""
    issues, seen = [], set()
    for f in ctx.reused():
        for duty in assess_license(f.reference.license).duties:
            key = (f.reference.name, duty)
            if key not in seen:
                seen.add(key)
                issues.append(Issue(Status.WARN, f"{f.subject} reuses {f.reference.name}: {duty}", f.id))
    return issues


def training_evidence(ctx: Context) -> list[Issue]:
    """The declaration must point to evidence of the bidder's own training (logs, checkpoints, data manifests)."""
    if ctx.declaration is None:
        return [Issue(Status.FAIL, "no declaration supplied: no training evidence to check")]
    count = len(ctx.declaration.training_evidence)
    if count == 0:
        return [Issue(Status.FAIL, f"the declaration ({ctx.declaration.path}) lists no training evidence")]
    return [Issue(Status.PASS, f"the declaration lists {count} item(s) of training evidence")]


# ---------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class Parameter:
    """A rule parameter: JSON-schema type, default, and what it does."""

    schema: dict[str, Any]
    default: Any
    doc: str


_STATUS_SCHEMA = {"enum": ["pass", "warn", "review", "fail"]}
_KIND_LIST = {"type": "array", "items": {"enum": ["weights", "tokenizer", "code", "architecture"]}}


@dataclass(frozen=True)
class RuleDefinition:
    """A rule id, its default description and severity, its check and its parameters."""

    id: str
    check: Callable[[Context], list[Issue]]
    default_severity: Status
    parameters: dict[str, Parameter] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return (self.check.__doc__ or "").strip()

    def resolve_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `given`; status words become `Status`es."""
        values = {name: given.get(name, p.default) for name, p in self.parameters.items()}
        return {
            name: Status.parse(v) if self.parameters[name].schema is _STATUS_SCHEMA else v
            for name, v in values.items()
        }


RULES: dict[str, RuleDefinition] = {
    rule.id: rule
    for rule in (
        RuleDefinition("foreign-base-model", foreign_base_model, Status.FAIL),
        RuleDefinition("backbone-pretrained-by-bidder", backbone_pretrained_by_bidder, Status.FAIL),
        RuleDefinition(
            "reused-weights-retrained", reused_weights_retrained, Status.FAIL,
            {"derived_status": Parameter(_STATUS_SCHEMA, "review",
                                         "status for weights initialised from a reference and trained further")},
        ),
        RuleDefinition("declared-training-verified", declared_training_verified, Status.FAIL),
        RuleDefinition(
            "undeclared-reuse", undeclared_reuse, Status.FAIL,
            {
                "kinds": Parameter(_KIND_LIST, ["weights", "tokenizer", "code", "architecture"],
                                   "finding kinds that must be declared"),
                "without_declaration": Parameter(_STATUS_SCHEMA, "fail",
                                                 "status for reuse when no declaration is supplied"),
            },
        ),
        RuleDefinition(
            "non-commercial-license", non_commercial_license, Status.FAIL,
            {
                "non_commercial": Parameter({"type": "array", "items": {"type": "string"}}, [],
                                            "extra license ids (patterns with *) to treat as non-commercial"),
                "unknown_status": Parameter(_STATUS_SCHEMA, "review", "status when a license is missing or unknown"),
            },
        ),
        RuleDefinition(
            "license-obligations", license_obligations, Status.FAIL,
            {
                "undecided_status": Parameter(_STATUS_SCHEMA, "review",
                                              "status for an obligation the files cannot decide"),
                "declared_undecided_status": Parameter(_STATUS_SCHEMA, "warn",
                                                       "the same, when the reuse is declared"),
            },
        ),
        RuleDefinition("attribution-duties", attribution_duties, Status.WARN),
        RuleDefinition("training-evidence", training_evidence, Status.REVIEW),
    )
}
