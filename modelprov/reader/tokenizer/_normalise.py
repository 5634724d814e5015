"""Turn tokens as files store them into their raw bytes, so one vocabulary compares equal in every format.

GPT-2 byte-level BPE stores bytes in a printable alphabet (`Ġ` is a space), tiktoken rank files store
base64 bytes, sentencepiece marks a word start with `▁` and byte-fallback pieces as `<0xAB>`, WordPiece
marks a continuation with `##`. The canonical form of a token is its raw byte string, with a word start
written as a leading space (so BERT's `the` is `b" the"` and `##ing` is `b"ing"`, as in sentencepiece).
"""

from __future__ import annotations

import re
from functools import lru_cache

METASPACE = "\u2581"  # ▁
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's `bytes_to_unicode`: printable character -> byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars = list(printable)
    shifted = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + shifted)
            shifted += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def byte_level_to_bytes(token: str) -> bytes | None:
    """Decode a GPT-2 byte-level token (`Ġthe`) to bytes (`b" the"`); None if it uses other characters."""
    table = _byte_level_decoder()
    try:
        return bytes(table[ch] for ch in token)
    except KeyError:
        return None


def metaspace_to_bytes(token: str, byte_fallback: bool = True) -> bytes:
    """Decode a sentencepiece-style piece: `▁` is a space, `<0xAB>` a single raw byte."""
    if byte_fallback:
        match = _BYTE_PIECE.match(token)
        if match:
            return bytes([int(match.group(1), 16)])
    return token.replace(METASPACE, " ").encode("utf-8")


def wordpiece_to_bytes(token: str, prefix: str = "##") -> bytes:
    """Decode a WordPiece token: `##ing` continues a word (`b"ing"`), `the` starts one (`b" the"`)."""
    if prefix and token.startswith(prefix) and len(token) > len(prefix):
        return token[len(prefix):].encode("utf-8")
    return b" " + token.encode("utf-8")


def display(token: bytes) -> str:
    """A readable form of a normalised token for reports: UTF-8 where valid, `\\xNN` escapes elsewhere."""
    return token.decode("utf-8", errors="backslashreplace")
