"""What a tensor name says about its place in the model: component path and top-level component.

Names are never trusted for matching (that is done by role and shape); they are used to *report*
where in the suspect model a finding lies.
"""

from __future__ import annotations

import re

# Leading segments that wrap a whole model rather than name a part of it.
WRAPPER_SEGMENTS = frozenset({"model", "module", "base_model", "transformer", "_orig_mod", "backbone"})
_LEAF_SEGMENTS = frozenset({"weight", "bias", "scale", "gamma", "beta", "qweight", "scales", "qzeros", "g_idx"})
_LAYER_INDEX = re.compile(r"^\d+$")


def split_name(name: str) -> list[str]:
    """Split a tensor name into segments (dots), treating GGUF-style `blk.3.attn_q` alike."""
    return [s for s in name.split(".") if s]


def component_path(name: str) -> str:
    """The name up to its first layer index or parameter leaf: `model.layers.3.mlp.up.weight` → `model.layers`."""
    parts = split_name(name)
    out: list[str] = []
    for seg in parts[:-1] if len(parts) > 1 else parts:
        if _LAYER_INDEX.match(seg):
            break
        out.append(seg)
    return ".".join(out) or (parts[0] if parts else name)


def top_level_component(name: str) -> str:
    """The first meaningful segment, keeping a leading wrapper: `model.visual.blocks.0…` → `model.visual`."""
    parts = split_name(name)
    if not parts:
        return name
    head = [parts[0]]
    i = 1
    while head[-1] in WRAPPER_SEGMENTS and i < len(parts) - 1 and parts[i] not in _LEAF_SEGMENTS:
        head.append(parts[i])
        i += 1
        if not _LAYER_INDEX.match(parts[i - 1]):
            break
    if _LAYER_INDEX.match(head[-1]):
        head.pop()
    return ".".join(head)


def layer_index(name: str) -> int | None:
    """The first integer segment of the name (the block index in a layer stack), if any."""
    for seg in split_name(name):
        if _LAYER_INDEX.match(seg):
            return int(seg)
    return None


# --- Roles -------------------------------------------------------------------------------------------
# A role says what a tensor does, whatever the naming scheme (BERT, Llama/HF, GGUF, Megatron, GPT-2,
# ViT). Matching uses roles only to narrow candidates: tensors with role "other" are matched by shape.

ROLES = (
    "token_embedding", "position_embedding", "type_embedding", "attn_q", "attn_k", "attn_v", "attn_o",
    "attn_qkv", "mlp_up", "mlp_gate", "mlp_down", "mlp_gate_up", "norm_weight", "norm_bias", "bias",
    "router", "lm_head", "patch_embed", "other",
)

VOCAB_ROLES = frozenset({"token_embedding", "lm_head"})  # rows are tokens

# Roles that can stand for one another when matching (fused projections hold their parts).
ROLE_FAMILIES: dict[str, str] = {
    "token_embedding": "embedding", "lm_head": "embedding",
    "position_embedding": "position", "type_embedding": "position",
    "attn_q": "attn_in", "attn_k": "attn_in", "attn_v": "attn_in", "attn_qkv": "attn_in",
    "attn_o": "attn_out",
    "mlp_up": "mlp_in", "mlp_gate": "mlp_in", "mlp_gate_up": "mlp_in",
    "mlp_down": "mlp_out",
    "norm_weight": "norm", "norm_bias": "bias", "bias": "bias",
    "router": "router", "patch_embed": "patch", "other": "other",
}

