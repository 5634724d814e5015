"""Judge findings against a policy and (optionally) a declaration: a status per rule and an overall verdict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pathlib import Path

from modelprov.choices import FAIL_ON_CHOICES
from modelprov.errors import NothingToScanError
from modelprov.findings import Finding, ScanReport, Subject

from .card import card_from_dict
from .claims import card_declaration
from .declaration import Declaration, load_declaration
from .policy import Policy, load_policy
from .report_input import load_report_findings, load_report_details
from .rules import Context, Issue
from .source import read_document
from .status import Status, cap, worst


@dataclass
class RuleResult:
    """One rule's verdict and the issues (with finding ids) behind it."""

    id: str
    description: str
    severity: Status
    status: Status
    issues: list[Issue] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        """Reasons, the ones that set the status first."""
        if not self.issues:
            return ["nothing to judge: no finding or declared item concerns this rule"]
        return [i.reason for i in sorted(self.issues, key=lambda i: -i.status.rank)]

    @property
    def findings(self) -> list[str]:
        """Ids of the findings that caused the status (all findings looked at, when the rule passed)."""
        causes = [i for i in self.issues if i.status is self.status] if self.status is not Status.PASS else self.issues
        return list(dict.fromkeys(i.finding for i in causes if i.finding is not None))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "severity": self.severity.value,
            "status": self.status.value,
            "outcome": self.status.value,  # the report schema's name for the status
            "reason": self.reasons[0],  # the reason that set the status, for one-line summaries
            "reasons": self.reasons,
            "findings": self.findings,
            "issues": [i.to_dict() for i in self.issues],
        }


@dataclass
class PolicyResult:
    """The verdict of one policy on one model: per-rule results, overall status and the exit status."""

    policy: Policy
    rules: list[RuleResult]
    declaration: str | None = None
    home_country: str | None = None

    @property
    def overall(self) -> Status:
        return worst([r.status for r in self.rules])

    def exit_code(self, fail_on: str = "fail") -> int:
        """0 when the overall verdict is below `fail_on` (fail|review|warn), else 1 (policy failure)."""
        if fail_on not in FAIL_ON_CHOICES:
            raise ValueError(f"fail_on must be one of {', '.join(FAIL_ON_CHOICES)}, got {fail_on!r}")
        return 1 if self.overall.rank >= Status.parse(fail_on).rank else 0

    def rule(self, rule_id: str) -> RuleResult:
        """The result of one rule; KeyError when the policy does not have it."""
        for result in self.rules:
            if result.id == rule_id:
                return result
        raise KeyError(rule_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.policy.name,
            "source": self.policy.source,
            "declaration": self.declaration,
            "home_country": self.home_country,
            "thresholds": self.policy.thresholds.to_dict(),
            "overall": self.overall.value,
            "rules": [r.to_dict() for r in self.rules],
        }


def evaluate(
    findings: Iterable[Finding],
    policy: Policy,
    declaration: Declaration | None = None,
    *,
    subject: Subject | dict[str, Any] | None = None,
    home_country: str | None = None,
) -> PolicyResult:
    """Run every rule of `policy` over `findings`; `home_country` overrides the policy's."""
    findings = list(findings)
    policy = policy.with_home_country(home_country)
    subject_parameters = _subject_parameters(subject)
    results = []
    for rule in policy.rules:
        context = Context(
            findings=findings,
            declaration=declaration,
            thresholds=rule.thresholds,
            parameters=rule.parameters,
            home_country=policy.home_country,
            home_organisations=policy.home_organisations,
            component_patterns=policy.component_patterns,
            subject_parameters=subject_parameters,
        )
        issues = [Issue(cap(i.status, rule.severity), i.reason, i.finding) for i in rule.definition.check(context)]
        results.append(
            RuleResult(rule.id, rule.description, rule.severity, worst([i.status for i in issues]), issues)
        )
    return PolicyResult(
        policy=policy,
        rules=results,
        declaration=declaration.path if declaration is not None else None,
        home_country=policy.home_country,
    )


def _subject_parameters(subject: Subject | dict[str, Any] | None) -> int | None:
    if subject is None:
        return None
    count = subject.get("parameter_count") if isinstance(subject, dict) else subject.parameter_count
    return count if isinstance(count, int) and count > 0 else None


def apply_policy(
    report: ScanReport,
    policy: Policy | str | Path,
    declaration: Declaration | str | Path | None = None,
    *,
    home_country: str | None = None,
) -> PolicyResult:
    """Judge a scan report's findings (policy and declaration given as objects, names or paths) and store
    the verdicts in `report.policy`, so the JSON and HTML reports carry them."""
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    declaration = _declaration(declaration, report.details)
    result = evaluate(report.findings, policy, declaration, subject=report.subject, home_country=home_country)
    report.policy = result.to_dict()
    return result


def check_report(
    report: str | Path,
    policy: Policy | str | Path,
    declaration: Declaration | str | Path | None = None,
    *,
    home_country: str | None = None,
) -> PolicyResult:
    """Judge the findings of a saved scan report (`report.json`); a report of nothing scanned is refused."""
    findings, subject = load_report_findings(report)
    if not findings and subject.get("tensor_count") == 0:
        raise NothingToScanError(report, "the report's subject holds no tensors: nothing was scanned")
    if not isinstance(policy, Policy):
        policy = load_policy(policy)
    declaration = _declaration(declaration, load_report_details(report) if declaration is None else {})
    return evaluate(findings, policy, declaration, subject=subject, home_country=home_country)


def _declaration(declaration: Declaration | str | Path | None, details: dict[str, Any]) -> Declaration | None:
    """The explicit declaration when given (it overrides the card), else the model card's claims, if any."""
    if declaration is not None:
        return declaration if isinstance(declaration, Declaration) else load_declaration(declaration)
    claims = details.get("claims") if isinstance(details, dict) else None
    card = card_from_dict(claims.get("card")) if isinstance(claims, dict) else None
    return card_declaration(card) if card is not None else None


def validate_file(path: str | Path, kind: str = "auto") -> Policy | Declaration:
    """Load a policy or declaration file to check it; `kind` "auto": a TOML file with a [policy] or [rules]
    table is a policy, anything else a declaration. Errors name the line and key."""
    if kind == "auto":
        file = Path(path)
        is_toml = file.suffix.lower() not in (".yaml", ".yml")
        kind = "policy" if is_toml and {"policy", "rules"} & set(read_document(file).data) else "declaration"
    return load_policy(path) if kind == "policy" else load_declaration(path)
