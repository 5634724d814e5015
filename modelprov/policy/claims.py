"""A checkpoint's claims against its findings: the card as an implicit declaration, contradictions as findings,
and the front matter a bidder should publish.

An explicit declaration file overrides the card: the card's contradictions stay in the report as facts, but
the policy judges against the file.
"""

from __future__ import annotations

from typing import Any, Iterable

import yaml

from modelprov.findings import Finding, Reference

from .card import Claim, ModelCard
from .declaration import Declaration, DeclaredReuse, names_reference
from .evidence import calibrated_band

_WHOLE = "(whole model)"


def card_declaration(card: ModelCard) -> Declaration | None:
    """The card read as a declaration: each `base_model` a declared base model, "from scratch" prose as
    `pretrained_from_scratch`; None when the card claims nothing about lineage."""
    if card.empty:
        return None
    license = card.license.value if card.license and card.license.value.casefold() != "other" else None
    # naming a base model discloses what comes with it: its weights, tokenizer and architecture
    items = tuple(DeclaredReuse(section=section, reference=c.value, where=c.where, license=license)
                  for c in card.base_models for section in ("base_models", "tokenizer", "architecture"))
    return Declaration(path=", ".join(card.files) or None, origin="model card", items=items,
                       pretrained_from_scratch=True if card.from_scratch and not card.base_models else None)


def backed_reuse(findings: Iterable[Finding]) -> list[Finding]:
    """Weights findings of reuse the calibration backs: copied, or derived in the `reuse` band (or with no
    calibration, as in reports of older scans). A card is never contradicted on evidence that is REVIEW."""
    return [f for f in findings if f.kind == "weights" and (
        f.verdict == "copied" or (f.verdict == "derived" and calibrated_band(f) in (None, "reuse")))]


def check_claims(card: ModelCard, findings: Iterable[Finding]) -> list[Finding]:
    """A `claim` finding (verdict "contradicted") for each claim the weights findings contradict, both sides quoted."""
    weights = backed_reuse(findings)
    out: list[Finding] = []
    if card.base_models:
        for f in weights:
            if not any(names_reference(c.value, f.reference) for c in card.base_models):
                claimed = ", ".join(f'"{c.value}"' for c in card.base_models)
                out.append(_contradiction(
                    card.base_models[0], f, "base_model",
                    f"{card.base_models[0].where} names {claimed} as base model, but {f.subject} is {f.verdict} from "
                    f"{_ref(f.reference)} ({_evidence(f)})"))
    if card.from_scratch is not None:
        for f in weights:
            out.append(_contradiction(
                card.from_scratch, f, "from_scratch",
                f'{card.from_scratch.where} says "{card.from_scratch.value}", but {f.subject} is {f.verdict} from '
                f"{_ref(f.reference)} ({_evidence(f)})"))
    relation = card.relation.value.casefold() if card.relation else None
    if relation == "quantized":
        for f in weights:
            if f.verdict != "copied" and any(names_reference(c.value, f.reference) for c in card.base_models):
                out.append(_contradiction(
                    card.relation, f, "base_model_relation",
                    f'{card.relation.where} says "quantized", but {f.subject} is not a copy of {_ref(f.reference)} '
                    f"under any storage: it is {f.verdict} ({_evidence(f)})"))
    if relation == "merge" and len(card.base_models) < 2:
        named = card.base_models[0].value if card.base_models else None
        subject = next((f for f in weights if named and names_reference(named, f.reference)), None)
        reference = subject.reference if subject else Reference(name=named or "(none named)")
        parents = f'only "{named}"' if named else "no base_model"
        merge = _merge_words(subject) if subject else ""
        out.append(Finding(
            "claim", "contradicted", reference, f"{card.relation.where}",
            f'{card.relation.where} says "merge", but the card names {parents}: a merge has at least two parents'
            + (f"; the weights show {merge}" if merge else ""),
            {"claim": {"key": "base_model_relation", "value": card.relation.value, "where": card.relation.where},
             "base_models": [c.value for c in card.base_models]}))
    return out


def suggested_front_matter(findings: Iterable[Finding]) -> dict[str, Any]:
    """The `base_model` / `base_model_relation` / `license` front matter the findings support (empty: none)."""
    weights = backed_reuse(findings)
    if not weights:
        return {}
    names = list(dict.fromkeys(f.reference.repo_id or f.reference.name for f in weights))
    merge = next((f.statistics["merge"] for f in weights if isinstance(f.statistics.get("merge"), dict)), None)
    out: dict[str, Any] = {"base_model": names[0] if len(names) == 1 else names}
    if merge is not None:
        out["base_model_relation"] = "merge"
    elif all(f.verdict == "copied" and any("quantised" in s for s in f.statistics.get("storage", [])) for f in weights):
        out["base_model_relation"] = "quantized"
    elif any(f.verdict == "derived" for f in weights):
        out["base_model_relation"] = "finetune"
    # else a copy re-uploaded as is or cast: the Hub's relations have no word for it, so none is suggested
    licenses = list(dict.fromkeys(f.reference.license for f in weights if f.reference.license))
    if len(licenses) == 1:
        out["license"] = _hub_license(licenses[0])
    return out


def front_matter_text(meta: dict[str, Any]) -> str:
    """The suggested front matter as it goes at the top of README.md."""
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n" if meta else ""


def _hub_license(spdx: str) -> str:
    """The Hub's licence tag: lower-case SPDX ids; a LicenseRef is "other" (with license_name on the Hub)."""
    return "other" if spdx.startswith("LicenseRef-") else spdx.lower()


def _contradiction(claim: Claim, f: Finding, key: str, summary: str) -> Finding:
    stats = {"claim": {"key": key, "value": claim.value, "where": claim.where},
             "finding": f.id, "found": {"verdict": f.verdict, "subject": f.subject, "reference": f.reference.name}}
    return Finding("claim", "contradicted", f.reference, claim.where, summary, stats)


def _ref(reference: Reference) -> str:
    return reference.repo_id or reference.name


def _evidence(f: Finding) -> str:
    c = f.statistics.get("centred_similarity")
    sim = f"median centred similarity {c:.3f}, " if isinstance(c, (int, float)) else ""
    merge = _merge_words(f)
    return f"{sim}finding {f.id}" + (f"; {merge}" if merge else "")


def _merge_words(f: Finding) -> str:
    merge = f.statistics.get("merge")
    return merge.get("statement", "") if isinstance(merge, dict) else ""
