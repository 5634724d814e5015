"""Synthetic findings for policy tests, built with the shared dataclasses and realistic statistics.

Numbers follow the public cases: a frozen vision tower at ~0.995 centred similarity and ~12% of the
parameters; a fine-tuned backbone at ~0.98 with an astronomically small p-value; independent models
near 0.01 centred similarity.
"""

from __future__ import annotations

from pathlib import Path

from modelprov.findings import Finding, LicenseObligation, Reference

QWEN_VL = Reference("qwen2.5-vl-7b", family="qwen2.5-vl", org="Alibaba Cloud", country="CN",
                    license="Apache-2.0", repo_id="Qwen/Qwen2.5-VL-7B-Instruct")
QWEN_BASE = Reference("qwen2.5-7b", family="qwen2.5", org="Alibaba Cloud", country="CN",
                      license="Apache-2.0", repo_id="Qwen/Qwen2.5-7B")
LLAMA = Reference("llama-3.1-8b", family="llama3", org="Meta", country="US",
                  license="LicenseRef-llama3", repo_id="meta-llama/Llama-3.1-8B")
EXAONE = Reference("exaone-3.5-7.8b", family="exaone", org="LG AI Research", country="KR",
                   license="LicenseRef-exaone", repo_id="LGAI-EXAONE/EXAONE-3.5-7.8B-Instruct")
TRANSFORMERS_QWEN2 = Reference("transformers/qwen2", family="transformers", org="Hugging Face", country="US",
                               license="Apache-2.0", repo_id="huggingface/transformers")


def weights(subject: str, reference: Reference, verdict: str, *, similarity: float | None, log10_p: float | None,
            share: float | None, obligations: list[LicenseObligation] | None = None) -> Finding:
    statistics = {}
    if similarity is not None:
        statistics["centred_similarity"] = similarity
    if log10_p is not None:
        statistics["log10_p"] = log10_p
        statistics["p_value"] = 10.0 ** log10_p
    return Finding("weights", verdict, reference, subject, f"{subject} vs {reference.name}: {verdict}",
                   statistics=statistics, parameter_share=share, license_obligations=obligations or [])


def copied_encoder(reference: Reference = QWEN_VL, **kw) -> Finding:
    """A frozen vision tower, as in the 2026 case (99.5% similar, 12% of parameters)."""
    return weights("model.visual", reference, "copied", similarity=0.995, log10_p=-900.0, share=0.12, **kw)


def derived_backbone(reference: Reference = QWEN_BASE) -> Finding:
    """A backbone fine-tuned from `reference` (continued training keeps it far from independent)."""
    return weights("model.language_model", reference, "derived", similarity=0.93, log10_p=-400.0, share=0.86)


def independent(subject: str, reference: Reference, share: float) -> Finding:
    return weights(subject, reference, "independent", similarity=0.012, log10_p=-0.4, share=share)


def tokenizer(reference: Reference, verdict: str = "identical") -> Finding:
    return Finding("tokenizer", verdict, reference, "tokenizer.json", f"tokenizer {verdict} to {reference.name}")


def code(subject: str, reference: Reference, verdict: str = "derived") -> Finding:
    return Finding("code", verdict, reference, subject, f"{subject} {verdict} from {reference.name}")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


DECLARED_FROZEN_ENCODER = """
[bidder]
name = "Example AI Lab"
organisation = "Example AI"
country = "KR"

[model]
name = "Example-VL-8B"
pretrained_from_scratch = true

[[components]]
component = "model.visual"
reference = "Qwen/Qwen2.5-VL-7B-Instruct"
license = "Apache-2.0"
reinitialised = false
trained = false

[training]
evidence = ["pre-training logs"]
"""

DECLARED_REINITIALISED_ENCODER = DECLARED_FROZEN_ENCODER.replace(
    "reinitialised = false\ntrained = false", "reinitialised = true\ntrained = true"
)

DECLARED_NOTHING = """
[bidder]
name = "Example AI Lab"
organisation = "Example AI"

[tokenizer]
origin = "own"

[training]
evidence = ["pre-training logs", "intermediate checkpoints"]
"""
