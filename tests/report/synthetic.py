"""Realistic synthetic scan reports, built with the producers' own dataclasses so they track their shapes.

The case: a vision-language model whose vision tower is Qwen2.5-VL-7B's (copied, frozen), whose language
model is independent, whose tokenizer extends Qwen2.5's, whose inference code copies a GLM-4.5 class, and
which the sovereign-foundation-model policy (the real engine) therefore fails. Hostile strings (HTML and
Markdown syntax) sit where checkpoints and code put untrusted text, so renderers must escape them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from modelprov.code.scan import CodeScanResult, FileResult, FunctionMatch, MatchedRegion
from modelprov.findings import Finding, LicenseObligation, Reference, ScanReport, Subject, SubjectFile
from modelprov.tokenizers.compare import MergeAgreement, SpecialTokenAgreement, TokenizerComparison
from modelprov.tokenizers.scan import comparison_finding

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
    name="glm-4.5@4.56.0", family="glm", org="Zhipu AI", country="CN", license="MIT",
    repo_id="https://github.com/huggingface/transformers", revision="v4.56.0",
)

REFERENCE_CODE = [
    "class Glm4MoeRMSNorm(nn.Module):",
    "    def __init__(self, hidden_size, eps=1e-6):",
    "        super().__init__()",
    "        self.weight = nn.Parameter(torch.ones(hidden_size))",
    "        self.variance_epsilon = eps",
    "",
    "    def forward(self, hidden_states):",
    "        input_dtype = hidden_states.dtype",
    "        hidden_states = hidden_states.to(torch.float32)",
    "        variance = hidden_states.pow(2).mean(-1, keepdim=True)",
    "        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)",
    "        return self.weight * hidden_states.to(input_dtype)",
]
SUBJECT_CODE = [
    "class AcmeRMSNorm(nn.Module):  # <b>Acme</b> original",
    "    def __init__(self, hidden_size, eps=1e-6):",
    "        super().__init__()",
    "        self.weight = nn.Parameter(torch.ones(hidden_size))",
    "        self.variance_epsilon = eps",
    "",
    "    def forward(self, x):",
    "        input_dtype = x.dtype",
    "        x = x.to(torch.float32)",
    "        variance = x.pow(2).mean(-1, keepdim=True)",
    "        x = x * torch.rsqrt(variance + self.variance_epsilon)",
    "        return self.weight * x.to(input_dtype)  # </pre><script>alert('x')</script>",
]
SUBJECT_FIRST_LINE, REFERENCE_FIRST_LINE = 40, 58


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _block_similarity(layers: int, diagonal: float, off: float, seed: int) -> np.ndarray:
    """Centred similarity of every suspect layer with every reference layer (the stack aligner's matrix)."""
    rng = np.random.default_rng(seed)
    m = rng.normal(off, 0.01, size=(layers, layers))
    np.fill_diagonal(m, diagonal + rng.normal(0, 0.001, size=layers))
    return np.round(m, 4)


def _norm_vectors(layers: int, seed: int) -> list[dict[str, Any]]:
    """RMSNorm gains of an unrelated model: raw cosine ~0.99 (both start at 1.0), centred ~0."""
    rng = np.random.default_rng(seed)
    return [{"reference": f"model.layers.{i}.input_layernorm.weight", "suspect": f"model.layers.{i}.input_layernorm.weight",
             "centred": round(float(rng.normal(0.0, 0.015)), 6), "raw_cosine": round(float(0.989 + rng.normal(0, 0.002)), 6),
             "n": 3584} for i in range(layers)]


def _weights_finding(matrix: np.ndarray, params: int, total: int) -> Finding:
    n_layer = 6 * 1280 * 1280
    per_layer = []
    for i in range(matrix.shape[0]):
        r = float(matrix[i, i])
        z = float(np.arctanh(r) * np.sqrt(n_layer - 3))
        per_layer.append({"suspect_stack": "visual.blocks", "suspect_layer": i, "reference_stack": "visual.blocks",
                          "reference_layer": i, "centred_similarity": r, "raw_cosine": 0.9989, "n": n_layer,
                          "tensors": 6, "z": round(z, 3), "log10_p": -300.0})
    return Finding(
        kind="weights", verdict="copied", reference=QWEN_VL, subject="visual",
        summary="visual copied from qwen2.5-vl-7b: 32/32 blocks, 192 tensors, median centred similarity 0.9950 "
                "(raw cosine 0.9989), 8.2% of all parameters, 100% of matched parameters bit-identical",
        statistics={"centred_similarity": 0.995, "centred_similarity_min": 0.9921, "raw_cosine": 0.9989,
                    "per_layer": per_layer, "n": n_layer * 32, "null_sd": 1 / np.sqrt(262_144), "z": 4739.2,
                    "log10_p": -9600.0, "p_value": 0.0, "layers_matched": 32, "layers_total": 32,
                    "tensors_matched": 192, "exact_tensors": 192, "exact_parameter_share": 1.0,
                    "matched_tensors": [], "components": ["visual"]},
        parameter_count=params, parameter_share=params / total,
        license_obligations=[
            LicenseObligation("Apache-2.0", "Apache-2.0 §4(a): give recipients a copy of the License", False,
                              "no LICENSE file among the subject files"),
            LicenseObligation("Apache-2.0", "Apache-2.0 §4(c): retain copyright and attribution notices", None,
                              "cannot be decided from the weights"),
        ],
        transformations=["frozen: weights bit-identical to the reference"],
    )


def _tokenizer_finding() -> tuple[Finding, TokenizerComparison]:
    comparison = TokenizerComparison(
        suspect="tokenizer.json", reference="qwen2.5", verdict="extended",
        reasons=["every reference token at its id", "3,365 tokens appended"],
        suspect_tokens=155_008, reference_tokens=151_643, shared_tokens=151_643, jaccard=151_643 / 155_008,
        jaccard_estimate=0.9805, suspect_in_reference=151_643 / 155_008, reference_in_suspect=1.0,
        id_agreement=1.0, id_offset=0, id_offset_share=1.0,
        merges=MergeAgreement(151_387, 151_387, 151_387, 151_387, 1.0, 1.0),
        special_tokens=SpecialTokenAgreement(22, 22, ["<|acme_image|>", HOSTILE], []),
    )
    return comparison_finding("tokenizer.json", QWEN_LM, comparison), comparison


def _code_scan() -> tuple[Finding, CodeScanResult]:
    obligation = LicenseObligation("MIT", "MIT: include the copyright notice and permission notice", False,
                                   "no MIT notice in acme/")
    regions = [MatchedRegion((SUBJECT_FIRST_LINE + a, SUBJECT_FIRST_LINE + b), (REFERENCE_FIRST_LINE + a, REFERENCE_FIRST_LINE + b),
                             tokens, "\n".join(SUBJECT_CODE[a:b + 1]), "\n".join(REFERENCE_CODE[a:b + 1]))
               for a, b, tokens in ((1, 4, 41), (6, 11, 77))]
    match = FunctionMatch(
        subject_path="acme/modeling_acme.py", subject_qualname="AcmeRMSNorm",
        subject_lines=(SUBJECT_FIRST_LINE, SUBJECT_FIRST_LINE + 11), subject_tokens=130,
        reference=GLM_CODE.name, reference_path="transformers/models/glm4_moe/modeling_glm4_moe.py",
        reference_qualname="Glm4MoeRMSNorm", reference_lines=(REFERENCE_FIRST_LINE, REFERENCE_FIRST_LINE + 11),
        reference_tokens=125, matched_tokens=118, evidence_tokens=104, similarity=0.944, subject_coverage=0.908,
        lexical_identity=0.83, verdict="copied", rename_map={"hidden_states": "x"}, shared_fingerprints=31,
        regions=regions, license_obligations=[obligation],
    )
    finding = Finding(
        kind="code", verdict="copied", reference=GLM_CODE, subject=match.subject,
        summary="acme/modeling_acme.py::AcmeRMSNorm is copied from glm-4.5 Glm4MoeRMSNorm (94% of the reference "
                "function, 1 identifier renamed)",
        statistics={"similarity": 0.944, "subject_coverage": 0.908, "matched_tokens": 118, "lexical_identity": 0.83},
        license_obligations=[obligation], transformations=["identifiers renamed: hidden_states→x"],
    )
    result = CodeScanResult(
        root="/data/bids/acme-vl-8b/code", index="code-index", references=[{"key": GLM_CODE.name, **GLM_CODE.to_dict()}],
        files=[FileResult("acme/modeling_acme.py", "python", 1_204, 9, 118, {"spdx": None}, [match])],
        findings=[finding], parameters={"k": 23, "window": 17, "min_tile": 12},
    )
    return finding, result


def build_report(*, policy: bool = True, code: bool = True, timestamp: str = "2026-11-22T00:00:00Z") -> dict[str, Any]:
    """A complete `ScanReport.to_dict()` for the copied-vision-tower case."""
    components = {"model": 7_070_619_136, "visual": 676_550_144, "lm_head": 544_997_376}
    total = sum(components.values())
    subject = Subject(
        path="/data/bids/acme-vl-8b", format="safetensors", quantisation=None,
        files=[
            SubjectFile("config.json", 1834, _sha("config"), "config"),
            SubjectFile("model-00001-of-00002.safetensors", 4_976_698_672, _sha("shard1"), "weights"),
            SubjectFile("model-00002-of-00002.safetensors", 3_864_726_320, _sha("shard2"), "weights"),
            SubjectFile("tokenizer.json", 11_421_896, _sha("tok"), "tokenizer"),
            SubjectFile(f"extra/{HOSTILE}.txt", 12, None, "other"),
        ],
        tensor_count=729, parameter_count=total, components=components,
        config={"architectures": ["AcmeVLForConditionalGeneration"], "model_type": "qwen2_5_vl", "hidden_size": 3584,
                "num_hidden_layers": 28, "vision_config": {"depth": 32, "hidden_size": 1280}, "vocab_size": 155_008},
    )
    vision = _block_similarity(32, 0.995, 0.02, seed=1)
    language = _block_similarity(28, 0.012, 0.0, seed=2)
    tokenizer_finding, comparison = _tokenizer_finding()
    findings = [_weights_finding(vision, components["visual"], total), tokenizer_finding]
    details: dict[str, Any] = {
        "weights": {
            "references": [
                {"reference": QWEN_VL.name, "stacks": [{
                    "suspect_stack": "visual.blocks", "reference_stack": "visual.blocks",
                    "suspect_layers": list(range(32)), "reference_layers": list(range(32)),
                    "layer_map": {str(i): i for i in range(32)}, "block_similarity": vision.tolist()}]},
                {"reference": QWEN_LM.name, "weak_matches": _norm_vectors(28, seed=3), "stacks": [{
                    "suspect_stack": "model.layers", "reference_stack": "model.layers",
                    "suspect_layers": list(range(28)), "reference_layers": list(range(28)),
                    "layer_map": {str(i): None for i in range(28)}, "block_similarity": language.tolist()}]},
            ],
            "components": {
                "visual": {"parameters": components["visual"], "share": components["visual"] / total,
                           "verdicts": {QWEN_VL.name: "copied"},
                           "closest": {"reference": QWEN_VL.name, "max_centred_similarity": 0.9962}},
                "model": {"parameters": components["model"], "share": components["model"] / total, "verdicts": {},
                          "closest": {"reference": QWEN_LM.name, "max_centred_similarity": 0.0311}},
                "lm_head": {"parameters": components["lm_head"], "share": components["lm_head"] / total,
                            "verdicts": {}, "closest": None},
            },
            "bytes": {"checkpoint": 16_584_333_312, "read_for_sketches": 402_653_184, "read_total": 1_755_463_680,
                      "fraction_read": 0.1058},
            "pairs_compared": 61_440,
        },
        "tokenizer": {"tokenizer": "tokenizer.json", "fingerprint": {"tokens": 155_008, "special_tokens": 24},
                      "comparisons": [{"reference": QWEN_LM.name, **comparison.to_dict()}]},
    }
    if code:
        code_finding, code_result = _code_scan()
        findings.append(code_finding)
        details["code"] = code_result.to_dict()
    report = ScanReport(
        subject=subject,
        index={"name": "provenance-reference", "version": "2026.11", "digest": "sha256:" + _sha("index")},
        parameters={"weights": {"seed": 0, "rows_per_tensor": 512, "thresholds": {"derived_similarity": 0.1}},
                    "code": {"k": 23, "window": 17}},
        findings=findings, details=details, tool_version="0.1.0", timestamp=timestamp,
    )
    if policy:
        from modelprov.policy.evaluate import evaluate
        from modelprov.policy.policy import load_policy

        report.policy = evaluate(findings, load_policy("sovereign-foundation-model"), subject=subject).to_dict()
    return report.to_dict()
