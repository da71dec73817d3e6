"""Exceptions of the ``calib`` package (no units or frames involved)."""

from __future__ import annotations

__all__ = ["SourceError"]


class SourceError(RuntimeError):
    """A camera or recording could not deliver intrinsics (no device connected, no depth
    stream, unreadable recording, unsupported lens model). The message is one line meant
    for the user."""
