"""Reading files a user hands the tool, which may be hostile: regular files only, JSON with size and depth limits.

A FIFO or device named like a checkpoint file would block `open()` forever, and 10 KB of nested brackets
exhausts the JSON parser's recursion; both become one-line project errors here, for every caller.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np

from modelprov.errors import ProvenanceError

MAX_JSON_DEPTH = 64  # real tokenizer.json, reports and manifests nest at most ~10 deep
MAX_JSON_BYTES = 256 * 1024 * 1024  # the largest tokenizer.json we know of is ~35 MB
# a JSON string (an unterminated one runs to the end, so the pattern never backtracks: linear time)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.S)
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1

ErrorType = Callable[[str | os.PathLike[str] | None, str], ProvenanceError]


def check_regular(path: str | os.PathLike[str], error: ErrorType = ProvenanceError) -> os.stat_result:
    """Stat `path` (following symlinks) and refuse anything but a regular file, without opening it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(path, "no such file") from None
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(path, f"not a regular file ({_kind(st.st_mode)}); refused without opening it")
    return st


def open_regular(path: str | os.PathLike[str], error: ErrorType = ProvenanceError) -> int:
    """A read-only descriptor of a regular file; a FIFO, device or socket is refused and never blocks.

    The path is checked before opening and the descriptor after (O_NONBLOCK, so a FIFO swapped in between
    cannot block either).
    """
    check_regular(path, error)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(path, f"cannot open: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise error(path, f"not a regular file ({_kind(st.st_mode)}); refused")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return fd


def read_regular(path: str | os.PathLike[str], error: ErrorType = ProvenanceError,
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, refused (not read) when larger than `max_bytes`."""
    fd = open_regular(path, error)
    try:
        size = os.fstat(fd).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(path, f"too large ({size:,} bytes; the limit is {max_bytes:,})")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read() if max_bytes is None else handle.read(max_bytes + 1)[: max_bytes]
    except OSError as exc:
        raise error(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike[str], error: ErrorType = ProvenanceError,
              max_bytes: int | None = MAX_JSON_BYTES) -> str:
    """A regular file's text as UTF-8, one-line errors for anything else."""
    raw = read_regular(path, error, max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(path, f"not UTF-8 text (byte {exc.start})") from None


def gunzip(raw: bytes, path: str | os.PathLike[str] | None, error: ErrorType = ProvenanceError,
           max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The gzip data `raw` decompressed, refused once it would pass `max_bytes` (a gzip bomb stops there)."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise error(path, f"not valid gzip data ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise error(path, f"decompresses to more than {max_bytes:,} bytes; refused")
    return out


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays and objects in JSON text, brackets inside strings not counted (linear time)."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    stripped = _JSON_STRING.sub(b"", data)
    if not stripped:
        return 0
    steps = _OPEN[np.frombuffer(stripped, dtype=np.uint8)]
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def parse_json(raw: bytes | str, path: str | os.PathLike[str] | None, error: ErrorType = ProvenanceError,
               max_depth: int = MAX_JSON_DEPTH, what: str | None = None, **kwargs: Any) -> Any:
    """`json.loads` of untrusted text: nesting deeper than `max_depth` is refused before parsing.

    `what` names the text in messages when the path does not ("header", "weight-map index"); `kwargs` go to
    `json.loads`.
    """
    depth = json_depth(raw)
    if depth > max_depth:
        raise error(path, f"{what + ': ' if what else ''}JSON nesting deeper than {max_depth} levels ({depth}); refused")
    try:
        return json.loads(raw, **kwargs)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error(path, f"{what + ': ' if what else ''}not valid JSON ({_first_line(exc)})") from None


def load_json(path: str | os.PathLike[str], error: ErrorType = ProvenanceError, *,
              max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH, what: str | None = None,
              **kwargs: Any) -> Any:
    """A JSON file a user handed us: regular file, at most `max_bytes`, nesting at most `max_depth`."""
    return parse_json(read_regular(path, error, max_bytes), path, error, max_depth, what, **kwargs)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a file"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path`, symlinks resolved, lies inside `folder` (also resolved)."""
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
