"""The nearest-source ranking on a small synthetic index: a file that only relays code it declares copied
from other files is not named as the source of that code; a file with code of its own is, for its copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelprov.code import CodeIndex, scan_code

# Four functions of distinct shapes (their abstracted token streams differ), each well over the 40
# evidence tokens a finding needs.
ROUTER = '''
def route_tokens(scores, top_k, groups):
    picked = []
    for row in scores:
        best = sorted(range(len(row)), key=lambda i: -row[i])[:top_k]
        weight = sum(row[i] for i in best) or 1.0
        picked.append([(i % groups, row[i] / weight) for i in best])
    return picked
'''
NORM = '''
def scaled_norm(values, eps=1e-6, offset=1.0):
    mean = sum(v * v for v in values) / max(len(values), 1)
    scale = (mean + eps) ** -0.5
    if offset:
        return [v * scale * (offset + 0.5) for v in values]
    return [v * scale for v in values]
'''
WINDOW = '''
def sliding_window_mask(length, window, causal=True):
    mask = [[0] * length for _ in range(length)]
    for q in range(length):
        lo = max(0, q - window + 1)
        hi = q + 1 if causal else min(length, q + window)
        for k in range(lo, hi):
            mask[q][k] = 1
    return mask
'''
OWN = '''
def merge_experts(outputs, gates, shared=None):
    total = {}
    for name, out in outputs.items():
        gate = gates.get(name, 0.0)
        while gate > 1.0:
            gate /= 2.0
        total[name] = [gate * o for o in out]
    if shared is not None:
        total["shared"] = list(shared)
    return total
'''


def _copied(module: str, code: str) -> str:
    """`code` with a `# Copied from module.function` declaration above its definition."""
    name = code.split("def ", 1)[1].split("(", 1)[0]
    return f"\n# Copied from {module}.{name}\n{code.lstrip()}"


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    """Two originals, a relay of them (declared copies only) and a file adding code of its own."""
    code = tmp_path_factory.mktemp("reference")
    (code / "moe_a.py").write_text(ROUTER + NORM, encoding="utf-8")
    (code / "attn_b.py").write_text(WINDOW, encoding="utf-8")
    (code / "relay.py").write_text(_copied("moe_a", ROUTER) + _copied("moe_a", NORM) + _copied("attn_b", WINDOW),
                                   encoding="utf-8")
    (code / "extended.py").write_text(_copied("moe_a", ROUTER) + _copied("moe_a", NORM) + _copied("attn_b", WINDOW) + OWN,
                                      encoding="utf-8")
    directory = tmp_path_factory.mktemp("index")
    CodeIndex(directory).add(code, name="toy", version="1", license="MIT")
    return directory


def _sources(index: Path, tmp_path: Path, text: str) -> list[str]:
    subject = tmp_path / "bidder.py"
    subject.write_text(text, encoding="utf-8")
    return [s.path for s in scan_code(subject, index).files[0].sources]


def test_a_relay_of_declared_copies_is_not_the_nearest_source(index, tmp_path):
    """The subject holds moe_a's and attn_b's code; relay.py and extended.py hold all of it in one file, but
    relay.py declares every function copied and adds nothing: the code's own files are named (a ranking by
    shared evidence alone named relay.py, which explains the most)."""
    sources = _sources(index, tmp_path, ROUTER + NORM + WINDOW)
    assert sources[:2] == ["moe_a.py", "attn_b.py"]
    assert "relay.py" not in sources and "extended.py" not in sources


def test_a_file_with_code_of_its_own_is_the_nearest_source_of_its_copy(index, tmp_path):
    """An exact copy of extended.py is attributed to extended.py: it holds merge_experts, which no declared
    source of it holds (the relay rule must not send every copy up the declared chain)."""
    sources = _sources(index, tmp_path, ROUTER + NORM + WINDOW + OWN)
    assert sources[0] == "extended.py"


def test_between_equal_copies_the_earliest_written_is_the_nearest_source(tmp_path):
    """Two reference files hold the same code and declare nothing: the one whose copyright names the earlier
    year is named, whatever the file order (the first file in the index was named before)."""
    code = tmp_path / "reference"
    code.mkdir()
    (code / "a_later.py").write_text("# Copyright 2024 B\n" + ROUTER + NORM, encoding="utf-8")
    (code / "z_earlier.py").write_text("# Copyright 2020-2023 A\n" + ROUTER + NORM, encoding="utf-8")
    index = tmp_path / "index"
    CodeIndex(index).add(code, name="toy", version="1", license="MIT")
    assert _sources(index, tmp_path, ROUTER + NORM)[0] == "z_earlier.py"
