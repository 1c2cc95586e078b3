"""Helpers every route may use, whatever its framework: failure lines and package versions."""

from __future__ import annotations

from ondevice.core.errors import one_line
from ondevice.core.lazy import package_versions

__all__ = ["one_line", "package_versions"]
