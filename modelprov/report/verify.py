"""`modelprov report verify`: are the files at CHECKPOINT the ones a saved report describes? (chain of custody)"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any, Literal

from modelprov._hashing import hash_files
from modelprov.errors import CheckpointError, ProvenanceError
from modelprov.reader import open_checkpoint

from .jsonreport import report_dict

FileStatus = Literal["match", "mismatch", "missing", "unhashed"]


@dataclass
class FileCheck:
    """One file of the report, looked up under the checkpoint path and re-hashed."""

    path: str  # relative to the checkpoint
    status: FileStatus
    expected_size: int
    expected_sha256: str | None
    actual_size: int | None = None
    actual_sha256: str | None = None


@dataclass
class VerifyResult:
    """Every file's status plus files the checkpoint has that the report does not list."""

    checkpoint: str
    files: list[FileCheck]
    extra: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        """True only when every listed file is present with its recorded sha256 and nothing was added."""
        return bool(self.files) and all(f.status == "match" for f in self.files) and not self.extra

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("match", "mismatch", "missing", "unhashed")}
        for f in self.files:
            out[f.status] += 1
        out["extra"] = len(self.extra)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "ok": self.ok, "counts": self.counts(),
                "files": [asdict(f) for f in self.files], "extra": self.extra, "note": self.note}


def _relative(file_path: str, subject_path: str) -> str:
    """A report file path relative to the subject (reports may record absolute paths)."""
    p, root = PurePath(file_path), PurePath(subject_path)
    if not p.is_absolute():
        return p.as_posix()
    if p == root:
        return p.name
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.name


def _locate(checkpoint: Path, rel: str, single_file: bool) -> Path:
    if checkpoint.is_file():
        return checkpoint if single_file or rel == checkpoint.name else checkpoint.parent / rel
    return checkpoint / rel


def _checkpoint_files(checkpoint: Path) -> tuple[dict[Path, str] | None, str]:
    """The files the reader counts as part of the checkpoint (absolute path -> relative name), or None and why not."""
    try:
        ckpt = open_checkpoint(checkpoint)
    except CheckpointError as err:
        return None, f"extra files not checked: {err.one_line()}"
    try:
        base = checkpoint if checkpoint.is_dir() else checkpoint.parent
        return {Path(f.path).absolute(): _relative(str(Path(f.path)), str(base)) for f in ckpt.files()}, ""
    finally:
        close = getattr(ckpt, "close", None)
        if callable(close):
            close()


def verify_checkpoint(report: Any, checkpoint: str | os.PathLike[str], workers: int = 2) -> VerifyResult:
    """Re-hash every file the report lists under `checkpoint` and compare sizes and sha256."""
    data = report_dict(report)
    root = Path(checkpoint)
    if not root.exists():
        raise ProvenanceError(root, "no such checkpoint file or folder")
    subject = data["subject"]
    listed = subject["files"]
    if not listed:
        raise ProvenanceError(None, "the report lists no subject files to verify")
    single_file = len(listed) == 1 and _relative(listed[0]["path"], subject["path"]) == PurePath(subject["path"]).name
    checks: list[FileCheck] = []
    located: set[Path] = set()
    to_hash: list[tuple[FileCheck, Path]] = []
    for f in listed:
        rel = _relative(f["path"], subject["path"])
        target = _locate(root, rel, single_file)
        check = FileCheck(rel, "missing", f["size"], f.get("sha256"))
        checks.append(check)
        located.add(target.absolute())
        if not target.is_file():
            continue
        check.actual_size = target.stat().st_size
        if check.expected_sha256 is None:
            check.status = "unhashed"
        elif check.actual_size != check.expected_size:
            check.status = "mismatch"  # no need to read it
        else:
            to_hash.append((check, target))
    for (check, _), digest in zip(to_hash, hash_files([t for _, t in to_hash], workers=workers)):
        check.actual_sha256 = digest.sha256
        check.status = "match" if digest.sha256 == check.expected_sha256 else "mismatch"
    # A single file is the whole checkpoint: nothing can be added beside it (and GGUF opening is slow).
    present, note = _checkpoint_files(root) if root.is_dir() else (None, "")
    extra = sorted(name for path, name in (present or {}).items() if path not in located)
    return VerifyResult(str(root), checks, extra, note)
