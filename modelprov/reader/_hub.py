"""Safetensors checkpoints on the Hugging Face Hub read over HTTP range requests: headers and requested rows only.

`hf://ORG/NAME[@REVISION][/subfolder]` is pinned to one commit. Shards are found as locally (weight-map
indexes, sub-model folders); each header is validated by the local safetensors reader; `read_rows` issues
one ranged GET per run of consecutive rows. With a `cache_dir`, every fetched byte range is kept on disk,
so an interrupted job re-run with the same directory does not fetch it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np

from modelprov._atomic import atomic_write
from modelprov._inputs import parse_json
from modelprov.errors import CheckpointError
from modelprov._hub import HubClient, HubRef, RepoSnapshot, parse_hub_ref
from . import _rows, _safetensors
from ._base import CONFIG_NAMES, TOKENIZER_NAMES, CheckpointFile, RowSelection
from ._dtypes import DTYPE_SIZES, to_float32
from ._gguf import GgufCheckpoint
from ._rounding import Rounded
from ._table import TableCheckpoint

HEADER_PROBE_BYTES = 100_000  # one GET covers the header of most files (huggingface_hub's own choice)
PARALLEL_RANGES = 8
GGUF_PROBE_BYTES = 1 << 20  # first GGUF header read; grown 4x while the header runs past it
# Rows closer than this are fetched in one GET (fewer round trips for a few more bytes; docs/hub.md).
MAX_GAP_BYTES = 16 * 1024


class HubCheckpoint(TableCheckpoint):
    """A safetensors checkpoint in a Hub repo at a pinned commit; tensors and rows come over ranged reads.

    `path` is `hf://REPO@COMMIT[/subfolder]`; `TensorInfo.file` and `files()` are repo-relative paths.
    """

    format = "safetensors"

    def __init__(self, ref: HubRef, client: HubClient | None = None, cache_dir: Path | None = None,
                 max_gap_bytes: int = MAX_GAP_BYTES, snapshot: RepoSnapshot | None = None) -> None:
        self.client = client or HubClient()
        self.max_gap_bytes = max_gap_bytes
        self.ref = ref
        self.snapshot: RepoSnapshot = snapshot or self.client.snapshot(ref)
        self.uri = ref.uri(self.snapshot.commit)
        super().__init__(Path(self.uri))
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.metadata["hub"] = {**self.snapshot.to_dict(), "subfolder": ref.subfolder, "endpoint": self.client.endpoint}
        self._expected: dict[str, set[str]] = {}
        self._pool: ThreadPoolExecutor | None = None
        shards = self._shards()
        if not shards:
            raise CheckpointError(self.uri, "repository holds no *.safetensors checkpoint here")
        self.config = self._config()
        with TemporaryDirectory(prefix="modelprov-hub-") as scratch:
            stub_root = self.cache_dir / "headers" if self.cache_dir else Path(scratch)
            for name, prefix in shards:
                self._add_shard(name, prefix, stub_root)
        self._files.extend(self._side_files())
        # sha256 of each LFS file as the Hub reports it: chain of custody without downloading the file
        self.known_sha256: dict[str, str] = {
            f.path.as_posix(): self.snapshot.files[f.path.as_posix()].sha256 for f in self._files
            if self.snapshot.files[f.path.as_posix()].sha256}

    # ---- Checkpoint API (listing and lookup from TableCheckpoint) --------------------------------
    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        """Requested rows as float32; one ranged GET per span of rows (runs closer than `max_gap_bytes` merge)."""
        info = self._infos[name]
        width = info.row_length
        row_bytes = width * DTYPE_SIZES[info.dtype]
        runs, order = _rows.row_runs(_rows.row_indices(rows, info.rows))
        runs = [(start, length) for start, length in runs if length > 0]
        if not runs:
            return np.empty((0, width), np.float32)
        spans = _merge_runs(runs, self.max_gap_bytes // max(row_bytes, 1))
        fetch = [(info.byte_range[0] + first * row_bytes, count * row_bytes) for first, count, _ in spans]
        if len(fetch) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PARALLEL_RANGES, thread_name_prefix="hub-range")
            blobs = list(self._pool.map(lambda r: self._range(str(info.file), *r), fetch))
        else:
            blobs = [self._range(str(info.file), *fetch[0])]
        parts = []
        for (first, _, members), blob in zip(spans, blobs):
            for start, length in members:
                lo = (start - first) * row_bytes
                parts.append(to_float32(blob[lo: lo + length * row_bytes], info.dtype).reshape(length, width))
        block = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return block if order is None else block[order]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        super().close()

    # ---- shards and headers ---------------------------------------------------------------------
    def _in_scope(self) -> list[str]:
        """Repo files under the sub-folder, relative to it."""
        base = self.ref.subfolder.strip("/")
        names = []
        for name in self.snapshot.files:
            if not base:
                names.append(name)
            elif name.startswith(base + "/"):
                names.append(name[len(base) + 1:])
        return sorted(names)

    def _repo_name(self, rel: str) -> str:
        return posixpath.join(self.ref.subfolder.strip("/"), rel) if self.ref.subfolder else rel

    def _shards(self) -> list[tuple[str, str]]:
        """(repo path, dotted tensor-name prefix) of every safetensors shard, as local discovery finds them."""
        rel_names = [n for n in self._in_scope()
                     if not any(part.startswith((".", "__")) for part in PurePosixPath(n).parts[:-1])]
        folders = sorted({posixpath.dirname(n) for n in rel_names})
        found: list[tuple[str, str]] = []
        for folder in folders:
            prefix = "" if not folder else ".".join(PurePosixPath(folder).parts) + "."
            here = [n for n in rel_names if posixpath.dirname(n) == folder]
            indexes = [n for n in here if n.endswith(".safetensors.index.json")]
            if indexes:
                shard_names: list[str] = []
                for index in indexes:
                    for shard, tensors in self._weight_map(index).items():
                        rel = posixpath.join(folder, shard) if folder else shard
                        if rel not in rel_names:
                            raise CheckpointError(f"{self.uri}/{index}", f"weight map names missing shard {shard!r}")
                        if rel not in shard_names:
                            shard_names.append(rel)
                        self._expected.setdefault(self._repo_name(rel), set()).update(tensors)
                found.extend((self._repo_name(n), prefix) for n in sorted(shard_names))
            else:
                found.extend((self._repo_name(n), prefix) for n in here if n.endswith(".safetensors"))
        return found

    def _weight_map(self, rel_index: str) -> dict[str, set[str]]:
        """Shard file name -> the tensor names a weight-map index places in it."""
        name = self._repo_name(rel_index)
        raw = self.client.read_file(self.snapshot, name)
        doc = parse_json(raw, f"{self.uri}/{rel_index}", CheckpointError, what="weight-map index")
        try:
            weight_map = doc["weight_map"]
            by_shard: dict[str, set[str]] = {}
            for tensor, shard in weight_map.items():
                if not isinstance(shard, str):
                    raise TypeError("shard name is not a string")
                by_shard.setdefault(shard, set()).add(tensor)
            return by_shard
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{self.uri}/{rel_index}", f"not a valid weight-map index ({exc.__class__.__name__})") from None

    def _add_shard(self, name: str, prefix: str, stub_root: Path) -> None:
        """Fetch the header of one shard and validate it with the local safetensors reader."""
        remote = self.snapshot.files[name]
        if remote.size is None:
            raise CheckpointError(f"{self.uri}/{name}", "the Hub did not report this file's size")
        stub = _header_stub(self, name, remote.size, stub_root / self.snapshot.commit)
        try:
            infos, meta = _safetensors.parse_header(stub, prefix)
            if name in self._expected:
                _safetensors.check_weight_map(stub, prefix, infos, self._expected[name])
        except CheckpointError as err:
            raise CheckpointError(f"{self.ref.uri(self.snapshot.commit)}:{name}", err.problem) from None
        if meta:
            self.metadata.setdefault("safetensors", {})[name] = meta
        remote_path = Path(name)
        for info in infos:
            self._add(dataclasses.replace(info, file=remote_path))
        self._files.append(CheckpointFile(remote_path, remote.size, "weights"))

    def _config(self) -> dict[str, Any] | None:
        name = self._repo_name("config.json")
        if name not in self.snapshot.files:
            return None
        cfg = parse_json(self.client.read_file(self.snapshot, name), f"{self.uri}/config.json", CheckpointError,
                         what="config")
        if not isinstance(cfg, dict):
            raise CheckpointError(f"{self.uri}/config.json", "config is not a JSON object")
        return cfg

    def _side_files(self) -> list[CheckpointFile]:
        out = []
        for rel in self._in_scope():
            base = posixpath.basename(rel)
            if posixpath.dirname(rel):
                continue
            role = ("config" if base in CONFIG_NAMES else "tokenizer" if base in TOKENIZER_NAMES
                    else "index" if base.endswith(".safetensors.index.json") else None)
            if role:
                remote = self.snapshot.files[self._repo_name(rel)]
                out.append(CheckpointFile(Path(remote.name), remote.size or 0, role))
        return out

    # ---- byte ranges with an optional on-disk cache --------------------------------------------
    def _range(self, filename: str, start: int, length: int) -> bytes:
        if self.cache_dir is None:
            return self.client.read_range(self.snapshot, filename, start, length)
        key = hashlib.blake2b(f"{self.snapshot.commit}\0{filename}\0{start}\0{length}".encode(), digest_size=16)
        cached = self.cache_dir / "ranges" / f"{key.hexdigest()}.bin"
        if cached.is_file() and cached.stat().st_size == length:
            return cached.read_bytes()
        data = self.client.read_range(self.snapshot, filename, start, length)
        with atomic_write(cached, "wb") as handle:
            handle.write(data)
        return data


class HubGgufCheckpoint(TableCheckpoint):
    """One GGUF file in a Hub repo, parsed by the local GGUF reader from a sparse local mirror.

    The header is fetched in growing ranges until the parsed data section starts inside the fetched bytes
    (so no header field came from an unfetched hole); `read_rows` fetches the requested rows' byte spans
    into the mirror, then lets the local reader decode them.
    """

    format = "gguf"

    def __init__(self, ref: HubRef, filename: str, client: HubClient, snapshot: RepoSnapshot,
                 cache_dir: Path | None = None, max_gap_bytes: int = MAX_GAP_BYTES) -> None:
        self.client, self.ref, self.snapshot, self.max_gap_bytes = client, ref, snapshot, max_gap_bytes
        self.uri = f"{ref.uri(snapshot.commit)}"
        super().__init__(Path(self.uri))
        size = snapshot.files[filename].size or 0
        self._scratch = None if cache_dir else TemporaryDirectory(prefix="modelprov-hub-gguf-")
        root = Path(cache_dir) if cache_dir else Path(self._scratch.name)
        self._mirror = root / "gguf" / snapshot.commit / filename
        self._mirror.parent.mkdir(parents=True, exist_ok=True)
        with open(self._mirror, "wb") as handle:
            handle.truncate(size)
        self._filename, self._have = filename, 0
        want = min(GGUF_PROBE_BYTES, size)
        while True:
            self._fill(0, want)
            try:
                local = GgufCheckpoint(self._mirror, [])
            except CheckpointError as err:
                if want >= size:
                    raise CheckpointError(f"{self.uri}", err.problem) from None
                want = min(size, want * 4)
                continue
            starts = [t.byte_range[0] for t in local.tensors()]
            data_start = min(starts) if starts else size
            if data_start <= want:
                break
            local.close()
            want = min(size, max(want * 4, data_start))
        self._local = local
        for info in local.tensors():
            self._add(dataclasses.replace(info, file=Path(filename)))
        self.metadata = {**local.metadata, "hub": {**snapshot.to_dict(), "file": filename,
                                                   "endpoint": client.endpoint}}
        self.quantisation, self.config = local.quantisation, local.config
        self._files = [CheckpointFile(Path(filename), size, "weights")]
        self.known_sha256 = {filename: snapshot.files[filename].sha256} if snapshot.files[filename].sha256 else {}
        self._fetched: set[tuple[int, int]] = set()

    def _fill(self, start: int, end: int) -> None:
        """Fetch [start, end) of the remote file into the mirror (the header prefix grows in place)."""
        if start == 0 and end <= self._have:
            return
        begin = self._have if start == 0 else start
        data = self.client.read_range(self.snapshot, self._filename, begin, end - begin)
        with open(self._mirror, "r+b") as handle:
            handle.seek(begin)
            handle.write(data)
        if start == 0:
            self._have = end

    def read_rows(self, name: str, rows: RowSelection = None) -> np.ndarray:
        self._fetch_rows(name, rows)
        return self._local.read_rows(name, rows)

    def read_rows_rounded(self, name: str, rows: RowSelection = None) -> Rounded | None:
        self._fetch_rows(name, rows)
        return self._local.read_rows_rounded(name, rows)

    def _fetch_rows(self, name: str, rows: RowSelection) -> None:
        """Bring the byte spans of the selected rows into the local mirror."""
        info = self._infos[name]
        row_bytes = info.nbytes // info.rows if info.rows else 0
        runs, _ = _rows.row_runs(_rows.row_indices(rows, info.rows))
        spans = _merge_runs([r for r in runs if r[1] > 0], self.max_gap_bytes // max(row_bytes, 1))
        for first, count, _ in spans:
            span = (info.byte_range[0] + first * row_bytes, info.byte_range[0] + (first + count) * row_bytes)
            if span not in self._fetched and span[1] > self._have:
                self._fill(*span)
                self._fetched.add(span)

    def close(self) -> None:
        self._local.close()
        super().close()
        if self._scratch is not None:
            self._scratch.cleanup()


def _merge_runs(runs: list[tuple[int, int]], max_gap_rows: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Group sorted row runs into fetch spans (first row, row count, member runs) across gaps of few rows."""
    spans: list[tuple[int, int, list[tuple[int, int]]]] = []
    for start, length in runs:
        if spans and start - (spans[-1][0] + spans[-1][1]) <= max_gap_rows:
            first, _, members = spans[-1]
            spans[-1] = (first, start + length - first, members + [(start, length)])
        else:
            spans.append((start, length, [(start, length)]))
    return spans


