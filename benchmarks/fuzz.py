"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser a hostile file reaches: safetensors headers, GGUF,
ONNX, tokenizer files, policy and declaration files, and index archives.

    python -m benchmarks.fuzz --runs 100000 --markdown    # the benchmark: >= 100k inputs per format, counts to docs
    python -m benchmarks.fuzz --seconds 10 --check        # CI (`make test`): ~10 s per format, fails on any finding

Each format runs in its own process (atheris instruments `modelprov` only), started from a few valid seed files
written here, and every input is written to a file and read through the public API as a user's file would be
(open, list, read rows; read a tokenizer; load a policy; import an archive). Each input ends as a clean read, a
project error (`ProvenanceError`: one line naming the file), another exception (a bug: its input is kept under
`benchmarks/_work/fuzz/<format>/`), or takes longer than 2 s. libFuzzer kills an input after 20 s (a hang).
`--markdown` writes the counts into docs/reader.md between its `fuzz-benchmark` markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work" / "fuzz"
DOC = ROOT / "docs" / "reader.md"
FORMATS = ("safetensors", "gguf", "onnx", "tokenizer", "policy", "index-archive")
SLOW_S = 2.0
HANG_S = 20
_MARK_START, _MARK_END = "<!-- fuzz-benchmark:start -->", "<!-- fuzz-benchmark:end -->"


# --- seeds: small valid files each parser accepts ----------------------------------------------------------

def _seeds(fmt: str, folder: Path) -> None:
    """Write a few valid inputs of `fmt` into `folder` (libFuzzer's starting corpus)."""
    import numpy as np

    from benchmarks.hostile_inputs import gguf_file, gguf_string, tiny_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        (folder / "a").write_bytes(tiny_safetensors(["model.layers.0.mlp.up_proj.weight", "model.norm.weight"]))
        header = {"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]},
                  "q": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [12, 16]}}
        raw = json.dumps(header).encode()
        (folder / "b").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(range(16)))
    elif fmt == "gguf":
        arch = gguf_string("general.architecture") + struct.pack("<I", 8) + gguf_string("llama")
        tokens = gguf_string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + b"".join(
            gguf_string(t) for t in ("a", "b", "ab"))
        model = gguf_string("tokenizer.ggml.model") + struct.pack("<I", 8) + gguf_string("gpt2")
        merges = gguf_string("tokenizer.ggml.merges") + struct.pack("<IIQ", 9, 8, 1) + gguf_string("a b")
        layers = gguf_string("llama.block_count") + struct.pack("<II", 4, 1)
        data = np.arange(64, dtype=np.float32).tobytes()
        (folder / "a").write_bytes(gguf_file([arch, layers, tokens, model, merges],
                                             [("blk.0.attn_q.weight", [8, 2], 0), ("output_norm.weight", [8], 0)],
                                             data + data[:32]))
        q8 = bytes(34 * 2)
        (folder / "b").write_bytes(gguf_file([arch], [("blk.0.ffn_up.weight", [32, 2], 8)], q8))
    elif fmt == "onnx":
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(3, 4), "encoder.layer.0.dense.weight")
        b = numpy_helper.from_array(np.ones(4, np.float32), "encoder.layer.0.dense.bias")
        q = numpy_helper.from_array(np.arange(12, dtype=np.int8).reshape(3, 4), "q_weight")
        s = numpy_helper.from_array(np.array(0.5, np.float32), "q_scale")
        z = numpy_helper.from_array(np.array(0, np.int8), "q_zero")
        nodes = [helper.make_node("MatMul", ["x", "encoder.layer.0.dense.weight"], ["h"]),
                 helper.make_node("Add", ["h", "encoder.layer.0.dense.bias"], ["y0"]),
                 helper.make_node("DequantizeLinear", ["q_weight", "q_scale", "q_zero"], ["wq"]),
                 helper.make_node("MatMul", ["x", "wq"], ["y1"]), helper.make_node("Add", ["y0", "y1"], ["y"])]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, b, q, s, z])
        (folder / "a").write_bytes(helper.make_model(graph).SerializeToString())
        onnx.checker.check_model(onnx.load_from_string((folder / "a").read_bytes()))
    elif fmt == "tokenizer":  # first byte picks the kind (see `_tokenizer`)
        doc = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": ["a b"]},
               "added_tokens": [{"id": 4, "content": "<s>", "special": True}],
               "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}
        (folder / "a").write_bytes(b"\x00" + json.dumps(doc).encode())
        (folder / "b").write_bytes(b"\x01" + b"YQ== 0\nYg== 1\nYWI= 2\n")
        (folder / "c").write_bytes(b"\x02" + b"[PAD]\n[UNK]\nthe\n##s\n")
        (folder / "d").write_bytes(b"\x03" + json.dumps({"a": 0, "b": 1, "ab": 2}).encode())
    elif fmt == "policy":  # first byte: 0 policy TOML, 1 declaration TOML, 2 declaration YAML, 3 declaration JSON
        presets = ROOT / "modelprov" / "policy" / "presets"
        for i, preset in enumerate(sorted(presets.glob("*.toml"))[:2]):
            (folder / f"p{i}").write_bytes(b"\x00" + preset.read_bytes())
        decl = ('[bidder]\nname = "A"\ncountry = "KR"\n\n[[reuse]]\ncomponent = "tokenizer"\n'
                'reference = "qwen3"\nlicense = "Apache-2.0"\n')
        (folder / "d1").write_bytes(b"\x01" + decl.encode())
        (folder / "d2").write_bytes(b"\x02" + b"bidder:\n  name: A\n  country: KR\nreuse: []\n")
        (folder / "d3").write_bytes(b"\x03" + json.dumps({"bidder": {"name": "A", "country": "KR"}}).encode())
    elif fmt == "index-archive":
        from modelprov.index import ReferenceIndex, export_index

        with tempfile.TemporaryDirectory() as tmp:
            ReferenceIndex.create(Path(tmp) / "idx", name="fuzz").save()
            export_index(Path(tmp) / "idx", Path(tmp) / "a.tar")
            shutil.copy(Path(tmp) / "a.tar", folder / "a")


