"""Talk to the Hugging Face Hub (or the `HF_ENDPOINT` mirror) with huggingface_hub's own client: pinned
commits, byte-range reads with retries and backoff, and an account of every byte transferred.

Reference-index operations built on it (pull, fetch, export, import) follow below the client.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from .errors import CheckpointError, ProvenanceError

HUB_SCHEME = "hf://"
REPO_TYPES = ("model", "dataset")


@dataclass(frozen=True)
class HubRef:
    """A place on the Hub: repo id, optional revision (branch, tag or commit) and sub-folder."""

    repo_id: str
    revision: str | None = None
    subfolder: str = ""
    repo_type: str = "model"

    def uri(self, revision: str | None = None) -> str:
        """`hf://REPO[@REVISION][/subfolder]`, with `revision` (e.g. the pinned commit) if given."""
        rev = revision or self.revision
        text = HUB_SCHEME + ("datasets/" if self.repo_type == "dataset" else "") + self.repo_id
        text += f"@{rev}" if rev else ""
        return text + (f"/{self.subfolder}" if self.subfolder else "")


def parse_hub_ref(text: str, repo_type: str = "model") -> HubRef:
    """Parse `hf://ORG/NAME[@REV][/sub/folder]` or `ORG/NAME[@REV]`; `hf://datasets/...` selects a dataset.

    A revision containing `/` (e.g. `refs/pr/1`) is written URL-encoded (`refs%2Fpr%2F1`), as HfFileSystem does.
    """
    body = text[len(HUB_SCHEME):] if text.startswith(HUB_SCHEME) else text
    if body.startswith("datasets/"):
        repo_type, body = "dataset", body[len("datasets/"):]
    parts = [p for p in body.split("/") if p]
    if not parts:
        raise ProvenanceError(text, "no repository id (expected hf://ORG/NAME[@REVISION][/subfolder])")
    # "name@rev/sub" (legacy repo without namespace) or "org/name@rev/sub"
    take = 1 if "@" in parts[0] or len(parts) == 1 else 2
    head, rest = parts[:take], parts[take:]
    revision = None
    if "@" in head[-1]:
        head[-1], revision = head[-1].split("@", 1)
        revision = unquote(revision) or None
    repo_id = "/".join(head)
    if any(not p or p in (".", "..") for p in repo_id.split("/")) or any(p in (".", "..") for p in rest):
        raise ProvenanceError(text, f"{repo_id!r} is not a valid repository id")
    return HubRef(repo_id, revision, "/".join(rest), repo_type)


def hub_endpoint() -> str:
    """The Hub endpoint: `HF_ENDPOINT` read now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set, now or at import."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.HF_HUB_OFFLINE or flag.strip().upper() in ("1", "ON", "YES", "TRUE")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff on 429/5xx and connection errors (huggingface_hub's `http_backoff`)."""

    max_retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 8.0


@dataclass
class TransferStats:
    """Payload bytes and requests sent to the Hub, per file: the evidence that only a fraction was read."""

    requests: int = 0
    bytes: int = 0
    per_file: Counter = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, filename: str, n: int) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += n
            self.per_file[filename] += n

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.bytes, "per_file": dict(sorted(self.per_file.items()))}


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repo snapshot: repo-relative name, size, and LFS sha256 when the Hub knows it."""

    name: str
    size: int | None
    sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo pinned at one commit, with the files it holds there."""

    repo_id: str
    repo_type: str
    commit: str
    files: dict[str, RemoteFile]
    requested_revision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "repo_type": self.repo_type, "commit": self.commit,
                "requested_revision": self.requested_revision}


ProgressCallback = Callable[[int], None]


