"""Small synthetic models for weights tests: named like BERT, random matrices, norm weights near 1."""

from __future__ import annotations

import numpy as np


def bert_like(seed: int, norms: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """A 4-layer BERT-named model (hidden 128, MLP 512, vocabulary 1000) as float32 arrays; `norms` replace
    the LayerNorm tensors of the same names."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {"embeddings.word_embeddings.weight": rng.standard_normal((1000, 128)) * 0.02}
    for i in range(4):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            sd[p + name + ".weight"] = rng.standard_normal((128, 128)) * 0.02
        sd[p + "intermediate.dense.weight"] = rng.standard_normal((512, 128)) * 0.02
        sd[p + "output.dense.weight"] = rng.standard_normal((128, 512)) * 0.02
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            sd[p + ln + ".weight"] = 1.0 + 0.05 * rng.standard_normal(128)
            sd[p + ln + ".bias"] = 0.01 * rng.standard_normal(128)
    sd.update(norms or {})
    return {k: v.astype(np.float32) for k, v in sd.items()}
