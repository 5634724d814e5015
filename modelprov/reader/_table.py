"""Shared plumbing of local checkpoints whose tensor table is parsed up front: listing, lookup, files, descriptors."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Iterator

from modelprov.errors import CheckpointError
from ._base import Checkpoint, CheckpointFile, TensorInfo


class TableCheckpoint(Checkpoint):
    """A checkpoint that knows every `TensorInfo` after opening and reads with positioned reads on cached fds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata = {}
        self._infos: dict[str, TensorInfo] = {}
        self._files: list[CheckpointFile] = []
        self._fds: dict[Path, int] = {}
        self._fd_lock = threading.Lock()  # readers may call read_rows from several threads
        self._extracted: Path | None = None  # temporary folder a zipped checkpoint was extracted into

    def tensors(self) -> Iterator[TensorInfo]:
        return iter(self._infos.values())

    def tensor(self, name: str) -> TensorInfo:
        return self._infos[name]

    def files(self) -> list[CheckpointFile]:
        return list(self._files)

    def _add(self, info: TensorInfo) -> None:
        """Register a tensor; the same name in two files is a malformed checkpoint."""
        if info.name in self._infos:
            raise CheckpointError(info.file, f"tensor {info.name!r} also appears in {self._infos[info.name].file}")
        self._infos[info.name] = info

    def _fd(self, path: Path) -> int:
        """A read-only descriptor for `path`, opened once (positioned reads are thread-safe)."""
        fd = self._fds.get(path)
        if fd is None:
            with self._fd_lock:
                fd = self._fds.get(path)
                if fd is None:
                    try:
                        fd = self._fds[path] = os.open(path, os.O_RDONLY)
                    except OSError as exc:
                        raise CheckpointError(path, f"cannot open: {exc.strerror or exc}") from None
        return fd

    def adopt_archive(self, archive: Path, extracted: Path) -> None:
        """This checkpoint was read from `extracted`, the contents of zip `archive`: list the zip among the files
        and remove the folder on close."""
        self._files.append(CheckpointFile(archive, archive.stat().st_size, "archive"))
        self._extracted = extracted

    def close(self) -> None:
        with self._fd_lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
        if self._extracted is not None:
            shutil.rmtree(self._extracted, ignore_errors=True)
            self._extracted = None
