"""Issue 17's hostile inputs through the real CLI, each in a fresh process killed after 60 s: one line naming the
file and the problem and exit 2 (or, where the input is legitimate, a clean result); never a hang, a traceback
or a raw terminal escape. benchmarks/hostile_inputs.py measures the same cases' time and peak RSS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.hostile_inputs import CASES, Case, gguf_file, gguf_kv_array, gguf_string, run_case
from modelprov._inputs import json_depth, load_json
from modelprov.errors import CheckpointError, ProvenanceError
from modelprov.reader import open_checkpoint
from modelprov.text import printable
from modelprov.weights import inspect_checkpoint


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_hostile_input_through_the_cli(case: Case, tmp_path: Path) -> None:
    outcome = run_case(case, tmp_path)
    assert outcome.exit_code is not None, f"{case.name} hung (killed after 60 s)"
    assert "Traceback" not in outcome.stderr and "internal error" not in outcome.stderr, outcome.stderr
    assert "\x1b" not in outcome.stdout and "\x1b" not in outcome.stderr  # no raw escape reaches the terminal
    assert outcome.exit_code == case.exit_code, (outcome.stdout[-2000:], outcome.stderr)
    if case.exit_code == 2:
        lines = [line for line in outcome.stderr.strip().splitlines()
                 if not line.startswith("modelprov: waiting for the Hub:")]  # a status line, not an error
        assert len(lines) == 1 and lines[0].startswith("modelprov: error: "), outcome.stderr
        assert case.expect in lines[0], lines[0]
        assert str(tmp_path) in lines[0] or "hf://" in lines[0]  # names the file
    else:
        assert case.expect in outcome.stdout, outcome.stdout[-3000:]


def test_markup_names_print_as_themselves(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "name-markup-and-escapes")
    out = run_case(case, tmp_path).stdout
    assert "[bold red]RED[/bold red]  F32" in out
    assert "a\\x1b[2Jb" in out and "\\x1b]0;owned" in out


# --- GGUF: our bounded parser -------------------------------------------------------------------------------

def test_gguf_counts_are_bounded_by_the_file_size(tmp_path: Path) -> None:
    cases = {
        "string array": gguf_file([gguf_kv_array("tokenizer.ggml.tokens", 8, 1 << 60)]),
        "u64 array": gguf_file([gguf_kv_array("general.a", 10, 1 << 61)]),
        "tensor count": b"GGUF" + (3).to_bytes(4, "little") + (1 << 50).to_bytes(8, "little") + bytes(8) + bytes(40),
        "string": gguf_file([gguf_string("general.name") + (8).to_bytes(4, "little") + (1 << 62).to_bytes(8, "little")]),
        "key": b"GGUF" + (3).to_bytes(4, "little") + bytes(8) + (1).to_bytes(8, "little") + (1 << 40).to_bytes(8, "little") + bytes(16),
        "dims": gguf_file([], [("w", [2, 3, 4, 5, 6], 0)]),
        "nested array": gguf_file([gguf_kv_array("general.a", 9, 2) + bytes(24)]),
        "tensor data": gguf_file([], [("blk.0.w", [1 << 40, 1 << 20], 0)]),
        # found by the CI fuzzer: a 0 dimension made the size 0, so the other one (2^64 − 2^59) passed and
        # row selection overflowed int64
        "zero dimension": gguf_file([], [("blk.0.w", [0, 17870283321406128128], 0)]),
    }
    for what, data in cases.items():
        f = tmp_path / f"{what.replace(' ', '_')}.gguf"
        f.write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            open_checkpoint(f)
        assert str(f) in err.value.one_line(), what


def test_gguf_tokenizer_arrays_are_decoded_only_when_asked_for(tmp_path: Path) -> None:
    bad_token = gguf_string(b"\xff\xfe")  # not UTF-8: only decoding the array can notice
    kv = gguf_string("tokenizer.ggml.tokens") + (9).to_bytes(4, "little") + (8).to_bytes(4, "little")
    kv += (2).to_bytes(8, "little") + gguf_string("a") + bad_token
    f = tmp_path / "lazy.gguf"
    f.write_bytes(gguf_file([kv, gguf_string("general.architecture") + (8).to_bytes(4, "little") + gguf_string("llama")],
                            [("output_norm.weight", [4], 0)], np.ones(4, np.float32).tobytes()))
    with open_checkpoint(f) as ckpt:  # opens, lists and reads without decoding the tokens
        assert ckpt.config["vocab_size"] == 2
        np.testing.assert_array_equal(ckpt.read("output_norm.weight"), np.ones(4))
        with pytest.raises(CheckpointError, match="not UTF-8"):
            ckpt.metadata["tokenizer.ggml.tokens"]


def test_gguf_metadata_equals_the_gguf_library(smollm2_gguf: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(smollm2_gguf)
    with open_checkpoint(smollm2_gguf) as ckpt:
        for key, field in reader.fields.items():
            if key.startswith("GGUF."):
                continue
            value = field.contents()
            if isinstance(value, list) and len(value) > 4096 and not key.startswith("tokenizer."):
                value = {"array_length": len(value)}
            assert ckpt.metadata[key] == value, key
        assert set(ckpt.metadata) == {k for k in reader.fields if not k.startswith("GGUF.")}


# --- JSON, files, links ---------------------------------------------------------------------------------------

def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth('{"a": [1, {"b": "[[[[[[", "c": "\\"[[["}]}') == 3
    assert json_depth("[" * 100 + "]" * 100) == 100
    assert json_depth('"' + "[" * 1000) == 0  # an unterminated string runs to the end
    assert json_depth('["\\\\", [[]]]') == 3  # an escaped backslash ends before the quote


def test_json_loader_limits(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text('{"a":' * 65 + "1" + "}" * 65)
    with pytest.raises(ProvenanceError, match="nesting deeper than 64"):
        load_json(f)
    f.write_text('{"a":' * 64 + "1" + "}" * 64)
    assert isinstance(load_json(f), dict)
    f.write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(ProvenanceError, match="too large"):
        load_json(f, max_bytes=100)


def test_symlinked_shard_is_named_in_the_report(tmp_path: Path) -> None:
    case = next(c for c in CASES if c.name == "symlink-shard-named")
    case.build(tmp_path)
    files = inspect_checkpoint(tmp_path / "ckpt", hash_files=False).subject().files
    [shard] = files
    assert shard.link_target == str((tmp_path / "elsewhere" / "secret.safetensors").resolve())
    with pytest.raises(CheckpointError, match="outside the checkpoint folder"):
        open_checkpoint(tmp_path / "ckpt", follow_symlinks=False)
    from modelprov.report import render
    from modelprov.scan import scan

    report = scan(tmp_path / "ckpt", hash_files=False, tokenizer=False, code=False)
    target = str((tmp_path / "elsewhere" / "secret.safetensors").resolve())
    assert report.to_dict()["subject"]["files"][0]["link_target"] == target
    for fmt in ("md", "html"):
        assert "symbolic link: leaves the checkpoint folder" in render(report, fmt), fmt


def test_control_characters_become_visible() -> None:
    assert printable("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert printable("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert printable("r\u202eevil") == "r\\u202eevil"
    assert printable("two\nlines", newlines=True) == "two\nlines"
    assert printable("plain name.weight") == "plain name.weight"
    assert json.loads(json.dumps(printable("\x9b31m"))) == "\\x9b31m"  # C1 CSI too


def test_error_lines_show_escapes_from_file_names() -> None:
    err = CheckpointError("model\x1b[2J.safetensors", "tensor 'a\x1b]0;t\x07' is bad")
    assert err.one_line() == "model\\x1b[2J.safetensors: tensor 'a\\x1b]0;t\\x07' is bad"


@pytest.mark.parametrize("meta", [
    {"format_version": 2, "entries": [], "digest": ""},  # found by the CI fuzzer: AttributeError at the digest
    {"format_version": 2, "entries": [], "files": {"weights/a.json": 7}},
    {"format_version": "2", "entries": []},
])
def test_a_malformed_sealed_file_list_is_one_error_naming_index_json(tmp_path: Path, meta: dict) -> None:
    from modelprov.errors import ReferenceIndexError
    from modelprov.index import ReferenceIndex

    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ReferenceIndexError) as err:
        ReferenceIndex.load(tmp_path).verify()
    assert str(tmp_path / "index.json") in err.value.one_line()