class HubClient:
    """Hub access through huggingface_hub: repo info for the pinned commit, ranged GETs, whole-file downloads.

    `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE` are read when the client is made; `on_bytes` is called with
    every chunk size received (for a progress bar); `stats` counts payload bytes per file.
    """

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None,
                 retry: RetryPolicy | None = None, on_bytes: ProgressCallback | None = None,
                 timeout: float = 60.0) -> None:
        from huggingface_hub import HfApi

        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        self.token = token
        self.retry = retry or RetryPolicy()
        self.on_bytes = on_bytes
        self.timeout = timeout
        self.stats = TransferStats()
        self.api = HfApi(endpoint=self.endpoint, token=token)

    # ---- repo metadata --------------------------------------------------------------------------
    def snapshot(self, ref: HubRef) -> RepoSnapshot:
        """Resolve `ref.revision` (default `main`) to its commit and list the files there with sizes."""
        self._check_online(ref.uri())
        with hub_errors(ref.uri(), CheckpointError):
            info = self._retrying(lambda: self.api.repo_info(
                ref.repo_id, repo_type=ref.repo_type, revision=ref.revision, files_metadata=True,
                timeout=self.timeout))
        if not info.sha:
            raise CheckpointError(ref.uri(), "the Hub did not report a commit for this revision")
        files = {
            s.rfilename: RemoteFile(s.rfilename, s.lfs.size if s.lfs else s.size, s.lfs.sha256 if s.lfs else None,
                                    s.blob_id)
            for s in (info.siblings or [])
        }
        return RepoSnapshot(ref.repo_id, ref.repo_type, info.sha, files, ref.revision)

    # ---- data -----------------------------------------------------------------------------------
    def url(self, snap: RepoSnapshot, filename: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(snap.repo_id, filename, repo_type=snap.repo_type, revision=snap.commit,
                          endpoint=self.endpoint)

    def read_range(self, snap: RepoSnapshot, filename: str, start: int, length: int) -> bytes:
        """Exactly `length` bytes of `filename` from `start`, with one ranged GET (retried with backoff)."""
        if length <= 0:
            return b""
        where = f"{HubRef(snap.repo_id, snap.commit, repo_type=snap.repo_type).uri()}/{filename}"
        self._check_online(where)
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff

        headers = build_hf_headers(token=self.token)
        headers["Range"] = f"bytes={start}-{start + length - 1}"
        headers["Accept-Encoding"] = "identity"
        chunks: list[bytes] = []
        received = 0
        with hub_errors(where, CheckpointError):
            with http_stream_backoff("GET", self.url(snap, filename), headers=headers, timeout=self.timeout,
                                     max_retries=self.retry.max_retries, base_wait_time=self.retry.base_wait,
                                     max_wait_time=self.retry.max_wait) as response:
                if response.status_code >= 400:
                    response.read()
                    hf_raise_for_status(response)
                if response.status_code != 206 and not (start == 0 and response.status_code == 200):
                    raise CheckpointError(where, f"server ignored the byte range (HTTP {response.status_code})")
                for chunk in response.iter_bytes():
                    take = chunk[: length - received]
                    chunks.append(take)
                    received += len(take)
                    if self.on_bytes:
                        self.on_bytes(len(take))
                    if received >= length:
                        break
        self.stats.add(filename, received)
        if received != length:
            raise CheckpointError(where, f"expected {length} bytes at offset {start}, got {received} (truncated)")
        return b"".join(chunks)

    def read_file(self, snap: RepoSnapshot, filename: str) -> bytes:
        """A whole (small) file: config, weight-map index, catalogue."""
        size = snap.files[filename].size if filename in snap.files else None
        if size is None:
            raise CheckpointError(f"{snap.repo_id}/{filename}", "file is not in the repository")
        return self.read_range(snap, filename, 0, size)

    def download(self, snap: RepoSnapshot, filename: str, cache_dir: Path) -> Path:
        """Download a whole file with `hf_hub_download` at the pinned commit into `cache_dir`."""
        where = f"{HubRef(snap.repo_id, snap.commit, repo_type=snap.repo_type).uri()}/{filename}"
        self._check_online(where)
        from huggingface_hub import hf_hub_download

        with hub_errors(where, CheckpointError):
            path = Path(hf_hub_download(snap.repo_id, filename, repo_type=snap.repo_type, revision=snap.commit,
                                        cache_dir=cache_dir, endpoint=self.endpoint, token=self.token,
                                        etag_timeout=self.timeout))
        size = path.stat().st_size
        self.stats.add(filename, size)
        if self.on_bytes:
            self.on_bytes(size)
        return path

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run an API call (which huggingface_hub does not retry) with the same backoff as ranged reads."""
        import time

        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

        httpx2 = _http_module()

        wait = self.retry.base_wait
        for attempt in range(self.retry.max_retries + 1):
            try:
                return call()
            except OfflineModeIsEnabled:
                raise
            except (HfHubHTTPError, httpx2.TransportError) as exc:
                response = getattr(exc, "response", None)
                transient = response is None or response.status_code in (429, 500, 502, 503, 504)
                if not transient or attempt == self.retry.max_retries:
                    raise
                time.sleep(wait)
                wait = min(wait * 2, self.retry.max_wait)

    @staticmethod
    def _check_online(where: str) -> None:
        if hub_offline():
            raise CheckpointError(where, "HF_HUB_OFFLINE is set; unset it to read from the Hub")


def _http_module() -> Any:
    """The HTTP library huggingface_hub uses: `httpx2` in 2.x, `httpx` in 1.x."""
    try:
        import httpx2
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx as httpx2
    return httpx2


@contextmanager
def hub_errors(where: str, error: type[ProvenanceError] = CheckpointError) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into one-line `ProvenanceError`s naming `where`."""
    from huggingface_hub import errors as hf

    httpx2 = _http_module()

    try:
        yield
    except ProvenanceError:
        raise
    except hf.GatedRepoError:
        raise error(where, "gated repository: accept its terms on the Hub and set HF_TOKEN") from None
    except hf.RepositoryNotFoundError:
        raise error(where, "repository not found (or private: set HF_TOKEN)") from None
    except hf.RevisionNotFoundError:
        raise error(where, "revision not found") from None
    except hf.EntryNotFoundError:
        raise error(where, "file not found in the repository") from None
    except hf.OfflineModeIsEnabled:
        raise error(where, "HF_HUB_OFFLINE is set; unset it to read from the Hub") from None
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise error(where, f"Hub request failed with HTTP {status} after retries") from None
    except httpx2.HTTPError as exc:
        raise error(where, f"network error after retries: {exc.__class__.__name__}: {exc}") from None


# ==== Reference-index operations: pull from model repos, fetch/export/import published indexes ==========

PULL_WORK_DIR = ".pull"  # inside the index folder; hidden, so the index digest ignores it
ARCHIVE_NAME = "reference-index.tar"


@dataclass
class PullResult:
    """One reference pulled from the Hub: where from (pinned commit), what was stored, bytes read."""

    name: str
    repo_id: str
    commit: str
    uri: str
    mode: str  # "sampled" (sketch rows only) | "full" (every byte, digests of every tensor)
    tensors: int
    parameters: int
    checkpoint_bytes: int
    bytes_transferred: int
    requests: int
    skipped: bool = False  # already in the index at this commit

    @property
    def fraction(self) -> float:
        return self.bytes_transferred / self.checkpoint_bytes if self.checkpoint_bytes else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items()}, "fraction": round(self.fraction, 6)}