def _header_stub(ckpt: HubCheckpoint, name: str, size: int, stub_dir: Path) -> Path:
    """A sparse local copy of a remote safetensors file holding only its header, for the local validator.

    The stub has the remote file's size (holes take no disk space), so size checks apply unchanged.
    """
    stub = stub_dir / name
    if stub.is_file() and stub.stat().st_size == size:
        return stub
    head = ckpt.client.read_range(ckpt.snapshot, name, 0, min(HEADER_PROBE_BYTES, size))
    if len(head) >= 8:
        (n,) = struct.unpack("<Q", head[:8])
        if 8 + n > len(head) and n <= min(_safetensors.MAX_HEADER_BYTES, size - 8):
            head += ckpt.client.read_range(ckpt.snapshot, name, len(head), 8 + n - len(head))
        elif 8 + n <= len(head):
            head = head[: 8 + n]
    with atomic_write(stub, "wb") as handle:
        handle.write(head)
        handle.truncate(size)
    return stub


def open_hub_checkpoint(uri: str, client: HubClient | None = None, cache_dir: Path | None = None,
                        max_gap_bytes: int = MAX_GAP_BYTES) -> HubCheckpoint | HubGgufCheckpoint:
    """Open `hf://REPO_ID[@REVISION][/subfolder]` pinned to the revision's commit (default branch `main`).

    `hf://REPO/file.gguf` opens one GGUF file; a repo or folder without safetensors but with exactly one
    `.gguf` opens that one.
    """
    ref = parse_hub_ref(uri)
    client = client or HubClient()
    snap = client.snapshot(ref)
    gguf = _gguf_target(ref, snap)
    if gguf is not None:
        parent = HubRef(ref.repo_id, ref.revision, posixpath.dirname(gguf), ref.repo_type)
        return HubGgufCheckpoint(parent, gguf, client, snap, cache_dir=cache_dir, max_gap_bytes=max_gap_bytes)
    return HubCheckpoint(ref, client=client, cache_dir=cache_dir, max_gap_bytes=max_gap_bytes, snapshot=snap)


def _gguf_target(ref: HubRef, snap: RepoSnapshot) -> str | None:
    """The GGUF file `ref` names, or the only one in its folder when the folder holds no safetensors."""
    sub = ref.subfolder.strip("/")
    if sub.endswith(".gguf"):
        if sub not in snap.files:
            raise CheckpointError(ref.uri(snap.commit), "no such file in the repository")
        return sub
    here = [n for n in snap.files if posixpath.dirname(n) == sub]
    if any(n.endswith(".safetensors") for n in snap.files if not sub or n.startswith(sub + "/")):
        return None
    ggufs = sorted(n for n in here if n.endswith(".gguf"))
    if len(ggufs) > 1:
        raise CheckpointError(ref.uri(snap.commit), f"holds {len(ggufs)} GGUF files ({', '.join(ggufs[:4])}…); "
                              "name the one to read: hf://REPO/FILE.gguf")
    return ggufs[0] if ggufs else None
