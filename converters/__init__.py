"""Export routes: one module per (source framework, target), each registering ordered strategies."""

from .registry import (
    TARGETS,
    ConversionJob,
    Converted,
    Strategy,
    StrategyFailed,
    get_strategy,
    strategies_for,
    strategy,
)

__all__ = [
    "TARGETS",
    "ConversionJob",
    "Converted",
    "Strategy",
    "StrategyFailed",
    "get_strategy",
    "strategies_for",
    "strategy",
]
