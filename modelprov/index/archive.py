"""Published indexes: export a verified index as one reproducible tar, import it, fetch it from a Hub dataset."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelprov._atomic import atomic_write
from modelprov._hashing import sha256_file
from modelprov._hub import HubClient, HubRef, parse_hub_ref
from modelprov.choices import ARCHIVE_NAME
from modelprov.errors import ReferenceIndexError

from .store import ReferenceIndex



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
    return "sha256:" + sha256_file(path).sha256


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
    parsed = parse_hub_ref(source)
    ref = HubRef(parsed.repo_id, parsed.revision, parsed.subfolder, "dataset")
    client = client or HubClient()
    snap = client.snapshot(ref)
    name = f"{ref.subfolder.strip('/')}/{filename}" if ref.subfolder else filename
    where = f"{ref.uri(snap.commit)}/{filename}"
    if name not in snap.files:
        raise ReferenceIndexError(where, "the dataset holds no such index archive")
    with tempfile.TemporaryDirectory(prefix="modelprov-fetch-") as tmp:
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