def sampled_fingerprint(ckpt: Any, spec: Any = None, progress: Callable[[int, int, str], None] | None = None) -> Any:
    """A fingerprint from each tensor's sketch rows only (a small fraction of the bytes).

    Sketches and tensor descriptions equal those of a full local read. A tensor whose sketch rows are all
    its rows is read whole, so its statistics and digests are exact too; for larger tensors statistics are
    estimated from the sampled rows and digests are left empty (exact-copy checks need the full read).
    """
    import numpy as np

    from .fingerprint import (ModelFingerprint, RunningStats, SketchSpec, ValueDigests, _heads_from_config,
                              describe_tensor, is_fingerprintable, iter_row_blocks, sketch_indices)

    spec = spec or SketchSpec()
    n_heads, n_kv = _heads_from_config(ckpt.config)
    infos = [i for i in ckpt.tensors() if is_fingerprintable(i)]
    total, done = sum(i.numel for i in infos), 0
    tensors, sketches, estimated = [], {}, 0
    for info in infos:
        fp = describe_tensor(info)
        fp.heads = n_heads if fp.role == "attn_q" else n_kv if fp.role == "attn_k" else None
        rows, cols = sketch_indices(fp.shape2d, spec)
        whole = len(rows) == fp.shape2d[0]
        stats = RunningStats()
        if whole:  # in bounded blocks, as the local fingerprint reads: exact statistics and digests
            digests = ValueDigests()
            sketch = np.empty((len(rows), len(cols)), dtype=np.float32)
            for start, block in iter_row_blocks(ckpt, info):
                stats.update(block)
                digests.update(block)
                sketch[start:start + len(block)] = block[:, cols]
            fp.digests = digests.hexdigests()
        else:
            block = ckpt.read_rows(info.name, rows).reshape(len(rows), -1)
            stats.update(block)
            sketch = np.ascontiguousarray(block[:, cols])
            estimated += 1
        fp.statistics = stats.to_dict()
        sketches[info.name] = sketch
        fp.sketch_shape = (len(rows), len(cols))
        tensors.append(fp)
        done += info.numel
        if progress:
            progress(done, total, info.name)
    source = {"format": ckpt.format, "quantisation": ckpt.quantisation, "gguf_qk_permutation_undone": False,
              "attention_heads": n_heads, "kv_heads": n_kv, "read": "sampled-rows",
              "statistics_estimated_tensors": estimated}
    return ModelFingerprint(tensors, sketches, spec, source)


