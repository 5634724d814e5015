"""Realistic synthetic scan reports, built with the shared dataclasses so they track `provenance.findings`.

The case: a vision-language model whose vision tower is Qwen2.5-VL-7B's (frozen, copied), whose language
model is independent, whose tokenizer extends Qwen2.5's, whose inference code copies a GLM-4.5 function,
and which a policy therefore fails. Hostile strings (HTML/Markdown syntax) sit where checkpoints and code
put untrusted text, so renderers must escape them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from provenance.findings import Finding, LicenseObligation, Reference, ScanReport, Subject, SubjectFile

HOSTILE = "<script>alert('x')</script> | `tick` *star*"

QWEN_VL = Reference(
    name="qwen2.5-vl-7b", family="qwen2.5-vl", org="Alibaba Cloud", country="CN", license="Apache-2.0",
    repo_id="Qwen/Qwen2.5-VL-7B-Instruct", revision="cc594898137f460bfe9f0759e9844b3ce807cfb5",
)
QWEN_LM = Reference(
    name="qwen2.5-7b", family="qwen2.5", org="Alibaba Cloud", country="CN", license="Apache-2.0",
    repo_id="Qwen/Qwen2.5-7B-Instruct", revision="a09a35458c702b33eeacc393d103063234e8bc28",
)
GLM_CODE = Reference(
    name="glm-4.5", family="glm", org="Zhipu AI", country="CN", license="MIT",
    repo_id="zai-org/GLM-4.5", revision="main",
)

CODE_REFERENCE_TEXT = '''class Glm4MoeRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)
'''

CODE_SUBJECT_TEXT = '''# Copyright Acme. <b>All rights reserved</b>.
class AcmeRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x):
        input_dtype = x.dtype
        x = x.to(torch.float32)
        variance = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * x.to(input_dtype)  # <script>alert('x')</script>
'''


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _layer_matrix(layers: int, diagonal: float, off: float, seed: int) -> list[list[float]]:
    """Centred similarity of every subject layer against every reference layer, 6 decimal places."""
    rng = np.random.default_rng(seed)
    m = rng.normal(off, 0.01, size=(layers, layers))
    np.fill_diagonal(m, diagonal + rng.normal(0, 0.001, size=layers))
    return np.round(m, 6).tolist()


def _per_layer(matrix: list[list[float]], raw: float, n: int) -> list[dict[str, Any]]:
    rows = []
    for i, row in enumerate(matrix):
        centred = row[i]
        z = centred * np.sqrt(n)
        rows.append({
            "subject_layer": i, "reference_layer": i, "centred": centred, "raw_cosine": raw, "n": n,
            "z": round(float(z), 3), "p_value": float(f"{max(1e-300, np.exp(-z * z / 2)):.3e}"),
        })
    return rows


def build_report(*, policy: bool = True, code: bool = True, timestamp: str = "2026-11-22T00:00:00Z") -> dict[str, Any]:
    """A complete `ScanReport.to_dict()` for the copied-vision-tower case."""
    files = [
        SubjectFile("config.json", 1834, _sha("config"), "config"),
        SubjectFile("model-00001-of-00002.safetensors", 4_976_698_672, _sha("shard1"), "weights"),
        SubjectFile("model-00002-of-00002.safetensors", 3_864_726_320, _sha("shard2"), "weights"),
        SubjectFile("tokenizer.json", 11_421_896, _sha("tok"), "tokenizer"),
        SubjectFile(f"extra/{HOSTILE}.txt", 12, None, "other"),
    ]
    components = {"model": 7_070_619_136, "visual": 676_550_144, "lm_head": 544_997_376}
    total = sum(components.values())
    subject = Subject(
        path="/data/bids/acme-vl-8b", format="safetensors", quantisation=None, files=files,
        tensor_count=729, parameter_count=total, components=components,
        config={"architectures": ["AcmeVLForConditionalGeneration"], "hidden_size": 3584, "num_hidden_layers": 28,
                "vision_config": {"depth": 32, "hidden_size": 1280}, "vocab_size": 155_008},
    )
    apache = [
        LicenseObligation("Apache-2.0", "Apache-2.0 §4(a): give recipients a copy of the License", False,
                          "no LICENSE file among the subject files"),
        LicenseObligation("Apache-2.0", "Apache-2.0 §4(c): retain copyright and attribution notices", None,
                          "cannot be decided from the weights"),
    ]
    vision_matrix = _layer_matrix(32, 0.995, 0.02, seed=1)
    lm_matrix = _layer_matrix(28, 0.012, 0.0, seed=2)
    findings = [
        Finding(
            kind="weights", verdict="copied", reference=QWEN_VL, subject="visual",
            summary="The vision tower matches Qwen2.5-VL-7B's layer for layer (centred similarity 0.995 in all 32 blocks).",
            statistics={"centred_similarity": 0.9951, "raw_cosine": 0.9989, "n": 262_144, "layers_matched": 32,
                        "layers": 32, "null_mean": 0.0003, "null_sd": 0.0021, "z": 473.9, "p_value": 1e-300,
                        "combined_p_value_method": "fisher"},
            parameter_count=components["visual"], parameter_share=components["visual"] / total,
            license_obligations=apache, transformations=["frozen (no training detected)"],
        ),
        Finding(
            kind="weights", verdict="independent", reference=QWEN_LM, subject="model",
            summary="The language model is unrelated to Qwen2.5-7B (centred similarity 0.012, within the null).",
            statistics={"centred_similarity": 0.012, "raw_cosine": 0.987, "n": 262_144, "layers_matched": 0,
                        "layers": 28, "null_mean": 0.0003, "null_sd": 0.0021, "z": 1.1, "p_value": 0.27},
            parameter_count=components["model"], parameter_share=components["model"] / total,
        ),
        Finding(
            kind="tokenizer", verdict="extended", reference=QWEN_LM, subject="tokenizer.json",
            summary="The tokenizer is Qwen2.5's with 3,365 tokens added at the end.",
            statistics={"jaccard": 0.9783, "shared_tokens": 151_643, "subject_vocab": 155_008,
                        "reference_vocab": 151_665, "added_tokens": 3_365, "removed_tokens": 22,
                        "merges_prefix_shared": 151_387},
            license_obligations=[apache[0]],
        ),
        Finding(
            kind="architecture", verdict="derived", reference=QWEN_VL, subject="config.json",
            summary="Config keys and shapes follow Qwen2.5-VL (vision depth 32, hidden 1280, patch 14).",
            statistics={"matching_keys": 41, "total_keys": 44},
        ),
    ]
    code_details: dict[str, Any] = {}
    if code:
        findings.append(Finding(
            kind="code", verdict="copied", reference=GLM_CODE, subject="acme/modeling_acme.py::AcmeRMSNorm",
            summary="AcmeRMSNorm is GLM-4.5's Glm4MoeRMSNorm with variables renamed.",
            statistics={"similarity": 0.91, "matched_tokens": 118, "subject_tokens": 130, "k": 23, "window": 17},
            license_obligations=[LicenseObligation("MIT", "MIT: include the copyright notice and permission notice",
                                                   False, "no MIT notice in acme/")],
            transformations=["identifiers renamed"],
        ))
        code_details = {"matches": [{
            "subject_file": "acme/modeling_acme.py", "reference": GLM_CODE.name,
            "reference_file": "transformers/models/glm4_moe/modeling_glm4_moe.py",
            "verdict": "copied", "similarity": 0.91,
            "subject_text": CODE_SUBJECT_TEXT, "subject_first_line": 40,
            "reference_text": CODE_REFERENCE_TEXT, "reference_first_line": 58,
            "regions": [
                {"subject_lines": [42, 46], "reference_lines": [59, 63], "tokens": 41},
                {"subject_lines": [48, 52], "reference_lines": [65, 69], "tokens": 77},
            ],
        }]}
    details = {
        "weights": {"components": [
            {"component": "visual", "reference": QWEN_VL.name, "verdict": "copied", "statistic": "centred",
             "layers": _per_layer(vision_matrix, 0.9989, 262_144), "layer_matrix": vision_matrix},
            {"component": "model", "reference": QWEN_LM.name, "verdict": "independent", "statistic": "centred",
             "layers": _per_layer(lm_matrix, 0.987, 262_144), "layer_matrix": lm_matrix},
        ]},
        "tokenizer": {"reference": QWEN_LM.name, "jaccard": 0.9783, "shared_tokens": 151_643,
                      "added_examples": ["<|acme_image|>", "<|acme_audio|>", HOSTILE],
                      "removed_examples": ["<|fim_pad|>"]},
        "code": code_details,
    }
    policy_dict = None
    if policy:
        policy_dict = {"name": "domestic design and pre-training", "overall": "FAIL", "rules": [
            {"id": "weights-initialised-by-team", "outcome": "FAIL",
             "reason": f"visual ({100 * components['visual'] / total:.1f}% of parameters) is copied from qwen2.5-vl-7b (CN, Apache-2.0)",
             "findings": ["weights:visual:qwen2.5-vl-7b"]},
            {"id": "tokenizer-reuse", "outcome": "WARN", "reason": "tokenizer extends qwen2.5-7b",
             "findings": ["tokenizer:tokenizer.json:qwen2.5-7b"]},
            {"id": "licensed-code-reuse", "outcome": "REVIEW" if code else "PASS",
             "reason": "MIT notice missing for code copied from glm-4.5" if code else "no code reuse found",
             "findings": ["code:acme/modeling_acme.py::AcmeRMSNorm:glm-4.5"] if code else []},
            {"id": "language-model-pretrained-by-team", "outcome": "PASS", "reason": "model is independent",
             "findings": ["weights:model:qwen2.5-7b"]},
        ]}
    report = ScanReport(
        subject=subject,
        index={"name": "provenance-reference", "version": "2026.11", "digest": "sha256:" + _sha("index")},
        parameters={"seed": 0, "rows_per_tensor": 512, "null_pairs": 40, "code_k": 23, "code_window": 17},
        findings=findings, details=details, policy=policy_dict, tool_version="0.1.0", timestamp=timestamp,
    )
    return report.to_dict()