# Ordered (pattern, role) rules over the lower-cased name; first hit wins. Leaf `bias` is handled apart.
_ROLE_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"(^|\.)(lm_head|output|embed_out|classifier)(\.weight)?$", "lm_head"),
        (r"(token_type_embeddings|token_types|embed_token_type|token_type_embd)", "type_embedding"),
        (r"(word_embeddings|embed_tokens|tok_embeddings|token_embd|wte|token_embedding|embed_in|\bembedding\.weight$)", "token_embedding"),
        (r"(position_embeddings|pos_embed|wpe|position_embedding|embed_positions)", "position_embedding"),
        (r"(patch_embed|patch_embedding|conv1|embeddings\.patch)", "patch_embed"),
        (r"(layernorm|layer_norm|_norm|\.norm\d*|\bln_\w*|\bln\d*\b|rmsnorm|norm\.weight$|\bnorm$)", "norm_weight"),
        (r"(query_key_value|qkv|c_attn|in_proj|wqkv)", "attn_qkv"),
        (r"(q_proj|\.query\b|attn_q\b|\.wq\b|q_a_proj|q_b_proj)", "attn_q"),
        (r"(k_proj|\.key\b|attn_k\b|\.wk\b)", "attn_k"),
        (r"(v_proj|\.value\b|attn_v\b|\.wv\b)", "attn_v"),
        (r"(o_proj|attention\.output\.dense|attn_output|attn\.proj|\.wo\b|out_proj|self_attention\.dense|attn\.c_proj|attention\.dense)", "attn_o"),
        (r"(gate_up_proj|w13|ffn_gate_up)", "mlp_gate_up"),
        (r"(\.router|\.mlp\.gate\.|\.gate\.weight$|gate_inp)", "router"),
        (r"(gate_proj|ffn_gate|\.w1\b|\.fc_gate)", "mlp_gate"),
        (r"(up_proj|intermediate\.dense|ffn_up|\.w3\b|dense_h_to_4h|mlp\.fc1|mlp\.c_fc|\.fc1\b|mlp\.lin1)", "mlp_up"),
        (r"(down_proj|output\.dense|ffn_down|\.w2\b|dense_4h_to_h|mlp\.fc2|mlp\.c_proj|\.fc2\b|mlp\.lin2)", "mlp_down"),
    )
)


def infer_role(name: str, shape: tuple[int, ...] | None = None) -> str:
    """What a tensor does, from its name and shape (see `ROLES`); `other` when the name says nothing."""
    low = name.lower()
    leaf = split_name(low)[-1] if low else ""
    is_vector = shape is not None and len(shape) == 1
    if leaf in ("bias", "beta") or (is_vector and leaf != "weight" and "bias" in leaf):
        return "norm_bias" if _is_norm_name(low) else "bias"
    for pattern, role in _ROLE_RULES:
        if pattern.search(low):
            if role == "norm_weight" and shape is not None and len(shape) > 1:
                continue  # a matrix is never a norm weight, whatever its name
            if role != "norm_weight" and is_vector and role not in ("router",):
                return "norm_weight" if _is_norm_name(low) else "bias" if leaf == "bias" else "norm_weight"
            return role
    if is_vector:
        return "norm_weight" if _is_norm_name(low) or leaf in ("weight", "gamma", "scale") else "other"
    return "other"


def _is_norm_name(low: str) -> bool:
    return bool(re.search(r"(norm|\bln_|\bln\d*\b|layernorm)", low))


def role_family(role: str) -> str:
    """The family of interchangeable roles `role` belongs to (`attn_q` → `attn_in`)."""
    return ROLE_FAMILIES.get(role, "other")


def roles_compatible(a: str, b: str) -> bool:
    """Whether tensors of roles `a` and `b` may hold the same weights (same family, or either unknown)."""
    fa, fb = role_family(a), role_family(b)
    if "other" in (fa, fb):
        return True
    return fa == fb


def expert_index(name: str) -> int | None:
    """The expert number of a mixture-of-experts tensor (`…experts.7.up_proj…` → 7), if any."""
    m = re.search(r"experts?\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def layer_stack(name: str) -> str | None:
    """The name prefix of the repeated block a tensor sits in (`model.layers`), or None outside blocks."""
    return component_path(name) if layer_index(name) is not None else None
