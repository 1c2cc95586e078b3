"""Helpers every route may use, whatever its framework: failure lines and package versions."""

from __future__ import annotations

import re

from ondevice.core.lazy import package_versions

__all__ = ["one_line", "package_versions"]

# torch and onnx2tf colour some messages with ANSI escapes; a reason line should not carry them.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = _ANSI.sub("", str(exc))
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
