"""Text from files shown to people: control characters made visible, so a file cannot drive the terminal.

A tensor name holding ESC[2J clears the reviewer's screen, an OSC sequence retitles the window and a bidi
override reorders what is read; `printable` turns each into its escape (`\\x1b`, `\\u202e`) for the console,
Markdown and SARIF. (HTML escapes markup itself; JSON reports keep the exact strings.)
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(text: object, *, newlines: bool = False) -> str:
    """`text` with control characters shown as escapes (ESC as `\\x1b`); `newlines=True` keeps line breaks."""
    s = str(text)
    pattern = _CONTROL_BUT_NEWLINE if newlines else _CONTROL
    if pattern.search(s) is None:
        return s
    return pattern.sub(_escape, s)


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
