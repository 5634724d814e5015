"""A Hub-compatible HTTP server on 127.0.0.1 for tests: the endpoints huggingface_hub calls, with Range support.

Implements what `HfApi.model_info`/`dataset_info` (`/api/{models,datasets}/{repo}[/revision/{rev}]`),
`hf_hub_url` downloads (`/{repo}/resolve/{rev}/{file}`, `/datasets/{repo}/resolve/...`, HEAD and GET) and
ranged reads (`Range: bytes=a-b` -> 206) need. Counts payload bytes per file, records the Authorization
header of every request, and can fail the next N requests with a 5xx to exercise retries.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class HubRepo:
    """One repo at one commit: repo-relative file names mapped to local files."""

    repo_id: str
    files: dict[str, Path]
    repo_type: str = "model"  # "model" | "dataset"
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:  # a stable fake commit id derived from the content listing
            listing = "\n".join(f"{name}:{path.stat().st_size}" for name, path in sorted(self.files.items()))
            self.sha = hashlib.sha1(f"{self.repo_id}\n{listing}".encode()).hexdigest()


@dataclass
class HubState:
    """What the server saw and served; tests read it to assert behaviour."""

    bytes_served: Counter = field(default_factory=Counter)  # (repo_id, filename) -> payload bytes sent
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, range)
    authorization: list[str | None] = field(default_factory=list)
    fail_next: int = 0
    fail_status: int = 503
    silent: bool = False  # accept every connection and never answer (a stalled endpoint)
    released: threading.Event = field(default_factory=threading.Event)  # set on shutdown: silent handlers return
    lock: threading.Lock = field(default_factory=threading.Lock)

    def total_bytes(self, repo_id: str | None = None) -> int:
        return sum(n for (repo, _), n in self.bytes_served.items() if repo_id is None or repo == repo_id)


class HubServer:
    """Serve `repos` on an ephemeral 127.0.0.1 port; use as a context manager; `.url` is the endpoint."""

    def __init__(self, repos: list[HubRepo]) -> None:
        self.repos = {(r.repo_type, r.repo_id): r for r in repos}
        self.state = HubState()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = _QuietServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "HubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.state.released.set()
        self._server.shutdown()
        self._server.server_close()

    def warm(self) -> None:
        """Compute every file's digests now (the Hub knows them; a first request should not wait for them)."""
        for repo in self.repos.values():
            for name, path in repo.files.items():
                _blob_id(name, path)

    def add(self, repo: HubRepo) -> None:
        self.repos[(repo.repo_type, repo.repo_id)] = repo


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-response (a test stopping a pull) are not errors worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once; no 40 ms delayed-ACK stalls
    hub: HubServer

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # ---- routing -------------------------------------------------------------------------------
    def _dispatch(self, head: bool) -> None:
        state = self.hub.state
        if state.silent:  # request read, never answered: the client must give up on its own
            state.released.wait()
            self.close_connection = True
            return
        path = unquote(urlsplit(self.path).path)
        with state.lock:
            state.requests.append((self.command, path, self.headers.get("Range")))
            state.authorization.append(self.headers.get("Authorization"))
            failing = state.fail_next > 0
            if failing:
                state.fail_next -= 1
        if failing:
            return self._send_json({"error": "injected failure"}, status=state.fail_status, head=head)
        m = re.match(r"^/api/(models|datasets)/(.+?)(?:/revision/([^/]+))?$", path)
        if m:
            return self._repo_info("model" if m[1] == "models" else "dataset", m[2], m[3] or "main", head)
        m = re.match(r"^/(datasets/)?([^/]+/[^/]+|[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve("dataset" if m[1] else "model", m[2], m[3], m[4], head)
        self._send_json({"error": "not found"}, status=404, head=head)

    def _find(self, repo_type: str, repo_id: str, revision: str, head: bool) -> HubRepo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            self._send_json({"error": "Repository not found"}, 404, head, {"X-Error-Code": "RepoNotFound"})
            return None
        if revision not in ("main", repo.sha):
            self._send_json({"error": "Invalid rev id"}, 404, head, {"X-Error-Code": "RevisionNotFound"})
            return None
        return repo

    def _repo_info(self, repo_type: str, repo_id: str, revision: str, head: bool) -> None:
        repo = self._find(repo_type, repo_id, revision, head)
        if repo is None:
            return
        siblings = []
        for name, local in sorted(repo.files.items()):
            size = local.stat().st_size
            entry: dict = {"rfilename": name, "size": size, "blobId": _blob_id(name, local)}
            if _is_lfs(name):
                entry["lfs"] = {"size": size, "sha256": _sha256(local), "pointerSize": len(_pointer(local))}
            siblings.append(entry)
        self._send_json({"id": repo_id, "sha": repo.sha, "private": False, "siblings": siblings}, 200, head)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, filename: str, head: bool) -> None:
        repo = self._find(repo_type, repo_id, revision, head)
        if repo is None:
            return
        local = repo.files.get(filename)
        if local is None:
            return self._send_json({"error": "Entry not found"}, 404, head, {"X-Error-Code": "EntryNotFound"})
        size = local.stat().st_size
        etag = _sha256(local) if _is_lfs(filename) else _blob_id(filename, local)
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{etag}"',
            "X-Linked-Etag": f'"{etag}"',
            "X-Linked-Size": str(size),
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        start, end, status = 0, size - 1, 200
        spec = self.headers.get("Range")
        if spec:
            m = _RANGE.match(spec.strip())
            if not m or int(m[1]) >= size:
                headers["Content-Range"] = f"bytes */{size}"
                return self._send_bytes(b"", 416, head, headers)
            start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        with open(local, "rb") as handle:
            handle.seek(start)
            body = b"" if head else handle.read(end - start + 1)
        if not head:
            with self.hub.state.lock:
                self.hub.state.bytes_served[(repo_id, filename)] += len(body)
        headers["Content-Length"] = str(end - start + 1)
        self._send_bytes(body, status, head, headers, length_set=True)

    # ---- responses -----------------------------------------------------------------------------
    def _send_json(self, obj: object, status: int, head: bool, extra: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self._send_bytes(body, status, head, {"Content-Type": "application/json", **(extra or {})})

    def _send_bytes(self, body: bytes, status: int, head: bool, headers: dict[str, str],
                    length_set: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if not length_set:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body:
            self.wfile.write(body)


_DIGESTS: dict[tuple[str, Path, float], str] = {}
_DIGEST_LOCK = threading.Lock()


def _digest(path: Path, algo: str) -> str:
    """sha256, or git's sha1 blob id, of a file; computed once (under a lock: concurrent requests wait)."""
    key = (algo, path, path.stat().st_mtime)
    with _DIGEST_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
        h = hashlib.new(algo)
        if algo == "sha1":  # git blob id
            h.update(f"blob {path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
        return _DIGESTS[key]


def _is_lfs(name: str) -> bool:
    return name.endswith((".safetensors", ".gguf", ".tar", ".bin"))


def _sha256(path: Path) -> str:
    return _digest(path, "sha256")


def _pointer(path: Path) -> bytes:
    """The git-lfs pointer file git stores in place of a large file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{_sha256(path)}\nsize {path.stat().st_size}\n".encode()


def _blob_id(name: str, path: Path) -> str:
    """git's blob id: of the pointer for LFS files (as on the Hub), of the content otherwise."""
    if _is_lfs(name):
        body = _pointer(path)
        return hashlib.sha1(f"blob {len(body)}\0".encode() + body).hexdigest()
    return _digest(path, "sha1")
