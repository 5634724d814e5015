"""Talk to the Hugging Face Hub (or the `HF_ENDPOINT` mirror) with huggingface_hub's own client: pinned
commits, byte-range reads with retries and backoff, and an account of every byte transferred.

Plumbing: the checkpoint reader (`hf://` checkpoints) and the reference index (pull, fetch) build on it.
huggingface_hub is imported inside the functions that use it: its client takes ~0.5 s to import, and only
Hub operations need it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

from modelprov.errors import CheckpointError, ProvenanceError
from modelprov.text import printable

HUB_SCHEME = "hf://"
REPO_TYPES = ("model", "dataset")
DEADLINE_ENV = "MODELPROV_HUB_TIMEOUT"
DEFAULT_DEADLINE = 6.0  # seconds without a byte for one Hub operation, retries included: a dead endpoint fails in < 10 s
WAIT_NOTICE_AFTER = 2.0  # seconds of silence before the first "waiting for the Hub" line, then every 5 s


def hub_deadline() -> float:
    """The total seconds one Hub operation may take: $MODELPROV_HUB_TIMEOUT, else 6."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        raise ProvenanceError(None, f"{DEADLINE_ENV}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 86400:
        raise ProvenanceError(None, f"{DEADLINE_ENV}={raw!r}: the Hub timeout must be between 0 and 86400 seconds")
    return value