# --- what one input goes through -----------------------------------------------------------------------------

def _read_checkpoint(path: Path) -> None:
    from modelprov.reader import open_checkpoint

    with open_checkpoint(path) as ckpt:
        for info in list(ckpt.tensors())[:16]:
            ckpt.read_rows(info.name, slice(0, 2))
            ckpt.read_rows(info.name, [info.rows - 1] if info.rows else [])
        for key in list(getattr(ckpt, "metadata", {}))[:64]:
            ckpt.metadata[key]  # decodes lazily held arrays (GGUF tokenizer arrays)
    if path.suffix == ".gguf":
        from modelprov.reader.tokenizer import read_tokenizer

        read_tokenizer(path).fingerprint()


def _tokenizer(data: bytes, tmp: Path) -> Path:
    from modelprov.reader.tokenizer import read_tokenizer

    kind = data[0] % 4 if data else 0
    body = data[1:]
    if kind == 3:
        (tmp / "merges.txt").write_bytes(b"#version: 0.2\na b\n")
    name = ("tokenizer.json", "vocab.tiktoken", "vocab.txt", "vocab.json")[kind]
    (tmp / name).write_bytes(body)
    read_tokenizer(tmp / name).fingerprint()
    return tmp / name


def _policy(data: bytes, tmp: Path) -> Path:
    from modelprov.policy import load_declaration, load_policy

    kind = data[0] % 4 if data else 0
    name = ("policy.toml", "declaration.toml", "declaration.yaml", "declaration.json")[kind]
    (tmp / name).write_bytes(data[1:])
    if kind == 0:
        load_policy(tmp / name)
    else:
        load_declaration(tmp / name)
    return tmp / name


def _archive(data: bytes, tmp: Path) -> Path:
    from modelprov.index import import_index

    f = tmp / "index.tar"
    f.write_bytes(data)
    import_index(f, tmp / "dest", digest=hashlib.sha256(data).hexdigest())
    return f


