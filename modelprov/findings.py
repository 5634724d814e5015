"""The shared vocabulary of results: references, findings and the scan report every feature fills in.

Weights, tokenizer and code scanners each produce `Finding`s; the policy engine judges them; the report
writers render a `ScanReport`. Keep this module free of any feature's logic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FindingKind = Literal["weights", "tokenizer", "code", "architecture", "claim"]
FINDING_KINDS = ("weights", "tokenizer", "code", "architecture", "claim")

# Verdict words, per kind. Weights and code: how much of the reference is in the subject.
WEIGHT_VERDICTS = ("copied", "derived", "output-aligned", "independent")
TOKENIZER_VERDICTS = ("identical", "extended", "pruned", "modified", "unrelated")
CODE_VERDICTS = ("copied", "derived", "independent")
# Claims: a model card's lineage statement the weights contradict.
CLAIM_VERDICTS = ("contradicted",)


@dataclass(frozen=True)
class Reference:
    """A public model or code base in the reference index, with what a policy needs to judge reuse."""

    name: str
    family: str | None = None
    org: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2, e.g. "CN", "US"
    license: str | None = None  # SPDX id or LicenseRef-…
    repo_id: str | None = None  # Hugging Face repo id or code repository
    revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Reference":
        """The inverse of `to_dict`; unknown keys are ignored (reports of later versions may add some)."""
        return cls(**{k: v for k, v in d.items() if k in _REFERENCE_FIELDS})


@dataclass
class LicenseObligation:
    """A duty a reference license places on reuse, and whether the subject meets it."""

    license: str
    obligation: str  # e.g. "Apache-2.0 §4(a): give recipients a copy of the License"
    met: bool | None  # None: cannot be decided from the files
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LicenseObligation":
        return cls(d["license"], d["obligation"], d.get("met"), d.get("detail", ""))


@dataclass
class Finding:
    """One statement of provenance: part `subject` of the scanned model relates to `reference` as `verdict`."""

    kind: FindingKind
    verdict: str
    reference: Reference
    subject: str  # component path ("vision_tower"), tokenizer file, or "path.py::Class.func"
    summary: str  # one sentence a reviewer can read
    statistics: dict[str, Any] = field(default_factory=dict)  # centred similarity, n, z, p-value, layers…
    parameter_count: int | None = None
    parameter_share: float | None = None  # of all subject parameters
    license_obligations: list[LicenseObligation] = field(default_factory=list)
    transformations: list[str] = field(default_factory=list)  # e.g. "layers 6-23 duplicated"

    @property
    def id(self) -> str:
        """Stable identifier, e.g. `weights:vision_tower:qwen2.5-vl-7b`."""
        return f"{self.kind}:{self.subject}:{self.reference.name}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Finding":
        """The inverse of `to_dict` (no validation: `modelprov.policy.finding_from_dict` checks saved reports)."""
        return cls(
            kind=d["kind"], verdict=str(d["verdict"]), reference=Reference.from_dict(d["reference"]),
            subject=str(d["subject"]), summary=str(d.get("summary", "")), statistics=dict(d.get("statistics") or {}),
            parameter_count=d.get("parameter_count"), parameter_share=d.get("parameter_share"),
            license_obligations=[LicenseObligation.from_dict(o) for o in d.get("license_obligations") or []],
            transformations=list(d.get("transformations") or []),
        )


_REFERENCE_FIELDS = frozenset(Reference.__dataclass_fields__)


@dataclass
class SubjectFile:
    """A file of the scanned checkpoint, hashed for chain of custody."""

    path: str
    size: int
    sha256: str | None
    role: str
    link_target: str | None = None  # a symbolic link leaving the checkpoint folder: where it really points


@dataclass
class Subject:
    """What was scanned."""

    path: str
    format: str
    quantisation: str | None
    files: list[SubjectFile]
    tensor_count: int
    parameter_count: int
    components: dict[str, int]  # top-level component -> parameter count
    config: dict[str, Any] = field(default_factory=dict)  # architecture, layers, hidden size, vocab size


@dataclass
class ScanReport:
    """Everything a scan found, in the form the JSON report (docs/schema) publishes."""

    subject: Subject
    index: dict[str, Any]  # name, version, digest
    parameters: dict[str, Any]  # seeds, sample sizes, thresholds
    findings: list[Finding]
    details: dict[str, Any] = field(default_factory=dict)  # per-area detail: "weights", "tokenizer", "code"
    policy: dict[str, Any] | None = None  # verdicts from the policy engine
    tool_version: str = ""
    timestamp: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["findings"] = [f.to_dict() for f in self.findings]
        return d