def wait_notice(where: str, waited: float, deadline: float) -> None:
    """The default status line while a Hub operation is waiting: on stderr, so results on stdout stay clean."""
    sys.stderr.write(f"modelprov: waiting for the Hub: {waited:.0f} s of {deadline:.0f} s for {printable(where)}\n")
    sys.stderr.flush()


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
    from huggingface_hub import constants  # deferred: see the module docstring

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is set, now or at import."""
    from huggingface_hub import constants  # deferred: see the module docstring

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
    every chunk size received (for a progress bar); `stats` counts payload bytes per file. Every operation
    (repo info, a ranged read, a download) must finish within `deadline` seconds in all, connection, reads and
    retries together (default `hub_deadline()`); `on_wait(where, waited, deadline)` hears every few seconds
    while one is waiting.
    """

    def __init__(self, endpoint: str | None = None, token: str | bool | None = None,
                 retry: RetryPolicy | None = None, on_bytes: ProgressCallback | None = None,
                 timeout: float = 60.0, deadline: float | None = None,
                 on_wait: Callable[[str, float, float], None] | None = wait_notice) -> None:
        from huggingface_hub import HfApi  # deferred: see the module docstring

        self.endpoint = (endpoint or hub_endpoint()).rstrip("/")
        self.token = token
        self.retry = retry or RetryPolicy()
        self.on_bytes = on_bytes
        self.deadline = deadline if deadline is not None else hub_deadline()
        self.timeout = min(timeout, self.deadline)  # per request; the deadline bounds the whole operation
        self.on_wait = on_wait
        self.stats = TransferStats()
        self.api = HfApi(endpoint=self.endpoint, token=token)

    # ---- repo metadata --------------------------------------------------------------------------
    def snapshot(self, ref: HubRef) -> RepoSnapshot:
        """Resolve `ref.revision` (default `main`) to its commit and list the files there with sizes."""
        self._check_online(ref.uri())
        info = self._within_deadline(ref.uri(), lambda: self._retrying(lambda: self.api.repo_info(
            ref.repo_id, repo_type=ref.repo_type, revision=ref.revision, files_metadata=True,
            timeout=self.timeout)))
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
        from huggingface_hub import hf_hub_url  # deferred: see the module docstring

        return hf_hub_url(snap.repo_id, filename, repo_type=snap.repo_type, revision=snap.commit,
                          endpoint=self.endpoint)

    def read_range(self, snap: RepoSnapshot, filename: str, start: int, length: int) -> bytes:
        """Exactly `length` bytes of `filename` from `start`, with one ranged GET (retried with backoff)."""
        if length <= 0:
            return b""
        where = f"{HubRef(snap.repo_id, snap.commit, repo_type=snap.repo_type).uri()}/{filename}"
        self._check_online(where)
        got = [0]  # bytes so far: the deadline counts silence, not a long read that keeps receiving
        return self._within_deadline(where, lambda: self._read_range(where, snap, filename, start, length, got),
                                     lambda: got[0])

    def _read_range(self, where: str, snap: RepoSnapshot, filename: str, start: int, length: int,
                    got: list[int]) -> bytes:
        from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff  # deferred: see the module docstring

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
                    got[0] = received
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
        from huggingface_hub import hf_hub_download  # deferred: see the module docstring

        path = Path(self._within_deadline(where, lambda: hf_hub_download(
            snap.repo_id, filename, repo_type=snap.repo_type, revision=snap.commit, cache_dir=cache_dir,
            endpoint=self.endpoint, token=self.token, etag_timeout=self.timeout), lambda: _bytes_under(cache_dir)))
        size = path.stat().st_size
        self.stats.add(filename, size)
        if self.on_bytes:
            self.on_bytes(size)
        return path

    def _within_deadline(self, where: str, call: Callable[[], Any], received: Callable[[], int] | None = None) -> Any:
        """Run one Hub operation (with its retries) in a daemon thread; give up when `deadline` seconds pass
        without a byte arriving (`received()` counts them; without it, `deadline` bounds the whole call).

        huggingface_hub bounds each connect and read, not their sum over retries (60 s × 6 tries against a server
        that accepts and never answers); the thread is abandoned at the deadline, never joined, so the command
        can exit at once.
        """
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                with hub_errors(where, CheckpointError):
                    outcome["value"] = call()
            except BaseException as exc:  # handed to the waiting thread
                outcome["error"] = exc

        worker = threading.Thread(target=run, name="modelprov-hub", daemon=True)
        start = time.monotonic()
        worker.start()
        notice_at = WAIT_NOTICE_AFTER
        seen = received() if received else 0
        while True:
            waited = time.monotonic() - start
            step = min(notice_at, self.deadline) - waited
            worker.join(max(0.0, min(step, 1.0) if received else step))  # poll the byte count each second
            if not worker.is_alive():
                break
            now = received() if received else 0
            if now != seen:  # bytes arrived: the silence starts again
                seen, start, notice_at = now, time.monotonic(), WAIT_NOTICE_AFTER
                continue
            waited = time.monotonic() - start
            if waited >= self.deadline:
                raise CheckpointError(where, f"no answer from the Hub within {self.deadline:g} s (connection, reads "
                                             f"and retries together; set ${DEADLINE_ENV} or --hub-timeout)")
            if waited >= notice_at:
                if self.on_wait is not None:
                    self.on_wait(where, waited, self.deadline)
                notice_at += 5.0
        if "error" in outcome:
            raise outcome["error"]
        return outcome.get("value")

    def _retrying(self, call: Callable[[], Any]) -> Any:
        """Run an API call (which huggingface_hub does not retry) with the same backoff as ranged reads."""
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled  # deferred: see the module docstring

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


def _bytes_under(folder: Path) -> int:
    """Bytes of the files under `folder` (a download's progress as it lands in the cache)."""
    total = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _http_module() -> Any:
    """The HTTP library huggingface_hub uses: `httpx2` in 2.x, `httpx` in 1.x."""
    try:
        import httpx2  # deferred: see the module docstring
    except ImportError:  # pragma: no cover - huggingface_hub 1.x
        import httpx as httpx2  # deferred: see the module docstring
    return httpx2


@contextmanager
def hub_errors(where: str, error: type[ProvenanceError] = CheckpointError) -> Iterator[None]:
    """Turn huggingface_hub and network exceptions into one-line `ProvenanceError`s naming `where`."""
    from huggingface_hub import errors as hf  # deferred: see the module docstring

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
