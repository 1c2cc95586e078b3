"""Checks run on an artifact against its source: one module per check."""
