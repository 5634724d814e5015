"""Tokenising with tree-sitter and stable winnowing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from modelprov.code.fingerprint import DEFAULT_PARAMS, file_fingerprints, kgram_hashes, kgram_hashes_at, token_id, winnow
from modelprov.code.tokenize import tokenize_file, tokenize_source

PY = b'''
import torch

def top(x):
    """Docstring that must not count."""
    # a comment
    return torch.relu(x) * 2


class Block(torch.nn.Module):
    scale = 0.5

    def forward(self, x, name="s"):
        def inner(y):
            return y + 1
        return inner(x) * self.scale
'''


def test_units_have_qualified_names_and_lines():
    tokens = tokenize_source(PY, "python")
    names = [(u.qualname, u.kind, u.start_line) for u in tokens.units]
    assert names == [
        ("<module>", "module", 1),
        ("top", "function", 4),
        ("Block", "class", 10),
        ("Block.forward", "function", 13),
        ("Block.forward.inner", "function", 14),
    ]


def test_abstraction_drops_comments_docstrings_and_names():
    plain = tokenize_source(PY, "python")
    texts = [plain.text(i) for i in range(len(plain))]
    assert "# a comment" not in texts and not any("Docstring" in t for t in texts)
    assert '"s"' in texts  # ordinary strings stay in the lexical stream
    renamed = PY.replace(b"top", b"other_name").replace(b"inner", b"helper").replace(b"0.5", b"0.25")
    renamed = renamed.replace(b"# a comment", b"# different words").replace(b'"s"', b'"t"')
    assert np.array_equal(tokenize_source(renamed, "python").ids, plain.ids)


def test_token_ids_are_stable_across_interpreters():
    code = (
        "import json, numpy as np;"
        "from modelprov.code.fingerprint import token_id, kgram_hashes;"
        "ids = np.array([token_id(t) for t in ['ID', '=', 'ID', '(', 'NUM', ')'] * 5], dtype=np.uint64);"
        "print(json.dumps([int(h) for h in kgram_hashes(ids, 5)]))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1] and json.loads(runs[0])
    assert token_id("ID") == int.from_bytes(__import__("hashlib").blake2b(b"ID", digest_size=8).digest(), "little")


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.lists(st.integers(0, 6), max_size=40),
    shared=st.lists(st.integers(0, 6), min_size=DEFAULT_PARAMS.guarantee, max_size=80),
    suffix=st.lists(st.integers(0, 6), max_size=40),
    other=st.lists(st.integers(0, 6), max_size=40),
)
def test_winnowing_guarantee(prefix, shared, suffix, other):
    """A common run of at least t = k + w - 1 tokens always shares a fingerprint (Schleimer et al.)."""
    k, w = DEFAULT_PARAMS.k, DEFAULT_PARAMS.window
    a = np.array([token_id(str(t)) for t in prefix + shared + suffix], dtype=np.uint64)
    b = np.array([token_id(str(t)) for t in other + shared], dtype=np.uint64)
    ha, hb = kgram_hashes(a, k), kgram_hashes(b, k)
    assert set(ha[winnow(ha, w)].tolist()) & set(hb[winnow(hb, w)].tolist())


def test_file_fingerprints_stay_inside_units():
    tokens = tokenize_source(PY, "python")
    hashes, units, positions = file_fingerprints(tokens.ids, tokens.unit_of)
    assert hashes.shape == units.shape == positions.shape
    assert set(units.tolist()) <= set(range(len(tokens.units)))
    k = DEFAULT_PARAMS.k
    grouped = np.argsort(tokens.unit_of, kind="stable")  # positions index the tokens grouped by unit
    unit_of = tokens.unit_of[grouped]
    for unit, start in zip(units.tolist(), positions.tolist()):
        assert (unit_of[start : start + k] == unit).all()  # the k-gram starts in, and stays in, its unit
    # an index stores only the positions: the hashes are recomputed from the tokens alone
    assert np.array_equal(kgram_hashes_at(tokens.ids[grouped], positions, k), hashes)


def test_cuda_and_cpp_units():
    import torch

    cuh = sorted((Path(torch.__file__).parent / "include/ATen/native/cuda").glob("*.cuh"))
    assert cuh, "torch ships CUDA headers"
    tokens = tokenize_file(cuh[0])
    assert tokens.language == "cuda" and len(tokens) > 100
    assert any(u.kind == "function" for u in tokens.units)
    cpp = tokenize_source(b"namespace at { int Foo::bar(int x) { return x * 2; } }\n", "cpp")
    assert [u.qualname for u in cpp.units] == ["<module>", "at", "at.Foo.bar"]
