"""One runner per runtime behind one interface (see base.Runner), found by name in the registry."""

from .base import Runner
from .registry import (
    RUNTIME_MODULES,
    SOURCE_RUNTIMES,
    TARGET_RUNTIMES,
    get_runner_class,
    register_runner,
    runner_classes,
)

__all__ = [
    "RUNTIME_MODULES",
    "SOURCE_RUNTIMES",
    "TARGET_RUNTIMES",
    "Runner",
    "get_runner_class",
    "register_runner",
    "runner_classes",
]
