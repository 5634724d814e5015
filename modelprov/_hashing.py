"""Streaming sha256 for chain of custody: per file (1 MiB chunks, in a thread pool) and optionally per tensor.

Hashing runs in background threads (`hashlib` and file reads release the GIL), so a caller can start it,
keep reading tensors, and collect the digests at the end. Memory stays at one chunk per worker.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from modelprov.errors import CheckpointError

CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    """The sha256 of one whole file and the size it had when hashed."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def sha256_range(path: str | os.PathLike[str], start: int = 0, end: int | None = None,
                 progress: Callable[[int], None] | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[str, int]:
    """Hex sha256 and length of bytes [start, end) of a file (to its end if `end` is None), read in chunks."""
    digest = hashlib.sha256()
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    done = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                want = chunk_bytes if remaining is None else min(chunk_bytes, remaining)
                n = handle.readinto(view[:want])
                if not n:
                    break
                digest.update(view[:n])
                done += n
                if remaining is not None:
                    remaining -= n
                if progress is not None:
                    progress(n)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read for hashing: {exc.strerror or exc}") from None
    if end is not None and done != end - start:
        raise CheckpointError(path, f"file ends before byte {end} while hashing (truncated)")
    return digest.hexdigest(), done


def sha256_file(path: str | os.PathLike[str], progress: Callable[[int], None] | None = None) -> FileDigest:
    """Stream one whole file through sha256."""
    hexdigest, size = sha256_range(path, progress=progress)
    return FileDigest(str(path), size, hexdigest)


class FileHasher:
    """Hash files in background threads; `result()` waits and returns digests in the order given.

    >>> hasher = FileHasher(paths)       # starts at once
    >>> ...read tensors meanwhile...
    >>> digests = hasher.result()
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], workers: int = 2,
                 progress: Callable[[int], None] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="sha256")
        self._futures: list[Future[FileDigest]] = [self._pool.submit(sha256_file, p, progress) for p in self.paths]
        self._pool.shutdown(wait=False)

    def done(self) -> bool:
        return all(f.done() for f in self._futures)

    def result(self) -> list[FileDigest]:
        """All digests (re-raising the first `CheckpointError`), in input order."""
        return [f.result() for f in self._futures]


def hash_files(paths: Iterable[str | os.PathLike[str]], workers: int = 2,
               progress: Callable[[int], None] | None = None) -> list[FileDigest]:
    """sha256 of every file, `workers` files at a time."""
    return FileHasher(paths, workers, progress).result()