def catalogue_models(index: Any) -> list[dict[str, Any]]:
    """`[[model]]` entries of the index's catalog.toml, or of the shipped catalogue when the index has none."""
    from .refindex import CATALOG_FILE, default_index_dir, load_toml

    models = index.catalog().get("model", [])
    shipped = default_index_dir() / CATALOG_FILE
    if not models and shipped.is_file():
        models = load_toml(shipped).get("model", [])
    return list(models)


def _catalog_entry(index: Any, repo_id: str) -> dict[str, Any]:
    for model in catalogue_models(index):
        if model.get("repo_id") == repo_id:
            return model
    return {}


def pull_reference(index: Any, source: str, *, name: str | None = None, reference: Any = None,
                   full: bool = False, spec: Any = None, client: HubClient | None = None,
                   progress: Callable[[int, int, str], None] | None = None, keep_work: bool = False) -> PullResult:
    """Fingerprint the Hub model `source` (`REPO_ID[@REV][/subfolder]`) into `index` without downloading it.

    `name` defaults to the catalogue's name for the repo, else the repo's name; family, org, country and
    license come from `reference` where set, else from the catalogue.
    The revision is pinned to its commit and recorded. Fetched byte ranges are kept in
    `<index>/.pull/<name>/` until the reference is stored, so an interrupted pull resumes where it stopped.
    """
    from .findings import Reference
    from .reader.hub import open_hub_checkpoint
    from .refindex import check_name

    ref = parse_hub_ref(source)
    client = client or HubClient()
    catalogued = _catalog_entry(index, ref.repo_id)
    name = check_name(name or catalogued.get("name") or ref.repo_id.split("/")[-1])
    snap = client.snapshot(ref)
    mode = "full" if full else "sampled"
    done = _pulled_entry(index, name, ref.repo_id, snap.commit, mode)
    if done is not None:
        return PullResult(name, ref.repo_id, snap.commit, ref.uri(snap.commit), mode, done.summary.get("tensors", 0),
                          done.summary.get("parameters", 0), 0, 0, 0, skipped=True)
    work = Path(index.root) / PULL_WORK_DIR / name
    start_bytes, start_requests = client.stats.bytes, client.stats.requests
    ckpt = open_hub_checkpoint(HubRef(ref.repo_id, snap.commit, ref.subfolder).uri(), client=client, cache_dir=work)
    if ckpt.format == "gguf":  # llama.cpp's q/k row permutation is undone on whole tensors: read everything
        full, mode = True, "full"
    try:
        if full:
            from .fingerprint import fingerprint_checkpoint

            fp = fingerprint_checkpoint(ckpt, spec, progress=progress)
            fp.source["read"] = "full-read"
        else:
            fp = sampled_fingerprint(ckpt, spec, progress=progress)
        if not fp.tensors:
            raise CheckpointError(ckpt.uri, "checkpoint holds no floating-point tensors to fingerprint")
        fp.source["hub"] = {"repo_id": ref.repo_id, "commit": snap.commit, "requested_revision": ref.revision,
                            "subfolder": ref.subfolder}
        files = [{"name": f.path.as_posix(), "role": f.role, "size": f.size,
                  "sha256": snap.files[f.path.as_posix()].sha256}
                 for f in ckpt.files() if f.role == "weights"]
        base = reference or Reference(name=name)
        fields = {k: catalogued.get(k) for k in ("family", "org", "country", "license")}
        merged = Reference(name=name, family=base.family or fields["family"], org=base.org or fields["org"],
                           country=base.country or fields["country"], license=base.license or fields["license"],
                           repo_id=ref.repo_id, revision=snap.commit)
        index.add_weights(merged, fp, files=files)
        weights_bytes = sum(f.size for f in ckpt.files() if f.role == "weights")
    finally:
        ckpt.close()
    if not keep_work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return PullResult(name, ref.repo_id, snap.commit, ckpt.uri, mode, len(fp.tensors),
                      fp.parameter_count, weights_bytes, client.stats.bytes - start_bytes,
                      client.stats.requests - start_requests)


