"""Tensor names for ONNX initialisers, rebuilt from the graph when the exporter left anonymous ones.

Exporters name many initialisers `onnx::MatMul_470`, `val_49` or `onnx::Gemm_12`. The role matcher
(`modelprov.weights.naming.infer_role`) understands Hugging Face-style module paths, so each anonymous tensor
gets `<module path>.<leaf>`: the path from the node that uses it (its name `/encoder/layer.3/attention/self/
query/MatMul`, or torch.onnx's `pkg.torch.onnx.name_scopes` metadata), else from a named tensor beside it
(the `….bias` added to its MatMul's output), else from its position in the repeated layer sequence
(`layers.3.matmul2.weight`). The leaf follows the operator input (`MatMul` B → `weight`, `Add` → `bias`, …).
Names only narrow candidates and localise findings; matching never trusts them.
"""

from __future__ import annotations

from ._onnx_model import Node, OnnxModel, StoredTensor

_PASS_THROUGH = frozenset({"Transpose", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten"})
MATMUL_OPS = frozenset({"MatMul", "Gemm", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
                      "QLinearMatMul", "FusedMatMul"})
_NAMED_LEAVES = frozenset({"weight", "bias", "gamma", "beta", "scale"})
# (operator, input index) → leaf name (or a sub-path for fused operators whose inputs say what they are)
_LEAVES: dict[tuple[str, int], str] = {
    ("Gemm", 2): "bias", ("LayerNormalization", 2): "bias", ("SkipLayerNormalization", 2): "weight",
    ("SkipLayerNormalization", 3): "bias", ("SkipLayerNormalization", 4): "bias",
    ("SkipSimplifiedLayerNormalization", 2): "weight", ("Conv", 2): "bias", ("BiasGelu", 1): "bias",
    ("EmbedLayerNormalization", 2): "word_embeddings.weight",
    ("EmbedLayerNormalization", 3): "position_embeddings.weight",
    ("EmbedLayerNormalization", 4): "token_type_embeddings.weight",
    ("EmbedLayerNormalization", 5): "LayerNorm.weight", ("EmbedLayerNormalization", 6): "LayerNorm.bias",
    ("Attention", 1): "qkv.weight", ("Attention", 2): "qkv.bias",
}
_BIAS_OPS = frozenset({"Add", "Sub"})
_MAX_PERIOD = 256  # tensors in one repeated layer, at most
_MAX_POSITIONAL = 5000  # anonymous tensors searched for a repeated layer pattern (the search is O(n · period))
_MAX_FORWARD = 3  # nodes followed from a MatMul to the Add of its bias


def is_named(name: str) -> bool:
    """A module-path name such as `encoder.layer.0.attention.self.query.bias` (not `onnx::Add_12`, `val_3`)."""
    head, dot, leaf = name.rpartition(".")
    return bool(dot and head) and "::" not in name and "/" not in name and leaf in _NAMED_LEAVES


def recover_names(model: OnnxModel, tensors: list[StoredTensor], uses: dict[str, tuple[Node, int]],
                  values: dict[str, str]) -> dict[str, str]:
    """The name to present for each tensor (stored name → name), unique; named tensors keep theirs, and so do
    quantised ones whose dequantised value (`values`: stored name → value name) has a module-path name."""
    taken = set(model.tensors) | set(model.unread)
    out: dict[str, str] = {}
    anonymous: list[StoredTensor] = []
    named_inputs: dict[int, list[str]] = {}  # per node, its first two named tensor inputs (fan-in can be huge)
    for t in tensors:
        if is_named(t.name):
            out[t.name] = t.name
            continue
        use = uses.get(t.name)
        value = values.get(t.name, "")
        name = value if is_named(value) else _from_graph(model, t, use, named_inputs) if use else None
        if name and name not in taken:
            taken.add(name)
            out[t.name] = name
        else:
            anonymous.append(t)
    order = {id(node): i for i, node in enumerate(model.nodes)}
    for stored, name in _positional(anonymous, uses, order).items():
        final = name if name not in taken else stored
        taken.add(final)
        out[stored] = final
    return out


def use_of(model: OnnxModel, name: str) -> tuple[Node, int] | None:
    """The first node that uses tensor `name`, past Transpose/Cast/Reshape-like steps that only pass it on."""
    uses = model.consumers.get(name)
    if not uses:
        return None
    node, idx = uses[0]
    for _ in range(8):
        if node.op_type not in _PASS_THROUGH or not node.outputs:
            break
        nxt = model.consumers.get(node.outputs[0])
        if not nxt:
            break
        node, idx = nxt[0]
    return node, idx


def _leaf(node: Node, idx: int, t: StoredTensor) -> str:
    leaf = _LEAVES.get((node.op_type, idx))
    if leaf:
        return leaf
    if len(t.dims) == 1:
        return "bias" if node.op_type in _BIAS_OPS or node.op_type in MATMUL_OPS else "weight"
    return "weight"  # a matrix added to activations is a table (a pre-sliced position embedding), not a bias


def module_path(node: Node) -> str | None:
    """The module a node belongs to: torch.onnx's name scope, or its `/a/b/c/Op` name without the operator."""
    if node.scope:
        return node.scope
    parts = [p for p in node.name.split("/") if p] if node.name.startswith("/") else []
    return ".".join(parts[:-1]) if len(parts) >= 2 else None


def _from_graph(model: OnnxModel, t: StoredTensor, use: tuple[Node, int], named_inputs: dict[int, list[str]]
                ) -> str | None:
    node, idx = use
    path = module_path(node)
    beside = _neighbour_prefix(model, node, t.name, named_inputs)
    # an exporter's node paths may carry the wrapper module the initialiser names lack
    # (`/model/model.0/auto_model/…/query/MatMul` beside `model.0.auto_model.….query.bias`): the tensors'
    # own naming wins, so one layer's tensors share one prefix
    prefix = beside if beside and (not path or path == beside or path.endswith("." + beside)) else path
    return f"{prefix}.{_leaf(node, idx, t)}" if prefix else None


def _prefix(name: str) -> str | None:
    return name.rpartition(".")[0] if is_named(name) else None


def _named(model: OnnxModel, node: Node, cache: dict[int, list[str]]) -> list[str]:
    """The first two named tensor inputs of a node, computed once per node."""
    found = cache.get(id(node))
    if found is None:
        found = cache[id(node)] = []
        for name in node.inputs:
            if name in model.tensors and _prefix(name):
                found.append(name)
                if len(found) == 2:
                    break
    return found


def _neighbour_prefix(model: OnnxModel, node: Node, own: str, cache: dict[int, list[str]]) -> str | None:
    """The module path of a named tensor beside this one: in the same node, on the Add after a MatMul, or on
    the MatMul before a bias Add."""
    sibling = next((n for n in _named(model, node, cache) if n != own), None)
    if sibling is not None:
        return _prefix(sibling)
    if node.op_type in MATMUL_OPS:
        cur = node
        for _ in range(_MAX_FORWARD):
            uses = model.consumers.get(cur.outputs[0]) if cur.outputs else None
            if not uses or len(uses) != 1:
                return None
            cur = uses[0][0]
            if cur.op_type in _BIAS_OPS:
                named = _named(model, cur, cache)
                return _prefix(named[0]) if named else None
            if cur.op_type not in ("Cast", "Mul"):
                return None
    if node.op_type in _BIAS_OPS:
        for name in node.inputs[:2]:  # Add and Sub take two inputs
            producer = model.producers.get(name)
            if producer is not None and producer.op_type in MATMUL_OPS:
                named = _named(model, producer, cache)
                return _prefix(named[0]) if named else None
    return None


def _positional(tensors: list[StoredTensor], uses: dict[str, tuple[Node, int]], order: dict[int, int]
                ) -> dict[str, str]:
    """Names from the position in the layer sequence: the longest run of a repeated (operator, leaf, dims)
    pattern is the layer stack (`layers.<i>.<op><j>.<leaf>`); tensors outside it are `<op><k>.<leaf>`."""
    if not tensors:
        return {}
    placed = sorted(tensors, key=lambda t: order.get(id(uses[t.name][0]), -1) if t.name in uses else -1)
    sigs: list[tuple[str, str, tuple[int, ...]]] = []
    for t in placed:
        node, idx = uses.get(t.name, (None, 0))
        sigs.append((node.op_type if node else "unused", _leaf(node, idx, t) if node else "weight", t.dims))
    start, period, count = _repeat(sigs) if len(sigs) <= _MAX_POSITIONAL else (0, 0, 0)
    out: dict[str, str] = {}
    counters: dict[str, int] = {}
    for i, (t, (op, leaf, _)) in enumerate(zip(placed, sigs)):
        op = op.lower()
        if period and start <= i < start + period * count:
            layer, j = divmod(i - start, period)
            out[t.name] = f"layers.{layer}.{op}{j}.{leaf}"
        else:
            k = counters[op] = counters.get(op, -1) + 1
            out[t.name] = f"{op}{k}.{leaf}"
    return out


def _repeat(sigs: list[tuple[str, str, tuple[int, ...]]]) -> tuple[int, int, int]:
    """(start, period, repeats) of the longest stretch made of ≥ 2 repeats of one pattern; (0, 0, 0) if none.

    Of the phases that cover as much, the one whose unit starts at a matrix product is taken: a layer starts
    with its attention projection, not with the previous layer's norm that looks the same.
    """
    n = len(sigs)
    best, stretch = (0, 0, 0), (0, 0)
    for period in range(1, min(_MAX_PERIOD, n // 2) + 1):
        run = 0
        for i in range(n - period):
            run = run + 1 if sigs[i] == sigs[i + period] else 0
            count = (run + period) // period
            if count >= 2 and count * period > best[1] * best[2]:
                best, stretch = (i - run + 1, period, count), (i - run + 1, run + period)
            elif run and best[:2] == (i - run + 1, period):
                stretch = (stretch[0], run + period)  # the same stretch, longer than its whole repeats
    start, period, count = best
    if period:
        slack = stretch[1] - count * period
        start = next((s for s in range(stretch[0], stretch[0] + slack + 1) if sigs[s][0] in MATMUL_OPS), start)
    return start, period, count
