"""Sparse training where connections move: optimizer-state reset for regrown entries."""

from jaxprune.dynamic.reset import reset_entries

__all__ = ["reset_entries"]