def _pulled_entry(index: Any, name: str, repo_id: str, commit: str, mode: str) -> Any:
    """The index entry `name` if it was already pulled from this repo at this commit in this mode."""
    import json

    for entry in index.entries:
        if entry.name == name and entry.kind == "weights" and entry.reference.repo_id == repo_id \
                and entry.reference.revision == commit:
            try:
                manifest = json.loads((Path(index.root) / f"weights/{name}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            read = manifest.get("source", {}).get("read")
            return entry if read == ("full-read" if mode == "full" else "sampled-rows") else None
    return None


def catalogue_source(model: dict[str, Any]) -> str:
    """`REPO_ID[@REVISION][/subfolder]` of a catalogue entry (keys `repo_id`, optional `revision`, `subfolder`)."""
    from urllib.parse import quote

    text = model["repo_id"] + (f"@{quote(str(model['revision']), safe='')}" if model.get("revision") else "")
    return text + (f"/{model['subfolder']}" if model.get("subfolder") else "")


def family_sources(index: Any, family: str) -> list[dict[str, Any]]:
    """Catalogue models of `family` (case-insensitive) that name a Hub repo: `name`, `repo_id`, `revision`."""
    catalogue = catalogue_models(index)
    models = [m for m in catalogue if str(m.get("family", "")).lower() == family.lower() and m.get("repo_id")]
    if not models:
        known = sorted({str(m.get("family")) for m in catalogue if m.get("family")})
        from .errors import ReferenceIndexError

        raise ReferenceIndexError(Path(index.root) / "catalog.toml",
                                  f"no catalogued family {family!r} with a repo_id (known: {', '.join(known) or 'none'})")
    return models


@dataclass
class ArchiveResult:
    """An exported, imported or fetched index archive: its sha256 and the index it holds."""

    archive: str
    sha256: str
    index_name: str
    index_version: int
    index_digest: str
    files: int
    installed_to: str | None = None
    source: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _sha256_path(path: Path) -> str:
    from .refindex import sha256_file

    return "sha256:" + sha256_file(path)


def _normal_digest(text: str) -> str:
    text = text.strip().split()[0] if text.strip() else ""
    hexpart = text.split(":", 1)[1] if text.startswith("sha256:") else text
    if len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart.lower()):
        raise ValueError(f"{text!r} is not a sha256 digest")
    return "sha256:" + hexpart.lower()


def _index_files(root: Path) -> list[str]:
    """index.json and every non-hidden file of an index folder, sorted (what the index digest covers)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def export_index(index_dir: str | os.PathLike[str] | None, out: str | os.PathLike[str]) -> ArchiveResult:
    """Write a verified index as one reproducible tar (fixed order, times and owners) and `<out>.sha256`."""
    import io
    import tarfile

    from .atomic import atomic_write
    from .refindex import ReferenceIndex

    idx = ReferenceIndex.load(index_dir)
    idx.verify()
    out = Path(out)
    files = _index_files(idx.root)
    with atomic_write(out, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel in files:
                data = (idx.root / rel).read_bytes()
                info = tarfile.TarInfo(rel)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
    digest = _sha256_path(out)
    with atomic_write(out.with_name(out.name + ".sha256")) as handle:
        handle.write(f"{digest.split(':', 1)[1]}  {out.name}\n")
    return ArchiveResult(str(out), digest, idx.name, idx.version, idx.digest, len(files))


def import_index(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *, digest: str | None = None,
                 force: bool = False) -> ArchiveResult:
    """Install an exported index into `dest` after checking the archive's sha256 and the index's own digest.

    The expected digest is `digest` or the `<archive>.sha256` file beside it; without either nothing is installed.
    Extraction goes to a hidden folder beside `dest` and is renamed into place only once everything verifies.
    """
    import shutil
    import tarfile
    import tempfile

    from .errors import ReferenceIndexError
    from .refindex import ReferenceIndex

    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ReferenceIndexError(archive, "no such archive")
    sidecar = archive.with_name(archive.name + ".sha256")
    try:
        expected = _normal_digest(digest) if digest else (
            _normal_digest(sidecar.read_text(encoding="utf-8")) if sidecar.is_file() else None)
    except (OSError, ValueError) as exc:
        raise ReferenceIndexError(sidecar if not digest else archive, f"unusable expected digest ({exc})") from None
    if expected is None:
        raise ReferenceIndexError(archive, f"no digest to verify: pass --digest or keep {sidecar.name} beside it")
    actual = _sha256_path(archive)
    if actual != expected:
        raise ReferenceIndexError(archive, f"digest mismatch: expected {expected}, archive has {actual}")
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ReferenceIndexError(dest, "destination is not empty (pass --force to replace the index there)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:") as tar:
                members = tar.getmembers()
                bad = [m.name for m in members if not m.isfile()]
                if bad:
                    raise ReferenceIndexError(archive, f"archive holds a non-file entry {bad[0]!r}")
                tar.extractall(staging, filter="data")  # rejects absolute paths and `..`
        except (tarfile.TarError, OSError) as exc:
            raise ReferenceIndexError(archive, f"not a readable index archive ({exc})") from None
        idx = ReferenceIndex.load(staging)
        idx.verify()
        files = len(_index_files(staging))
        if dest.exists():
            old = dest.with_name(f".{dest.name}.replaced")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ArchiveResult(str(archive), actual, idx.name, idx.version, idx.digest, files, str(dest))


def fetch_index(source: str, dest: str | os.PathLike[str], *, digest: str | None = None,
                filename: str = ARCHIVE_NAME, client: HubClient | None = None, force: bool = False) -> ArchiveResult:
    """Download an index published as a Hub dataset (`REPO_ID[@REV]`), verify its digests, install it in `dest`.

    The archive must match every digest available: `digest` (pinned by the caller), the published
    `<archive>.sha256`, and the sha256 the Hub reports for the LFS file.
    """
    import tempfile

    from .errors import ReferenceIndexError

    parsed = parse_hub_ref(source)
    ref = HubRef(parsed.repo_id, parsed.revision, parsed.subfolder, "dataset")
    client = client or HubClient()
    snap = client.snapshot(ref)
    name = f"{ref.subfolder.strip('/')}/{filename}" if ref.subfolder else filename
    where = f"{ref.uri(snap.commit)}/{filename}"
    if name not in snap.files:
        raise ReferenceIndexError(where, "the dataset holds no such index archive")
    with tempfile.TemporaryDirectory(prefix="provenance-fetch-") as tmp:
        path = client.download(snap, name, Path(tmp))
        actual = _sha256_path(path)
        claims: dict[str, str] = {}
        try:
            if digest:
                claims["--digest"] = _normal_digest(digest)
            if name + ".sha256" in snap.files:
                claims[filename + ".sha256"] = _normal_digest(client.read_file(snap, name + ".sha256").decode())
        except ValueError as exc:
            raise ReferenceIndexError(where, f"unusable published digest ({exc})") from None
        if snap.files[name].sha256:
            claims["Hub LFS sha256"] = "sha256:" + snap.files[name].sha256
        if not claims:
            raise ReferenceIndexError(where, "no digest to verify against (none published; pass --digest)")
        for what, expected in claims.items():
            if expected != actual:
                raise ReferenceIndexError(where, f"digest mismatch with {what}: expected {expected}, got {actual}")
        result = import_index(path, dest, digest=actual, force=force)
    result.archive = where
    result.source = {**snap.to_dict(), "filename": name, "verified_against": sorted(claims)}
    return result
