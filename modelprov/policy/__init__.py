"""The policy engine: judge findings against a programme's rules and a bidder's declaration.

    from modelprov.policy import load_policy, load_declaration, evaluate
    result = evaluate(findings, load_policy("sovereign-foundation-model"), load_declaration("decl.toml"))
    result.overall, result.exit_code(fail_on="review"), result.to_dict()
"""

from .card import Claim, ModelCard, card_from_dict, parse_claims_text, read_model_card
from .claims import card_declaration, check_claims, front_matter_text, suggested_front_matter
from .declaration import Declaration, DeclaredReuse, load_declaration
from .evaluate import FAIL_ON_CHOICES, PolicyResult, RuleResult, apply_policy, check_report, evaluate, validate_file
from .evidence import Relation, Thresholds, relation
from .licenses import LicenseAssessment, assess_license
from .policy import Policy, RuleConfig, list_presets, load_policy
from .report_input import finding_from_dict, load_report_findings
from .rules import RULES, Issue
from .status import Status

__all__ = [
    "FAIL_ON_CHOICES",
    "Claim",
    "ModelCard",
    "card_declaration",
    "card_from_dict",
    "check_claims",
    "front_matter_text",
    "parse_claims_text",
    "read_model_card",
    "suggested_front_matter",
    "RULES",
    "Declaration",
    "DeclaredReuse",
    "Issue",
    "LicenseAssessment",
    "Policy",
    "PolicyResult",
    "Relation",
    "RuleConfig",
    "RuleResult",
    "Status",
    "Thresholds",
    "apply_policy",
    "check_report",
    "assess_license",
    "evaluate",
    "validate_file",
    "finding_from_dict",
    "list_presets",
    "load_declaration",
    "load_policy",
    "load_report_findings",
    "relation",
]