def _checkpoint(suffix: str) -> Callable[[bytes, Path], Path]:
    def run(data: bytes, tmp: Path) -> Path:
        f = tmp / f"model{suffix}"
        f.write_bytes(data)
        try:
            _read_checkpoint(f)
        finally:
            f.unlink()
        return f
    return run


TARGETS: dict[str, Callable[[bytes, Path], Path]] = {
    "safetensors": _checkpoint(".safetensors"), "gguf": _checkpoint(".gguf"), "onnx": _checkpoint(".onnx"),
    "tokenizer": _tokenizer, "policy": _policy, "index-archive": _archive,
}


# --- one format in this process --------------------------------------------------------------------------------

def fuzz_one(fmt: str, runs: int | None, seconds: float | None, counts_file: Path) -> None:
    """Fuzz `fmt` in this process (atheris takes over; it exits when done)."""
    import atheris

    with atheris.instrument_imports(include=["modelprov"]):
        import modelprov.index  # noqa: F401  (instrumented: coverage guides the mutations)
        import modelprov.policy  # noqa: F401
        import modelprov.reader  # noqa: F401
        import modelprov.reader.tokenizer  # noqa: F401
    from modelprov.errors import ProvenanceError

    corpus = WORK / fmt / "corpus"
    crashes = WORK / fmt / "findings"
    seeds = WORK / fmt / "seeds"
    shutil.rmtree(seeds, ignore_errors=True)
    _seeds(fmt, seeds)
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    counts = {"format": fmt, "inputs": 0, "clean": 0, "project_errors": 0, "other_exceptions": 0, "slow": 0,
              "slowest_s": 0.0, "examples": {}}
    target = TARGETS[fmt]
    shm = Path("/dev/shm")  # a memory file system where there is one: creating and removing files is the cost
    scratch = Path(tempfile.mkdtemp(prefix=f"fuzz-{fmt}-", dir=shm if shm.is_dir() else None))

    fd = os.open(counts_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def test_one(data: bytes) -> None:
        folder = scratch / "in"
        folder.mkdir(exist_ok=True)
        for entry in folder.iterdir():  # empty it (removing and remaking the folder costs more)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink()
        start = time.monotonic()
        outcome = "clean"
        try:
            target(data, folder)
        except ProvenanceError as err:
            outcome = "project_errors"
            if "\n" in err.one_line():
                outcome = "other_exceptions"
        except Exception as exc:  # a bug: keep the input and the trace
            outcome = "other_exceptions"
            digest = hashlib.sha1(data).hexdigest()[:16]
            (crashes / f"{digest}.bin").write_bytes(data)
            (crashes / f"{digest}.txt").write_text("".join(traceback.format_exception(exc)))
            counts["examples"].setdefault(type(exc).__name__, f"{digest}: {str(exc)[:160]}")
        elapsed = time.monotonic() - start
        counts["inputs"] += 1
        counts[outcome] += 1
        counts["slowest_s"] = max(counts["slowest_s"], round(elapsed, 3))
        if elapsed > SLOW_S:
            counts["slow"] += 1
            digest = hashlib.sha1(data).hexdigest()[:16]
            (crashes / f"slow-{digest}.bin").write_bytes(data)
        text = json.dumps(counts).encode()  # libFuzzer ends the process with exit(): keep the file current
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)

    args = [sys.argv[0], str(corpus), str(seeds), f"-timeout={HANG_S}", "-rss_limit_mb=2048", "-max_len=65536",
            "-print_final_stats=1"]
    if runs:
        args.append(f"-runs={runs}")
    if seconds:
        args.append(f"-max_total_time={int(max(1, seconds))}")
    atheris.Setup(args, test_one)
    atheris.Fuzz()


# --- the driver -------------------------------------------------------------------------------------------------

