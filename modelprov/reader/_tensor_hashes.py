"""sha256 of each tensor's stored bytes, for `inspect --tensor-hashes` (chain of custody per tensor)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

from modelprov._hashing import sha256_range

from ._base import Checkpoint


@dataclass(frozen=True)
class TensorDigest:
    """The sha256 of one tensor's stored bytes (as on disk: quantised blocks or raw little-endian values)."""

    name: str
    file: str
    byte_range: tuple[int, int]
    sha256: str

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["byte_range"] = list(self.byte_range)
        return d


def hash_tensors(checkpoint: Checkpoint, names: Iterable[str] | None = None) -> Iterator[TensorDigest]:
    """sha256 of each tensor's stored byte range, streamed (tensors whose bytes are not one range are skipped)."""
    wanted = None if names is None else set(names)
    for info in checkpoint.tensors():
        if wanted is not None and info.name not in wanted:
            continue
        start, end = info.byte_range
        if end <= start and info.numel:
            continue
        hexdigest, _ = sha256_range(info.file, start, end)
        yield TensorDigest(info.name, str(info.file), info.byte_range, hexdigest)
