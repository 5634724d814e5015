"""A small code index built from the installed transformers package (Apache-2.0) and torch's nn modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelprov.code import CodeIndex

# Families the 2026 accusations were about, the Llama lineage they copy from, and unrelated architectures.
MODELS = ("llama", "mistral", "qwen2", "qwen3", "gemma", "deepseek_v3", "glm4_moe", "glm4", "qwen2_moe", "bert", "gpt2", "t5", "mixtral")


@pytest.fixture(scope="session")
def code_index(tmp_path_factory) -> Path:
    """Index directory with transformers' modelling files of MODELS and a torch background."""
    directory = tmp_path_factory.mktemp("code_index")
    index = CodeIndex(directory)
    index.add(
        "pip:transformers",
        name="transformers",
        license="Apache-2.0",
        include=[f"models/{m}/modeling_{m}.py" for m in MODELS],
    )
    index.add("pip:torch/nn/modules", name="torch-nn", license="BSD-3-Clause", role="background")
    return directory


@pytest.fixture(scope="session")
def qwen2_source(transformers_models_dir) -> str:
    return (transformers_models_dir / "qwen2" / "modeling_qwen2.py").read_text(encoding="utf-8")
