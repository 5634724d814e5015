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