def run_format(fmt: str, runs: int | None, seconds: float | None) -> dict:
    """Fuzz one format in a fresh process; its counts (a libFuzzer timeout counts as a hang)."""
    counts_file = WORK / fmt / "counts.json"
    counts_file.parent.mkdir(parents=True, exist_ok=True)
    counts_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.fuzz", "--one", fmt, "--counts", str(counts_file)]
    cmd += ["--runs", str(runs)] if runs else []
    cmd += ["--seconds", str(seconds)] if seconds else []
    start = time.monotonic()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    counts = json.loads(counts_file.read_text()) if counts_file.exists() else {"format": fmt, "inputs": 0}
    counts["seconds"] = round(time.monotonic() - start, 1)
    counts["hangs"] = int("timeout" in done.stderr.lower() and "ERROR: libFuzzer" in done.stderr)
    counts["fuzzer_exit"] = done.returncode
    counts["runs_requested"] = runs
    if done.returncode != 0:
        counts["fuzzer_tail"] = done.stderr[-1500:]
    (WORK / fmt / "result.json").write_text(json.dumps(counts, indent=1))
    return counts


def _collected(fmt: str, runs: int | None) -> dict:
    """The last run of `fmt`: its result, or (when its driver was stopped) the counts its fuzzer kept writing; a
    fuzzer that reached every requested run had no hang (libFuzzer stops at the first)."""
    result, counts = WORK / fmt / "result.json", WORK / fmt / "counts.json"
    if result.exists() and result.stat().st_mtime >= counts.stat().st_mtime:
        return json.loads(result.read_text())
    found = json.loads(counts.read_text())
    found["runs_requested"] = runs
    found["hangs"] = 0 if runs and found["inputs"] >= runs else "?"
    return found


def _table(results: list[dict]) -> str:
    rows = ["| format | inputs | clean reads | project errors | other exceptions | slower than 2 s | hangs | slowest (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        rows.append(f"| {r['format']} | {r.get('inputs', 0):,} | {r.get('clean', 0):,} | {r.get('project_errors', 0):,} "
                    f"| {r.get('other_exceptions', 0):,} | {r.get('slow', 0):,} | {r.get('hangs', 0)} "
                    f"| {r.get('slowest_s', 0):.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="inputs per format (libFuzzer -runs)")
    parser.add_argument("--seconds", type=float, default=None, help="time per format (libFuzzer -max_total_time)")
    parser.add_argument("--formats", nargs="*", default=list(FORMATS), choices=FORMATS)
    parser.add_argument("--markdown", action="store_true", help="write the counts into docs/reader.md")
    parser.add_argument("--check", action="store_true", help="exit 1 on any other exception, slow input or hang")
    parser.add_argument("--collect", action="store_true",
                        help="do not fuzz: tabulate the last result of each format (runs split over processes)")
    parser.add_argument("--one", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--counts", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        fuzz_one(args.one, args.runs, args.seconds, args.counts)
        return
    if not args.runs and not args.seconds and not args.collect:
        parser.error("give --runs or --seconds")
    results = []
    for fmt in args.formats:
        if args.collect:
            results.append(_collected(fmt, args.runs))
            continue
        r = run_format(fmt, args.runs, args.seconds)
        results.append(r)
        print(f"{fmt}: {json.dumps({k: v for k, v in r.items() if k != 'fuzzer_tail'})}", flush=True)
        if r.get("fuzzer_tail") and (r.get("hangs") or r["fuzzer_exit"] not in (0,)):
            print(r["fuzzer_tail"], file=sys.stderr)
    table = _table(results)
    print(table)
    (WORK / "results.json").write_text(json.dumps(results, indent=1))
    if args.markdown:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        note = (f"Measured {time.strftime('%Y-%m-%d')} with atheris (libFuzzer, coverage of `modelprov` only), "
                f"`python -m benchmarks.fuzz --runs {results[0].get('runs_requested')}` ({platform.machine()}, "
                f"{len(os.sched_getaffinity(0))} cpus, load average {load}).")
        text = DOC.read_text()
        head, rest = text.split(_MARK_START, 1)
        _, tail = rest.split(_MARK_END, 1)
        DOC.write_text(f"{head}{_MARK_START}\n{table}\n\n{note}\n{_MARK_END}{tail}")
    bad = [r["format"] for r in results
           if r.get("other_exceptions") or r.get("slow") or r.get("hangs") or r.get("fuzzer_exit") or not r.get("inputs")]
    if args.check and bad:
        sys.exit(f"fuzzing found problems in: {', '.join(bad)} (inputs kept under {WORK})")


if __name__ == "__main__":
    main()
