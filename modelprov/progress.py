"""Progress of long library calls: every `progress` callback is `progress(stage, done, total, item)`.

`stage` names a step a reviewer recognises (the constants below), `done` and `total` count its units
(tensor entries, bytes, layers, files; `total` may be 0 when unknown), `item` names what is being worked
on. A caller that wants no progress passes None; `report` is the one way the library calls it.
"""

from __future__ import annotations

import threading
from typing import Callable

ProgressFn = Callable[[str, int, int, str], None]

HASHING = "hashing files"
FINGERPRINTING = "fingerprinting"
RETRIEVAL = "shortlisting references"
SKETCHES = "weights sketches"
CONFIRMING = "confirming copies"
NEURONS = "neuron matching"
TOKENIZER = "tokenizer"
CODE = "code"
INDEXING_CODE = "indexing code"


def report(progress: ProgressFn | None, stage: str, done: int, total: int, item: str = "") -> None:
    """Call `progress` if there is one."""
    if progress is not None:
        progress(stage, done, total, item)


def byte_counter(progress: ProgressFn | None, stage: str, total: int) -> Callable[[int], None] | None:
    """A callback for code that reports bytes as they are processed (`n` at a time, from any thread), summed
    into `stage`."""
    if progress is None:
        return None
    lock = threading.Lock()
    done = 0

    def add(n: int) -> None:
        nonlocal done
        with lock:
            done += n
            progress(stage, done, total, "")

    return add
