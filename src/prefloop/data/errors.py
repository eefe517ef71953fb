"""The one exception malformed feedback data raises, saying where and what went wrong."""

from __future__ import annotations

import os
from typing import Any


class _Missing:
    """Type of ``MISSING``: a column the row does not have at all (unlike a null value)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


class FeedbackFormatError(ValueError):
    """Malformed feedback data, located by source, 1-based line or row number, and field.

    The message reads ``"{source}:{line}: field '{field}': expected {expected}, got {got}"``;
    the line and field parts are left out when they are None (for example a missing file).
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        expected: str,
        got: str,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.source = str(source)
        self.expected = expected
        self.got = got
        self.line = line
        self.field = field
        where = self.source if line is None else f"{self.source}:{line}"
        what = f"expected {expected}, got {got}"
        super().__init__(f"{where}: field '{field}': {what}" if field else f"{where}: {what}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the parts (not the message) so the error survives pickling across processes.
        return (type(self), (self.source, self.expected, self.got, self.line, self.field))


def describe(value: Any) -> str:
    """A short human description of a found value for the ``got ...`` part of a message."""
    if value is MISSING:
        return "nothing (no such column)"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "an empty string" if not value else f"str {_shorten(repr(value))}"
    if isinstance(value, list):
        return f"list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"object with keys {_shorten(repr(sorted(map(str, value))))}"
    return f"{type(value).__name__} {_shorten(repr(value))}"


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
