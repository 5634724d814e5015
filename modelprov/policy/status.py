"""The four verdict words of a policy rule, ordered from harmless to disqualifying."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A rule's outcome. Order matters: the overall verdict is the worst rule status."""

    PASS = "PASS"
    WARN = "WARN"
    REVIEW = "REVIEW"
    FAIL = "FAIL"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, word: str) -> Status:
        """`"fail"`, `"Fail"` or `"FAIL"` → `Status.FAIL`; ValueError names the accepted words."""
        try:
            return cls(word.strip().upper())
        except (ValueError, AttributeError):
            raise ValueError(f"expected one of {', '.join(s.value.lower() for s in cls)}, got {word!r}") from None


_ORDER = (Status.PASS, Status.WARN, Status.REVIEW, Status.FAIL)


def worst(statuses: "list[Status] | tuple[Status, ...]") -> Status:
    """The most severe status; PASS for none."""
    return max(statuses, key=lambda s: s.rank, default=Status.PASS)


def cap(status: Status, ceiling: Status) -> Status:
    """`status`, but never above `ceiling` (a rule's severity is the most it can say)."""
    return status if status.rank <= ceiling.rank else ceiling
