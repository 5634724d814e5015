"""Every shared fixture model opens with the project's reader and has the tensors its docstring promises."""

from __future__ import annotations

import pytest

from modelprov.reader import open_checkpoint

FIXTURES = {
    "minilm_derived_finetuned": 103, "minilm_derived_renamed_llama": 103,
    "minilm_derived_bf16_fused_transposed": 79, "minilm_derived_resharded": 103,
    "minilm_derived_permuted": 103, "minilm_derived_pruned_upscaled": 135, "minilm_derived_gguf_q8_0": 103,
    "minilm_independent_fresh": 103, "minilm_independent_trained": 103,
    "composite_minilm_vision": 206, "composite_minilm_vision_subfolders": 206,
    "smollm2_hf_dir": 272, "smollm2_independent_small": 38, "smollm2_derived_rotated": 273,
    "smollm2_derived_gguf_q4_0": 272,
    "minilm_onnx_legacy": 101, "minilm_onnx_dynamo": 101,  # no pooler in the graph
    # untrained: the exporter keeps one copy of its identical norm gains (ones) and biases (zeros of two widths)
    "minilm_onnx_independent": 42,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_model_opens_with_expected_tensor_count(request, name):
    path = request.getfixturevalue(name)
    with open_checkpoint(path) as ck:
        assert sum(1 for _ in ck.tensors()) == FIXTURES[name]
