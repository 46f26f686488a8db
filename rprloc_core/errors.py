"""Errors that name the file and what is wrong with it."""

from __future__ import annotations

from pathlib import Path


class RprlocError(Exception):
    """Base class for errors this project raises on purpose."""


class DataError(RprlocError, ValueError):
    """A data file is missing, unreadable or inconsistent. Always names the file."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class EmptyMaskError(DataError):
    """An organ mask has no voxel."""


class UnknownOrganError(DataError):
    """An organ name that is not one of the canonical names (or a known alias)."""


class MissingOrganError(DataError):
    """A case does not contain the requested organ."""
